#![allow(missing_docs)] // criterion_group! generates an undocumented public fn
//! Report generation for 100,000 result rows (goal: under 2 s): read `results.csv`,
//! diagnose, write `summary.md`, every plot as PNG and SVG, and `report.html`.
//! Run: `cargo bench -p zvbench-reports --bench report`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;
use zvbench_reports::ResultRow;

/// 100,000 rows: 5 targets × 8 workloads × 2,500 repetitions, with every layer filled.
fn rows() -> impl Iterator<Item = ResultRow> {
    let targets = [
        ("host", "host"),
        ("zvol", "zvol"),
        ("raw", "loop"),
        ("vdi", "image"),
        ("qcow2", "image"),
    ];
    (0..2_500u32).flat_map(move |rep| {
        targets.into_iter().flat_map(move |(t, s)| {
            (0..8u32).map(move |w| {
                let x = f64::from((rep * 7 + w * 13) % 97);
                ResultRow {
                    target: t.into(),
                    storage: s.into(),
                    hypervisor: if s == "host" { "none" } else { "qemu" }.into(),
                    workload: format!("w{w}"),
                    kind: if w % 2 == 0 { "seqwr" } else { "seqrd" }.into(),
                    bs_bytes: 4096 << w,
                    size_bytes: 1 << 30,
                    sync: "fsync".into(),
                    sync_every: 16,
                    repetition: rep + 1,
                    seconds: 10.0 + x / 10.0,
                    mib_per_s: 100.0 + x,
                    iops: 1000.0 + x,
                    lat_p50_us: 50.0 + x,
                    lat_p99_us: 500.0 + x,
                    lat_max_us: 5000.0 + x,
                    flush_p50_us: Some(300.0 + x),
                    flush_p99_us: Some(3000.0 + x),
                    agent_flushes: 64,
                    guest_dev_flushes: Some(64),
                    hv_flushes: Some(64),
                    host_dev_flushes: Some(64 + rep as u64 % 3),
                    zil_commits: (s == "zvol").then_some(64),
                    ..Default::default()
                }
            })
        })
    })
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut w = csv::Writer::from_path(dir.path().join("results.csv")).unwrap();
    let mut n = 0;
    for r in rows() {
        w.serialize(r).unwrap();
        n += 1;
    }
    w.flush().unwrap();
    assert_eq!(n, 100_000);
    let mut g = c.benchmark_group("report");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("100k rows: csv to summary, plots, html", |b| {
        b.iter(|| zvbench_reports::report::write(dir.path()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
