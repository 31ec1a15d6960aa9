//! Provisioning what a target runs on, and tearing it down structurally: every object
//! created is registered as a [`Teardown`] step the moment it exists, and the steps run in
//! reverse when the [`Provisioned`] value is dropped — at the end, after an error, or
//! when Ctrl-C unwinds the run.

use crate::cmd::Argv;
use crate::host::loopdev::LoopBinding;
use crate::host::owner::{Owned, RunLock};
use crate::host::zfs::{self, PoolVdevs, ZilSource};
use crate::scenario::{Hypervisor, ImageFormat, StorageSpec, TargetPlan, Variant, ZvolConfig};
use anyhow::{bail, Context, Result};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use zvbench_agent::devstat::StatSource;
use zvbench_agent::target::check_writable;
use zvbench_reports::run_json::TargetStorage;

/// Prefix of every file zvbench creates (`owner::generated_file` matches the whole name).
pub const FILE_PREFIX: &str = "zvbench-";

/// One undo step.
#[derive(Debug)]
pub enum Teardown {
    /// Remove a file zvbench created.
    RemoveFile(PathBuf),
    /// Detach a loop device zvbench attached, if it still backs zvbench's file.
    DetachLoop(LoopBinding),
    /// Destroy a dataset zvbench created.
    DestroyDataset(String),
    /// Run a command (a VirtualBox VM's undo steps); `quiet`: its failure is expected at
    /// times (powering off a VM that is off already) and not worth a warning.
    Command {
        /// The command.
        argv: Argv,
        /// Fail silently.
        quiet: bool,
    },
    /// Copy a file out before a later step deletes it (VirtualBox's log of a VM); best effort.
    Keep {
        /// The file.
        from: PathBuf,
        /// Its copy.
        to: PathBuf,
    },
}

impl Teardown {
    /// Runs the step; the error says what could not be undone.
    pub fn try_run(&self) -> Result<(), String> {
        match self {
            // A host target's file is registered before its first pass creates it.
            Teardown::RemoveFile(p) => match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            },
            Teardown::DetachLoop(l) => l.detach().map_err(|e| format!("{e:#}")),
            // A dataset registered before a command that failed to create it (a receive).
            Teardown::DestroyDataset(n) if zfs::exists_argv(n).run().is_err() => Ok(()),
            Teardown::DestroyDataset(n) => retry(|| {
                zfs::destroy_argv(n)
                    .run()
                    .map(drop)
                    .map_err(|e| e.to_string())
            }),
            Teardown::Command { argv, quiet } => match argv.run() {
                Err(e) if !quiet => Err(e.to_string()),
                _ => Ok(()),
            },
            Teardown::Keep { from, to } => {
                let _ = std::fs::copy(from, to);
                Ok(())
            }
        }
    }

    fn run(&self) {
        if let Err(e) = self.try_run() {
            crate::observe::warning!(
                "zvbench: teardown {self:?} failed: {e}; `zvbench clean` removes leftovers"
            );
        }
    }
}

/// A just-closed zvol can be busy for a moment (udev); try a few times.
fn retry(mut f: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    let mut last = Ok(());
    for _ in 0..5 {
        last = f();
        if last.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    last
}

/// What a target runs on, with its teardown.
#[derive(Debug, Default)]
pub struct Provisioned {
    /// For the host baseline: the file the agent writes (a zvol target with `on_host`:
    /// the zvol's device).
    pub host_file: Option<PathBuf>,
    /// For guests: the path the hypervisor opens and its format (raw for a device).
    pub disk: Option<(PathBuf, ImageFormat)>,
    /// The host block device whose counters are the bottom of the trace.
    pub host_stat: Option<StatSource>,
    /// A zvol's dataset name: snapshot before the first repetition, rolled back to before
    /// each later one, so that every repetition starts from the same state.
    pub zvol: Option<String>,
    /// ZIL commit counter of a zvol.
    pub zil: Option<ZilSource>,
    /// The loop device of a loop target, checked before each use.
    pub loop_dev: Option<LoopBinding>,
    /// The whole disks under the leaf vdevs of the pool under a zvol (or under a file on
    /// a kernel ZFS file system): the trace's bottom layer. `None` off ZFS, or when the
    /// pool's vdevs are files.
    pub vdevs: Option<PoolVdevs>,
    /// Provenance: what was created and with which properties (run.json's
    /// `storage.<target>`).
    pub props: TargetStorage,
    /// A blockdev target held with `O_EXCL` until teardown: `mkfs`, a mount or another
    /// zvbench run cannot take the device while this run writes it (QEMU opens it without
    /// `O_EXCL`, so the guest still can).
    _held: Option<std::fs::File>,
    steps: Undo,
}

impl Provisioned {
    /// Registers the undo step of an object that now exists, in the run's lock first, so
    /// that `zvbench clean` knows it for the run's own if the run dies before teardown.
    fn own(&mut self, lock: &RunLock, step: Teardown) -> Result<()> {
        let owned = match &step {
            Teardown::RemoveFile(p) => Some(Owned::File { path: p.clone() }),
            Teardown::DetachLoop(l) => Some(Owned::Loop(l.clone())),
            Teardown::DestroyDataset(n) => Some(Owned::Dataset { name: n.clone() }),
            Teardown::Command { .. } | Teardown::Keep { .. } => None,
        };
        self.steps.push(step);
        owned.map_or(Ok(()), |o| lock.record(&o))
    }

    /// Registers a dataset that a command is about to create (the received copy of a send
    /// step), so that it is destroyed at teardown, or by `zvbench clean` if the run dies.
    pub fn own_dataset(&mut self, lock: &RunLock, name: &str) -> Result<()> {
        self.own(lock, Teardown::DestroyDataset(name.to_string()))
    }

    /// Fails unless what the guest is about to be given is still what was provisioned (a
    /// loop device re-attached by another program is never written).
    pub fn check(&self) -> Result<()> {
        self.loop_dev.as_ref().map_or(Ok(()), LoopBinding::check)
    }
}

/// Teardown steps, run in reverse order when dropped: on success, on error and on unwinding
/// after Ctrl-C alike.
#[derive(Debug, Default)]
pub struct Undo(Vec<Teardown>);

impl Undo {
    /// Registers a step; call it the moment the thing to undo exists.
    pub fn push(&mut self, step: Teardown) {
        self.0.push(step);
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        while let Some(s) = self.0.pop() {
            s.run();
        }
    }
}

/// The whole disk of a device number (a partition resolves to its disk: the kernel counts
/// flushes per disk only).
fn stat_of_devno(dev: u64) -> Option<StatSource> {
    StatSource::for_devno(
        Path::new("/sys"),
        libc::major(dev) as u64,
        libc::minor(dev) as u64,
    )
}

fn stat_of_file(p: &Path) -> Option<StatSource> {
    use std::os::unix::fs::MetadataExt;
    stat_of_devno(std::fs::metadata(p).ok()?.dev())
}

/// The whole disks under a pool's leaf vdevs; `None` when none is a block device.
fn pool_vdevs(pool: &str) -> Result<Option<PoolVdevs>> {
    let status = zfs::status_argv(pool).stdout()?;
    let disks = zfs::leaf_disks(&status, stat_of_disk);
    Ok((!disks.is_empty()).then(|| PoolVdevs {
        pool: pool.to_string(),
        disks,
    }))
}

/// The whole disk under a device node (`/dev/vda1` → `vda`).
fn stat_of_disk(dev: &Path) -> Option<StatSource> {
    use std::os::unix::fs::MetadataExt;
    stat_of_devno(std::fs::metadata(dev).ok()?.rdev())
}

fn stat_of_device(dev: &Path) -> Option<StatSource> {
    let real = std::fs::canonicalize(dev).ok()?;
    StatSource::for_name(Path::new("/sys"), real.file_name()?.to_str()?)
}

/// Arguments of `qemu-img create` for an image.
pub fn qemu_img_argv(format: ImageFormat, variant: Variant, file: &Path, size: u64) -> Argv {
    let (fmt, opt) = match (format, variant) {
        (ImageFormat::Vdi, Variant::Fixed) => ("vdi", Some("static=on")),
        (ImageFormat::Vdi, Variant::Dynamic) => ("vdi", None),
        (ImageFormat::Vmdk, Variant::Fixed) => ("vmdk", Some("subformat=monolithicFlat")),
        (ImageFormat::Vmdk, Variant::Dynamic) => ("vmdk", Some("subformat=monolithicSparse")),
        (ImageFormat::Vhdx, Variant::Fixed) => ("vhdx", Some("subformat=fixed")),
        (ImageFormat::Vhdx, Variant::Dynamic) => ("vhdx", Some("subformat=dynamic")),
        (ImageFormat::Qcow2, Variant::Fixed) => ("qcow2", Some("preallocation=full")),
        (ImageFormat::Qcow2, Variant::Dynamic) => ("qcow2", None),
        (ImageFormat::Raw, Variant::Fixed) => ("raw", Some("preallocation=full")),
        (ImageFormat::Raw, Variant::Dynamic) => ("raw", None),
    };
    let mut v: Vec<std::ffi::OsString> = vec![
        "qemu-img".into(),
        "create".into(),
        "-q".into(),
        "-f".into(),
        fmt.into(),
    ];
    if let Some(o) = opt {
        v.push("-o".into());
        v.push(o.into());
    }
    v.push(file.into());
    v.push(size.to_string().into());
    Argv(v)
}

/// Checks that zvbench may write `dev`, with the agent's rule (one mechanism for host and
/// guest: `zvbench_agent::target::check_writable`): never a device in use (mounted, held,
/// partitioned, swap, open exclusively); otherwise only an empty device or zvbench's own
/// data with no signature libblkid knows — unless `allow` names this exact device.
/// Runs before anything is provisioned. The error says what was found.
pub fn check_blockdev(dev: &Path, allow: &[PathBuf]) -> Result<()> {
    let meta = std::fs::metadata(dev).with_context(|| format!("device {}", dev.display()))?;
    if !meta.file_type().is_block_device() {
        bail!("{} is not a block device", dev.display());
    }
    let canon = std::fs::canonicalize(dev)?;
    let allowed = allow
        .iter()
        .any(|a| std::fs::canonicalize(a).is_ok_and(|c| c == canon));
    Ok(check_writable(dev, allowed)?)
}

/// Creates what `t` needs, recording each object in the run's `lock`, whose run id names
/// files and tags datasets.
pub fn provision(t: &TargetPlan, lock: &RunLock, allow: &[PathBuf]) -> Result<Provisioned> {
    let mut p = Provisioned::default();
    let file_in = |dir: &Path, ext: &str| {
        dir.join(format!(
            "{FILE_PREFIX}{}-{}.{ext}",
            lock.run_id.as_str(),
            t.name
        ))
    };
    match &t.storage {
        StorageSpec::Host { dir } => {
            let f = file_in(dir, "dat");
            p.own(lock, Teardown::RemoveFile(f.clone()))?;
            p.host_stat = stat_of_file(dir);
            p.put("file", f.display().to_string().into());
            p.host_file = Some(f);
        }
        StorageSpec::Loop { dir } => p.make_loop(t, lock, dir, &file_in(dir, "img"))?,
        StorageSpec::Image {
            dir,
            format,
            variant,
        } => p.make_image(
            t,
            lock,
            dir,
            (*format, *variant),
            file_in(dir, format.qemu_driver()),
        )?,
        StorageSpec::Zvol(z) => p.make_zvol(t, lock, z)?,
        StorageSpec::Blockdev { device } => {
            check_blockdev(device, allow)?;
            p._held = Some(
                zvbench_agent::target::open_patiently(
                    std::fs::File::options()
                        .read(true)
                        .custom_flags(libc::O_EXCL),
                    device,
                )
                .with_context(|| format!("hold {} exclusively for the run", device.display()))?,
            );
            p.host_stat = stat_of_device(device);
            p.put("device", device.display().to_string().into());
            p.disk = Some((device.clone(), ImageFormat::Raw));
        }
    }
    if t.guest.is_none() && p.host_file.is_none() {
        p.host_file = p.disk.as_ref().map(|(dev, _)| dev.clone());
    }
    // A file on a kernel ZFS file system: the dataset's ZIL commits and its pool's vdevs are
    // the bottom of the trace too (the dataset's anonymous device has no /sys/block
    // counters).
    if let StorageSpec::Host { dir } | StorageSpec::Loop { dir } | StorageSpec::Image { dir, .. } =
        &t.storage
    {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let canon = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
        if let Some(dataset) = zfs::dataset_of_dir(&mounts, &canon) {
            p.vdevs = pool_vdevs(dataset.split('/').next().unwrap_or(&dataset))?;
            p.zil = ZilSource::find(Path::new("/proc/spl/kstat/zfs"), &dataset);
            p.put("dataset", dataset.into());
            let source = ZilSource::describe(p.zil.as_ref());
            p.put("zil_source", source.into());
        }
    }
    if let Some(v) = &p.vdevs {
        let vdevs: Vec<String> = v.disks.iter().map(|s| s.name.clone()).collect();
        p.put("vdevs", vdevs.join(" ").into());
    }
    Ok(p)
}

impl Provisioned {
    /// Records a provenance property.
    fn put(&mut self, k: &str, v: serde_json::Value) {
        self.props.set(k, v);
    }

    /// A loop target: the backing file `f` in `dir`, `disk_size` long, on a loop device.
    fn make_loop(&mut self, t: &TargetPlan, lock: &RunLock, dir: &Path, f: &Path) -> Result<()> {
        let h = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(f)
            .with_context(|| format!("create {}", f.display()))?;
        self.own(lock, Teardown::RemoveFile(f.to_path_buf()))?;
        h.set_len(t.disk_size.bytes())
            .with_context(|| format!("make {} {} long (disk_size)", f.display(), t.disk_size))?;
        let l = LoopBinding::attach(f)?;
        let dev = l.device.clone();
        self.own(lock, Teardown::DetachLoop(l.clone()))?;
        self.loop_dev = Some(l);
        self.host_stat = stat_of_device(&dev);
        self.put("backing_file", f.display().to_string().into());
        self.put("loop_device", dev.display().to_string().into());
        self.put(
            "backing_fs_device",
            stat_of_file(dir).map(|s| s.name).into(),
        );
        self.disk = Some((dev, ImageFormat::Raw));
        Ok(())
    }

    /// An image target: the file `f` in `dir`, made by `qemu-img` (or, for VirtualBox, left
    /// to `VBoxManage createmedium` at each boot).
    fn make_image(
        &mut self,
        t: &TargetPlan,
        lock: &RunLock,
        dir: &Path,
        (format, variant): (ImageFormat, Variant),
        f: PathBuf,
    ) -> Result<()> {
        if f.exists() {
            bail!(
                "{} already exists; remove it or run `zvbench clean`",
                f.display()
            );
        }
        self.put("image", f.display().to_string().into());
        self.put("format", format.qemu_driver().into());
        self.put("variant", serde_json::to_value(variant)?);
        if t.guest.as_ref().map(|g| g.hypervisor) == Some(Hypervisor::Virtualbox) {
            // VirtualBox creates (createmedium) and deletes (closemedium --delete) its
            // own media each boot; removing a leftover file is the last resort.
            self.own(lock, Teardown::RemoveFile(f.clone()))?;
            self.host_stat = stat_of_file(dir);
            self.put("created_by", "VBoxManage createmedium".into());
        } else {
            let size = t.disk_size.bytes();
            let argv = qemu_img_argv(format, variant, &f, size);
            let r = argv.run_within(crate::cmd::limit_for_bytes(size));
            for file in [Some(f.clone()), flat_extent(&f)].into_iter().flatten() {
                if file.exists() {
                    self.own(lock, Teardown::RemoveFile(file))?;
                }
            }
            r?;
            self.host_stat = stat_of_file(&f);
            self.put("qemu_img", argv.display().into());
        }
        self.disk = Some((f, format));
        Ok(())
    }

    /// A zvol target: the zvol (under an encrypted parent made for it with a keyfile),
    /// its ZIL counter, its pool's disks and its properties.
    fn make_zvol(&mut self, t: &TargetPlan, lock: &RunLock, z: &ZvolConfig) -> Result<()> {
        let run_id = lock.run_id.as_str();
        // Encryption: the zvol is created under an encrypted parent made for it, and
        // inherits its encryption; that parent is destroyed after the zvol.
        let parent = match &z.keyfile {
            Some(key) => {
                let enc = format!("{}/{run_id}-{}-enc", z.parent, t.name);
                crate::names::check_dataset(&enc).map_err(anyhow::Error::msg)?;
                let argv = zfs::create_encrypted_parent_argv(&enc, key, run_id);
                argv.run()?;
                self.own(lock, Teardown::DestroyDataset(enc.clone()))?;
                self.put("encrypted_parent", enc.clone().into());
                self.put("zfs_create_parent", argv.display().into());
                if let Ok(v) = zfs::get_argv(&enc, "keylocation").stdout() {
                    self.put("keylocation", v.trim().into());
                }
                enc
            }
            None => z.parent.clone(),
        };
        let name = format!("{parent}/{run_id}-{}", t.name);
        crate::names::check_dataset(&name).map_err(anyhow::Error::msg)?;
        let argv = zfs::create_zvol_argv(&name, t.disk_size.bytes(), &z.props, run_id);
        argv.run()?;
        self.own(lock, Teardown::DestroyDataset(name.clone()))?;
        let dev = zfs::find_zvol(Path::new("/dev"), &name, Duration::from_secs(30))
            .map_err(anyhow::Error::msg)?;
        self.host_stat = stat_of_device(&dev);
        self.zil = ZilSource::find(Path::new("/proc/spl/kstat/zfs"), &name);
        self.vdevs = pool_vdevs(name.split('/').next().unwrap_or(&name))?;
        let source = ZilSource::describe(self.zil.as_ref());
        self.put("zil_source", source.into());
        self.put("zvol", name.clone().into());
        self.zvol = Some(name.clone());
        self.put("zfs_create", argv.display().into());
        for prop in [
            "volblocksize",
            "compression",
            "sync",
            "logbias",
            "primarycache",
            "encryption",
            "encryptionroot",
        ] {
            if let Ok(v) = zfs::get_argv(&name, prop).stdout() {
                self.put(prop, v.trim().into());
            }
        }
        self.disk = Some((dev, ImageFormat::Raw));
        Ok(())
    }
}

/// The `-flat.vmdk` extent `qemu-img` writes beside a monolithicFlat `X.vmdk` (`X-flat.vmdk`).
pub fn flat_extent(vmdk: &Path) -> Option<PathBuf> {
    let stem = vmdk.file_name()?.to_str()?.strip_suffix(".vmdk")?;
    Some(vmdk.with_file_name(format!("{stem}-flat.vmdk")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_img_argv_per_format_and_variant() {
        let f = Path::new("/var/tmp/zvbench-r-vdi.vdi");
        for (fmt, var, want) in [
            (ImageFormat::Vdi, Variant::Dynamic, "qemu-img create -q -f vdi /var/tmp/zvbench-r-vdi.vdi 1048576"),
            (ImageFormat::Vdi, Variant::Fixed, "qemu-img create -q -f vdi -o static=on /var/tmp/zvbench-r-vdi.vdi 1048576"),
            (ImageFormat::Vmdk, Variant::Fixed, "qemu-img create -q -f vmdk -o subformat=monolithicFlat /var/tmp/zvbench-r-vdi.vdi 1048576"),
            (ImageFormat::Vhdx, Variant::Dynamic, "qemu-img create -q -f vhdx -o subformat=dynamic /var/tmp/zvbench-r-vdi.vdi 1048576"),
            (ImageFormat::Qcow2, Variant::Fixed, "qemu-img create -q -f qcow2 -o preallocation=full /var/tmp/zvbench-r-vdi.vdi 1048576"),
            (ImageFormat::Raw, Variant::Dynamic, "qemu-img create -q -f raw /var/tmp/zvbench-r-vdi.vdi 1048576"),
        ] {
            assert_eq!(qemu_img_argv(fmt, var, f, 1 << 20).display(), want);
        }
    }

    #[test]
    fn real_qemu_img_creates_every_format() {
        if !crate::require::require(&["qemu-img"]) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for fmt in [
            ImageFormat::Vdi,
            ImageFormat::Vmdk,
            ImageFormat::Vhdx,
            ImageFormat::Qcow2,
            ImageFormat::Raw,
        ] {
            for var in [Variant::Dynamic, Variant::Fixed] {
                let f = dir.path().join(format!("i-{fmt:?}-{var:?}"));
                qemu_img_argv(fmt, var, &f, 4 << 20).run().unwrap();
                let info = Argv::new([
                    "qemu-img".as_ref(),
                    "info".as_ref(),
                    "--output=json".as_ref(),
                    f.as_os_str(),
                ])
                .stdout()
                .unwrap();
                let v: serde_json::Value = serde_json::from_str(&info).unwrap();
                assert_eq!(v["format"], fmt.qemu_driver(), "{fmt:?}");
                assert_eq!(v["virtual-size"], 4 << 20);
            }
        }
    }
}
