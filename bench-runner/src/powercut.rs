//! Simulated power cuts: what stable storage holds after the power fails at a chosen
//! instant, rebuilt from QEMU's `blklogwrites` log (or [`crate::writelog`]'s, in the same
//! format, under a VirtualBox image), and which acknowledged blocks it lost.
//!
//! The log (dm-log-writes format, written by `block/blklogwrites.c`) is a superblock sector,
//! then per request a header sector (sector, nr_sectors, flags, data_len, little-endian)
//! followed by its data sectors. A request is logged after it completed on the file or
//! device below, and before the guest sees it complete; a flush entry after the flush
//! completed. The superblock is rewritten only at a flush, so the log is read by scanning,
//! never by trusting its count.
//!
//! A cut at an instant leaves exactly the log's prefix written by then (the log is
//! append-only and in completion order), so one complete log, with the log's length noted
//! at each acknowledgement the host received, stands for a hard kill at each of those
//! instants. Stable storage then holds, in the legal worst case, every write logged before
//! the last flush of the prefix (and FUA writes), none after.

/// An acknowledgement the host received (the frame session notes them).
pub use crate::guest::Ack;
use crate::scenario::ImageFormat;
use anyhow::{Context, Result};
use std::io;
use std::ops::Range;
use std::path::Path;

/// The log sector size zvbench asks for (`log-sector-size`).
pub const LOG_SECTOR: u64 = 512;
/// dm-log-writes' entry flag of a flush.
pub(crate) const FLUSH: u64 = 1;
const FUA: u64 = 2;
const DISCARD: u64 = 4;
const MARK: u64 = 8;
/// Largest request a header may claim (QEMU splits requests far below this).
const MAX_REQUEST_SECTORS: u64 = (1 << 30) / LOG_SECTOR;

/// What one log entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Data written at `offset` of the device; the bytes are `data` of the log.
    Write {
        /// Byte offset on the logged device.
        offset: u64,
        /// Where the data sits in the log.
        data: Range<usize>,
        /// Forced unit access: durable on completion by itself.
        fua: bool,
    },
    /// A flush reached the logged node and completed.
    Flush,
    /// A discard, a mark, or anything else that changes no data zvbench checks.
    Other,
}

/// One log entry and where it ends in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Byte offset just past the entry: the entry survives a cut at a log length ≥ this.
    pub end: u64,
    /// What it did.
    pub op: Op,
}

fn le(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

/// Where a log is read from: the file itself (read a request at a time, so a log of any
/// size costs no more memory than its largest request), or memory in tests.
pub trait LogRead {
    /// The log's length in bytes.
    fn log_len(&self) -> u64;
    /// Fills `buf` from byte `offset` (within [`LogRead::log_len`]).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl LogRead for Vec<u8> {
    fn log_len(&self) -> u64 {
        Vec::len(self) as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let o = offset as usize;
        buf.copy_from_slice(&self[o..o + buf.len()]);
        Ok(())
    }
}

impl LogRead for std::fs::File {
    fn log_len(&self) -> u64 {
        self.metadata().map_or(0, |m| m.len())
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

/// Every complete entry of `log`, scanned from the first sector after the superblock. The
/// scan ends at a header that is unused (all zero), claims unknown flags or an impossible
/// size, or whose data runs past the end (a request being logged when QEMU was killed).
pub fn scan(log: &dyn LogRead) -> io::Result<Vec<Entry>> {
    let sec = LOG_SECTOR as usize;
    let len = log.log_len() as usize;
    let mut at = sec;
    let mut out = Vec::new();
    let mut h = vec![0u8; sec];
    while at + sec <= len {
        log.read_at(at as u64, &mut h)?;
        let h = &h[..];
        let (sector, nr, flags) = (le(h, 0), le(h, 8), le(h, 16));
        if flags & !(FLUSH | FUA | DISCARD | MARK) != 0
            || nr > MAX_REQUEST_SECTORS
            || (flags == 0 && nr == 0)
        {
            break;
        }
        let data_len = if flags & DISCARD != 0 {
            0
        } else {
            nr as usize * sec
        };
        let data = at + sec..at + sec + data_len;
        if data.end > len {
            break;
        }
        let op = if flags & FLUSH != 0 {
            Op::Flush
        } else if flags & (DISCARD | MARK) != 0 || nr == 0 {
            Op::Other
        } else {
            Op::Write {
                offset: sector.saturating_mul(LOG_SECTOR),
                data: data.clone(),
                fua: flags & FUA != 0,
            }
        };
        at = data.end;
        out.push(Entry { end: at as u64, op });
    }
    Ok(out)
}

/// Counts flush entries in `entries` ending in the log range `span`.
pub fn flushes_in(entries: &[Entry], span: Range<u64>) -> u64 {
    entries
        .iter()
        .filter(|e| e.op == Op::Flush && e.end > span.start && e.end <= span.end)
        .count() as u64
}

/// Something a reconstruction is written to: a file, or memory in tests.
pub trait Image {
    /// Writes `data` at byte `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
}

impl Image for Vec<u8> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let o = offset as usize;
        if self.len() < o + data.len() {
            self.resize(o + data.len(), 0);
        }
        self[o..o + data.len()].copy_from_slice(data);
        Ok(())
    }
}

impl Image for std::fs::File {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, data, offset)
    }
}

/// Builds stable storage's contents cut by cut, in increasing log order: each cut applies
/// only the writes made durable since the previous one, so many cuts cost one replay.
pub struct Replay<'a> {
    log: &'a dyn LogRead,
    entries: &'a [Entry],
    /// Entries applied so far (all before the last flush of the latest cut).
    applied: usize,
}

impl<'a> Replay<'a> {
    /// A replay of `entries` (from [`scan`] of `log`) onto an image holding the device as it
    /// was before the log began.
    pub fn new(log: &'a dyn LogRead, entries: &'a [Entry]) -> Replay<'a> {
        Replay {
            log,
            entries,
            applied: 0,
        }
    }

    /// Brings `img` to what stable storage holds after a cut at log length `cut`, in the
    /// legal worst case: every write before the last flush that completed by the cut. FUA
    /// writes after that flush are durable too; they are returned (as entry indices) for
    /// the caller to overlay, with `extra` unflushed writes it chose (reordered cases), so
    /// the image itself never holds a write a later cut might not. Cuts must not decrease.
    pub fn cut(&mut self, cut: u64, img: &mut dyn Image) -> io::Result<Vec<usize>> {
        // Entries are in log order and cuts do not decrease: everything before `applied`
        // is inside this cut already, so each cut only looks at what is new.
        let from = self.applied;
        let upto = from
            + self.entries[from..]
                .iter()
                .take_while(|e| e.end <= cut)
                .count();
        let durable = self.entries[from..upto]
            .iter()
            .rposition(|e| e.op == Op::Flush)
            .map_or(from, |i| from + i + 1);
        for e in &self.entries[self.applied..durable] {
            if let Op::Write { offset, data, .. } = &e.op {
                img.write_at(*offset, &self.data(data)?)?;
            }
        }
        self.applied = durable;
        Ok((durable..upto)
            .filter(|&i| matches!(self.entries[i].op, Op::Write { fua: true, .. }))
            .collect())
    }

    /// The writes logged after the last applied flush and before log length `cut`: the
    /// ones a device may or may not have kept.
    pub fn unflushed(&self, cut: u64) -> Vec<usize> {
        (self.applied..self.entries.len())
            .filter(|&i| {
                self.entries[i].end <= cut && matches!(self.entries[i].op, Op::Write { .. })
            })
            .collect()
    }

    /// The bytes of a write's `data` in the log.
    fn data(&self, data: &Range<usize>) -> io::Result<Vec<u8>> {
        let mut b = vec![0u8; data.len()];
        self.log.read_at(data.start as u64, &mut b)?;
        Ok(b)
    }

    /// Copies the writes `which` over `region`, a buffer holding the device's bytes from
    /// `start`, where they meet it.
    pub fn overlay(&self, which: &[usize], region: &mut [u8], start: u64) -> io::Result<()> {
        for &i in which {
            let Op::Write { offset, data, .. } = &self.entries[i].op else {
                continue;
            };
            let (w0, w1) = (*offset, offset + data.len() as u64);
            let (r0, r1) = (start, start + region.len() as u64);
            let (a, b) = (w0.max(r0), w1.min(r1));
            if a < b {
                let src = data.start as u64 + (a - w0);
                self.log
                    .read_at(src, &mut region[(a - r0) as usize..(b - r0) as usize])?;
            }
        }
        Ok(())
    }
}

/// What one cut did to the acknowledged blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CutResult {
    /// Blocks acknowledged before the cut.
    pub acked: u64,
    /// Of those, blocks that did not read back as written.
    pub lost: u64,
    /// Lost blocks holding an intact older block (another run or position).
    pub stale: u64,
    /// Lost blocks with this block's header but a wrong checksum.
    pub torn: u64,
    /// How long before the cut the newest lost block was acknowledged.
    pub newest_loss_age_ms: Option<u64>,
}

/// Checks the acknowledged blocks in `region` (the device's bytes from offset 0, at least
/// `acked × bs` long) after a cut at `cut_ms`, given the acknowledgements `acks` in order.
pub fn check_cut(region: &mut [u8], bs: u64, seed: u64, acks: &[Ack], cut_ms: u64) -> CutResult {
    use zvbench_agent::verify::{check_block, BlockCheck};
    let acked = acks.iter().map(|a| a.blocks).max().unwrap_or(0);
    let mut r = CutResult {
        acked,
        ..Default::default()
    };
    for (i, block) in region
        .chunks_mut(bs as usize)
        .take(acked as usize)
        .enumerate()
    {
        let c = check_block(block, i as u64, seed);
        if c == BlockCheck::Ok {
            continue;
        }
        r.lost += 1;
        r.stale += u64::from(c == BlockCheck::Stale);
        r.torn += u64::from(c == BlockCheck::Torn);
        let acked_at = acks
            .iter()
            .find(|a| a.blocks > i as u64)
            .map_or(cut_ms, |a| a.ms);
        let age = cut_ms.saturating_sub(acked_at);
        r.newest_loss_age_ms = Some(r.newest_loss_age_ms.map_or(age, |o| o.min(age)));
    }
    r
}

/// The cut points of a pass: the end, and up to `n` acknowledgements picked at random
/// (SplitMix64 from `seed`), as indices into `acks` (`acks.len()` meaning the end), in log
/// order.
pub fn pick_cuts(acks: usize, n: usize, seed: u64) -> Vec<usize> {
    let mut s = seed;
    let mut pick: Vec<usize> = (0..acks).collect();
    // A partial Fisher-Yates shuffle: the first n are a uniform sample.
    for i in 0..n.min(acks) {
        let j = i + (splitmix(&mut s) % (acks - i) as u64) as usize;
        pick.swap(i, j);
    }
    pick.truncate(n.min(acks));
    pick.push(acks);
    pick.sort_unstable();
    pick
}

/// SplitMix64: the next pseudo-random number from `state`.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Each of `items` kept with probability one half (SplitMix64 from `seed`): the unflushed
/// writes a device happened to keep, in any order, at a cut.
pub fn random_subset(items: &[usize], seed: u64) -> Vec<usize> {
    let mut s = seed;
    items
        .iter()
        .copied()
        .filter(|_| splitmix(&mut s) & 1 == 1)
        .collect()
}

/// A power-cut check's settings (`zvbench run --powercut N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Random cut points per pass, besides the end.
    pub cuts: usize,
    /// Keep the log and the reconstruction.
    pub keep: bool,
}

/// One pass's outcome over all its cuts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Cuts checked.
    pub cuts: u64,
    /// Blocks acknowledged at the end cut.
    pub acked: u64,
    /// The most blocks lost at one cut.
    pub lost: u64,
    /// Cuts that lost at least one acknowledged block.
    pub cuts_with_loss: u64,
    /// The most stale blocks at one cut (worst case, or a raw device that kept a random
    /// part of the unflushed writes).
    pub stale: u64,
    /// The most torn blocks at one cut (as for `stale`).
    pub torn: u64,
    /// The oldest, over all cuts, of each cut's newest lost block's age.
    pub newest_loss_age_ms: Option<u64>,
    /// Flush entries the log holds for the pass.
    pub log_flushes: u64,
}

impl Summary {
    /// Counts one more cut (cuts in log order: the last one's acknowledged blocks stay).
    pub fn add(&mut self, r: &CutResult) {
        self.cuts += 1;
        self.acked = r.acked;
        self.lost = self.lost.max(r.lost);
        self.stale = self.stale.max(r.stale);
        self.torn = self.torn.max(r.torn);
        self.cuts_with_loss += u64::from(r.lost > 0);
        if let Some(age) = r.newest_loss_age_ms {
            self.newest_loss_age_ms = Some(self.newest_loss_age_ms.map_or(age, |o| o.max(age)));
        }
    }
}

/// Reads the device's first `len` bytes from a reconstruction `img` of format `format`:
/// directly for raw, through `qemu-img dd` (into `scratch`) for an image format.
fn read_guest(
    img: &Path,
    format: ImageFormat,
    len: u64,
    bs: u64,
    scratch: &Path,
) -> Result<Vec<u8>> {
    if format == ImageFormat::Raw {
        let f = std::fs::File::open(img)?;
        let mut buf = vec![0u8; len as usize];
        let n = std::os::unix::fs::FileExt::read_at(&f, &mut buf, 0)?;
        buf.truncate(n);
        buf.resize(len as usize, 0);
        return Ok(buf);
    }
    let _ = std::fs::remove_file(scratch);
    dd_argv(img, format.qemu_driver(), len, bs, scratch)
        .run_within(crate::cmd::limit_for_bytes(len))?;
    let mut buf = std::fs::read(scratch)?;
    let _ = std::fs::remove_file(scratch);
    buf.resize(len as usize, 0);
    Ok(buf)
}

/// `qemu-img dd` of the first `len` bytes of the guest's view of `img` into raw `out`.
pub fn dd_argv(img: &Path, format: &str, len: u64, bs: u64, out: &Path) -> crate::cmd::Argv {
    let kv = |k: &str, p: &Path| {
        let mut s = std::ffi::OsString::from(k);
        s.push(p);
        s
    };
    let mut a = crate::cmd::Argv::new(["qemu-img", "dd", "-f", format, "-O", "raw"]);
    a.0.push(format!("bs={bs}").into());
    a.0.push(format!("count={}", len / bs).into());
    a.0.push(kv("if=", img));
    a.0.push(kv("of=", out));
    a
}

/// Copies `from` (a file or block device) to a new file `to`, reading to the end.
pub fn copy_disk(from: &Path, to: &Path) -> Result<()> {
    let mut src = std::fs::File::open(from).with_context(|| format!("open {}", from.display()))?;
    let mut dst = std::fs::File::create(to).with_context(|| format!("create {}", to.display()))?;
    std::io::copy(&mut src, &mut dst)
        .map(drop)
        .with_context(|| format!("copy {} to {}", from.display(), to.display()))
        .inspect_err(|_| {
            // A partial copy (a full disk) is not left behind.
            let _ = std::fs::remove_file(to);
        })
}

/// Checks the passes of one boot against their log: `img` holds the disk as it was before
/// the boot and becomes the reconstruction; `passes` are (trace, block size, seed) in the
/// order they ran, `None` for a pass not checked. `cuts` random cuts per pass besides the end.
pub fn check_boot(
    log: &Path,
    img: &Path,
    format: ImageFormat,
    passes: &[Option<(&crate::guest::PassTrace, u64, u64)>],
    cuts: usize,
) -> Result<Vec<Option<Summary>>> {
    let file = std::fs::File::open(log).with_context(|| format!("open {}", log.display()))?;
    let entries = scan(&file).with_context(|| format!("read {}", log.display()))?;
    let mut replay = Replay::new(&file, &entries);
    let mut out_img = std::fs::OpenOptions::new()
        .write(true)
        .open(img)
        .with_context(|| format!("open {}", img.display()))?;
    let scratch = img.with_extension("read.raw");
    let mut out = Vec::new();
    for (n, p) in passes.iter().enumerate() {
        let Some((trace, bs, seed)) = p else {
            out.push(None);
            continue;
        };
        let mut s = Summary {
            log_flushes: flushes_in(&entries, trace.start_log..trace.end_log),
            ..Summary::default()
        };
        for i in pick_cuts(trace.acks.len(), cuts, seed ^ n as u64) {
            let (at, ms, acks) = match trace.acks.get(i) {
                Some(a) => (a.log_len, a.ms, &trace.acks[..=i]),
                None => (trace.end_log, trace.end_ms, &trace.acks[..]),
            };
            let durable_alone = replay.cut(at, &mut out_img)?;
            let acked = acks.last().map_or(0, |a| a.blocks);
            let mut region = read_guest(img, format, acked * bs, *bs, &scratch)?;
            if format == ImageFormat::Raw {
                replay.overlay(&durable_alone, &mut region, 0)?;
            }
            // Besides the worst case, a raw device that kept a random part of the unflushed
            // writes (reordered cases): stale and torn blocks show there.
            let kept = (format == ImageFormat::Raw).then(|| {
                let mut k = region.clone();
                let some = random_subset(&replay.unflushed(at), seed ^ at);
                replay.overlay(&some, &mut k, 0).map(|_| k)
            });
            let r = check_cut(&mut region, *bs, *seed, acks, ms);
            if let Some(k) = kept {
                let k = check_cut(&mut k?, *bs, *seed, acks, ms);
                s.stale = s.stale.max(k.stale);
                s.torn = s.torn.max(k.torn);
            }
            s.add(&r);
        }
        out.push(Some(s));
    }
    Ok(out)
}

/// The layer that dropped the guest's flushes, from a row's flush trace and the flushes
/// the log saw: the first layer below the agent that saw none while the one above saw some.
/// The hypervisor's layer is named with its cache setting (QEMU's `cache=` mode, or
/// VirtualBox's host I/O cache and whether it ignores flushes).
pub fn dropped_at(row: &zvbench_reports::ResultRow, log_flushes: u64) -> String {
    let guest = row.guest_dev_flushes.unwrap_or(row.agent_flushes);
    let hv = row.hv_flushes.unwrap_or(guest);
    let (name, cache) = if row.hypervisor == "virtualbox" {
        ("VirtualBox", row.cache.clone())
    } else {
        ("QEMU", format!("cache={}", row.cache))
    };
    if row.agent_flushes > 0 && guest == 0 {
        "guest kernel (no flush reached the guest's disk)".into()
    } else if guest > 0 && hv == 0 {
        format!("{name} device model ({cache})")
    } else if hv > 0 && log_flushes == 0 {
        format!("{name} {cache} (no guest flush reached stable storage)")
    } else {
        "none found: flushes reached stable storage, yet acknowledged blocks were lost".into()
    }
}

/// The layer that dropped the flushes of a pass on a zvol whose `sync` property is given,
/// when acknowledged blocks were lost: ZFS itself under `sync=disabled` (it acknowledges
/// an fsync before the transaction group holding the data is on disk).
pub fn zfs_dropped_at(sync: &str, agent_flushes: u64, log_flushes: u64) -> String {
    if sync == "disabled" {
        format!(
            "ZFS sync=disabled (fsync acknowledged without a ZIL commit: the pool's disk saw \
             {log_flushes} flushes for {agent_flushes} fsyncs)"
        )
    } else {
        format!(
            "none found: ZFS sync={sync}, and the pool's disk saw {log_flushes} flushes for \
             {agent_flushes} fsyncs, yet acknowledged blocks were lost"
        )
    }
}

/// Fills a row's power-cut columns from a pass's summary.
pub fn fill_row(row: &mut zvbench_reports::ResultRow, s: &Summary) {
    row.powercut_cuts = Some(s.cuts);
    row.powercut_acked_blocks = Some(s.acked);
    row.powercut_lost_blocks = Some(s.lost);
    row.powercut_cuts_lost = Some(s.cuts_with_loss);
    row.powercut_newest_loss_ms = s.newest_loss_age_ms;
    row.powercut_stale_blocks = Some(s.stale);
    row.powercut_torn_blocks = Some(s.torn);
    row.powercut_log_flushes = Some(s.log_flushes);
    row.powercut_verdict = Some(
        if s.lost == 0 {
            "durable"
        } else {
            "not durable"
        }
        .into(),
    );
    row.powercut_dropped_at = (s.lost > 0).then(|| dropped_at(row, s.log_flushes));
}

#[cfg(test)]
mod tests {
    use super::*;
    use zvbench_agent::verify::fill_block;

    /// A log as blklogwrites writes it: a superblock (zeros, as after a kill before any
    /// flush), then entries.
    struct LogBuilder(Vec<u8>);

    impl LogBuilder {
        fn new() -> Self {
            LogBuilder(vec![0; LOG_SECTOR as usize])
        }
        fn entry(&mut self, sector: u64, flags: u64, data: &[u8]) -> &mut Self {
            let mut h = vec![0u8; LOG_SECTOR as usize];
            h[0..8].copy_from_slice(&sector.to_le_bytes());
            let nr = data.len() as u64 / LOG_SECTOR;
            h[8..16].copy_from_slice(&nr.to_le_bytes());
            h[16..24].copy_from_slice(&flags.to_le_bytes());
            self.0.extend(h);
            self.0.extend(data);
            self
        }
        fn write(&mut self, block: u64, bs: u64, seed: u64) -> &mut Self {
            let mut b = vec![0u8; bs as usize];
            fill_block(&mut b, block, seed, 0);
            self.entry(block * bs / LOG_SECTOR, 0, &b)
        }
        fn flush(&mut self) -> &mut Self {
            self.entry(0, FLUSH, &[])
        }
    }

    const BS: u64 = 4096;

    fn acks(blocks: &[u64]) -> Vec<Ack> {
        blocks
            .iter()
            .enumerate()
            .map(|(i, &b)| Ack {
                ms: 100 * (i as u64 + 1),
                blocks: b,
                log_len: 0,
            })
            .collect()
    }

    /// The acceptance test of reconstruction: a write followed by a flush is kept, a write
    /// after the last flush is gone, and a block acknowledged without a flush below it is
    /// reported lost.
    #[test]
    fn unflushed_writes_are_lost_flushed_ones_kept() {
        let mut log = LogBuilder::new();
        log.write(0, BS, 7).flush().write(1, BS, 7);
        let entries = scan(&log.0).unwrap();
        assert_eq!(entries.len(), 3);
        let mut img = vec![0u8; 4 * BS as usize];
        let mut r = Replay::new(&log.0, &entries);
        assert!(r.cut(log.0.len() as u64, &mut img).unwrap().is_empty());
        assert_eq!(r.unflushed(log.0.len() as u64), vec![2]);
        // The guest was told both blocks were durable (as under cache=unsafe).
        let got = check_cut(&mut img.clone(), BS, 7, &acks(&[1, 2]), 250);
        assert_eq!(
            (got.acked, got.lost, got.newest_loss_age_ms),
            (2, 1, Some(50)),
            "{got:?}"
        );
        // The device kept the unflushed write after all (a legal outcome): nothing lost.
        let un = r.unflushed(log.0.len() as u64);
        r.overlay(&un, &mut img, 0).unwrap();
        assert_eq!(check_cut(&mut img, BS, 7, &acks(&[1, 2]), 250).lost, 0);
    }

    #[test]
    fn cuts_apply_only_what_a_flush_covered_by_then() {
        let mut log = LogBuilder::new();
        log.write(0, BS, 3).write(1, BS, 3).flush();
        let first_flush = log.0.len() as u64;
        log.write(2, BS, 3).flush();
        let entries = scan(&log.0).unwrap();
        let mut img = vec![0u8; 4 * BS as usize];
        let mut r = Replay::new(&log.0, &entries);
        // Cut before the first flush ended: nothing durable.
        r.cut(first_flush - 1, &mut img).unwrap();
        assert!(img.iter().all(|&b| b == 0));
        r.cut(first_flush, &mut img).unwrap();
        let c = check_cut(&mut img.clone(), BS, 3, &acks(&[2]), 0);
        assert_eq!((c.acked, c.lost), (2, 0));
        let c = check_cut(&mut img.clone(), BS, 3, &acks(&[2, 3]), 0);
        assert_eq!(c.lost, 1, "block 2 is not durable yet");
        r.cut(log.0.len() as u64, &mut img).unwrap();
        assert_eq!(check_cut(&mut img, BS, 3, &acks(&[2, 3]), 0).lost, 0);
        assert_eq!(flushes_in(&entries, 0..log.0.len() as u64), 2);
        assert_eq!(flushes_in(&entries, first_flush..log.0.len() as u64), 1);
    }

    #[test]
    fn an_older_block_is_stale_a_half_write_torn() {
        let mut old = vec![0u8; 2 * BS as usize];
        fill_block(&mut old[..BS as usize], 0, 1, 0);
        fill_block(&mut old[BS as usize..], 1, 2, 0);
        old[BS as usize + 600] ^= 1;
        let c = check_cut(&mut old, BS, 2, &acks(&[2]), 0);
        assert_eq!((c.lost, c.stale, c.torn), (2, 1, 1));
    }

    #[test]
    fn scan_stops_at_a_cut_short_entry_and_at_garbage() {
        let mut log = LogBuilder::new();
        log.write(0, BS, 1).flush().write(1, BS, 1);
        let full = log.0.len();
        assert_eq!(
            scan(&log.0[..full - 1].to_vec()).unwrap().len(),
            2,
            "the last data cut short"
        );
        assert_eq!(
            scan(&log.0[..LOG_SECTOR as usize].to_vec()).unwrap().len(),
            0
        );
        let mut bad = log.0.clone();
        bad[LOG_SECTOR as usize + 16] = 0x40; // unknown flag in the first header
        assert!(scan(&bad).unwrap().is_empty());
        let mut zeros = log.0.clone();
        zeros.extend(vec![0u8; 4096]);
        assert_eq!(scan(&zeros).unwrap().len(), 3, "unused sectors end the log");
        // FUA and discard entries.
        let mut l2 = LogBuilder::new();
        l2.entry(8, FUA, &[1u8; 512]).entry(0, DISCARD, &[]);
        let e = scan(&l2.0).unwrap();
        assert!(matches!(
            e[0].op,
            Op::Write {
                offset: 4096,
                fua: true,
                ..
            }
        ));
        assert_eq!(e[1].op, Op::Other);
        let mut img = Vec::new();
        let fua = Replay::new(&l2.0, &e)
            .cut(l2.0.len() as u64, &mut img)
            .unwrap();
        assert_eq!(fua, vec![0], "a FUA write is durable without a flush");
    }

    #[test]
    fn the_dropping_layer_is_named_from_the_trace() {
        let row = |agent, guest, hv, cache: &str| zvbench_reports::ResultRow {
            agent_flushes: agent,
            guest_dev_flushes: Some(guest),
            hv_flushes: Some(hv),
            cache: cache.into(),
            ..Default::default()
        };
        assert!(dropped_at(&row(128, 128, 128, "unsafe"), 0).starts_with("QEMU cache=unsafe"));
        assert!(dropped_at(&row(128, 0, 0, "none"), 0).starts_with("guest kernel"));
        assert!(dropped_at(&row(128, 128, 128, "none"), 128).starts_with("none found"));
        let vbox = zvbench_reports::ResultRow {
            hypervisor: "virtualbox".into(),
            ..row(128, 128, 128, "hostiocache=on flushes=ignored")
        };
        assert_eq!(
            dropped_at(&vbox, 0),
            "VirtualBox hostiocache=on flushes=ignored (no guest flush reached stable storage)"
        );
        let mut r = row(5, 5, 5, "unsafe");
        fill_row(
            &mut r,
            &Summary {
                lost: 3,
                cuts: 21,
                ..Summary::default()
            },
        );
        assert_eq!(r.powercut_verdict.as_deref(), Some("not durable"));
        assert!(r.powercut_dropped_at.unwrap().contains("cache=unsafe"));
    }

    #[test]
    fn a_random_subset_keeps_about_half_and_depends_on_the_seed() {
        let all: Vec<usize> = (0..1000).collect();
        let a = random_subset(&all, 1);
        assert!((400..600).contains(&a.len()), "{}", a.len());
        assert!(a.windows(2).all(|w| w[0] < w[1]), "in log order");
        assert_ne!(a, random_subset(&all, 2));
        assert!(random_subset(&[], 1).is_empty());
    }

    #[test]
    fn cut_points_are_the_end_and_distinct_acks_in_order() {
        let c = pick_cuts(100, 20, 5);
        assert_eq!(c.len(), 21);
        assert_eq!(*c.last().unwrap(), 100);
        assert!(c.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(pick_cuts(3, 20, 5), vec![0, 1, 2, 3]);
        assert_eq!(pick_cuts(0, 20, 5), vec![0]);
        assert_ne!(pick_cuts(100, 5, 1), pick_cuts(100, 5, 2));
    }
}
