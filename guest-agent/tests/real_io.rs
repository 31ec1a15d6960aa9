//! The agent against real files and, as root, real loop devices.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;
use zvbench_agent::pass::{run_pass, PassError, Quiet, SyncMode, Workload};
use zvbench_agent::ByteSize;

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

#[test]
fn loop_device_flushes_reach_the_block_layer() {
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
    need("mkfs.ext4", "e2fsprogs");
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
    assert!(
        e.to_string().contains("ext4 (filesystem) at byte 1080"),
        "{e}"
    );
    assert!(e.to_string().contains("--allow-destroy"), "{e}");
    assert!(
        std::fs::read(&l.backing).unwrap() == before,
        "the device was not touched"
    );
}

/// `zvbench-agent job FILE` (the ZFS lab's power cut): the frames PID 1 mode sends, on the
/// job's frame port — hello, a start mark, an acknowledgement after every fsync in order,
/// the end mark, the record, done — and no fallback to the console for a missing port.
#[test]
fn a_job_file_run_as_a_process_sends_the_frames_of_pid_1() {
    use zvbench_agent::frame::{scan, Frame, Scanned};
    let dir = tempfile::tempdir().unwrap();
    let port = dir.path().join("port");
    std::fs::write(&port, b"").unwrap();
    let mut pass = zvbench_agent::pass::PassSpec::new(
        dir.path().join("data"),
        Workload::Seqwr,
        ByteSize(4096),
        ByteSize(8 * 4096),
    );
    pass.sync = SyncMode::Fsync;
    pass.verify = true;
    let job = zvbench_agent::job::Job {
        schema_version: zvbench_agent::SCHEMA_VERSION,
        modules: vec![],
        disk: dir.path().into(),
        disk_wait_s: 1,
        frame_port: port.clone(),
        ack_timeout_ms: 0,
        mark_pause_ms: 0,
        sync_marks: true,
        passes: vec![pass],
    };
    let job_path = dir.path().join("job.json");
    std::fs::write(&job_path, serde_json::to_vec(&job).unwrap()).unwrap();
    let agent = env!("CARGO_BIN_EXE_zvbench-agent");
    let st = Command::new(agent)
        .arg("job")
        .arg(&job_path)
        .status()
        .unwrap();
    assert!(st.success());
    let frames: Vec<Frame> = scan(&std::fs::read(&port).unwrap())
        .into_iter()
        .map(|s| match s {
            Scanned::Frame(f) => f,
            Scanned::Damaged(why) => panic!("damaged frame: {why}"),
        })
        .collect();
    assert!(matches!(frames[0], Frame::Hello { .. }), "{frames:?}");
    assert!(matches!(frames[1], Frame::Mark { pass: 0, .. }));
    let acked: Vec<u64> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Synced { blocks, .. } => Some(*blocks),
            _ => None,
        })
        .collect();
    assert_eq!(acked.last(), Some(&8), "{acked:?}");
    assert!(acked.windows(2).all(|w| w[0] <= w[1]), "{acked:?}");
    assert!(matches!(frames[frames.len() - 2], Frame::Record(_)));
    assert_eq!(frames.last(), Some(&Frame::Done { passes: 1 }));

    let mut missing = job;
    missing.frame_port = dir.path().join("no-such-port");
    std::fs::write(&job_path, serde_json::to_vec(&missing).unwrap()).unwrap();
    let out = Command::new(agent)
        .arg("job")
        .arg(&job_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("open frame port"), "{err}");
}
