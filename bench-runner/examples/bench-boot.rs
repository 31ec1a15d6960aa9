//! The boot benchmark behind `scripts/bench-boot`: boots N guests of each kernel kind —
//! Debian's bzImage, Debian's decompressed ELF (PVH), zvbench's minimal kernel (`tiny`,
//! built once from Debian's linux-source, PVH) — alternating so all see the same host load,
//! each running one tiny pass on a raw image file, and prints median/min/max of VM start →
//! agent Hello, VM start → first pass, the guest's uptime at Hello and QEMU's CPU time.
//!
//! QEMU's CPU time (user + sys of the reaped child) is the steadier number on a busy host:
//! wall times there depend on how much of a core QEMU got.
//!
//! Usage: `bench-boot AGENT [N] [KINDS]` (N defaults to 5; KINDS is a comma list of
//! `bzimage`, `pvh`, `tiny`, each optionally `@seabios` to boot through SeaBIOS instead of
//! qboot — `bzimage@seabios` is the boot zvbench had before issue 10 —; default
//! `bzimage@seabios,pvh,tiny`).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;
use zvbench::guest::kernel::{DirectBoot, GuestKernel};
use zvbench::guest::BootTimeline;
use zvbench::hypervisor::boot::{self, Below, Guest};
use zvbench::hypervisor::qemu::{vm::Qemu, Accel, Firmware};
use zvbench_reports::stats::Spread;

const SCENARIO: &str = r#"
[run]
repetitions = 1
disk_size = "16M"

[guest]
memory = "256M"

[[target]]
name = "boot"
storage = "image"
format = "raw"
dir = "/var/tmp"

[[workload]]
name = "w"
kind = "seqwr"
bs = "4K"
size = "64K"
sync = "fsync"
sync_every = 4
"#;

/// One boot's numbers.
struct Sample {
    boot: BootTimeline,
    qemu_cpu_s: f64,
}

/// CPU time of this process's reaped children (QEMU is the only one).
fn children_cpu_s() -> f64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage never fails for RUSAGE_CHILDREN");
    let t = |v: nix::sys::time::TimeVal| v.tv_sec() as f64 + v.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

fn boot_once(
    (kernel, firmware): (&GuestKernel, Firmware),
    agent: &Path,
    work: &Path,
    disk: &Path,
) -> Result<Sample> {
    let plan = zvbench::scenario::parse("bench-boot.toml", SCENARIO)?;
    let cfg = plan.targets[0].guest.as_ref().context("a guest target")?;
    let guest_disk = PathBuf::from(zvbench::guest::kernel::guest_disk(cfg.bus));
    let passes = zvbench::run::passes_for(&plan, &guest_disk, 1, true);
    let mut boot = None;
    let cpu_before = children_cpu_s();
    let qemu = Qemu {
        accel: Accel::Tcg,
        disk: (disk.to_owned(), "raw"),
        powercut_log: None,
        firmware,
    };
    let guest = Guest {
        name: format!("zvbench-bench-boot-{}", std::process::id()),
        cfg,
        kernel,
        agent,
        below: Below::default(),
        work: work.to_owned(),
        timeout: Duration::from_secs(300),
    };
    let stop = zvbench::Interrupt::default();
    boot::run(&qemu, &guest, &passes, &stop, &mut |gp| {
        boot = Some(gp.boot);
        Ok(())
    })?;
    Ok(Sample {
        boot: boot.context("the guest sent no result")?,
        qemu_cpu_s: children_cpu_s() - cpu_before,
    })
}

fn cell(values: impl IntoIterator<Item = f64>) -> String {
    match Spread::of(values) {
        Some(s) => format!("{:>5.2} {:>5.2} {:>5.2}", s.median, s.min, s.max),
        None => format!("{:>17}", "–"),
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let agent = PathBuf::from(
        args.next()
            .context("usage: bench-boot AGENT [N] [bzimage,pvh,tiny[@seabios],...]")?,
    );
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let cache = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/tmp".into())
        .join(".cache/zvbench");
    let wanted = args
        .next()
        .unwrap_or_else(|| "bzimage@seabios,pvh,tiny".into());
    let mut kinds: Vec<(String, GuestKernel, Firmware)> = Vec::new();
    for w in wanted.split(',') {
        let (w, firmware) = match w.strip_suffix("@seabios") {
            Some(w) => (w, Firmware::SeaBios),
            None => (w, Firmware::for_direct_boot()),
        };
        let debian = || -> Result<GuestKernel> {
            let pvh = zvbench::guest::kernel::find(None, &cache)?;
            if !matches!(pvh.direct, DirectBoot::Pvh { .. }) {
                bail!("this kernel has no PVH boot to compare: {:?}", pvh.direct);
            }
            Ok(pvh)
        };
        let (name, kernel) = match w {
            "bzimage" => (
                "bzImage",
                GuestKernel {
                    direct: DirectBoot::BzImage {
                        reason: "bench-boot's comparison".into(),
                    },
                    ..debian()?
                },
            ),
            "pvh" => ("vmlinux (PVH)", debian()?),
            "tiny" => (
                "tiny (PVH)",
                zvbench::guest::tiny::ensure(&cache, &|| false)?,
            ),
            other => bail!("unknown kernel kind {other:?}: give bzimage, pvh or tiny"),
        };
        let fw = match firmware {
            Firmware::Qboot => "",
            Firmware::SeaBios => " SeaBIOS",
        };
        kinds.push((format!("{name}{fw}"), kernel, firmware));
    }
    // The guest disk is opened O_DIRECT (cache=none): /var/tmp unless TMPDIR names another
    // directory on a file system with O_DIRECT (in the ZFS lab: the pool's, not a tmpfs).
    let dir = tempfile::Builder::new()
        .prefix("zvbench-bench-boot-")
        .tempdir_in(std::env::var_os("TMPDIR").unwrap_or_else(|| "/var/tmp".into()))?;
    let disk = dir.path().join("disk.raw");
    std::fs::File::create(&disk)?.set_len(16 << 20)?;
    eprintln!(
        "bench-boot: {n} boots each, alternating; load average before: {}",
        load()
    );
    let mut samples: Vec<Vec<Sample>> = kinds.iter().map(|_| Vec::new()).collect();
    for i in 0..n {
        for (k, (name, kernel, firmware)) in kinds.iter().enumerate() {
            let work = dir.path().join(format!("{k}-{i}"));
            let s = boot_once((kernel, *firmware), &agent, &work, &disk)
                .with_context(|| format!("{name} boot {}", i + 1))?;
            eprintln!(
                "  {name:<22} boot {}: Hello at {:.2} s, QEMU CPU {:.2} s",
                i + 1,
                s.boot.hello_ms.unwrap_or(0) as f64 / 1000.0,
                s.qemu_cpu_s
            );
            samples[k].push(s);
        }
    }
    let secs = |v: &[Sample], f: fn(&BootTimeline) -> Option<u64>| {
        v.iter()
            .filter_map(|s| f(&s.boot))
            .map(|ms| ms as f64 / 1000.0)
            .collect::<Vec<_>>()
    };
    println!("load average after: {}", load());
    println!(
        "{:<22} | {:^17} | {:^17} | {:^17} | {:^17}",
        "kernel (n each)", "VM start → Hello", "→ first pass", "uptime at Hello", "QEMU CPU s"
    );
    println!(
        "{:<22} | {:^17} | {:^17} | {:^17} | {:^17}",
        "", "med   min   max", "med   min   max", "med   min   max", "med   min   max"
    );
    for (k, (name, _, _)) in kinds.iter().enumerate() {
        let v = &samples[k];
        println!(
            "{name:<22} | {} | {} | {} | {}",
            cell(secs(v, |b| b.hello_ms)),
            cell(secs(v, |b| b.first_pass_ms)),
            cell(secs(v, |b| b.guest_uptime_ms)),
            cell(v.iter().map(|s| s.qemu_cpu_s)),
        );
    }
    Ok(())
}
