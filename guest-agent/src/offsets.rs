//! The order of a job's requests: which block comes next and whether it is a read or a
//! write.
//!
//! Random orders are reproducible from a seed (fio's `randseed`). By default every block
//! of the region comes exactly once per pass — a seeded bijection of the block numbers, as
//! fio's random map guarantees — with no map in memory: the permutation is computed. With
//! `norandommap` blocks are drawn independently, so some repeat and some are missed.

/// SplitMix64: a small, fast, well-mixed generator (Vigna).
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        crate::verify::splitmix(&mut self.0)
    }

    /// A number in `0..n` (`n` > 0), by Lemire's multiply-high.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// A seeded bijection of `0..n`: rounds of odd multiply, add and xor-shift on the
/// smallest power-of-two domain holding `n`, each bijective there; values at or past `n`
/// are walked again until they land inside (fewer than two steps on average).
#[derive(Debug, Clone)]
struct Permutation {
    n: u64,
    bits: u32,
    keys: [(u64, u64); 4],
}

impl Permutation {
    fn new(n: u64, seed: u64) -> Permutation {
        let bits = (64 - n.saturating_sub(1).leading_zeros()).max(1);
        let mut g = SplitMix::new(seed);
        let keys = [(); 4].map(|_| (g.next_u64() | 1, g.next_u64()));
        Permutation { n, bits, keys }
    }

    #[inline]
    fn round_trip(&self, mut x: u64) -> u64 {
        let mask = if self.bits == 64 {
            u64::MAX
        } else {
            (1u64 << self.bits) - 1
        };
        let shift = self.bits.div_ceil(2);
        for &(mul, add) in &self.keys {
            x = x.wrapping_mul(mul).wrapping_add(add) & mask;
            x ^= x >> shift;
        }
        x
    }

    #[inline]
    fn at(&self, i: u64) -> u64 {
        let mut x = self.round_trip(i);
        while x >= self.n {
            x = self.round_trip(x);
        }
        x
    }
}

/// How blocks are ordered.
#[derive(Debug, Clone)]
enum Order {
    Sequential,
    Mapped(Permutation),
    Unmapped(SplitMix),
}

/// Yields a job's block numbers (relative to its region) and read/write choices, forever:
/// a time-based pass wraps to a new pass over the region (a new permutation of it).
#[derive(Debug, Clone)]
pub struct OffsetGen {
    n: u64,
    seed: u64,
    order: Order,
    i: u64,
    pass: u64,
    /// Percent of requests that read: 100 for read workloads, 0 for writes.
    read_pct: u8,
    mix: SplitMix,
}

impl OffsetGen {
    /// A generator over `blocks` blocks (> 0). `random` picks a seeded order from `seed`
    /// (every block once per pass unless `norandommap`); `read_pct` of the requests read.
    pub fn new(blocks: u64, random: bool, norandommap: bool, seed: u64, read_pct: u8) -> Self {
        let order = match (random, norandommap) {
            (false, _) => Order::Sequential,
            (true, false) => Order::Mapped(Permutation::new(blocks, seed)),
            (true, true) => Order::Unmapped(SplitMix::new(seed)),
        };
        OffsetGen {
            n: blocks,
            seed,
            order,
            i: 0,
            pass: 0,
            read_pct: read_pct.min(100),
            mix: SplitMix::new(seed ^ 0x005E_ED0F_4EAD),
        }
    }

    /// The next block number and whether it is read (`true`) or written.
    #[inline]
    pub fn next_block(&mut self) -> (u64, bool) {
        if self.i == self.n {
            self.i = 0;
            self.pass += 1;
            if let Order::Mapped(_) = self.order {
                let seed = self.seed.wrapping_add(self.pass.wrapping_mul(0x9E37_79B9));
                self.order = Order::Mapped(Permutation::new(self.n, seed));
            }
        }
        let b = match &mut self.order {
            Order::Sequential => self.i,
            Order::Mapped(p) => p.at(self.i),
            Order::Unmapped(g) => g.below(self.n),
        };
        self.i += 1;
        let read = match self.read_pct {
            100 => true,
            0 => false,
            p => self.mix.below(100) < u64::from(p),
        };
        (b, read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_order_covers_every_block_once_per_pass() {
        for n in [1u64, 2, 3, 7, 64, 1000, 4097] {
            let mut g = OffsetGen::new(n, true, false, 42, 0);
            for _pass in 0..2 {
                let mut seen = vec![false; n as usize];
                for _ in 0..n {
                    let (b, read) = g.next_block();
                    assert!(!read);
                    assert!(!seen[b as usize], "block {b} twice in one pass of {n}");
                    seen[b as usize] = true;
                }
                assert!(seen.iter().all(|&s| s));
            }
        }
    }

    #[test]
    fn random_order_is_reproducible_and_seed_dependent() {
        let take = |seed, map| {
            let mut g = OffsetGen::new(10_000, true, map, seed, 50);
            (0..100).map(|_| g.next_block()).collect::<Vec<_>>()
        };
        assert_eq!(take(7, false), take(7, false));
        assert_ne!(take(7, false), take(8, false));
        assert_eq!(take(7, true), take(7, true));
        let seq: Vec<u64> = (0..100).collect();
        let got: Vec<u64> = take(7, false).iter().map(|x| x.0).collect();
        assert_ne!(got, seq, "a random order must not be the identity");
    }

    #[test]
    fn unmapped_order_repeats_blocks() {
        let mut g = OffsetGen::new(1000, true, true, 3, 100);
        let mut seen = std::collections::HashSet::new();
        let repeats = (0..1000).filter(|_| !seen.insert(g.next_block().0)).count();
        assert!(
            repeats > 100,
            "{repeats} repeats: draws are not independent"
        );
    }

    #[test]
    fn sequential_wraps() {
        let mut g = OffsetGen::new(3, false, false, 1, 100);
        let got: Vec<u64> = (0..7).map(|_| g.next_block().0).collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn read_share_follows_rwmixread() {
        for pct in [10u8, 50, 70] {
            let mut g = OffsetGen::new(1 << 20, true, false, 9, pct);
            let reads = (0..100_000).filter(|_| g.next_block().1).count();
            let share = reads as f64 / 1000.0;
            assert!((share - f64::from(pct)).abs() < 1.0, "{pct}%: got {share}%");
        }
    }
}
