//! Helpers shared by the runner's integration tests: real loop devices, real QEMU,
//! real zfs-fuse, each cleaned up by a guard.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use zvbench::guest::kernel::GuestKernel;
use zvbench::hypervisor::qemu::Accel;
use zvbench::run::RunOptions;
use zvbench::scenario::Plan;
use zvbench::Interrupt;
use zvbench_reports::ResultRow;

mod require;
pub use require::*;

/// Whether guest tests can run here ([`require`]: fails under ZVBENCH_REQUIRE_PRIVILEGED=1).
pub fn can_boot_guests() -> bool {
    require(&["root", "qemu-system-x86_64", "qemu-img"])
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The static agent, built once with scripts/build-agent if it is missing or older than
/// the agent's sources.
pub fn agent() -> PathBuf {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT
        .get_or_init(|| {
            let out = Command::new(workspace().join("scripts/build-agent"))
                .output()
                .expect("run scripts/build-agent");
            assert!(
                out.status.success(),
                "build-agent: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
        })
        .clone()
}

/// zvbench's cache, `~/.cache/zvbench`, where guest kernels are kept.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/tmp".into())
        .join(".cache/zvbench")
}

pub fn kernel() -> GuestKernel {
    static K: OnceLock<GuestKernel> = OnceLock::new();
    K.get_or_init(|| zvbench::guest::kernel::find(None, &cache_dir()).expect("a guest kernel"))
        .clone()
}

pub fn options(out: &Path, scenario_text: &str) -> RunOptions {
    RunOptions {
        out: out.to_owned(),
        agent: agent(),
        kernel: Some(kernel()),
        accel: Accel::Tcg,
        allow_destroy: Vec::new(),
        scenario_text: scenario_text.to_string(),
        runtime: zvbench::host::owner::runtime_dir(),
        powercut: None,
        vboxmanage: "VBoxManage".into(),
    }
}

/// Runs scenario text (with `@DIR@` replaced by `dir`) and returns the rows.
pub fn run_text(dir: &Path, out: &Path, text: &str) -> anyhow::Result<Vec<ResultRow>> {
    run_text_with(dir, out, text, |_| {})
}

/// [`run_text`] with options changed by `set` (e.g. a power-cut check).
pub fn run_text_with(
    dir: &Path,
    out: &Path,
    text: &str,
    set: impl FnOnce(&mut RunOptions),
) -> anyhow::Result<Vec<ResultRow>> {
    let text = text.replace("@DIR@", &dir.display().to_string());
    let plan: Plan = zvbench::scenario::parse("test.toml", &text)?;
    let mut opts = options(out, &text);
    set(&mut opts);
    zvbench::run::run(&plan, &opts, &Interrupt::default())
}

/// Asserts that nothing a test started under `dir` is left: no loop device over a file
/// there, no QEMU process naming it, no zvbench file in it.
pub fn assert_nothing_left(dir: &Path) {
    let d = dir.display().to_string();
    let loops =
        String::from_utf8(Command::new("losetup").arg("-a").output().unwrap().stdout).unwrap();
    assert!(!loops.contains(&d), "loop devices left: {loops}");
    let ps = String::from_utf8(
        Command::new("ps")
            .args(["-eo", "args"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        !ps.lines()
            .any(|l| l.contains("qemu-system") && l.contains(&d)),
        "QEMU left: {ps}"
    );
    // Mounts below `dir` (a test may mount `dir` itself, as a scratch file system).
    let mounts = mount_points();
    assert!(
        !mounts.iter().any(|m| m.starts_with(&format!("{d}/"))),
        "mounts left: {mounts:?}"
    );
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            zvbench::host::owner::generated_file(&e.file_name().to_string_lossy()).is_some()
        })
        .collect();
    assert!(files.is_empty(), "files left: {files:?}");
}

/// A loop device over a fresh file, detached on drop.
pub struct LoopDev {
    pub dev: PathBuf,
    pub backing: PathBuf,
}

impl LoopDev {
    pub fn new(dir: &Path, name: &str, size: u64) -> LoopDev {
        let backing = dir.join(name);
        std::fs::File::create(&backing)
            .unwrap()
            .set_len(size)
            .unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&backing)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        LoopDev {
            dev: String::from_utf8(out.stdout).unwrap().trim().into(),
            backing,
        }
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// An ext4 file system without a journal on a private loop device, mounted in a directory
/// of its own: its device's counters see only what the test writes there (no journal
/// commits, no other program's flushes, as the host's shared disk would). Unmounted and
/// detached on drop.
pub struct ScratchFs {
    /// Where it is mounted.
    pub mnt: PathBuf,
    _loop: LoopDev,
    _dir: tempfile::TempDir,
}

impl ScratchFs {
    pub fn new(size: u64) -> ScratchFs {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let l = LoopDev::new(dir.path(), "fs.img", size);
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        for argv in [
            &[
                "mkfs.ext4",
                "-q",
                "-O",
                "^has_journal",
                l.dev.to_str().unwrap(),
            ][..],
            &["mount", l.dev.to_str().unwrap(), mnt.to_str().unwrap()],
        ] {
            let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
            assert!(out.status.success(), "{argv:?}: {out:?}");
        }
        ScratchFs {
            mnt,
            _loop: l,
            _dir: dir,
        }
    }
}

impl Drop for ScratchFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

/// A row of `rows` for (target, workload), the first repetition.
pub fn row<'a>(rows: &'a [ResultRow], target: &str, workload: &str) -> &'a ResultRow {
    rows.iter()
        .find(|r| r.target == target && r.workload == workload)
        .unwrap_or_else(|| panic!("no row {target}/{workload}"))
}

/// This process's mount points, as `/proc/mounts` spells them.
pub fn mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(1).map(str::to_string))
        .collect()
}
