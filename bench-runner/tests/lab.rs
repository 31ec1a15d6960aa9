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

fn require_root() {
    assert!(
        common::is_root(),
        "the ZFS lab tests need root (QEMU's 9p export of / and the pool disks); run as root"
    );
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
    require_root();
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
    require_root();
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
    require_root();
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
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_nothing_left(tmp.path());
}
