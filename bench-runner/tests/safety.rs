//! The tool writes to raw devices: it must never write one that holds data it did not
//! create unless the user names that exact device, and never one in use. Real loop
//! devices, real ext4, a real partition table, real swap. The rule itself is the agent's
//! (`zvbench_agent::target::check_writable`, tested in depth in guest-agent/tests/safety.rs);
//! these tests show the runner applies it before provisioning anything.

mod common;
use common::*;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use zvbench::commands::clean::{clean, Outcome, Scope};
use zvbench::host::storage::check_blockdev;
use zvbench_agent::pass::{run_pass, PassSpec, Quiet, Workload};
use zvbench_agent::target::{probe_contents, Contents};
use zvbench_agent::ByteSize;

fn mkfs_with_file(dev: &std::path::Path, mnt: &std::path::Path) {
    assert!(Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(dev)
        .status()
        .unwrap()
        .success());
    std::fs::create_dir_all(mnt).unwrap();
    assert!(Command::new("mount")
        .arg(dev)
        .arg(mnt)
        .status()
        .unwrap()
        .success());
    std::fs::write(mnt.join("precious.txt"), "do not lose me").unwrap();
    assert!(Command::new("umount").arg(mnt).status().unwrap().success());
}

const BLOCKDEV: &str = r#"
[run]
repetitions = 1
disk_size = "16M"
guest_timeout_s = 240

[[target]]
name = "disk"
storage = "blockdev"
device = "@DEV@"

[[workload]]
name = "w"
kind = "seqwr"
bs = "1M"
size = "4M"
direct = true
"#;

#[test]
fn a_device_with_a_file_system_is_refused_and_left_intact() {
    if !require(&["root", "mkfs.ext4", "qemu-img"]) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let l = LoopDev::new(dir.path(), "ext4.img", 32 << 20);
    let mnt = dir.path().join("mnt");
    mkfs_with_file(&l.dev, &mnt);
    let before = std::fs::read(&l.backing).unwrap();

    let text = BLOCKDEV.replace("@DEV@", &l.dev.display().to_string());
    let out = dir.path().join("out");
    let err = run_text(dir.path(), &out, &text).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("ext4 (filesystem) at byte 1080"), "{msg}");
    assert!(
        msg.contains(&format!("--allow-destroy {}", l.dev.display())),
        "the refusal names the fix: {msg}"
    );
    assert!(
        !out.join("results.csv").exists(),
        "refused before anything was created"
    );
    assert!(
        std::fs::read(&l.backing).unwrap() == before,
        "not one byte changed"
    );

    // Mounted: refused even with --allow-destroy.
    assert!(Command::new("mount")
        .arg(&l.dev)
        .arg(&mnt)
        .status()
        .unwrap()
        .success());
    let e = check_blockdev(&l.dev, std::slice::from_ref(&l.dev))
        .unwrap_err()
        .to_string();
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    assert!(e.contains(&format!("mounted on {}", mnt.display())), "{e}");
    assert_eq!(
        std::fs::read_to_string(mnt.join("precious.txt")).ok(),
        None,
        "unmounted again"
    );

    // Named exactly with --allow-destroy: allowed; another device named: still refused.
    assert!(check_blockdev(&l.dev, std::slice::from_ref(&l.dev)).is_ok());
    assert!(check_blockdev(&l.dev, &["/dev/loop-not-this".into()]).is_err());
}

#[test]
fn an_empty_device_is_used_and_then_recognised_as_zvbench_data() {
    if !can_boot_guests() {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let l = LoopDev::new(dir.path(), "empty.img", 16 << 20);
    let text = BLOCKDEV.replace("@DEV@", &l.dev.display().to_string());
    let rows =
        run_text(dir.path(), &dir.path().join("out"), &text).expect("an empty device may be used");
    assert_eq!(rows[0].storage, "blockdev");
    assert!(rows[0].host_dev_flushes.is_some());
    assert_eq!(probe_contents(&l.dev).unwrap(), Contents::Zvbench);
    assert!(
        check_blockdev(&l.dev, &[]).is_ok(),
        "zvbench may reuse what it wrote"
    );
    assert!(l.backing.exists(), "a user's device is never removed");
}

#[test]
fn clean_removes_what_an_interrupted_run_left() {
    if !require(&["root", "losetup"]) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let left = LoopDev::new(dir.path(), "zvbench-20260101T000000-1-raw.img", 8 << 20);
    std::fs::write(dir.path().join("zvbench-20260101T000000-1-vdi.vdi"), b"x").unwrap();
    std::fs::write(dir.path().join("keep-me.img"), b"x").unwrap();
    std::fs::write(dir.path().join("zvbench-notes.txt"), b"mine").unwrap();
    let done = clean(&Scope {
        dirs: vec![dir.path().to_owned()],
        only_dirs: true,
        runtime: dir.path().join("run"),
        vboxmanage: None,
    });
    assert!(
        done.contains(&Outcome::Done(format!("detached {}", left.dev.display()))),
        "{done:?}"
    );
    assert!(
        !done.iter().any(|d| matches!(d, Outcome::Failed(_))),
        "{done:?}"
    );
    assert_nothing_left(dir.path());
    assert!(
        dir.path().join("keep-me.img").exists() && dir.path().join("zvbench-notes.txt").exists(),
        "only names zvbench generates are removed"
    );
}

/// Issue 9, item 1: a device zvbench used once and that was then partitioned kept
/// zvbench's header in sector 0, and the runner wrote it again.
#[test]
fn a_partition_table_after_a_zvbench_pass_is_refused() {
    if !require(&["root", "sfdisk", "qemu-img"]) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let l = LoopDev::new(dir.path(), "z.img", 64 << 20);
    let pass = PassSpec {
        direct: true,
        ..PassSpec::new(
            l.dev.clone(),
            Workload::Seqwr,
            ByteSize(1 << 20),
            ByteSize(4 << 20),
        )
    };
    run_pass(&pass, &mut Quiet).expect("an empty device may be used");
    check_blockdev(&l.dev, &[]).expect("and used again");
    let script = dir.path().join("dos.sfdisk");
    std::fs::write(&script, "label: dos\n,32M,83\n").unwrap();
    let sfdisk = Command::new("sfdisk")
        .arg("-q")
        .arg(&l.dev)
        .stdin(std::fs::File::open(&script).unwrap())
        .stderr(std::process::Stdio::null())
        .status();
    assert!(sfdisk.unwrap().success(), "sfdisk writes a dos table");
    let before = std::fs::read(&l.backing).unwrap();

    let text = BLOCKDEV.replace("@DEV@", &l.dev.display().to_string());
    let out = dir.path().join("out");
    let msg = format!("{:#}", run_text(dir.path(), &out, &text).unwrap_err());
    assert!(msg.contains("dos (partition table) at byte 510"), "{msg}");
    assert!(
        !out.join("results.csv").exists(),
        "refused before anything ran"
    );
    assert!(
        std::fs::read(&l.backing).unwrap() == before,
        "not one byte changed"
    );
    assert!(check_blockdev(&l.dev, std::slice::from_ref(&l.dev)).is_ok());
}

/// Swap in use and an exclusive opener: refused even when named with --allow-destroy.
#[test]
fn a_device_in_use_is_refused_even_when_named() {
    if !require(&["root", "mkswap", "swapon", "swapoff"]) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let l = LoopDev::new(dir.path(), "swap.img", 32 << 20);
    let named = std::slice::from_ref(&l.dev);
    let ok = |argv: &[&std::ffi::OsStr]| {
        assert!(
            Command::new(argv[0])
                .args(&argv[1..])
                .status()
                .unwrap()
                .success(),
            "{argv:?}"
        )
    };
    ok(&["mkswap".as_ref(), l.dev.as_os_str()]);
    ok(&["swapon".as_ref(), l.dev.as_os_str()]);
    let e = check_blockdev(&l.dev, named).map_err(|e| format!("{e:#}"));
    ok(&["swapoff".as_ref(), l.dev.as_os_str()]);
    let e = e.unwrap_err();
    assert!(
        e.contains("used as swap") && e.contains("--allow-destroy or not"),
        "{e}"
    );

    let held = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(&l.dev)
        .unwrap();
    let e = format!("{:#}", check_blockdev(&l.dev, named).unwrap_err());
    assert!(e.contains("open exclusively by another program"), "{e}");
    drop(held);
    assert!(check_blockdev(&l.dev, named).is_ok(), "free and named");
    let e = format!("{:#}", check_blockdev(&l.dev, &[]).unwrap_err());
    assert!(
        e.contains("swap (other)"),
        "not named: its swap signature refuses it: {e}"
    );
}
