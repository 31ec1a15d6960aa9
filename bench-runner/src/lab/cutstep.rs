//! Inside the lab VM, the two halves of a power cut under ZFS (`zvbench lab --powercut`),
//! run as the lab's command by `zvbench lab-cut-step`:
//!
//! - `write`: on the pool the lab created on its (logged) disk, one zvol per sync setting
//!   of [`SYNCS`], then the agent's job (`zvbench-agent job`): a verifiable write pass on
//!   each zvol with an fsync after every write, each acknowledgement sent to the host as it
//!   happens. The host kills the VM hard when the agent is done.
//! - `verify`: for each reconstruction of the pool's disk in the plan, in turn: import the
//!   pool from it read-write (so the ZIL replays), copy the checked zvol's acknowledged
//!   bytes to a file for the host, export the pool.

use crate::cmd::Argv;
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The sync settings checked: one zvol each, named after the setting.
pub const SYNCS: [&str; 2] = ["standard", "disabled"];

/// A zvol's device link (made by the lab's udev with OpenZFS's rule).
pub fn zvol_dev(pool: &str, zvol: &str) -> PathBuf {
    crate::host::zfs::zvol_dev(&format!("{pool}/{zvol}"))
}

/// One reconstruction to check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Check {
    /// The reconstructed pool disk (a scratch copy: the import writes it).
    pub image: PathBuf,
    /// The zvol whose blocks were acknowledged before this cut (one of [`SYNCS`]).
    pub zvol: String,
    /// How many bytes from its start to copy out.
    pub bytes: u64,
    /// Where the copy goes.
    pub out: PathBuf,
}

/// What `verify` does: the pool's name and the reconstructions in order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// The pool on every image.
    pub pool: String,
    /// The reconstructions.
    pub checks: Vec<Check>,
}

fn settle() {
    // Bounded; the wait for the device below is what counts.
    let _ = Argv::new(["udevadm", "settle", "--timeout=30"]).run();
}

fn wait_for(p: &Path, limit: Duration) -> Result<()> {
    let start = Instant::now();
    while !p.exists() {
        if start.elapsed() > limit {
            bail!(
                "{} did not appear within {} s",
                p.display(),
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `write`: makes the zvols on `pool` (`zvol_bytes` each) and runs the agent's `job`;
/// the agent's exit code.
pub fn write(pool: &str, zvol_bytes: u64, agent: &Path, job: &Path) -> Result<i32> {
    crate::names::check_dataset(pool).map_err(anyhow::Error::msg)?;
    for s in SYNCS {
        Argv::new([
            "zfs".to_string(),
            "create".into(),
            "-V".into(),
            zvol_bytes.to_string(),
            "-o".into(),
            format!("sync={s}"),
            format!("{pool}/{s}"),
        ])
        .run()?;
    }
    settle();
    for s in SYNCS {
        wait_for(&zvol_dev(pool, s), Duration::from_secs(30))?;
    }
    let st = std::process::Command::new(agent)
        .arg("job")
        .arg(job)
        .status()
        .with_context(|| format!("run {}", agent.display()))?;
    Ok(st.code().unwrap_or(128))
}

/// `verify`: every check of the plan in `plan_path`, in order; stops at the first that
/// fails (a pool that does not import is an error to see, not a count).
pub fn verify(plan_path: &Path) -> Result<()> {
    let plan: Plan = serde_json::from_slice(
        &std::fs::read(plan_path).with_context(|| format!("read {}", plan_path.display()))?,
    )?;
    crate::names::check_dataset(&plan.pool).map_err(anyhow::Error::msg)?;
    for (i, c) in plan.checks.iter().enumerate() {
        if !SYNCS.contains(&c.zvol.as_str()) {
            bail!("unknown zvol {:?} in {}", c.zvol, plan_path.display());
        }
        let t = Instant::now();
        // The pool's vdev is a disk (zpool create was given one): ZFS opens it only as a
        // block device, so the image goes on a loop device.
        let lo = Argv::new([
            "losetup".as_ref(),
            "--find".as_ref(),
            "--show".as_ref(),
            c.image.as_os_str(),
        ])
        .stdout()?;
        let lo = lo.trim();
        if !lo.starts_with("/dev/loop") || lo.contains(char::is_whitespace) {
            bail!("losetup printed {lo:?}, not a loop device");
        }
        let copied = import_and_copy(&plan.pool, lo, c);
        let _ = Argv::new(["losetup", "-d", lo]).run();
        let [import_s, copy_s, export_s] = copied?;
        crate::observe::output!(
            "cut {}/{}: {} bytes of {} from {} (import {import_s:.1} s, copy {copy_s:.1} s, \
             export {export_s:.1} s, in all {:.1} s)",
            i + 1,
            plan.checks.len(),
            c.bytes,
            c.zvol,
            c.image.display(),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Imports the pool from the loop device `lo`, copies the zvol's bytes out, exports it;
/// the seconds each took.
fn import_and_copy(pool: &str, lo: &str, c: &Check) -> Result<[f64; 3]> {
    let t = Instant::now();
    Argv::new([
        "zpool",
        "import",
        "-f",
        "-N",
        "-o",
        "cachefile=none",
        "-d",
        lo,
        pool,
    ])
    .run()
    .with_context(|| format!("import the pool from {}", c.image.display()))?;
    let import_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    settle();
    let dev = zvol_dev(pool, &c.zvol);
    let copied = wait_for(&dev, Duration::from_secs(30)).and_then(|_| {
        let mut buf = Vec::new();
        std::fs::File::open(&dev)?
            .take(c.bytes)
            .read_to_end(&mut buf)?;
        std::fs::write(&c.out, &buf)?;
        Ok(())
    });
    let copy_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    Argv::new(["zpool", "export", pool]).run()?;
    settle();
    copied.with_context(|| format!("copy {} out of {}", dev.display(), c.image.display()))?;
    Ok([import_s, copy_s, t.elapsed().as_secs_f64()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zvols_are_named_after_their_sync_setting() {
        assert_eq!(
            zvol_dev("zvcut", SYNCS[1]),
            PathBuf::from("/dev/zvol/zvcut/disabled")
        );
    }
}
