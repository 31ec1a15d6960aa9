//! One job of a pass: a thread that keeps up to `iodepth` requests in flight on its region
//! through its engine, flushes every N writes after draining what is in flight (as fio
//! does), and records latencies, counters and its time series.

use crate::aligned::AlignedBuf;
use crate::engine::{Done, Engine, Req};
use crate::hist::LatencyHist;
use crate::offsets::OffsetGen;
use crate::pass::PassError;
use crate::record::VerifyResult;
use crate::series::SeriesRecorder;
use crate::verify::{check_block, fill_block, fill_write};
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What every job of a pass shares.
pub struct Plan<'a> {
    /// The open target.
    pub file: &'a File,
    /// Its path, for errors.
    pub path: &'a str,
    /// Block size.
    pub bs: u64,
    /// Requests in flight per job.
    pub qd: usize,
    /// A flush after every N writes of a job (0: none).
    pub sync_every: u64,
    /// fdatasync rather than fsync.
    pub datasync: bool,
    /// Verify headers on writes, checks on reads.
    pub verify: bool,
    /// Seed of the verify headers.
    pub seed: u64,
    /// Fresh content for every write, this percent compressible (`None`: one buffer).
    pub compress: Option<u8>,
    /// Set to end every job early (a failure or the observer's stop).
    pub stop: &'a AtomicBool,
    /// Where a single sequential job reports each acknowledged prefix (`None`: nobody asks).
    pub acks: Option<Acks>,
}

/// The acknowledged prefix of a single sequential write job, sent to the pass's thread,
/// which hands it to its observer ([`crate::pass::Observer::synced`]).
pub struct Acks {
    /// The pass's end of the channel.
    pub tx: std::sync::mpsc::Sender<u64>,
    /// O_SYNC/O_DSYNC: every completed write is durable, not only flushed ones.
    pub each_write: bool,
}

impl Acks {
    fn send(&self, writes: u64) {
        // The receiver lives until the pass has joined its jobs: a failed send cannot happen.
        let _ = self.tx.send(writes);
    }
}

/// When a phase ends.
#[derive(Debug, Clone, Copy)]
pub enum End {
    /// After this many requests.
    Requests(u64),
    /// At this instant.
    At(Instant),
}

/// What a job measured.
pub struct JobOut {
    /// I/O latencies.
    pub hist_io: LatencyHist,
    /// Flush latencies.
    pub hist_flush: LatencyHist,
    /// Time series.
    pub series: SeriesRecorder,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Read requests.
    pub reads: u64,
    /// Write requests.
    pub writes: u64,
    /// Flush calls.
    pub flushes: u64,
    /// Verify outcome of reads.
    pub verify: VerifyResult,
}

impl JobOut {
    /// Empty results with series intervals of `interval`, room for `expected` of them.
    pub fn new(interval: Duration, expected: usize) -> JobOut {
        JobOut {
            hist_io: LatencyHist::new(),
            hist_flush: LatencyHist::new(),
            series: SeriesRecorder::new(interval, expected),
            read_bytes: 0,
            write_bytes: 0,
            reads: 0,
            writes: 0,
            flushes: 0,
            verify: VerifyResult::default(),
        }
    }
}

#[derive(Clone, Copy)]
struct Slot {
    block: u64,
    write: bool,
    issued: Instant,
}

/// A job's machinery, made before the clock starts.
pub struct Job<'a> {
    plan: &'a Plan<'a>,
    engine: Box<dyn Engine + Send>,
    buf: AlignedBuf,
    /// First block of the job's region.
    first_block: u64,
    /// Bytes moved so far, for progress.
    done: &'a AtomicU64,
    slots: Vec<Slot>,
    free: Vec<usize>,
    comps: Vec<Done>,
    /// Set when the engine failed with requests possibly in flight: the buffer is then
    /// leaked rather than freed under the kernel.
    poisoned: bool,
}

impl Drop for Job<'_> {
    fn drop(&mut self) {
        if self.poisoned {
            let b = std::mem::replace(&mut self.buf, AlignedBuf::new(1, 1).expect("1 byte"));
            std::mem::forget(b);
        }
    }
}

impl<'a> Job<'a> {
    /// A job on the region starting at `first_block`, with `buf` holding `plan.qd + 1`
    /// blocks: one per request in flight and the block unverified writes send.
    pub fn new(
        plan: &'a Plan<'a>,
        engine: Box<dyn Engine + Send>,
        buf: AlignedBuf,
        first_block: u64,
        done: &'a AtomicU64,
    ) -> Job<'a> {
        let now = Instant::now();
        Job {
            plan,
            engine,
            buf,
            first_block,
            done,
            slots: vec![
                Slot {
                    block: 0,
                    write: false,
                    issued: now
                };
                plan.qd
            ],
            free: (0..plan.qd).rev().collect(),
            comps: Vec::with_capacity(plan.qd),
            poisoned: false,
        }
    }

    /// The engine's name.
    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }

    fn flush(&mut self, start: Instant, out: &mut JobOut, block: u64) -> Result<(), PassError> {
        let t0 = Instant::now();
        let r = if self.plan.datasync {
            self.plan.file.sync_data()
        } else {
            self.plan.file.sync_all()
        };
        let t1 = Instant::now();
        r.map_err(|source| PassError::Io {
            op: "flush",
            offset: block * self.plan.bs,
            path: self.plan.path.to_string(),
            source,
        })?;
        out.hist_flush.record_ns(nanos(t1 - t0));
        out.series.flush(t1 - start);
        out.flushes += 1;
        if let Some(a) = &self.plan.acks {
            a.send(out.writes);
        }
        Ok(())
    }

    /// The error of a failed submit or wait, after which requests may still be in flight:
    /// the job is poisoned (its buffer is leaked, not freed under the kernel).
    fn engine_failed(&mut self, offset: u64, source: std::io::Error) -> PassError {
        self.poisoned = true;
        PassError::Io {
            op: "submit",
            offset,
            path: self.plan.path.to_string(),
            source,
        }
    }

    /// Makes the next request from `gen` in a free slot (filling a written block's bytes
    /// where they are checked or compressible) and queues it; whether it reads.
    #[inline]
    fn queue_one(&mut self, gen: &mut OffsetGen, base: *mut u8) -> bool {
        let bs = self.plan.bs;
        let slot = self.free.pop().expect("a free slot below the depth");
        let (b, read) = gen.next_block();
        let block = self.first_block + b;
        // Reads and writes filled one by one use the slot's block; other writes all send
        // the shared write block, which a read never replaces.
        let fill = !read && (self.plan.verify || self.plan.compress.is_some());
        let at = if read || fill { slot } else { self.plan.qd };
        // SAFETY: at <= qd and the buffer holds qd + 1 blocks of bs bytes.
        let p = unsafe { base.add(at * bs as usize) };
        if fill {
            // SAFETY: the slot's bytes are not in flight (it was free).
            let b = unsafe { std::slice::from_raw_parts_mut(p, bs as usize) };
            let compress = self.plan.compress.unwrap_or(0);
            if self.plan.verify {
                fill_block(b, block, self.plan.seed, compress);
            } else {
                fill_write(b, block, self.plan.seed, compress);
            }
        }
        self.slots[slot] = Slot {
            block,
            write: !read,
            issued: Instant::now(),
        };
        let req = Req {
            slot,
            write: !read,
            off: block * bs,
            buf: p,
            len: bs as usize,
        };
        // SAFETY: the buffer lives in self until this job is dropped, and a job never
        // returns with requests in flight (or leaks the buffer).
        unsafe { self.engine.queue(req) };
        read
    }

    /// Counts a request of `slot` that completed without error at `now` (`since` the
    /// pass's start): its latency, bytes, acknowledgement, and a read's verification.
    #[inline]
    fn account(
        &mut self,
        slot: usize,
        s: Slot,
        (now, since): (Instant, Duration),
        out: &mut JobOut,
        base: *mut u8,
    ) {
        let bs = self.plan.bs;
        let lat = nanos(now - s.issued);
        out.hist_io.record_ns(lat);
        out.series.io(since, bs, !s.write, lat);
        if s.write {
            out.writes += 1;
            out.write_bytes += bs;
            if let Some(a) = self.plan.acks.as_ref().filter(|a| a.each_write) {
                a.send(out.writes);
            }
        } else {
            out.reads += 1;
            out.read_bytes += bs;
            if self.plan.verify {
                // SAFETY: the slot's request completed; its bytes are ours.
                let b = unsafe {
                    std::slice::from_raw_parts_mut(base.add(slot * bs as usize), bs as usize)
                };
                out.verify.add(check_block(b, s.block, self.plan.seed));
            }
        }
    }

    /// Runs requests from `gen` until `end` (or the plan's stop), timing from `start`.
    /// Every request in flight is completed before it returns, on error too.
    pub fn run(
        &mut self,
        gen: &mut OffsetGen,
        end: End,
        start: Instant,
        out: &mut JobOut,
    ) -> Result<(), PassError> {
        let bs = self.plan.bs;
        let base = self.buf.as_mut_slice().as_mut_ptr();
        let mut issued = 0u64;
        let mut in_flight = 0usize;
        let mut since_sync = 0u64;
        let mut sync_due = false;
        let mut stopping = false;
        let mut first_err: Option<PassError> = None;
        let mut last_block = 0;
        loop {
            let more = |issued: u64| match end {
                End::Requests(n) => issued < n,
                End::At(_) => true,
            };
            if !sync_due && !stopping {
                // fio's loop (iodepth_batch_submit=1): each request goes to the kernel as
                // soon as it is made, so the device starts on the first while the rest are
                // made; only the last rides on the wait below. (Made all first and
                // submitted in one call, the device sat idle meanwhile: random 4K QD32
                // reads 0.82x fio's on a virtio disk.)
                let mut queued = false;
                while !sync_due && in_flight < self.plan.qd && more(issued) {
                    if queued {
                        if let Err(e) = self.engine.submit() {
                            return Err(self.engine_failed(last_block * bs, e));
                        }
                    }
                    let read = self.queue_one(gen, base);
                    queued = true;
                    in_flight += 1;
                    issued += 1;
                    if !read {
                        since_sync += 1;
                        if self.plan.sync_every > 0 && since_sync == self.plan.sync_every {
                            sync_due = true;
                        }
                    }
                }
            }
            if in_flight == 0 {
                if sync_due && first_err.is_none() {
                    if let Err(e) = self.flush(start, out, last_block) {
                        first_err = Some(e);
                        stopping = true;
                    }
                    sync_due = false;
                    since_sync = 0;
                    continue;
                }
                break;
            }
            self.comps.clear();
            if let Err(e) = self.engine.submit_wait(1, &mut self.comps) {
                return Err(self.engine_failed(last_block * bs, e));
            }
            let now = Instant::now();
            let since = now - start;
            let mut moved = 0;
            for i in 0..self.comps.len() {
                let (slot, ref r) = self.comps[i];
                let s = self.slots[slot];
                self.free.push(slot);
                in_flight -= 1;
                last_block = s.block;
                if let Err(e) = r {
                    if first_err.is_none() {
                        first_err = Some(PassError::Io {
                            op: if s.write { "write" } else { "read" },
                            offset: s.block * bs,
                            path: self.plan.path.to_string(),
                            source: std::io::Error::new(e.kind(), e.to_string()),
                        });
                    }
                    stopping = true;
                    continue;
                }
                self.account(slot, s, (now, since), out, base);
                moved += bs;
            }
            self.done.fetch_add(moved, Ordering::Relaxed);
            if self.plan.stop.load(Ordering::Relaxed) {
                stopping = true;
            }
            if let End::At(t) = end {
                stopping |= now >= t;
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// A duration in nanoseconds, saturating.
pub fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}
