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
        nix::unistd::Pid::from_raw(child.id().try_into().unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "128 + SIGINT: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_nothing_left(tmp.path());
}

/// What [`scenario_in_lab`] leaves for a test to check.
struct LabRun {
    /// The lab's own directory (checked empty afterwards).
    tmp: tempfile::TempDir,
    /// The share holding `out_dir`, removed when dropped: bind it for the test's length.
    _share: tempfile::TempDir,
    /// What the command printed.
    stdout: String,
    /// The run's results.csv.
    rows: Vec<zvbench_reports::ResultRow>,
    /// The run's run.json.
    run: serde_json::Value,
    /// The run's output directory.
    out_dir: PathBuf,
}

/// A scenario of `scenarios/` run in a lab VM with the pool `tank`, by the command `argv`
/// makes of the scenario's path and the output directory; the results are kept on a share
/// outside the VM's tmpfs. Fails unless the command succeeded.
fn scenario_in_lab(
    scenario: &str,
    lab_args: &[&str],
    argv: impl FnOnce(&str, &str) -> Vec<String>,
) -> LabRun {
    let tmp = lab_tmp();
    let share = tempfile::Builder::new()
        .prefix("zvbench-labshare-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let out_dir = share.path().join("run");
    common::agent(); // zvbench inside finds it next to its own target directory
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(scenario);
    let mut extra = vec!["--pool", "tank", "--share", share.path().to_str().unwrap()];
    extra.extend_from_slice(lab_args);
    let argv = argv(scenario.to_str().unwrap(), out_dir.to_str().unwrap());
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = lab(tmp.path(), &extra, &argv);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the scenario failed in the lab:\n{stdout}"
    );
    let rows = zvbench_reports::read_results(&out_dir.join("results.csv")).unwrap();
    let run = serde_json::from_slice(&std::fs::read(out_dir.join("run.json")).unwrap()).unwrap();
    LabRun {
        tmp,
        _share: share,
        stdout,
        rows,
        run,
        out_dir,
    }
}

#[test]
fn zvol_and_vdi_guests_in_a_scenario_run_in_the_lab() {
    require_lab();
    let LabRun {
        tmp,
        _share,
        stdout,
        rows,
        run,
        out_dir,
    } = scenario_in_lab(
        "lab-zvol.toml",
        &["--disks", "2", "--pool", "backup", "--memory", "2G"],
        |scenario, out_dir| {
            // After the run, what is left on the second pool (the send step's copy must
            // be gone).
            [
                "sh",
                "-c",
                "\"$@\" && echo 'left on backup:' && zfs list -H -o name -r -t all backup",
                "sh",
                env!("CARGO_BIN_EXE_zvbench"),
                "run",
                scenario,
                "--out",
                out_dir,
                "--accel",
                "tcg",
            ]
            .map(String::from)
            .to_vec()
        },
    );
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
    // QEMU's flushes became fdatasync on a file of the dataset: one ZIL commit each.
    assert!(vdi.zil_commits.is_some_and(|v| v >= n), "{vdi:?}");
    assert_eq!(run["storage"]["zvol-standard"]["zil_source"], "dataset");
    assert_eq!(run["storage"]["zvol-disabled"]["sync"], "disabled");
    assert_eq!(run["storage"]["vdi"]["dataset"], "tank");
    assert_eq!(run["storage"]["vdi"]["zil_source"], "dataset");
    let summary = std::fs::read_to_string(out_dir.join("summary.md")).unwrap();
    assert!(
        summary.contains("`zfs-sync-disabled` **zvol-disabled"),
        "the diagnosis names sync=disabled:\n{summary}"
    );
    // The send step: the zvol (32 blocks of 4 KiB written) received on the second pool,
    // timed, shown with units, and the copy destroyed.
    let sent = &run["storage"]["zvol-standard"]["send"];
    let bytes = sent["bytes"].as_u64().unwrap_or(0);
    let seconds = sent["seconds"].as_f64().unwrap_or(0.0);
    assert!(bytes >= 32 * 4096 && seconds > 0.0, "{sent}");
    assert!(
        sent["received_as"]
            .as_str()
            .is_some_and(|d| d.starts_with("backup/") && d.ends_with("-zvol-standard")),
        "{sent}"
    );
    eprintln!(
        "lab send: {bytes} bytes in {seconds:.3} s = {:.2} MiB/s",
        sent["mib_per_s"]
    );
    assert!(
        summary.contains("## ZFS send") && summary.contains("| MiB | seconds | MiB/s |"),
        "{summary}"
    );
    let left = stdout
        .split("left on backup:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no listing of backup:\n{stdout}"));
    assert_eq!(left.trim(), "backup", "the received copy is destroyed");
    assert_nothing_left(tmp.path());
}

/// Every zvol key (volblocksize, sync, logbias, compression, primarycache, encryption with a
/// key file) provisioned by `zvbench run` on real OpenZFS, the agent on each zvol's device
/// (no guest), checked with `zfs get` (run.json), destroyed; and each ZFS diagnosis rule
/// firing on the target whose property causes it and not on the control, from the layers'
/// numbers (agent bytes, vdev bytes, ZIL commits, vdev flushes).
#[test]
fn zvol_properties_run_on_the_host_and_the_zfs_rules_fire_on_their_targets_only() {
    require_lab();
    let LabRun {
        tmp,
        _share,
        stdout,
        rows,
        run,
        out_dir: _,
    } = scenario_in_lab(
        "lab-zvol-props.toml",
        &["--disk-size", "2G"],
        |scenario, out_dir| {
            let script = script("zvol-props.sh");
            [
                script.to_str().unwrap(),
                env!("CARGO_BIN_EXE_zvbench"),
                scenario,
                out_dir,
            ]
            .map(String::from)
            .to_vec()
        },
    );
    // Destroyed: only the pool's own dataset is left.
    let left: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("left "))
        .collect();
    assert_eq!(left, ["tank"], "zvbench left datasets or snapshots");

    assert_zvol_properties(&run);

    let row = |t: &str, w: &str| {
        rows.iter()
            .find(|r| r.target == t && r.workload == w)
            .unwrap_or_else(|| panic!("no row for {t}/{w}"))
    };
    for r in &rows {
        eprintln!(
            "{:9} {:10} agent {:>3} flushes {:>8} B | ZIL {:>4} | vdevs {:>4} flushes, wrote {:>9} B, read {:>8} B",
            r.target,
            r.workload,
            r.agent_flushes,
            r.agent_write_bytes.unwrap_or(0),
            r.zil_commits.unwrap_or(0),
            r.vdev_flushes.unwrap_or(0),
            r.vdev_write_bytes.unwrap_or(0),
            r.vdev_read_bytes.unwrap_or(0)
        );
        assert_eq!(r.hypervisor, "none", "{r:?}");
        assert_eq!(r.agent_write_bytes, Some(r.size_bytes), "{r:?}");
    }
    let std16 = row("std", "fsync-16k");
    assert_eq!(std16.agent_flushes, 64);
    assert!(std16.zil_commits.is_some_and(|z| z >= 64), "{std16:?}");
    assert!(std16.vdev_flushes.is_some_and(|v| v >= 64), "{std16:?}");

    let ctx = zvbench_reports::report::context(&serde_json::from_value(run.clone()).unwrap());
    let findings = zvbench_reports::diagnose::diagnose(&rows, &ctx);
    let fired = |rule: &str, t: &str, w: &str| {
        findings
            .iter()
            .any(|f| f.rule == rule && f.target == t && f.workload == w)
    };
    for f in &findings {
        eprintln!(
            "{} {}/{}: {} [{}]",
            f.rule, f.target, f.workload, f.message, f.evidence
        );
    }
    // sync=always: ZIL commits and vdev flushes for writes never flushed; not where the
    // agent flushed every write, nor on sync=standard.
    assert!(fired("zfs-sync-always", "always", "nosync-4k"));
    assert!(!fired("zfs-sync-always", "always", "fsync-16k"));
    assert!(!fired("zfs-sync-always", "std", "nosync-4k"));
    let (al, st) = (row("always", "nosync-4k"), row("std", "nosync-4k"));
    assert!(
        al.zil_commits > Some(60) && st.zil_commits < Some(8),
        "{al:?}\n{st:?}"
    );
    // logbias=throughput: synced full blocks written once, not twice.
    assert!(fired("zfs-logbias-throughput", "thru", "fsync-16k"));
    assert!(!fired("zfs-logbias-throughput", "std", "fsync-16k"));
    let ratio = |r: &zvbench_reports::ResultRow| {
        r.vdev_write_bytes.unwrap() as f64 / r.agent_write_bytes.unwrap() as f64
    };
    let (th, st) = (row("thru", "fsync-16k"), std16);
    assert!(
        ratio(th) < 0.8 * ratio(st),
        "throughput {:.2}x vs latency {:.2}x of the agent's bytes",
        ratio(th),
        ratio(st)
    );
    // Compression: half-compressible data stored in fewer bytes than written, not with
    // compression=off (both logbias=throughput: the data goes to the pool once).
    assert!(fired("zfs-compression", "thru", "comp-50"));
    assert!(!fired("zfs-compression", "comp-off", "comp-50"));
    assert!(ratio(row("comp-off", "comp-50")) >= 1.0);
    // Read-modify-write: reads during a write-only pass of 4K writes into 64K blocks ARC
    // does not hold; not for whole blocks, nor where ARC holds them.
    assert!(fired("volblocksize-rmw", "rmw", "nosync-4k"));
    assert!(!fired("volblocksize-rmw", "rmw", "comp-50"));
    assert!(!fired("volblocksize-rmw", "std", "nosync-4k"));
    // The encrypted zvol ran every workload.
    assert_eq!(rows.iter().filter(|r| r.target == "enc").count(), 3);
    assert_nothing_left(tmp.path());
}

/// Each zvol key as `zfs get -p` inside the lab read it at provisioning (run.json).
fn assert_zvol_properties(run: &serde_json::Value) {
    // `zfs get -p` inside the lab, recorded at provisioning.
    let got = |t: &str, p: &str| run["storage"][t][p].as_str().unwrap_or("").to_string();
    for (t, p, want) in [
        ("std", "volblocksize", "16384"),
        ("std", "sync", "standard"),
        ("std", "logbias", "latency"),
        ("always", "sync", "always"),
        ("thru", "logbias", "throughput"),
        ("rmw", "volblocksize", "65536"),
        ("rmw", "primarycache", "metadata"),
        ("comp-off", "compression", "off"),
        ("enc", "encryption", "aes-256-gcm"),
        ("enc", "keylocation", "file:///var/tmp/zvbench-lab.key"),
    ] {
        assert_eq!(got(t, p), want, "zfs get {p} of {t}");
    }
    // Encrypted through a parent made for it, keyed by the file, destroyed with it.
    let parent = got("enc", "encrypted_parent");
    assert!(
        parent.starts_with("tank/") && parent.ends_with("-enc-enc"),
        "{parent}"
    );
    assert_eq!(
        got("enc", "encryptionroot"),
        parent,
        "the zvol inherits its encryption"
    );
    assert!(got("enc", "zvol").starts_with(&format!("{parent}/")));
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
