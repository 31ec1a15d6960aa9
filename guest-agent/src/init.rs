//! PID 1 mode: the agent as the whole userspace of a benchmark guest.
//!
//! Mounts what it needs (a table, as virtme-ng-init does), loads the job's modules, waits a
//! bounded time for the disk, runs the passes, sends every result as a frame, and always
//! ends with sync and power-off — after an error or a panic too. Nothing here waits
//! without a bound, so a broken guest ends instead of hanging the run.

use crate::frame::{encode, Frame};
use crate::job::{Job, JOB_PATH};
use crate::pass::{run_pass, Observer, Phase};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::io::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// File systems mounted at start: (source, target, type).
const MOUNTS: &[(&str, &str, &str)] = &[
    ("proc", "/proc", "proc"),
    ("sysfs", "/sys", "sysfs"),
    ("devtmpfs", "/dev", "devtmpfs"),
];

/// Writes frames to the job's port, falling back to the console, and reads the host's
/// acknowledgements from it.
pub struct FrameSink {
    out: std::fs::File,
}

impl FrameSink {
    /// Opens `port` (or `/dev/console` if it cannot be opened) and, when it is a terminal,
    /// puts it in raw mode so that nothing is echoed or translated.
    pub fn open(port: &Path) -> std::io::Result<FrameSink> {
        FrameSink::open_port(port).or_else(|_| FrameSink::open_port(Path::new("/dev/console")))
    }

    /// Opens `port` itself (no fallback), in raw mode when it is a terminal.
    pub fn open_port(port: &Path) -> std::io::Result<FrameSink> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let out = OpenOptions::new().read(true).write(true).open(port)?;
        if let Ok(mut t) = tcgetattr(&out) {
            cfmakeraw(&mut t);
            let _ = tcsetattr(&out, SetArg::TCSANOW, &t);
        }
        Ok(FrameSink { out })
    }

    /// Waits up to `timeout` for one acknowledgement byte; false on timeout or error.
    pub fn wait_ack(&mut self, timeout: Duration) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::io::Read;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32)
                .unwrap_or(PollTimeout::ZERO);
            let mut fds = [PollFd::new(self.out.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Ok(n) if n > 0 => {
                    let mut b = [0u8; 1];
                    return matches!(self.out.read(&mut b), Ok(1) if b[0] == b'A');
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return false,
            }
        }
    }

    /// Sends one frame. Errors are ignored on purpose: there is nowhere else to report them.
    pub fn send(&mut self, f: &Frame) {
        let _ = self.out.write_all(encode(f).as_bytes());
        let _ = nix::sys::termios::tcdrain(self.out.as_fd());
    }
}

fn log(msg: &str) {
    if let Ok(mut c) = OpenOptions::new().write(true).open("/dev/console") {
        let _ = writeln!(c, "zvbench-agent: {msg}");
    }
}

fn mount_all() -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    for (src, dst, fstype) in MOUNTS {
        let _ = std::fs::create_dir_all(dst);
        match mount(
            Some(*src),
            *dst,
            Some(*fstype),
            MsFlags::MS_NOSUID,
            None::<&str>,
        ) {
            Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
            Err(e) => return Err(format!("mount {fstype} on {dst}: {e}")),
        }
    }
    Ok(())
}

/// A kernel module's name from its file path (`.../virtio-blk.ko` → `virtio_blk`), the
/// form `modules.dep`, `modules.builtin` and command-line parameters use.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// Parameters for module `name` from the kernel command line (`name.param=value`), as
/// modprobe passes them: the kernel applies command-line parameters only to built-ins.
pub fn module_params(cmdline: &str, name: &str) -> String {
    let prefix = format!("{name}.");
    cmdline
        .split_ascii_whitespace()
        .take(1024)
        .filter_map(|t| t.strip_prefix(&prefix))
        .collect::<Vec<_>>()
        .join(" ")
}

fn load_modules(job: &Job) -> Result<(), String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    for m in &job.modules {
        let f = std::fs::File::open(m).map_err(|e| format!("open module {}: {e}", m.display()))?;
        let name = module_name(&m.to_string_lossy());
        let params = std::ffi::CString::new(module_params(&cmdline, &name)).unwrap_or_default();
        match nix::kmod::finit_module(&f, &params, nix::kmod::ModuleInitFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(format!("load module {}: {e}", m.display())),
        }
    }
    Ok(())
}

fn wait_for(path: &Path, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > limit {
            return Err(format!(
                "disk {} did not appear within {} s",
                path.display(),
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn uptime_ms() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|s| (s * 1000.0) as u64)
        .unwrap_or(0)
}

/// Syncs and powers the machine off. Never returns.
pub fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Only reached if reboot(2) failed (not PID 1, or no CAP_SYS_BOOT): end the process.
    std::process::exit(1)
}

/// Sends a mark frame at each phase and waits for the host's ack (or pauses, without one).
struct Marks<'a> {
    sink: &'a mut FrameSink,
    pass: u32,
    ack: Duration,
    pause: Duration,
    sync_marks: bool,
}

impl Observer for Marks<'_> {
    fn phase(&mut self, phase: Phase) {
        self.sink.send(&Frame::Mark {
            pass: self.pass,
            phase,
        });
        if self.ack.is_zero() {
            std::thread::sleep(self.pause);
        } else if !self.sink.wait_ack(self.ack) {
            log(&format!(
                "no ack from the host for pass {} {phase:?}; going on",
                self.pass
            ));
        }
    }

    fn wants_synced(&self) -> bool {
        self.sync_marks
    }

    fn synced(&mut self, blocks: u64) {
        if self.sync_marks {
            self.sink.send(&Frame::Synced {
                pass: self.pass,
                blocks,
            });
        }
    }
}

fn run_job(sink: &mut Option<FrameSink>) -> Result<u32, String> {
    mount_all()?;
    let job = Job::load(Path::new(JOB_PATH)).map_err(|e| crate::error_chain(&e))?;
    *sink = Some(FrameSink::open(&job.frame_port).map_err(|e| format!("open frame port: {e}"))?);
    let s = sink.as_mut().expect("just set");
    s.send(&hello());
    load_modules(&job)?;
    run_passes(&job, s)
}

/// The frame an agent sends first.
fn hello() -> Frame {
    Frame::Hello {
        agent_version: env!("CARGO_PKG_VERSION").into(),
        schema_version: crate::SCHEMA_VERSION,
        build_id: crate::BUILD_ID.into(),
        uptime_ms: uptime_ms(),
    }
}

/// Waits (bounded) for the job's disk, runs its passes with their marks and sends each
/// record to `s`; the number of passes run.
fn run_passes(job: &Job, s: &mut FrameSink) -> Result<u32, String> {
    wait_for(&job.disk, Duration::from_secs(job.disk_wait_s))?;
    for (i, p) in job.passes.iter().enumerate() {
        log(&format!(
            "pass {}/{}: {} {}",
            i + 1,
            job.passes.len(),
            p.workload.as_str(),
            p.path.display()
        ));
        let mut marks = Marks {
            sink: s,
            pass: i as u32,
            ack: Duration::from_millis(job.ack_timeout_ms),
            pause: Duration::from_millis(job.mark_pause_ms),
            sync_marks: job.sync_marks,
        };
        let rec = run_pass(p, &mut marks).map_err(|e| crate::error_chain(&e))?;
        s.send(&Frame::Record(Box::new(rec)));
    }
    Ok(job.passes.len() as u32)
}

/// `zvbench-agent job FILE`: a job run by an ordinary process (the ZFS lab's power cut,
/// where the agent writes a zvol inside the lab VM): the same frames as in PID 1 mode, on
/// the job's frame port, which must exist (no fallback to the console); ends with `Done`,
/// or `Error` and the error.
pub fn run_file(path: &Path) -> Result<u32, String> {
    let job = Job::load(path).map_err(|e| crate::error_chain(&e))?;
    let mut s = FrameSink::open_port(&job.frame_port)
        .map_err(|e| format!("open frame port {}: {e}", job.frame_port.display()))?;
    s.send(&hello());
    match run_passes(&job, &mut s) {
        Ok(passes) => {
            s.send(&Frame::Done { passes });
            Ok(passes)
        }
        Err(message) => {
            s.send(&Frame::Error {
                message: message.clone(),
            });
            Err(message)
        }
    }
}

/// The PID 1 entry point. Never returns: the guest powers off.
pub fn main() -> ! {
    std::panic::set_hook(Box::new(|info| {
        let mut sink = FrameSink::open(Path::new("/dev/ttyS1")).ok();
        if let Some(s) = sink.as_mut() {
            s.send(&Frame::Error {
                message: format!("agent panicked: {info}"),
            });
        }
        log(&format!("panic: {info}"));
        power_off();
    }));
    let mut sink = None;
    let result = run_job(&mut sink);
    let mut sink = sink.or_else(|| FrameSink::open(Path::new("/dev/ttyS1")).ok());
    match result {
        Ok(passes) => {
            if let Some(s) = sink.as_mut() {
                s.send(&Frame::Done { passes });
            }
        }
        Err(message) => {
            log(&message);
            if let Some(s) = sink.as_mut() {
                s.send(&Frame::Error { message });
            }
        }
    }
    power_off()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_params_from_cmdline() {
        let c = "console=ttyS0 nvme_core.multipath=N quiet nvme_core.io_timeout=30 nvme.x=1";
        assert_eq!(module_params(c, "nvme_core"), "multipath=N io_timeout=30");
        assert_eq!(module_params(c, "nvme"), "x=1");
        assert_eq!(module_params(c, "virtio_blk"), "");
    }
}
