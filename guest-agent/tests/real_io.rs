//! The agent against real files and, as root, real loop devices.

#[allow(dead_code)]
#[path = "../../bench-runner/tests/common/require.rs"]
mod require;
use require::require;

use std::path::{Path, PathBuf};
use std::process::Command;
use zvbench_agent::pass::{run_pass, PassError, PassSpec, Quiet, SyncMode, Workload};
use zvbench_agent::ByteSize;

fn spec(path: &Path, workload: Workload, bs: u64, size: u64) -> PassSpec {
    PassSpec {
        path: path.to_owned(),
        workload,
        bs: ByteSize(bs),
        size: ByteSize(size),
        direct: false,
        sync: SyncMode::None,
        sync_every: None,
        end_fsync: true,
        verify: false,
        seed: 1,
        allow_destroy: false,
        label: String::new(),
    }
}

#[test]
fn fsync_count_is_exactly_what_was_asked() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    let mut s = spec(&p, Workload::Seqwr, 4096, 64 * 4096);
    s.sync = SyncMode::Fsync;
    s.sync_every = Some(4);
    let r = run_pass(&s, &mut Quiet).unwrap();
    assert_eq!(r.ops, 64);
    assert_eq!(r.agent_flushes, 17, "16 periodic + 1 end flush");
    assert_eq!(r.flush.unwrap().count, 17);

    s.end_fsync = false;
    assert_eq!(run_pass(&s, &mut Quiet).unwrap().agent_flushes, 16);
    s.sync = SyncMode::Osync;
    s.sync_every = None;
    assert_eq!(
        run_pass(&s, &mut Quiet).unwrap().agent_flushes,
        0,
        "O_SYNC issues no flush calls"
    );
}

#[test]
fn verify_round_trip_and_detects_damage() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    let mut w = spec(&p, Workload::Seqwr, 4096, 32 * 4096);
    w.verify = true;
    w.seed = 99;
    run_pass(&w, &mut Quiet).unwrap();
    let mut r = spec(&p, Workload::Seqrd, 4096, 32 * 4096);
    r.verify = true;
    r.seed = 99;
    let rec = run_pass(&r, &mut Quiet).unwrap();
    let v = rec.verify_result.unwrap();
    assert_eq!((v.checked, v.ok), (32, 32));
    assert!(
        !rec.cache_drop.is_empty(),
        "read passes report their cache drops"
    );

    // Tear block 5 (its second half zeroed) and move block 9's content onto block 10.
    let mut data = std::fs::read(&p).unwrap();
    data[5 * 4096 + 2048..6 * 4096].fill(0);
    let b9 = data[9 * 4096..10 * 4096].to_vec();
    data[10 * 4096..11 * 4096].copy_from_slice(&b9);
    std::fs::write(&p, &data).unwrap();
    let v = run_pass(&r, &mut Quiet).unwrap().verify_result.unwrap();
    assert_eq!((v.ok, v.torn, v.stale), (30, 1, 1), "{v:?}");

    r.seed = 98;
    let v = run_pass(&r, &mut Quiet).unwrap().verify_result.unwrap();
    assert_eq!(v.ok, 0, "another run's seed must not verify");
}

#[test]
fn bad_parameters_are_named() {
    let p = PathBuf::from("/nonexistent");
    let e = run_pass(&spec(&p, Workload::Seqwr, 256, 4096), &mut Quiet).unwrap_err();
    assert!(e.to_string().contains("outside 512 to 64M"), "{e}");
    let e = run_pass(&spec(&p, Workload::Seqwr, 4096, 6000), &mut Quiet).unwrap_err();
    assert!(e.to_string().contains("multiple of --bs"), "{e}");
    let mut s = spec(&p, Workload::Seqwr, 4096, 4096);
    s.sync_every = Some(2);
    let e = run_pass(&s, &mut Quiet).unwrap_err();
    assert!(e.to_string().contains("--sync fsync or fdatasync"), "{e}");
}

#[test]
fn reading_more_than_was_written_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, vec![0u8; 4096]).unwrap();
    let e = run_pass(&spec(&p, Workload::Seqrd, 4096, 8192), &mut Quiet).unwrap_err();
    assert!(e.to_string().contains("run a seqwr pass first"), "{e}");
}

/// A loop device attached for a test, detached on drop (also when the test fails).
struct Loop {
    dev: PathBuf,
    _dir: tempfile::TempDir,
    backing: PathBuf,
}

impl Loop {
    fn new(size: u64, sector: u32) -> Loop {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let backing = dir.path().join("disk.img");
        std::fs::File::create(&backing)
            .unwrap()
            .set_len(size)
            .unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show", "--sector-size", &sector.to_string()])
            .arg(&backing)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        Loop {
            dev,
            _dir: dir,
            backing,
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

#[test]
fn loop_device_flushes_reach_the_block_layer() {
    if !require(&["root", "losetup"]) {
        return;
    }
    let l = Loop::new(64 << 20, 512);
    let mut s = spec(&l.dev, Workload::Seqwr, 64 << 10, 8 << 20);
    s.direct = true;
    s.sync = SyncMode::Fdatasync;
    s.sync_every = Some(16);
    let r = run_pass(&s, &mut Quiet).unwrap();
    assert_eq!(r.agent_flushes, 9);
    let d = r.device.expect("a loop device has counters");
    assert!(d.name.starts_with("loop"), "{d:?}");
    assert!(d.write_bytes >= 8 << 20, "{d:?}");
    assert_eq!(
        r.guest_dev_flushes,
        Some(9),
        "each fdatasync on the device is one flush: {d:?}"
    );

    let mut rd = spec(&l.dev, Workload::Seqrd, 64 << 10, 8 << 20);
    rd.direct = true;
    let r = run_pass(&rd, &mut Quiet).unwrap();
    assert!(r.device.unwrap().read_bytes >= 8 << 20);
}

#[test]
fn direct_io_alignment_comes_from_the_device() {
    if !require(&["root", "losetup"]) {
        return;
    }
    let l = Loop::new(16 << 20, 4096);
    let mut s = spec(&l.dev, Workload::Seqwr, 512, 64 << 10);
    s.direct = true;
    match run_pass(&s, &mut Quiet) {
        Err(e @ PassError::Misaligned { align: 4096, .. }) => {
            assert!(e.to_string().contains("multiple of 4096"), "{e}")
        }
        other => panic!("expected a 4096-byte alignment error, got {other:?}"),
    }
    s.bs = ByteSize(4096);
    assert_eq!(run_pass(&s, &mut Quiet).unwrap().dio_offset_align, 4096);
}

#[test]
fn refuses_a_device_with_a_file_system_and_leaves_it_intact() {
    if !require(&["root", "losetup", "mkfs.ext4"]) {
        return;
    }
    let l = Loop::new(32 << 20, 512);
    assert!(Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&l.dev)
        .status()
        .unwrap()
        .success());
    let before = std::fs::read(&l.backing).unwrap();
    let e = run_pass(&spec(&l.dev, Workload::Seqwr, 1 << 20, 4 << 20), &mut Quiet).unwrap_err();
    assert!(matches!(e, PassError::Refused { .. }), "{e}");
    assert!(e.to_string().contains("ext2/3/4"), "{e}");
    assert!(e.to_string().contains("--allow-destroy"), "{e}");
    assert!(
        std::fs::read(&l.backing).unwrap() == before,
        "the device was not touched"
    );
}
