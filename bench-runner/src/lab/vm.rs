//! The lab VM's pieces, as pure functions: its initramfs (busybox loads the virtio, 9p and
//! OpenZFS modules, mounts the host's root read-only over virtio-9p with tmpfs on `/tmp`,
//! `/var/tmp` and `/run`, mounts the control and result shares, and switches to the host's
//! root running `zvbench lab-guest`) and its QEMU arguments.

use crate::guest::initramfs::{elf_is_static, Cpio};
use crate::hypervisor::qemu::qemu_escape;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where the control share (job, output, exit status) is mounted in the guest.
pub const CTL_MOUNT: &str = "/run/zvbench-lab";
/// The host-root directories the guest covers with its own tmpfs.
pub const TMPFS: [&str; 3] = ["/tmp", "/var/tmp", "/run"];
/// 9p mount tags.
const TAG_ROOT: &str = "hostroot";
const TAG_CTL: &str = "labctl";
const TAG_SHARE: &str = "labshare";
const TAG_TREE: &str = "labtree";

/// The busybox script that is the initramfs's `/init`. Module files are `/m/NNN.ko` (load
/// order) with optional `/m/NNN.params`; `/lab/exe` names the zvbench binary on the host's
/// root, `/lab/tree` a host directory under a tmpfs-covered one to show read-only at its
/// own path (the checkout holding that binary; empty for none), `/lab/share` the result
/// share's path (empty for none).
pub const INIT: &str = r#"#!/bin/busybox sh
B=/bin/busybox
fail() { $B echo "zvbench-lab init: $*" > /dev/console; $B poweroff -f; }
$B mount -t proc proc /proc
$B mount -t devtmpfs devtmpfs /dev
for m in /m/*.ko; do
  p=""; [ -e "${m%.ko}.params" ] && p=$($B cat "${m%.ko}.params")
  $B insmod "$m" $p || fail "insmod $m failed"
done
R=/newroot
opts=trans=virtio,version=9p2000.L,msize=262144
$B mount -t 9p -o "$opts,ro,cache=loose" hostroot $R || fail "cannot mount the host root over 9p"
for d in /tmp /var/tmp /run; do $B mount -t tmpfs -o mode=1777 tmpfs "$R$d" || fail "tmpfs on $d"; done
$B mount -t proc proc $R/proc
$B mount -t sysfs sysfs $R/sys
$B mount --move /dev $R/dev
$B mkdir -p $R/dev/pts $R/dev/shm $R/run/zvbench-lab
$B mount -t devpts devpts $R/dev/pts
$B mount -t tmpfs tmpfs $R/dev/shm
$B mount -t 9p -o "$opts,cache=none" labctl $R/run/zvbench-lab || fail "cannot mount the control share"
tree=$($B cat /lab/tree)
if [ -n "$tree" ]; then
  $B mkdir -p "$R$tree"
  $B mount -t 9p -o "$opts,ro,cache=loose" labtree "$R$tree" || fail "cannot mount $tree"
fi
share=$($B cat /lab/share)
if [ -n "$share" ]; then
  $B mkdir -p "$R$share"
  $B mount -t 9p -o "$opts,cache=none" labshare "$R$share" || fail "cannot mount the share on $share"
fi
exec $B switch_root $R "$($B cat /lab/exe)" lab-guest /run/zvbench-lab/job.json
"#;

/// Kernel command line of the lab VM (`no_timer_check`: as for guests, `guest::APPEND`).
pub const APPEND: &str = "console=ttyS0 loglevel=4 panic=-1 rdinit=/init no_timer_check";

/// The lab's initramfs: static busybox, the init script, `modules` in load order (each
/// with its parameters), and the paths the init script reads.
pub fn initramfs(
    busybox: &[u8],
    modules: &[(Vec<u8>, String)],
    exe: &Path,
    tree: Option<&Path>,
    share: Option<&Path>,
) -> Result<Vec<u8>> {
    if elf_is_static(busybox) != Some(true) {
        bail!("/bin/busybox is not a static executable: install busybox-static (scripts/install-deps)");
    }
    let mut c = Cpio::new();
    c.file("bin/busybox", 0o755, busybox)
        .file("init", 0o755, INIT.as_bytes())
        .file("lab/exe", 0o644, exe.as_os_str().as_encoded_bytes())
        .file(
            "lab/tree",
            0o644,
            tree.map_or(&[][..], |t| t.as_os_str().as_encoded_bytes()),
        )
        .file(
            "lab/share",
            0o644,
            share.map_or(&[][..], |s| s.as_os_str().as_encoded_bytes()),
        )
        .file("newroot/.keep", 0o644, b"")
        .file("proc/.keep", 0o644, b"")
        .file("dev/.keep", 0o644, b"");
    for (i, (bytes, params)) in modules.iter().enumerate() {
        c.file(&format!("m/{i:03}.ko"), 0o644, bytes);
        if !params.is_empty() {
            c.file(&format!("m/{i:03}.params"), 0o644, params.as_bytes());
        }
    }
    Ok(c.finish_gz()?)
}

/// A directory exported over virtio-9p.
fn share_args(id: &str, path: &Path, readonly: bool) -> Vec<OsString> {
    let ro = if readonly { ",readonly=on" } else { "" };
    vec![
        "-fsdev".into(),
        format!(
            "local,id={id},path={},security_model=none,multidevs=remap{ro}",
            qemu_escape(path)
        )
        .into(),
        "-device".into(),
        format!("virtio-9p-pci,fsdev={id},mount_tag={id}").into(),
    ]
}

/// The shares: the host's root read-only, the control directory, the tree holding the
/// zvbench binary when the guest's tmpfs would hide it (read-only), the result share.
pub fn shares_args(ctl: &Path, tree: Option<&Path>, share: Option<&Path>) -> Vec<OsString> {
    let mut v = share_args(TAG_ROOT, Path::new("/"), true);
    v.extend(share_args(TAG_CTL, ctl, false));
    if let Some(t) = tree {
        v.extend(share_args(TAG_TREE, t, true));
    }
    if let Some(s) = share {
        v.extend(share_args(TAG_SHARE, s, false));
    }
    v
}

/// The pool disks: raw files on virtio-blk, `cache=none`, serials `zvbench-labN`
/// (`/dev/vda`, `/dev/vdb`, … in the guest). With `log`, the first disk's writes and
/// flushes are logged there by `blklogwrites`, below the cache handling (a power cut under
/// ZFS; see [`crate::hypervisor::qemu::logged_drive`]).
pub fn disk_args(files: &[PathBuf], log: Option<&Path>) -> Vec<OsString> {
    let mut v = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let file = match log.filter(|_| i == 0) {
            Some(l) => format!("driver=raw,{}", crate::hypervisor::qemu::logged_file(f, l)),
            None => format!("file={},format=raw", qemu_escape(f)),
        };
        v.push("-drive".into());
        v.push(format!("{file},if=none,id=labdisk{i},cache=none,aio=threads").into());
        v.push("-device".into());
        v.push(format!("virtio-blk-pci,drive=labdisk{i},serial=zvbench-lab{i}").into());
    }
    v
}

/// The guest's name for the `i`-th pool disk.
pub fn guest_disk(i: usize) -> String {
    let mut name = String::new();
    let mut n = i;
    loop {
        name.insert(0, (b'a' + (n % 26) as u8) as char);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    format!("/dev/vd{name}")
}

/// Module files for the initramfs, in load order: the kernel's own that the lab needs and
/// those OpenZFS's modules depend on (`zfs_deps`, from `modinfo -F depends`), each after
/// its dependencies, then OpenZFS's, with `spa_config_path` on a tmpfs so that no pool is
/// ever written into the read-only host root.
pub fn module_list(
    kernel_modules: &Path,
    zfs: &[PathBuf],
    zfs_deps: &[String],
) -> Result<Vec<(PathBuf, String)>> {
    let read = |f: &str| {
        std::fs::read_to_string(kernel_modules.join(f))
            .with_context(|| format!("read {}", kernel_modules.join(f).display()))
    };
    let own: Vec<String> = zfs
        .iter()
        .map(|z| zvbench_agent::init::module_name(&z.to_string_lossy()))
        .collect();
    // loop: `zvbench lab --powercut` imports pools from reconstructed disk images.
    let mut wanted: Vec<&str> = vec!["virtio_pci", "virtio_blk", "9pnet_virtio", "9p", "loop"];
    wanted.extend(
        zfs_deps
            .iter()
            .map(String::as_str)
            .filter(|d| !own.iter().any(|o| o == d)),
    );
    let found = crate::guest::kernel::resolve_modules(
        &read("modules.dep")?,
        &read("modules.builtin").unwrap_or_default(),
        &wanted,
    )?;
    let mut out: Vec<(PathBuf, String)> = found
        .into_iter()
        .map(|p| (kernel_modules.join(p), String::new()))
        .collect();
    for (z, name) in zfs.iter().zip(&own) {
        let params = if name == "zfs" {
            "spa_config_path=/run/zfs/zpool.cache".to_string()
        } else {
            String::new()
        };
        out.push((z.clone(), params));
    }
    Ok(out)
}

/// Module names from `modinfo -F depends` output (comma-separated, maybe empty).
pub fn depends_names(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|n| {
            !n.is_empty()
                && n.len() < 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
        .map(|n| n.replace('-', "_"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: Vec<OsString>) -> Vec<String> {
        v.into_iter().map(|x| x.into_string().unwrap()).collect()
    }

    #[test]
    fn disks_are_raw_virtio_cache_none() {
        let got = s(disk_args(&["/t/d0.img".into(), "/t/a,b.img".into()], None));
        assert_eq!(
            got,
            [
                "-drive",
                "file=/t/d0.img,format=raw,if=none,id=labdisk0,cache=none,aio=threads",
                "-device",
                "virtio-blk-pci,drive=labdisk0,serial=zvbench-lab0",
                "-drive",
                "file=/t/a,,b.img,format=raw,if=none,id=labdisk1,cache=none,aio=threads",
                "-device",
                "virtio-blk-pci,drive=labdisk1,serial=zvbench-lab1",
            ]
        );
    }

    #[test]
    fn the_first_disk_is_logged_below_its_cache_handling() {
        let got = s(disk_args(
            &["/t/d0.img".into(), "/t/d1.img".into()],
            Some(Path::new("/t/a,b.log")),
        ));
        assert_eq!(
            got[1],
            "driver=raw,file.driver=blklogwrites,file.file.filename=/t/d0.img,file.log.filename=/t/a,,b.log,file.log-sector-size=512,if=none,id=labdisk0,cache=none,aio=threads"
        );
        assert_eq!(
            got[5],
            "file=/t/d1.img,format=raw,if=none,id=labdisk1,cache=none,aio=threads"
        );
    }

    #[test]
    fn root_is_read_only_and_shares_are_not() {
        let got = s(shares_args(
            Path::new("/w/ctl"),
            Some(Path::new("/tmp/ci")),
            Some(Path::new("/srv/out")),
        ));
        assert_eq!(
            got[1],
            "local,id=hostroot,path=/,security_model=none,multidevs=remap,readonly=on"
        );
        assert_eq!(got[3], "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot");
        assert_eq!(
            got[5],
            "local,id=labctl,path=/w/ctl,security_model=none,multidevs=remap"
        );
        assert_eq!(
            got[9],
            "local,id=labtree,path=/tmp/ci,security_model=none,multidevs=remap,readonly=on"
        );
        assert_eq!(
            got[13],
            "local,id=labshare,path=/srv/out,security_model=none,multidevs=remap"
        );
        assert_eq!(s(shares_args(Path::new("/w/ctl"), None, None)).len(), 8);
    }

    #[test]
    fn modinfo_depends() {
        assert_eq!(depends_names("spl,zlib_deflate\n"), ["spl", "zlib_deflate"]);
        assert!(depends_names("\n").is_empty());
        assert!(depends_names("a b,../x").is_empty());
    }

    #[test]
    fn guest_disk_names() {
        assert_eq!(guest_disk(0), "/dev/vda");
        assert_eq!(guest_disk(1), "/dev/vdb");
        assert_eq!(guest_disk(25), "/dev/vdz");
        assert_eq!(guest_disk(26), "/dev/vdaa");
    }

    #[test]
    fn init_mounts_the_tags_the_arguments_export() {
        for tag in [TAG_ROOT, TAG_CTL, TAG_TREE, TAG_SHARE] {
            assert!(INIT.contains(&format!(" {tag} ")), "{tag}");
        }
        assert!(INIT.contains(CTL_MOUNT));
        assert!(INIT.contains("ro,cache=loose"));
        assert!(INIT.contains(&format!("for d in {}; do", TMPFS.join(" "))));
    }

    #[test]
    fn initramfs_needs_a_static_busybox() {
        let sh = std::fs::read("/bin/sh").unwrap();
        let e = initramfs(&sh, &[], Path::new("/x/zvbench"), None, None).unwrap_err();
        assert!(e.to_string().contains("busybox-static"), "{e}");
    }
}
