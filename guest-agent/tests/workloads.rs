//! Random and mixed workloads, queue depth, jobs and time-based passes against real files
//! (and, as root, a loop device for the block layer's flush counter).

mod common;
use common::*;
use std::time::Duration;
use zvbench_agent::engine::IoEngine;
use zvbench_agent::pass::{run_pass, Observer, PassError, Quiet, SyncMode, Workload};

const BS: u64 = 4096;

#[test]
fn random_writes_cover_every_block_and_read_back_at_depth_through_each_engine() {
    for engine in [IoEngine::IoUring, IoEngine::Libaio] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut w = spec(&p, Workload::Randwrite, BS, 256 * BS);
        w.verify = true;
        w.iodepth = 8;
        w.numjobs = 2;
        w.ioengine = engine;
        let rec = run_pass(&w, &mut Quiet).unwrap();
        assert_eq!(rec.ops, 256);
        assert_eq!(rec.write_bytes, 256 * BS);
        assert_eq!((rec.iodepth, rec.numjobs), (8, 2));
        let name = if engine == IoEngine::IoUring {
            "io_uring"
        } else {
            "libaio"
        };
        assert_eq!(rec.engine, name);
        assert_eq!(rec.rw_mix_read, 0);
        let mut r = w.clone();
        r.workload = Workload::Randread;
        let rec = run_pass(&r, &mut Quiet).unwrap();
        let v = rec.verify_result.unwrap();
        assert_eq!((v.checked, v.ok), (256, 256), "{name}: {v:?}");
        assert_eq!(rec.read_bytes, 256 * BS);
        assert_eq!(rec.rw_mix_read, 100);
    }
}

#[test]
fn random_order_is_not_sequential_and_follows_the_seed() {
    // The file's blocks carry their index only when verified, so the order is seen
    // through what a norandommap pass misses: a different seed misses other blocks.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    let holes = |seed: u64| {
        let _ = std::fs::remove_file(&p);
        let mut w = spec(&p, Workload::Randwrite, BS, 128 * BS);
        w.norandommap = true;
        w.randseed = seed;
        std::fs::File::create(&p)
            .unwrap()
            .set_len(128 * BS)
            .unwrap();
        run_pass(&w, &mut Quiet).unwrap();
        let data = std::fs::read(&p).unwrap();
        data.chunks(BS as usize)
            .map(|b| b.iter().all(|&x| x == 0))
            .collect::<Vec<bool>>()
    };
    let a = holes(5);
    assert!(
        a.iter().any(|&h| h),
        "128 independent draws over 128 blocks miss some"
    );
    assert_eq!(a, holes(5), "the same randseed writes the same blocks");
    assert_ne!(a, holes(6), "another randseed writes other blocks");
}

#[test]
fn flushes_every_n_writes_drain_the_queue_and_stay_apart_from_io_latency() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    let mut s = spec(&p, Workload::Randwrite, BS, 256 * BS);
    s.iodepth = 16;
    s.sync = SyncMode::Fdatasync;
    s.sync_every = Some(10);
    let r = run_pass(&s, &mut Quiet).unwrap();
    assert_eq!(r.ops, 256);
    assert_eq!(r.agent_flushes, 25 + 1, "256 / 10 periodic + the end flush");
    assert_eq!(r.flush.unwrap().count, 26);
    assert_eq!(r.lat.count, 256, "flushes are not counted as I/O");
    let series_flushes: u64 = r.series.unwrap().points.iter().map(|p| p.flushes).sum();
    assert_eq!(series_flushes, 26);
}

#[test]
fn randrw_mixes_reads_and_writes_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    run_pass(&spec(&p, Workload::Seqwr, 1 << 20, 16 << 20), &mut Quiet).unwrap();
    let mut s = spec(&p, Workload::Randrw, BS, 16 << 20);
    s.rwmixread = Some(70);
    s.iodepth = 4;
    s.numjobs = 2;
    let r = run_pass(&s, &mut Quiet).unwrap();
    assert_eq!(r.ops, 4096);
    let share = r.read_bytes as f64 / r.bytes as f64;
    assert!((share - 0.7).abs() < 0.05, "read share {share}");
    assert_eq!(r.read_bytes + r.write_bytes, 16 << 20);
    assert_eq!(r.rw_mix_read, 70);
}

#[test]
fn a_time_based_pass_runs_for_its_runtime_and_leaves_the_ramp_out() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    run_pass(&spec(&p, Workload::Seqwr, 1 << 20, 8 << 20), &mut Quiet).unwrap();
    let mut s = spec(&p, Workload::Randread, BS, 8 << 20);
    s.runtime = Some(1.0);
    s.ramp_time = Some(0.5);
    s.log_avg_msec = 100;
    s.iodepth = 4;
    let r = run_pass(&s, &mut Quiet).unwrap();
    assert!(r.seconds >= 1.0 && r.seconds < 1.5, "{} s", r.seconds);
    let series = r.series.unwrap();
    assert_eq!(series.interval_ms, 100);
    assert!(
        (9..=12).contains(&series.points.len()),
        "{:?}",
        series.points
    );
    let ops_in_series: f64 = series
        .points
        .windows(2)
        .map(|w| w[1].iops * (w[1].t_s - w[0].t_s))
        .sum::<f64>()
        + series.points[0].iops * series.points[0].t_s;
    assert!(
        (ops_in_series - r.ops as f64).abs() < 1.0,
        "the series holds the measured requests only ({ops_in_series} vs {})",
        r.ops
    );
    assert_eq!(r.runtime_s, Some(1.0));
}

#[test]
fn a_short_pass_is_timed_by_its_requests_not_by_the_progress_poll() {
    // The pass's thread looks at its jobs every 20 ms. A pass used to end when that look
    // saw the jobs done, so a 60 ms pass read as 80 ms (a third slower), in 20 ms steps —
    // the between-run noise of the quick scenario's 64 MiB passes. 64 KiB into the page
    // cache takes well under a millisecond; its time must not be a poll interval.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    let mut secs: Vec<f64> = (0..5)
        .map(|_| {
            let mut s = spec(&p, Workload::Seqwr, 16 << 10, 64 << 10);
            s.end_fsync = false;
            run_pass(&s, &mut Quiet).unwrap().seconds
        })
        .collect();
    secs.sort_by(f64::total_cmp);
    assert!(
        secs[2] < 0.015,
        "a 64 KiB buffered write timed at {secs:?} s: the poll's 20 ms, not the requests"
    );
}

/// Never stops before the pass, then stops at the first check during it.
struct StopDuring(bool);

impl Observer for StopDuring {
    fn stop_requested(&mut self) -> bool {
        std::mem::replace(&mut self.0, true)
    }
}

#[test]
fn a_stop_ends_every_job_of_a_long_pass() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    run_pass(&spec(&p, Workload::Seqwr, 1 << 20, 8 << 20), &mut Quiet).unwrap();
    let mut s = spec(&p, Workload::Randread, BS, 8 << 20);
    s.runtime = Some(600.0);
    s.numjobs = 2;
    s.iodepth = 4;
    let t = std::time::Instant::now();
    assert!(matches!(
        run_pass(&s, &mut StopDuring(false)),
        Err(PassError::Stopped)
    ));
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "the stop was not heeded"
    );
}

#[test]
fn bad_combinations_are_named() {
    let p = std::path::Path::new("/nonexistent/f");
    let msg = |f: &dyn Fn(&mut zvbench_agent::pass::PassSpec)| {
        let mut s = spec(p, Workload::Randwrite, BS, 64 * BS);
        f(&mut s);
        s.validate().unwrap_err().to_string()
    };
    assert!(msg(&|s| s.iodepth = 0).contains("--iodepth"));
    assert!(msg(&|s| {
        s.ioengine = IoEngine::Psync;
        s.iodepth = 4
    })
    .contains("psync"));
    assert!(msg(&|s| s.numjobs = 65).contains("--numjobs"));
    let mut t = spec(p, Workload::Randwrite, BS, 2 * BS);
    t.numjobs = 3;
    assert!(t.validate().unwrap_err().to_string().contains("region"));
    assert!(msg(&|s| s.rwmixread = Some(50)).contains("randrw"));
    assert!(msg(&|s| {
        s.workload = Workload::Seqwr;
        s.norandommap = true
    })
    .contains("norandommap"));
    assert!(msg(&|s| {
        s.workload = Workload::Randrw;
        s.verify = true
    })
    .contains("--verify"));
    assert!(msg(&|s| s.runtime = Some(f64::NAN)).contains("--runtime"));
    assert!(msg(&|s| s.ramp_time = Some(-1.0)).contains("--ramp-time"));
    assert!(msg(&|s| s.log_avg_msec = 0).contains("--log-avg-msec"));
}

#[test]
fn loop_device_sees_the_flushes_issued_at_depth() {
    need_root();
    let lo = Loop::new(16 << 20, 512);
    let mut s = spec(&lo.dev, Workload::Randwrite, BS, 16 << 20);
    s.direct = true;
    s.iodepth = 16;
    s.numjobs = 2;
    s.sync = SyncMode::Fsync;
    s.sync_every = Some(256);
    s.allow_destroy = true;
    let r = run_pass(&s, &mut Quiet).unwrap();
    assert_eq!(r.agent_flushes, 4096 / 256 + 1);
    let dev = r
        .guest_dev_flushes
        .expect("a loop device has a flush counter");
    assert!(
        dev >= r.agent_flushes,
        "{dev} device flushes < {} issued",
        r.agent_flushes
    );
    assert_eq!(r.engine, "io_uring");
}

#[test]
fn an_o_direct_read_leaves_the_rest_of_the_page_cache_alone() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let p = dir.path().join("f");
    run_pass(&spec(&p, Workload::Seqwr, BS, 64 * BS), &mut Quiet).unwrap();
    let mut s = spec(&p, Workload::Randread, BS, 64 * BS);
    s.direct = true;
    let steps = run_pass(&s, &mut Quiet).unwrap().cache_drop;
    let global = steps.iter().find(|c| c.method == "drop_caches").unwrap();
    assert!(!global.ok, "{steps:?}");
    assert!(
        global.error.as_deref().unwrap().contains("O_DIRECT"),
        "{steps:?}"
    );
    assert!(
        steps.iter().any(|c| c.method == "fadvise_dontneed" && c.ok),
        "{steps:?}"
    );
    s.direct = false;
    let steps = run_pass(&s, &mut Quiet).unwrap().cache_drop;
    let global = steps.iter().find(|c| c.method == "drop_caches").unwrap();
    assert!(global.error.as_deref() != Some("skipped: O_DIRECT bypasses the page cache"));
}

/// `buffer_compress_percentage`: every write's content its own, that share of each
/// 512-byte chunk zeros, at depth and over jobs; verified blocks read back intact; without
/// it, one buffer repeats in every block (what ZFS compressed in the lab).
#[test]
fn compressible_writes_have_their_share_of_zeros_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    let zeros = |data: &[u8]| data.iter().filter(|&&b| b == 0).count() as f64 / data.len() as f64;
    let distinct = |data: &[u8]| {
        let mut blocks: Vec<&[u8]> = data.chunks(BS as usize).map(|b| &b[8..]).collect();
        blocks.sort();
        blocks.dedup();
        blocks.len()
    };
    for (verify, iodepth) in [(false, 1), (true, 8)] {
        let _ = std::fs::remove_file(&p);
        let mut w = spec(&p, Workload::Seqwr, BS, 256 * BS);
        w.buffer_compress_percentage = Some(50);
        w.verify = verify;
        w.iodepth = iodepth;
        w.numjobs = 2;
        let rec = run_pass(&w, &mut Quiet).unwrap();
        assert_eq!(rec.buffer_compress_percentage, Some(50));
        let data = std::fs::read(&p).unwrap();
        let z = zeros(&data);
        assert!((0.45..0.55).contains(&z), "verify {verify}: {z} zeros");
        assert_eq!(distinct(&data), 256, "verify {verify}: every block its own");
        if verify {
            let mut r = w.clone();
            r.workload = Workload::Seqrd;
            r.buffer_compress_percentage = None;
            let v = run_pass(&r, &mut Quiet).unwrap().verify_result.unwrap();
            assert_eq!((v.checked, v.ok), (256, 256), "{v:?}");
        }
    }
    let _ = std::fs::remove_file(&p);
    run_pass(&spec(&p, Workload::Seqwr, BS, 256 * BS), &mut Quiet).unwrap();
    let data = std::fs::read(&p).unwrap();
    assert!(zeros(&data) < 0.01);
    assert_eq!(distinct(&data), 1, "one buffer for every write");
    let mut r = spec(&p, Workload::Seqrd, BS, 256 * BS);
    r.buffer_compress_percentage = Some(10);
    assert!(matches!(
        run_pass(&r, &mut Quiet),
        Err(PassError::Invalid(_))
    ));
}
