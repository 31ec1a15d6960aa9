//! `zvbench import`: results people already have — fio JSON (`--output-format=json`) and
//! sysbench 1.0.20 `fileio` text — as `results.csv` rows, so they sit beside zvbench's in
//! one report. Inputs are parsed with bounds: a size limit, required fields named in errors.
//!
//! What cannot be carried over is left empty or NaN, never invented: neither tool sees
//! below its own system calls, so the lower layers of the flush trace stay empty; sysbench
//! reports no median latency, and its latency percentile is kept only when it is the 99th
//! (`--percentile=99`). sysbench's fsync count is its fsync rate × run time, rounded.

use crate::ResultRow;
use serde_json::Value;
use zvbench_agent::ByteSize;

/// Largest input accepted (fio JSON of many jobs stays far below it).
pub const MAX_INPUT: usize = 16 << 20;

/// Why an input could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Over [`MAX_INPUT`].
    #[error(
        "input is {0} bytes, over the {MAX_INPUT}-byte limit: is it really one tool's output?"
    )]
    TooLarge(usize),
    /// Not JSON.
    #[error("not fio JSON output ({0}): run fio with --output-format=json")]
    Json(#[from] serde_json::Error),
    /// A number no real run of the tool can have produced.
    #[error("{tool} {job}: {column} = {} is impossible ({why}); is this the output of a finished run?", crate::stats::plain(*value))]
    Impossible {
        /// fio or sysbench.
        tool: &'static str,
        /// Which job or text.
        job: String,
        /// The results.csv column it would fill.
        column: &'static str,
        /// The value.
        value: f64,
        /// Why it cannot be.
        why: &'static str,
    },
    /// A field or line the format always has is missing or malformed.
    #[error("{tool} output without {what}: {hint}")]
    Missing {
        /// fio or sysbench.
        tool: &'static str,
        /// The missing field or line.
        what: String,
        /// How to get a complete output.
        hint: &'static str,
    },
}

/// Who the imported results belong to.
#[derive(Debug, Clone)]
pub struct Origin {
    /// Target name for the rows.
    pub target: String,
    /// The host baseline (storage `host`, no hypervisor), else storage `imported`.
    pub baseline: bool,
}

impl Origin {
    fn row(&self) -> ResultRow {
        ResultRow {
            target: self.target.clone(),
            storage: if self.baseline { "host" } else { "imported" }.into(),
            hypervisor: if self.baseline { "none" } else { "" }.into(),
            repetition: 1,
            ..Default::default()
        }
    }
}

/// Upper bounds far beyond any storage today, so only nonsense is refused: 100 TiB/s,
/// a billion requests per second, a run of 100 days, a latency of 100 days.
const MAX_MIB_PER_S: f64 = 1e8;
const MAX_IOPS: f64 = 1e9;
const MAX_SECONDS: f64 = 1e7;
const MAX_LATENCY_US: f64 = 1e13;

/// Refuses a row no real run can have produced: what [`ResultRow::check`] refuses (infinite,
/// negative), no run time, no throughput, or beyond the bounds above.
fn plausible(row: ResultRow, tool: &'static str, job: &str) -> Result<ResultRow, ImportError> {
    let bad = |column, value, why| ImportError::Impossible {
        tool,
        job: job.to_string(),
        column,
        value,
        why,
    };
    row.check().map_err(|b| bad(b.column, b.value, b.problem))?;
    let latencies = [
        ("lat_p50_us", Some(row.lat_p50_us)),
        ("lat_p90_us", row.lat_p90_us),
        ("lat_p99_us", Some(row.lat_p99_us)),
        ("lat_p999_us", row.lat_p999_us),
        ("lat_max_us", Some(row.lat_max_us)),
        ("flush_p50_us", row.flush_p50_us),
        ("flush_p90_us", row.flush_p90_us),
        ("flush_p99_us", row.flush_p99_us),
        ("flush_p999_us", row.flush_p999_us),
        ("flush_max_us", row.flush_max_us),
    ];
    let checks = [
        (
            "seconds",
            row.seconds,
            row.seconds > 0.0,
            "no run time: the tool measured nothing",
        ),
        (
            "seconds",
            row.seconds,
            row.seconds <= MAX_SECONDS,
            "a run of over 100 days",
        ),
        (
            "mib_per_s",
            row.mib_per_s,
            row.mib_per_s > 0.0,
            "no throughput although data moved",
        ),
        (
            "mib_per_s",
            row.mib_per_s,
            row.mib_per_s <= MAX_MIB_PER_S,
            "over 100 TiB/s",
        ),
        (
            "iops",
            row.iops,
            row.iops.is_nan() || row.iops <= MAX_IOPS,
            "over a billion requests per second",
        ),
    ];
    for (column, value, ok, why) in checks {
        if !ok {
            return Err(bad(column, value, why));
        }
    }
    for (column, value) in latencies {
        if let Some(v) = value.filter(|v| *v > MAX_LATENCY_US) {
            return Err(bad(column, v, "a latency of over 100 days"));
        }
    }
    Ok(row)
}

fn check_size(input: &str) -> Result<(), ImportError> {
    if input.len() > MAX_INPUT {
        return Err(ImportError::TooLarge(input.len()));
    }
    Ok(())
}

const FIO_HINT: &str = "give the JSON fio wrote with --output-format=json";

fn fio_missing(what: impl Into<String>) -> ImportError {
    ImportError::Missing {
        tool: "fio",
        what: what.into(),
        hint: FIO_HINT,
    }
}

/// A job option from the job's own options, else the global ones.
fn fio_option<'a>(doc: &'a Value, job: &'a Value, key: &str) -> Option<&'a str> {
    job["job options"][key]
        .as_str()
        .or_else(|| doc["global options"][key].as_str())
}

fn pct_us(v: &Value, p: &str) -> Option<f64> {
    v["percentile"][p].as_f64().map(|ns| ns / 1000.0)
}

/// What a fio job's options say about its shape, in zvbench's columns.
struct FioShape {
    random: bool,
    mixed: bool,
    read_pct: u8,
    iodepth: u32,
    numjobs: u32,
    engine: String,
    runtime_s: Option<f64>,
}

impl FioShape {
    fn of(doc: &Value, job: &Value, rw: &str) -> FioShape {
        let opt = |k: &str| fio_option(doc, job, k);
        let rw = rw.split(':').next().unwrap_or(rw);
        let random = rw.starts_with("rand");
        let mixed = matches!(rw, "rw" | "readwrite" | "randrw");
        let num = |k: &str| opt(k).and_then(|v| v.trim().parse::<u64>().ok());
        let read_pct = if mixed {
            num("rwmixread")
                .or_else(|| num("rwmixwrite").map(|w| 100u64.saturating_sub(w)))
                .unwrap_or(50)
                .min(100) as u8
        } else if rw.contains("write") || rw == "trim" || rw == "randtrim" {
            0
        } else {
            100
        };
        // fio's runtime is seconds unless suffixed (its JSON leaves `time_based` out, so
        // a runtime that bounded a size-based job is taken as its runtime too).
        let runtime_s = opt("runtime").and_then(|v| {
            let v = v.trim();
            let (digits, mult) = match v.strip_suffix("ms") {
                Some(d) => (d, 1e-3),
                None => match v.strip_suffix('m') {
                    Some(d) => (d, 60.0),
                    None => (v.trim_end_matches('s'), 1.0),
                },
            };
            digits.parse::<f64>().ok().map(|x| x * mult)
        });
        FioShape {
            random,
            mixed,
            read_pct,
            iodepth: num("iodepth").unwrap_or(1).clamp(1, u64::from(u32::MAX)) as u32,
            numjobs: num("numjobs").unwrap_or(1).clamp(1, u64::from(u32::MAX)) as u32,
            engine: opt("ioengine").unwrap_or("psync").to_string(),
            runtime_s,
        }
    }

    /// zvbench's kind for the `seqwr` or `seqrd` direction of this job: a mixed job's
    /// two directions are both `randrw` (or `seq`… when sequential), one row each.
    fn kind(&self, dir_kind: &'static str) -> &'static str {
        match (self.random, self.mixed, dir_kind) {
            (true, true, _) => "randrw",
            (true, false, "seqwr") => "randwrite",
            (true, false, _) => "randread",
            (false, _, k) => k,
        }
    }
}

/// The rows of a fio JSON output: one per job and direction that moved data.
pub fn fio(input: &str, origin: &Origin) -> Result<Vec<ResultRow>, ImportError> {
    check_size(input)?;
    let doc: Value = serde_json::from_str(input)?;
    let jobs = doc["jobs"]
        .as_array()
        .ok_or_else(|| fio_missing("a \"jobs\" array"))?;
    let mut out = Vec::new();
    for job in jobs {
        let name = job["jobname"]
            .as_str()
            .ok_or_else(|| fio_missing("a job's \"jobname\""))?;
        let opt = |k| fio_option(&doc, job, k);
        let rw = opt("rw").or_else(|| opt("readwrite")).unwrap_or("read");
        let bs = match opt("bs") {
            Some(s) => {
                s.parse::<ByteSize>()
                    .map_err(|e| fio_missing(format!("a valid bs for job {name} ({e})")))?
                    .0
            }
            None => 4096,
        };
        let (sync, every) = if let Some(n) = opt("fsync") {
            ("fsync", n.parse().unwrap_or(0))
        } else if let Some(n) = opt("fdatasync") {
            ("fdatasync", n.parse().unwrap_or(0))
        } else {
            match opt("sync") {
                Some("1" | "sync") => ("osync", 0),
                Some("dsync") => ("odsync", 0),
                _ => ("none", 0),
            }
        };
        let shape = FioShape::of(&doc, job, rw);
        let synced = &job["sync"];
        let flushes = synced["total_ios"].as_u64().unwrap_or(0);
        // A sync percentile, when the job synced at all.
        let sync_pct = |p: &str| {
            (flushes > 0)
                .then(|| pct_us(&synced["lat_ns"], p))
                .flatten()
        };
        for (dir, kind) in [("write", "seqwr"), ("read", "seqrd")] {
            let d = &job[dir];
            let bytes = d["io_bytes"].as_u64().unwrap_or(0);
            if bytes == 0 {
                continue;
            }
            let seconds = d["runtime"]
                .as_f64()
                .ok_or_else(|| fio_missing(format!("{dir}.runtime of job {name}")))?
                / 1000.0;
            let clat = &d["clat_ns"];
            let row = ResultRow {
                workload: name.to_string(),
                kind: shape.kind(kind).to_string(),
                rw_mix_read: Some(shape.read_pct),
                iodepth: Some(shape.iodepth),
                numjobs: Some(shape.numjobs),
                engine: Some(shape.engine.clone()),
                runtime_s: shape.runtime_s,
                bs_bytes: bs,
                size_bytes: bytes,
                direct: opt("direct") == Some("1"),
                sync: sync.into(),
                sync_every: every,
                seconds,
                mib_per_s: d["bw_bytes"]
                    .as_f64()
                    .ok_or_else(|| fio_missing(format!("{dir}.bw_bytes of job {name}")))?
                    / 1048576.0,
                iops: d["iops"].as_f64().unwrap_or(f64::NAN),
                lat_p50_us: pct_us(clat, "50.000000").unwrap_or(f64::NAN),
                lat_p90_us: pct_us(clat, "90.000000"),
                lat_p99_us: pct_us(clat, "99.000000").unwrap_or(f64::NAN),
                lat_p999_us: pct_us(clat, "99.900000"),
                lat_max_us: clat["max"].as_f64().map_or(f64::NAN, |ns| ns / 1000.0),
                flush_p50_us: sync_pct("50.000000"),
                flush_p90_us: sync_pct("90.000000"),
                flush_p99_us: sync_pct("99.000000"),
                flush_p999_us: sync_pct("99.900000"),
                flush_max_us: (flushes > 0)
                    .then(|| synced["lat_ns"]["max"].as_f64().map(|ns| ns / 1000.0))
                    .flatten(),
                agent_flushes: if dir == "write" { flushes } else { 0 },
                cpu_user_s: job["usr_cpu"].as_f64().unwrap_or(0.0) / 100.0 * seconds,
                cpu_sys_s: job["sys_cpu"].as_f64().unwrap_or(0.0) / 100.0 * seconds,
                ..origin.row()
            };
            out.push(plausible(row, "fio", &format!("job {name}, {dir}"))?);
        }
    }
    if out.is_empty() {
        return Err(fio_missing("a job that read or wrote data"));
    }
    Ok(out)
}

const SYSBENCH_HINT: &str = "give the whole text of `sysbench fileio ... run` (sysbench 1.0.20)";

fn sysbench_missing(what: &str) -> ImportError {
    ImportError::Missing {
        tool: "sysbench",
        what: what.into(),
        hint: SYSBENCH_HINT,
    }
}

/// The text after `label` on the line that starts with it (after indentation).
fn after<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
}

fn number(text: &str, label: &str) -> Result<f64, ImportError> {
    after(text, label)
        .and_then(|v| v.trim_end_matches('s').parse::<f64>().ok())
        .ok_or_else(|| sysbench_missing(label))
}

/// The row of one `sysbench fileio run` text; `workload` names it (default
/// `<mode>-<block size>`).
pub fn sysbench(
    input: &str,
    origin: &Origin,
    workload: Option<&str>,
) -> Result<ResultRow, ImportError> {
    check_size(input)?;
    if !input.lines().any(|l| l.starts_with("sysbench ")) {
        return Err(sysbench_missing("its \"sysbench <version>\" first line"));
    }
    let mode =
        after(input, "Doing ").ok_or_else(|| sysbench_missing("the \"Doing ... test\" line"))?;
    let kind = match mode {
        m if m.starts_with("sequential write") || m.starts_with("sequential rewrite") => "seqwr",
        m if m.starts_with("sequential read") => "seqrd",
        m if m.starts_with("random write") => "randwrite",
        m if m.starts_with("random read") => "randread",
        _ => "randrw",
    };
    let bs = after(input, "Block size")
        .and_then(|v| v.parse::<ByteSize>().ok())
        .map(ByteSize::bytes)
        .ok_or_else(|| sysbench_missing("Block size"))?;
    let total = input
        .lines()
        .find_map(|l| l.trim().strip_suffix("total file size"))
        .and_then(|v| v.parse::<ByteSize>().ok())
        .map(ByteSize::bytes)
        .ok_or_else(|| sysbench_missing("<size> total file size"))?;
    let (sync, every) = match after(input, "Periodic FSYNC enabled, calling fsync() each ") {
        Some(rest) => (
            "fsync",
            rest.split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| sysbench_missing("the periodic FSYNC count"))?,
        ),
        None => ("none", 0),
    };
    let seconds = number(input, "total time:")?;
    let (ops, mib) = if kind.ends_with("rd") {
        (number(input, "reads/s:")?, number(input, "read, MiB/s:")?)
    } else {
        (
            number(input, "writes/s:")?,
            number(input, "written, MiB/s:")?,
        )
    };
    let fsync_rate = number(input, "fsyncs/s:")?;
    if !(0.0..=MAX_IOPS).contains(&fsync_rate) {
        return Err(ImportError::Impossible {
            tool: "sysbench",
            job: "output".into(),
            column: "agent_flushes",
            value: fsync_rate,
            why: "the fsync rate must be from 0 to a billion per second",
        });
    }
    let fsyncs = (fsync_rate * seconds).round() as u64;
    // "95th percentile:" unless --percentile=N changed it.
    let p99 = input.lines().map(str::trim).find_map(|l| {
        let (label, v) = l.split_once("th percentile:")?;
        (label == "99")
            .then(|| v.trim().parse::<f64>().ok())
            .flatten()
    });
    let name = workload.map_or_else(|| format!("{kind}-{}", ByteSize(bs)), str::to_string);
    let row = ResultRow {
        workload: name,
        kind: kind.into(),
        bs_bytes: bs,
        size_bytes: total,
        direct: after(input, "Extra file open flags:").is_some_and(|f| f.contains("directio")),
        sync: sync.into(),
        sync_every: every,
        seconds,
        mib_per_s: mib,
        iops: ops,
        lat_p50_us: f64::NAN,
        lat_p99_us: p99.map_or(f64::NAN, |ms| ms * 1000.0),
        lat_max_us: number(input, "max:")? * 1000.0,
        agent_flushes: fsyncs,
        ..origin.row()
    };
    plausible(row, "sysbench", "output")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            target: "host".into(),
            baseline: true,
        }
    }

    /// The story's host run, in sysbench 1.0.20's layout.
    const SEQWR: &str = include_str!("../tests/data/sysbench-1.0.20-seqwr.txt");

    #[test]
    fn sysbench_seqwr() {
        let r = sysbench(SEQWR, &origin(), None).unwrap();
        assert_eq!(r.workload, "seqwr-16K");
        assert_eq!(
            (r.kind.as_str(), r.bs_bytes, r.size_bytes),
            ("seqwr", 16384, 2 << 30)
        );
        assert_eq!(
            (r.sync.as_str(), r.sync_every, r.direct),
            ("fsync", 100, false)
        );
        assert_eq!((r.mib_per_s, r.iops, r.seconds), (36.25, 2319.76, 10.018));
        assert_eq!(r.agent_flushes, 233);
        assert!(r.lat_p99_us.is_nan(), "a 95th percentile is not a p99");
        assert_eq!(r.lat_max_us, 36450.0);
        assert_eq!(
            (r.storage.as_str(), r.hypervisor.as_str()),
            ("host", "none")
        );
        assert_eq!(r.host_dev_flushes, None);
    }

    #[test]
    fn sysbench_p99_read_with_directio() {
        let text = SEQWR
            .replace("(none)", "directio")
            .replace("sequential write (creation)", "sequential read")
            .replace("read, MiB/s:                  0.00", "read, MiB/s: 196.00")
            .replace("reads/s:                      0.00", "reads/s: 12544.00")
            .replace("95th percentile", "99th percentile");
        let r = sysbench(&text, &origin(), Some("seqrd-16k")).unwrap();
        assert_eq!(
            (r.kind.as_str(), r.workload.as_str()),
            ("seqrd", "seqrd-16k")
        );
        assert_eq!((r.mib_per_s, r.iops, r.direct), (196.0, 12544.0, true));
        assert_eq!(r.lat_p99_us, 800.0);
    }

    #[test]
    fn sysbench_errors_name_what_is_missing() {
        let e = sysbench("hello", &origin(), None).unwrap_err().to_string();
        assert!(e.contains("sysbench <version>"), "{e}");
        let e = sysbench(&SEQWR.replace("written, MiB/s", "x"), &origin(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("written, MiB/s:"), "{e}");
        let e = sysbench(
            &SEQWR.replace("Block size 16KiB", "Block size 16XB"),
            &origin(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("Block size"), "{e}");
    }

    #[test]
    fn fio_rejects_what_is_not_fio_json() {
        assert!(matches!(fio("{", &origin()), Err(ImportError::Json(_))));
        let e = fio("{\"jobs\": []}", &origin()).unwrap_err().to_string();
        assert!(e.contains("read or wrote"), "{e}");
        let big = " ".repeat(MAX_INPUT + 1);
        assert!(matches!(
            fio(&big, &origin()),
            Err(ImportError::TooLarge(_))
        ));
    }

    /// A fio JSON of one write job with the given write section.
    fn fio_json(write: &str) -> String {
        format!(
            r#"{{"global options": {{"bs": "16k"}}, "jobs": [{{"jobname": "w", "job options": {{"rw": "write"}},
            "write": {write}, "read": {{"io_bytes": 0}}, "sync": {{"total_ios": 0}}}}]}}"#
        )
    }

    const GOOD_WRITE: &str = r#"{"io_bytes": 2097152, "runtime": 100, "bw_bytes": 20971520, "iops": 1280.0,
        "clat_ns": {"max": 90000.0, "percentile": {"50.000000": 1000, "99.000000": 5000}}}"#;

    /// Issue 9 item 14: these were imported as rows.
    #[test]
    fn impossible_numbers_are_refused() {
        assert_eq!(fio(&fio_json(GOOD_WRITE), &origin()).unwrap().len(), 1);
        for (from, to, says) in [
            (
                "\"bw_bytes\": 20971520",
                "\"bw_bytes\": -20971520",
                "mib_per_s = -20 is impossible (is negative)",
            ),
            (
                "\"runtime\": 100",
                "\"runtime\": 0",
                "seconds = 0 is impossible (no run time",
            ),
            (
                "\"iops\": 1280.0",
                "\"iops\": 1e308",
                "iops = 1e308 is impossible (over a billion requests per second)",
            ),
            (
                "\"max\": 90000.0",
                "\"max\": -1",
                "lat_max_us = -0.001 is impossible",
            ),
            ("\"bw_bytes\": 20971520", "\"bw_bytes\": 0", "no throughput"),
        ] {
            let json = fio_json(&GOOD_WRITE.replace(from, to));
            let e = fio(&json, &origin()).unwrap_err().to_string();
            assert!(
                e.contains(says) && e.contains("fio job w, write"),
                "{to}: {e}"
            );
        }
        for (from, to, says) in [
            (
                "written, MiB/s:               36.25",
                "written, MiB/s: -36.25",
                "mib_per_s = -36.25 is impossible (is negative)",
            ),
            (
                "total time:                          10.0180s",
                "total time: 0.0000s",
                "seconds = 0 is impossible",
            ),
            (
                "writes/s:                     2319.76",
                "writes/s: 1e308",
                "iops = 1e308 is impossible (over a billion requests per second)",
            ),
            (
                "writes/s:                     2319.76",
                "writes/s: inf",
                "iops = inf is impossible (is not a finite number)",
            ),
            (
                "fsyncs/s:                     23.30",
                "fsyncs/s: -1",
                "agent_flushes = -1 is impossible",
            ),
        ] {
            assert!(SEQWR.contains(from), "{from}");
            let e = sysbench(&SEQWR.replace(from, to), &origin(), None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{to}: {e}");
        }
    }
}
