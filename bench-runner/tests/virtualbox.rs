//! `hypervisor = "virtualbox"` end to end against tests/fakes/fake-VBoxManage — a FAKE
//! VBoxManage (VirtualBox cannot be installed here) that checks the 6.1/7.x syntax, keeps
//! VMs and media, and boots the guest ISO under QEMU. The agent's frames come back through
//! the serial log file, the counters through `debugvm statistics`, and the host device's
//! flush counter is a real loop device's.
//!
//! Each test has a fake VBoxManage of its own (a wrapper naming its own state directory,
//! version and injected failures), passed to zvbench as a value, so the tests run in
//! parallel.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use zvbench::hypervisor::vbox::VBoxManage;

const HEAD: &str = r#"
[run]
repetitions = 1
disk_size = "16M"
guest_timeout_s = 300

[guest]
hypervisor = "virtualbox"
memory = "256M"
"#;

/// The story's targets: a VDI with the host I/O cache off (VirtualBox's SATA default),
/// on, on with IgnoreFlush 0, and a raw-disk VMDK over a real loop device.
const STORY: &str = r#"
[[target]]
name = "vdi-nocache"
storage = "image"
format = "vdi"
dir = "@DIR@"

[[target]]
name = "vdi-hostcache"
storage = "image"
format = "vdi"
dir = "@DIR@"
host_io_cache = true

[[target]]
name = "vdi-hostcache-flush"
storage = "image"
format = "vdi"
dir = "@DIR@"
host_io_cache = true
ignore_flush = false

[[target]]
name = "raw"
storage = "loop"
dir = "@DIR@"
"#;

/// virtio-scsi with IgnoreFlush 0 on the synchronous path, beside a VDI on the
/// asynchronous one.
const SCSI_AND_ASYNC: &str = r#"
[[target]]
name = "scsi-flush"
storage = "image"
format = "vdi"
dir = "@DIR@"
bus = "scsi"
host_io_cache = true
ignore_flush = false

[[target]]
name = "vdi-nocache"
storage = "image"
format = "vdi"
dir = "@DIR@"
"#;

const NVME_AND_RAW: &str = r#"
[[target]]
name = "nvme"
storage = "image"
format = "vdi"
dir = "@DIR@"
bus = "nvme"

[[target]]
name = "raw"
storage = "loop"
dir = "@DIR@"
"#;

const WORKLOAD: &str = r#"
[[workload]]
name = "fsync"
kind = "seqwr"
bs = "4K"
size = "64K"
sync = "fsync"
sync_every = 4
"#;

fn scenario(targets: &str) -> String {
    format!("{HEAD}{targets}{WORKLOAD}")
}

fn run_json(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap()
}

fn fake() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakes/fake-VBoxManage")
}

/// One test's fake VBoxManage: `program` runs the fake with its own state in `home`, a
/// version and the `FAKE_VBOX_*` settings given.
struct FakeVbox {
    home: PathBuf,
    program: PathBuf,
}

impl FakeVbox {
    fn new(dir: &Path, version: &str, settings: &[(&str, &str)]) -> FakeVbox {
        let home = dir.join("fake-vbox");
        std::fs::create_dir_all(&home).unwrap();
        let program = dir.join("VBoxManage");
        let mut script = String::from("#!/bin/sh\n");
        let vars = [
            ("FAKE_VBOX_HOME", home.to_str().unwrap()),
            ("FAKE_VBOX_VERSION", version),
        ];
        for (k, v) in vars.iter().chain(settings) {
            assert!(!v.contains('\''), "{v}");
            script += &format!("export {k}='{v}'\n");
        }
        script += &format!("exec '{}' \"$@\"\n", fake().display());
        std::fs::write(&program, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeVbox { home, program }
    }

    /// The fake's stdout for `args`.
    fn call(&self, args: &[&str]) -> String {
        let out = Command::new(&self.program).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every call zvbench made, one per line.
    fn calls(&self) -> String {
        std::fs::read_to_string(self.home.join("calls.log")).unwrap()
    }

    /// Asserts that every VM and medium registered was unregistered and deleted.
    fn assert_empty(&self, when: &str) {
        assert_eq!(self.call(&["list", "vms"]), "", "VMs left {when}");
        assert_eq!(self.call(&["list", "hdds"]), "", "media left {when}");
    }
}

/// Runs `text` in `dir` with `vbox`, expecting success and nothing left.
fn run_with(vbox: &FakeVbox, dir: &Path, text: &str) -> Vec<zvbench_reports::ResultRow> {
    let program = vbox.program.clone().into_os_string();
    let rows = run_text_with(dir, &dir.join("out"), text, |o| o.vboxmanage = program)
        .expect("the run succeeds");
    vbox.assert_empty("after the run");
    assert_nothing_left(dir);
    rows
}

/// Whether VirtualBox tests can run here: guests, and the fake's tools.
fn can_run() -> bool {
    can_boot_guests() && require(&["xorriso", "python3"])
}

#[test]
fn the_story_on_7x() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let vbox = FakeVbox::new(dir.path(), "7.0.20r163906", &[]);
    let rows = run_with(&vbox, dir.path(), &scenario(STORY));
    for t in ["vdi-nocache", "vdi-hostcache", "vdi-hostcache-flush", "raw"] {
        let r = row(&rows, t, "fsync");
        assert_eq!(r.hypervisor, "virtualbox");
        assert_eq!(
            (r.agent_flushes, r.guest_dev_flushes),
            (5, Some(5)),
            "{r:?}"
        );
        // ReqsFlush counts what the guest asked, dropped or not.
        assert!(
            r.hv_flushes.is_some_and(|n| (4..=5).contains(&n)),
            "{t}: {r:?}"
        );
    }
    let passed = row(&rows, "vdi-nocache", "fsync");
    assert_eq!(passed.cache, "hostiocache=off flushes=passed");
    assert!(
        passed.host_dev_flushes.is_some_and(|n| n >= 4),
        "{passed:?}"
    );
    let cached = row(&rows, "vdi-hostcache", "fsync");
    assert_eq!(cached.cache, "hostiocache=on flushes=ignored");
    let flushed = row(&rows, "vdi-hostcache-flush", "fsync");
    assert_eq!(flushed.cache, "hostiocache=on flushes=passed");
    assert!(
        flushed.host_dev_flushes.is_some_and(|n| n >= 4),
        "IgnoreFlush 0: {flushed:?}"
    );
    let raw = row(&rows, "raw", "fsync");
    assert_eq!(
        raw.host_dev_flushes,
        Some(0),
        "raw VMDK flushes do not reach the loop device: {raw:?}"
    );

    let out = dir.path().join("out");
    let run = run_json(&out);
    assert_eq!(
        run["storage"]["vdi-hostcache"]["virtualbox"]["hostiocache"],
        true
    );
    assert_eq!(run["storage"]["raw"]["virtualbox"]["raw_vmdk"], true);
    let summary = zvbench::commands::report::write(&out).unwrap();
    assert!(
        summary.contains("a raw-disk VMDK: VirtualBox does not flush"),
        "{summary}"
    );
    let calls = vbox.calls();
    assert!(calls.contains("\"--uart-mode2\""), "7.x spelling");
    assert!(
        out.join("guests/raw-1/VBox.log").exists(),
        "the VM's log is kept"
    );
    assert!(calls.contains("\"RawDrive="), "7.x raw disk");
    assert!(
        calls.contains("\"VBoxInternal/Devices/ahci/0/LUN#1/Config/IgnoreFlush\", \"0\""),
        "IgnoreFlush set through setextradata: {calls}"
    );
}

/// For the power-cut check: a VDI with the host I/O cache on and IgnoreFlush at its default
/// (1), a VDI and a dynamic VMDK with it off (IgnoreFlushAsync at its default, 0); every
/// write acknowledged.
const CUT_TARGETS: &str = r#"
[[target]]
name = "vdi-hostcache"
storage = "image"
format = "vdi"
dir = "@DIR@"
host_io_cache = true

[[target]]
name = "vdi-nocache"
storage = "image"
format = "vdi"
dir = "@DIR@"

[[target]]
name = "vmdk-nocache"
storage = "image"
format = "vmdk"
dir = "@DIR@"

[[workload]]
name = "fsync"
kind = "seqwr"
bs = "16K"
size = "256K"
sync = "fsync"
"#;

/// Power cuts under VirtualBox, logged by zvbench's FUSE write log under the image file:
/// with the host I/O cache on and flushes ignored every acknowledged block is lost at
/// every cut and the diagnosis names the ignored flushes; with it off none is lost.
#[test]
fn power_cuts_lose_acknowledged_blocks_only_when_flushes_are_ignored() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let vbox = FakeVbox::new(dir.path(), "7.0.20r163906", &[]);
    let out = dir.path().join("out");
    let program = vbox.program.clone().into_os_string();
    let rows = run_text_with(dir.path(), &out, &format!("{HEAD}{CUT_TARGETS}"), |o| {
        o.vboxmanage = program;
        o.powercut = Some(zvbench::powercut::Options {
            cuts: 5,
            keep: false,
        });
    })
    .expect("the run succeeds");
    vbox.assert_empty("after the run");
    assert_nothing_left(dir.path());

    let cached = row(&rows, "vdi-hostcache", "fsync");
    assert_eq!(cached.cache, "hostiocache=on flushes=ignored");
    assert_eq!(cached.powercut_cuts, Some(6), "{cached:?}");
    assert_eq!(cached.powercut_acked_blocks, Some(16), "{cached:?}");
    assert_eq!(cached.powercut_log_flushes, Some(0), "{cached:?}");
    assert_eq!(cached.powercut_cuts_lost, Some(6), "{cached:?}");
    assert_eq!(cached.powercut_lost_blocks, Some(16), "{cached:?}");
    assert_eq!(cached.powercut_verdict.as_deref(), Some("not durable"));
    assert_eq!(
        cached.powercut_dropped_at.as_deref(),
        Some("VirtualBox hostiocache=on flushes=ignored (no guest flush reached stable storage)")
    );

    for t in ["vdi-nocache", "vmdk-nocache"] {
        let direct = row(&rows, t, "fsync");
        assert_eq!(direct.cache, "hostiocache=off flushes=passed");
        assert_eq!(direct.powercut_cuts, Some(6), "{direct:?}");
        assert_eq!(direct.powercut_acked_blocks, Some(16), "{direct:?}");
        assert!(
            direct.powercut_log_flushes.is_some_and(|n| n >= 16),
            "{direct:?}"
        );
        assert_eq!(direct.powercut_lost_blocks, Some(0), "{direct:?}");
        assert_eq!(direct.powercut_verdict.as_deref(), Some("durable"));
    }

    let md = zvbench::commands::report::write(&out).unwrap();
    assert!(
        md.contains("`acknowledged-writes-lost` **vdi-hostcache / fsync**"),
        "{md}"
    );
    assert!(md.contains("flushes=ignored"), "{md}");
    for t in ["vdi-hostcache-1", "vdi-nocache-1", "vmdk-nocache-1"] {
        for f in ["powercut.log", "powercut.img", "writelog"] {
            let p = out.join("guests").join(t).join(f);
            assert!(!p.exists(), "{} left", p.display());
        }
    }
    let calls = vbox.calls();
    assert!(
        calls.contains("/writelog/zvbench-"),
        "the image is created and attached through the write log's mount: {calls}"
    );
}

/// virtio-scsi: IgnoreFlush under LUN#0/AttachedDriver (the fake, like VirtualBox, refuses
/// to start a VM with it at LUN#0/Config), counters under VIRTIO-SCSI0; and async flushes
/// that VirtualBox disabled after a failed host flush.
#[test]
fn virtio_scsi_and_disabled_async_flushes_on_7_1() {
    if !can_run() {
        return;
    }
    // The images on a file system of their own: the host device's flush counter is then
    // this VM's alone (the host's shared disk also counts every other program's flushes).
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let fs = ScratchFs::new(256 << 20);
    let text = scenario(SCSI_AND_ASYNC).replace("@DIR@", fs.mnt.to_str().unwrap());
    let vbox = FakeVbox::new(
        dir.path(),
        "7.1.6r167084",
        &[("FAKE_VBOX_ASYNC_FLUSH", "fail")],
    );
    let rows = run_with(&vbox, dir.path(), &text);
    assert_nothing_left(&fs.mnt);
    let scsi = row(&rows, "scsi-flush", "fsync");
    assert_eq!(scsi.bus, "scsi");
    assert!(
        scsi.hv_flushes.is_some_and(|n| (4..=5).contains(&n)),
        "counters read from VIRTIO-SCSI0: {scsi:?}"
    );
    assert!(
        scsi.host_dev_flushes.is_some_and(|n| n >= 4),
        "the synchronous path is not the one that failed: {scsi:?}"
    );
    let calls = vbox.calls();
    assert!(
        calls.contains(
            "\"VBoxInternal/Devices/virtio-scsi/0/LUN#0/AttachedDriver/Config/IgnoreFlush\", \"0\""
        ),
        "{calls}"
    );
    let failed = row(&rows, "vdi-nocache", "fsync");
    assert_eq!(failed.host_dev_flushes, Some(0), "{failed:?}");
    let out = dir.path().join("out");
    assert!(
        run_json(&out)["storage"]["vdi-nocache"]["async_flushes_disabled"]["1"]
            .as_str()
            .is_some_and(|l| l.contains("disabling async flushes")),
        "the VBox.log line is in run.json"
    );
    assert!(run_json(&out)["storage"]["scsi-flush"]["async_flushes_disabled"].is_null());
    let summary = zvbench::commands::report::write(&out).unwrap();
    assert!(
        summary.contains("VirtualBox disabled asynchronous flushes"),
        "{summary}"
    );
}

/// 6.1: the other spellings, on a raw disk; NVMe counters under NVME0.
#[test]
fn nvme_and_a_raw_disk_on_6_1() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let vbox = FakeVbox::new(dir.path(), "6.1.50r161033", &[]);
    let rows = run_with(&vbox, dir.path(), &scenario(NVME_AND_RAW));
    assert_eq!(row(&rows, "raw", "fsync").guest_dev_flushes, Some(5));
    let nvme = row(&rows, "nvme", "fsync");
    assert_eq!(nvme.bus, "nvme");
    assert!(
        nvme.hv_flushes.is_some(),
        "counters read from NVME0: {nvme:?}"
    );
    assert!(nvme.dev_write_cache.is_some(), "{nvme:?}");
    let calls = vbox.calls();
    assert!(
        calls.contains("\"--uartmode1\"") && calls.contains("\"createrawvmdk\""),
        "{calls}"
    );
    let out = dir.path().join("out");
    let flushes = run_json(&out)["storage"]["nvme"]["virtualbox"]["flushes"].clone();
    assert!(
        flushes
            .as_str()
            .is_some_and(|f| f.starts_with("none sent") && f.contains("no volatile write cache")),
        "{flushes}"
    );
    // VirtualBox's NVMe controller reports no volatile write cache, so on a real host the
    // guest's disk is "write through" and no layer sees a flush. QEMU's nvme, under the
    // fake, always reports one (the fake says so), so that part of this row is what a real
    // host would give, not what the fake gave; the diagnosis must name the cause.
    let real = zvbench_reports::ResultRow {
        guest_dev_flushes: Some(0),
        dev_write_cache: Some("write through".into()),
        hv_flushes: Some(0),
        host_dev_flushes: Some(0),
        ..nvme.clone()
    };
    let findings = zvbench_reports::diagnose::diagnose(
        &[real],
        &zvbench_reports::report::context(&serde_json::from_value(run_json(&out)).unwrap()),
    );
    assert!(
        findings.iter().any(|f| f.rule == "flushes-dropped"
            && f.message.contains("between agent and guest device")
            && f.message
                .contains("NVMe controller reports no volatile write cache")),
        "{findings:?}"
    );
}

/// Teardown on failure: startvm fails after the VM, its media and attachments exist.
#[test]
fn a_failed_start_tears_everything_down() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let vbox = FakeVbox::new(
        dir.path(),
        "7.0.20r163906",
        &[("FAKE_VBOX_FAIL", "startvm")],
    );
    let program = vbox.program.clone().into_os_string();
    let e = run_text_with(dir.path(), &dir.path().join("out"), &scenario(STORY), |o| {
        o.vboxmanage = program
    })
    .unwrap_err();
    assert!(zvbench::chain(&e).contains("targets failed"), "{e:#}");
    vbox.assert_empty("after a failure");
    let calls = vbox.calls();
    for step in ["\"startvm\"", "\"closemedium\"", "\"unregistervm\""] {
        assert!(calls.contains(step), "{step} not called: {calls}");
    }
    assert_nothing_left(dir.path());
}

/// Teardown on Ctrl-C while the guest runs.
#[test]
fn ctrl_c_while_the_guest_runs_tears_everything_down() {
    ctrl_c_tears_down(None);
}

/// Ctrl-C under `--powercut`: the write log's FUSE mount goes too (`assert_nothing_left`
/// reads `/proc/mounts`), and so do the log and the base copy.
#[test]
fn ctrl_c_under_powercut_unmounts_the_write_log() {
    ctrl_c_tears_down(Some(zvbench::powercut::Options {
        cuts: 2,
        keep: false,
    }));
}

/// Interrupts a run of the story once its first VM runs; everything must be gone after.
fn ctrl_c_tears_down(powercut: Option<zvbench::powercut::Options>) {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let vbox = FakeVbox::new(dir.path(), "7.0.20r163906", &[]);
    let text = scenario(STORY).replace("@DIR@", &dir.path().display().to_string());
    let plan = zvbench::scenario::parse("t.toml", &text).unwrap();
    let mut opts = options(&dir.path().join("out"), &text);
    opts.vboxmanage = vbox.program.clone().into_os_string();
    opts.powercut = powercut;
    let stop = zvbench::Interrupt::default();
    let (s2, program) = (stop.clone(), vbox.program.clone());
    let watcher = std::thread::spawn(move || {
        for _ in 0..1200 {
            let out = Command::new(&program).args(["list", "runningvms"]).output();
            if out.is_ok_and(|o| !o.stdout.is_empty()) {
                std::thread::sleep(std::time::Duration::from_secs(3));
                s2.set();
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    });
    let r = zvbench::run::run(&plan, &opts, &stop);
    assert!(watcher.join().unwrap(), "the VM never ran");
    let e = r.expect_err("an interrupted run fails");
    assert!(zvbench::chain(&e).contains("interrupted"), "{e:#}");
    vbox.assert_empty("after Ctrl-C");
    assert!(
        vbox.calls().contains("[\"controlvm\""),
        "the running VM was powered off: {}",
        vbox.calls()
    );
    assert_nothing_left(dir.path());
    assert_eq!(
        vbox.calls().contains("/writelog/zvbench-"),
        powercut.is_some(),
        "the image is used through the write log under --powercut only"
    );
    let g = dir.path().join("out/guests/vdi-nocache-1");
    for f in ["powercut.log", "powercut.img", "writelog"] {
        assert!(!g.join(f).exists(), "{f} left after Ctrl-C");
    }
}

/// `zvbench clean` removes a VM a killed run left, with its image, and nothing else.
#[test]
fn clean_removes_a_dead_runs_vm_and_nothing_else() {
    if !require(&["python3"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let vbox = FakeVbox::new(dir.path(), "7.0.20r163906", &[]);
    let base = dir.path().join("vms");
    let base = base.to_str().unwrap();
    let img = dir.path().join("left.vdi");
    let img_s = img.to_str().unwrap();
    for (name, disk) in [("zvbench-20260101T000000-42-vdi-1", true), ("my-vm", false)] {
        vbox.call(&[
            "createvm",
            "--name",
            name,
            "--basefolder",
            base,
            "--register",
        ]);
        vbox.call(&["storagectl", name, "--name", "SATA", "--add", "sata"]);
        if disk {
            vbox.call(&["createmedium", "disk", "--filename", img_s, "--size", "4"]);
            vbox.call(&[
                "storageattach",
                name,
                "--storagectl",
                "SATA",
                "--port",
                "0",
                "--type",
                "hdd",
                "--medium",
                img_s,
            ]);
        }
    }
    assert!(img.exists());
    let program = VBoxManage::detect(&vbox.program).unwrap();
    let done = zvbench::commands::clean::vbox_vms(&program, &|_| false);
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(
        vbox.call(&["list", "vms"]).starts_with("\"my-vm\""),
        "a user's VM stays"
    );
    assert!(!img.exists(), "the leftover VM's image is deleted with it");
    // A VM whose run is alive is left alone.
    vbox.call(&[
        "createvm",
        "--name",
        "zvbench-20260101T000000-43-vdi-1",
        "--basefolder",
        base,
        "--register",
    ]);
    let done = zvbench::commands::clean::vbox_vms(&program, &|_| true);
    assert!(
        matches!(&done[..], [zvbench::commands::clean::Outcome::InUse(_)]),
        "{done:?}"
    );
}

/// The fake VBoxManage run directly, with its own state directory, and VM "a" registered.
struct FakeCli {
    home: tempfile::TempDir,
}

impl FakeCli {
    fn new() -> Option<Self> {
        if !require(&["python3"]) {
            return None;
        }
        let cli = FakeCli {
            home: tempfile::tempdir().unwrap(),
        };
        let base = cli.home.path().join("vms");
        let createvm = [
            "createvm",
            "--name",
            "a",
            "--basefolder",
            base.to_str().unwrap(),
        ];
        let register = |extra: &[&str]| cli.run("7.0.20", &[&createvm[..], extra].concat());
        assert!(register(&["--register"]).status.success());
        assert!(!register(&["--register"]).status.success(), "a name twice");
        Some(cli)
    }

    fn run(&self, version: &str, args: &[&str]) -> std::process::Output {
        Command::new(fake())
            .env("FAKE_VBOX_HOME", self.home.path())
            .env("FAKE_VBOX_VERSION", version)
            .env_remove("FAKE_VBOX_FAIL")
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for FakeCli {
    fn drop(&mut self) {
        // VM "a" never started; unregistering it deletes its files with the state.
        let out = self.run("7.0.20", &["unregistervm", "a", "--delete"]);
        if !std::thread::panicking() {
            assert!(out.status.success(), "{out:?}");
        }
    }
}

/// The fake refuses what the real VBoxManage refuses: each version's other spelling,
/// unknown options, media still attached.
#[test]
fn fake_vboxmanage_rejects_bad_syntax() {
    let Some(cli) = FakeCli::new() else { return };
    for (version, line) in [
        ("6.1.50", "modifyvm a --uart1 0x3F8 4 --uart-mode1 file /tmp/x"),
        ("7.0.20", "modifyvm a --uart1 0x3F8 4 --uart-mode1 file rel/x"),
        ("7.0.20", "modifyvm a --memroy 256"),
        ("7.0.20", "storagectl a --name S --add sata --controller NVMe"),
        ("6.1.50", "createmedium disk --filename /tmp/r.vmdk --format VMDK --variant RawDisk --property RawDrive=/dev/null"),
        ("7.0.20", "startvm a --type invisible"),
        ("7.0.20", "controlvm a poweroff"),
    ] {
        let args: Vec<&str> = line.split(' ').collect();
        let out = cli.run(version, &args);
        assert!(!out.status.success(), "{version} accepted {args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with("VBoxManage: error:"),
            "{out:?}"
        );
    }
}

/// 7.x takes both spellings of the uart mode (the old one as an alias), and still
/// `internalcommands createrawvmdk`.
#[test]
fn fake_vboxmanage_takes_both_uart_spellings_and_createrawvmdk() {
    let Some(cli) = FakeCli::new() else { return };
    for version in ["7.0.20", "7.1.6"] {
        for mode in ["--uart-mode1", "--uartmode1"] {
            let line = format!("modifyvm a --uart1 0x3F8 4 {mode} file /tmp/x");
            let out = cli.run(version, &line.split(' ').collect::<Vec<_>>());
            assert!(out.status.success(), "{version} {mode}: {out:?}");
        }
        let device = cli.home.path().join(format!("device-{version}"));
        std::fs::write(&device, vec![0u8; 1 << 20]).unwrap();
        let vmdk = cli.home.path().join(format!("raw-{version}.vmdk"));
        let out = cli.run(
            version,
            &[
                "internalcommands",
                "createrawvmdk",
                "-filename",
                vmdk.to_str().unwrap(),
                "-rawdisk",
                device.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{version} createrawvmdk: {out:?}");
        assert!(std::fs::read_to_string(&vmdk)
            .unwrap()
            .contains(device.to_str().unwrap()));
    }
}

/// virtio-scsi: DrvSCSI at LUN#0 takes no config values, so a disk setting there stops the
/// VM from starting; under LUN#0/AttachedDriver it reaches DrvVD.
#[test]
fn fake_vboxmanage_reads_virtio_scsi_settings_where_drvvd_does() {
    let Some(cli) = FakeCli::new() else { return };
    let ok = |args: &[&str]| assert!(cli.run("7.0.20", args).status.success(), "{args:?}");
    ok(&[
        "storagectl",
        "a",
        "--name",
        "V",
        "--add",
        "virtio",
        "--controller",
        "VirtIO",
    ]);
    let wrong = "VBoxInternal/Devices/virtio-scsi/0/LUN#0/Config/IgnoreFlush";
    ok(&["setextradata", "a", wrong, "0"]);
    let out = cli.run("7.0.20", &["startvm", "a", "--type", "headless"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("SCSI") && err.contains("IgnoreFlush"),
        "{out:?}"
    );
    ok(&["setextradata", "a", wrong]);
    ok(&[
        "setextradata",
        "a",
        "VBoxInternal/Devices/virtio-scsi/0/LUN#0/AttachedDriver/Config/IgnoreFlush",
        "0",
    ]);
    let out = cli.run("7.0.20", &["startvm", "a", "--type", "headless"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("IgnoreFlush") && err.contains("DVD"),
        "only the missing DVD stops this one: {out:?}"
    );
}
