//! The guest kernel and its modules: given by the user, the host's own, or Debian's
//! `linux-image-amd64` fetched with `apt-get download` into `~/.cache/zvbench`.

use crate::cmd::Argv;
pub use crate::guest::vmlinux::DirectBoot;
use crate::scenario::Bus;
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use zvbench_agent::init::module_name;

/// A kernel image and the modules tree of the same release.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GuestKernel {
    /// The bootable image (bzImage): what ISOLINUX and VirtualBox boot.
    pub image: PathBuf,
    /// `lib/modules/<release>`.
    pub modules: PathBuf,
    /// Where it came from: `given`, `host` or `debian-package`.
    pub source: String,
    /// What QEMU's direct kernel boot uses: the decompressed ELF through its PVH entry,
    /// or the bzImage and why.
    pub direct: DirectBoot,
}

impl GuestKernel {
    /// A kernel from its image and modules; the direct-boot image is chosen (and the
    /// ELF decompressed into `cache` once) here, and a fallback to the bzImage is logged.
    pub fn new(image: PathBuf, modules: PathBuf, source: &str, cache: &Path) -> GuestKernel {
        let direct = crate::guest::vmlinux::choose(&image, cache);
        if let DirectBoot::BzImage { reason } = &direct {
            crate::observe::note!(
                "zvbench: QEMU boots the bzImage {} (slower under TCG: the kernel decompresses itself emulated): {reason}",
                image.display()
            );
        }
        GuestKernel {
            image,
            modules,
            source: source.into(),
            direct,
        }
    }

    /// The file QEMU's `-kernel` boots.
    pub fn direct_image(&self) -> &Path {
        match &self.direct {
            DirectBoot::Pvh { vmlinux } => vmlinux,
            DirectBoot::BzImage { .. } => &self.image,
        }
    }
}

/// Modules each bus needs, by name; their dependencies come from `modules.dep`.
pub fn bus_modules(bus: Bus) -> &'static [&'static str] {
    match bus {
        Bus::Virtio => &["virtio_pci", "virtio_blk"],
        Bus::Sata => &["ahci", "sd_mod"],
        Bus::Nvme => &["nvme"],
        Bus::Scsi => &["virtio_pci", "virtio_scsi", "sd_mod"],
    }
}

/// The guest's device name for the benchmark disk on each bus.
pub fn guest_disk(bus: Bus) -> &'static str {
    match bus {
        Bus::Virtio => "/dev/vda",
        Bus::Sata | Bus::Scsi => "/dev/sda",
        Bus::Nvme => "/dev/nvme0n1",
    }
}

/// Resolves `wanted` module names to `.ko` paths (relative to the modules directory) in
/// load order, dependencies first, from the text of `modules.dep`. Built-in modules
/// (listed in `modules.builtin`) need no file and are skipped.
pub fn resolve_modules(dep_text: &str, builtin_text: &str, wanted: &[&str]) -> Result<Vec<String>> {
    let builtin: HashSet<String> = builtin_text.lines().map(module_name).collect();
    let mut deps = std::collections::HashMap::new();
    for line in dep_text.lines().take(100_000) {
        if let Some((m, rest)) = line.split_once(':') {
            deps.insert(
                module_name(m),
                (
                    m.to_string(),
                    rest.split_whitespace()
                        .map(String::from)
                        .collect::<Vec<_>>(),
                ),
            );
        }
    }
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    fn visit(
        name: &str,
        deps: &std::collections::HashMap<String, (String, Vec<String>)>,
        seen: &mut HashSet<String>,
        order: &mut Vec<String>,
        depth: usize,
    ) -> Result<()> {
        if depth > 64 || !seen.insert(name.to_string()) {
            return Ok(());
        }
        let (path, ds) = deps
            .get(name)
            .with_context(|| format!("module {name} is not in modules.dep"))?;
        for d in ds {
            visit(&module_name(d), deps, seen, order, depth + 1)?;
        }
        order.push(path.clone());
        Ok(())
    }
    for w in wanted {
        if builtin.contains(*w) {
            continue;
        }
        visit(w, &deps, &mut seen, &mut order, 0)?;
    }
    if let Some(c) = order.iter().find(|p| !p.ends_with(".ko")) {
        bail!("module {c} is compressed; zvbench loads uncompressed .ko files only (Debian 12 ships them so)");
    }
    Ok(order)
}

/// Finds a guest kernel: `given` (image, modules dir), else the host's own when readable,
/// else Debian's package in the cache (fetched on first use).
pub fn find(given: Option<(PathBuf, PathBuf)>, cache: &Path) -> Result<GuestKernel> {
    if let Some((image, modules)) = given {
        for p in [&image, &modules] {
            if !p.exists() {
                bail!("{} does not exist", p.display());
            }
        }
        if !modules.join("modules.dep").exists() {
            bail!(
                "{} has no modules.dep; run depmod -b <root> <release>",
                modules.display()
            );
        }
        let mut head = [0u8; 0x206];
        let n = std::fs::File::open(&image)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
            .with_context(|| format!("read {}", image.display()))?;
        if !is_kernel_image(&head[..n]) {
            bail!(
                "--kernel {} is not a Linux kernel QEMU can boot (neither a bzImage, with \"HdrS\" at 0x202, nor an ELF vmlinux); give /boot/vmlinuz-<release>",
                image.display()
            );
        }
        return Ok(GuestKernel::new(image, modules, "given", cache));
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let host_image = PathBuf::from(format!("/boot/vmlinuz-{release}"));
    let host_modules = PathBuf::from(format!("/lib/modules/{release}"));
    if std::fs::File::open(&host_image).is_ok() && host_modules.join("modules.dep").exists() {
        return Ok(GuestKernel::new(host_image, host_modules, "host", cache));
    }
    debian_kernel(cache)
}

/// Whether the first bytes of a file are a Linux boot image: a bzImage (the x86 boot
/// protocol's "HdrS" at 0x202) or an ELF `vmlinux` (QEMU boots it through PVH).
pub fn is_kernel_image(head: &[u8]) -> bool {
    head.get(0x202..0x206) == Some(b"HdrS") || head.starts_with(b"\x7fELF")
}

/// Debian's `linux-image-amd64` dependency, downloaded, extracted and depmod'ed once.
pub fn debian_kernel(cache: &Path) -> Result<GuestKernel> {
    let root = cache.join("kernel/root");
    if let Some(k) = extracted(&root, cache)? {
        return Ok(k);
    }
    std::fs::create_dir_all(cache.join("kernel"))
        .with_context(|| format!("create {}", cache.display()))?;
    crate::observe::note!(
        "zvbench: fetching Debian's linux-image-amd64 into {} (once)",
        cache.display()
    );
    let deps = Argv::new(["apt-cache", "depends", "linux-image-amd64"])
        .stdout()
        .context(
            "finding the guest kernel package; install Debian's apt or pass --kernel and --modules",
        )?;
    let pkg = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.chars().all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c)))
        .context("apt-cache depends linux-image-amd64 named no linux-image-* package; run apt-get update")?
        .to_string();
    let dl = cache.join("kernel");
    Argv::new(["apt-get", "download", &pkg])
        .command()
        .current_dir(&dl)
        .status()
        .context("apt-get download")?;
    let deb = std::fs::read_dir(&dl)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download {pkg} left no .deb in {}", dl.display()))?;
    let tmp = cache.join("kernel/root.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    Argv::new([
        Path::new("dpkg").as_os_str(),
        "-x".as_ref(),
        deb.as_os_str(),
        tmp.as_os_str(),
    ])
    .run()?;
    let mods = tmp.join("lib/modules");
    let rel = std::fs::read_dir(&mods)?
        .flatten()
        .next()
        .context("package has no lib/modules")?
        .file_name();
    Argv::new([
        "depmod".as_ref(),
        "-b".as_ref(),
        tmp.as_os_str(),
        rel.as_os_str(),
    ])
    .run()?;
    std::fs::rename(&tmp, &root)?;
    let _ = std::fs::remove_file(&deb);
    extracted(&root, cache)?.context("the extracted kernel package has no boot/vmlinuz-*")
}

fn extracted(root: &Path, cache: &Path) -> Result<Option<GuestKernel>> {
    let Ok(rd) = std::fs::read_dir(root.join("boot")) else {
        return Ok(None);
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(rel) = name.strip_prefix("vmlinuz-") {
            let modules = root.join("lib/modules").join(rel);
            if modules.join("modules.dep").exists() {
                return Ok(Some(GuestKernel::new(
                    e.path(),
                    modules,
                    "debian-package",
                    cache,
                )));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libahci.ko kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/ata/libahci.ko: kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/ata/libata.ko: kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/scsi/scsi_mod.ko:
kernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_mod.ko
";

    #[test]
    fn dependencies_load_first_each_once() {
        let got = resolve_modules(DEP, "", bus_modules(Bus::Virtio)).unwrap();
        let pos = |n: &str| {
            got.iter()
                .position(|p| p.ends_with(&format!("/{n}.ko")))
                .unwrap()
        };
        assert_eq!(got.len(), 5, "{got:?}");
        assert!(pos("virtio") < pos("virtio_ring") && pos("virtio_ring") < pos("virtio_blk"));
        assert!(pos("virtio_pci_modern_dev") < pos("virtio_pci"));
        let sata = resolve_modules(DEP, "", bus_modules(Bus::Sata)).unwrap();
        assert_eq!(
            sata.iter().filter(|p| p.ends_with("scsi_mod.ko")).count(),
            1
        );
        assert!(sata.last().unwrap().ends_with("sd_mod.ko"));
    }

    #[test]
    fn builtins_are_skipped_and_unknowns_named() {
        let got =
            resolve_modules(DEP, "kernel/drivers/block/virtio_blk.ko\n", &["virtio_blk"]).unwrap();
        assert!(got.is_empty());
        let e = resolve_modules(DEP, "", &["nvme"]).unwrap_err();
        assert!(e.to_string().contains("nvme is not in modules.dep"));
    }
}
