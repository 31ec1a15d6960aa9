//! One lab VM: its options checked, OpenZFS found or built, the initramfs and disks made,
//! QEMU started and followed until the command inside ends (or an [`Attach`] has what it
//! needs); the temporary directory is dropped on every way out.

use super::{guest, openzfs, vm};
use crate::cmd::Argv;
use crate::hypervisor::qemu::{
    base_args, boot_args, machine_args, size_args, Accel, Firmware, QemuGuard,
};
use crate::observe::{self, Stream};
use crate::Interrupt;
use anyhow::{bail, Context, Result};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `zvbench lab` was asked for.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// OpenZFS 2.3 or 2.1.
    pub branch: openzfs::Branch,
    /// Number of pool disks.
    pub disks: usize,
    /// Size of each, bytes (sparse files).
    pub disk_bytes: u64,
    /// Guest memory, bytes.
    pub memory_bytes: u64,
    /// Guest CPUs.
    pub cpus: u32,
    /// Pools to create before the command (`zpool create`, mounted on `/var/tmp/<pool>`
    /// inside), the disks shared out among them in order.
    pub pools: Vec<String>,
    /// A host directory the guest sees read-write at the same path.
    pub share: Option<PathBuf>,
    /// Where the lab's temporary directory is made (must support O_DIRECT).
    pub tmp: PathBuf,
    /// The whole VM's time limit.
    pub timeout: Duration,
    /// Accelerator.
    pub accel: Accel,
    /// The command.
    pub argv: Vec<String>,
}

/// How a lab run went.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The command's exit code (128 + N for signal N).
    pub code: i32,
    /// Seconds from QEMU's start to its power-off.
    pub vm_s: f64,
    /// The guest's uptime when the command started (kernel boot, modules, udev), seconds.
    pub boot_s: Option<f64>,
    /// The VM was killed hard once its [`Attach`] had what it needed (`code` is then 0:
    /// the command had not ended).
    pub cut: bool,
}

/// Builds (or finds) OpenZFS for Debian's guest kernel without booting anything.
pub fn build_only(
    cache: &Path,
    branch: openzfs::Branch,
    stop: &Interrupt,
) -> Result<openzfs::Build> {
    let kernel = crate::guest::kernel::debian_kernel(cache)?;
    openzfs::ensure(cache, &release_of(&kernel)?, branch, stop)
}

fn release_of(k: &crate::guest::kernel::GuestKernel) -> Result<String> {
    Ok(k.modules
        .file_name()
        .context("kernel modules directory has no name")?
        .to_string_lossy()
        .into_owned())
}

/// Checks the options before anything is made.
fn validate(o: &LabOptions) -> Result<()> {
    if o.argv.is_empty() {
        bail!("no command: give it after `--`, e.g. zvbench lab -- zpool version");
    }
    if o.disks > 16 {
        bail!("--disks {} is more than 16", o.disks);
    }
    if o.disk_bytes < 64 << 20 || o.disk_bytes > 1 << 40 {
        bail!("--disk-size must be from 64M to 1T (OpenZFS needs 64 MiB per vdev)");
    }
    if o.memory_bytes < 512 << 20 {
        bail!("--memory must be at least 512M (OpenZFS's ARC and the 9p root need it)");
    }
    for p in &o.pools {
        crate::names::check_dataset(p).map_err(anyhow::Error::msg)?;
        if p.contains('/') || o.disks == 0 {
            bail!("--pool {p} must be a pool name (no '/') and needs --disks 1 or more");
        }
        if o.pools.iter().filter(|q| *q == p).count() > 1 {
            bail!("--pool {p} is given twice; name each pool once");
        }
    }
    if !o.pools.is_empty() && (!o.disks.is_multiple_of(o.pools.len()) || o.disks < o.pools.len()) {
        bail!(
            "--disks {} cannot be shared out among {} pools: give each the same number of disks (e.g. --disks {})",
            o.disks,
            o.pools.len(),
            o.pools.len()
        );
    }
    if let Some(s) = &o.share {
        if !s.is_absolute() || !s.is_dir() {
            bail!(
                "--share {} must be an existing directory, given as an absolute path",
                s.display()
            );
        }
        if s.to_string_lossy().contains(['\n', '\0']) {
            bail!("--share {} has a newline in its name", s.display());
        }
    }
    Ok(())
}

/// Something a caller attaches to a lab VM while it runs (a power cut's frame channel and
/// pool-disk log).
pub trait Attach {
    /// A `blklogwrites` log for the first pool disk (see [`vm::disk_args`]).
    fn disk_log(&self) -> Option<&Path>;
    /// More QEMU arguments; `work` is the lab's own temporary directory.
    fn args(&mut self, work: &Path) -> Result<Vec<std::ffi::OsString>>;
    /// Called once QEMU was started, before the lab waits for it.
    fn started(&mut self, qemu: &mut QemuGuard) -> Result<()>;
    /// Called in the lab's wait loop (it may block up to ~100 ms); `true` when it has all
    /// it needs: the VM is then killed hard (SIGKILL: a power cut), not shut down.
    fn poll(&mut self) -> Result<bool>;
}

/// Builds or reuses OpenZFS, boots the lab, runs the command; the command's output is
/// copied to this process's stdout and stderr as it comes.
pub fn run(o: &LabOptions, cache: &Path, stop: &Interrupt) -> Result<Outcome> {
    run_attached(o, cache, stop, None)
}

/// [`run`] with `attach` looking on.
pub fn run_attached(
    o: &LabOptions,
    cache: &Path,
    stop: &Interrupt,
    mut attach: Option<&mut dyn Attach>,
) -> Result<Outcome> {
    validate(o)?;
    let kernel = crate::guest::kernel::debian_kernel(cache)?;
    let build = openzfs::ensure(cache, &release_of(&kernel)?, o.branch, stop)?;
    let exe = std::env::current_exe().context("find the zvbench binary")?;
    if let Some(d) = hidden_in_guest(&build.userland) {
        bail!(
            "the OpenZFS cache ({}) is under {d}, which the lab VM covers with an empty tmpfs; \
             set XDG_CACHE_HOME elsewhere",
            build.userland.display()
        );
    }
    // A checkout under /tmp (a CI clone, say): its top directory is shown read-only at its
    // own path, so the binary, the agent and the scripts beside it stay visible.
    let tree = visible_tree(&exe)?;
    let work = tempfile::Builder::new()
        .prefix("zvbench-lab-")
        .tempdir_in(&o.tmp)
        .with_context(|| format!("make a directory in {}", o.tmp.display()))?;
    let files = Files::make(work.path(), o, cache, &build)?;
    let initrd = work.path().join("initrd.gz");
    std::fs::write(
        &initrd,
        vm::initramfs(
            &read_busybox()?,
            &modules(&kernel, &build)?,
            &exe,
            tree.as_deref(),
            o.share.as_deref(),
        )?,
    )?;
    let mut args = base_args();
    args.extend(machine_args(o.accel));
    args.extend(size_args(o.memory_bytes, o.cpus));
    args.extend(boot_args(
        Firmware::for_direct_boot(),
        &kernel.image,
        &initrd,
        vm::APPEND,
    ));
    args.extend([
        "-serial".into(),
        format!(
            "file:{}",
            crate::hypervisor::qemu::qemu_escape(&files.console)
        )
        .into(),
    ]);
    args.extend(vm::shares_args(
        &files.ctl,
        tree.as_deref(),
        o.share.as_deref(),
    ));
    args.extend(vm::disk_args(
        &files.disks,
        attach.as_ref().and_then(|a| a.disk_log()),
    ));
    if let Some(a) = attach.as_mut() {
        args.extend(a.args(work.path())?);
    }
    let start = Instant::now();
    let mut qemu = QemuGuard::spawn(&args, &files.qemu_log)
        .with_context(|| format!("start {}", crate::hypervisor::qemu::QEMU))?;
    if let Some(a) = attach.as_mut() {
        a.started(&mut qemu)?;
    }
    follow(o, &files, qemu, start, stop, attach)
}

/// The files of one lab VM in its temporary directory.
struct Files {
    /// The control share: job, the command's output, exit status, start time.
    ctl: PathBuf,
    /// The pool disks.
    disks: Vec<PathBuf>,
    /// The guest's console (ttyS0).
    console: PathBuf,
    /// QEMU's own output.
    qemu_log: PathBuf,
}

impl Files {
    /// Makes the control share with the job and the sparse pool disks in `work`.
    fn make(work: &Path, o: &LabOptions, cache: &Path, build: &openzfs::Build) -> Result<Files> {
        let ctl = work.join("ctl");
        std::fs::create_dir(&ctl)?;
        let disks: Vec<PathBuf> = (0..o.disks)
            .map(|i| work.join(format!("disk{i}.img")))
            .collect();
        for d in &disks {
            std::fs::File::create(d)
                .and_then(|f| f.set_len(o.disk_bytes))
                .with_context(|| format!("create {}", d.display()))?;
        }
        let job = guest::Job {
            argv: o.argv.clone(),
            cwd: std::env::current_dir().unwrap_or_else(|_| "/".into()),
            userland: build.userland.clone(),
            disks: (0..o.disks).map(vm::guest_disk).collect(),
            openzfs: build.version.clone(),
            cache_home: cache.parent().unwrap_or(cache).to_owned(),
            pools: o.pools.clone(),
        };
        std::fs::write(ctl.join("job.json"), serde_json::to_vec_pretty(&job)?)?;
        Ok(Files {
            ctl,
            disks,
            console: work.join("console.log"),
            qemu_log: work.join("qemu.log"),
        })
    }
}

/// The kernel modules the initramfs loads, read, with their parameters: what the OpenZFS
/// modules need from the kernel (their own names filtered out), then OpenZFS's.
fn modules(
    kernel: &crate::guest::kernel::GuestKernel,
    build: &openzfs::Build,
) -> Result<Vec<(Vec<u8>, String)>> {
    let mut deps = Vec::new();
    for m in &build.modules {
        let text = Argv::new([
            "modinfo".as_ref(),
            "-F".as_ref(),
            "depends".as_ref(),
            m.as_os_str(),
        ])
        .stdout()?;
        deps.extend(vm::depends_names(&text));
    }
    let mut modules = Vec::new();
    for (path, params) in vm::module_list(&kernel.modules, &build.modules, &deps)? {
        modules.push((
            std::fs::read(&path).with_context(|| format!("read {}", path.display()))?,
            params,
        ));
    }
    Ok(modules)
}

fn read_busybox() -> Result<Vec<u8>> {
    std::fs::read("/bin/busybox")
        .context("read /bin/busybox: install busybox-static (scripts/install-deps)")
}

/// Copies the command's output as it comes and waits for QEMU (or for `attach` to have
/// what it needs: then the VM is killed hard), within the time limit and until a signal.
fn follow(
    o: &LabOptions,
    files: &Files,
    mut qemu: QemuGuard,
    start: Instant,
    stop: &Interrupt,
    mut attach: Option<&mut dyn Attach>,
) -> Result<Outcome> {
    let ctl = &files.ctl;
    let mut out = Follow::new(ctl.join(guest::STDOUT));
    let mut err = Follow::new(ctl.join(guest::STDERR));
    let mut copy = || {
        out.pass_on(Stream::Stdout);
        err.pass_on(Stream::Stderr);
    };
    // An attachment waits in its own poll; without one, the lab waits on QEMU.
    let wait = Duration::from_millis(if attach.is_some() { 0 } else { 200 });
    let status = loop {
        copy();
        if let Some(a) = attach.as_mut() {
            if a.poll()? {
                // The guard's drop kills QEMU hard: no flush, no clean shutdown.
                drop(qemu);
                copy();
                return Ok(Outcome {
                    code: 0,
                    vm_s: start.elapsed().as_secs_f64(),
                    boot_s: started_at(ctl),
                    cut: true,
                });
            }
        }
        if let Some(st) = qemu.wait_timeout(wait) {
            break st;
        }
        if stop.is_set() {
            bail!("interrupted; the lab VM was stopped");
        }
        if start.elapsed() > o.timeout {
            bail!(
                "the lab VM did not finish within {} s (--timeout); console: {}",
                o.timeout.as_secs(),
                tail(&files.console)
            );
        }
    };
    copy();
    let vm_s = start.elapsed().as_secs_f64();
    let Ok(exit) = std::fs::read_to_string(ctl.join(guest::EXIT)) else {
        bail!(
            "the lab VM ended ({status}) without the command's exit status; console: {}\nqemu: {}",
            tail(&files.console),
            tail(&files.qemu_log)
        );
    };
    let code =
        parse_exit(&exit).with_context(|| format!("bad exit status {exit:?} from the lab"))?;
    Ok(Outcome {
        code,
        vm_s,
        boot_s: started_at(ctl),
        cut: false,
    })
}

/// The guest's uptime when the command started, from the control directory.
fn started_at(ctl: &Path) -> Option<f64> {
    std::fs::read_to_string(ctl.join(guest::STARTED))
        .ok()
        .and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
}

/// The directory of the guest's own tmpfs that hides `p` on the host root, if any.
pub fn hidden_in_guest(p: &Path) -> Option<&'static str> {
    vm::TMPFS.into_iter().find(|d| p.starts_with(d))
}

/// For a binary under a directory the guest covers with tmpfs (`/tmp/ci/target/debug/x`):
/// the first directory below that one (`/tmp/ci`), which the lab shows read-only; `None`
/// when the binary is visible anyway. `/run` is refused: the lab's own mounts live there.
pub fn visible_tree(exe: &Path) -> Result<Option<PathBuf>> {
    let Some(d) = hidden_in_guest(exe) else {
        return Ok(None);
    };
    let rest = exe.strip_prefix(d).unwrap_or(exe);
    let first = rest.components().next().filter(|_| d != "/run");
    match first {
        Some(c) if rest.components().count() > 1 => {
            let t = Path::new(d).join(c);
            if t.to_string_lossy().contains(['\n', '\0']) {
                bail!("{} has a newline in its name", t.display());
            }
            Ok(Some(t))
        }
        _ => bail!(
            "the zvbench binary ({}) is directly under {d}, which the lab VM covers with an \
             empty tmpfs; move it into a directory",
            exe.display()
        ),
    }
}

/// The guest's exit file: `N` or `signal N` (as a shell reports it, 128 + N).
pub fn parse_exit(text: &str) -> Option<i32> {
    let t = text.trim();
    match t.strip_prefix("signal ") {
        Some(n) => n
            .parse::<i32>()
            .ok()
            .filter(|n| (1..64).contains(n))
            .map(|n| 128 + n),
        None => t.parse::<i32>().ok().filter(|c| (0..=255).contains(c)),
    }
}

/// The last lines of a log, for an error message.
fn tail(p: &Path) -> String {
    let text = std::fs::read(p).unwrap_or_default();
    let text = String::from_utf8_lossy(&text[text.len().saturating_sub(3000)..]).into_owned();
    let lines: Vec<&str> = text.lines().rev().take(20).collect();
    format!(
        "{}\n{}",
        p.display(),
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

/// What was appended to a file since the last call.
struct Follow {
    path: PathBuf,
    pos: u64,
}

impl Follow {
    fn new(path: PathBuf) -> Follow {
        Follow { path, pos: 0 }
    }

    /// The bytes appended since the last call (at most 16 MiB; none while the file is
    /// missing or unreadable).
    fn new_bytes(&mut self) -> Vec<u8> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(self.pos)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        match f.take(16 << 20).read_to_end(&mut buf) {
            Ok(n) => {
                self.pos += n as u64;
                buf
            }
            Err(_) => Vec::new(),
        }
    }

    /// Passes the new bytes on to the observer as the command's `stream`.
    fn pass_on(&mut self, stream: Stream) {
        let bytes = self.new_bytes();
        if !bytes.is_empty() {
            observe::command_output(stream, &bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> LabOptions {
        LabOptions {
            branch: openzfs::Branch::V2_3,
            disks: 1,
            disk_bytes: 1 << 30,
            memory_bytes: 1 << 30,
            cpus: 1,
            share: None,
            pools: Vec::new(),
            tmp: "/var/tmp".into(),
            timeout: Duration::from_secs(60),
            accel: Accel::Tcg,
            argv: vec!["true".into()],
        }
    }

    #[test]
    fn paths_under_the_guests_tmpfs_are_named() {
        assert_eq!(
            hidden_in_guest(Path::new("/var/tmp/c/zvbench")),
            Some("/var/tmp")
        );
        assert_eq!(hidden_in_guest(Path::new("/run/x")), Some("/run"));
        assert_eq!(hidden_in_guest(Path::new("/tmpx/a")), None);
        assert_eq!(hidden_in_guest(Path::new("/root/.cache/zvbench")), None);
    }

    #[test]
    fn a_checkout_under_tmp_is_shown_by_its_top_directory() {
        let t = |p: &str| visible_tree(Path::new(p)).map_err(|e| e.to_string());
        assert_eq!(
            t("/tmp/ci/target/debug/zvbench"),
            Ok(Some("/tmp/ci".into()))
        );
        assert_eq!(t("/var/tmp/w/zvbench"), Ok(Some("/var/tmp/w".into())));
        assert_eq!(t("/work/main/target/debug/zvbench"), Ok(None));
        assert!(t("/tmp/zvbench")
            .unwrap_err()
            .contains("directly under /tmp"));
        assert!(
            t("/run/x/zvbench").is_err(),
            "the lab's own mounts live in /run"
        );
    }

    #[test]
    fn exit_status_text() {
        assert_eq!(parse_exit("0\n"), Some(0));
        assert_eq!(parse_exit("3"), Some(3));
        assert_eq!(parse_exit("signal 9"), Some(137));
        for bad in ["", "-1", "256", "signal 0", "signal x", "1e3"] {
            assert_eq!(parse_exit(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn options_are_checked_first() {
        assert!(validate(&opts()).is_ok());
        for (o, want) in [
            (
                LabOptions {
                    argv: vec![],
                    ..opts()
                },
                "no command",
            ),
            (
                LabOptions {
                    disks: 17,
                    ..opts()
                },
                "more than 16",
            ),
            (
                LabOptions {
                    pools: vec!["a/b".into()],
                    ..opts()
                },
                "pool name",
            ),
            (
                LabOptions {
                    pools: vec!["t".into()],
                    disks: 0,
                    ..opts()
                },
                "--disks 1",
            ),
            (
                LabOptions {
                    pools: vec!["t".into(), "u".into()],
                    disks: 3,
                    ..opts()
                },
                "cannot be shared out among 2 pools",
            ),
            (
                LabOptions {
                    pools: vec!["t".into(), "u".into()],
                    disks: 1,
                    ..opts()
                },
                "e.g. --disks 2",
            ),
            (
                LabOptions {
                    pools: vec!["t".into(), "t".into()],
                    disks: 2,
                    ..opts()
                },
                "given twice",
            ),
            (
                LabOptions {
                    disk_bytes: 1 << 20,
                    ..opts()
                },
                "64M",
            ),
            (
                LabOptions {
                    memory_bytes: 128 << 20,
                    ..opts()
                },
                "512M",
            ),
            (
                LabOptions {
                    share: Some("rel".into()),
                    ..opts()
                },
                "absolute",
            ),
            (
                LabOptions {
                    share: Some("/nonexistent-zvb".into()),
                    ..opts()
                },
                "existing",
            ),
        ] {
            let e = validate(&o).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn follow_copies_only_what_is_new() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out");
        let mut f = Follow::new(p.clone());
        let mut got = f.new_bytes();
        std::fs::write(&p, "ab").unwrap();
        got.extend(f.new_bytes());
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"c")
            .unwrap();
        got.extend(f.new_bytes());
        assert_eq!(got, b"abc");
    }
}
