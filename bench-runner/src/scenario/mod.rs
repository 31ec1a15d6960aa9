//! Scenario files: TOML that users copy and edit, parsed and then validated completely
//! (types, sizes, alignment, names, paths, pools) into a [`Plan`] before anything is
//! created. Every error names the file, line and column and what to write instead.
//!
//! One submodule per part of the file: `file` reads it (bounded, TOML, spans → places),
//! `run` checks `[run]`, `workload` each `[[workload]]`, `target` each `[[target]]` with
//! its `storage` and its `guest` keys laid over `[guest]`'s.

mod file;
mod guest;
mod run;
mod storage;
mod target;
mod workload;

pub use file::{ScenarioError, MAX_SCENARIO_BYTES};
pub use guest::{Aio, Boot, Bus, CacheMode, GuestConfig, GuestKeys, Hypervisor, VboxFlush};
pub use run::{AutoReps, Repetitions, RunSection, AUTO_HALF_WIDTH_PCT, AUTO_MIN_REPS};
pub use storage::{ImageFormat, StorageKind, StorageSpec, Variant, ZvolConfig};
pub use target::{TargetDef, TargetPlan};
pub use workload::{WorkloadDef, WorkloadPlan};

use file::Source;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A scenario file as written. Unknown keys are errors (a typo must not silently fall back
/// to a default).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// `[run]`.
    #[serde(default)]
    pub run: RunSection,
    /// `[guest]`: defaults for every guest target.
    #[serde(default)]
    pub guest: GuestKeys,
    /// `[[target]]`.
    pub target: Vec<TargetDef>,
    /// `[[workload]]`.
    pub workload: Vec<WorkloadDef>,
}

/// A validated scenario, ready to run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The scenario as written.
    pub file: ScenarioFile,
    /// Repetitions (with "auto": the most).
    pub repetitions: u32,
    /// "auto": repeat until the medians are known, within these limits.
    pub auto: Option<AutoReps>,
    /// Guest timeout.
    pub guest_timeout_s: u64,
    /// Targets in order.
    pub targets: Vec<TargetPlan>,
    /// Workloads in order.
    pub workloads: Vec<WorkloadPlan>,
}

/// The scenario spelling of a unit enum value (`CacheMode::Unsafe` → `unsafe`), derived
/// from its serde name so that scenarios, argv and results cannot disagree.
pub fn key_name<T: Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Reads, parses and validates a scenario file.
pub fn load(path: &Path) -> Result<Plan, ScenarioError> {
    load_with_text(path).map(|(plan, _)| plan)
}

/// Reads (at most [`MAX_SCENARIO_BYTES`], once: a pipe cannot be read twice), parses and
/// validates a scenario file; also returns its text.
pub fn load_with_text(path: &Path) -> Result<(Plan, String), ScenarioError> {
    let text = file::read(path)?;
    Ok((parse(&path.display().to_string(), &text)?, text))
}

/// Parses and validates scenario text; `name` is used in messages. Checks `[run]`, then
/// the workloads, then the targets (which must hold the largest workload).
pub fn parse(name: &str, text: &str) -> Result<Plan, ScenarioError> {
    let src = Source { name, text };
    let file: ScenarioFile = src.deserialize()?;
    let run = file.run.plan(&src)?;
    if file.target.is_empty() || file.workload.is_empty() {
        return Err(src.err_at(
            0,
            "a scenario needs at least one [[target]] and one [[workload]]".into(),
        ));
    }
    let workloads = workload::plan_all(&file.workload, &src)?;
    let max_size = workloads
        .iter()
        .map(|w| w.spec.size.bytes())
        .max()
        .unwrap_or(0);
    let cx = target::Context {
        disk_size: file.run.disk_size,
        guest: &file.guest,
        max_size,
    };
    let targets = target::plan_all(&file.target, &cx, &src)?;
    Ok(Plan {
        repetitions: run.repetitions,
        auto: run.auto,
        guest_timeout_s: file.run.guest_timeout_s,
        file,
        targets,
        workloads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use zvbench_agent::engine::IoEngine;
    use zvbench_agent::pass::Workload;

    fn good() -> String {
        r#"
[run]
repetitions = 2
disk_size = "64M"

[guest]
cache = "none"

[[target]]
name = "host"
storage = "host"
dir = "/tmp"

[[target]]
name = "vdi"
storage = "image"
format = "vdi"
dir = "/tmp"
cache = "unsafe"

[[target]]
name = "zvol"
storage = "zvol"
parent = "tank/zvbench"
volblocksize = "16K"
sync = "always"

[[workload]]
name = "rd"
kind = "seqrd"
bs = "1M"
size = "16M"

[[workload]]
name = "wr"
kind = "seqwr"
bs = "4K"
size = "1M"
sync = "fsync"
sync_every = 4
"#
        .to_string()
    }

    #[test]
    fn shipped_scenarios_validate() {
        std::fs::create_dir_all("/var/tmp/zvbench").unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        for f in [
            "quick.toml",
            "ci.toml",
            "seed-sysbench.toml",
            "story-virtualbox.toml",
        ] {
            let p = load(&root.join(f)).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                p.targets
                    .iter()
                    .any(|t| t.storage_kind == StorageKind::Host),
                "{f}"
            );
        }
    }

    #[test]
    fn random_workload_keys_reach_the_pass_and_reads_fill_first() {
        let text = "[[target]]\nname=\"h\"\nstorage=\"host\"\ndir=\"/tmp\"\n\
             [[workload]]\nname=\"mix\"\nkind=\"randrw\"\nbs=\"4K\"\nsize=\"4M\"\n\
             rwmixread=70\niodepth=16\nnumjobs=2\nioengine=\"io_uring\"\nrandseed=9\n\
             runtime=2.5\nramp_time=0.5\nlog_avg_msec=100\n";
        let p = parse("s.toml", text).unwrap();
        let w = &p.workloads[0];
        assert!(w.needs_fill, "randrw reads: it fills first");
        let s = &w.spec;
        assert_eq!((s.rwmixread, s.iodepth, s.numjobs), (Some(70), 16, 2));
        assert_eq!((s.ioengine, s.randseed), (IoEngine::IoUring, 9));
        assert_eq!(
            (s.runtime, s.ramp_time, s.log_avg_msec),
            (Some(2.5), Some(0.5), 100)
        );
        let passes = crate::run::passes_for(&p, Path::new("/dev/vdb"), 1, true);
        let fill = &passes[0];
        assert_eq!(
            (fill.workload, fill.label.as_str()),
            (Workload::Seqwr, "fill")
        );
        assert_eq!(
            (fill.runtime, fill.ramp_time, fill.rwmixread),
            (None, None, None)
        );
        assert!(
            fill.validate().is_ok(),
            "the fill is a valid size-based write"
        );
        assert_eq!(passes[1].workload, Workload::Randrw);

        let e = err(&text.replace(
            "rwmixread=70",
            "rwmixread=70\nnorandommap=true\nverify=true",
        ));
        assert!(e.contains("verify"), "{e}");
        let e = err(&text.replace("ramp_time=0.5", "ramp_time=-1.0"));
        assert!(e.contains("ramp_time -1"), "{e}");
    }

    #[test]
    fn compressible_writes_are_a_write_workload_key_from_0_to_100() {
        let text = "[[target]]\nname=\"h\"\nstorage=\"host\"\ndir=\"/tmp\"\n\
             [[workload]]\nname=\"w\"\nkind=\"seqwr\"\nbs=\"64K\"\nsize=\"4M\"\n\
             buffer_compress_percentage=50\n";
        let p = parse("s.toml", text).unwrap();
        assert_eq!(p.workloads[0].spec.buffer_compress_percentage, Some(50));
        let e = err(&text.replace("=50", "=101"));
        assert!(
            e.contains("buffer_compress_percentage 101 is outside 0 to 100"),
            "{e}"
        );
        let e = err(&text.replace("seqwr", "seqrd"));
        assert!(
            e.contains("buffer_compress_percentage applies to workloads that write"),
            "{e}"
        );
    }

    #[test]
    fn on_host_runs_the_agent_on_a_zvol_without_a_guest() {
        let base = "[[target]]\nname=\"z\"\nstorage=\"zvol\"\nparent=\"tank\"\non_host=true\n\
             [[workload]]\nname=\"w\"\nkind=\"seqwr\"\nbs=\"4K\"\nsize=\"4M\"\n";
        let p = parse("s.toml", base).unwrap();
        assert_eq!(p.targets[0].guest, None);
        let e = err(&base.replace("on_host=true", "on_host=true\ncache=\"none\""));
        assert!(e.contains("on_host = true runs no guest"), "{e}");
        let e = err(&base.replace("[[workload]]", "disk_size=\"1M\"\n[[workload]]"));
        assert!(e.contains("must hold the largest workload"), "{e}");
        let e = err(&base.replace(
            "storage=\"zvol\"\nparent=\"tank\"",
            "storage=\"loop\"\ndir=\"/tmp\"",
        ));
        assert!(
            e.contains("on_host only applies to storage = \"zvol\""),
            "{e}"
        );
    }

    #[test]
    fn reads_fill_first_unless_an_earlier_write_covers_them() {
        let text = |w_size: &str, w_verify: bool, r_verify: bool| {
            format!(
                "[[target]]\nname=\"h\"\nstorage=\"host\"\ndir=\"/tmp\"\n\
                 [[workload]]\nname=\"w\"\nkind=\"seqwr\"\nbs=\"64K\"\nsize=\"{w_size}\"\nverify={w_verify}\n\
                 [[workload]]\nname=\"r\"\nkind=\"seqrd\"\nbs=\"64K\"\nsize=\"4M\"\nverify={r_verify}\n"
            )
        };
        let fill = |t: String| parse("s.toml", &t).unwrap().workloads[1].needs_fill;
        assert!(
            fill(text("512K", false, false)),
            "a smaller write does not cover the read"
        );
        assert!(!fill(text("4M", false, false)));
        assert!(
            fill(text("4M", false, true)),
            "a verified read needs verified blocks"
        );
        assert!(!fill(text("4M", true, true)));
    }

    /// `throttle_bps` (scripts/bench-gate's injected slowdown): at least 1M, reaches the plan.
    #[test]
    fn throttle_is_a_checked_qemu_setting() {
        let e = err(&good().replace(
            "cache = \"unsafe\"",
            "cache = \"unsafe\"\nthrottle_bps = 1000",
        ));
        assert!(e.contains("throttle_bps must be at least 1M"), "{e}");
        let p = parse(
            "s.toml",
            &good().replace(
                "cache = \"unsafe\"",
                "cache = \"unsafe\"\nthrottle_bps = \"20M\"",
            ),
        )
        .unwrap();
        let g = p.targets[1].guest.as_ref().unwrap();
        assert_eq!(g.throttle_bps, Some(20 << 20));
    }

    #[test]
    fn auto_repetitions_have_limits() {
        let p = parse("s.toml", &good()).unwrap();
        assert_eq!((p.repetitions, p.auto), (2, None));
        let auto = good().replace("repetitions = 2", "repetitions = \"auto\"");
        let p = parse("s.toml", &auto).unwrap();
        assert_eq!(
            (p.repetitions, p.auto),
            (10, Some(AutoReps { max_s: 1800 }))
        );
        let p = parse(
            "s.toml",
            &auto.replace("[run]", "[run]\nmax_repetitions = 5\nmax_auto_s = 60"),
        )
        .unwrap();
        assert_eq!((p.repetitions, p.auto), (5, Some(AutoReps { max_s: 60 })));
        let e = err(&auto.replace("[run]", "[run]\nmax_repetitions = 2"));
        assert!(e.contains("needs max_repetitions of at least 3"), "{e}");
        let e = err(&good().replace("repetitions = 2", "repetitions = \"many\""));
        assert!(e.contains("write a count (1 to 100) or \"auto\""), "{e}");
    }

    #[test]
    fn parses_and_resolves_overrides() {
        let p = parse("s.toml", &good()).unwrap();
        assert_eq!(p.repetitions, 2);
        assert!(p.targets[0].guest.is_none());
        assert_eq!(
            p.targets[1].guest.as_ref().unwrap().cache,
            CacheMode::Unsafe
        );
        assert_eq!(p.targets[2].guest.as_ref().unwrap().cache, CacheMode::None);
        assert!(matches!(
            &p.targets[1].storage,
            StorageSpec::Image {
                format: ImageFormat::Vdi,
                variant: Variant::Dynamic,
                ..
            }
        ));
        match &p.targets[2].storage {
            StorageSpec::Zvol(z) => assert_eq!(
                z.props,
                vec![
                    ("volblocksize".to_string(), "16K".to_string()),
                    ("sync".to_string(), "always".to_string())
                ]
            ),
            other => panic!("{other:?}"),
        }
        assert!(
            p.workloads[0].needs_fill,
            "a seqrd with no seqwr before it fills first"
        );
        assert!(!p.workloads[1].needs_fill);
    }

    fn err(text: &str) -> String {
        parse("s.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_line_column_and_fix() {
        let e = err(&good().replace("volblocksize = \"16K\"", "volblocksize = \"3K\""));
        assert!(
            e.starts_with("s.toml:22:8: target \"zvol\": volblocksize 3K must be a power of two"),
            "{e}"
        );
        let e = err(&good().replace("kind = \"seqrd\"", "kind = \"randrx\""));
        assert!(e.starts_with("s.toml:30:8:") && e.contains("seqwr"), "{e}");
        for (from, to, want) in [
            (
                "repetitions = 2",
                "repetitons = 2",
                "unknown field `repetitons`",
            ),
            ("tank/zvbench", "tank/$(reboot)", "ZFS dataset name"),
            ("size = \"1M\"", "size = \"1001K\"", "multiple of bs"),
            (
                "disk_size = \"64M\"",
                "disk_size = \"8M\"",
                "set disk_size = \"16M\"",
            ),
            (
                "dir = \"/tmp\"\ncache",
                "dir = \"/nonexistent/x\"\ncache",
                "mkdir -p /nonexistent/x",
            ),
            ("name = \"vdi\"", "name = \"host\"", "used twice"),
            (
                "cache = \"unsafe\"",
                "cache = \"unsafe\"\naio = \"native\"",
                "aio = \"native\" needs cache",
            ),
            (
                "sync = \"always\"",
                "sync = \"always\"\nformat = \"vdi\"",
                "only applies to storage = \"image\"",
            ),
        ] {
            let e = err(&good().replace(from, to));
            assert!(e.contains(want), "{to}: {e}");
        }
    }

    /// A misspelt guest key is an error at its line and column, in a target (whose list
    /// of keys has its own and the guest keys) as in `[guest]`.
    #[test]
    fn unknown_guest_keys_are_placed_and_named() {
        let e = err(&good().replace(
            "cache = \"unsafe\"",
            "cache = \"unsafe\"\nignore_flsh = true",
        ));
        assert!(
            e.starts_with(
                "s.toml:20:1: unknown field `ignore_flsh`, expected one of `name`, `storage`,"
            ),
            "{e}"
        );
        assert!(e.ends_with("`ignore_flush`, `ignore_flush_async`"), "{e}");
        let e = err(&good().replace("[guest]\n", "[guest]\nmemroy = \"1G\"\n"));
        assert!(
            e.starts_with(
                "s.toml:7:1: unknown field `memroy`, expected one of `hypervisor`, `memory`,"
            ),
            "{e}"
        );
    }

    /// A target's guest key overrides `[guest]`'s for it alone; `[guest]`'s other keys stay.
    #[test]
    fn a_target_overrides_one_guest_key_and_keeps_the_others() {
        let text = good().replace(
            "cache = \"none\"",
            "cache = \"none\"\ncpus = 2\naio = \"io_uring\"",
        );
        let p = parse("s.toml", &text).unwrap();
        let vdi = p.targets[1].guest.as_ref().unwrap();
        let zvol = p.targets[2].guest.as_ref().unwrap();
        assert_eq!(
            (vdi.cache, vdi.cpus, vdi.aio),
            (CacheMode::Unsafe, 2, Aio::IoUring)
        );
        assert_eq!(
            (zvol.cache, zvol.cpus, zvol.aio),
            (CacheMode::None, 2, Aio::IoUring)
        );
    }

    #[test]
    fn send_to_is_a_dataset_on_another_pool() {
        let with = |v: &str| good().replace("sync = \"always\"", &format!("send_to = {v:?}"));
        let p = parse("s.toml", &with("backup/copies")).unwrap();
        let StorageSpec::Zvol(z) = &p.targets[2].storage else {
            panic!()
        };
        assert_eq!(z.send_to.as_deref(), Some("backup/copies"));
        assert!(err(&with("tank/copies")).contains("on the zvol's own pool \"tank\""));
        assert!(err(&with("backup/$(x)")).contains("send_to: ZFS dataset name"));
        let e = err(&good().replace("cache = \"unsafe\"", "cache = \"unsafe\"\nsend_to = \"b\""));
        assert!(
            e.contains("send_to only applies to storage = \"zvol\""),
            "{e}"
        );
    }

    #[test]
    fn encryption_needs_a_real_raw_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, [7u8; 16]).unwrap();
        let text = good().replace(
            "sync = \"always\"",
            &format!("encryption = true\nkeyfile = \"{}\"", key.display()),
        );
        assert!(err(&text).contains("has 16 bytes"));
        std::fs::write(&key, [7u8; 32]).unwrap();
        let p = parse("s.toml", &text).unwrap();
        let StorageSpec::Zvol(z) = &p.targets[2].storage else {
            panic!()
        };
        assert_eq!(z.keyfile.as_deref(), Some(key.as_path()));
        assert!(
            !z.props
                .iter()
                .any(|(k, _)| k.starts_with("encryption") || k.starts_with("key")),
            "the encrypted parent carries the encryption, not the zvol: {:?}",
            z.props
        );
    }
}

#[cfg(test)]
mod virtualbox_tests {
    use super::*;

    const VBOX: &str = r#"
[guest]
hypervisor = "virtualbox"

[[target]]
name = "vdi"
storage = "image"
dir = "/tmp"
host_io_cache = true

[[workload]]
name = "w"
kind = "seqwr"
bs = "16K"
size = "1M"
"#;

    fn err(text: &str) -> String {
        parse("v.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn virtualbox_defaults_and_settings() {
        let p = parse("v.toml", VBOX).unwrap();
        let g = p.targets[0].guest.as_ref().unwrap();
        assert_eq!(
            g.bus,
            Bus::Sata,
            "VirtualBox's default controller, as in the story"
        );
        assert!(g.vbox.host_io_cache && g.vbox.ignored());
        let p = parse(
            "v.toml",
            &VBOX.replace("host_io_cache = true", "ignore_flush_async = true"),
        )
        .unwrap();
        assert!(p.targets[0].guest.as_ref().unwrap().vbox.ignored());
    }

    #[test]
    fn settings_of_the_other_hypervisor_are_refused() {
        for (from, to, want) in [
            (
                "host_io_cache = true",
                "cache = \"unsafe\"",
                "cache is a QEMU setting",
            ),
            ("host_io_cache = true", "bus = \"virtio\"", "no virtio-blk"),
            (
                "storage = \"image\"",
                "storage = \"image\"\nformat = \"qcow2\"",
                "vdi or vmdk",
            ),
            (
                "hypervisor = \"virtualbox\"",
                "hypervisor = \"qemu\"",
                "host_io_cache is a VirtualBox setting",
            ),
            (
                "host_io_cache = true",
                "throttle_bps = \"10M\"",
                "throttle_bps is a QEMU setting",
            ),
        ] {
            let e = err(&VBOX.replace(from, to));
            assert!(e.contains(want), "{to}: {e}");
        }
        // VirtualBox's own 0|1 is written true|false here; the error points at the value.
        let e = err(&VBOX.replace("host_io_cache = true", "ignore_flush = 1"));
        assert!(
            e.starts_with("v.toml:9:16:") && e.contains("expected a boolean"),
            "{e}"
        );
    }
}
