//! Loop devices held by identity, not by name. A loop device's name is reused the moment it
//! is detached, so a name alone can point at someone else's file a second later. A
//! [`LoopBinding`] remembers the backing file's device and inode and checks them (with
//! `LOOP_GET_STATUS64` on an open descriptor) before every use and before detaching, on the
//! same descriptor the detach then uses.

use crate::cmd::Argv;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `LOOP_CLR_FD` (`linux/loop.h`).
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
/// `LOOP_GET_STATUS64` (`linux/loop.h`).
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;

/// `struct loop_info64` (`linux/loop.h`).
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// The file system device (major, minor) and inode a loop device's backing file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    /// Major number of the file system's device.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Inode.
    pub ino: u64,
}

impl FileId {
    /// The identity of the file at `path`.
    pub fn of(path: &Path) -> std::io::Result<FileId> {
        let m = std::fs::metadata(path)?;
        Ok(FileId {
            major: libc::major(m.dev()),
            minor: libc::minor(m.dev()),
            ino: m.ino(),
        })
    }
}

/// What the kernel says `fd` (an open loop device) is bound to; `None` when it is free.
fn bound_to(fd: &File) -> std::io::Result<Option<FileId>> {
    // SAFETY: LoopInfo64 is plain old data; all-zero is a valid value.
    let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is open for the call's duration; LOOP_GET_STATUS64 writes one
    // struct loop_info64, which `info` is.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), LOOP_GET_STATUS64, &mut info) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENXIO) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    // The kernel's huge_encode_dev: minor's low byte, major, then minor's high bits.
    let d = info.lo_device;
    Ok(Some(FileId {
        major: ((d >> 8) & 0xfff) as u32,
        minor: ((d & 0xff) | ((d >> 12) & 0xfff00)) as u32,
        ino: info.lo_inode,
    }))
}

/// A loop device zvbench attached, with the identity of its backing file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopBinding {
    /// `/dev/loopN`.
    pub device: PathBuf,
    /// The backing file as attached.
    pub backing: PathBuf,
    /// Its identity.
    pub file: FileId,
}

impl LoopBinding {
    /// Attaches `backing` with `losetup --find --show`.
    pub fn attach(backing: &Path) -> Result<LoopBinding> {
        let file = FileId::of(backing).with_context(|| format!("stat {}", backing.display()))?;
        let out = Argv::new([
            "losetup".as_ref(),
            "--find".as_ref(),
            "--show".as_ref(),
            backing.as_os_str(),
        ])
        .stdout()?;
        Ok(LoopBinding {
            device: PathBuf::from(out.trim()),
            backing: backing.to_owned(),
            file,
        })
    }

    /// Opens the device and checks it still backs the same file; the open descriptor is
    /// returned so that what follows acts on what was checked.
    fn open_checked(&self) -> Result<File> {
        let fd =
            File::open(&self.device).with_context(|| format!("open {}", self.device.display()))?;
        match bound_to(&fd).with_context(|| format!("LOOP_GET_STATUS64 {}", self.device.display()))? {
            Some(id) if id == self.file => Ok(fd),
            Some(_) => bail!(
                "{} no longer backs {}: another program attached it to another file; zvbench leaves it alone",
                self.device.display(),
                self.backing.display()
            ),
            None => bail!(
                "{} was detached by another program (it backed {})",
                self.device.display(),
                self.backing.display()
            ),
        }
    }

    /// Fails unless the device still backs the file zvbench attached.
    pub fn check(&self) -> Result<()> {
        self.open_checked().map(drop)
    }

    /// Detaches the device if, and only if, it still backs the file zvbench attached.
    pub fn detach(&self) -> Result<()> {
        let fd = self.open_checked()?;
        // SAFETY: the fd is open; LOOP_CLR_FD takes no argument.
        if unsafe { libc::ioctl(fd.as_raw_fd(), LOOP_CLR_FD, 0) } < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("detach {}", self.device.display()));
        }
        Ok(())
    }
}

/// Loop devices whose backing file is `file` now (same device and inode), as bindings.
pub fn backing(file: &Path) -> Vec<LoopBinding> {
    let Ok(id) = FileId::of(file) else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .filter_map(|e| {
            let device = Path::new("/dev").join(e.file_name());
            let fd = File::open(&device).ok()?;
            (bound_to(&fd).ok()?? == id).then(|| LoopBinding {
                device,
                backing: file.to_owned(),
                file: id,
            })
        })
        .collect()
}
