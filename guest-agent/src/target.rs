//! Opening the file or block device a pass runs on: flags, O_DIRECT alignment, size, and
//! a look at what a block device holds before anything writes to it.

use crate::blkid::Signature;
use crate::devstat::StatSource;
use crate::verify::{self, is_block_start};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Block-device ioctls from `<linux/fs.h>`.
mod ioctl {
    nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
    nix::ioctl_read_bad!(blksszget, nix::request_code_none!(0x12, 104), libc::c_int);
    nix::ioctl_none!(blkflsbuf, 0x12, 97);
}
use ioctl::{blkflsbuf, blkgetsize64, blksszget};

/// First bytes of every block the agent writes: how zvbench recognises its own data on a
/// device (see [`classify`]).
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
    /// Open for writing (a block device exclusively; a missing file is made by
    /// [`Created::new_file`] first).
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
    /// A new file could not be created.
    #[error("cannot create {path}{hint}")]
    Create {
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

/// What a file or device holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// Only zero bytes in its first and last MiB, and no signature.
    Empty,
    /// zvbench's data: its first sector is a zvbench block and libblkid finds no signature.
    Zvbench,
    /// Signatures libblkid found: file systems, partition tables, RAID/LVM/ZFS members,
    /// swap, ...
    Signatures(Vec<Signature>),
    /// Non-zero bytes of unknown origin.
    Data,
}

/// A regular file a pass created, removed on drop unless [`Created::keep`] is called: a
/// pass refused after creating its file (a misaligned block size, a file system without
/// O_DIRECT) leaves nothing behind.
#[derive(Debug)]
pub struct Created(Option<PathBuf>);

impl Created {
    /// Creates `path` as a new, empty regular file if nothing is there; an existing path is
    /// left alone (and not removed on drop).
    pub fn new_file(path: &Path) -> Result<Created, TargetError> {
        if std::fs::symlink_metadata(path).is_ok() {
            return Ok(Created(None));
        }
        let hint = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() && !d.is_dir() => {
                ": its directory does not exist; create it first"
            }
            _ => "",
        };
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|source| TargetError::Create {
                path: path.to_owned(),
                hint,
                source,
            })?;
        Ok(Created(Some(path.to_owned())))
    }

    /// Keeps the file: the pass is about to write it.
    pub fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
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
        if mode.write && is_blockdev {
            // Claims the device for the whole pass: the kernel refuses it while it is
            // mounted, swap, held by dm/md/LVM or open exclusively elsewhere, and refuses
            // those to others while the pass runs.
            flags |= libc::O_EXCL;
        }
        let file = open_patiently(
            OpenOptions::new()
                .read(true) // randrw reads what it writes
                .write(mode.write)
                .custom_flags(flags),
            path,
        )
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

/// Classifies what a file or device holds from the signatures libblkid found on it and
/// its first (`head`) and last (`tail`) MiB. A signature wins over everything, zvbench's
/// own header included; then zvbench's data is recognised by an exact first sector
/// ([`is_block_start`]); anything else non-zero is foreign data. Pure, so every rule is
/// tested without a device.
pub fn classify(signatures: Vec<Signature>, head: &[u8], tail: &[u8]) -> Contents {
    if !signatures.is_empty() {
        Contents::Signatures(signatures)
    } else if is_block_start(head) {
        Contents::Zvbench
    } else if head.iter().chain(tail).all(|&b| b == 0) {
        Contents::Empty
    } else {
        Contents::Data
    }
}

/// Asks libblkid what `path` holds and reads its first and last MiB (without O_DIRECT:
/// probing must not need alignment), then [`classify`]s it.
pub fn probe_contents(path: &Path) -> io::Result<Contents> {
    use std::os::unix::fs::FileExt;
    const WINDOW: u64 = 1 << 20;
    let f = File::open(path)?;
    let signatures = crate::blkid::signatures(&f)?;
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
    let mut head = read_at(0, WINDOW.min(size))?;
    if let Some(len) = verify::verified_len(&head).filter(|&l| l > head.len()) {
        head = read_at(0, (len as u64).min(size))?; // a verified block is checked whole
    }
    let tail_off = size.saturating_sub(WINDOW).max(WINDOW.min(size));
    let tail = read_at(tail_off, size - tail_off)?;
    Ok(classify(signatures, &head, &tail))
}

/// Why zvbench will not write a file or device.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Mounted, held, partitioned, swap, a loop device's backing file, or open
    /// exclusively elsewhere: never written, whatever the flags.
    #[error("refusing to write {path}: it is {users}; zvbench never writes a device or file in use, --allow-destroy or not")]
    InUse {
        /// The path as given.
        path: PathBuf,
        /// What uses it, joined with commas.
        users: String,
    },
    /// It holds data zvbench did not write.
    #[error("refusing to write {path}: it holds {found}. If every byte on it may be lost, pass --allow-destroy {path}")]
    Foreign {
        /// The path as given.
        path: PathBuf,
        /// What was found.
        found: String,
    },
    /// What it holds could not be read.
    #[error("refusing to write {path}: what it holds could not be read")]
    Unreadable {
        /// The path as given.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Decides whether zvbench may write `path`. A missing path (a new file) and an empty
/// regular file may be written. Anything in use is refused. Otherwise a file or device
/// may be written only when it holds nothing or zvbench's own data with no signature
/// anywhere — or when the user named it with the destroy flag (`allow_destroy`).
pub fn check_writable(path: &Path, allow_destroy: bool) -> Result<(), Refusal> {
    let unreadable = |source| Refusal::Unreadable {
        path: path.to_owned(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        r => r.map_err(unreadable)?,
    };
    let blockdev = meta.file_type().is_block_device();
    if !blockdev && !meta.is_file() {
        return Ok(()); // Target::open names the kind.
    }
    let canon = std::fs::canonicalize(path).map_err(unreadable)?;
    let users = users_of(&canon, blockdev);
    if !users.is_empty() {
        return Err(Refusal::InUse {
            path: path.to_owned(),
            users: users.join(", "),
        });
    }
    if allow_destroy || (!blockdev && meta.len() == 0) {
        return Ok(());
    }
    let found = match probe_contents(&canon).map_err(unreadable)? {
        Contents::Empty | Contents::Zvbench => return Ok(()),
        Contents::Signatures(s) => {
            let list: Vec<String> = s.iter().map(ToString::to_string).collect();
            format!("signatures libblkid reports: {}", list.join(", "))
        }
        Contents::Data => "data that zvbench did not write".to_string(),
    };
    Err(Refusal::Foreign {
        path: path.to_owned(),
        found,
    })
}

/// Everything that uses the file or device `canon` (a canonical path): for a device its
/// holders, partitions, mounts, swap use and any exclusive opener; for a file swap use and
/// loop devices it backs.
fn users_of(canon: &Path, blockdev: bool) -> Vec<String> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let sys = Path::new("/sys");
    let mut found = swap_users(&read("/proc/swaps"), canon);
    if blockdev {
        found.extend(device_users(sys, &read("/proc/self/mounts"), canon));
        if found.is_empty() {
            if let Err(e) = open_patiently(
                OpenOptions::new().read(true).custom_flags(libc::O_EXCL),
                canon,
            ) {
                found.push(format!("open exclusively by another program ({e})"));
            }
        }
    } else {
        found.extend(loop_users(sys, canon));
    }
    found
}

/// How long an exclusive open waits out another's claim before calling the device in use.
const CLAIM_PATIENCE: Duration = Duration::from_secs(2);

/// Opens `path` with `opts`, retrying while the open fails with EBUSY, for at most
/// [`CLAIM_PATIENCE`]. An exclusive claim on a block device can be momentary and not the
/// user's: udev rereading a partition table after a write claims the disk for the scan,
/// and a multithreaded program's child holds a copy of every descriptor — a just-closed
/// exclusive one included — between its fork and its exec. Mounts, swap and dm/md/LVM
/// holders are found in sysfs before this, and a program that really holds the device
/// (mkfs, a VM) holds it for longer than the wait, so the answer stays "in use" for them.
pub fn open_patiently(opts: &OpenOptions, path: &Path) -> io::Result<File> {
    let give_up = Instant::now() + CLAIM_PATIENCE;
    let mut pause = Duration::from_millis(5);
    loop {
        match opts.open(path) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < give_up => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            r => return r,
        }
    }
}

/// `used as swap` when `/proc/swaps` text lists `canon`.
fn swap_users(swaps: &str, canon: &Path) -> Vec<String> {
    let path = canon.as_os_str().as_bytes();
    swaps
        .lines()
        .skip(1)
        .take(100_000)
        .filter(|l| l.split_ascii_whitespace().next().map(str::as_bytes) == Some(path))
        .map(|_| "used as swap".to_string())
        .collect()
}

/// The loop devices whose backing file is `canon`.
fn loop_users(sys_root: &Path, canon: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(sys_root.join("block")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| {
            std::fs::read(e.path().join("loop/backing_file"))
                .is_ok_and(|b| b.strip_suffix(b"\n").unwrap_or(&b) == canon.as_os_str().as_bytes())
        })
        .map(|e| {
            format!(
                "the backing file of /dev/{}",
                e.file_name().to_string_lossy()
            )
        })
        .collect()
}

/// Whether any partition, holder (LVM, dm, md) or mount uses the block device `name`.
/// Returns what was found, for the refusal message.
fn device_users(sys_root: &Path, mounts: &str, dev_path: &Path) -> Vec<String> {
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
    fn a_signature_wins_over_zvbench_data() {
        let zero = vec![0u8; 1 << 20];
        let mut own = zero.clone();
        crate::verify::fill_random(&mut own[..4096], 1);
        assert_eq!(classify(vec![], &own, &zero), Contents::Zvbench);
        let dos = Signature {
            name: "dos".into(),
            usage: "partition table".into(),
            offset: Some(510),
        };
        assert_eq!(
            classify(vec![dos.clone()], &own, &zero),
            Contents::Signatures(vec![dos.clone()])
        );
        assert_eq!(
            classify(vec![dos.clone()], &zero, &zero),
            Contents::Signatures(vec![dos])
        );
    }

    #[test]
    fn classifies_empty_own_and_foreign_data() {
        let zero = vec![0u8; 1 << 20];
        assert_eq!(classify(vec![], &zero, &zero), Contents::Empty);
        assert_eq!(
            classify(vec![], &with(700_000, b"x"), &zero),
            Contents::Data
        );
        assert_eq!(classify(vec![], &zero, &with(5, b"x")), Contents::Data);
        assert_eq!(classify(vec![], &[], &[]), Contents::Empty);
        // The magic alone is not zvbench's data: the rest of the sector must match.
        assert_eq!(
            classify(vec![], &with(0, BLOCK_MAGIC), &zero),
            Contents::Data
        );
    }

    #[test]
    fn finds_swap_users() {
        let swaps = "Filename\tType\tSize\tUsed\tPriority\n/dev/loop7 partition 100 0 -2\n";
        assert_eq!(
            swap_users(swaps, Path::new("/dev/loop7")),
            vec!["used as swap".to_string()]
        );
        assert!(swap_users(swaps, Path::new("/dev/loop70")).is_empty());
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
