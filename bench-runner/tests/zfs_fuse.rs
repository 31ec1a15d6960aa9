//! The ZFS command layer against real ZFS: zfs-fuse runs real pools, datasets, snapshots,
//! rollback, send/receive and properties (not zvols). Also a loop target whose backing
//! file lives on a ZFS dataset: a ZFS-backed raw device.

mod common;
use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zvbench::cmd::Argv;
use zvbench::host::zfs;

/// zfs-fuse, started if it is not running and stopped when the last test that started
/// it is done: tests in this binary run in parallel and share one daemon.
struct ZfsFuse;

/// How many tests hold the daemon, and the daemon if this process started it.
static DAEMON: std::sync::Mutex<(usize, Option<Child>)> = std::sync::Mutex::new((0, None));

impl ZfsFuse {
    fn ensure() -> ZfsFuse {
        let mut d = DAEMON.lock().unwrap_or_else(|e| e.into_inner());
        d.0 += 1;
        let running = Command::new("pgrep")
            .arg("-x")
            .arg("zfs-fuse")
            .status()
            .is_ok_and(|s| s.success());
        if !running {
            d.1 = Some(
                Command::new("zfs-fuse")
                    .arg("--no-daemon")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
        }
        let start = Instant::now();
        while Argv::new(["zpool", "list"]).run().is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "zfs-fuse did not answer"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        ZfsFuse
    }
}

impl Drop for ZfsFuse {
    fn drop(&mut self) {
        let mut d = DAEMON.lock().unwrap_or_else(|e| e.into_inner());
        d.0 -= 1;
        if d.0 == 0 {
            if let Some(mut c) = d.1.take() {
                // SIGTERM lets zfs-fuse unmount its kstat file system (SIGKILL left a dead
                // /zfs-kstat behind after every run); SIGKILL only if it does not end.
                if let Ok(pid) = i32::try_from(c.id()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
                let start = Instant::now();
                while c.try_wait().ok().flatten().is_none() {
                    if start.elapsed() > Duration::from_secs(10) {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                // Whatever the daemon left mounted without a server goes too.
                let dead = std::fs::metadata(KSTAT)
                    .err()
                    .and_then(|e| e.raw_os_error());
                if dead == Some(libc::ENOTCONN) {
                    let _ = nix::mount::umount2(KSTAT, nix::mount::MntFlags::MNT_DETACH);
                }
            }
        }
    }
}

/// Where zfs-fuse mounts its kstat file system.
const KSTAT: &str = "/zfs-kstat";

/// A pool on a file, destroyed on drop.
struct Pool(String);

impl Drop for Pool {
    fn drop(&mut self) {
        // A dataset just unmounted can be busy for a moment under FUSE: retry.
        for _ in 0..20 {
            match Argv::new(["zpool", "destroy", "-f", &self.0]).run() {
                Ok(_) => return,
                Err(e) => eprintln!("retrying: {e}"),
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn zfs_ok(args: &[&str]) -> String {
    let mut v = vec!["zfs"];
    v.extend(args);
    Argv::new(v).stdout().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn zfs_layer_against_real_zfs_fuse() {
    if !require(&["root", "zfs-fuse"]) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let _daemon = ZfsFuse::ensure();
    let (pool, mnt) = file_pool(dir.path(), format!("zvbt{}", std::process::id()));

    // Datasets with the zvbench tag, found again by the leftover scan.
    let ds = format!("{}/zvbench", pool.0);
    zfs::create_fs_argv(&ds, "r1").run().unwrap();
    zfs::exists_argv(&ds).run().expect("created");
    assert!(zfs::exists_argv(&format!("{}/nope", pool.0)).run().is_err());
    let tagged = zfs::parse_tagged(&zfs::list_tagged_argv("filesystem").stdout().unwrap());
    assert!(
        tagged.contains(&(ds.clone(), "r1".to_string())),
        "{tagged:?}"
    );
    assert!(
        !tagged.iter().any(|(n, _)| n == &pool.0),
        "the pool itself is untagged"
    );

    // Properties as zvbench sets and reads them.
    zfs_ok(&["set", "compression=on", &ds]);
    assert_eq!(
        zfs::get_argv(&ds, "compression").stdout().unwrap().trim(),
        "on"
    );
    assert_eq!(
        zfs::get_argv(&ds, "zvbench:run").stdout().unwrap().trim(),
        "r1"
    );

    // Snapshot, rollback, send | receive — the operations of the story.
    let ds_mnt = mnt.join("zvbench");
    std::fs::write(ds_mnt.join("a"), "before").unwrap();
    zfs_ok(&["snapshot", &format!("{ds}@s1")]);
    std::fs::write(ds_mnt.join("a"), "after").unwrap();
    zfs_ok(&["rollback", &format!("{ds}@s1")]);
    assert_eq!(std::fs::read_to_string(ds_mnt.join("a")).unwrap(), "before");
    let mut send = Command::new("zfs")
        .args(["send", &format!("{ds}@s1")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let recv = Command::new("zfs")
        .args(["receive", &format!("{}/copy", pool.0)])
        .stdin(send.stdout.take().unwrap())
        .status()
        .unwrap();
    assert!(send.wait().unwrap().success() && recv.success());
    assert_eq!(
        std::fs::read_to_string(mnt.join("copy/a")).unwrap(),
        "before"
    );

    // A ZFS-backed raw device: the loop target's file on the dataset, and the host
    // baseline on the same dataset.
    let text = format!(
        r#"
[run]
repetitions = 1
disk_size = "16M"
guest_timeout_s = 240
[[target]]
name = "host-zfs"
storage = "host"
dir = "{d}"
[[target]]
name = "loop-zfs"
storage = "loop"
dir = "{d}"
[[workload]]
name = "w"
kind = "seqwr"
bs = "64K"
size = "1M"
sync = "fsync"
sync_every = 4
"#,
        d = ds_mnt.display()
    );
    let rows = run_text(&ds_mnt, &dir.path().join("out"), &text).expect("runs on zfs-fuse");
    let host = row(&rows, "host-zfs", "w");
    assert_eq!(host.agent_flushes, 5);
    assert_eq!(
        host.host_dev_flushes, None,
        "a FUSE file system has no block device to count"
    );
    let lp = row(&rows, "loop-zfs", "w");
    assert_eq!(lp.guest_dev_flushes, Some(5));
    assert!(lp.host_dev_flushes.is_some_and(|n| n >= 4), "{lp:?}");
    assert_nothing_left(&ds_mnt);

    // What an interrupted run would leave is found by its tag and destroyed.
    let done = zvbench::commands::clean::clean(&zvbench::commands::clean::Scope {
        dirs: Vec::new(),
        only_dirs: false,
        runtime: zvbench::host::owner::runtime_dir(),
        vboxmanage: None,
    });
    assert!(
        done.iter()
            .any(|d| d.to_string().starts_with(&format!("destroyed {ds}"))),
        "{done:?}"
    );
    assert!(zfs::exists_argv(&ds).run().is_err());
    assert!(
        zfs::exists_argv(&format!("{}/copy", pool.0)).run().is_ok(),
        "untagged datasets stay"
    );
}

/// Issue 9, item 1: a ZFS pool member is refused by its labels, the two at the start or,
/// with those replaced by zvbench's header and zeros, the two in the last 512 KiB.
#[test]
fn a_pool_member_is_refused_by_its_labels_at_either_end() {
    use std::os::unix::fs::FileExt;
    use zvbench_agent::target::check_writable;
    if !require(&["root", "zfs-fuse"]) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let _daemon = ZfsFuse::ensure();
    let vdev = dir.path().join("vdev.img");
    std::fs::File::create(&vdev)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let pool = Pool(format!("zvbsafe{}", std::process::id()));
    Argv::new([
        "zpool".as_ref(),
        "create".as_ref(),
        pool.0.as_ref(),
        vdev.as_os_str(),
    ])
    .run()
    .unwrap();
    // Exported, the pool is only its labels, as on a disk moved to another machine.
    Argv::new(["zpool", "export", &pool.0]).run().unwrap();
    let copy = dir.path().join("copy.img");
    std::fs::copy(&vdev, &copy).unwrap();
    Argv::new([
        "zpool".as_ref(),
        "import".as_ref(),
        "-d".as_ref(),
        dir.path().as_os_str(),
        pool.0.as_ref(),
    ])
    .run()
    .unwrap();

    let refused = |p: &std::path::Path| {
        let before = std::fs::read(p).unwrap();
        let e = check_writable(p, false).unwrap_err().to_string();
        assert!(e.contains("zfs_member (filesystem)"), "{e}");
        assert!(std::fs::read(p).unwrap() == before, "untouched");
        e
    };
    refused(&copy);
    let mut head = vec![0u8; 512 << 10];
    zvbench_agent::verify::fill_random(&mut head[..512], 1);
    std::fs::File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .write_all_at(&head, 0)
        .unwrap();
    let e = refused(&copy);
    let found = zvbench_agent::blkid::signatures_at(&copy).unwrap();
    assert!(
        !found.is_empty()
            && found
                .iter()
                .all(|s| s.offset >= Some((63 << 20) - (512 << 10))),
        "found by the labels at the end only: {found:?} ({e})"
    );
}

/// A pool on a sparse file in `dir`, its file system mounted on `dir/<name>`.
fn file_pool(dir: &std::path::Path, name: String) -> (Pool, std::path::PathBuf) {
    let vdev = dir.join(format!("{name}.img"));
    std::fs::File::create(&vdev)
        .unwrap()
        .set_len(128 << 20)
        .unwrap();
    let mnt = dir.join(&name);
    Argv::new([
        "zpool".as_ref(),
        "create".as_ref(),
        "-m".as_ref(),
        mnt.as_os_str(),
        name.as_ref(),
        vdev.as_os_str(),
    ])
    .run()
    .unwrap();
    (Pool(name), mnt)
}

/// Issue 11, item 5: the send step times `zfs send | zfs receive` to a second pool,
/// counts the stream's bytes, names the side that failed, and destroys the copy at
/// teardown (zfs-fuse has no zvols: a dataset stands in; the lab sends a zvol).
#[test]
fn send_step_copies_to_a_second_pool_and_the_copy_goes_at_teardown() {
    if !require(&["root", "zfs-fuse"]) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let _daemon = ZfsFuse::ensure();
    let (src_pool, src_mnt) = file_pool(dir.path(), format!("zvbsrc{}", std::process::id()));
    let (dst_pool, _) = file_pool(dir.path(), format!("zvbdst{}", std::process::id()));
    let source = format!("{}/r1-t", src_pool.0);
    zfs::create_fs_argv(&source, "r1").run().unwrap();
    let data: Vec<u8> = (0..(4u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src_mnt.join("r1-t/data"), &data).unwrap();
    let runtime = dir.path().join("runtime");
    let lock = zvbench::host::owner::RunLock::acquire(&runtime, "r1").unwrap();
    let stop = zvbench::Interrupt::default();
    let limit = Duration::from_secs(300);

    let mut p = zvbench::host::storage::Provisioned::default();
    let sent = zvbench::host::send::send_step(&mut p, &lock, &source, &dst_pool.0, limit, &stop)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let copy = format!("{}/r1-t", dst_pool.0);
    assert_eq!(sent.received_as, copy);
    assert_eq!(sent.snapshot, format!("{source}@zvbench-send"));
    assert!(
        sent.bytes >= data.len() as u64 && sent.bytes < 2 * data.len() as u64,
        "{sent:?}"
    );
    assert!(sent.seconds > 0.0, "{sent:?}");
    let rate = sent.bytes as f64 / 1048576.0 / sent.seconds;
    assert!(
        (sent.mib_per_s - rate).abs() < 1e-9 * rate.max(1.0),
        "{sent:?}"
    );
    eprintln!(
        "zfs-fuse send: {} bytes in {:.3} s = {:.1} MiB/s",
        sent.bytes, sent.seconds, sent.mib_per_s
    );
    let copied = zfs_ok(&["get", "-H", "-o", "value", "mountpoint", &copy]);
    assert_eq!(
        std::fs::read(std::path::Path::new(copied.trim()).join("data")).unwrap(),
        data,
        "the copy holds what was sent"
    );
    // The copy is registered in the run's lock (for `zvbench clean`) and goes at teardown.
    let locked = std::fs::read_to_string(runtime.join("run-r1.lock")).unwrap();
    assert!(locked.contains(&copy), "{locked}");
    drop(p);
    assert!(zfs::exists_argv(&copy).run().is_err(), "{copy} left");

    // A second send onto an existing copy is refused before anything is created.
    // (Not mounted: a FUSE mount just made can be busy for a moment when destroyed.)
    zfs_ok(&["create", "-o", "mountpoint=none", &copy]);
    let mut p = zvbench::host::storage::Provisioned::default();
    zfs_ok(&["destroy", &format!("{source}@zvbench-send")]);
    let e = zvbench::host::send::send_step(&mut p, &lock, &source, &dst_pool.0, limit, &stop)
        .unwrap_err()
        .to_string();
    assert!(e.contains("exists already"), "{e}");
    drop(p);
    assert!(zfs::exists_argv(&copy).run().is_ok(), "not ours: kept");
    zfs_ok(&["destroy", &copy]);

    // The receiving side fails (its parent does not exist): named, with zfs's words.
    let mut p = zvbench::host::storage::Provisioned::default();
    let missing = format!("{}/nope", dst_pool.0);
    let e = zvbench::host::send::send_step(&mut p, &lock, &source, &missing, limit, &stop)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("`zfs receive {missing}/r1-t` failed")),
        "{e}"
    );
    drop(p);
    assert!(zfs::exists_argv(&format!("{missing}/r1-t")).run().is_err());
    drop(lock);
}
