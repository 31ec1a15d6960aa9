//! The `zvbench` binary's report-side commands on real files: the story's sysbench table
//! imported and diagnosed, history across runs, and exit status 2 with a clear message on
//! bad input.

use std::path::Path;
use std::process::{Command, Output};

fn zvbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zvbench"))
        .args(args)
        .output()
        .unwrap()
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
