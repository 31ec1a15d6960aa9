//! Imports what the real fio and sysbench print here (both from Debian, installed by
//! scripts/install-deps): the rows carry the tools' own numbers.

use std::process::Command;
use zvbench_reports::import::{fio, sysbench, Origin};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (scripts/install-deps installs fio and sysbench)")
    });
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn origin() -> Origin {
    Origin {
        target: "host".into(),
        baseline: true,
    }
}

#[test]
fn fio_json_of_two_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.dat");
    let json = run(Command::new("fio")
        .arg("--output-format=json")
        .args([
            "--name=fsync-16k",
            "--rw=write",
            "--bs=16k",
            "--size=2M",
            "--fsync=1",
        ])
        .arg(format!("--filename={}", file.display()))
        .args(["--name=read-1m", "--rw=read", "--bs=1M", "--size=2M"])
        .arg(format!("--filename={}", file.display())));
    let rows = fio(&json, &origin()).unwrap();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let w = &rows[0];
    assert_eq!(
        (w.workload.as_str(), w.kind.as_str()),
        ("fsync-16k", "seqwr")
    );
    assert_eq!((w.bs_bytes, w.size_bytes), (16384, 2 << 20));
    assert_eq!((w.sync.as_str(), w.sync_every), ("fsync", 1));
    // 128 writes, an fsync after each: fio counts 127 or 128 (it folds the last one).
    assert!(
        (127..=128).contains(&w.agent_flushes),
        "{}",
        w.agent_flushes
    );
    let (p50, p99) = (w.flush_p50_us.unwrap(), w.flush_p99_us.unwrap());
    assert!(p50 > 0.0 && p99 >= p50, "{p50} {p99}");
    // fio's percentiles are the upper edges of its latency bins (64 per power of two:
    // FIO_IO_U_PLAT_BITS = 6), so p99 may exceed the true maximum by up to 1/64.
    assert!(
        w.mib_per_s > 0.0
            && w.lat_p99_us >= w.lat_p50_us
            && w.lat_max_us * (1.0 + 1.0 / 64.0) >= w.lat_p99_us,
        "{w:?}"
    );
    let (p90, p999) = (w.lat_p90_us.unwrap(), w.lat_p999_us.unwrap());
    assert!(
        w.lat_p50_us <= p90 && p90 <= w.lat_p99_us && w.lat_p99_us <= p999,
        "{w:?}"
    );
    assert!(w.flush_max_us.unwrap() >= p99, "{w:?}");
    let r = &rows[1];
    assert_eq!(
        (r.kind.as_str(), r.bs_bytes, r.agent_flushes),
        ("seqrd", 1 << 20, 0)
    );
    assert_eq!(r.flush_p99_us, None);
}

#[test]
fn sysbench_fileio_text() {
    let dir = tempfile::tempdir().unwrap();
    let sb = |mode: &str, extra: &[&str]| {
        run(Command::new("sysbench")
            .current_dir(dir.path())
            .args(["fileio", "--file-num=1", "--file-total-size=4M"])
            .arg(format!("--file-test-mode={mode}"))
            .args(extra))
    };
    sb("seqwr", &["prepare"]);
    let text = sb(
        "seqwr",
        &[
            "--file-block-size=16384",
            "--file-fsync-freq=10",
            "--time=1",
            "--percentile=99",
            "run",
        ],
    );
    let r = sysbench(&text, &origin(), None).unwrap();
    assert_eq!(
        (r.kind.as_str(), r.bs_bytes, r.size_bytes),
        ("seqwr", 16384, 4 << 20)
    );
    assert_eq!((r.sync.as_str(), r.sync_every), ("fsync", 10));
    assert!(
        r.mib_per_s > 0.0 && r.iops > 0.0 && r.seconds > 0.5,
        "{r:?}"
    );
    // About one fsync per ten writes.
    let writes = r.iops * r.seconds;
    assert!(
        (r.agent_flushes as f64) > writes / 12.0 && (r.agent_flushes as f64) < writes / 8.0,
        "{} fsyncs for {writes:.0} writes",
        r.agent_flushes
    );
    assert!(
        r.lat_p99_us.is_finite() && r.lat_max_us >= r.lat_p99_us,
        "{r:?}"
    );
    sb("seqwr", &["cleanup"]);
}

#[test]
fn fio_random_mixed_at_depth_with_jobs_maps_onto_the_same_columns() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.dat");
    let json = run(Command::new("fio")
        .arg("--output-format=json")
        .args([
            "--name=mix",
            "--rw=randrw",
            "--rwmixread=70",
            "--bs=4k",
            "--size=4M",
            "--ioengine=io_uring",
            "--iodepth=8",
            "--numjobs=2",
            "--runtime=1",
            "--time_based",
        ])
        .arg(format!("--filename={}", file.display()))
        .args(["--name=rr", "--rw=randread", "--bs=4k", "--size=4M"])
        .arg(format!("--filename={}", file.display())));
    let rows = fio(&json, &origin()).unwrap();
    // Two clones of "mix", each a write and a read row, then "rr".
    assert_eq!(rows.len(), 5, "{rows:#?}");
    for m in &rows[..4] {
        assert_eq!(m.kind, "randrw");
        assert_eq!(m.rw_mix_read, Some(70));
        assert_eq!((m.iodepth, m.numjobs), (Some(8), Some(2)));
        assert_eq!(m.engine.as_deref(), Some("io_uring"));
        assert_eq!(m.runtime_s, Some(1.0));
    }
    let r = &rows[4];
    assert_eq!((r.kind.as_str(), r.rw_mix_read), ("randread", Some(100)));
    assert_eq!(
        (r.iodepth, r.numjobs, r.runtime_s),
        (Some(1), Some(1), None)
    );
    assert_eq!(r.engine.as_deref(), Some("psync"));
}
