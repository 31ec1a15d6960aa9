//! Power cuts with real QEMU guests: a loop device under cache=none keeps every
//! acknowledged block at every cut; a VDI under cache=unsafe loses them and the
//! diagnosis names cache=unsafe. Nothing (log, reconstruction, loop device, QEMU) is left.

mod common;
use common::*;

const CUTS: &str = r#"
[run]
repetitions = 1
disk_size = "16M"
guest_timeout_s = 300

[guest]
hypervisor = "qemu"
memory = "256M"
cpus = 1
bus = "virtio"
cache = "none"

[[target]]
name = "raw-none"
storage = "loop"
dir = "@DIR@"

[[target]]
name = "vdi-unsafe"
storage = "image"
format = "vdi"
dir = "@DIR@"
cache = "unsafe"

[[workload]]
name = "fsync"
kind = "seqwr"
bs = "16K"
size = "512K"
sync = "fsync"
"#;

#[test]
fn acknowledged_blocks_survive_cache_none_and_not_unsafe() {
    if !can_boot_guests() {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let out = dir.path().join("out");
    let rows = run_text_with(dir.path(), &out, CUTS, |o| {
        o.powercut = Some(zvbench::powercut::Options {
            cuts: 5,
            keep: false,
        })
    })
    .expect("the run succeeds");
    assert_nothing_left(dir.path());

    let none = row(&rows, "raw-none", "fsync");
    assert_eq!(
        none.powercut_cuts,
        Some(6),
        "the end and 5 random cuts: {none:?}"
    );
    assert_eq!(none.powercut_acked_blocks, Some(32), "{none:?}");
    assert_eq!(none.powercut_lost_blocks, Some(0), "{none:?}");
    assert!(
        none.powercut_log_flushes.is_some_and(|n| n >= 32),
        "{none:?}"
    );
    assert_eq!(none.powercut_verdict.as_deref(), Some("durable"));

    let unsafe_ = row(&rows, "vdi-unsafe", "fsync");
    assert_eq!(unsafe_.powercut_log_flushes, Some(0), "{unsafe_:?}");
    assert_eq!(unsafe_.powercut_cuts_lost, Some(6), "{unsafe_:?}");
    assert_eq!(unsafe_.powercut_lost_blocks, Some(32), "{unsafe_:?}");
    assert_eq!(unsafe_.powercut_verdict.as_deref(), Some("not durable"));
    assert!(unsafe_
        .powercut_dropped_at
        .as_deref()
        .is_some_and(|d| d.contains("cache=unsafe")));

    let md = zvbench::commands::report::write(&out).unwrap();
    assert!(md.contains("## Power cuts"), "{md}");
    assert!(
        md.contains("`acknowledged-writes-lost` **vdi-unsafe / fsync**"),
        "{md}"
    );
    assert!(md.contains("cache=unsafe"), "{md}");
    for g in std::fs::read_dir(out.join("guests")).unwrap().flatten() {
        for f in ["powercut.log", "powercut.img"] {
            assert!(
                !g.path().join(f).exists(),
                "{f} left in {}",
                g.path().display()
            );
        }
    }
}
