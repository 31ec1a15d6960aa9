#![allow(missing_docs)] // criterion_group! generates an undocumented public fn
//! Micro-benchmarks of the per-block work: verify fill/check and frame encode/scan.
use criterion::{criterion_group, criterion_main, Criterion};
use zvbench_agent::frame::{encode, scan, Frame};
use zvbench_agent::verify::{check_block, fill_block};

fn bench(c: &mut Criterion) {
    let mut buf = vec![0u8; 1 << 20];
    c.bench_function("fill_block 1 MiB", |b| {
        b.iter(|| fill_block(&mut buf, 5, 7, 0))
    });
    c.bench_function("check_block 1 MiB", |b| {
        b.iter(|| {
            fill_block(&mut buf, 5, 7, 0);
            check_block(&mut buf, 5, 7)
        })
    });
    let line = encode(&Frame::Error {
        message: "x".repeat(4000),
    });
    let log = line.repeat(100);
    c.bench_function("scan 100 frames", |b| b.iter(|| scan(log.as_bytes()).len()));
}

criterion_group!(benches, bench);
criterion_main!(benches);
