//! The agent's three output formats: human text, JSON Lines, CSV.

use crate::record::PassRecord;
use std::io::{self, Write};

/// Output format of `zvbench-agent run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A few readable lines per pass.
    Human,
    /// One JSON record per line, with histograms.
    Json,
    /// One CSV row per pass, units in column names.
    Csv,
}

/// CSV columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "label",
    "kind",
    "path",
    "bs_bytes",
    "size_bytes",
    "direct",
    "sync",
    "sync_every",
    "end_fsync",
    "seconds",
    "mib_per_s",
    "iops",
    "lat_p50_us",
    "lat_p90_us",
    "lat_p99_us",
    "lat_p999_us",
    "lat_max_us",
    "flush_p50_us",
    "flush_p99_us",
    "flush_max_us",
    "agent_flushes",
    "guest_dev_flushes",
    "cpu_user_s",
    "cpu_sys_s",
    "verify_checked",
    "verify_ok",
];

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// One record as CSV fields in [`CSV_COLUMNS`] order.
pub fn csv_fields(r: &PassRecord) -> Vec<String> {
    vec![
        r.label.clone(),
        r.kind.as_str().into(),
        r.path.clone(),
        r.bs_bytes.to_string(),
        r.size_bytes.to_string(),
        r.direct.to_string(),
        r.sync.as_str().into(),
        r.sync_every.to_string(),
        r.end_fsync.to_string(),
        format!("{:.6}", r.seconds),
        format!("{:.3}", r.mib_per_s),
        format!("{:.1}", r.iops),
        format!("{:.3}", r.lat.p50_us),
        format!("{:.3}", r.lat.p90_us),
        format!("{:.3}", r.lat.p99_us),
        format!("{:.3}", r.lat.p999_us),
        format!("{:.3}", r.lat.max_us),
        opt(r.flush.map(|f| format!("{:.3}", f.p50_us))),
        opt(r.flush.map(|f| format!("{:.3}", f.p99_us))),
        opt(r.flush.map(|f| format!("{:.3}", f.max_us))),
        r.agent_flushes.to_string(),
        opt(r.guest_dev_flushes),
        format!("{:.3}", r.cpu_user_s),
        format!("{:.3}", r.cpu_sys_s),
        opt(r.verify_result.map(|v| v.checked)),
        opt(r.verify_result.map(|v| v.ok)),
    ]
}

/// Writes records in `format`; the CSV header comes first when `header` is set.
pub fn write(
    out: &mut dyn Write,
    format: Format,
    recs: &[PassRecord],
    header: bool,
) -> io::Result<()> {
    match format {
        Format::Json => {
            for r in recs {
                serde_json::to_writer(&mut *out, r)?;
                writeln!(out)?;
            }
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            if header {
                w.write_record(CSV_COLUMNS)?;
            }
            for r in recs {
                w.write_record(csv_fields(r))?;
            }
            w.flush()?;
        }
        Format::Human => {
            for r in recs {
                human(out, r)?;
            }
        }
    }
    Ok(())
}

fn human(out: &mut dyn Write, r: &PassRecord) -> io::Result<()> {
    let mib = r.bytes as f64 / (1u64 << 20) as f64;
    writeln!(
        out,
        "{} {} bs={} size={} direct={} sync={} sync_every={} iodepth={} numjobs={} engine={}",
        r.kind.as_str(),
        r.path,
        crate::ByteSize(r.bs_bytes),
        crate::ByteSize(r.size_bytes),
        r.direct,
        r.sync.as_str(),
        r.sync_every,
        r.iodepth,
        r.numjobs,
        r.engine
    )?;
    writeln!(
        out,
        "  {mib:.0} MiB in {:.3} s: {:.1} MiB/s, {:.0} IOPS",
        r.seconds, r.mib_per_s, r.iops
    )?;
    let l = &r.lat;
    writeln!(
        out,
        "  {} latency (µs): p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
        match r.rw_mix_read {
            0 => "write",
            100 => "read",
            _ => "read+write",
        },
        l.p50_us,
        l.p90_us,
        l.p99_us,
        l.p999_us,
        l.max_us
    )?;
    if let Some(f) = &r.flush {
        writeln!(
            out,
            "  flush latency (µs): p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            f.p50_us, f.p90_us, f.p99_us, f.p999_us, f.max_us
        )?;
    }
    let dev = match &r.device {
        Some(d) => format!(
            "{} saw {} flushes ({} ms), {} writes, {} reads",
            d.name,
            opt(d.flush_ios),
            opt(d.flush_ms),
            d.write_ios,
            d.read_ios
        ),
        None => "no block device counters for this path".into(),
    };
    writeln!(out, "  flushes: agent issued {}; {dev}", r.agent_flushes)?;
    writeln!(
        out,
        "  cpu: user {:.3} s, sys {:.3} s",
        r.cpu_user_s, r.cpu_sys_s
    )?;
    if let Some(v) = &r.verify_result {
        writeln!(
            out,
            "  verify: {} of {} blocks ok, {} mismatched, {} stale, {} torn{}",
            v.ok,
            v.checked,
            v.mismatched,
            v.stale,
            v.torn,
            if v.passed() {
                ""
            } else {
                "  <-- VERIFY FAILED"
            }
        )?;
    }
    for c in r.cache_drop.iter().filter(|c| !c.ok) {
        writeln!(
            out,
            "  cache drop {} not done: {}",
            c.method,
            c.error.as_deref().unwrap_or("?")
        )?;
    }
    Ok(())
}
