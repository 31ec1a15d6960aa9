//! Inside the lab VM: `zvbench lab-guest JOB` runs as PID 1 on the host's read-only root
//! after the initramfs switched to it. It starts udev with OpenZFS's zvol rule (so that
//! `/dev/zvol/<pool>/<vol>` links appear), runs the job's command with the private
//! OpenZFS userland first on `PATH`, writes its output and exit status to the control
//! share, and always ends with sync and power-off.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the host asks the guest to do (`job.json` in the control share).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Job {
    /// The command and its arguments, run without a shell.
    pub argv: Vec<String>,
    /// Its working directory (the host's, when the guest sees it).
    pub cwd: PathBuf,
    /// The private OpenZFS userland (`sbin/zfs`, `lib/x86_64-linux-gnu`, `lib/udev`).
    pub userland: PathBuf,
    /// The pool disks as the guest names them (`/dev/vda`, …).
    pub disks: Vec<String>,
    /// The OpenZFS version, for `ZVBENCH_LAB_OPENZFS`.
    pub openzfs: String,
    /// Pools to create before the command, each on its share of the disks
    /// ([`pool_create_argvs`]), its file system mounted on `/var/tmp/<pool>` (they go
    /// with the VM's disks).
    pub pools: Vec<String>,
    /// The host's cache directory's parent, as `XDG_CACHE_HOME`: a zvbench inside finds
    /// the guest kernel the host fetched (the VM has no network).
    pub cache_home: PathBuf,
}

/// Files in the control share.
pub const STDOUT: &str = "stdout";
/// The command's standard error.
pub const STDERR: &str = "stderr";
/// The command's exit status: a decimal code, or `signal N`.
pub const EXIT: &str = "exit";
/// The guest's uptime in seconds when the command started.
pub const STARTED: &str = "started";

fn log(msg: &str) {
    if let Ok(mut c) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
        let _ = writeln!(c, "zvbench lab-guest: {msg}");
    }
}

/// OpenZFS's zvol udev rule with its `zvol_id` helper named by its private path.
pub fn zvol_rule(rule: &str, zvol_id: &Path) -> String {
    let id = zvol_id.to_string_lossy();
    rule.replace("/usr/lib/udev/zvol_id", &id)
        .replace("/lib/udev/zvol_id", &id)
}

/// Starts `systemd-udevd` with the private zvol rule and waits (bounded) for it to settle.
/// Without udev the lab still works; `/dev/zvol` links are then missing.
fn start_udev(userland: &Path) -> Result<()> {
    let rule_src = userland.join("lib/udev/rules.d/60-zvol.rules");
    let rule = std::fs::read_to_string(&rule_src)
        .with_context(|| format!("read {}", rule_src.display()))?;
    std::fs::create_dir_all("/run/udev/rules.d")?;
    std::fs::write(
        "/run/udev/rules.d/60-zvol.rules",
        zvol_rule(&rule, &userland.join("lib/udev/zvol_id")),
    )?;
    let udevd = [
        "/lib/systemd/systemd-udevd",
        "/usr/lib/systemd/systemd-udevd",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .context("no systemd-udevd on the host root")?;
    let ok = |c: &mut Command| c.stdin(Stdio::null()).status().is_ok_and(|s| s.success());
    anyhow::ensure!(
        ok(Command::new(udevd).arg("--daemon")),
        "{udevd} --daemon failed"
    );
    ok(Command::new("udevadm").args(["trigger", "--action=add"]));
    ok(Command::new("udevadm").args(["settle", "--timeout=30"]));
    Ok(())
}

/// `PATH` with the private userland's directories first (only its `sbin`s: its `bin/zfs`
/// is an absolute symlink to `/sbin/zfs`, which on the host root is not OpenZFS's).
pub fn search_path(userland: &Path, inherited: &str) -> String {
    let mut dirs: Vec<String> = ["sbin", "usr/sbin"]
        .iter()
        .map(|d| userland.join(d).to_string_lossy().into_owned())
        .collect();
    dirs.push(inherited.to_string());
    dirs.join(":")
}

fn run(job_path: &Path) -> Result<()> {
    let ctl = job_path.parent().context("job path has no directory")?;
    let job: Job = serde_json::from_slice(
        &std::fs::read(job_path).with_context(|| format!("read {}", job_path.display()))?,
    )?;
    std::fs::create_dir_all("/run/zfs")?;
    if let Err(e) = start_udev(&job.userland) {
        log(&format!(
            "udev not started ({}); /dev/zvol links will be missing",
            crate::chain(&e)
        ));
    }
    for argv in pool_create_argvs(&job.pools, &job.disks) {
        argv.command()
            .env(
                "PATH",
                search_path(&job.userland, "/usr/sbin:/usr/bin:/sbin:/bin"),
            )
            .env("LD_LIBRARY_PATH", job.userland.join("lib/x86_64-linux-gnu"))
            .status()
            .ok()
            .filter(|s| s.success())
            .with_context(|| format!("`{}` failed", argv.display()))?;
    }
    let cwd = if job.cwd.is_dir() {
        job.cwd.clone()
    } else {
        PathBuf::from("/")
    };
    let (prog, args) = job.argv.split_first().context("empty command")?;
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    std::fs::write(
        ctl.join(STARTED),
        uptime.split_whitespace().next().unwrap_or(""),
    )?;
    let started = Instant::now();
    let status = Command::new(prog)
        .args(args)
        .current_dir(&cwd)
        .env(
            "PATH",
            search_path(
                &job.userland,
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
        )
        .env("LD_LIBRARY_PATH", job.userland.join("lib/x86_64-linux-gnu"))
        .env("ZVBENCH_LAB_DISKS", job.disks.join(" "))
        .env("ZVBENCH_LAB_OPENZFS", &job.openzfs)
        .env("XDG_CACHE_HOME", &job.cache_home)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(ctl.join(STDOUT))?)
        .stderr(std::fs::File::create(ctl.join(STDERR))?)
        .status()
        .with_context(|| format!("run {prog}"));
    let text = match &status {
        Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(s)) {
            (Some(c), _) => c.to_string(),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => "unknown".into(),
        },
        Err(e) => {
            let _ = std::fs::write(
                ctl.join(STDERR),
                format!("zvbench lab: {}\n", crate::chain(e)),
            );
            "127".into()
        }
    };
    log(&format!(
        "command ended ({text}) after {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    std::fs::write(ctl.join(EXIT), text)?;
    Ok(())
}

/// `zpool create` for each pool, the disks shared out in order: with P pools and N disks
/// (a multiple of P, checked by the host), pool i gets disks i·N/P to (i+1)·N/P − 1.
pub fn pool_create_argvs(pools: &[String], disks: &[String]) -> Vec<crate::cmd::Argv> {
    let per = disks.len() / pools.len().max(1);
    pools
        .iter()
        .zip(disks.chunks(per.max(1)))
        .map(|(pool, own)| {
            let mut argv = vec![
                "zpool".to_string(),
                "create".into(),
                "-f".into(),
                "-o".into(),
                "cachefile=none".into(),
                "-m".into(),
                format!("/var/tmp/{pool}"),
                pool.clone(),
            ];
            argv.extend(own.iter().cloned());
            crate::cmd::Argv::new(argv)
        })
        .collect()
}

/// The PID 1 entry point. Never returns: the VM powers off.
pub fn main(job_path: &Path) -> ! {
    if let Err(e) = run(job_path) {
        log(&crate::chain(&e));
    }
    // Give the console a moment, then end as the agent does.
    std::thread::sleep(Duration::from_millis(50));
    zvbench_agent::init::power_off()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zvol_rule_names_the_private_helper() {
        let r = r#"KERNEL=="zd*", SUBSYSTEM=="block", ACTION=="add|change", PROGRAM=="/lib/udev/zvol_id $devnode", SYMLINK+="zvol/%c""#;
        let got = zvol_rule(r, Path::new("/c/userland/lib/udev/zvol_id"));
        assert!(
            got.contains(r#"PROGRAM=="/c/userland/lib/udev/zvol_id $devnode""#),
            "{got}"
        );
    }

    #[test]
    fn pools_share_the_disks_in_order() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let shown = |pools: &[&str], disks: &[&str]| {
            pool_create_argvs(&s(pools), &s(disks))
                .iter()
                .map(|a| a.display())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            shown(&["tank"], &["/dev/vda", "/dev/vdb"]),
            ["zpool create -f -o cachefile=none -m /var/tmp/tank tank /dev/vda /dev/vdb"]
        );
        assert_eq!(
            shown(&["tank", "backup"], &["/dev/vda", "/dev/vdb"]),
            [
                "zpool create -f -o cachefile=none -m /var/tmp/tank tank /dev/vda",
                "zpool create -f -o cachefile=none -m /var/tmp/backup backup /dev/vdb"
            ]
        );
        assert!(shown(&[], &["/dev/vda"]).is_empty());
    }

    #[test]
    fn private_userland_first_on_path() {
        assert_eq!(
            search_path(Path::new("/u"), "/usr/bin:/bin"),
            "/u/sbin:/u/usr/sbin:/usr/bin:/bin"
        );
    }
}
