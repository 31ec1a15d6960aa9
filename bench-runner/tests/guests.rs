//! Real guests under TCG: the flush trace through QEMU down to a real loop device.

mod common;
use common::*;
use std::process::Command;

const TRACE: &str = r#"
[run]
repetitions = 1
disk_size = "32M"
guest_timeout_s = 240

[guest]
memory = "256M"

[[target]]
name = "host"
storage = "host"
dir = "@DIR@"

[[target]]
name = "raw-none"
storage = "loop"
dir = "@DIR@"
cache = "none"

[[target]]
name = "raw-unsafe"
storage = "loop"
dir = "@DIR@"
cache = "unsafe"

[[target]]
name = "vdi-none"
storage = "image"
format = "vdi"
dir = "@DIR@"
cache = "none"

[[workload]]
name = "fsync"
kind = "seqwr"
bs = "16K"
size = "512K"
sync = "fsync"
sync_every = 1

[[workload]]
name = "read"
kind = "seqrd"
bs = "64K"
size = "4M"
direct = true
verify = true
"#;

#[test]
fn flush_trace_from_agent_to_host_device() {
    if !can_boot_guests() {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let out = dir.path().join("out");
    let rows = run_text(dir.path(), &out, TRACE).expect("the run succeeds");
    assert_nothing_left(dir.path());

    // 32 writes, each followed by fsync, plus the end fsync.
    let none = row(&rows, "raw-none", "fsync");
    assert_eq!(none.agent_flushes, 33);
    assert_eq!(none.guest_dev_flushes, Some(33), "{none:?}");
    assert_eq!(none.hv_flushes, Some(33), "{none:?}");
    let host = none.host_dev_flushes.expect("loop devices count flushes");
    assert!(
        (32..=33).contains(&host),
        "cache=none passes guest flushes to the loop device: {none:?}"
    );
    assert!(none.guest_boot_ms.is_some_and(|ms| ms > 0));
    assert_eq!(
        (none.accel.as_str(), none.cache.as_str(), none.bus.as_str()),
        ("tcg", "none", "virtio")
    );

    let unsafe_ = row(&rows, "raw-unsafe", "fsync");
    assert_eq!(unsafe_.guest_dev_flushes, Some(33));
    assert_eq!(
        unsafe_.host_dev_flushes,
        Some(0),
        "cache=unsafe drops guest flushes: {unsafe_:?}"
    );

    let vdi = row(&rows, "vdi-none", "fsync");
    assert_eq!(vdi.hv_flushes, Some(33), "{vdi:?}");
    assert!(
        vdi.host_dev_flushes.is_some(),
        "the device under the image file is traced"
    );

    // The seqrd with no seqwr before it filled the disk first, and every block verified.
    for t in ["host", "raw-none", "vdi-none"] {
        let r = row(&rows, t, "read");
        assert_eq!(
            (r.verify_checked, r.verify_ok),
            (Some(64), Some(64)),
            "{r:?}"
        );
    }
    let host_row = row(&rows, "host", "fsync");
    assert_eq!(
        (host_row.hypervisor.as_str(), host_row.hv_flushes),
        ("none", None)
    );

    // Results are on disk, with provenance and the report.
    let csv = zvbench_reports::read_results(&out.join("results.csv")).unwrap();
    assert_eq!(csv.len(), rows.len());
    assert_eq!(
        csv.len(),
        8,
        "4 targets x 2 workloads, the fill passes not counted"
    );
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["accel"], "tcg");
    assert_eq!(run["storage"]["vdi-none"]["format"], "vdi");
    assert!(
        std::fs::read_to_string(out.join("results.jsonl"))
            .unwrap()
            .lines()
            .count()
            == 8
    );
    assert!(out.join("guests/raw-none-1/console.log").exists());

    // QEMU booted the kernel form run.json names (the PVH ELF for Debian's kernel), and
    // each boot's timeline is kept, in order.
    let argv = std::fs::read_to_string(out.join("guests/raw-none-1/qemu.argv")).unwrap();
    let k = kernel();
    if k.source == "debian-package" {
        // Debian's kernel is XZ-compressed with CONFIG_PVH=y: the real file decompresses
        // and its note is found.
        assert!(
            matches!(k.direct, zvbench::guest::kernel::DirectBoot::Pvh { .. }),
            "{:?}",
            k.direct
        );
    }
    assert!(
        argv.contains(&format!("-kernel\n{}\n", k.direct_image().display())),
        "{argv}"
    );
    assert_eq!(
        run["guest_kernel"]["direct"],
        serde_json::to_value(&k.direct).unwrap()
    );
    let boot = &run["boots"]["raw-none-1"];
    let ms = |k: &str| boot[k].as_u64().unwrap_or_else(|| panic!("{k} in {boot}"));
    assert!(ms("hello_ms") <= ms("first_pass_ms"), "{boot}");
    assert_eq!(Some(ms("guest_uptime_ms")), none.guest_boot_ms);
    assert_eq!(Some(ms("hello_ms")), none.boot_hello_ms);
    let jsonl = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    assert!(
        jsonl.lines().filter(|l| l.contains("\"boot\":{")).count() == 6,
        "the 6 guest records carry their boot: {jsonl}"
    );
}

const BUSES: &str = r#"
[run]
repetitions = 1
disk_size = "16M"
guest_timeout_s = 240

[[target]]
name = "sata"
storage = "loop"
dir = "@DIR@"
bus = "sata"

[[target]]
name = "nvme"
storage = "loop"
dir = "@DIR@"
bus = "nvme"

[[target]]
name = "scsi"
storage = "image"
format = "qcow2"
dir = "@DIR@"
bus = "scsi"

[[workload]]
name = "w"
kind = "seqwr"
bs = "4K"
size = "64K"
sync = "fdatasync"
sync_every = 4
"#;

/// Each bus target's pass: 5 fdatasyncs seen by the guest device, reaching QEMU and the
/// host device.
fn assert_buses_count_flushes(rows: &[zvbench_reports::ResultRow], buses: &[&str]) {
    for &t in buses {
        let r = row(rows, t, "w");
        assert_eq!(r.agent_flushes, 5, "{r:?}");
        assert_eq!(
            r.guest_dev_flushes,
            Some(5),
            "{t}: the guest device sees each fdatasync: {r:?}"
        );
        // QEMU skips a flush with no write since the previous one (the end flush here).
        // A qcow2 image adds flushes of its own metadata on top (seen: 8 to 13 for 5).
        let host = r.host_dev_flushes.unwrap();
        let max = if r.storage == "loop" { 5 } else { u64::MAX };
        assert!(
            (4..=max).contains(&host),
            "{t}: the flushes reach the host device: {r:?}"
        );
        // QEMU's NVMe emulation flushes without block accounting (seen with QEMU 10.0):
        // its query-blockstats flush count stays 0 while the host device counts them.
        let hv = r.hv_flushes.unwrap();
        assert!(hv == 5 || (t == "nvme" && hv == 0), "{t}: {r:?}");
        assert_eq!(r.bus, t);
    }
}

#[test]
fn every_bus_boots_and_counts_flushes() {
    if !can_boot_guests() {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let rows = run_text(dir.path(), &dir.path().join("out"), BUSES).expect("the run succeeds");
    assert_nothing_left(dir.path());
    assert_buses_count_flushes(&rows, &["sata", "nvme", "scsi"]);
}

/// zvbench's minimal kernel (built once from Debian's linux-source, everything built in)
/// counts the same flushes as Debian's on every bus.
#[test]
fn tiny_kernel_counts_flushes_on_every_bus() {
    assert!(can_boot_guests(), "this test boots QEMU guests");
    let tiny = zvbench::guest::tiny::ensure(&cache_dir(), &|| false).expect("the minimal kernel");
    let text = format!(
        "{BUSES}\n[[target]]\nname = \"virtio\"\nstorage = \"loop\"\ndir = \"@DIR@\"\nbus = \"virtio\"\n"
    );
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let rows = run_text_with(dir.path(), &dir.path().join("out"), &text, |o| {
        o.kernel = Some(tiny)
    })
    .expect("the run succeeds");
    assert_nothing_left(dir.path());
    assert_buses_count_flushes(&rows, &["virtio", "sata", "nvme", "scsi"]);
}

#[test]
fn interrupt_tears_everything_down() {
    if !can_boot_guests() {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let text = BUSES.replace("@DIR@", &dir.path().display().to_string());
    let plan = zvbench::scenario::parse("t.toml", &text).unwrap();
    let opts = options(&dir.path().join("out"), &text);
    let stop = zvbench::Interrupt::default();
    let s2 = stop.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(4));
        s2.set();
    });
    let err = zvbench::run::run(&plan, &opts, &stop).unwrap_err();
    t.join().unwrap();
    assert!(err.to_string().contains("interrupted"), "{err:#}");
    assert_nothing_left(dir.path());
}

const ISO: &str = r#"
[run]
repetitions = 1
disk_size = "16M"
guest_timeout_s = 240

[[target]]
name = "iso-sata"
storage = "loop"
dir = "@DIR@"
bus = "sata"
boot = "iso"

[[workload]]
name = "w"
kind = "seqwr"
bs = "4K"
size = "64K"
sync = "fsync"
sync_every = 4
"#;

/// The guest ISO (ISOLINUX, kernel, initramfs) boots from a CD drive and the agent's
/// frames come back: the same image VirtualBox boots.
#[test]
fn guest_iso_boots_under_qemu() {
    if !can_boot_guests() || !require(&["xorriso"]) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let out = dir.path().join("out");
    let rows = run_text(dir.path(), &out, ISO).expect("the run succeeds");
    assert_nothing_left(dir.path());
    let r = row(&rows, "iso-sata", "w");
    assert_eq!(
        (r.agent_flushes, r.guest_dev_flushes),
        (5, Some(5)),
        "{r:?}"
    );
    assert!(
        r.host_dev_flushes.is_some_and(|n| (4..=5).contains(&n)),
        "{r:?}"
    );
    let argv = std::fs::read_to_string(out.join("guests/iso-sata-1/qemu.argv")).unwrap();
    assert!(
        argv.contains("media=cdrom") && !argv.contains("-kernel"),
        "{argv}"
    );
    let iso = std::fs::read(out.join("guests/iso-sata-1/zvbench-guest.iso")).unwrap();
    // ISO 9660 primary volume descriptor at sector 16.
    assert_eq!(&iso[0x8001..0x8006], b"CD001");
}

/// `zvbench image build`'s library half: the ISO carries the target's job, with the
/// handshake of its hypervisor (an ack under QEMU, a pause under VirtualBox).
#[test]
fn image_build_carries_the_targets_job() {
    if !require(&["root", "xorriso"]) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let text = ISO.replace("@DIR@", &dir.path().display().to_string())
        + "\n[[target]]\nname = \"vb\"\nstorage = \"image\"\ndir = \"/tmp\"\nhypervisor = \"virtualbox\"\n";
    let plan = zvbench::scenario::parse("t.toml", &text).unwrap();
    let job_in = |target: &str| -> serde_json::Value {
        let iso = dir.path().join(format!("{target}.iso"));
        zvbench::run::guest_image(&plan, target, &kernel(), &agent(), &iso).unwrap();
        let initrd = dir.path().join(format!("{target}.gz"));
        let out = Command::new("xorriso")
            .args(["-osirrox", "on", "-indev"])
            .arg(&iso)
            .args(["-extract", "/boot/initrd.gz"])
            .arg(&initrd)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let mut cpio = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(&initrd).unwrap()),
            &mut cpio,
        )
        .unwrap();
        let text = String::from_utf8_lossy(&cpio);
        let start = text
            .find("{\n  \"schema_version\"")
            .expect("job.json in the initramfs");
        let mut de = serde_json::Deserializer::from_str(&text[start..]).into_iter();
        de.next().unwrap().unwrap()
    };
    let qemu = job_in("iso-sata");
    assert_eq!(
        (
            qemu["ack_timeout_ms"].as_u64(),
            qemu["mark_pause_ms"].as_u64()
        ),
        (Some(120_000), Some(0))
    );
    assert_eq!(qemu["disk"], "/dev/sda");
    let vb = job_in("vb");
    assert_eq!(
        (vb["ack_timeout_ms"].as_u64(), vb["mark_pause_ms"].as_u64()),
        (Some(0), Some(1500))
    );
    let e = zvbench::run::guest_image(
        &plan,
        "nope",
        &kernel(),
        &agent(),
        &dir.path().join("x.iso"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("its targets: iso-sata, vb"), "{e}");
}

const RANDRW: &str = r#"
[run]
repetitions = 1
disk_size = "16M"
guest_timeout_s = 300

[[target]]
name = "virtio"
storage = "loop"
dir = "@DIR@"
bus = "virtio"

[[target]]
name = "sata"
storage = "loop"
dir = "@DIR@"
bus = "sata"

[[target]]
name = "nvme"
storage = "loop"
dir = "@DIR@"
bus = "nvme"

[[workload]]
name = "mix"
kind = "randrw"
bs = "4K"
size = "4M"
direct = true
iodepth = 16
numjobs = 2
sync = "fdatasync"
sync_every = 64
log_avg_msec = 100
"#;

#[test]
fn randrw_at_depth_with_two_jobs_keeps_the_flush_trace_on_every_bus() {
    assert!(can_boot_guests(), "this test boots QEMU guests");
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let out = dir.path().join("out");
    let rows = run_text(dir.path(), &out, RANDRW).expect("the run succeeds");
    assert_nothing_left(dir.path());
    for t in ["virtio", "sata", "nvme"] {
        let r = row(&rows, t, "mix");
        eprintln!(
            "{t}: {} {:.1} MiB/s, engine {:?}, flushes agent {} → guest {:?} → hv {:?} → host {:?}",
            r.kind,
            r.mib_per_s,
            r.engine,
            r.agent_flushes,
            r.guest_dev_flushes,
            r.hv_flushes,
            r.host_dev_flushes
        );
        assert_eq!((r.kind.as_str(), r.bus.as_str()), ("randrw", t));
        assert_eq!(
            (r.iodepth, r.numjobs, r.rw_mix_read),
            (Some(16), Some(2), Some(50))
        );
        let engine = r.engine.as_deref().unwrap_or_default();
        assert!(engine == "io_uring" || engine == "libaio", "{t}: {r:?}");
        // 1024 requests, about half writes, a flush every 64 writes of each job + the end.
        assert!((5..=17).contains(&r.agent_flushes), "{t}: {r:?}");
        let guest = r.guest_dev_flushes.unwrap();
        assert!(
            guest >= r.agent_flushes,
            "{t}: the guest device sees every fdatasync: {r:?}"
        );
        let host = r.host_dev_flushes.unwrap();
        assert!(
            host >= 1 && host <= guest,
            "{t}: flushes reach the host device: {r:?}"
        );
    }
    let jsonl = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    let series = jsonl
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "randrw")
        .map(|v| v["series"]["points"].as_array().map_or(0, Vec::len))
        .collect::<Vec<_>>();
    assert_eq!(series.len(), 3, "{jsonl}");
    assert!(
        series.iter().all(|&n| n >= 1),
        "a time series per pass: {series:?}"
    );
}

/// Issue 16 item 3: `repetitions = "auto"` on a real host target stops by its rule (every
/// workload's median known to ±3.5%, or the most repetitions) and says so in run.json.
#[test]
fn auto_repetitions_stop_by_the_rule_and_are_recorded() {
    if !require(&["root"]) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let out = dir.path().join("out");
    let text = r#"
[run]
repetitions = "auto"
max_repetitions = 4

[[target]]
name = "host"
storage = "host"
dir = "@DIR@"

[[workload]]
name = "w"
kind = "seqwr"
bs = "64K"
size = "2M"
"#;
    let rows = run_text(dir.path(), &out, text).unwrap();
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    let rec = &run["repetitions"]["host"];
    let count = rec["count"].as_u64().unwrap();
    let width = rec["half_width_pct"]["w"].as_f64().unwrap();
    assert_eq!(rows.len() as u64, count, "{rec}");
    match rec["stopped"].as_str().unwrap() {
        "converged" => assert!((3..=4).contains(&count) && width <= 3.5, "{rec}"),
        "max_repetitions" => assert!(count == 4 && width > 3.5, "{rec}"),
        other => panic!("stopped: {other}: {rec}"),
    }
    assert_nothing_left(dir.path());
}
