//! Opening the file or block device a pass runs on: flags, O_DIRECT alignment, size, and
//! a look at what a block device holds before anything writes to it.

use crate::devstat::StatSource;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Block-device ioctls from `<linux/fs.h>`.
mod ioctl {
    nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
    nix::ioctl_read_bad!(blksszget, nix::request_code_none!(0x12, 104), libc::c_int);
    nix::ioctl_none!(blkflsbuf, 0x12, 97);
}
use ioctl::{blkflsbuf, blkgetsize64, blksszget};

/// First bytes of every block the agent writes: how zvbench recognises its own data on a
/// device (see [`probe_contents`]).
pub const BLOCK_MAGIC: &[u8; 8] = b"ZVBENCH\x01";

/// What kind of object a pass runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    /// A regular file.
    File,
    /// A block device node.
    Blockdev,
}

/// How the target is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenMode {
    /// Open for writing (and create a missing regular file).
    pub write: bool,
    /// O_DIRECT.
    pub direct: bool,
    /// O_SYNC.
    pub osync: bool,
    /// O_DSYNC.
    pub odsync: bool,
}

/// An opened target with what the kernel says about it.
#[derive(Debug)]
pub struct Target {
    /// The open file.
    pub file: File,
    /// The path it was opened by.
    pub path: PathBuf,
    /// File or block device.
    pub kind: PathKind,
    /// Required alignment of O_DIRECT offsets and lengths, in bytes.
    pub dio_offset_align: u32,
    /// Required alignment of O_DIRECT buffers, in bytes.
    pub dio_mem_align: u32,
    /// Current size in bytes (file length or device capacity).
    pub size_bytes: u64,
    /// The whole block device whose counters describe this target, if sysfs knows it.
    pub stat_source: Option<StatSource>,
}

/// Why a target could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// open(2) failed.
    #[error("cannot open {path}{hint}")]
    Open {
        /// The path.
        path: PathBuf,
        /// What to try instead, when known.
        hint: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The path is neither a regular file nor a block device.
    #[error("{0} is neither a regular file nor a block device")]
    Kind(PathBuf),
    /// An ioctl or statx failed.
    #[error("{what} failed on {path}")]
    Query {
        /// The call.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// What a device holds, from its first and last MiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// Only zero bytes were found.
    Empty,
    /// Data that zvbench wrote (its block magic at offset 0).
    Zvbench,
    /// A known on-disk signature: file system, partition table, LVM, swap or ZFS label.
    Signature(&'static str),
    /// Non-zero bytes of unknown origin.
    Data,
}

impl Target {
    /// Opens `path` as `mode` says and queries its alignment and size.
    pub fn open(path: &Path, mode: OpenMode) -> Result<Target, TargetError> {
        let meta = std::fs::metadata(path);
        let is_blockdev = meta
            .as_ref()
            .map(|m| m.file_type().is_block_device())
            .unwrap_or(false);
        if let Ok(m) = &meta {
            if !is_blockdev && !m.file_type().is_file() {
                return Err(TargetError::Kind(path.to_owned()));
            }
        }
        let mut flags = 0;
        if mode.direct {
            flags |= libc::O_DIRECT;
        }
        if mode.osync {
            flags |= libc::O_SYNC;
        }
        if mode.odsync {
            flags |= libc::O_DSYNC;
        }
        let file = OpenOptions::new()
            .read(!mode.write)
            .write(mode.write)
            .create(mode.write && !is_blockdev)
            .custom_flags(flags)
            .open(path)
            .map_err(|source| {
                let hint = match source.raw_os_error() {
                    Some(libc::EINVAL) if mode.direct => {
                        ": this file system does not support O_DIRECT; run without --direct or put the file elsewhere"
                    }
                    Some(libc::ENOENT) if mode.write => ": its directory does not exist; create it or name another path",
                    Some(libc::ENOENT) => ": it does not exist; a read pass needs a preceding write pass",
                    Some(libc::EBUSY) => ": it is in use (mounted or opened exclusively)",
                    _ => "",
                };
                TargetError::Open { path: path.to_owned(), hint, source }
            })?;
        let query = |what: &'static str| {
            move |source: io::Error| TargetError::Query {
                what,
                path: path.to_owned(),
                source,
            }
        };
        let meta = file.metadata().map_err(query("fstat"))?;
        let kind = if meta.file_type().is_block_device() {
            PathKind::Blockdev
        } else {
            PathKind::File
        };
        let (dio_mem, dio_off) = statx_dio(&file).map_err(query("statx"))?;
        let (size_bytes, lbs, devno) = match kind {
            PathKind::Blockdev => {
                let mut size = 0u64;
                let mut lbs: libc::c_int = 0;
                // SAFETY: the fd is open; both ioctls write one integer of the given type.
                unsafe { blkgetsize64(file.as_raw_fd(), &mut size) }
                    .map_err(|e| query("BLKGETSIZE64")(e.into()))?;
                // SAFETY: as above.
                unsafe { blksszget(file.as_raw_fd(), &mut lbs) }
                    .map_err(|e| query("BLKSSZGET")(e.into()))?;
                (size, lbs.max(512) as u32, meta.rdev())
            }
            PathKind::File => (
                meta.len(),
                meta.blksize().clamp(512, 1 << 20) as u32,
                meta.dev(),
            ),
        };
        let dio_offset_align = if dio_off > 0 { dio_off } else { lbs };
        let dio_mem_align = if dio_mem > 0 {
            dio_mem
        } else {
            dio_offset_align
        };
        let stat_source = StatSource::for_devno(
            Path::new("/sys"),
            libc::major(devno) as u64,
            libc::minor(devno) as u64,
        );
        Ok(Target {
            file,
            path: path.to_owned(),
            kind,
            dio_offset_align,
            dio_mem_align,
            size_bytes,
            stat_source,
        })
    }

    /// Drops the kernel's cached pages for a block device (BLKFLSBUF).
    pub fn flush_device_buffers(&self) -> io::Result<()> {
        // SAFETY: the fd is open; BLKFLSBUF takes no argument.
        unsafe { blkflsbuf(self.file.as_raw_fd()) }
            .map(drop)
            .map_err(io::Error::from)
    }
}

/// O_DIRECT memory and offset alignment from statx(STATX_DIOALIGN); zeros when the kernel
/// does not report them (before Linux 6.1, or a file system that does not say).
fn statx_dio(file: &File) -> io::Result<(u32, u32)> {
    // SAFETY: statx is plain data; all-zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let empty = b"\0";
    // The raw system call, not glibc's wrapper: a static glibc link resolves the wrapper to a
    // null weak symbol here, and the syscall also works where glibc predates statx.
    // SAFETY: fd is open, the path is a NUL-terminated empty string with AT_EMPTY_PATH, and
    // stx is a valid, writable statx buffer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_statx,
            file.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx as *mut libc::statx,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOSYS) {
            Ok((0, 0))
        } else {
            Err(e)
        };
    }
    if stx.stx_mask & libc::STATX_DIOALIGN == 0 {
        return Ok((0, 0));
    }
    Ok((stx.stx_dio_mem_align, stx.stx_dio_offset_align))
}

/// Known signatures: (name, byte offset, magic).
const SIGNATURES: &[(&str, usize, &[u8])] = &[
    ("ext2/3/4 file system", 1080, &[0x53, 0xEF]),
    ("XFS file system", 0, b"XFSB"),
    ("Btrfs file system", 0x10040, b"_BHRfS_M"),
    ("GPT partition table", 512, b"EFI PART"),
    ("LVM physical volume", 512 + 24, b"LVM2 001"),
    ("swap space", 4096 - 10, b"SWAPSPACE2"),
    ("swap space", 4096 - 10, b"SWAP-SPACE"),
    ("FAT file system", 0x52, b"FAT32   "),
    ("FAT file system", 0x36, b"FAT16   "),
    ("NTFS file system", 3, b"NTFS    "),
    ("LUKS encrypted volume", 0, b"LUKS\xba\xbe"),
    ("ISO 9660 image", 0x8001, b"CD001"),
];

/// ZFS uberblock magic (little-endian `0x00bab10c`), searched in the first label's
/// uberblock ring (128 KiB - 256 KiB) and in the last MiB (labels 2 and 3).
const ZFS_UB_MAGIC: [u8; 8] = [0x0c, 0xb1, 0xba, 0, 0, 0, 0, 0];

/// Classifies what a device holds from `head` (its first MiB) and `tail` (its last MiB).
/// Pure, so every signature is tested without a device.
pub fn classify(head: &[u8], tail: &[u8]) -> Contents {
    if head.starts_with(BLOCK_MAGIC) {
        return Contents::Zvbench;
    }
    for (name, off, magic) in SIGNATURES {
        if head.get(*off..off + magic.len()) == Some(*magic) {
            return Contents::Signature(name);
        }
    }
    let has_zfs = |buf: &[u8], range: std::ops::Range<usize>| {
        buf.get(range)
            .is_some_and(|r| r.chunks_exact(1024).any(|c| c[..8] == ZFS_UB_MAGIC))
    };
    if has_zfs(head, 128 << 10..256 << 10) || has_zfs(tail, 0..tail.len()) {
        return Contents::Signature("ZFS pool label");
    }
    if head.get(510..512) == Some(&[0x55, 0xAA]) {
        return Contents::Signature("MBR partition table or boot sector");
    }
    if head.iter().chain(tail).any(|&b| b != 0) {
        Contents::Data
    } else {
        Contents::Empty
    }
}

/// Reads the first and last MiB of `path` (without O_DIRECT: probing must not need
/// alignment) and classifies them.
pub fn probe_contents(path: &Path) -> io::Result<Contents> {
    use std::os::unix::fs::FileExt;
    const WINDOW: u64 = 1 << 20;
    let f = File::open(path)?;
    let mut size = f.metadata()?.len();
    if size == 0 {
        size = {
            let mut s = 0u64;
            // SAFETY: the fd is open; BLKGETSIZE64 writes one u64. A non-device leaves s at 0.
            let _ = unsafe { blkgetsize64(f.as_raw_fd(), &mut s) };
            s
        };
    }
    let read_at = |off: u64, len: u64| -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        let mut done = 0;
        while done < buf.len() {
            let n = f.read_at(&mut buf[done..], off + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf.truncate(done);
        Ok(buf)
    };
    let head = read_at(0, WINDOW.min(size))?;
    let tail_off = size.saturating_sub(WINDOW).max(WINDOW.min(size));
    let tail = read_at(tail_off, size - tail_off)?;
    Ok(classify(&head, &tail))
}

/// Whether any partition, holder (LVM, dm, md) or mount uses the block device `name`.
/// Returns what was found, for the refusal message.
pub fn device_users(sys_root: &Path, mounts: &str, dev_path: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Some(name) = dev_path.file_name().and_then(|n| n.to_str()) else {
        return found;
    };
    let dir = sys_root.join("block").join(name);
    if let Ok(rd) = std::fs::read_dir(dir.join("holders")) {
        for e in rd.flatten() {
            found.push(format!("held by {}", e.file_name().to_string_lossy()));
        }
    }
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            if e.path().join("partition").exists() {
                found.push(format!("has partition {}", e.file_name().to_string_lossy()));
            }
        }
    }
    let dev = dev_path.as_os_str().as_bytes();
    for line in mounts.lines().take(100_000) {
        let mut it = line.split_ascii_whitespace();
        if let (Some(src), Some(mnt)) = (it.next(), it.next()) {
            let src = src.as_bytes();
            if src == dev
                || (src.starts_with(dev)
                    && src[dev.len()..]
                        .iter()
                        .all(|c| c.is_ascii_digit() || *c == b'p'))
            {
                found.push(format!("mounted on {mnt}"));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(off: usize, magic: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 1 << 20];
        v[off..off + magic.len()].copy_from_slice(magic);
        v
    }

    #[test]
    fn classifies_signatures() {
        let tail = vec![0u8; 1 << 20];
        for (name, off, magic) in SIGNATURES {
            assert_eq!(
                classify(&with(*off, magic), &tail),
                Contents::Signature(name),
                "{name}"
            );
        }
        assert_eq!(
            classify(&with(510, &[0x55, 0xAA]), &tail),
            Contents::Signature("MBR partition table or boot sector")
        );
        assert_eq!(
            classify(&with(130 << 10, &ZFS_UB_MAGIC), &tail),
            Contents::Signature("ZFS pool label")
        );
        assert_eq!(
            classify(&tail, &with(4096, &ZFS_UB_MAGIC)),
            Contents::Signature("ZFS pool label")
        );
    }

    #[test]
    fn classifies_empty_own_and_foreign_data() {
        let zero = vec![0u8; 1 << 20];
        assert_eq!(classify(&zero, &zero), Contents::Empty);
        assert_eq!(classify(&with(0, BLOCK_MAGIC), &zero), Contents::Zvbench);
        assert_eq!(classify(&with(700_000, b"x"), &zero), Contents::Data);
        assert_eq!(classify(&zero, &with(5, b"x")), Contents::Data);
        assert_eq!(classify(&[], &[]), Contents::Empty);
    }

    #[test]
    fn finds_mounts_of_device_and_partitions() {
        let mounts =
            "/dev/sdx1 /mnt ext4 rw 0 0\n/dev/sdxy /other ext4 rw 0 0\nproc /proc proc rw 0 0\n";
        let users = device_users(Path::new("/nonexistent"), mounts, Path::new("/dev/sdx"));
        assert_eq!(users, vec!["mounted on /mnt".to_string()]);
    }

    #[test]
    fn regular_file_alignment_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![1u8; 8192]).unwrap();
        let t = Target::open(
            &p,
            OpenMode {
                write: false,
                direct: false,
                osync: false,
                odsync: false,
            },
        )
        .unwrap();
        assert_eq!(t.kind, PathKind::File);
        assert_eq!(t.size_bytes, 8192);
        assert!(t.dio_offset_align.is_power_of_two());
    }

    #[test]
    fn missing_file_for_reading_says_what_to_do() {
        let e = Target::open(
            Path::new("/nonexistent/zvbench"),
            OpenMode {
                write: false,
                direct: false,
                osync: false,
                odsync: false,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("preceding write pass"), "{e}");
    }
}
