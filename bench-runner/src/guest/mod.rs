//! What zvbench knows about the guest: the job and initramfs it boots, the kernel and its
//! command line, the guest ISO, and the host's side of the frame protocol ([`Session`]):
//! the agent's frames checked, the counters of the layers below read at each phase mark,
//! each pass's record handed on. Which hypervisor carries the bytes is not known here
//! (`hypervisor::boot` drives a [`Session`] through any of them).

pub mod initramfs;
pub mod iso;
pub mod kernel;
pub mod tiny;
pub mod vmlinux;

use crate::guest::initramfs::Cpio;
use crate::guest::kernel::{bus_modules, guest_disk, resolve_modules, GuestKernel};
use crate::scenario::Bus;
use crate::Interrupt;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zvbench_agent::devstat::DevStat;
use zvbench_agent::frame::{Frame, FrameReader, Scanned};
use zvbench_agent::job::Job;
use zvbench_agent::pass::{PassSpec, Phase};
use zvbench_agent::PassRecord;

/// The counters of the layers below the guest, read at one phase of a pass.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The hypervisor's counters of the guest's disk.
    pub hv: Option<BlockStats>,
    /// The host device's counters.
    pub host: Option<DevStat>,
    /// ZIL commits of the zvol's dataset (or pool).
    pub zil: Option<u64>,
    /// The counters of the zvol's pool's leaf vdevs, summed.
    pub vdev: Option<DevStat>,
}

/// The hypervisor's counters of the guest's benchmark disk (QEMU's `query-blockstats`,
/// VirtualBox's `debugvm statistics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BlockStats {
    /// Bytes the guest read.
    pub rd_bytes: u64,
    /// Bytes the guest wrote.
    pub wr_bytes: u64,
    /// Read requests.
    pub rd_operations: u64,
    /// Write requests.
    pub wr_operations: u64,
    /// Flushes the hypervisor performed for the guest.
    pub flush_operations: u64,
    /// Total time spent in those flushes.
    pub flush_total_time_ns: u64,
}

impl BlockStats {
    /// `self - before`, saturating.
    pub fn delta(&self, before: &BlockStats) -> BlockStats {
        BlockStats {
            rd_bytes: self.rd_bytes.saturating_sub(before.rd_bytes),
            wr_bytes: self.wr_bytes.saturating_sub(before.wr_bytes),
            rd_operations: self.rd_operations.saturating_sub(before.rd_operations),
            wr_operations: self.wr_operations.saturating_sub(before.wr_operations),
            flush_operations: self
                .flush_operations
                .saturating_sub(before.flush_operations),
            flush_total_time_ns: self
                .flush_total_time_ns
                .saturating_sub(before.flush_total_time_ns),
        }
    }
}

/// What the layers below the guest did during one pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LowerLayers {
    /// Hypervisor counters delta.
    pub hv: Option<BlockStats>,
    /// Host device delta: flushes, flush ms, bytes written.
    pub host_flushes: Option<u64>,
    /// Host device flush time.
    pub host_flush_ms: Option<u64>,
    /// Host device bytes written.
    pub host_write_bytes: Option<u64>,
    /// ZIL commits.
    pub zil_commits: Option<u64>,
    /// Flushes of the zvol's pool's leaf vdevs.
    pub vdev_flushes: Option<u64>,
    /// Bytes the pool's leaf vdevs read.
    pub vdev_read_bytes: Option<u64>,
    /// Bytes the pool's leaf vdevs wrote.
    pub vdev_write_bytes: Option<u64>,
}

/// One pass's result from a guest.
pub struct GuestPass {
    /// The agent's record.
    pub record: PassRecord,
    /// The layers below.
    pub lower: LowerLayers,
    /// How the guest's boot went, up to this pass.
    pub boot: BootTimeline,
    /// With a power-cut log: the pass's place in it and the acknowledgements received.
    pub powercut: Option<PassTrace>,
}

/// When one guest boot reached each step, on the host's clock from the VM's start
/// (QEMU spawned, or `startvm` called), so a slow boot is visible beside the passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BootTimeline {
    /// Wall-clock time of the VM's start, ms since the Unix epoch.
    pub vm_start_unix_ms: u64,
    /// VM start → the agent's Hello arriving on the host.
    pub hello_ms: Option<u64>,
    /// The guest kernel's uptime when the agent started (its clock starts at kernel
    /// entry; under TCG it is the emulated clock).
    pub guest_uptime_ms: Option<u64>,
    /// VM start → kernel start, estimated as `hello_ms - guest_uptime_ms`: the firmware,
    /// the loader and (for a bzImage) the kernel's own decompression.
    pub kernel_start_ms: Option<u64>,
    /// VM start → the first pass's start mark (modules loaded, disk found).
    pub first_pass_ms: Option<u64>,
}

/// An acknowledgement the host received: the first `blocks` blocks were durable by the
/// guest's account at `ms`, when the log was `log_len` bytes long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Ack {
    /// Milliseconds since the guest started.
    pub ms: u64,
    /// Blocks acknowledged.
    pub blocks: u64,
    /// The log's length when the host received it.
    pub log_len: u64,
}

/// One pass as a power-cut check sees it: where it starts and ends in the `blklogwrites`
/// log, and every acknowledgement the host received, with the log's length at that moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassTrace {
    /// The log's length at the pass's start mark.
    pub start_log: u64,
    /// The log's length at its end mark (after the end flush).
    pub end_log: u64,
    /// Milliseconds since the VM started, at the end mark.
    pub end_ms: u64,
    /// Acknowledgements in order.
    pub acks: Vec<Ack>,
}

/// The guest kernel command line: console on ttyS0, quiet, power off on panic.
/// `nvme_core.multipath=N` makes `/dev/nvme0n1` the blk-mq namespace itself rather than a
/// bio-based multipath head, whose `/sys/block` stat never counts flushes.
/// `rodata=off cryptomgr.notests` skip two boot-only steps (write-protecting the kernel's
/// read-only data with its W+X check, and the crypto self-tests) that together cost about
/// 0.45 s of QEMU's CPU per TCG boot (2.42 → 2.00 s measured here). `mitigations=off`
/// would change the guest's syscall path, and so what is measured: not used.
/// `no_timer_check` skips the boot-time check that the IO-APIC timer ticks within a
/// window: under TCG on a loaded host the ticks come late and the kernel panicked with
/// "IO-APIC + timer doesn't work!" (seen in a test run beside other guests).
pub const APPEND: &str = "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init nvme_core.multipath=N rodata=off cryptomgr.notests no_timer_check";

/// How the guest waits at each phase mark: for the host's ack byte on a two-way serial
/// channel (QEMU), or a pause while the host polls a serial log file (VirtualBox).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Wait for the ack, up to two minutes.
    Ack,
    /// Pause this long.
    Pause(Duration),
}

/// Builds the initramfs for `passes`: agent as /init, job, modules for the bus.
pub fn build_initramfs(
    kernel: &GuestKernel,
    bus: Bus,
    agent: &Path,
    passes: &[PassSpec],
    handshake: Handshake,
    sync_marks: bool,
) -> Result<Vec<u8>> {
    let dep =
        std::fs::read_to_string(kernel.modules.join("modules.dep")).context("read modules.dep")?;
    let builtin =
        std::fs::read_to_string(kernel.modules.join("modules.builtin")).unwrap_or_default();
    let mods = resolve_modules(&dep, &builtin, bus_modules(bus))?;
    let mut cpio = Cpio::new();
    let agent_bytes =
        std::fs::read(agent).with_context(|| format!("read agent {}", agent.display()))?;
    cpio.file("init", 0o755, &agent_bytes)
        .chardev("dev/console", 5, 1);
    let mut paths = Vec::new();
    for m in &mods {
        let data =
            std::fs::read(kernel.modules.join(m)).with_context(|| format!("read module {m}"))?;
        let inside = format!("lib/modules/{m}");
        cpio.file(&inside, 0o644, &data);
        paths.push(PathBuf::from(format!("/{inside}")));
    }
    let job = Job {
        schema_version: zvbench_agent::SCHEMA_VERSION,
        modules: paths,
        disk: guest_disk(bus).into(),
        disk_wait_s: 30,
        frame_port: "/dev/ttyS1".into(),
        ack_timeout_ms: match handshake {
            Handshake::Ack => 120_000,
            Handshake::Pause(_) => 0,
        },
        mark_pause_ms: match handshake {
            Handshake::Ack => 0,
            Handshake::Pause(d) => d.as_millis() as u64,
        },
        sync_marks,
        passes: passes.to_vec(),
    };
    cpio.file("zvbench/job.json", 0o644, &serde_json::to_vec_pretty(&job)?);
    Ok(cpio.finish_gz()?)
}

/// The last lines of a guest's console log, indented, for error messages.
pub fn console_tail(path: &Path) -> String {
    let b = std::fs::read(path).unwrap_or_default();
    let s = String::from_utf8_lossy(&b[b.len().saturating_sub(1500)..]).into_owned();
    s.lines().map(|l| format!("\n    {l}")).collect()
}

/// Where a session stands after some bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// More frames to come.
    More,
    /// The agent sent Done and every result arrived.
    Done,
}

/// The host's side of the frame protocol, whatever carries the bytes: checks the agent's
/// build, reads the lower layers' counters at each phase mark, hands each record on.
pub struct Session<'a> {
    passes: &'a [PassSpec],
    agent: &'a Path,
    reader: FrameReader,
    start_snap: Option<Snapshot>,
    lower: LowerLayers,
    boot: BootTimeline,
    received: usize,
    started: Instant,
    deadline: Instant,
    log: std::fs::File,
    /// The power-cut log whose length is noted at marks and acknowledgements.
    powercut_log: Option<PathBuf>,
    trace: PassTrace,
    /// Under [`Handshake::Pause`], how long the guest waits at a mark: counters read later
    /// than that may include the pass's own I/O, or miss it.
    pause: Option<Duration>,
    /// A counter read of the current pass came too late.
    late: bool,
}

impl<'a> Session<'a> {
    /// Counters at a mark must be read within `pause` ([`Handshake::Pause`]): a pass whose
    /// counters were read later gets no lower layers rather than wrong ones.
    pub fn with_pause(mut self, pause: Duration) -> Session<'a> {
        self.pause = Some(pause);
        self
    }

    /// A session logging every frame to `work/frames.log`, with `timeout` for the guest.
    /// Create it just before the VM starts: its boot timeline counts from here.
    pub fn new(
        work: &Path,
        passes: &'a [PassSpec],
        agent: &'a Path,
        timeout: Duration,
    ) -> Result<Session<'a>> {
        Ok(Session {
            deadline: Instant::now() + timeout,
            passes,
            agent,
            reader: FrameReader::default(),
            start_snap: None,
            lower: LowerLayers::default(),
            boot: BootTimeline {
                vm_start_unix_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
                ..Default::default()
            },
            received: 0,
            started: Instant::now(),
            log: std::fs::File::create(work.join("frames.log"))?,
            powercut_log: None,
            trace: PassTrace::default(),
            pause: None,
            late: false,
        })
    }

    /// Notes `log`'s length at every mark and acknowledgement, for a power-cut check.
    pub fn trace_log(mut self, log: Option<PathBuf>) -> Self {
        self.powercut_log = log;
        self
    }

    /// The power-cut log's length now (0 without one).
    fn log_len(&self) -> u64 {
        self.powercut_log
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    }

    /// Fails when the run is interrupted, or, through `fail` (which adds the guest's
    /// console), when the guest runs past its time.
    pub fn check(&self, stop: &Interrupt, fail: &dyn Fn(String) -> anyhow::Error) -> Result<()> {
        if stop.is_set() {
            bail!("interrupted");
        }
        if Instant::now() > self.deadline {
            let limit = self.deadline.duration_since(self.started);
            return Err(fail(format!(
                "the guest did not finish within {} s (guest_timeout_s)",
                limit.as_secs()
            )));
        }
        Ok(())
    }

    /// Feeds bytes from the guest. At a mark, `snapshot` reads the counters and `ack`
    /// answers the guest; each record goes to `on_pass`. Errors are the guest's.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        snapshot: &mut dyn FnMut() -> Snapshot,
        ack: &mut dyn FnMut() -> Result<()>,
        on_pass: &mut dyn FnMut(GuestPass) -> Result<()>,
    ) -> Result<Step> {
        let fed_at = Instant::now();
        let items = self.reader.push(bytes);
        for (i, item) in items.iter().cloned().enumerate() {
            writeln!(
                self.log,
                "{:>8} ms {}",
                self.started.elapsed().as_millis(),
                describe(&item)
            )?;
            match item {
                Scanned::Damaged(why) => {
                    crate::observe::warning!(
                        "zvbench: a damaged frame from the guest was skipped: {why}"
                    )
                }
                Scanned::Frame(Frame::Hello {
                    uptime_ms,
                    schema_version,
                    build_id,
                    ..
                }) => self.hello(uptime_ms, schema_version, &build_id)?,
                Scanned::Frame(Frame::Mark { phase, pass }) => {
                    let snap = snapshot();
                    // Late: the read took longer than the guest waited, or the pass's end
                    // was already written when its start was read.
                    let ended = phase == Phase::Start
                        && items[i + 1..].iter().any(|f| {
                            matches!(f, Scanned::Frame(Frame::Mark { phase: Phase::End, pass: p }) if *p == pass)
                        });
                    if self.pause.is_some_and(|p| ended || fed_at.elapsed() > p) {
                        self.late = true;
                    }
                    self.mark(phase, pass, snap);
                    ack()?;
                }
                Scanned::Frame(Frame::Record(record)) => {
                    self.received += 1;
                    on_pass(GuestPass {
                        record: *record,
                        lower: std::mem::take(&mut self.lower),
                        boot: self.boot,
                        powercut: self
                            .powercut_log
                            .is_some()
                            .then(|| std::mem::take(&mut self.trace)),
                    })?;
                }
                Scanned::Frame(Frame::Synced { blocks, .. }) => {
                    if self.powercut_log.is_some() {
                        self.trace.acks.push(Ack {
                            ms: self.elapsed_ms(),
                            blocks,
                            log_len: self.log_len(),
                        });
                    }
                }
                Scanned::Frame(Frame::Error { message }) => {
                    bail!("the guest agent failed: {message}")
                }
                Scanned::Frame(Frame::Done { passes: n }) => {
                    if n as usize != self.received || self.received != self.passes.len() {
                        bail!(
                            "the guest ran {n} passes but {} of {} results arrived",
                            self.received,
                            self.passes.len()
                        );
                    }
                    return Ok(Step::Done);
                }
            }
        }
        Ok(Step::More)
    }

    /// The agent's greeting: its build must be this zvbench's; its uptime dates the boot.
    fn hello(&mut self, uptime_ms: u64, schema_version: u32, build_id: &str) -> Result<()> {
        if schema_version != zvbench_agent::SCHEMA_VERSION || build_id != zvbench_agent::BUILD_ID {
            bail!(
                "the guest agent {} was built from other sources (schema {schema_version}, build {build_id}; zvbench expects {} and {}): rebuild it with scripts/build-agent",
                self.agent.display(),
                zvbench_agent::SCHEMA_VERSION,
                zvbench_agent::BUILD_ID
            );
        }
        let hello = self.elapsed_ms();
        self.boot.hello_ms = Some(hello);
        self.boot.guest_uptime_ms = Some(uptime_ms);
        self.boot.kernel_start_ms = hello.checked_sub(uptime_ms);
        Ok(())
    }

    /// A phase mark of pass `pass`, with the counters `snap` read at it: a start keeps
    /// them, an end turns them into the pass's lower layers (none if a read was late).
    fn mark(&mut self, phase: Phase, pass: u32, snap: Snapshot) {
        if phase == Phase::Start && self.boot.first_pass_ms.is_none() {
            self.boot.first_pass_ms = Some(self.elapsed_ms());
        }
        match phase {
            Phase::Start => {
                if let Some(p) = self.passes.get(pass as usize) {
                    crate::observe::progress!(
                        "      {} in the guest, {} s after the VM started",
                        p.label,
                        self.started.elapsed().as_secs()
                    );
                }
                self.start_snap = Some(snap);
                self.trace = PassTrace {
                    start_log: self.log_len(),
                    ..PassTrace::default()
                };
            }
            Phase::End => {
                self.lower = delta(&self.start_snap.take().unwrap_or_default(), &snap);
                if std::mem::take(&mut self.late) {
                    crate::observe::warning!(
                        "zvbench: the layers below the guest are unknown for pass {}: its counters were read after the guest's {:.1} s pause at a mark (a slow host or hypervisor)",
                        pass + 1,
                        self.pause.unwrap_or_default().as_secs_f64()
                    );
                    self.lower = LowerLayers::default();
                }
                self.trace.end_log = self.log_len();
                self.trace.end_ms = self.elapsed_ms();
            }
        }
    }

    /// The boot timeline so far.
    pub fn boot(&self) -> BootTimeline {
        self.boot
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// Whether a read of the frame socket (which has a read timeout) only found nothing yet.
pub fn no_bytes_yet(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// One line about a frame for `frames.log`.
fn describe(item: &Scanned) -> String {
    match item {
        Scanned::Damaged(why) => format!("damaged: {why}"),
        Scanned::Frame(Frame::Hello { uptime_ms, .. }) => format!("hello uptime_ms={uptime_ms}"),
        Scanned::Frame(Frame::Mark { pass, phase }) => format!("mark pass={pass} {phase:?}"),
        Scanned::Frame(Frame::Record(r)) => format!("record {} {:.1} MiB/s", r.label, r.mib_per_s),
        Scanned::Frame(Frame::Error { message }) => format!("error {message}"),
        Scanned::Frame(Frame::Done { passes }) => format!("done passes={passes}"),
        Scanned::Frame(Frame::Synced { pass, blocks }) => {
            format!("synced pass={pass} blocks={blocks}")
        }
    }
}

/// What the layers did between two snapshots.
pub fn delta(a: &Snapshot, b: &Snapshot) -> LowerLayers {
    let host = match (&a.host, &b.host) {
        (Some(x), Some(y)) => Some(y.delta(x, "")),
        _ => None,
    };
    let vdev = a
        .vdev
        .as_ref()
        .zip(b.vdev.as_ref())
        .map(|(x, y)| y.delta(x, ""));
    LowerLayers {
        hv: a.hv.as_ref().zip(b.hv.as_ref()).map(|(x, y)| y.delta(x)),
        host_flushes: host.as_ref().and_then(|d| d.flush_ios),
        host_flush_ms: host.as_ref().and_then(|d| d.flush_ms),
        host_write_bytes: host.as_ref().map(|d| d.write_bytes),
        zil_commits: a.zil.zip(b.zil).map(|(x, y)| y.saturating_sub(x)),
        vdev_flushes: vdev.as_ref().and_then(|d| d.flush_ios),
        vdev_read_bytes: vdev.as_ref().map(|d| d.read_bytes),
        vdev_write_bytes: vdev.as_ref().map(|d| d.write_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zvbench_agent::frame::encode;
    use zvbench_agent::pass::{run_pass, Quiet, Workload};
    use zvbench_agent::ByteSize;

    /// The frames of one pass as the agent sends them, each as its own chunk or not.
    fn frames(record: &PassRecord) -> [String; 4] {
        let mark = |phase| encode(&Frame::Mark { pass: 0, phase });
        [
            encode(&Frame::Hello {
                agent_version: "t".into(),
                schema_version: zvbench_agent::SCHEMA_VERSION,
                build_id: zvbench_agent::BUILD_ID.into(),
                uptime_ms: 1,
            }),
            mark(Phase::Start),
            mark(Phase::End),
            encode(&Frame::Record(Box::new(record.clone()))),
        ]
    }

    /// Feeds `chunks` to a session paused `pause` at marks whose counter reads take
    /// `read_time`, and returns the pass's hypervisor layer.
    fn hv_seen(chunks: &[String], read_time: Duration) -> Option<BlockStats> {
        let dir = tempfile::tempdir().unwrap();
        let spec = PassSpec::new(
            dir.path().join("d"),
            Workload::Seqwr,
            ByteSize(4096),
            ByteSize(4096),
        );
        let passes = [spec];
        let mut session = Session::new(
            dir.path(),
            &passes,
            Path::new("agent"),
            Duration::from_secs(60),
        )
        .unwrap()
        .with_pause(Duration::from_millis(400));
        let mut flushes = 0;
        let mut snap = || {
            std::thread::sleep(read_time);
            flushes += 5;
            Snapshot {
                hv: Some(BlockStats {
                    flush_operations: flushes,
                    ..BlockStats::default()
                }),
                ..Snapshot::default()
            }
        };
        let mut seen = None;
        for c in chunks {
            session
                .feed(c.as_bytes(), &mut snap, &mut || Ok(()), &mut |p| {
                    seen = Some(p.lower.hv);
                    Ok(())
                })
                .unwrap();
        }
        seen.expect("the record arrived")
    }

    #[test]
    fn counters_read_after_the_guests_pause_are_unknown_not_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = PassSpec::new(
            dir.path().join("d"),
            Workload::Seqwr,
            ByteSize(4096),
            ByteSize(4096),
        );
        spec.allow_destroy = true;
        let record = run_pass(&spec, &mut Quiet).unwrap();
        let [hello, start, end, rec] = frames(&record);
        let quick = Duration::from_millis(1);
        // In time: each mark read as it came.
        let one_by_one = [hello.clone(), start.clone(), end.clone(), rec.clone()];
        assert_eq!(hv_seen(&one_by_one, quick).unwrap().flush_operations, 5);
        // The pass's end was already written when its start was read.
        let together = [hello.clone(), format!("{start}{end}"), rec.clone()];
        assert_eq!(hv_seen(&together, quick), None);
        // A counter read slower than the guest's pause.
        assert_eq!(hv_seen(&one_by_one, Duration::from_millis(600)), None);
    }
}
