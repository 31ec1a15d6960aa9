//! A host-side write log under a hypervisor's image file, for the power-cut check of a
//! hypervisor without QEMU's `blklogwrites` (VirtualBox): a FUSE passthrough of the one
//! image file, mounted in a private directory (the real file stays where it is). Every
//! write that reaches the file is logged with its data, and every fsync/fdatasync as a
//! flush entry, in completion order, in the dm-log-writes format [`crate::powercut::scan`]
//! reads (the layout of QEMU's `block/blklogwrites.c`: a superblock sector, then per request
//! a header sector and its data, 512-byte sectors). A write is logged after it reached the
//! real file and before its caller sees it complete; a fsync is passed to the real file and
//! logged once that returned, and only then completes. So the log stands where the host's
//! stable storage begins, as `blklogwrites` does: a write is durable only once a flush
//! entry follows it. A write not aligned to 512 bytes is logged as the whole sectors it
//! touches, read back from the real file. `close` (FUSE's flush) makes nothing durable and
//! is not logged. A truncate is applied, not logged (the format has no entry for it).
//!
//! Every open gets `FOPEN_DIRECT_IO`, so the kernel keeps no page cache of its own over
//! the file (an `O_DIRECT` open, as VirtualBox's with the host I/O cache off, works) and
//! every write reaches the log when the caller makes it. A FUSE file is not a block device:
//! a raw-disk VMDK's device cannot be logged this way.

use crate::powercut::{FLUSH, LOG_SECTOR};
use fuser::{
    FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyCreate, ReplyData, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request,
};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

const MAGIC: u64 = 0x006a_7366_7773_6872;
const ROOT: u64 = 1;
const FILE: u64 = 2;
/// Attributes are not cached: the file's size changes with every extending write.
const TTL: Duration = Duration::ZERO;

/// The log file being written: where the next entry goes and how many there are.
struct Log {
    file: File,
    end: u64,
    entries: u64,
}

impl Log {
    /// A new log at `path` (which must not exist) holding only its superblock.
    fn create(path: &Path) -> std::io::Result<Log> {
        let file = File::options().write(true).create_new(true).open(path)?;
        let mut log = Log {
            file,
            end: LOG_SECTOR,
            entries: 0,
        };
        log.superblock()?;
        Ok(log)
    }

    /// Rewrites the superblock with the entry count (as blklogwrites does at a flush).
    fn superblock(&mut self) -> std::io::Result<()> {
        let mut s = vec![0u8; LOG_SECTOR as usize];
        s[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        s[8..16].copy_from_slice(&1u64.to_le_bytes());
        s[16..24].copy_from_slice(&self.entries.to_le_bytes());
        s[24..28].copy_from_slice(&(LOG_SECTOR as u32).to_le_bytes());
        self.file.write_all_at(&s, 0)
    }

    /// Appends one entry: its header sector, then `data` (whole sectors).
    fn append(&mut self, sector: u64, flags: u64, data: &[u8]) -> std::io::Result<()> {
        let mut e = vec![0u8; LOG_SECTOR as usize];
        e[0..8].copy_from_slice(&sector.to_le_bytes());
        e[8..16].copy_from_slice(&(data.len() as u64 / LOG_SECTOR).to_le_bytes());
        e[16..24].copy_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(data);
        self.file.write_all_at(&e, self.end)?;
        self.end += e.len() as u64;
        self.entries += 1;
        Ok(())
    }

    /// Logs the write of `len` bytes at `offset` of `real`, as the whole sectors it
    /// touched, read back from `real` (zeros past its end).
    fn write(&mut self, real: &File, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let start = offset / LOG_SECTOR * LOG_SECTOR;
        let stop = (offset + data.len() as u64).div_ceil(LOG_SECTOR) * LOG_SECTOR;
        if start == offset && stop == offset + data.len() as u64 {
            return self.append(start / LOG_SECTOR, 0, data);
        }
        let mut buf = vec![0u8; (stop - start) as usize];
        read_full(real, &mut buf, start)?;
        self.append(start / LOG_SECTOR, 0, &buf)
    }

    /// Logs a completed flush and rewrites the superblock.
    fn flush(&mut self) -> std::io::Result<()> {
        self.append(0, FLUSH, &[])?;
        self.superblock()
    }
}

/// Reads from `offset` until `buf` is full or the file ends; the bytes read.
fn read_full(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The log, once started: shared between the FUSE thread and [`LoggedFile::start_log`].
type SharedLog = Arc<Mutex<Option<Log>>>;

/// The passthrough file system: a root directory holding one file, `name`, backed by
/// `real`.
struct Passthrough {
    real: PathBuf,
    name: OsString,
    log: SharedLog,
    open: HashMap<u64, File>,
    next_fh: u64,
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

impl Passthrough {
    fn root_attr(&self) -> FileAttr {
        FileAttr {
            ino: ROOT,
            size: 0,
            blocks: 0,
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: FileType::Directory,
            perm: 0o700,
            nlink: 2,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: LOG_SECTOR as u32,
            flags: 0,
        }
    }

    /// The real file's attributes, as the one file's.
    fn file_attr(&self) -> Result<FileAttr, i32> {
        let m = std::fs::metadata(&self.real).map_err(|e| errno(&e))?;
        let t = |s: i64| UNIX_EPOCH + Duration::from_secs(s.max(0) as u64);
        Ok(FileAttr {
            ino: FILE,
            size: m.len(),
            blocks: m.blocks(),
            atime: t(m.atime()),
            mtime: t(m.mtime()),
            ctime: t(m.ctime()),
            crtime: t(m.ctime()),
            kind: FileType::RegularFile,
            perm: (m.mode() & 0o7777) as u16,
            nlink: 1,
            uid: m.uid(),
            gid: m.gid(),
            rdev: 0,
            blksize: m.blksize() as u32,
            flags: 0,
        })
    }

    /// Opens the real file with the access mode and `O_CREAT`/`O_EXCL`/`O_TRUNC` of
    /// `flags` (never `O_DIRECT`: the log, not the real file's cache, is what counts); a
    /// write-only open reads too, for the sectors around an unaligned write.
    fn open_real(&mut self, flags: i32, create: Option<u32>) -> Result<u64, i32> {
        let mut o = File::options();
        o.read(true)
            .write(flags & libc::O_ACCMODE != libc::O_RDONLY);
        if let Some(mode) = create {
            o.mode(mode)
                .create(true)
                .create_new(flags & libc::O_EXCL != 0)
                .write(true);
        }
        o.truncate(flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY);
        let f = o.open(&self.real).map_err(|e| errno(&e))?;
        self.next_fh += 1;
        self.open.insert(self.next_fh, f);
        Ok(self.next_fh)
    }

    fn handle(&self, fh: u64) -> Result<&File, i32> {
        self.open.get(&fh).ok_or(libc::EBADF)
    }

    fn do_write(&self, fh: u64, offset: i64, data: &[u8]) -> Result<u32, i32> {
        let f = self.handle(fh)?;
        let offset = u64::try_from(offset).map_err(|_| libc::EINVAL)?;
        f.write_all_at(data, offset).map_err(|e| errno(&e))?;
        if let Some(log) = self.log.lock().map_err(|_| libc::EIO)?.as_mut() {
            log.write(f, offset, data).map_err(|e| errno(&e))?;
        }
        u32::try_from(data.len()).map_err(|_| libc::EINVAL)
    }

    fn do_fsync(&self, fh: u64, datasync: bool) -> Result<(), i32> {
        let f = self.handle(fh)?;
        if datasync {
            f.sync_data()
        } else {
            f.sync_all()
        }
        .map_err(|e| errno(&e))?;
        if let Some(log) = self.log.lock().map_err(|_| libc::EIO)?.as_mut() {
            log.flush().map_err(|e| errno(&e))?;
        }
        Ok(())
    }
}

impl Filesystem for Passthrough {
    fn lookup(&mut self, _: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        if parent != ROOT || name != self.name {
            return reply.error(libc::ENOENT);
        }
        match self.file_attr() {
            Ok(a) => reply.entry(&TTL, &a, 0),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&mut self, _: &Request<'_>, ino: u64, _: Option<u64>, reply: ReplyAttr) {
        match ino {
            ROOT => reply.attr(&TTL, &self.root_attr()),
            FILE => match self.file_attr() {
                Ok(a) => reply.attr(&TTL, &a),
                Err(e) => reply.error(e),
            },
            _ => reply.error(libc::ENOENT),
        }
    }

    /// Applies a size change (not logged); other attributes stay the real file's.
    fn setattr(
        &mut self,
        _: &Request<'_>,
        ino: u64,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        if ino == ROOT {
            return reply.attr(&TTL, &self.root_attr());
        } else if ino != FILE {
            return reply.error(libc::ENOENT);
        }
        if let Some(s) = size {
            let r = File::options()
                .write(true)
                .open(&self.real)
                .and_then(|f| f.set_len(s));
            if let Err(e) = r {
                return reply.error(errno(&e));
            }
        }
        match self.file_attr() {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &mut self,
        _: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        if parent != ROOT || name != self.name {
            return reply.error(libc::EACCES);
        }
        let r = self
            .open_real(flags, Some(mode & !umask & 0o7777))
            .and_then(|fh| Ok((fh, self.file_attr()?)));
        match r {
            Ok((fh, a)) => reply.created(&TTL, &a, 0, fh, fuser::consts::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn open(&mut self, _: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        if ino != FILE {
            return reply.error(libc::EISDIR);
        }
        match self.open_real(flags, None) {
            Ok(fh) => reply.opened(fh, fuser::consts::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &mut self,
        _: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock: Option<u64>,
        reply: ReplyData,
    ) {
        let r = self.handle(fh).and_then(|f| {
            let mut buf = vec![0u8; size as usize];
            let offset = u64::try_from(offset).map_err(|_| libc::EINVAL)?;
            let n = read_full(f, &mut buf, offset).map_err(|e| errno(&e))?;
            buf.truncate(n);
            Ok(buf)
        });
        match r {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &mut self,
        _: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock: Option<u64>,
        reply: ReplyWrite,
    ) {
        match self.do_write(fh, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    /// `close`: nothing becomes durable.
    fn flush(&mut self, _: &Request<'_>, _ino: u64, _fh: u64, _lock: u64, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &mut self,
        _: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.open.remove(&fh);
        reply.ok();
    }

    fn fsync(&mut self, _: &Request<'_>, _ino: u64, fh: u64, datasync: bool, reply: ReplyEmpty) {
        match self.do_fsync(fh, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&mut self, _: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        if parent != ROOT || name != self.name {
            return reply.error(libc::ENOENT);
        }
        match std::fs::remove_file(&self.real) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }
}

/// One image file seen through the logging passthrough. Dropping it unmounts (lazily if
/// the file is still held open) and removes the mount directory; the log stays.
pub struct LoggedFile {
    dir: PathBuf,
    path: PathBuf,
    log: SharedLog,
    session: Option<fuser::BackgroundSession>,
}

/// Why the logging passthrough could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WriteLogError {
    /// The real file's path has no file name.
    #[error("{0}: not a file path")]
    NoName(PathBuf),
    /// The mount directory could not be made (it must not exist yet).
    #[error("making the write-log mount directory {0}: {1}")]
    Dir(PathBuf, std::io::Error),
    /// The FUSE mount failed.
    #[error("mounting the write-log FUSE file system at {0}: {1} (is /dev/fuse there, and the fuse module loaded?)")]
    Mount(PathBuf, std::io::Error),
    /// The log could not be created.
    #[error("creating the write log {0}: {1}")]
    Log(PathBuf, std::io::Error),
}

/// The file system name of every write-log mount (the first field of its `/proc/mounts`
/// line), by which `zvbench clean` finds one its zvbench left.
pub const FS_NAME: &str = "zvbench-writelog";

impl LoggedFile {
    /// Mounts the passthrough of `real` (which need not exist yet: it may be created
    /// through the mount) at the new directory `dir`. Nothing is logged until
    /// [`LoggedFile::start_log`].
    pub fn mount(real: &Path, dir: &Path) -> Result<LoggedFile, WriteLogError> {
        let name = real
            .file_name()
            .ok_or_else(|| WriteLogError::NoName(real.to_owned()))?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| WriteLogError::Dir(dir.to_owned(), e))?;
        let log = SharedLog::default();
        let fs = Passthrough {
            real: real.to_owned(),
            name: name.to_owned(),
            log: log.clone(),
            open: HashMap::new(),
            next_fh: 0,
        };
        let opts = [MountOption::FSName(FS_NAME.into()), MountOption::AllowOther];
        let session = fuser::spawn_mount2(fs, dir, &opts).map_err(|e| {
            let _ = std::fs::remove_dir(dir);
            WriteLogError::Mount(dir.to_owned(), e)
        })?;
        Ok(LoggedFile {
            path: dir.join(name),
            dir: dir.to_owned(),
            log,
            session: Some(session),
        })
    }

    /// The file's path through the mount: what the hypervisor is given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the log at `log` (it must not exist) and logs every write and flush from
    /// now on.
    pub fn start_log(&self, log: &Path) -> Result<(), WriteLogError> {
        let l = Log::create(log).map_err(|e| WriteLogError::Log(log.to_owned(), e))?;
        *self.log.lock().unwrap_or_else(|p| p.into_inner()) = Some(l);
        Ok(())
    }
}

impl Drop for LoggedFile {
    fn drop(&mut self) {
        if let Ok(c) = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()) {
            // SAFETY: `c` is a valid NUL-terminated path for the calls' duration.
            let busy = unsafe { libc::umount2(c.as_ptr(), 0) } != 0;
            if busy {
                // SAFETY: as above.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        // The session's thread ends when the kernel closes the connection.
        drop(self.session.take());
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::powercut::{scan, Entry, Op, Replay};
    use std::io::Write;

    /// Whether FUSE is here; its absence fails under `ZVBENCH_REQUIRE_PRIVILEGED`.
    fn have_fuse() -> bool {
        let have = Path::new("/dev/fuse").exists();
        assert!(
            have || std::env::var_os("ZVBENCH_REQUIRE_PRIVILEGED").is_none(),
            "/dev/fuse is missing: the write log needs FUSE"
        );
        have
    }

    fn mounted(dir: &Path) -> bool {
        let want = dir.to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/mounts")
            .expect("/proc/mounts")
            .lines()
            .any(|l| l.split(' ').nth(1) == Some(want.as_str()))
    }

    /// Through a real FUSE mount over a real file: a write then fsync is in the log before
    /// the flush, a write after the last flush is lost in the replay, an unaligned write is
    /// logged as the sectors it touched, and nothing stays mounted.
    #[test]
    fn writes_and_fsyncs_are_logged_in_order_and_an_unflushed_write_is_lost() {
        if !have_fuse() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("disk.img");
        std::fs::write(&real, vec![0u8; 8192]).unwrap();
        let base = t.path().join("base.img");
        std::fs::copy(&real, &base).unwrap();
        let (mnt, log) = (t.path().join("mnt"), t.path().join("w.log"));
        let lf = LoggedFile::mount(&real, &mnt).unwrap();
        assert!(mounted(&mnt));
        lf.start_log(&log).unwrap();
        let mut f = File::options()
            .read(true)
            .write(true)
            .open(lf.path())
            .unwrap();
        f.write_all_at(&[0xaa; 512], 1024).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(&[0xbb; 512], 2048).unwrap();
        // Unaligned: logged as the sector 3072..3584, with the real file's bytes around it.
        f.write_all_at(&[0xcc; 10], 3100).unwrap();
        let mut back = [0u8; 512];
        f.read_exact_at(&mut back, 1024).unwrap();
        assert_eq!(back, [0xaa; 512], "reads pass through");
        f.flush().unwrap();
        drop(f);
        drop(lf);
        assert!(!mounted(&mnt), "the mount is gone");
        assert!(!mnt.exists(), "the mount directory is removed");

        let bytes = std::fs::read(&log).unwrap();
        assert_eq!(u64::from_le_bytes(bytes[0..8].try_into().unwrap()), MAGIC);
        assert_eq!(
            u64::from_le_bytes(bytes[16..24].try_into().unwrap()),
            2,
            "superblock count at the flush"
        );
        let entries = scan(&bytes).unwrap();
        let ops: Vec<_> = entries.iter().map(|e| e.op.clone()).collect();
        assert!(matches!(ops[0], Op::Write { offset: 1024, .. }), "{ops:?}");
        assert_eq!(ops[1], Op::Flush);
        assert!(matches!(ops[2], Op::Write { offset: 2048, .. }), "{ops:?}");
        let Op::Write {
            offset: 3072,
            ref data,
            ..
        } = ops[3]
        else {
            panic!("{ops:?}")
        };
        assert_eq!(data.len(), 512);
        assert_eq!(&bytes[data.start + 28..data.start + 38], &[0xcc; 10]);
        assert_eq!(bytes[data.start + 27], 0);
        assert_eq!(ops.len(), 4);
        assert_eq!(
            std::fs::read(&real).unwrap()[2048],
            0xbb,
            "the real file got every write"
        );

        // Power cut at the end of the log: the fsync'd write kept, the later ones lost.
        let mut img = File::options().write(true).open(&base).unwrap();
        Replay::new(&bytes, &entries)
            .cut(bytes.len() as u64, &mut img)
            .unwrap();
        img.flush().unwrap();
        let cut = std::fs::read(&base).unwrap();
        assert_eq!(cut[1024..1536], [0xaa; 512], "flushed write kept");
        assert_eq!(cut[2048..2560], [0u8; 512], "unflushed write lost");
        assert_eq!(cut[3100], 0, "unflushed unaligned write lost");
    }

    /// A file created through the mount lands at the real path and is unlinked there.
    #[test]
    fn a_file_is_created_and_removed_through_the_mount() {
        if !have_fuse() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("new.vdi");
        let mnt = t.path().join("mnt");
        let lf = LoggedFile::mount(&real, &mnt).unwrap();
        assert!(!lf.path().exists());
        // Write-only, unaligned: the layer reads the sector back for the log itself.
        let log = t.path().join("w.log");
        lf.start_log(&log).unwrap();
        std::fs::write(lf.path(), b"x").unwrap();
        assert_eq!(std::fs::read(&real).unwrap(), b"x");
        let entries = scan(&std::fs::read(&log).unwrap()).unwrap();
        assert!(
            matches!(
                entries[..],
                [Entry {
                    op: Op::Write { offset: 0, .. },
                    ..
                }]
            ),
            "{entries:?}"
        );
        std::fs::remove_file(lf.path()).unwrap();
        assert!(!real.exists());
        drop(lf);
        assert!(!mounted(&mnt));
    }
}
