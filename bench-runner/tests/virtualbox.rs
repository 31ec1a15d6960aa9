//! `hypervisor = "virtualbox"` end to end against tests/fakes/fake-VBoxManage — a FAKE
//! VBoxManage (VirtualBox cannot be installed here) that checks the 6.1/7.x syntax, keeps
//! VMs and media, and boots the guest ISO under QEMU. The agent's frames come back through
//! the serial log file, the counters through `debugvm statistics`, and the host device's
//! flush counter is a real loop device's.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const SCENARIO: &str = r#"
[run]
repetitions = 1
disk_size = "16M"
guest_timeout_s = 300

[guest]
hypervisor = "virtualbox"
memory = "256M"

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

[[workload]]
name = "fsync"
kind = "seqwr"
bs = "4K"
size = "64K"
sync = "fsync"
sync_every = 4
"#;

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
    let rows = run_with("7.0.20r163906", dir.path(), SCENARIO);
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
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        run["storage"]["vdi-hostcache"]["virtualbox"]["hostiocache"],
        true
    );
    assert_eq!(run["storage"]["raw"]["virtualbox"]["raw_vmdk"], true);
    let summary = zvbench::report::write(&out).unwrap();
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

    // 6.1: the other spellings, on a raw disk.
    let dir6 = tempfile::tempdir_in("/var/tmp").unwrap();
    let raw_and_nvme = SCENARIO.replace(
        &SCENARIO[SCENARIO.find("[[target]]").unwrap()..SCENARIO.find("[[target]]\nname = \"raw\"").unwrap()],
        "[[target]]\nname = \"nvme\"\nstorage = \"image\"\nformat = \"vdi\"\ndir = \"@DIR@\"\nbus = \"nvme\"\n\n",
    );
    let rows = run_with("6.1.50r161033", dir6.path(), &raw_and_nvme);
    assert_eq!(row(&rows, "raw", "fsync").guest_dev_flushes, Some(5));
    let nvme = row(&rows, "nvme", "fsync");
    assert_eq!(
        (nvme.bus.as_str(), nvme.guest_dev_flushes),
        ("nvme", Some(5)),
        "{nvme:?}"
    );
    assert!(nvme.host_dev_flushes.is_some_and(|n| n >= 4), "{nvme:?}");
    let calls = std::fs::read_to_string(dir6.path().join("fake-vbox/calls.log")).unwrap();
    assert!(
        calls.contains("\"--uartmode1\"") && calls.contains("\"createrawvmdk\""),
        "{calls}"
    );

    // The rest runs in this test, not in tests of their own: the fake is chosen by
    // process-wide environment variables.

    // Teardown on failure: startvm fails after the VM, its media and attachments exist.
    let dir_f = tempfile::tempdir_in("/var/tmp").unwrap();
    let home = dir_f.path().join("fake-vbox");
    std::env::set_var("FAKE_VBOX_HOME", &home);
    std::env::set_var("FAKE_VBOX_VERSION", "7.0.20r163906");
    std::env::set_var("FAKE_VBOX_FAIL", "startvm");
    let e = run_text(dir_f.path(), &dir_f.path().join("out"), SCENARIO).unwrap_err();
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
    let text = SCENARIO.replace("@DIR@", &dir_i.path().display().to_string());
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
    let done = zvbench::vbox::clean(&|_| false);
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
        ("7.0.20", "modifyvm a --uart1 0x3F8 4 --uartmode1 file /tmp/x"),
        ("6.1.50", "modifyvm a --uart1 0x3F8 4 --uart-mode1 file /tmp/x"),
        ("7.0.20", "modifyvm a --uart1 0x3F8 4 --uart-mode1 file rel/x"),
        ("7.0.20", "modifyvm a --memroy 256"),
        ("7.0.20", "storagectl a --name S --add sata --controller NVMe"),
        ("7.0.20", "internalcommands createrawvmdk -filename /tmp/r.vmdk -rawdisk /dev/null"),
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
    assert!(run(
        "7.0.20",
        &[
            "modifyvm",
            "a",
            "--uart1",
            "0x3F8",
            "4",
            "--uart-mode1",
            "file",
            "/tmp/x"
        ]
    )
    .status
    .success());
    assert!(run("7.0.20", &["unregistervm", "a", "--delete"])
        .status
        .success());
}
