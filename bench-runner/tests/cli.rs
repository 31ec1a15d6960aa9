//! The `zvbench` binary's report-side commands on real files: the story's sysbench table
//! imported and diagnosed, history across runs, and exit status 2 with a clear message on
//! bad input.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use zvbench_reports::ResultRow;

/// Longest any report-side command may take here (debug build, 2 cores); a hang is killed
/// at this deadline and fails the test instead of hanging CI.
const DEADLINE: Duration = Duration::from_secs(120);

/// Runs the real `zvbench` binary with a kill deadline (SIGKILL: a hang at 100% CPU may
/// not answer SIGTERM).
fn zvbench(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zvbench"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > DEADLINE {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("zvbench {args:?} did not finish within {DEADLINE:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// A sysbench 1.0.20 `fileio run` text with the given throughput (MiB/s, reads or writes).
fn sysbench_text(mode: &str, mib: f64) -> String {
    let (doing, reads, writes, fsyncs) = match mode {
        "seqwr" => (
            "sequential write (creation)",
            0.0,
            mib * 64.0,
            mib * 64.0 / 100.0,
        ),
        _ => ("sequential read", mib * 64.0, 0.0, 0.0),
    };
    let (read_mib, written_mib) = if mode == "seqwr" {
        (0.0, mib)
    } else {
        (mib, 0.0)
    };
    let fsync_line = if mode == "seqwr" {
        "Periodic FSYNC enabled, calling fsync() each 100 requests."
    } else {
        "Periodic FSYNC disabled."
    };
    format!(
        "sysbench 1.0.20 (using system LuaJIT 2.1.0-beta3)

Extra file open flags: (none)
128 files, 16MiB each
2GiB total file size
Block size 16KiB
{fsync_line}
Calling fsync() at the end of test, Enabled.
Using synchronous I/O mode
Doing {doing} test

File operations:
    reads/s:                      {reads:.2}
    writes/s:                     {writes:.2}
    fsyncs/s:                     {fsyncs:.2}

Throughput:
    read, MiB/s:                  {read_mib:.2}
    written, MiB/s:               {written_mib:.2}

General statistics:
    total time:                          10.0012s
    total number of events:              1000

Latency (ms):
         min:                                    0.00
         avg:                                    0.40
         max:                                   30.00
         95th percentile:                        0.80
         sum:                                 9964.84
"
    )
}

/// The story's table (DEVELOPERS.md): host 36/196, VDI guest 54/566, zvol guest 12/155
/// MB/s for sysbench seqwr/seqrd, written in sysbench's layout and imported.
#[test]
fn the_story_sysbench_table_imported_and_diagnosed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("story");
    let out_s = out.to_str().unwrap();
    for (target, wr, rd) in [
        ("host", 36.0, 196.0),
        ("vdi", 54.0, 566.0),
        ("zvol", 12.0, 155.0),
    ] {
        for (mode, mib) in [("seqwr", wr), ("seqrd", rd)] {
            let f = dir.path().join(format!("{target}-{mode}.txt"));
            std::fs::write(&f, sysbench_text(mode, mib)).unwrap();
            let mut args = vec![
                "import",
                "sysbench",
                f.to_str().unwrap(),
                "--out",
                out_s,
                "--target",
                target,
            ];
            if target == "host" {
                args.push("--baseline");
            }
            let o = zvbench(&args);
            assert!(o.status.success(), "{o:?}");
        }
    }
    let o = zvbench(&["report", out_s]);
    assert!(o.status.success(), "{o:?}");
    let md = String::from_utf8(o.stdout).unwrap();
    assert!(md.contains("| vdi | imported | – | 54.0 |"), "{md}");
    assert!(md.contains("| 1.50x host |"), "{md}");
    assert!(md.contains("| 0.33x host |"), "{md}");
    assert!(
        md.contains("`guest-faster-than-host` **vdi / seqwr-16K**"),
        "the VDI guest out-writes its host on a flush-bound workload: {md}"
    );
    assert!(
        md.contains("`reads-from-cache` **vdi / seqrd-16K**"),
        "{md}"
    );
    assert!(
        out.join("report.html").exists() && out.join("plots/throughput-seqwr-16K.png").exists()
    );
}

#[test]
fn history_orders_runs_by_date() {
    let dir = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    for (name, mib) in [("b", 40.0), ("a", 30.0)] {
        let run = dir.path().join(name);
        let f = dir.path().join(format!("{name}.txt"));
        std::fs::write(&f, sysbench_text("seqwr", mib)).unwrap();
        let o = zvbench(&[
            "import",
            "sysbench",
            f.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--target",
            "host",
        ]);
        assert!(o.status.success(), "{o:?}");
        dirs.push(run);
    }
    // Run "a" is older: set its date back.
    let a_json = dirs[1].join("run.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&a_json).unwrap()).unwrap();
    v["date"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(&a_json, v.to_string()).unwrap();
    let plots = dir.path().join("trend");
    let o = zvbench(&[
        "history",
        dirs[0].to_str().unwrap(),
        dirs[1].to_str().unwrap(),
        "--out",
        plots.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{o:?}");
    let md = String::from_utf8(o.stdout).unwrap();
    let a = md.find("| 30.0 |").expect(&md);
    let b = md.find("| 40.0 |").expect(&md);
    assert!(a < b, "oldest first: {md}");
    assert!(Path::new(&plots.join("history.png")).exists());
}

#[test]
fn bad_input_exits_2_and_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.txt");
    std::fs::write(&junk, "not a tool's output").unwrap();
    let out = dir.path().join("out");
    for (args, says) in [
        (
            vec![
                "import",
                "sysbench",
                junk.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            "sysbench <version>",
        ),
        (
            vec![
                "import",
                "fio",
                junk.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            "--output-format=json",
        ),
        (vec!["report", dir.path().to_str().unwrap()], "results.csv"),
        (vec!["history", dir.path().to_str().unwrap()], "run.json"),
        (
            vec!["history", dir.path().to_str().unwrap(), "--metric", "speed"],
            "unknown metric",
        ),
    ] {
        let o = zvbench(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(
        !out.join("results.csv").exists(),
        "nothing written from bad input"
    );
}

/// A run directory with these rows in results.csv and a run.json dated `date`.
fn run_dir(parent: &Path, name: &str, rows: &[ResultRow], date: &str) -> String {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut w = csv::Writer::from_path(dir.join("results.csv")).unwrap();
    for r in rows {
        w.serialize(r).unwrap();
    }
    w.flush().unwrap();
    std::fs::write(
        dir.join("run.json"),
        format!(r#"{{"run_id": "{name}", "date": "{date}"}}"#),
    )
    .unwrap();
    dir.to_str().unwrap().to_string()
}

fn row(target: &str, workload: &str, mib: f64) -> ResultRow {
    ResultRow {
        target: target.into(),
        storage: "loop".into(),
        workload: workload.into(),
        kind: "seqwr".into(),
        seconds: 1.0,
        mib_per_s: mib,
        iops: mib * 64.0,
        lat_p50_us: 10.0,
        lat_p99_us: 100.0,
        lat_max_us: 1000.0,
        ..Default::default()
    }
}

/// Replaces the text of one cell (by column name) in every data row of a results.csv.
fn set_cell(dir: &str, column: &str, value: &str) {
    let p = Path::new(dir).join("results.csv");
    let text = std::fs::read_to_string(&p).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let i = lines[0].split(',').position(|h| h == column).unwrap();
    for l in &mut lines[1..] {
        let mut cells: Vec<&str> = l.split(',').collect();
        cells[i] = value;
        *l = cells.join(",");
    }
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Issue 9 item 4: `import` appended its rows and only then failed on a broken run.json,
/// one more row on every retry.
#[test]
fn import_after_a_refused_run_json_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("sb.txt");
    std::fs::write(&f, sysbench_text("seqwr", 36.0)).unwrap();
    let out = dir.path().join("run");
    let args = [
        "import",
        "sysbench",
        f.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    assert!(zvbench(&args).status.success());
    std::fs::write(out.join("run.json"), "{broken").unwrap();
    let before = std::fs::read(out.join("results.csv")).unwrap();
    for _ in 0..3 {
        let o = zvbench(&args);
        assert_eq!(o.status.code(), Some(2), "{o:?}");
        assert!(
            stderr(&o).contains("run.json is not valid JSON"),
            "{}",
            stderr(&o)
        );
        assert_eq!(std::fs::read(out.join("results.csv")).unwrap(), before);
    }
    // Two files, the second refused: the first is not imported either.
    let bad = dir.path().join("bad.txt");
    std::fs::write(
        &bad,
        sysbench_text("seqwr", 36.0).replace("10.0012s", "0.0000s"),
    )
    .unwrap();
    std::fs::remove_file(out.join("run.json")).unwrap();
    let o = zvbench(&[
        "import",
        "sysbench",
        f.to_str().unwrap(),
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(stderr(&o).contains("bad.txt"), "{}", stderr(&o));
    assert_eq!(std::fs::read(out.join("results.csv")).unwrap(), before);
    assert!(!out.join("run.json").exists());
}

/// Issue 9 item 8: `report`, `history --out` and `compare` spun forever at 100% CPU on
/// `inf` or values near f64::MAX. Now inf (and negatives) are refused naming file, row and
/// column, nothing written; f64::MAX is drawn in bounded time.
#[test]
fn inf_is_refused_and_huge_values_do_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let base = run_dir(
        dir.path(),
        "base",
        // 2 s a pass: over 10,000 requests, so the p99 is gated.
        &[100.0, 102.0].map(|mib| ResultRow {
            seconds: 2.0,
            ..row("vdi", "w", mib)
        }),
        "2026-11-01T00:00:00Z",
    );
    for (value, says) in [
        ("inf", "\"inf\" is not a finite number"),
        ("-5", "\"-5\" is negative"),
        ("1e999", "is not a finite number"),
    ] {
        let bad = run_dir(
            dir.path(),
            "bad",
            &[row("vdi", "w", 1.0), row("vdi", "w", 1.0)],
            "2026-11-02T00:00:00Z",
        );
        set_cell(&bad, "mib_per_s", value);
        let hist = dir.path().join("hist-bad");
        for args in [
            vec!["report", bad.as_str()],
            vec![
                "history",
                base.as_str(),
                bad.as_str(),
                "--out",
                hist.to_str().unwrap(),
            ],
            vec!["compare", base.as_str(), bad.as_str()],
        ] {
            let o = zvbench(&args);
            let e = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
            assert!(
                e.contains("bad/results.csv: row 1 (line 2), column mib_per_s") && e.contains(says),
                "{args:?}: {e}"
            );
        }
        assert!(!Path::new(&bad).join("summary.md").exists() && !hist.exists());
    }
    let huge = run_dir(
        dir.path(),
        "huge",
        &[row("vdi", "w", 1.0), row("vdi", "w", 1.0)],
        "2026-11-03T00:00:00Z",
    );
    for column in ["mib_per_s", "iops", "lat_p99_us", "lat_max_us"] {
        set_cell(&huge, column, "1.7976931348623157e308");
    }
    let o = zvbench(&["report", &huge]);
    assert!(o.status.success(), "{o:?}");
    assert!(Path::new(&huge).join("plots/latency-w.png").exists());
    let hist = dir.path().join("hist");
    let o = zvbench(&["history", &base, &huge, "--out", hist.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    assert!(hist.join("history.png").exists());
    // 101 → f64::MAX: finite changes with short numbers; the latency regressed (exit 3:
    // in the one current run given).
    let o = zvbench(&["compare", &base, &huge]);
    let md = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(
        md.contains("| vdi | w | mib_per_s | median | 101.0 | 1.798e308 | +1.780e308% |"),
        "{md}"
    );
    assert!(md.contains("| vdi | w | lat_p99_us | median |"), "{md}");
}

/// Issue 9 item 10: `compare` said "no change" (exit 0) when the runs shared nothing,
/// when one was empty, or when the values were NaN.
#[test]
fn compare_with_nothing_comparable_exits_2_and_lists_unmatched_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = "2026-11-01T00:00:00Z";
    let a = run_dir(dir.path(), "a", &[row("vdi", "w", 100.0)], d);
    let other = run_dir(dir.path(), "other", &[row("zvol", "x", 100.0)], d);
    let empty = run_dir(dir.path(), "empty", &[], d);
    let nan_row = |mib| ResultRow {
        iops: f64::NAN,
        lat_p99_us: f64::NAN,
        ..row("vdi", "w", mib)
    };
    let nan_base = run_dir(dir.path(), "nanbase", &[nan_row(0.0)], d);
    let nan_cur = run_dir(dir.path(), "nancur", &[nan_row(5.0)], d);
    for (base, cur, says) in [
        (&a, &other, "nothing to compare: the runs share no target and workload (baseline: vdi / w; current: zvol / x)"),
        (&a, &empty, "empty/results.csv has no rows"),
        (&empty, &a, "empty/results.csv has no rows"),
        (&nan_base, &nan_cur, "no metric has a finite, non-zero value in both runs"),
    ] {
        for format in ["md", "json"] {
            let o = zvbench(&["compare", base, cur, "--format", format]);
            assert_eq!(o.status.code(), Some(2), "{base} {cur}: {o:?}");
            assert!(stderr(&o).contains(says), "{}", stderr(&o));
        }
    }
    let mut rows = vec![row("vdi", "w", 100.0), row("old", "w", 1.0)];
    let base = run_dir(dir.path(), "base", &rows, d);
    rows[1] = row("new", "w", 1.0);
    let cur = run_dir(dir.path(), "cur", &rows, d);
    let o = zvbench(&["compare", &base, &cur]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(
        md.contains("Only in the baseline (not compared):\n\n- old / w"),
        "{md}"
    );
    assert!(
        md.contains("Only in the current run (not compared):\n\n- new / w"),
        "{md}"
    );
    let o = zvbench(&["compare", &base, &cur, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["only_in_base"], serde_json::json!([["old", "w"]]));
    assert_eq!(v["changes"][0]["verdict"], "no_change");
}

/// `zvbench compare … | head`: a reader that stops early ended the output commands with a
/// panic ("failed printing to stdout: Broken pipe", exit 101); they now stop quietly.
#[test]
fn compare_into_a_closed_pipe_stops_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let d = "2026-11-01T00:00:00Z";
    let rows: Vec<_> = (0..200)
        .map(|i| row(&format!("t{i}"), "w", 100.0))
        .collect();
    let base = run_dir(dir.path(), "base", &rows, d);
    let cur = run_dir(dir.path(), "cur", &rows, d);
    let (rd, wr) = nix::unistd::pipe().unwrap();
    drop(rd); // the reader is gone before the first write
    let o = Command::new(env!("CARGO_BIN_EXE_zvbench"))
        .args(["compare", &base, &cur])
        .stdout(Stdio::from(wr))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(libc::SIGPIPE), "{o:?}");
}

/// Issue 9 item 11: `report` on an empty or header-only results.csv, or a directory in its
/// place, wrote an empty report and exited 0.
#[test]
fn report_without_rows_exits_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (name, setup, says) in [
        ("empty", "", "has no rows"),
        ("header", "HEADER", "has no rows"),
        ("directory", "DIR", "is not a regular file"),
    ] {
        let run = dir.path().join(name);
        std::fs::create_dir(&run).unwrap();
        let csv = run.join("results.csv");
        match setup {
            "DIR" => std::fs::create_dir(&csv).unwrap(),
            "HEADER" => {
                let mut w = csv::Writer::from_writer(Vec::new());
                w.serialize(row("t", "w", 1.0)).unwrap();
                let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
                std::fs::write(&csv, text.lines().next().unwrap().to_string() + "\n").unwrap();
            }
            text => std::fs::write(&csv, text).unwrap(),
        }
        let o = zvbench(&["report", run.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{name}: {o:?}");
        assert!(stderr(&o).contains(says), "{name}: {}", stderr(&o));
        let mut left: Vec<_> = std::fs::read_dir(&run)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["results.csv"], "{name}: nothing written");
    }
}

/// Issue 9 item 14: importers took negative bandwidth, a zero run time, 1e308 IOPS and a
/// `--workload` name `--target` refuses.
#[test]
fn import_refuses_impossible_numbers_and_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let text = sysbench_text("seqwr", 36.0);
    for (from, to, extra, says) in [
        (
            "written, MiB/s:               36.00",
            "written, MiB/s: -36",
            "",
            "mib_per_s = -36 is impossible (is negative)",
        ),
        (
            "10.0012s",
            "0s",
            "",
            "seconds = 0 is impossible (no run time",
        ),
        (
            "writes/s:                     2304.00",
            "writes/s: 1e308",
            "",
            "iops = 1e308 is impossible (over a billion requests per second)",
        ),
        ("", "", "a b", "workload name \"a b\" must be 1-32 letters"),
        ("", "", "=-rf", "workload name \"-rf\""),
    ] {
        assert!(text.contains(from), "{from}");
        let f = dir.path().join("in.txt");
        std::fs::write(&f, text.replacen(from, to, 1)).unwrap();
        let mut args = vec![
            "import",
            "sysbench",
            f.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        let flag = format!(
            "--workload{}{extra}",
            if extra.starts_with('=') { "" } else { "=" }
        );
        if !extra.is_empty() {
            args.push(&flag);
        }
        let o = zvbench(&args);
        assert_eq!(o.status.code(), Some(2), "{to}{extra}: {o:?}");
        assert!(stderr(&o).contains(says), "{to}{extra}: {}", stderr(&o));
        assert!(!out.exists(), "nothing created from bad input");
    }
    let fio = dir.path().join("fio.json");
    std::fs::write(
        &fio,
        r#"{"jobs": [{"jobname": "w", "job options": {"rw": "write"},
        "write": {"io_bytes": 4096, "runtime": 10, "bw_bytes": -409600, "iops": 100},
        "read": {"io_bytes": 0}, "sync": {"total_ios": 0}}]}"#,
    )
    .unwrap();
    let o = zvbench(&[
        "import",
        "fio",
        fio.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        stderr(&o).contains("fio job w, write: mib_per_s = -0.390625 is impossible"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

/// Issue 16: a directory of baseline runs is a history; the output names the method and
/// how many runs it rests on; lost flushes exit 1 naming the layer although throughput
/// improved; `--lookback` keeps the newest runs.
#[test]
fn compare_against_a_history_gates_flush_counts() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    let pass = |mib: f64, host: u64| ResultRow {
        hypervisor: "qemu".into(),
        agent_flushes: 129,
        guest_dev_flushes: Some(129),
        hv_flushes: Some(129),
        host_dev_flushes: Some(host),
        ..row("raw", "fsync", mib)
    };
    for (i, mib) in [100.0, 103.0, 98.0, 101.0].into_iter().enumerate() {
        run_dir(
            &history,
            &format!("run{i}"),
            &[pass(mib, 128), pass(mib * 1.01, 128), pass(mib * 0.99, 128)],
            "2026-11-01T00:00:00Z",
        );
    }
    let h = history.to_str().unwrap();
    let same = run_dir(
        dir.path(),
        "same",
        &vec![pass(100.0, 128); 3],
        "2026-11-02T00:00:00Z",
    );
    let o = zvbench(&["compare", h, &same]);
    let md = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{md}{}", stderr(&o));
    assert!(md.contains("t-test over 4 baseline runs"), "{md}");
    let o = zvbench(&["compare", h, &same, "--lookback", "1"]);
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(
        md.contains("1 baseline run: between-run noise unknown"),
        "{md}"
    );
    let unsafe_cache = run_dir(
        dir.path(),
        "unsafe",
        &vec![pass(300.0, 0); 3],
        "2026-11-02T00:00:00Z",
    );
    let o = zvbench(&["compare", h, &unsafe_cache]);
    let md = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{md}");
    assert!(
        md.contains("raw / fsync: **flushes lost at host device**: 128.0 → 0.0 per pass"),
        "{md}"
    );
    assert!(
        md.contains("| raw | fsync | mib_per_s |") && md.contains("improved"),
        "{md}"
    );
    let o = zvbench(&[
        "compare",
        dir.path().join("nowhere").to_str().unwrap(),
        &same,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot list"), "{}", stderr(&o));
}

/// Issue 16: a throughput drop in one current run exits 3 (a suspicion); `--confirm` with
/// a second run decides: 1 when it shows the drop too, 0 when it does not; a run compared
/// with itself (the current run as its confirmation or in the history) is refused.
#[test]
fn compare_asks_for_a_confirmation_run_before_failing_on_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    let runs = |mib: f64| vec![row("raw", "seqrd", mib * 0.97), row("raw", "seqrd", mib)];
    for (i, mib) in [100.0, 103.0, 98.0, 101.0, 99.0].into_iter().enumerate() {
        run_dir(
            &history,
            &format!("run{i}"),
            &runs(mib),
            "2026-11-01T00:00:00Z",
        );
    }
    let h = history.to_str().unwrap();
    let at = "2026-11-02T00:00:00Z";
    let slow = run_dir(dir.path(), "slow", &runs(70.0), at);
    let slow2 = run_dir(dir.path(), "slow2", &runs(69.0), at);
    let fine = run_dir(dir.path(), "fine", &runs(100.0), at);
    let other = run_dir(dir.path(), "other", &[row("raw", "seqwr", 70.0)], at);
    let o = zvbench(&["compare", h, &slow]);
    let md = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{md}{}", stderr(&o));
    assert!(
        md.contains("**regression in this run, unconfirmed**"),
        "{md}"
    );
    assert!(md.contains("| raw | seqrd | mib_per_s | best |"), "{md}");
    let o = zvbench(&["compare", h, &slow, "--confirm", &slow2]);
    let md = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{md}{}", stderr(&o));
    assert!(md.contains("confirmation run shows it too"), "{md}");
    let o = zvbench(&["compare", h, &slow, "--confirm", &fine]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = zvbench(&["compare", h, &slow, "--confirm", &slow]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is the current run or a baseline run"),
        "{}",
        stderr(&o)
    );
    let run0 = history.join("run0");
    let o = zvbench(&["compare", h, &slow, "--confirm", run0.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let o = zvbench(&["compare", h, run0.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is also one of the baseline runs"),
        "{}",
        stderr(&o)
    );
    // A confirmation run without this workload cannot clear the regression.
    let o = zvbench(&["compare", h, &slow, "--confirm", &other]);
    let md = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{md}{}", stderr(&o));
    assert!(
        md.contains("raw / seqrd mib_per_s: no finite value in the confirmation run: the current run's verdict stands"),
        "{md}"
    );
}
