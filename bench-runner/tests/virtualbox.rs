//! `hypervisor = "virtualbox"` end to end against tests/fakes/fake-VBoxManage — a FAKE
//! VBoxManage (VirtualBox cannot be installed here) that checks the 6.1/7.x syntax, keeps
//! VMs and media, and boots the guest ISO under QEMU. The agent's frames come back through
//! the serial log file, the counters through `debugvm statistics`, and the host device's
//! flush counter is a real loop device's.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

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

fn vbox(home: &Path, args: &[&str]) -> String {
    let out = Command::new(fake())
        .env("FAKE_VBOX_HOME", home)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_with(version: &str, dir: &Path, text: &str) -> Vec<zvbench_reports::ResultRow> {
    let home = dir.join("fake-vbox");
    std::env::set_var("ZVBENCH_VBOXMANAGE", fake());
    std::env::set_var("FAKE_VBOX_HOME", &home);
    std::env::set_var("FAKE_VBOX_VERSION", version);
    let rows = run_text(dir, &dir.join("out"), text).expect("the run succeeds");
    // Everything registered was unregistered and deleted.
    assert_eq!(vbox(&home, &["list", "vms"]), "", "VMs left");
    assert_eq!(vbox(&home, &["list", "hdds"]), "", "media left");
    assert_nothing_left(dir);
    rows
}

#[test]
fn virtualbox_scenario_end_to_end_on_7x_and_6_1() {
    if !can_boot_guests() || !require(&["xorriso", "python3"]) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let story = scenario(STORY);
    let rows = run_with("7.0.20r163906", dir.path(), &story);
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
    let calls = std::fs::read_to_string(dir.path().join("fake-vbox/calls.log")).unwrap();
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

    // virtio-scsi: IgnoreFlush under LUN#0/AttachedDriver (the fake, like VirtualBox,
    // refuses to start a VM with it at LUN#0/Config), counters under VIRTIO-SCSI0; and
    // async flushes that VirtualBox disabled after a failed host flush.
    // The images on a file system of their own: the host device's flush counter is then
    // this VM's alone (the host's shared disk also counts every other program's flushes).
    let dir_a = tempfile::tempdir_in("/var/tmp").unwrap();
    let fs = ScratchFs::new(256 << 20);
    let text = scenario(SCSI_AND_ASYNC).replace("@DIR@", fs.mnt.to_str().unwrap());
    std::env::set_var("FAKE_VBOX_ASYNC_FLUSH", "fail");
    let rows = run_with("7.1.6r167084", dir_a.path(), &text);
    std::env::remove_var("FAKE_VBOX_ASYNC_FLUSH");
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
    let calls = std::fs::read_to_string(dir_a.path().join("fake-vbox/calls.log")).unwrap();
    assert!(
        calls.contains(
            "\"VBoxInternal/Devices/virtio-scsi/0/LUN#0/AttachedDriver/Config/IgnoreFlush\", \"0\""
        ),
        "{calls}"
    );
    let failed = row(&rows, "vdi-nocache", "fsync");
    assert_eq!(failed.host_dev_flushes, Some(0), "{failed:?}");
    let out_a = dir_a.path().join("out");
    assert!(
        run_json(&out_a)["storage"]["vdi-nocache"]["async_flushes_disabled"]["1"]
            .as_str()
            .is_some_and(|l| l.contains("disabling async flushes")),
        "the VBox.log line is in run.json"
    );
    assert!(run_json(&out_a)["storage"]["scsi-flush"]["async_flushes_disabled"].is_null());
    let summary = zvbench::commands::report::write(&out_a).unwrap();
    assert!(
        summary.contains("VirtualBox disabled asynchronous flushes"),
        "{summary}"
    );

    // 6.1: the other spellings, on a raw disk; NVMe counters under NVME0.
    let dir6 = tempfile::tempdir_in("/var/tmp").unwrap();
    let rows = run_with("6.1.50r161033", dir6.path(), &scenario(NVME_AND_RAW));
    assert_eq!(row(&rows, "raw", "fsync").guest_dev_flushes, Some(5));
    let nvme = row(&rows, "nvme", "fsync");
    assert_eq!(nvme.bus, "nvme");
    assert!(
        nvme.hv_flushes.is_some(),
        "counters read from NVME0: {nvme:?}"
    );
    assert!(nvme.dev_write_cache.is_some(), "{nvme:?}");
    let calls = std::fs::read_to_string(dir6.path().join("fake-vbox/calls.log")).unwrap();
    assert!(
        calls.contains("\"--uartmode1\"") && calls.contains("\"createrawvmdk\""),
        "{calls}"
    );
    let out6 = dir6.path().join("out");
    let flushes = run_json(&out6)["storage"]["nvme"]["virtualbox"]["flushes"].clone();
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
        &zvbench_reports::report::context(&serde_json::from_value(run_json(&out6)).unwrap()),
    );
    assert!(
        findings.iter().any(|f| f.rule == "flushes-dropped"
            && f.message.contains("between agent and guest device")
            && f.message
                .contains("NVMe controller reports no volatile write cache")),
        "{findings:?}"
    );

    // The rest runs in this test, not in tests of their own: the fake is chosen by
    // process-wide environment variables.

    // Teardown on failure: startvm fails after the VM, its media and attachments exist.
    let dir_f = tempfile::tempdir_in("/var/tmp").unwrap();
    let home = dir_f.path().join("fake-vbox");
    std::env::set_var("FAKE_VBOX_HOME", &home);
    std::env::set_var("FAKE_VBOX_VERSION", "7.0.20r163906");
    std::env::set_var("FAKE_VBOX_FAIL", "startvm");
    let e = run_text(dir_f.path(), &dir_f.path().join("out"), &story).unwrap_err();
    std::env::remove_var("FAKE_VBOX_FAIL");
    assert!(zvbench::chain(&e).contains("targets failed"), "{e:#}");
    assert_eq!(
        vbox(&home, &["list", "vms"]),
        "",
        "VMs left after a failure"
    );
    assert_eq!(
        vbox(&home, &["list", "hdds"]),
        "",
        "media left after a failure"
    );
    let calls = std::fs::read_to_string(home.join("calls.log")).unwrap();
    for step in ["\"startvm\"", "\"closemedium\"", "\"unregistervm\""] {
        assert!(calls.contains(step), "{step} not called: {calls}");
    }
    assert_nothing_left(dir_f.path());

    // Teardown on Ctrl-C while the guest runs.
    let dir_i = tempfile::tempdir_in("/var/tmp").unwrap();
    let home = dir_i.path().join("fake-vbox");
    std::env::set_var("FAKE_VBOX_HOME", &home);
    let text = story.replace("@DIR@", &dir_i.path().display().to_string());
    let plan = zvbench::scenario::parse("t.toml", &text).unwrap();
    let opts = options(&dir_i.path().join("out"), &text);
    let stop = zvbench::Interrupt::default();
    let (s2, h2) = (stop.clone(), home.clone());
    let watcher = std::thread::spawn(move || {
        for _ in 0..1200 {
            if !vbox(&h2, &["list", "runningvms"]).is_empty() {
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
    assert_eq!(vbox(&home, &["list", "vms"]), "", "VMs left after Ctrl-C");
    assert_eq!(
        vbox(&home, &["list", "hdds"]),
        "",
        "media left after Ctrl-C"
    );
    let calls = std::fs::read_to_string(home.join("calls.log")).unwrap();
    assert!(
        calls.contains("[\"controlvm\""),
        "the running VM was powered off: {calls}"
    );
    assert_nothing_left(dir_i.path());

    // `zvbench clean` removes a VM a killed run left, with its image, and nothing else.
    let base = dir_i.path().join("vms");
    let base = base.to_str().unwrap();
    let img = dir_i.path().join("left.vdi");
    let img_s = img.to_str().unwrap();
    for (name, disk) in [("zvbench-20260101T000000-42-vdi-1", true), ("my-vm", false)] {
        vbox(
            &home,
            &[
                "createvm",
                "--name",
                name,
                "--basefolder",
                base,
                "--register",
            ],
        );
        vbox(
            &home,
            &["storagectl", name, "--name", "SATA", "--add", "sata"],
        );
        if disk {
            vbox(
                &home,
                &["createmedium", "disk", "--filename", img_s, "--size", "4"],
            );
            vbox(
                &home,
                &[
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
                ],
            );
        }
    }
    assert!(img.exists());
    let done = zvbench::hypervisor::vbox::clean(&|_| false);
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(
        vbox(&home, &["list", "vms"]).starts_with("\"my-vm\""),
        "a user's VM stays"
    );
    assert!(!img.exists(), "the leftover VM's image is deleted with it");
    vbox(&home, &["unregistervm", "my-vm", "--delete"]);
}

/// The fake refuses what the real VBoxManage refuses: each version's other spelling,
/// unknown options, media still attached.
#[test]
fn fake_vboxmanage_rejects_bad_syntax() {
    if !require(&["python3"]) {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let run = |version: &str, args: &[&str]| {
        Command::new(fake())
            .env("FAKE_VBOX_HOME", home.path())
            .env("FAKE_VBOX_VERSION", version)
            .env_remove("FAKE_VBOX_FAIL")
            .args(args)
            .output()
            .unwrap()
    };
    let base = home.path().join("vms");
    let base = base.to_str().unwrap();
    let createvm = || {
        run(
            "7.0.20",
            &[
                "createvm",
                "--name",
                "a",
                "--basefolder",
                base,
                "--register",
            ],
        )
    };
    assert!(createvm().status.success());
    assert!(!createvm().status.success(), "a name twice");
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
        let out = run(version, &args);
        assert!(!out.status.success(), "{version} accepted {args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with("VBoxManage: error:"),
            "{out:?}"
        );
    }
    // 7.x takes both spellings of the uart mode (the old one as an alias), and still
    // `internalcommands createrawvmdk`.
    for version in ["7.0.20", "7.1.6"] {
        for mode in ["--uart-mode1", "--uartmode1"] {
            let line = format!("modifyvm a --uart1 0x3F8 4 {mode} file /tmp/x");
            let out = run(version, &line.split(' ').collect::<Vec<_>>());
            assert!(out.status.success(), "{version} {mode}: {out:?}");
        }
        let device = home.path().join(format!("device-{version}"));
        std::fs::write(&device, vec![0u8; 1 << 20]).unwrap();
        let vmdk = home.path().join(format!("raw-{version}.vmdk"));
        let out = run(
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
    // virtio-scsi: DrvSCSI at LUN#0 takes no config values, so a disk setting there stops
    // the VM from starting; under LUN#0/AttachedDriver it reaches DrvVD.
    let ok = |args: &[&str]| assert!(run("7.0.20", args).status.success(), "{args:?}");
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
    let out = run("7.0.20", &["startvm", "a", "--type", "headless"]);
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
    let out = run("7.0.20", &["startvm", "a", "--type", "headless"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("IgnoreFlush") && err.contains("DVD"),
        "only the missing DVD stops this one: {out:?}"
    );
    assert!(run("7.0.20", &["unregistervm", "a", "--delete"])
        .status
        .success());
}
