//! I/O engines: how a job's requests reach the kernel. `psync` (pread/pwrite, one at a
//! time), `io_uring` (the `io-uring` crate: raw system calls, so it works in the static
//! agent), and `libaio` (the Linux AIO system calls io_setup/io_submit/io_getevents, for
//! kernels without io_uring or with it disabled). fio's names, so a fio user finds them.
//!
//! An engine owns no buffers: the caller queues requests on memory it keeps alive until
//! their completion comes back, then submits and waits in one call.

use serde::{Deserialize, Serialize};
use std::io;
use std::os::unix::io::RawFd;

/// Which engine a pass asks for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum IoEngine {
    /// psync at iodepth 1; otherwise io_uring where the kernel has it, else libaio.
    #[default]
    Auto,
    /// pread(2)/pwrite(2), one request at a time (iodepth 1 only).
    Psync,
    /// io_uring(7).
    #[value(name = "io_uring")]
    IoUring,
    /// Linux native AIO (asynchronous only with O_DIRECT, as with fio's libaio).
    Libaio,
}

/// One request: `len` bytes at `buf` to or from byte `off`; `slot` comes back with its
/// completion.
#[derive(Debug, Clone, Copy)]
pub struct Req {
    /// The caller's tag.
    pub slot: usize,
    /// Write (`true`) or read.
    pub write: bool,
    /// Byte offset in the file.
    pub off: u64,
    /// The buffer: valid for `len` bytes until the request completes.
    pub buf: *mut u8,
    /// Bytes.
    pub len: usize,
}

/// A completion: the request's slot and its result (bytes moved, or the error).
pub type Done = (usize, io::Result<usize>);

/// An engine at a fixed queue depth.
pub trait Engine {
    /// The engine's name as recorded: `psync`, `io_uring` or `libaio`.
    fn name(&self) -> &'static str;
    /// Queues a request; it is submitted by the next [`Engine::submit`] or
    /// [`Engine::submit_wait`]. At most the queue depth may be queued or in flight.
    ///
    /// # Safety
    /// `req.buf` must be valid for `req.len` bytes, and not otherwise used, until the
    /// request's completion is returned.
    unsafe fn queue(&mut self, req: Req);
    /// Submits what is queued and waits until at least `min` requests complete (at most
    /// what is in flight), appending completions to `out`.
    fn submit_wait(&mut self, min: usize, out: &mut Vec<Done>) -> io::Result<()>;
    /// Submits what is queued without waiting for completions (psync, which has nothing
    /// asynchronous to start, does it all in [`Engine::submit_wait`]).
    fn submit(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Opens the engine `choice` for `fd` at depth `qd`.
pub fn open(choice: IoEngine, fd: RawFd, qd: u32) -> io::Result<Box<dyn Engine + Send>> {
    match choice {
        IoEngine::Psync => Ok(Box::new(Psync::new(fd))),
        IoEngine::IoUring => Ok(Box::new(Uring::new(fd, qd)?)),
        IoEngine::Libaio => Ok(Box::new(Aio::new(fd, qd)?)),
        IoEngine::Auto if qd <= 1 => Ok(Box::new(Psync::new(fd))),
        IoEngine::Auto => match Uring::new(fd, qd) {
            Ok(u) => Ok(Box::new(u)),
            Err(_) => Ok(Box::new(Aio::new(fd, qd)?)),
        },
    }
}

fn short(what: &str, got: usize, want: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("short {what}: {got} of {want} bytes"),
    )
}

/// A completion's result: the whole request, or an error.
fn whole(r: i64, req_len: usize, write: bool) -> io::Result<usize> {
    if r < 0 {
        return Err(io::Error::from_raw_os_error((-r) as i32));
    }
    let got = r as usize;
    if got != req_len {
        return Err(short(if write { "write" } else { "read" }, got, req_len));
    }
    Ok(got)
}

/// pread/pwrite.
struct Psync {
    fd: RawFd,
    queued: Vec<Req>,
}

impl Psync {
    fn new(fd: RawFd) -> Psync {
        Psync {
            fd,
            queued: Vec::with_capacity(1),
        }
    }

    fn one(&self, r: &Req) -> io::Result<usize> {
        let mut done = 0usize;
        while done < r.len {
            // SAFETY: the caller of `queue` keeps `buf` valid for `len` bytes until this
            // completion is returned; fd is open for the engine's life.
            let n = unsafe {
                let p = r.buf.add(done).cast::<libc::c_void>();
                // Offsets are below the target's size, itself below i64::MAX.
                let off: libc::off_t = (r.off + done as u64).cast_signed();
                if r.write {
                    libc::pwrite(self.fd, p, r.len - done, off)
                } else {
                    libc::pread(self.fd, p, r.len - done, off)
                }
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(short(if r.write { "write" } else { "read" }, done, r.len));
            }
            done += n as usize;
        }
        Ok(done)
    }
}

impl Engine for Psync {
    fn name(&self) -> &'static str {
        "psync"
    }
    unsafe fn queue(&mut self, req: Req) {
        self.queued.push(req);
    }
    fn submit_wait(&mut self, _min: usize, out: &mut Vec<Done>) -> io::Result<()> {
        for i in 0..self.queued.len() {
            let r = self.queued[i];
            out.push((r.slot, self.one(&r)));
        }
        self.queued.clear();
        Ok(())
    }
}

/// io_uring through the `io-uring` crate.
struct Uring {
    fd: RawFd,
    ring: io_uring::IoUring,
    /// Each slot's length and direction, to check its completion.
    meta: Vec<(usize, bool)>,
    /// Made disabled (its issuer is the job's thread, which enables it on first use).
    disabled: bool,
}

impl Uring {
    /// A ring as fio sets one up on kernels that have it (6.1+): one issuer, completions
    /// run when that task waits (DEFER_TASKRUN) instead of interrupting it — in a VM that
    /// saves an interrupt per request (seen: random 4K QD1 a quarter slower without).
    /// Made disabled because the job's thread, not this one, is the issuer. Older kernels
    /// refuse the flags: a plain ring then.
    fn new(fd: RawFd, qd: u32) -> io::Result<Uring> {
        let entries = qd.max(1).next_power_of_two();
        let (ring, disabled) = match io_uring::IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_r_disabled()
            .build(entries)
        {
            Ok(r) => (r, true),
            Err(_) => (io_uring::IoUring::new(entries)?, false),
        };
        Ok(Uring {
            fd,
            ring,
            meta: vec![(0, false); qd.max(1) as usize],
            disabled,
        })
    }

    /// Submits what is queued and waits for `min` completions. Always with GETEVENTS, as
    /// fio does: that runs the deferred completion work (DEFER_TASKRUN), so completions
    /// reach the ring while requests are submitted one by one.
    fn enter(&mut self, min: usize) -> io::Result<()> {
        if self.disabled {
            self.ring.submitter().register_enable_rings()?;
            self.disabled = false;
        }
        loop {
            let n = self.ring.submission().len();
            // SAFETY: no signal mask argument.
            let r = unsafe {
                self.ring.submitter().enter::<libc::sigset_t>(
                    n as u32,
                    min as u32,
                    io_uring::EnterFlags::GETEVENTS.bits(),
                    None,
                )
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => r?,
            };
            return Ok(());
        }
    }

    /// Appends the completions in the ring to `out`.
    fn reap(&mut self, out: &mut Vec<Done>) {
        for c in self.ring.completion() {
            let slot = c.user_data() as usize;
            let (len, write) = self.meta[slot];
            out.push((slot, whole(i64::from(c.result()), len, write)));
        }
    }
}

impl Engine for Uring {
    fn name(&self) -> &'static str {
        "io_uring"
    }
    unsafe fn queue(&mut self, r: Req) {
        use io_uring::{opcode, types::Fd};
        let e = if r.write {
            opcode::Write::new(Fd(self.fd), r.buf, r.len as u32)
                .offset(r.off)
                .build()
        } else {
            opcode::Read::new(Fd(self.fd), r.buf, r.len as u32)
                .offset(r.off)
                .build()
        };
        self.meta[r.slot] = (r.len, r.write);
        // SAFETY: the caller keeps the buffer valid until completion (this fn's contract);
        // the ring has room for the queue depth, which the caller never exceeds.
        let pushed = unsafe { self.ring.submission().push(&e.user_data(r.slot as u64)) };
        debug_assert!(pushed.is_ok(), "more requests than the queue depth");
    }
    fn submit(&mut self) -> io::Result<()> {
        self.enter(0)
    }
    fn submit_wait(&mut self, min: usize, out: &mut Vec<Done>) -> io::Result<()> {
        // Completions already in the ring (posted by an earlier submit) are taken without
        // a system call, as fio's getevents does; the kernel is entered only to submit or
        // to wait for the rest of `min`.
        let before = out.len();
        self.reap(out);
        if out.len() - before >= min && self.ring.submission().is_empty() {
            return Ok(());
        }
        self.enter(min - (out.len() - before).min(min))?;
        self.reap(out);
        Ok(())
    }
}

/// `struct iocb` from `<linux/aio_abi.h>` (x86_64, little endian).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Iocb {
    aio_data: u64,
    aio_key: u32,
    aio_rw_flags: i32,
    aio_lio_opcode: u16,
    aio_reqprio: i16,
    aio_fildes: u32,
    aio_buf: u64,
    aio_nbytes: u64,
    aio_offset: i64,
    aio_reserved2: u64,
    aio_flags: u32,
    aio_resfd: u32,
}

/// `struct io_event`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

const IOCB_CMD_PREAD: u16 = 0;
const IOCB_CMD_PWRITE: u16 = 1;

/// Linux native AIO through its system calls.
struct Aio {
    ctx: libc::c_ulong,
    fd: RawFd,
    queued: Vec<Iocb>,
    ptrs: Vec<*mut Iocb>,
    events: Vec<IoEvent>,
    in_flight: usize,
    /// Each slot's length, to check its completion.
    lens: Vec<usize>,
}

// SAFETY: the raw pointers only point into `queued`, owned by the same value, or at the
// caller's buffers, whose validity the `queue` contract covers on any thread.
unsafe impl Send for Aio {}
// SAFETY: as for Aio: queued requests point at the caller's buffers only.
unsafe impl Send for Psync {}
// SAFETY: Uring holds only its ring and plain data; the buffers it points the kernel at
// belong to the caller, whose contract covers them.
unsafe impl Send for Uring {}

impl Aio {
    fn new(fd: RawFd, qd: u32) -> io::Result<Aio> {
        let mut ctx: libc::c_ulong = 0;
        // SAFETY: io_setup writes the context id into `ctx`, a valid location.
        let r = unsafe { libc::syscall(libc::SYS_io_setup, qd.max(1) as libc::c_long, &mut ctx) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = qd.max(1) as usize;
        Ok(Aio {
            ctx,
            fd,
            queued: Vec::with_capacity(n),
            ptrs: Vec::with_capacity(n),
            events: vec![IoEvent::default(); n],
            in_flight: 0,
            lens: vec![0; n],
        })
    }
}

impl Drop for Aio {
    fn drop(&mut self) {
        // SAFETY: ctx came from io_setup and is destroyed once.
        unsafe { libc::syscall(libc::SYS_io_destroy, self.ctx) };
    }
}

impl Engine for Aio {
    fn name(&self) -> &'static str {
        "libaio"
    }
    unsafe fn queue(&mut self, r: Req) {
        self.lens[r.slot] = r.len;
        self.queued.push(Iocb {
            aio_data: ((r.slot as u64) << 1) | u64::from(r.write),
            aio_lio_opcode: if r.write {
                IOCB_CMD_PWRITE
            } else {
                IOCB_CMD_PREAD
            },
            aio_fildes: self.fd as u32,
            aio_buf: r.buf as u64,
            aio_nbytes: r.len as u64,
            aio_offset: r.off.cast_signed(),
            ..Iocb::default()
        });
    }
    fn submit(&mut self) -> io::Result<()> {
        self.ptrs.clear();
        self.ptrs
            .extend(self.queued.iter_mut().map(|c| c as *mut Iocb));
        let mut sent = 0;
        while sent < self.ptrs.len() {
            // SAFETY: ptrs point at live iocbs in `queued`; the kernel copies them.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_io_submit,
                    self.ctx,
                    libc::c_long::try_from(self.ptrs.len() - sent).unwrap_or(libc::c_long::MAX),
                    self.ptrs.as_mut_ptr().add(sent),
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            sent += r as usize;
        }
        self.in_flight += sent;
        self.queued.clear();
        Ok(())
    }
    fn submit_wait(&mut self, min: usize, out: &mut Vec<Done>) -> io::Result<()> {
        self.submit()?;
        let min = min.min(self.in_flight);
        let mut got = 0usize;
        while got < min.max(1) && self.in_flight > 0 {
            // SAFETY: events has room for its length; a null timeout waits.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_io_getevents,
                    self.ctx,
                    1 as libc::c_long,
                    libc::c_long::try_from(self.events.len()).unwrap_or(libc::c_long::MAX),
                    self.events.as_mut_ptr(),
                    std::ptr::null_mut::<libc::timespec>(),
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in &self.events[..r as usize] {
                let slot = (ev.data >> 1) as usize;
                let write = ev.data & 1 == 1;
                out.push((slot, whole(ev.res, self.lens[slot], write)));
            }
            got += r as usize;
            self.in_flight -= r as usize;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aligned::AlignedBuf;
    use std::os::unix::io::AsRawFd;

    /// A new empty file `f` in `dir`, open for reading and writing.
    fn scratch(dir: &tempfile::TempDir) -> std::fs::File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("f"))
            .unwrap()
    }

    /// Queues one request of `buf`'s length at offset 0 in slot `slot`.
    fn queue_one(e: &mut dyn Engine, buf: &mut AlignedBuf, slot: usize, write: bool) {
        let len = buf.as_slice().len();
        let req = Req {
            slot,
            write,
            off: 0,
            buf: buf.as_mut_slice().as_mut_ptr(),
            len,
        };
        // SAFETY: every caller keeps buf alive until the completion is awaited.
        unsafe { e.queue(req) };
    }

    /// Writes four blocks at depth 4 and reads them back through `choice`.
    fn round_trip(choice: IoEngine) {
        let dir = tempfile::tempdir().unwrap();
        let f = scratch(&dir);
        let qd = if choice == IoEngine::Psync { 1 } else { 4 };
        let mut e = open(choice, f.as_raw_fd(), qd).unwrap();
        let mut buf = AlignedBuf::new(4 * 4096, 4096).unwrap();
        for (i, b) in buf.as_mut_slice().chunks_mut(4096).enumerate() {
            b.fill(i as u8 + 1);
        }
        let base = buf.as_mut_slice().as_mut_ptr();
        let mut out = Vec::new();
        for write in [true, false] {
            if !write {
                buf.as_mut_slice().fill(0);
            }
            for i in 0..4usize {
                let req = Req {
                    slot: i,
                    write,
                    off: (3 - i as u64) * 4096,
                    // SAFETY: inside the 16 KiB buffer.
                    buf: unsafe { base.add(i * 4096) },
                    len: 4096,
                };
                // SAFETY: buf outlives the completions, awaited below.
                unsafe { e.queue(req) };
                if qd == 1 {
                    e.submit_wait(1, &mut out).unwrap();
                }
            }
            while out.len() < 4 {
                e.submit_wait(1, &mut out).unwrap();
            }
            let mut slots: Vec<usize> = out
                .drain(..)
                .map(|(s, r)| {
                    assert_eq!(r.unwrap(), 4096);
                    s
                })
                .collect();
            slots.sort();
            assert_eq!(slots, [0, 1, 2, 3]);
        }
        for (i, b) in buf.as_slice().chunks(4096).enumerate() {
            assert!(
                b.iter().all(|&x| x == i as u8 + 1),
                "{} block {i}",
                e.name()
            );
        }
        assert_eq!(
            std::fs::metadata(dir.path().join("f")).unwrap().len(),
            4 * 4096
        );
    }

    #[test]
    fn psync_round_trip() {
        round_trip(IoEngine::Psync);
    }

    #[test]
    fn io_uring_round_trip() {
        round_trip(IoEngine::IoUring);
    }

    #[test]
    fn libaio_round_trip() {
        round_trip(IoEngine::Libaio);
    }

    /// A request passed to `submit` reaches the file before anyone waits for it, and its
    /// completion is then taken by `submit_wait`.
    fn submit_starts_without_waiting(choice: IoEngine) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = scratch(&dir);
        let mut e = open(choice, f.as_raw_fd(), 2).unwrap();
        let mut buf = AlignedBuf::new(4096, 4096).unwrap();
        buf.as_mut_slice().fill(7);
        queue_one(e.as_mut(), &mut buf, 1, true);
        e.submit().unwrap();
        let t0 = std::time::Instant::now();
        while std::fs::read(&path).unwrap() != [7u8; 4096] {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(10),
                "{}: the submitted write never reached the file",
                e.name()
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut out = Vec::new();
        e.submit_wait(1, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0, out[0].1.as_ref().unwrap()), (1, &4096));
    }

    #[test]
    fn io_uring_submit_starts_without_waiting() {
        submit_starts_without_waiting(IoEngine::IoUring);
    }

    #[test]
    fn libaio_submit_starts_without_waiting() {
        submit_starts_without_waiting(IoEngine::Libaio);
    }

    #[test]
    fn auto_picks_psync_at_depth_one_and_async_above() {
        let f = tempfile::tempfile().unwrap();
        assert_eq!(
            open(IoEngine::Auto, f.as_raw_fd(), 1).unwrap().name(),
            "psync"
        );
        let name = open(IoEngine::Auto, f.as_raw_fd(), 8).unwrap().name();
        assert!(name == "io_uring" || name == "libaio", "{name}");
    }

    #[test]
    fn read_past_end_is_a_short_read_error() {
        let f = tempfile::tempfile().unwrap();
        let mut e = open(IoEngine::IoUring, f.as_raw_fd(), 2).unwrap();
        let mut buf = AlignedBuf::new(4096, 4096).unwrap();
        queue_one(e.as_mut(), &mut buf, 0, false);
        let mut out = Vec::new();
        e.submit_wait(1, &mut out).unwrap();
        assert!(out[0].1.is_err());
    }
}
