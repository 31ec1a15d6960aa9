//! `zvbench doctor`: what this host can run, what is missing, and the command that
//! installs it.

use crate::cmd::Argv;
use std::ffi::OsStr;
use std::path::Path;

fn line(ok: bool, what: &str, detail: &str) {
    println!("{} {what}: {detail}", if ok { "ok  " } else { "MISS" });
}

fn first_line(argv: &[&str]) -> Option<String> {
    Argv::new(argv)
        .stdout()
        .ok()
        .and_then(|s| s.lines().next().map(str::to_string))
}

/// Prints the checks (VirtualBox's with the program `vboxmanage`); returns 0 when QEMU
/// guests can run, 1 otherwise.
pub fn report(cache: &Path, vboxmanage: &OsStr) -> i32 {
    let root = nix::unistd::Uid::effective().is_root();
    line(
        root,
        "root",
        if root {
            "yes"
        } else {
            "no: loop, zvol and raw-device targets need root"
        },
    );
    let qemu = crate::hypervisor::qemu::version();
    line(
        qemu.is_some(),
        "QEMU",
        qemu.as_deref()
            .unwrap_or("missing: apt-get install qemu-system-x86 qemu-utils"),
    );
    let img = first_line(&["qemu-img", "--version"]);
    line(
        img.is_some(),
        "qemu-img",
        img.as_deref()
            .unwrap_or("missing: apt-get install qemu-utils"),
    );
    let kernel = crate::guest::kernel::find(None, cache);
    match &kernel {
        Ok(k) => line(
            true,
            "guest kernel",
            &format!("{} ({})", k.image.display(), k.source),
        ),
        Err(e) => line(
            false,
            "guest kernel",
            &format!("{e:#}; pass --kernel/--modules or apt-get update"),
        ),
    }
    if let (Ok(k), Some(_)) = (&kernel, &qemu) {
        let _ = std::fs::remove_file(cache.join("accel-probe.json"));
        let a = crate::hypervisor::qemu::choose_accel(&k.image, cache);
        line(
            a == crate::hypervisor::qemu::Accel::Kvm,
            "KVM (probe boot)",
            if a == crate::hypervisor::qemu::Accel::Kvm {
                "works"
            } else {
                "does not run a guest here: TCG will be used"
            },
        );
    }
    let losetup = first_line(&["losetup", "--version"]);
    line(
        losetup.is_some(),
        "loop devices",
        losetup
            .as_deref()
            .unwrap_or("missing: apt-get install mount"),
    );
    let zfs_kernel = Path::new("/sys/module/zfs").exists();
    let zfs = first_line(&["zfs", "version"])
        .or_else(|| first_line(&["zfs", "list", "-H", "-o", "name"]).map(|_| "zfs answers".into()));
    let zfs_detail = match (zfs_kernel, &zfs) {
        (true, Some(v)) => format!("kernel OpenZFS ({v}): zvol targets work"),
        (false, Some(_)) => {
            "zfs answers but no kernel module (zfs-fuse?): datasets work, zvols do not".into()
        }
        _ => "none: zvol targets need OpenZFS (apt-get install zfsutils-linux)".into(),
    };
    line(zfs_kernel && zfs.is_some(), "ZFS", &zfs_detail);
    let vbox = crate::hypervisor::vbox::VBoxManage::detect(vboxmanage);
    line(
        vbox.is_ok(),
        "VirtualBox",
        &match &vbox {
            Ok(v) => format!(
                "VBoxManage with {:?} syntax: hypervisor = \"virtualbox\" works",
                v.major()
            ),
            Err(e) => format!(
                "{}: hypervisor = \"virtualbox\" targets cannot run",
                crate::chain(e)
            ),
        },
    );
    let iso = crate::guest::iso::check_tools();
    line(
        iso.is_ok(),
        "guest ISO (VirtualBox, boot = \"iso\")",
        &iso.as_ref()
            .map_or_else(crate::chain, |_| "xorriso and ISOLINUX found".into()),
    );
    i32::from(!(qemu.is_some() && img.is_some() && kernel.is_ok()))
}
