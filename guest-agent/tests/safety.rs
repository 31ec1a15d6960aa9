//! What the agent will and will not write (issue 9, items 1, 2, 6 and 14), against real
//! loop devices, real file systems, partition tables, an LVM physical volume, swap,
//! mounts and exclusive openers (a zfs-fuse pool's labels: bench-runner/tests/zfs_fuse.rs,
//! beside its zfs-fuse guard). Each case failed before the fix: the
//! agent trusted its own header in sector 0, wrote regular files holding data, left a
//! 0-byte file behind a refused block size, and ran once on `--repeat 0`.

mod common;
use common::*;
use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::process::{Command, Output};
use zvbench_agent::pass::{run_pass, PassError, Quiet, Workload};
use zvbench_agent::target::{probe_contents, Contents, Refusal};
use zvbench_agent::verify::{fill_random, is_block_start};

/// The agent binary built with these tests.
fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zvbench-agent"))
        .args(args)
        .output()
        .unwrap()
}

/// A write pass of 1 MiB on `path` with `--allow-destroy` or not.
fn write_pass(path: &Path, allow_destroy: bool) -> Result<(), PassError> {
    let mut s = spec(path, Workload::Seqwr, 1 << 20, 1 << 20);
    s.allow_destroy = allow_destroy;
    run_pass(&s, &mut Quiet).map(drop)
}

/// Puts zvbench's own first sector (what every pass writes at offset 0) on `path`,
/// leaving the rest alone: zvbench's header in front of someone else's signature.
fn stamp_header(path: &Path) {
    let mut sector = vec![0u8; 512];
    fill_random(&mut sector, 1);
    let f = File::options().write(true).open(path).unwrap();
    f.write_all_at(&sector, 0).unwrap();
    f.sync_all().unwrap();
    let mut head = vec![0u8; 512];
    File::open(path)
        .unwrap()
        .read_exact_at(&mut head, 0)
        .unwrap();
    assert!(is_block_start(&head), "the header is in place");
}

/// Asserts that a write pass on `path` is refused naming `what`, and that not one byte of
/// `backing` changed.
fn assert_refused_intact(path: &Path, backing: &Path, what: &str) {
    let before = std::fs::read(backing).unwrap();
    let e = write_pass(path, false).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, PassError::Refused(Refusal::Foreign { .. })),
        "{msg}"
    );
    assert!(msg.contains(what), "expected {what:?} in: {msg}");
    assert!(
        msg.contains(&format!("--allow-destroy {}", path.display())),
        "{msg}"
    );
    assert!(
        std::fs::read(backing).unwrap() == before,
        "not one byte changed"
    );
}

/// Runs a cleanup command on drop: a test that fails half-way still unmounts or swaps off.
struct Undo(Vec<String>);

impl Drop for Undo {
    fn drop(&mut self) {
        let _ = Command::new(&self.0[0]).args(&self.0[1..]).status();
    }
}

#[test]
fn issue_reproduction_a_partition_table_after_a_pass_is_refused() {
    need("sfdisk", "fdisk");
    let l = Loop::new(64 << 20, 512);
    let dev = l.dev_str();
    let pass = |extra: &[&str]| {
        let mut a = vec![
            "run",
            "--path",
            dev,
            "--workload",
            "seqwr",
            "--bs",
            "1M",
            "--size",
            "4M",
            "--direct",
        ];
        a.extend(extra);
        agent(&a)
    };
    assert!(pass(&[]).status.success(), "an empty device may be used");
    sfdisk(&l.dev, "label: dos\n,32M,83\n");
    assert!(run(&["blkid", "-p", dev]).contains("PTTYPE=\"dos\""));

    let before = std::fs::read(&l.backing).unwrap();
    let out = pass(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("dos (partition table) at byte 510"), "{err}");
    assert!(std::fs::read(&l.backing).unwrap() == before, "untouched");

    let out = pass(&["--allow-destroy", "/dev/null"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("does not name --path"), "{err}");
    assert!(std::fs::read(&l.backing).unwrap() == before, "untouched");

    assert!(
        pass(&["--allow-destroy", dev]).status.success(),
        "named exactly: allowed"
    );
}

#[test]
fn gpt_is_found_by_its_backup_header_at_the_end() {
    need("sfdisk", "fdisk");
    let l = Loop::new(64 << 20, 512);
    sfdisk(&l.dev, "label: gpt\n,32M\n");
    // A destroying pass replaces the protective MBR and the primary header and table:
    // only the backup header in the device's last sector is left.
    write_pass(&l.dev, true).unwrap();
    assert_refused_intact(
        &l.dev,
        &l.backing,
        &format!("gpt (partition table) at byte {}", (64 << 20) - 512),
    );
}

/// A signature made by a real tool: (tool, package, argv before the device, what the
/// refusal names, whether the signature leaves sector 0 alone so that zvbench's header can
/// sit in front of it, the smallest device the tool accepts in MiB).
type Case<'a> = (&'a str, &'a str, &'a [&'a str], &'a str, bool, u64);

#[test]
fn signatures_behind_a_zvbench_header_are_refused() {
    let cases: &[Case] = &[
        (
            "mkfs.ext4",
            "e2fsprogs",
            &["-q", "-F"],
            "ext4 (filesystem)",
            true,
            64,
        ),
        (
            "mkfs.xfs",
            "xfsprogs",
            &["-f", "-q"],
            "xfs (filesystem)",
            false,
            320,
        ),
        (
            "mkfs.btrfs",
            "btrfs-progs",
            &["-f", "-q"],
            "btrfs (filesystem)",
            true,
            128,
        ),
        (
            "mkfs.vfat",
            "dosfstools",
            &[],
            "vfat (filesystem)",
            false,
            64,
        ),
        ("mkswap", "util-linux", &[], "swap (other)", true, 64),
        (
            "pvcreate",
            "lvm2",
            &["-ff", "-y", "-q"],
            "LVM2_member (raid)",
            true,
            64,
        ),
    ];
    for (tool, package, args, what, stamp, mib) in cases {
        need(tool, package);
        let l = Loop::new(mib << 20, 512);
        let mut argv = vec![*tool];
        argv.extend_from_slice(args);
        argv.push(l.dev_str());
        let out = Command::new(argv[0])
            .args(&argv[1..])
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{argv:?}: {out:?}");
        if *stamp {
            stamp_header(&l.dev);
        }
        assert_refused_intact(&l.dev, &l.backing, what);
    }
}

#[test]
fn a_device_in_use_is_refused_even_when_named() {
    need("mkfs.ext4", "e2fsprogs");
    need("swapon", "mount");
    let l = Loop::new(64 << 20, 512);
    let in_use = |what: &str| {
        let e = write_pass(&l.dev, true).unwrap_err();
        assert!(
            matches!(e, PassError::Refused(Refusal::InUse { .. })),
            "{e}"
        );
        assert!(e.to_string().contains(what), "expected {what:?} in {e}");
    };

    run(&["mkfs.ext4", "-q", "-F", l.dev_str()]);
    let mnt = l.dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(&["mount", l.dev_str(), mnt.to_str().unwrap()]);
    let umount = Undo(vec!["umount".into(), mnt.display().to_string()]);
    in_use(&format!("mounted on {}", mnt.display()));
    drop(umount);

    run(&["mkswap", l.dev_str()]);
    run(&["swapon", l.dev_str()]);
    let swapoff = Undo(vec!["swapoff".into(), l.dev.display().to_string()]);
    in_use("used as swap");
    drop(swapoff);

    // Another program holds it open exclusively (what mkfs, mount and dm do).
    let held = File::options()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(&l.dev)
        .unwrap();
    in_use("open exclusively by another program");
    // The same seen from another process: the agent's command line, named or not.
    let out = agent(&[
        "run",
        "--path",
        l.dev_str(),
        "--workload",
        "seqwr",
        "--bs",
        "1M",
        "--size",
        "1M",
        "--allow-destroy",
        l.dev_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("open exclusively by another program"), "{err}");
    drop(held);

    write_pass(&l.dev, true).expect("free and named: allowed");
}

#[test]
fn regular_files_follow_the_device_rule() {
    need("mkfs.ext4", "e2fsprogs");
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();

    let user = dir.path().join("important.dat");
    std::fs::write(&user, b"a user's notes, not zvbench's\n".repeat(1000)).unwrap();
    assert_refused_intact(&user, &user, "data that zvbench did not write");
    write_pass(&user, true).expect("named with the destroy flag: allowed");
    write_pass(&user, false).expect("now zvbench's own data");

    let empty = dir.path().join("empty.dat");
    File::create(&empty).unwrap();
    write_pass(&empty, false).expect("an empty file may be written");
    let new = dir.path().join("new.dat");
    write_pass(&new, false).expect("a new file is created");
    assert!(new.exists());

    let image = dir.path().join("ext4.img");
    File::create(&image).unwrap().set_len(16 << 20).unwrap();
    run(&["mkfs.ext4", "-q", "-F", image.to_str().unwrap()]);
    stamp_header(&image);
    assert_refused_intact(&image, &image, "ext4 (filesystem)");

    // A file behind a loop device is that device: never written, named or not.
    let l = Loop::new(16 << 20, 512);
    let e = write_pass(&l.backing, true).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("the backing file of {}", l.dev.display())),
        "{e}"
    );
}

#[test]
fn zvbench_data_is_never_taken_for_a_signature() {
    let l = Loop::new(16 << 20, 512);
    for bs in [512u64, 4096, 1 << 20, 16 << 20] {
        for seed in 1..=3 {
            for verify in [false, true] {
                let mut s = spec(&l.dev, Workload::Seqwr, bs, 16 << 20);
                (s.seed, s.verify, s.allow_destroy) = (seed, verify, true);
                run_pass(&s, &mut Quiet).unwrap();
                assert_eq!(
                    probe_contents(&l.dev).unwrap(),
                    Contents::Zvbench,
                    "bs {bs} seed {seed} verify {verify}"
                );
            }
        }
    }
}

#[test]
fn a_refused_block_size_leaves_no_file() {
    need("mkfs.ext4", "e2fsprogs");
    // A file system on a 4096-byte-sector device: O_DIRECT needs 4096-byte requests.
    let l = Loop::new(32 << 20, 4096);
    run(&["mkfs.ext4", "-q", "-F", "-b", "4096", l.dev_str()]);
    let mnt = l.dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(&["mount", l.dev_str(), mnt.to_str().unwrap()]);
    let _umount = Undo(vec!["umount".into(), mnt.display().to_string()]);
    let p = mnt.join("new.dat");
    let mut s = spec(&p, Workload::Seqwr, 512, 4096);
    s.direct = true;
    let e = run_pass(&s, &mut Quiet).unwrap_err();
    assert!(
        matches!(e, PassError::Misaligned { align: 4096, .. }),
        "{e}"
    );
    assert!(!p.exists(), "a refused pass leaves no file");
}

#[test]
fn repeat_zero_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.dat");
    let out = agent(&[
        "run",
        "--path",
        p.to_str().unwrap(),
        "--workload",
        "seqwr",
        "--bs",
        "4K",
        "--size",
        "4K",
        "--repeat",
        "0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--repeat"), "{err}");
    assert!(!p.exists(), "nothing ran");
}
