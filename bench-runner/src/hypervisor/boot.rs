//! One guest boot through any hypervisor: the interface a hypervisor implements
//! ([`Hypervisor`] prepares and starts a VM, [`Vm`] is the running one) and the one frame
//! loop that drives it ([`run`]).
//!
//! What differs between hypervisors is a capability of the interface, with a default for
//! those that lack it (as cloud-hypervisor's block backends do): a two-way frame channel
//! that acknowledges each phase mark ([`Vm::ack`], QEMU) or a guest that pauses instead
//! ([`Handshake::Pause`], VirtualBox's file-mode serial port); the hypervisor's own disk
//! counters ([`Vm::counters`]); a host I/O error it reports ([`Vm::disk_error`]); why a
//! VM that went away did ([`Vm::cause`]); the boot medium ([`Hypervisor::boot`]). The loop
//! is tested against an in-process fake (as hyperfine tests its scheduler against a
//! `MockExecutor`): no process, no file but the session's log.

use crate::guest::kernel::GuestKernel;
use crate::guest::{
    build_initramfs, console_tail, BlockStats, GuestPass, Handshake, Session, Snapshot, Step,
    APPEND,
};
use crate::host::zfs::{PoolVdevs, ZilSource};
use crate::hypervisor::qemu::Accel;
use crate::scenario::{Boot, GuestConfig};
use crate::Interrupt;
use anyhow::{anyhow, bail, Result};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zvbench_agent::devstat::StatSource;
use zvbench_agent::pass::PassSpec;

/// The counters of the layers below the hypervisor: the host device, the ZIL, the pool's
/// leaf vdevs under a zvol; each `None` where the target has no such layer.
#[derive(Clone, Copy, Default)]
pub struct Below<'a> {
    /// Host device counters.
    pub host_stat: Option<&'a StatSource>,
    /// ZIL counter.
    pub zil: Option<&'a ZilSource>,
    /// The pool's leaf vdevs under a zvol.
    pub vdevs: Option<&'a PoolVdevs>,
}

impl Below<'_> {
    /// Reads the host device, ZIL and pool vdev counters (the pool synced first:
    /// [`PoolVdevs::sync_and_read`]), with the hypervisor's `hv`.
    pub fn read(&self, hv: Option<BlockStats>) -> Snapshot {
        Snapshot {
            hv,
            host: self.host_stat.and_then(|s| s.read().ok()),
            zil: self.zil.and_then(ZilSource::read),
            vdev: self.vdevs.and_then(PoolVdevs::sync_and_read),
        }
    }
}

/// What every guest boot has, whatever the hypervisor.
pub struct Guest<'a> {
    /// Settings.
    pub cfg: &'a GuestConfig,
    /// Kernel and modules.
    pub kernel: &'a GuestKernel,
    /// The static agent binary.
    pub agent: &'a Path,
    /// The counters below the hypervisor.
    pub below: Below<'a>,
    /// Directory for logs, sockets, the boot medium and the VM's files.
    pub work: PathBuf,
    /// Longest the guest may run.
    pub timeout: Duration,
    /// The VM's name, with the run id ([`crate::hypervisor::vm_name`]).
    pub name: String,
}

impl Guest<'_> {
    /// The guest's console log (ttyS0): in error messages.
    pub fn console(&self) -> PathBuf {
        self.work.join("console.log")
    }
}

/// The boot medium a hypervisor is given, written in the boot's work directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Medium {
    /// Direct kernel boot: the kernel image, this initramfs and [`APPEND`].
    Kernel {
        /// The initramfs file.
        initrd: PathBuf,
    },
    /// A guest ISO (ISOLINUX loads the kernel and initramfs with [`APPEND`]).
    Iso(PathBuf),
}

impl Medium {
    /// Writes the medium `boot` names for `initramfs` into `work`.
    pub fn write(
        boot: Boot,
        work: &Path,
        kernel: &GuestKernel,
        initramfs: &[u8],
    ) -> Result<Medium> {
        Ok(match boot {
            Boot::Kernel => {
                let initrd = work.join("initramfs.cpio.gz");
                std::fs::write(&initrd, initramfs)?;
                Medium::Kernel { initrd }
            }
            Boot::Iso => {
                let iso = work.join("zvbench-guest.iso");
                crate::guest::iso::build(&kernel.image, initramfs, APPEND, &iso)?;
                Medium::Iso(iso)
            }
        })
    }
}

/// What one poll of the frame channel found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// This many bytes, at the start of the buffer.
    Bytes(usize),
    /// Nothing yet (the poll waited a little itself).
    Idle,
    /// The VM is gone; the words say how, for the error.
    Ended(&'static str),
}

/// A hypervisor, configured for one target: prepares and starts its VM.
pub trait Hypervisor {
    /// How the agent waits at each phase mark.
    fn handshake(&self) -> Handshake;

    /// The boot medium this hypervisor boots a guest with settings `cfg` from.
    fn boot(&self, cfg: &GuestConfig) -> Boot;

    /// The log of every write and flush that reaches the disk, for a power-cut check
    /// (QEMU's `blklogwrites`, VirtualBox's [`crate::writelog`]); `None` where the
    /// hypervisor has none.
    fn write_log(&self) -> Option<&Path> {
        None
    }

    /// The accelerator, for results; `None` where the hypervisor has no choice of one.
    fn accel(&self) -> Option<Accel> {
        None
    }

    /// The disk's cache setting of a guest with `cfg`, as results name it.
    fn cache(&self, cfg: &GuestConfig) -> String;

    /// Whether the hypervisor's counters time its flushes
    /// ([`BlockStats::flush_total_time_ns`]).
    fn flush_time(&self) -> bool {
        false
    }

    /// The hypervisor's effective settings for a guest with `cfg`, for `run.json` and
    /// the report (VirtualBox's flush path and extradata).
    fn settings(&self, _cfg: &GuestConfig) -> Result<Option<serde_json::Value>> {
        Ok(None)
    }

    /// The line of the VM's own log, kept in `work`, saying the hypervisor stopped
    /// passing flushes while it ran (VirtualBox's "disabling async flushes").
    fn flushes_disabled(&self, _work: &Path) -> Option<String> {
        None
    }

    /// Starts the VM from `medium` (the frame session's clock, the boot timeline's VM
    /// start, starts right after); it is torn down when the returned [`Vm`] is dropped.
    fn start<'s>(&'s self, guest: &'s Guest<'s>, medium: &Medium) -> Result<Box<dyn Vm + 's>>;
}

/// A running VM as the frame loop sees it. Dropping it stops the VM and undoes its setup.
pub trait Vm {
    /// Opens the channels to a VM just started (QEMU's sockets); nothing by default.
    fn connect(&mut self) -> Result<()> {
        Ok(())
    }

    /// Reads what the guest wrote on its frame channel into `buf`, waiting a little.
    fn poll(&mut self, buf: &mut [u8]) -> Result<Poll>;

    /// The hypervisor's counters of the benchmark disk, if it has them.
    fn counters(&mut self) -> Option<BlockStats> {
        None
    }

    /// Answers the guest at a phase mark ([`Handshake::Ack`]); nothing for a guest that
    /// pauses instead.
    fn ack(&mut self) -> Result<()> {
        Ok(())
    }

    /// A host I/O error the hypervisor reported (it may have paused the guest for it).
    fn disk_error(&mut self) -> Option<String> {
        None
    }

    /// `e`, with why the VM went away if it did (a socket reset means little alone).
    fn cause(&mut self, e: anyhow::Error) -> anyhow::Error {
        e
    }

    /// After the last result: lets the VM power off by itself, within a bound.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Boots `guest` under `hv`, runs `passes`, and calls `on_pass` for each record as it
/// arrives. The VM is stopped and its setup undone on every exit path.
pub fn run(
    hv: &dyn Hypervisor,
    guest: &Guest,
    passes: &[PassSpec],
    stop: &Interrupt,
    on_pass: &mut dyn FnMut(GuestPass) -> Result<()>,
) -> Result<()> {
    std::fs::create_dir_all(&guest.work)?;
    let handshake = hv.handshake();
    let initramfs = build_initramfs(
        guest.kernel,
        guest.cfg.bus,
        guest.agent,
        passes,
        handshake,
        hv.write_log().is_some(),
    )?;
    let medium = Medium::write(hv.boot(guest.cfg), &guest.work, guest.kernel, &initramfs)?;
    let mut vm = hv.start(guest, &medium)?;
    // The boot timeline counts from the VM's start.
    let mut session = Session::new(&guest.work, passes, guest.agent, guest.timeout)?
        .trace_log(hv.write_log().map(Path::to_owned));
    if let Handshake::Pause(pause) = handshake {
        session = session.with_pause(pause);
    }
    vm.connect()?;
    frames(
        vm.as_mut(),
        &mut session,
        guest.below,
        &guest.console(),
        stop,
        on_pass,
    )
}

/// The frame loop: polls the VM, feeds the session, reads the counters and answers the
/// guest at each mark, until the agent's Done, the guest's end, a timeout or Ctrl-C.
fn frames(
    vm: &mut dyn Vm,
    session: &mut Session,
    below: Below,
    console: &Path,
    stop: &Interrupt,
    on_pass: &mut dyn FnMut(GuestPass) -> Result<()>,
) -> Result<()> {
    let fail = |what: String| {
        anyhow!(
            "{what}; guest console (last lines):{}",
            console_tail(console)
        )
    };
    let mut buf = vec![0u8; 64 << 10];
    loop {
        session.check(stop, &fail)?;
        if let Some(why) = vm.disk_error() {
            bail!(fail(why));
        }
        let n = match vm.poll(&mut buf) {
            Ok(Poll::Bytes(n)) => n,
            Ok(Poll::Idle) => continue,
            Ok(Poll::Ended(how)) => return Err(vm.cause(fail(how.into()))),
            Err(e) => return Err(vm.cause(e)),
        };
        // The session calls one closure at a time: the VM is borrowed by each in turn.
        let cell = RefCell::new(&mut *vm);
        let step = session
            .feed(
                &buf[..n],
                &mut || below.read(cell.borrow_mut().counters()),
                &mut || cell.borrow_mut().ack(),
                on_pass,
            )
            .map_err(|e| fail(crate::chain(&e)))?;
        if step == Step::Done {
            return vm.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use zvbench_agent::frame::{encode, Frame};
    use zvbench_agent::pass::{run_pass, Phase, Quiet, Workload};
    use zvbench_agent::{ByteSize, PassRecord};

    /// What the fake VM's frame channel gives at each poll.
    enum Script {
        Bytes(String),
        Idle,
        Ended,
        Fails,
    }

    /// An in-process VM: its frame channel plays a script; its counters count up by 10
    /// flushes at each read; it remembers acks and whether it was finished.
    #[derive(Default)]
    struct FakeVm {
        script: VecDeque<Script>,
        reads: u64,
        acks: u32,
        finished: bool,
        disk_error: Option<String>,
    }

    impl Vm for FakeVm {
        fn poll(&mut self, buf: &mut [u8]) -> Result<Poll> {
            match self.script.pop_front() {
                Some(Script::Bytes(s)) => {
                    buf[..s.len()].copy_from_slice(s.as_bytes());
                    Ok(Poll::Bytes(s.len()))
                }
                Some(Script::Idle) | None => Ok(Poll::Idle),
                Some(Script::Ended) => Ok(Poll::Ended("the fake guest ended")),
                Some(Script::Fails) => bail!("the fake channel broke"),
            }
        }

        fn counters(&mut self) -> Option<BlockStats> {
            self.reads += 1;
            Some(BlockStats {
                flush_operations: 10 * self.reads,
                ..BlockStats::default()
            })
        }

        fn ack(&mut self) -> Result<()> {
            self.acks += 1;
            Ok(())
        }

        fn disk_error(&mut self) -> Option<String> {
            self.disk_error.clone()
        }

        fn cause(&mut self, e: anyhow::Error) -> anyhow::Error {
            e.context("the fake VM's last words")
        }

        fn finish(&mut self) -> Result<()> {
            self.finished = true;
            Ok(())
        }
    }

    fn hello(schema_version: u32) -> String {
        encode(&Frame::Hello {
            agent_version: "t".into(),
            schema_version,
            build_id: zvbench_agent::BUILD_ID.into(),
            uptime_ms: 1,
        })
    }

    fn mark(phase: Phase) -> String {
        encode(&Frame::Mark { pass: 0, phase })
    }

    fn done(passes: u32) -> String {
        encode(&Frame::Done { passes })
    }

    /// A real record of a tiny pass, and its spec.
    fn record(dir: &Path) -> (PassSpec, PassRecord) {
        let mut spec = PassSpec::new(
            dir.join("d"),
            Workload::Seqwr,
            ByteSize(4096),
            ByteSize(4096),
        );
        spec.allow_destroy = true;
        let rec = run_pass(&spec, &mut Quiet).unwrap();
        (spec, rec)
    }

    /// One good pass, frame by frame.
    fn one_pass(rec: &PassRecord) -> Vec<Script> {
        [
            hello(zvbench_agent::SCHEMA_VERSION),
            mark(Phase::Start),
            mark(Phase::End),
            encode(&Frame::Record(Box::new(rec.clone()))),
            done(1),
        ]
        .into_iter()
        .map(Script::Bytes)
        .collect()
    }

    /// Runs the frame loop over `vm` for one pass, within `timeout`; the passes received.
    fn drive(vm: &mut FakeVm, timeout: Duration, stop: &Interrupt) -> (Result<()>, Vec<GuestPass>) {
        let dir = tempfile::tempdir().unwrap();
        let (spec, _) = record(dir.path());
        let passes = [spec];
        let mut session = Session::new(dir.path(), &passes, Path::new("agent"), timeout).unwrap();
        let console = dir.path().join("console.log");
        std::fs::write(&console, "fake console line\n").unwrap();
        let mut got = Vec::new();
        let r = frames(
            vm,
            &mut session,
            Below::default(),
            &console,
            stop,
            &mut |p| {
                got.push(p);
                Ok(())
            },
        );
        (r, got)
    }

    fn vm_with(script: Vec<Script>) -> FakeVm {
        FakeVm {
            script: script.into(),
            ..FakeVm::default()
        }
    }

    fn err(r: Result<()>) -> String {
        crate::chain(&r.expect_err("the loop fails"))
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn counters_are_read_at_each_mark_and_each_mark_is_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let (_, rec) = record(dir.path());
        let mut script = one_pass(&rec);
        script.insert(1, Script::Idle);
        let mut vm = vm_with(script);
        let (r, got) = drive(&mut vm, MINUTE, &Interrupt::default());
        r.unwrap();
        assert_eq!(got.len(), 1);
        // Read 1 at the start (10 flushes), read 2 at the end (20): the pass did 10.
        assert_eq!(got[0].lower.hv.map(|h| h.flush_operations), Some(10));
        assert_eq!((vm.reads, vm.acks), (2, 2));
        assert!(vm.finished, "the VM was let power off");
        assert!(got[0].boot.hello_ms.is_some() && got[0].boot.first_pass_ms.is_some());
    }

    #[test]
    fn frames_split_anywhere_or_joined_give_the_same_result() {
        let dir = tempfile::tempdir().unwrap();
        let (_, rec) = record(dir.path());
        let all: String = one_pass(&rec)
            .into_iter()
            .map(|s| match s {
                Script::Bytes(b) => b,
                _ => unreachable!(),
            })
            .collect();
        let (a, b) = all.split_at(all.len() / 3);
        let mut vm = vm_with(vec![Script::Bytes(a.into()), Script::Bytes(b.into())]);
        let (r, got) = drive(&mut vm, MINUTE, &Interrupt::default());
        r.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].record.label, rec.label);
    }

    #[test]
    fn a_damaged_frame_is_skipped_and_the_run_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (_, rec) = record(dir.path());
        let mut script = one_pass(&rec);
        // A bit flipped in the payload: the checksum no longer matches.
        let damaged = done(1).replace("\"passes\":1", "\"passes\":7");
        assert_ne!(damaged, done(1));
        script.insert(2, Script::Bytes(damaged));
        let mut vm = vm_with(script);
        let (r, got) = drive(&mut vm, MINUTE, &Interrupt::default());
        r.unwrap();
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn an_agent_of_another_schema_is_refused() {
        let mut vm = vm_with(vec![Script::Bytes(hello(
            zvbench_agent::SCHEMA_VERSION + 1,
        ))]);
        let e = err(drive(&mut vm, MINUTE, &Interrupt::default()).0);
        assert!(e.contains("rebuild it with scripts/build-agent"), "{e}");
        assert!(e.contains("fake console line"), "the console is shown: {e}");
    }

    #[test]
    fn a_wrong_pass_count_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (_, rec) = record(dir.path());
        let mut script = one_pass(&rec);
        script.pop();
        script.push(Script::Bytes(done(2)));
        let e = err(drive(&mut vm_with(script), MINUTE, &Interrupt::default()).0);
        assert!(
            e.contains("the guest ran 2 passes but 1 of 1 results arrived"),
            "{e}"
        );
        // Done before any record.
        let script = vec![
            Script::Bytes(hello(zvbench_agent::SCHEMA_VERSION)),
            Script::Bytes(done(1)),
        ];
        let e = err(drive(&mut vm_with(script), MINUTE, &Interrupt::default()).0);
        assert!(e.contains("0 of 1 results arrived"), "{e}");
    }

    #[test]
    fn the_agents_error_is_the_runs() {
        let script = vec![Script::Bytes(encode(&Frame::Error {
            message: "no disk /dev/vdb".into(),
        }))];
        let e = err(drive(&mut vm_with(script), MINUTE, &Interrupt::default()).0);
        assert!(
            e.contains("the guest agent failed: no disk /dev/vdb"),
            "{e}"
        );
    }

    #[test]
    fn a_guest_that_ends_early_is_named_with_the_vms_cause() {
        let script = vec![
            Script::Bytes(hello(zvbench_agent::SCHEMA_VERSION)),
            Script::Ended,
        ];
        let e = err(drive(&mut vm_with(script), MINUTE, &Interrupt::default()).0);
        assert!(e.contains("the fake guest ended"), "{e}");
        assert!(e.contains("the fake VM's last words"), "{e}");
        assert!(e.contains("fake console line"), "{e}");
        let e = err(drive(
            &mut vm_with(vec![Script::Fails]),
            MINUTE,
            &Interrupt::default(),
        )
        .0);
        assert!(
            e.contains("the fake channel broke") && e.contains("last words"),
            "{e}"
        );
    }

    #[test]
    fn a_silent_guest_times_out() {
        let mut vm = vm_with(vec![Script::Bytes(hello(zvbench_agent::SCHEMA_VERSION))]);
        let e = err(drive(&mut vm, Duration::from_millis(50), &Interrupt::default()).0);
        assert!(
            e.contains("did not finish within 0 s (guest_timeout_s)"),
            "{e}"
        );
        assert!(!vm.finished);
    }

    #[test]
    fn ctrl_c_and_host_disk_errors_stop_the_loop() {
        let stop = Interrupt::default();
        stop.set();
        let e = err(drive(&mut vm_with(Vec::new()), MINUTE, &stop).0);
        assert_eq!(e, "interrupted");
        let mut vm = FakeVm {
            disk_error: Some("the file system holding d is full".into()),
            ..FakeVm::default()
        };
        let e = err(drive(&mut vm, MINUTE, &Interrupt::default()).0);
        assert!(
            e.starts_with("the file system holding d is full; guest console"),
            "{e}"
        );
    }
}
