//! Property tests over every parser of untrusted input in the reports crate — results.csv
//! rows, run.json, fio JSON, sysbench text — and over what is computed from their values
//! (compare, history, plots): no panic, no hang (each plot is drawn under a deadline), an
//! error names the problem, and a written row reads back equal.
//!
//! Cases per property: `PROPTEST_CASES` if set, else the small default below (CI). A longer
//! pass: `PROPTEST_CASES=10000 cargo test --release -p zvbench-reports --test properties`.
//! (The plot and report properties run 24 and 12 cases by default: each draws figures.)

use proptest::prelude::*;
use std::sync::mpsc;
use std::time::Duration;
use zvbench_reports::compare::{compare, Comparison, Outcome, Settings, Verdict};
use zvbench_reports::history::{self, Run};
use zvbench_reports::import::{self, ImportError, Origin};
use zvbench_reports::plot::{self, Bar, Chart, Figure, Series};
use zvbench_reports::row::{self, ReadError};
use zvbench_reports::{run_json, ResultRow};

/// `PROPTEST_CASES`, else `default`.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // A failing case is shrunk for at most this long (a hang is not shrunk for ever).
        max_shrink_time: 30_000,
        ..ProptestConfig::default()
    }
}

/// Runs `f` on another thread and fails when it takes longer than `limit` (a plot range
/// loop that never ends fails the test instead of hanging CI).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} did not finish within {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// Any f64, weighted towards the values that broke things: infinities, NaN, the largest
/// and smallest, zero of both signs, negatives.
fn wild() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => 0.0..1e6f64,
        2 => any::<f64>(),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(f64::NAN),
        1 => Just(f64::MAX),
        1 => 1e290..f64::MAX,
        1 => Just(f64::MIN_POSITIVE),
        1 => Just(5e-324),
        1 => Just(-0.0),
        1 => -1e6..0.0f64,
    ]
}

/// A value a row may hold: finite and not negative.
fn measured() -> impl Strategy<Value = f64> {
    prop_oneof![4 => 0.0..1e6f64, 1 => 0.0..f64::MAX, 1 => Just(f64::MAX), 1 => Just(0.0)]
}

/// Any text, including separators, quotes and newlines that CSV must quote.
fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9_-]{1,12}", ".{0,16}", "[,\"\n\r ]{0,4}[a-z]{0,3}"]
}

prop_compose! {
    /// A valid row with arbitrary names and measured values.
    fn valid_row()(
        names in proptest::collection::vec(text(), 8),
        ints in proptest::collection::vec(any::<u64>(), 4),
        opt_ints in proptest::collection::vec(proptest::option::of(any::<u64>()), 14),
        floats in proptest::collection::vec(measured(), 8),
        opt_floats in proptest::collection::vec(proptest::option::of(measured()), 8),
        cache in proptest::option::of("[a-z ]{1,12}"),
        direct in any::<bool>(),
        repetition in any::<u32>(),
        powercut in proptest::collection::vec(proptest::option::of(any::<u64>()), 8),
        powercut_text in proptest::collection::vec(proptest::option::of("[a-z ]{1,12}"), 2),
        shape in (
            proptest::option::of(0u8..=100),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of("[a-z_]{1,12}"),
            proptest::option::of(measured()),
        ),
    ) -> ResultRow {
        ResultRow {
            target: names[0].clone(),
            storage: names[1].clone(),
            hypervisor: names[2].clone(),
            accel: names[3].clone(),
            bus: names[4].clone(),
            cache: names[5].clone(),
            workload: names[6].clone(),
            kind: names[7].clone(),
            bs_bytes: ints[0],
            size_bytes: ints[1],
            direct,
            sync: "fsync".into(),
            sync_every: ints[2],
            repetition,
            seconds: floats[0],
            mib_per_s: floats[1],
            iops: floats[2],
            lat_p50_us: floats[3],
            lat_p90_us: opt_floats[0],
            lat_p99_us: floats[4],
            lat_p999_us: opt_floats[1],
            lat_max_us: floats[5],
            flush_p50_us: opt_floats[2],
            flush_p90_us: opt_floats[3],
            flush_p99_us: opt_floats[4],
            flush_p999_us: opt_floats[5],
            flush_max_us: opt_floats[6],
            agent_flushes: ints[3],
            guest_dev_flushes: opt_ints[0],
            dev_write_cache: cache,
            hv_flushes: opt_ints[1],
            hv_flush_ms: opt_floats[7],
            host_dev_flushes: opt_ints[2],
            host_dev_flush_ms: opt_ints[3],
            zil_commits: opt_ints[4],
            host_dev_write_bytes: opt_ints[5],
            guest_boot_ms: opt_ints[6],
            boot_hello_ms: opt_ints[8],
            boot_first_pass_ms: opt_ints[9],
            vdev_flushes: opt_ints[10],
            cpu_user_s: floats[6],
            cpu_sys_s: floats[7],
            verify_ok: opt_ints[7],
            verify_checked: None,
            powercut_cuts: powercut[0],
            powercut_acked_blocks: powercut[1],
            powercut_lost_blocks: powercut[2],
            powercut_cuts_lost: powercut[3],
            powercut_newest_loss_ms: powercut[4],
            powercut_stale_blocks: powercut[5],
            powercut_torn_blocks: powercut[6],
            powercut_log_flushes: powercut[7],
            powercut_verdict: powercut_text[0].clone(),
            powercut_dropped_at: powercut_text[1].clone(),
            rw_mix_read: shape.0,
            iodepth: shape.1,
            numjobs: shape.2,
            engine: shape.3,
            runtime_s: shape.4,
            agent_write_bytes: opt_ints[11],
            vdev_write_bytes: opt_ints[12],
            vdev_read_bytes: opt_ints[13],
        }
    }
}

fn csv_of(rows: &[ResultRow]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).unwrap();
    }
    w.into_inner().unwrap()
}

proptest! {
    #![proptest_config(config(64))]

    /// Written rows read back equal, whatever their names hold.
    #[test]
    fn results_csv_round_trip(rows in proptest::collection::vec(valid_row(), 1..5)) {
        let back = row::parse(&csv_of(&rows), "results.csv").unwrap();
        prop_assert_eq!(back, rows);
    }

    /// Any bytes: no panic; what is read is valid; an error names the file.
    #[test]
    fn results_csv_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        match row::parse(&bytes, "x/results.csv") {
            Ok(rows) => prop_assert!(rows.iter().all(|r| r.check().is_ok())),
            Err(e) => prop_assert!(e.to_string().contains("x/results.csv"), "{}", e),
        }
    }

    /// One cell of a valid file replaced by anything: read, or refused naming that row and
    /// column (or the file, when the text broke the CSV structure).
    #[test]
    fn results_csv_one_bad_cell(r in valid_row(), col in 0usize..41, cell in prop_oneof![
        "[-+]?(inf|infinity|nan|NaN|1e400|-1|1e308|0x10|)",
        ".{0,8}",
        wild().prop_map(|v| v.to_string()),
    ]) {
        let r = ResultRow { target: "t".into(), workload: "w".into(), ..r };
        let text = String::from_utf8(csv_of(&[r])).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let mut record: Vec<String> = reader.records().next().unwrap().unwrap().iter().map(str::to_string).collect();
        let col = col % header.len();
        record[col] = cell.clone();
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&header).unwrap();
        w.write_record(&record).unwrap();
        match row::parse(&w.into_inner().unwrap(), "results.csv") {
            Ok(rows) => prop_assert!(rows.iter().all(|r| r.check().is_ok())),
            Err(ReadError::Cell { row, line, column, value, .. }) => {
                prop_assert_eq!((row, line), (1, 2));
                prop_assert_eq!(column.as_str(), header[col]);
                prop_assert_eq!(value, cell);
            }
            Err(e) => prop_assert!(false, "{} (cell {:?} in column {})", e, cell, header[col]),
        }
    }

    /// Any bytes as run.json: an object or an error naming the file, never a panic.
    #[test]
    fn run_json_any_bytes(bytes in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        "[\\[\\]{}\":,0-9a-z ]{0,60}".prop_map(String::into_bytes),
    ]) {
        let p = std::path::Path::new("d/run.json");
        match run_json::parse(&bytes, p) {
            Ok(v) => prop_assert!(serde_json::to_value(&v).is_ok_and(|j| j.is_object())),
            Err(e) => prop_assert!(e.to_string().contains("d/run.json")),
        }
    }

    /// fio JSON with arbitrary numbers where fio writes its measurements: every row
    /// imported is a measurement, every refusal names the job and the value.
    #[test]
    fn fio_numbers(runtime in wild(), bw in wild(), iops in wild(), lat in wild(), io_bytes in any::<u64>(), usr in wild()) {
        let num = |v: f64| serde_json::Number::from_f64(v).map_or("null".to_string(), |n| n.to_string());
        let json = format!(r#"{{"jobs": [{{"jobname": "w", "job options": {{"rw": "randwrite", "bs": "4k"}}, "usr_cpu": {},
            "write": {{"io_bytes": {io_bytes}, "runtime": {}, "bw_bytes": {}, "iops": {},
                      "clat_ns": {{"max": {}, "percentile": {{"50.000000": {}, "99.000000": {}}}}}}},
            "read": {{"io_bytes": 0}}, "sync": {{"total_ios": 0}}}}]}}"#,
            num(usr), num(runtime), num(bw), num(iops), num(lat), num(lat), num(lat));
        match import::fio(&json, &Origin { target: "t".into(), baseline: false }) {
            Ok(rows) => for r in rows {
                prop_assert!(r.check().is_ok(), "{:?}", r.check());
                prop_assert!(r.seconds > 0.0 && r.mib_per_s > 0.0 && r.mib_per_s <= 1e8);
            },
            Err(ImportError::Impossible { job, .. }) => prop_assert_eq!(job, "job w, write"),
            Err(e @ ImportError::Missing { .. }) => prop_assert!(e.to_string().contains("job w") || e.to_string().contains("read or wrote"), "{}", e),
            Err(e) => prop_assert!(false, "{}", e),
        }
    }

    /// Any JSON document: no panic.
    #[test]
    fn fio_any_json(doc in json_value()) {
        let o = Origin { target: "t".into(), baseline: true };
        if let Ok(rows) = import::fio(&doc.to_string(), &o) {
            prop_assert!(rows.iter().all(|r| r.check().is_ok()));
        }
        let wrapped = serde_json::json!({"jobs": [doc.clone(), {"jobname": "j", "write": doc}]});
        if let Ok(rows) = import::fio(&wrapped.to_string(), &o) {
            prop_assert!(rows.iter().all(|r| r.check().is_ok()));
        }
    }

    /// sysbench text with one number replaced by anything: a measured row, or an error
    /// naming the line or the column.
    #[test]
    fn sysbench_numbers(line in 0usize..7, value in prop_oneof![
        wild().prop_map(|v| v.to_string()),
        "[-+]?(inf|nan|1e400|0|)",
    ]) {
        let labels = ["writes/s:", "fsyncs/s:", "written, MiB/s:", "total time:", "max:", "95th percentile:", "Block size"];
        let text: String = SYSBENCH.lines().map(|l| {
            if l.contains(labels[line]) {
                let (head, _) = l.rsplit_once(' ').unwrap();
                format!("{head} {value}\n")
            } else { format!("{l}\n") }
        }).collect();
        match import::sysbench(&text, &Origin { target: "t".into(), baseline: true }, None) {
            Ok(r) => prop_assert!(r.check().is_ok() && r.seconds > 0.0, "{:?}", r),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    /// Any text: no panic.
    #[test]
    fn sysbench_any_text(t in prop_oneof![".{0,400}", "(sysbench 1.0.20\n|Doing sequential write test\n|Block size [0-9a-zK]{0,5}\n|[0-9a-zG]{0,5} total file size\n|total time: [-0-9.e]{0,6}s\n|[a-z, /]{0,12}: [-0-9.einf]{0,8}\n){0,20}"]) {
        let _ = import::sysbench(&t, &Origin { target: "t".into(), baseline: true }, Some("w"));
    }

    /// Runs of rows with any values (and any confirmation run, or none): a comparison with
    /// finite numbers only, and at least one of them, or an error.
    #[test]
    fn compare_any_values(history in proptest::collection::vec(proptest::collection::vec(wild_row(), 0..6), 1..4), cur in proptest::collection::vec(wild_row(), 0..6), confirm in proptest::option::of(proptest::collection::vec(wild_row(), 0..6)), threshold in 0.0..100.0f64, boundary in 0.5..0.9999f64) {
        match compare(&history, &cur, confirm.as_deref(), Settings { threshold_pct: threshold, boundary }) {
            Ok(c) => {
                prop_assert!(!c.changes.is_empty() || c.flushes.iter().any(|f| f.base > 0.0 || f.cur > 0.0));
                for f in &c.flushes {
                    prop_assert!(f.base.is_finite() && f.cur.is_finite());
                }
                for ch in &c.changes {
                    prop_assert!(ch.base.is_finite() && ch.cur.is_finite() && ch.change_pct.is_finite());
                    prop_assert!(ch.ci_pct.0.is_finite() && ch.ci_pct.1.is_finite());
                    prop_assert!(ch.confirm_pct.is_none_or(f64::is_finite));
                }
                // With a confirmation run a regression is decided, never a suspicion.
                prop_assert!(confirm.is_none() || c.outcome() != Outcome::Unconfirmed);
                // The current run as its own confirmation changes no verdict, and a
                // confirmation run never adds a regression the current run did not show.
                let settings = Settings { threshold_pct: threshold, boundary };
                let plain = compare(&history, &cur, None, settings).unwrap();
                let own = compare(&history, &cur, Some(&cur), settings).unwrap();
                let verdicts = |c: &Comparison| {
                    c.changes.iter().map(|x| ((x.target.clone(), x.workload.clone(), x.metric), x.verdict)).collect::<Vec<_>>()
                };
                prop_assert_eq!(verdicts(&own), verdicts(&plain));
                for (key, v) in verdicts(&c) {
                    if v == Verdict::Regressed {
                        prop_assert!(verdicts(&plain).contains(&(key, Verdict::Regressed)));
                    }
                }
            }
            Err(e) => prop_assert!(e.to_string().starts_with("nothing to compare: "), "{}", e),
        }
    }
}

proptest! {
    #![proptest_config(config(24))]

    /// Any values in a figure (NaN, infinities, the largest f64, subnormals, negatives):
    /// drawn in bounded time, never a panic.
    #[test]
    fn plots_any_values(values in proptest::collection::vec(wild(), 1..12), log_y in any::<bool>(), bars in any::<bool>()) {
        let chart = if bars {
            Chart::Bars {
                bars: values.chunks(3).enumerate().map(|(i, c)| Bar {
                    label: format!("t{i}"),
                    median: c[0],
                    min: *c.get(1).unwrap_or(&c[0]),
                    max: *c.get(2).unwrap_or(&c[0]),
                }).collect(),
                reference: values.last().map(|v| ("host".to_string(), *v)),
            }
        } else {
            Chart::Lines {
                categories: (0..4).map(|i| format!("c{i}")).collect(),
                series: values.chunks(4).enumerate().map(|(i, c)| Series {
                    name: format!("s{i}"),
                    values: c.iter().map(|v| (!v.is_nan()).then_some(*v)).collect(),
                }).collect(),
                log_y,
                labels: true,
            }
        };
        let fig = Figure { stem: "p".into(), title: "t".into(), y_label: "y".into(), chart };
        let svg = within(Duration::from_secs(20), "plot::svg", move || plot::svg(&fig));
        prop_assert!(svg.is_ok(), "{:?}", svg.err());
    }

    /// History over runs with any values: table and plot in bounded time.
    #[test]
    fn history_any_values(runs in proptest::collection::vec(proptest::collection::vec(wild_row(), 1..4), 1..4)) {
        let runs: Vec<Run> = runs.into_iter().enumerate().map(|(i, rows)| Run {
            dir: Default::default(),
            date: format!("2026-11-0{}T00:00:00Z", i + 1),
            id: i.to_string(),
            rows,
        }).collect();
        let svg = within(Duration::from_secs(20), "history", move || {
            let t = history::trend(&runs, history::metric("mib_per_s").unwrap(), None);
            let _ = history::markdown(&t);
            plot::svg(&history::figure(&t))
        });
        prop_assert!(svg.is_ok(), "{:?}", svg.err());
    }
}

proptest! {
    #![proptest_config(config(12))]

    /// A whole report (diagnosis, tables, every figure, the HTML page) from rows the reader
    /// accepts, with any measured values (up to f64::MAX, NaN where it means "not
    /// measured"): in bounded time, never a panic.
    #[test]
    fn report_any_readable_values(rows in proptest::collection::vec(readable_row(), 1..8)) {
        let (n, html) = within(Duration::from_secs(60), "report", move || {
            let ctx = zvbench_reports::diagnose::Context::default();
            let findings = zvbench_reports::diagnose::diagnose(&rows, &ctx);
            let tables = zvbench_reports::summary::tables(&rows);
            let _ = zvbench_reports::summary::render("t", &tables, &findings, "");
            let figures = zvbench_reports::figures::figures(&rows);
            let inline: Vec<(String, String)> = figures
                .iter()
                .map(|f| (f.stem.clone(), plot::svg(f).unwrap()))
                .collect();
            let page = zvbench_reports::html::render("t", &tables, &findings, &inline, &zvbench_reports::run_json::RunInfo::default(), "");
            (figures.len(), page)
        });
        prop_assert!(n >= 2 && html.contains("</html>"));
    }
}

prop_compose! {
    /// A row the reader accepts, of a few targets and workloads, with any measured values.
    fn readable_row()(r in valid_row(), t in "host|vdi|zvol", w in "[xy]", storage in "host|loop|image",
                      nan in proptest::collection::vec(any::<bool>(), 4)) -> ResultRow {
        let or_nan = |v: f64, n: bool| if n { f64::NAN } else { v };
        ResultRow {
            target: t,
            workload: w,
            storage,
            iops: or_nan(r.iops, nan[0]),
            lat_p50_us: or_nan(r.lat_p50_us, nan[1]),
            lat_p99_us: or_nan(r.lat_p99_us, nan[2]),
            lat_max_us: or_nan(r.lat_max_us, nan[3]),
            ..r
        }
    }
}

prop_compose! {
    /// A row of a few targets and workloads with wild values in the compared metrics.
    fn wild_row()(t in "[ab]", w in "[xy]", mib in wild(), iops in wild(), p99 in wild(), f in proptest::option::of(wild())) -> ResultRow {
        ResultRow { target: t, workload: w, mib_per_s: mib, iops, lat_p99_us: p99, flush_p99_us: f, ..Default::default() }
    }
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        prop_oneof![
            "jobs", "jobname", "write", "read", "runtime", "bw_bytes", "io_bytes", ".{0,6}"
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    "jobs",
                    "jobname",
                    "write",
                    "read",
                    "runtime",
                    "bw_bytes",
                    "io_bytes",
                    "iops",
                    "clat_ns",
                    "percentile",
                    "job options",
                    "global options",
                    "sync",
                    "total_ios",
                    "[a-z]{1,4}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// sysbench 1.0.20's `fileio run` text (shared with the import unit tests).
const SYSBENCH: &str = include_str!("data/sysbench-1.0.20-seqwr.txt");
