//! `run.json`: where the numbers came from — zvbench version and revision, date, host
//! kernel and CPU, QEMU version, accelerator, guest kernel, storage properties and the
//! scenario itself.

use crate::guest::kernel::GuestKernel;
use crate::hypervisor::qemu::Accel;
use crate::scenario::Plan;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use zvbench_reports::run_json::{Host, RunInfo};

/// `YYYY-MM-DDTHH:MM:SSZ` for a UNIX time (UTC, proleptic Gregorian).
pub fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Seconds since the UNIX epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A run id: UTC time, process id and, for a second run of one process, `n<seq>`:
/// `20261127T001500-4242`, `20261127T001500-4242n1`; safe in file and dataset names, and
/// unique, so that no two runs share a lock (`owner::split_run_id` parses it).
pub fn run_id() -> String {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let t = rfc3339(now()).replace(['-', ':'], "");
    let t = t.trim_end_matches('Z');
    let pid = std::process::id();
    match SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
        0 => format!("{t}-{pid}"),
        n => format!("{t}-{pid}n{n}"),
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default()
}

/// What a run was given beyond its plan, as `run.json` records it.
pub struct Given<'a> {
    /// Accelerator for guests.
    pub accel: Accel,
    /// The guest kernel, if a guest target needs one.
    pub kernel: Option<&'a GuestKernel>,
    /// The scenario's text.
    pub scenario_text: &'a str,
}

/// The provenance record, before storage properties are added per target.
pub fn collect(run_id: &str, given: &Given, plan: &Plan) -> Result<RunInfo> {
    let uts = nix::sys::utsname::uname().ok();
    let s = |o: Option<&std::ffi::OsStr>| {
        o.map(|x| x.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    Ok(RunInfo {
        zvbench_version: Some(env!("CARGO_PKG_VERSION").into()),
        git_revision: Some(
            option_env!("ZVBENCH_GIT_REVISION")
                .unwrap_or("unknown")
                .into(),
        ),
        schema_version: Some(zvbench_agent::SCHEMA_VERSION),
        run_id: Some(run_id.into()),
        date: Some(rfc3339(now())),
        host: Some(Host {
            kernel: s(uts.as_ref().map(|u| u.release())),
            machine: s(uts.as_ref().map(|u| u.machine())),
            cpu: cpu_model(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
        }),
        qemu_version: crate::hypervisor::qemu::version(),
        accel: Some(given.accel.as_str().into()),
        guest_kernel: given.kernel.map(serde_json::to_value).transpose()?,
        targets: Some(serde_json::to_value(&plan.targets)?),
        scenario: Some(given.scenario_text.to_string()),
        ..RunInfo::default()
    })
}

/// Writes `run.json` atomically (`zvbench_reports::atomic`: synced, renamed over the old).
pub fn write(out: &Path, v: &RunInfo) -> Result<()> {
    let path = out.join("run.json");
    zvbench_reports::atomic::write(&path, &serde_json::to_vec_pretty(v)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1795736901), "2026-11-26T23:48:21Z");
    }
}
