//! What libblkid finds on a file or block device: every file system, partition table,
//! RAID/LVM/ZFS member, swap area and other signature it knows, wherever it lives (GPT's
//! backup header at the end, superblocks at 1 KiB or 64 KiB, ZFS labels at both ends).
//!
//! libblkid is what `wipefs` and `mkfs` trust, so zvbench asks it rather than keep a list
//! of its own. The probe is the one `wipefs` makes: superblocks with bad checksums too,
//! partition tables with GPT forced (found even without a protective MBR), every match in
//! turn. libblkid is linked statically (Debian `libblkid-dev`; see `build.rs`), so the
//! static agent carries it into guests.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// The C API used here, from `<blkid/blkid.h>` (util-linux 2.38).
mod ffi {
    use super::*;

    /// `blkid_probe`, an opaque pointer.
    pub type Probe = *mut c_void;
    /// `BLKID_SUBLKS_TYPE`: define TYPE.
    pub const SUBLKS_TYPE: c_int = 1 << 5;
    /// `BLKID_SUBLKS_USAGE`: define USAGE (filesystem, raid, crypto, other).
    pub const SUBLKS_USAGE: c_int = 1 << 7;
    /// `BLKID_SUBLKS_MAGIC`: define SBMAGIC_OFFSET.
    pub const SUBLKS_MAGIC: c_int = 1 << 9;
    /// `BLKID_SUBLKS_BADCSUM`: report a superblock whose checksum is wrong.
    pub const SUBLKS_BADCSUM: c_int = 1 << 10;
    /// `BLKID_PARTS_FORCE_GPT`: look for GPT headers even without a protective MBR.
    pub const PARTS_FORCE_GPT: c_int = 1 << 1;
    /// `BLKID_PARTS_MAGIC`: define PTMAGIC_OFFSET.
    pub const PARTS_MAGIC: c_int = 1 << 3;

    #[link(name = "blkid", kind = "static")]
    extern "C" {
        pub fn blkid_new_probe() -> Probe;
        pub fn blkid_free_probe(pr: Probe);
        pub fn blkid_probe_set_device(pr: Probe, fd: c_int, off: i64, size: i64) -> c_int;
        pub fn blkid_probe_enable_superblocks(pr: Probe, enable: c_int) -> c_int;
        pub fn blkid_probe_set_superblocks_flags(pr: Probe, flags: c_int) -> c_int;
        pub fn blkid_probe_enable_partitions(pr: Probe, enable: c_int) -> c_int;
        pub fn blkid_probe_set_partitions_flags(pr: Probe, flags: c_int) -> c_int;
        pub fn blkid_do_probe(pr: Probe) -> c_int;
        pub fn blkid_probe_lookup_value(
            pr: Probe,
            name: *const c_char,
            data: *mut *const c_char,
            len: *mut usize,
        ) -> c_int;
    }
}

/// One signature libblkid found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// libblkid's name: `TYPE` of a superblock (`ext4`, `swap`, `LVM2_member`,
    /// `zfs_member`, `linux_raid_member`, ...) or `PTTYPE` of a partition table (`dos`,
    /// `gpt`, ...).
    pub name: String,
    /// `filesystem`, `raid`, `crypto`, `other`, or `partition table`.
    pub usage: String,
    /// Byte offset of the magic libblkid matched, when it says.
    pub offset: Option<u64>,
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.usage)?;
        if let Some(o) = self.offset {
            write!(f, " at byte {o}")?;
        }
        Ok(())
    }
}

/// More signatures than any real device holds: a bound on the probe loop.
const MAX_SIGNATURES: usize = 64;

/// A probe over an open file, freed on drop.
struct Probe(ffi::Probe);

impl Drop for Probe {
    fn drop(&mut self) {
        // SAFETY: the pointer came from blkid_new_probe, is non-null and is freed once.
        unsafe { ffi::blkid_free_probe(self.0) }
    }
}

impl Probe {
    /// The value of `name` from the last successful `blkid_do_probe`, copied.
    fn value(&self, name: &CStr) -> Option<String> {
        let mut data: *const c_char = std::ptr::null();
        // SAFETY: the probe is valid, name is NUL-terminated, data is a valid out-pointer
        // and len may be null.
        let rc = unsafe {
            ffi::blkid_probe_lookup_value(self.0, name.as_ptr(), &mut data, std::ptr::null_mut())
        };
        if rc != 0 || data.is_null() {
            return None;
        }
        // SAFETY: libblkid returns a NUL-terminated string it owns until the next probe
        // call; it is copied before that.
        Some(
            unsafe { CStr::from_ptr(data) }
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// Every signature libblkid finds on the open `file` (a regular file or block device).
pub fn signatures(file: &File) -> io::Result<Vec<Signature>> {
    // SAFETY: blkid_new_probe takes no argument and returns null on allocation failure.
    let raw = unsafe { ffi::blkid_new_probe() };
    if raw.is_null() {
        return Err(io::Error::other("libblkid could not allocate a probe"));
    }
    let pr = Probe(raw);
    let fail = |what: &str| io::Error::other(format!("libblkid {what} failed"));
    // SAFETY: the probe is valid and the fd stays open (borrowed from `file`) until the
    // probe is freed at the end of this function; off 0, size 0 = the whole file.
    if unsafe { ffi::blkid_probe_set_device(pr.0, file.as_raw_fd(), 0, 0) } != 0 {
        return Err(fail("blkid_probe_set_device"));
    }
    // SAFETY: the probe is valid; these only set flags on it.
    let rc = unsafe {
        ffi::blkid_probe_enable_superblocks(pr.0, 1)
            | ffi::blkid_probe_set_superblocks_flags(
                pr.0,
                ffi::SUBLKS_TYPE | ffi::SUBLKS_USAGE | ffi::SUBLKS_MAGIC | ffi::SUBLKS_BADCSUM,
            )
            | ffi::blkid_probe_enable_partitions(pr.0, 1)
            | ffi::blkid_probe_set_partitions_flags(pr.0, ffi::PARTS_MAGIC | ffi::PARTS_FORCE_GPT)
    };
    if rc != 0 {
        return Err(fail("probe setup"));
    }
    let mut found = Vec::new();
    while found.len() < MAX_SIGNATURES {
        // SAFETY: the probe is valid. 0 = found one, 1 = nothing more, negative = error.
        match unsafe { ffi::blkid_do_probe(pr.0) } {
            0 => {}
            1 => break,
            _ => {
                let e = io::Error::last_os_error();
                return Err(match e.raw_os_error() {
                    Some(n) if n != 0 => e,
                    _ => fail("blkid_do_probe"),
                });
            }
        }
        let offset = |key: &CStr| pr.value(key).and_then(|v| v.parse().ok());
        if let Some(name) = pr.value(c"TYPE") {
            found.push(Signature {
                name,
                usage: pr.value(c"USAGE").unwrap_or_else(|| "other".into()),
                offset: offset(c"SBMAGIC_OFFSET"),
            });
        } else if let Some(name) = pr.value(c"PTTYPE") {
            found.push(Signature {
                name,
                usage: "partition table".into(),
                offset: offset(c"PTMAGIC_OFFSET"),
            });
        }
    }
    Ok(found)
}

/// [`signatures`] of the file or device at `path`, opened read-only.
pub fn signatures_at(path: &Path) -> io::Result<Vec<Signature>> {
    signatures(&File::open(path)?)
}
