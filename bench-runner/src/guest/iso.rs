//! A small bootable guest ISO: ISOLINUX loads the guest kernel and the initramfs (agent,
//! modules, job) with zvbench's kernel command line. VirtualBox boots it from a DVD drive;
//! QEMU can too (`boot = "iso"`). Built with xorriso from Debian's `isolinux` and
//! `syslinux-common` files.

use crate::cmd::Argv;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where Debian's packages put the ISOLINUX files.
const ISOLINUX_BIN: &[&str] = &["/usr/lib/ISOLINUX/isolinux.bin"];
const LDLINUX_C32: &[&str] = &[
    "/usr/lib/syslinux/modules/bios/ldlinux.c32",
    "/usr/share/syslinux/ldlinux.c32",
];
const ISOHDPFX: &[&str] = &["/usr/lib/ISOLINUX/isohdpfx.bin"];

fn find(candidates: &[&str], package: &str) -> Result<PathBuf> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{} not found: install Debian's {package} (scripts/install-deps does)",
                candidates[0]
            )
        })
}

/// Checks that xorriso and the ISOLINUX files are installed.
pub fn check_tools() -> Result<()> {
    find(ISOLINUX_BIN, "isolinux")?;
    find(LDLINUX_C32, "syslinux-common")?;
    find(ISOHDPFX, "isolinux")?;
    Argv(vec!["xorriso".into(), "-version".into()])
        .run()
        .context("the guest ISO needs xorriso: apt-get install xorriso")?;
    Ok(())
}

/// `isolinux.cfg`: boot the one entry at once with `append` as the command line.
pub fn isolinux_cfg(append: &str) -> String {
    format!(
        "DEFAULT zvbench\nPROMPT 0\nTIMEOUT 0\nLABEL zvbench\n  KERNEL /boot/vmlinuz\n  INITRD /boot/initrd.gz\n  APPEND {append}\n"
    )
}

/// The xorriso command that makes `out` from the tree `root` (El Torito, no emulation,
/// hybrid MBR so the image also boots as a disk).
pub fn xorriso_argv(root: &Path, out: &Path, mbr: &Path) -> Argv {
    let mut v: Vec<OsString> = ["xorriso", "-as", "mkisofs", "-quiet", "-o"]
        .map(OsString::from)
        .to_vec();
    v.push(out.into());
    v.extend(["-V", "ZVBENCH", "-J", "-R", "-isohybrid-mbr"].map(OsString::from));
    v.push(mbr.into());
    v.extend(
        [
            "-b",
            "isolinux/isolinux.bin",
            "-c",
            "isolinux/boot.cat",
            "-no-emul-boot",
            "-boot-load-size",
            "4",
            "-boot-info-table",
        ]
        .map(OsString::from),
    );
    v.push(root.into());
    Argv(v)
}

/// Builds `out` from a kernel image, a gzip'ed initramfs and a command line.
pub fn build(kernel: &Path, initramfs: &[u8], append: &str, out: &Path) -> Result<()> {
    if append.contains('\n') {
        bail!("kernel command line with a newline");
    }
    let root = tempfile::Builder::new()
        .prefix("zvbench-iso-")
        .tempdir()
        .context("temporary ISO tree")?;
    let r = root.path();
    std::fs::create_dir_all(r.join("isolinux"))?;
    std::fs::create_dir_all(r.join("boot"))?;
    std::fs::copy(
        find(ISOLINUX_BIN, "isolinux")?,
        r.join("isolinux/isolinux.bin"),
    )?;
    std::fs::copy(
        find(LDLINUX_C32, "syslinux-common")?,
        r.join("isolinux/ldlinux.c32"),
    )?;
    std::fs::write(r.join("isolinux/isolinux.cfg"), isolinux_cfg(append))?;
    std::fs::copy(kernel, r.join("boot/vmlinuz"))
        .with_context(|| format!("copy {}", kernel.display()))?;
    std::fs::write(r.join("boot/initrd.gz"), initramfs)?;
    let mbr = find(ISOHDPFX, "isolinux")?;
    let _ = std::fs::remove_file(out);
    xorriso_argv(r, out, &mbr)
        .run()
        .context("xorriso (Debian package xorriso) failed to build the ISO")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_boots_at_once_with_the_command_line() {
        let c = isolinux_cfg("console=ttyS0 rdinit=/init");
        assert!(c.contains("TIMEOUT 0\n") && c.contains("PROMPT 0\n"));
        assert!(c.contains("  APPEND console=ttyS0 rdinit=/init\n"));
    }

    #[test]
    fn xorriso_makes_an_el_torito_image() {
        let s = xorriso_argv(Path::new("/t"), Path::new("/o.iso"), Path::new("/m.bin")).display();
        assert!(s.starts_with("xorriso -as mkisofs"), "{s}");
        assert!(s.contains("-b isolinux/isolinux.bin -c isolinux/boot.cat -no-emul-boot"));
        assert!(s.ends_with(" /t"));
    }
}
