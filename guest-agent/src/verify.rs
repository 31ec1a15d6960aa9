//! Block contents: a zvbench header on every block, and with `--verify` a per-block
//! pattern and checksum that a read pass checks.
//!
//! Layout of a block's first 40 bytes (little-endian): magic (8), block index (8),
//! run seed (8), block size (8), CRC32 of the whole block with this field zeroed (8).
//! Without `--verify` only the magic is written and the rest of the buffer is fixed
//! pseudo-random bytes, the same for every write of a job: incompressible within one
//! block, but a compressor sees the repeats when several blocks share one record (a 4K
//! write into a zvol's 16K volblocksize). `--buffer-compress-percentage` gives every write
//! fresh content ([`fill_write`]), of which a chosen share compresses away.

use crate::record::VerifyResult;
use crate::target::BLOCK_MAGIC;

/// Size of the header at the start of every verified block.
pub const HEADER_LEN: usize = 40;
const CRC_OFF: usize = 32;

/// SplitMix64: a small, fast, well-mixed generator for patterns.
#[inline]
pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(GOLDEN);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(MUL1);
    z = (z ^ (z >> 27)).wrapping_mul(MUL2);
    z ^ (z >> 31)
}

/// SplitMix64's golden-ratio increment.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
/// SplitMix64's two multipliers.
const MUL1: u64 = 0xBF58_476D_1CE4_E5B9;
const MUL2: u64 = 0x94D0_49BB_1331_11EB;
/// Mixes a verified block's index into its pattern seed.
const INDEX_MIX: u64 = 0xA24B_AED4_963E_E407;

/// The multiplicative inverse of an odd `a` modulo 2^64 (Newton's iteration: each step
/// doubles the correct low bits, from 3 bits since a·a ≡ 1 mod 8).
const fn inverse(a: u64) -> u64 {
    let mut x = a;
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
        i += 1;
    }
    x
}

/// Undoes `z ^ (z >> k)`.
fn unshift(y: u64, k: u32) -> u64 {
    let mut x = y;
    for _ in 0..64 / k {
        x = y ^ (x >> k);
    }
    x
}

/// The SplitMix64 state that produced output `out`: the generator's output function is a
/// bijection, so zvbench can recover the seed of an unverified block from its bytes.
fn unmix(out: u64) -> u64 {
    let z = unshift(out, 31).wrapping_mul(const { inverse(MUL2) });
    let z = unshift(z, 27).wrapping_mul(const { inverse(MUL1) });
    unshift(z, 30)
}

/// Fills `buf` with SplitMix64 output from `seed`, eight bytes at a time.
fn pattern(buf: &mut [u8], seed: u64) {
    let mut s = seed;
    for chunk in buf.chunks_mut(8) {
        let v = splitmix(&mut s).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Fills `buf` with pseudo-random bytes from `seed` and stamps the magic at offset 0.
pub fn fill_random(buf: &mut [u8], seed: u64) {
    pattern(buf, seed);
    stamp_magic(buf);
}

/// The length of a sector, the unit [`is_block_start`] checks.
pub const SECTOR: usize = 512;

/// Whether `head` begins with the first sector of a block zvbench wrote at offset 0: the
/// magic, then exactly the bytes [`fill_random`] or [`fill_block`] (index 0) put there
/// (for a verified block, the whole block with its checksum: see [`verified_len`]).
/// Recomputed from the seed found in the sector itself, so a partition table, boot code or
/// any other tool's write into the sector makes it foreign data again.
pub fn is_block_start(head: &[u8]) -> bool {
    let Some(sector) = head.get(..SECTOR) else {
        return false;
    };
    if &sector[..8] != BLOCK_MAGIC {
        return false;
    }
    let word = |o: usize| u64::from_le_bytes(sector[o..o + 8].try_into().expect("8 bytes"));
    let mut expect = [0u8; SECTOR];
    // Unverified: bytes 8.. are the generator's output from the second step on.
    let seed = unmix(word(8)).wrapping_sub(GOLDEN.wrapping_mul(2));
    fill_random(&mut expect, seed);
    if expect == *sector {
        return true;
    }
    // Verified block 0: header (index 0, seed, length), then the pattern of `seed`, and
    // the whole block's checksum.
    let Some(len) = verified_len(head) else {
        return false;
    };
    let seed = word(16);
    pattern(&mut expect[HEADER_LEN..], seed);
    expect[HEADER_LEN..] == sector[HEADER_LEN..]
        && head
            .get(..len)
            .is_some_and(|block| check_block(&mut block.to_vec(), 0, seed) == BlockCheck::Ok)
}

/// The length a verified block 0 at the start of `head` claims (a multiple of a sector
/// up to [`crate::pass::MAX_BS`]): how much a caller must read for [`is_block_start`] to
/// check its checksum.
pub fn verified_len(head: &[u8]) -> Option<usize> {
    let word = |o: usize| {
        head.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let len = word(24)?;
    (head.starts_with(BLOCK_MAGIC)
        && word(8)? == 0
        && len > 0
        && len <= crate::pass::MAX_BS
        && len % SECTOR as u64 == 0)
        .then_some(len as usize)
}

/// Writes the magic at the start of the block.
pub fn stamp_magic(buf: &mut [u8]) {
    let n = BLOCK_MAGIC.len().min(buf.len());
    buf[..n].copy_from_slice(&BLOCK_MAGIC[..n]);
}

/// fio's default `buffer_compress_chunk`: compressible content is laid out per chunk.
pub const COMPRESS_CHUNK: usize = 512;

/// Zeroes the last `pct` percent of every [`COMPRESS_CHUNK`] of `buf` (fio's
/// `buffer_compress_percentage`), never the header's bytes, and nothing of block 0's first
/// sector, which [`is_block_start`] recomputes to know zvbench's own data.
fn zero_tails(buf: &mut [u8], index: u64, pct: u8) {
    if pct == 0 {
        return; // the default: nothing to zero (this runs for every verified write)
    }
    let zeros = COMPRESS_CHUNK * usize::from(pct.min(100)) / 100;
    let start = if index == 0 { SECTOR } else { 0 };
    for (i, chunk) in buf.chunks_mut(COMPRESS_CHUNK).enumerate() {
        if i * COMPRESS_CHUNK < start {
            continue;
        }
        let len = chunk.len();
        let keep = len
            .saturating_sub(zeros)
            .max(if i == 0 { HEADER_LEN } else { 0 });
        chunk[keep.min(len)..].fill(0);
    }
}

/// Fresh content of an unverified write of block `index`: the magic, pseudo-random bytes
/// of its own (no two blocks alike), and `pct` percent of every chunk zeros.
pub fn fill_write(buf: &mut [u8], index: u64, seed: u64, pct: u8) {
    fill_random(buf, seed ^ index.wrapping_mul(INDEX_MIX));
    zero_tails(buf, index, pct);
}

/// Makes `buf` the verified content of block `index` of a run with `seed`, `pct` percent
/// of it compressible (0: none; see [`zero_tails`]): the checksum covers the zeros.
/// `buf` must be at least [`HEADER_LEN`] bytes.
pub fn fill_block(buf: &mut [u8], index: u64, seed: u64, pct: u8) {
    pattern(&mut buf[HEADER_LEN..], seed ^ index.wrapping_mul(INDEX_MIX));
    zero_tails(buf, index, pct);
    buf[..8].copy_from_slice(BLOCK_MAGIC);
    buf[8..16].copy_from_slice(&index.to_le_bytes());
    buf[16..24].copy_from_slice(&seed.to_le_bytes());
    let len = buf.len() as u64;
    buf[24..32].copy_from_slice(&len.to_le_bytes());
    buf[CRC_OFF..HEADER_LEN].fill(0);
    let crc = crc32fast::hash(buf) as u64;
    buf[CRC_OFF..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// The verdict on one block read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockCheck {
    /// Header and checksum match this block of this run.
    Ok,
    /// No zvbench header: never written, or foreign data.
    Mismatched,
    /// An intact zvbench block, but of another run or position.
    Stale,
    /// The header is this block's, but the checksum is wrong.
    Torn,
}

/// Checks a block read back. Leaves `buf` modified (the CRC field is zeroed).
pub fn check_block(buf: &mut [u8], index: u64, seed: u64) -> BlockCheck {
    if buf.len() < HEADER_LEN || &buf[..8] != BLOCK_MAGIC {
        return BlockCheck::Mismatched;
    }
    let word = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    let (idx, sd, len, crc) = (
        word(buf, 8),
        word(buf, 16),
        word(buf, 24),
        word(buf, CRC_OFF),
    );
    buf[CRC_OFF..HEADER_LEN].fill(0);
    let crc_ok = crc32fast::hash(buf) as u64 == crc;
    let mine = idx == index && sd == seed && len == buf.len() as u64;
    match (mine, crc_ok) {
        (true, true) => BlockCheck::Ok,
        (true, false) => BlockCheck::Torn,
        (false, true) => BlockCheck::Stale,
        (false, false) => BlockCheck::Mismatched,
    }
}

impl VerifyResult {
    /// Counts one checked block.
    pub fn add(&mut self, c: BlockCheck) {
        self.checked += 1;
        match c {
            BlockCheck::Ok => self.ok += 1,
            BlockCheck::Mismatched => self.mismatched += 1,
            BlockCheck::Stale => self.stale += 1,
            BlockCheck::Torn => self.torn += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_block_checks_ok() {
        let mut b = vec![0u8; 4096];
        fill_block(&mut b, 7, 42, 0);
        assert_eq!(check_block(&mut b, 7, 42), BlockCheck::Ok);
    }

    #[test]
    fn other_position_or_run_is_stale() {
        let mut b = vec![0u8; 4096];
        fill_block(&mut b, 7, 42, 0);
        let mut c = b.clone();
        assert_eq!(check_block(&mut b, 8, 42), BlockCheck::Stale);
        assert_eq!(check_block(&mut c, 7, 43), BlockCheck::Stale);
    }

    #[test]
    fn half_written_block_is_torn() {
        let mut new = vec![0u8; 4096];
        fill_block(&mut new, 3, 42, 0);
        let mut old = vec![0u8; 4096];
        fill_block(&mut old, 3, 41, 0);
        // The first sector of the new write landed; the rest is old data.
        new[512..].copy_from_slice(&old[512..]);
        assert_eq!(check_block(&mut new, 3, 42), BlockCheck::Torn);
    }

    #[test]
    fn zeros_or_foreign_data_mismatch() {
        assert_eq!(
            check_block(&mut vec![0u8; 4096], 0, 1),
            BlockCheck::Mismatched
        );
        let mut r = vec![0u8; 4096];
        fill_random(&mut r, 5);
        assert_eq!(check_block(&mut r, 0, 5), BlockCheck::Mismatched);
    }

    /// Every write its own content, `pct` percent of each chunk zeros, checksums and the
    /// recognition of zvbench's own block 0 intact.
    #[test]
    fn compressible_writes_keep_their_checks() {
        let zeros = |b: &[u8]| b.iter().filter(|&&x| x == 0).count() as f64 / b.len() as f64;
        for pct in [0u8, 25, 50, 90, 100] {
            let mut w = vec![0u8; 16384];
            fill_write(&mut w, 5, 1, pct);
            let z = zeros(&w);
            assert!((z - f64::from(pct) / 100.0).abs() < 0.02, "pct {pct}: {z}");
            let mut v = vec![0u8; 16384];
            fill_block(&mut v, 5, 1, pct);
            assert_eq!(
                check_block(&mut v.clone(), 5, 1),
                BlockCheck::Ok,
                "pct {pct}"
            );
            assert!(
                (zeros(&v) - f64::from(pct) / 100.0).abs() < 0.02,
                "pct {pct}"
            );
            for mut b0 in [vec![0u8; 4096], vec![0u8; 4096]] {
                fill_write(&mut b0, 0, 9, pct);
                assert!(is_block_start(&b0), "unverified block 0, pct {pct}");
                fill_block(&mut b0, 0, 9, pct);
                assert!(is_block_start(&b0), "verified block 0, pct {pct}");
            }
        }
        let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
        fill_write(&mut a, 1, 1, 0);
        fill_write(&mut b, 2, 1, 0);
        assert_ne!(a[8..], b[8..], "no two blocks alike");
        assert_eq!(&a[..8], BLOCK_MAGIC);
    }

    #[test]
    fn unmix_recovers_the_state() {
        for seed in [0u64, 1, 2, 42, u64::MAX, 0x1234_5678_9abc_def0] {
            let mut s = seed;
            let out = splitmix(&mut s);
            assert_eq!(unmix(out), s, "seed {seed}");
        }
    }

    #[test]
    fn recognises_the_first_sector_of_its_own_blocks_only() {
        for seed in [1u64, 2, 7, u64::MAX] {
            for bs in [512usize, 4096, 1 << 20] {
                let mut b = vec![0u8; bs];
                fill_random(&mut b, seed);
                assert!(is_block_start(&b), "plain seed {seed} bs {bs}");
                fill_block(&mut b, 0, seed, 0);
                assert!(is_block_start(&b), "verified seed {seed} bs {bs}");
                let mut other = b.clone();
                fill_block(&mut other, 1, seed, 0);
                assert!(!is_block_start(&other), "block 1 is not a start");
            }
        }
        let mut b = vec![0u8; 4096];
        fill_random(&mut b, 3);
        // sfdisk writes the MBR's partition entries and 0x55AA into bytes 446..512.
        let mut mbr = b.clone();
        mbr[510..512].copy_from_slice(&[0x55, 0xAA]);
        assert!(!is_block_start(&mbr));
        let mut one_byte = b.clone();
        one_byte[100] ^= 1;
        assert!(!is_block_start(&one_byte));
        assert!(!is_block_start(&b[..511]), "shorter than a sector");
        assert!(!is_block_start(&[0u8; 512]));
    }

    #[test]
    fn counts() {
        let mut v = VerifyResult::default();
        for c in [
            BlockCheck::Ok,
            BlockCheck::Ok,
            BlockCheck::Torn,
            BlockCheck::Stale,
            BlockCheck::Mismatched,
        ] {
            v.add(c);
        }
        assert_eq!(
            (v.checked, v.ok, v.torn, v.stale, v.mismatched),
            (5, 2, 1, 1, 1)
        );
        assert!(!v.passed());
    }
}
