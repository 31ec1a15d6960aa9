//! Performance over time: per-interval bytes, requests, flushes and 99th percentile
//! latency (fio's `log_avg_msec`), where a median hides ZFS transaction-group stalls and
//! write-back bursts.
//!
//! Each job keeps its own intervals; they are merged by interval number when the pass
//! ends. An interval's latency histogram is small (eight buckets per power of two, about
//! ±4.5 % on the 99th percentile) so that keeping one per interval and job stays cheap;
//! the pass's exact percentiles come from its HdrHistogram.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Most intervals a pass keeps (a day at 1 s); later ones are left out of the series
/// (never out of the pass's totals), so a record stays bounded.
pub const MAX_POINTS: usize = 86_400;

const SUB: u32 = 8;
const BUCKETS: usize = 64 * SUB as usize;

/// A coarse log-scale latency histogram in nanoseconds.
#[derive(Clone)]
struct SmallHist([u32; BUCKETS]);

impl SmallHist {
    fn bucket(ns: u64) -> usize {
        let ns = ns.max(1);
        let oct = 63 - ns.leading_zeros();
        let frac = if oct >= 3 {
            (ns >> (oct - 3)) & 7
        } else {
            (ns << (3 - oct)) & 7
        };
        (oct * SUB) as usize + frac as usize
    }

    /// The middle of a bucket's range, ns.
    fn value(b: usize) -> f64 {
        let oct = i32::try_from(b / SUB as usize).unwrap_or(i32::MAX);
        let frac = (b as u32 % SUB) as f64;
        2f64.powi(oct) * (1.0 + (frac + 0.5) / f64::from(SUB))
    }

    fn quantile_ns(&self, q: f64) -> Option<f64> {
        let total: u64 = self.0.iter().map(|&c| u64::from(c)).sum();
        if total == 0 {
            return None;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (b, &c) in self.0.iter().enumerate() {
            seen += u64::from(c);
            if seen >= want {
                return Some(Self::value(b));
            }
        }
        None
    }
}

/// One interval's totals, kept by a job.
#[derive(Clone)]
struct Slot {
    index: u64,
    read_bytes: u64,
    write_bytes: u64,
    ops: u64,
    flushes: u64,
    hist: SmallHist,
}

impl Slot {
    fn new(index: u64) -> Slot {
        Slot {
            index,
            read_bytes: 0,
            write_bytes: 0,
            ops: 0,
            flushes: 0,
            hist: SmallHist([0; BUCKETS]),
        }
    }

    /// Adds `other`'s totals to this interval's.
    fn add(&mut self, other: &Slot) {
        self.read_bytes += other.read_bytes;
        self.write_bytes += other.write_bytes;
        self.ops += other.ops;
        self.flushes += other.flushes;
        for (a, b) in self.hist.0.iter_mut().zip(other.hist.0.iter()) {
            *a += b;
        }
    }
}

/// A job's intervals as it runs. Recording touches only the current interval; moving to
/// the next one pushes it onto a vector reserved for the expected count.
pub struct SeriesRecorder {
    interval_ns: u64,
    cur: Slot,
    done: Vec<Slot>,
}

impl SeriesRecorder {
    /// Intervals of `interval` (non-zero), with room reserved for `expected` of them.
    pub fn new(interval: Duration, expected: usize) -> SeriesRecorder {
        SeriesRecorder {
            interval_ns: (interval.as_nanos() as u64).max(1),
            cur: Slot::new(0),
            done: Vec::with_capacity(expected.clamp(1, 1 << 16)),
        }
    }

    #[inline]
    fn at(&mut self, since_start: Duration) -> &mut Slot {
        let index = since_start.as_nanos() as u64 / self.interval_ns;
        if index != self.cur.index {
            let next = Slot::new(index);
            let old = std::mem::replace(&mut self.cur, next);
            if (old.ops > 0 || old.flushes > 0) && (old.index as usize) < MAX_POINTS {
                self.done.push(old);
            }
        }
        &mut self.cur
    }

    /// Counts one completed request at `since_start`.
    #[inline]
    pub fn io(&mut self, since_start: Duration, bytes: u64, read: bool, lat_ns: u64) {
        let s = self.at(since_start);
        if read {
            s.read_bytes += bytes;
        } else {
            s.write_bytes += bytes;
        }
        s.ops += 1;
        s.hist.0[SmallHist::bucket(lat_ns)] += 1;
    }

    /// Counts one flush completed at `since_start`.
    #[inline]
    pub fn flush(&mut self, since_start: Duration) {
        self.at(since_start).flushes += 1;
    }

    fn finish(mut self) -> Vec<Slot> {
        if (self.cur.ops > 0 || self.cur.flushes > 0) && (self.cur.index as usize) < MAX_POINTS {
            self.done.push(self.cur);
        }
        self.done
    }
}

/// One point of a pass's time series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// End of the interval, seconds since the measured start.
    pub t_s: f64,
    /// Throughput in the interval, MiB/s (reads and writes).
    pub mib_per_s: f64,
    /// Requests per second in the interval.
    pub iops: f64,
    /// 99th percentile latency of the requests completed in the interval, µs (±4.5 %);
    /// absent when none completed.
    pub lat_p99_us: Option<f64>,
    /// Flush calls completed in the interval.
    pub flushes: u64,
}

/// A pass's time series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Length of one interval, milliseconds.
    pub interval_ms: u64,
    /// One point per interval, in order; intervals with no completion show zero.
    pub points: Vec<SeriesPoint>,
}

/// Merges the jobs' recorders into the pass's series; `seconds` is the measured length
/// (the last interval is scaled by the part of it the pass covered, so it may be shorter
/// than one). A last interval shorter than half of one is folded into the one before,
/// which then ends with the pass: such a sliver holds a few completions only — after a
/// time-based pass stops submitting, the queue's drain (measured: 0.8 ms holding 16
/// requests drew a 3 s randwrite at QD16 as a collapse to a third of its rate). Intervals
/// with no completion up to the pass's end are zeros. A series cut at [`MAX_POINTS`] ends
/// with its last whole interval.
pub fn merge(jobs: Vec<SeriesRecorder>, seconds: f64) -> Series {
    let interval_ns = jobs.first().map_or(1_000_000_000, |j| j.interval_ns);
    let mut slots: Vec<Slot> = Vec::new();
    for j in jobs {
        for s in j.finish() {
            let i = s.index as usize;
            if slots.len() <= i {
                let from = slots.len() as u64;
                slots.extend((from..=s.index).map(Slot::new));
            }
            slots[i].add(&s);
        }
    }
    let len_s = interval_ns as f64 / 1e9;
    // Intervals up to the pass's end, the trailing ones with no completion too (a stall
    // at the end shows as zeros).
    let intervals = (seconds / len_s).ceil();
    let cut = intervals > MAX_POINTS as f64;
    let covered = (intervals as usize).min(MAX_POINTS);
    while slots.len() < covered {
        slots.push(Slot::new(slots.len() as u64));
    }
    if !cut && slots.len() >= 2 && seconds - (slots.len() - 1) as f64 * len_s < len_s / 2.0 {
        let last = slots.pop().expect("two or more slots");
        slots.last_mut().expect("one or more slots").add(&last);
    }
    let n = slots.len();
    let points = slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let start = s.index as f64 * len_s;
            // The last point ends with the pass (longer than an interval if a sliver was
            // folded into it, shorter if the pass ended inside it).
            let end = if i + 1 == n && !cut {
                seconds.max(start + 1e-9)
            } else {
                start + len_s
            };
            let span = end - start;
            SeriesPoint {
                t_s: end,
                mib_per_s: (s.read_bytes + s.write_bytes) as f64 / (1u64 << 20) as f64 / span,
                iops: s.ops as f64 / span,
                lat_p99_us: s.hist.quantile_ns(0.99).map(|ns| ns / 1000.0),
                flushes: s.flushes,
            }
        })
        .collect();
    Series {
        interval_ms: interval_ns / 1_000_000,
        points,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_close() {
        let mut last = 0;
        for ns in [1u64, 2, 7, 8, 9, 100, 1000, 12_345, 1 << 40] {
            let b = SmallHist::bucket(ns);
            assert!(b >= last);
            last = b;
            let v = SmallHist::value(b);
            assert!((v - ns as f64).abs() / ns as f64 <= 0.07, "{ns} -> {v}");
        }
    }

    #[test]
    fn merges_jobs_by_interval() {
        let ms = Duration::from_millis;
        let mut a = SeriesRecorder::new(ms(100), 4);
        let mut b = SeriesRecorder::new(ms(100), 4);
        for i in 0..100u64 {
            a.io(ms(10), 4096, true, 1000 + i);
            b.io(ms(50), 4096, false, 1000);
        }
        a.flush(ms(250));
        b.io(ms(260), 4096, false, 50_000);
        let s = merge(vec![a, b], 0.3);
        assert_eq!(s.interval_ms, 100);
        assert_eq!(s.points.len(), 3);
        let p0 = s.points[0];
        assert!((p0.iops - 2000.0).abs() < 1e-6, "{p0:?}");
        assert!((p0.mib_per_s - 200.0 * 4096.0 / 1048576.0 / 0.1).abs() < 1e-6);
        assert!(p0.lat_p99_us.unwrap() < 1.2);
        assert_eq!(s.points[1].iops, 0.0);
        assert_eq!(s.points[1].lat_p99_us, None);
        assert_eq!(s.points[2].flushes, 1);
        assert!((s.points[2].lat_p99_us.unwrap() - 50.0).abs() < 3.0);
        assert!((s.points[2].t_s - 0.3).abs() < 1e-9);
    }

    /// A time-based pass's queue drains just past its runtime: that sliver joins the
    /// interval before instead of drawing a collapse.
    #[test]
    fn a_short_last_interval_joins_the_one_before() {
        let ms = Duration::from_millis;
        let mut a = SeriesRecorder::new(ms(200), 4);
        for t in [10u64, 60, 110, 160, 210, 260, 310, 360] {
            a.io(ms(t), 1 << 20, false, 1000);
        }
        a.io(Duration::from_micros(400_500), 1 << 20, false, 1000);
        let s = merge(vec![a], 0.4008);
        assert_eq!(s.points.len(), 2, "{:?}", s.points);
        let last = s.points[1];
        assert!((last.t_s - 0.4008).abs() < 1e-9);
        assert!(
            (last.mib_per_s - 5.0 / 0.2008).abs() < 1e-6,
            "5 MiB over 200.8 ms: {last:?}"
        );
        // Intervals with no completion up to the pass's end are zeros, not missing.
        let mut c = SeriesRecorder::new(ms(200), 4);
        c.io(ms(10), 1 << 20, false, 1000);
        let s = merge(vec![c], 0.75);
        assert_eq!(s.points.len(), 4, "{:?}", s.points);
        assert_eq!(s.points[3].mib_per_s, 0.0);
        assert!((s.points[3].t_s - 0.75).abs() < 1e-9);
        // A pass ending in the second half of an interval keeps its own, scaled, point.
        let mut b = SeriesRecorder::new(ms(200), 4);
        b.io(ms(10), 1 << 20, false, 1000);
        b.io(ms(350), 1 << 20, false, 1000);
        let s = merge(vec![b], 0.35);
        assert_eq!(s.points.len(), 2);
        assert!((s.points[1].mib_per_s - 1.0 / 0.15).abs() < 1e-6);
    }
}
