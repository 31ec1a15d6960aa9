//! The ZFS lab with real OpenZFS: modules built for Debian's guest kernel (once, cached in
//! ~/.cache/zvbench), a TCG VM on the host's read-only root, pools on virtio disks.
//! These tests FAIL, naming what is missing, when the lab cannot be built or booted: they
//! are the only place the zvol path runs on real OpenZFS.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn zvbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zvbench"))
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/lab")
        .join(name)
}

/// Root, then OpenZFS built (or found in the cache) once for all the tests of this file,
/// so that parallel tests neither fetch the kernel nor build at the same time.
fn require_lab() {
    assert!(
        common::is_root(),
        "the ZFS lab tests need root (QEMU's 9p export of / and the pool disks); run as root"
    );
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let start = Instant::now();
        let out = zvbench().args(["lab", "--build-only"]).output().unwrap();
        eprintln!(
            "zvbench lab --build-only: {:.0} s\n{}",
            start.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    if let Err(e) = built {
        panic!("the ZFS lab cannot be built here: {e}");
    }
}

/// A directory for the lab's files under /var/tmp (O_DIRECT works there; /tmp may be tmpfs).
fn lab_tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("zvbench-labtest-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

fn lab(tmp: &Path, extra: &[&str], argv: &[&str]) -> Output {
    let start = Instant::now();
    let out = zvbench()
        .arg("lab")
        .arg("--tmp")
        .arg(tmp)
        .args(extra)
        .arg("--")
        .args(argv)
        .output()
        .expect("run zvbench lab");
    eprintln!(
        "zvbench lab {argv:?}: {:.1} s\nstderr:\n{}",
        start.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// QEMU processes whose command line names `dir` (only this test's own).
fn qemus_using(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.starts_with("qemu-system") && cmd.contains(&needle) {
            found.push(cmd);
        }
    }
    found
}

/// Nothing left: no QEMU using `tmp`, no file in it, nothing mounted under it.
fn assert_nothing_left(tmp: &Path) {
    assert_eq!(qemus_using(tmp), Vec::<String>::new(), "QEMU left running");
    let left: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "lab files left: {left:?}");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(&*tmp.to_string_lossy()),
        "a mount under {} is left",
        tmp.display()
    );
}

/// One line of zvol-flushes.sh's output, as key=value pairs.
fn fields(line: &str) -> std::collections::HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn zvol_fsyncs_reach_the_zil_and_the_pool_vdev_unless_sync_is_disabled() {
    require_lab();
    const N: u64 = 48;
    let tmp = lab_tmp();
    let agent = common::agent();
    let out = lab(
        tmp.path(),
        &["--disks", "1", "--disk-size", "512M"],
        &[
            script("zvol-flushes.sh").to_str().unwrap(),
            agent.to_str().unwrap(),
            &N.to_string(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the lab run failed:\n{stdout}");
    let get = |sync: &str| {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("sync={sync} ")))
            .unwrap_or_else(|| panic!("no sync={sync} line in:\n{stdout}"));
        let f = fields(line);
        let n = |k: &str| -> u64 {
            f.get(k)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{k} missing in {line:?}"))
        };
        (
            n("agent_flushes"),
            n("zil_commits"),
            n("vdev_flushes"),
            f["zil_source"].clone(),
        )
    };
    let (agent_std, zil_std, vdev_std, source) = get("standard");
    assert_eq!(agent_std, N, "the agent issued one fsync per write");
    assert!(
        zil_std >= N,
        "sync=standard: {zil_std} ZIL commits for {N} fsyncs"
    );
    assert!(
        vdev_std >= N,
        "sync=standard: {vdev_std} vdev flushes for {N} fsyncs"
    );
    assert_eq!(source, "dataset", "OpenZFS 2.3 has per-dataset ZIL kstats");
    let (agent_dis, _, vdev_dis, _) = get("disabled");
    assert_eq!(agent_dis, N);
    assert!(
        vdev_dis < N / 4,
        "sync=disabled: {vdev_dis} vdev flushes for {N} fsyncs (ZFS should drop them)"
    );
    assert_nothing_left(tmp.path());
}

#[test]
fn output_and_exit_status_come_back_and_nothing_is_left() {
    require_lab();
    let tmp = lab_tmp();
    let share = tempfile::Builder::new()
        .prefix("zvbench-labshare-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let out = lab(
        tmp.path(),
        &["--disks", "0", "--share", share.path().to_str().unwrap()],
        &[
            "sh",
            "-c",
            "zpool version; echo to-stderr >&2; echo kept > \"$1/file\"; \
             touch /etc/zvbench-lab-rw 2>/dev/null && echo root-writable; exit 7",
            "sh",
            share.path().to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "stdout:\n{stdout}");
    assert!(
        stdout.contains("zfs-kmod-2.3"),
        "OpenZFS 2.3's module is loaded:\n{stdout}"
    );
    assert!(stderr.contains("to-stderr"), "{stderr}");
    assert!(
        !stdout.contains("root-writable"),
        "the host root must be read-only"
    );
    assert_eq!(
        std::fs::read_to_string(share.path().join("file")).unwrap(),
        "kept\n",
        "the share is writable at the same path"
    );
    assert_nothing_left(tmp.path());
}

#[test]
fn ctrl_c_stops_the_vm_and_removes_its_files() {
    require_lab();
    let tmp = lab_tmp();
    let mut child = zvbench()
        .arg("lab")
        .arg("--tmp")
        .arg(tmp.path())
        .args(["--", "sleep", "600"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the VM runs (QEMU started with this test's directory), then interrupt.
    let start = Instant::now();
    while qemus_using(tmp.path()).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "no lab VM started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "zvbench lab ended before its VM started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "128 + SIGINT: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_nothing_left(tmp.path());
}

#[test]
fn zvol_and_vdi_guests_in_a_scenario_run_in_the_lab() {
    require_lab();
    let tmp = lab_tmp();
    // The results must outlive the VM: a share outside the guest's tmpfs.
    let share = tempfile::Builder::new()
        .prefix("zvbench-labshare-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let out_dir = share.path().join("run");
    common::agent(); // zvbench inside finds it next to its own target directory
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/lab-zvol.toml");
    let out = lab(
        tmp.path(),
        &[
            "--pool",
            "tank",
            "--memory",
            "2G",
            "--share",
            share.path().to_str().unwrap(),
        ],
        &[
            env!("CARGO_BIN_EXE_zvbench"),
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--accel",
            "tcg",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the scenario failed in the lab:\n{stdout}"
    );
    let rows = zvbench_reports::read_results(&out_dir.join("results.csv")).unwrap();
    let row = |t: &str| {
        rows.iter()
            .find(|r| r.target == t)
            .unwrap_or_else(|| panic!("no row for {t}"))
    };
    let std = row("zvol-standard");
    let n = std.agent_flushes;
    assert_eq!(n, 32, "32 writes, an fsync after each: {std:?}");
    // agent → guest device → hypervisor → (zvol: blind) → ZIL → vdevs, all non-zero.
    for (layer, v) in [
        ("guest device", std.guest_dev_flushes),
        ("hypervisor", std.hv_flushes),
        ("ZIL", std.zil_commits),
        ("pool vdevs", std.vdev_flushes),
    ] {
        assert!(v.is_some_and(|v| v >= n), "{layer}: {v:?} for {n} fsyncs");
    }
    let dis = row("zvol-disabled");
    assert_eq!(dis.agent_flushes, n);
    assert_eq!(dis.zil_commits, Some(0), "{dis:?}");
    assert!(dis.vdev_flushes.is_some_and(|v| v < n / 4), "{dis:?}");
    // The VDI file on the pool's file system (cache=none): its flushes reach the vdevs too.
    let vdi = row("vdi");
    assert!(vdi.vdev_flushes.is_some_and(|v| v >= n), "{vdi:?}");
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["storage"]["zvol-standard"]["zil_source"], "dataset");
    assert_eq!(run["storage"]["zvol-disabled"]["sync"], "disabled");
    let summary = std::fs::read_to_string(out_dir.join("summary.md")).unwrap();
    assert!(
        summary.contains("`zfs-sync-disabled` **zvol-disabled"),
        "the diagnosis names sync=disabled:\n{summary}"
    );
    assert_nothing_left(tmp.path());
}

/// `zvbench lab --powercut`: the pool's disk logged under ZFS, the agent writing a
/// sync=standard and a sync=disabled zvol inside the lab, 20 random cuts and the end per
/// zvol, each imported from its reconstruction. ZFS with sync=standard keeps every
/// acknowledged block; sync=disabled acknowledges fsyncs that no flush backs.
#[test]
fn a_power_cut_under_zfs_keeps_sync_standard_and_loses_sync_disabled() {
    require_lab();
    let tmp = lab_tmp();
    let out = tempfile::Builder::new()
        .prefix("zvbench-labcut-out-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let agent = common::agent();
    let start = Instant::now();
    let run = zvbench()
        .arg("lab")
        .arg("--tmp")
        .arg(tmp.path())
        .args(["--disk-size", "256M", "--powercut", "20", "--out"])
        .arg(out.path())
        .arg("--agent")
        .arg(&agent)
        .output()
        .expect("run zvbench lab --powercut");
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!(
        "zvbench lab --powercut: {:.0} s\n{stdout}\n{}",
        start.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "the power-cut check failed");
    let rows = zvbench_reports::read_results(&out.path().join("results.csv")).unwrap();
    let row = |t: &str| {
        rows.iter()
            .find(|r| r.target == t)
            .unwrap_or_else(|| panic!("no row for {t}"))
    };
    let std = row("zvol-standard");
    assert_eq!(std.powercut_cuts, Some(21), "{std:?}");
    assert_eq!(
        std.powercut_acked_blocks,
        Some(128),
        "the end cut acknowledges all"
    );
    assert_eq!(std.powercut_lost_blocks, Some(0), "{std:?}");
    assert_eq!(std.powercut_verdict.as_deref(), Some("durable"));
    assert!(
        std.powercut_log_flushes.is_some_and(|f| f >= 128),
        "every fsync flushed the pool's disk: {std:?}"
    );
    let dis = row("zvol-disabled");
    let cuts = dis.powercut_cuts.unwrap();
    assert_eq!(cuts, 21, "{dis:?}");
    assert!(
        dis.powercut_cuts_lost.is_some_and(|n| 2 * n > cuts),
        "sync=disabled loses acknowledged blocks at most cuts: {dis:?}"
    );
    assert_eq!(dis.powercut_verdict.as_deref(), Some("not durable"));
    assert!(
        dis.powercut_dropped_at
            .as_deref()
            .is_some_and(|d| d.starts_with("ZFS sync=disabled")),
        "{dis:?}"
    );
    assert!(stdout.contains("| zvol-disabled |"), "the table:\n{stdout}");
    assert_nothing_left(tmp.path());
}
