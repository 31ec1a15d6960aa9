//! Running external tools from argv vectors (never a shell), with errors that carry the
//! argv and the tool's stderr.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long [`Argv::run`] lets a tool run before it is killed: far above what any of the
/// tools zvbench calls this way takes (`zfs`, `losetup`, `qemu-img`, `VBoxManage`), so
/// that only a hung tool (a wedged pool, a VBoxSVC that stopped answering) meets it.
pub const TIME_LIMIT: Duration = Duration::from_secs(600);

/// Makes the child receive SIGKILL when zvbench dies, even by `kill -9`
/// (`PR_SET_PDEATHSIG`). prctl(2): the signal is sent when the *thread* that forked the
/// child exits, so children are spawned by the thread that runs the whole run (the main
/// thread, or a test's thread) and never from a short-lived helper thread. A parent that
/// died before the prctl took effect is caught by comparing `getppid` with its pid.
pub fn die_with_parent(c: &mut Command) {
    let parent = libc::pid_t::try_from(std::process::id()).expect("Linux pids fit pid_t");
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (prctl, getppid), allocating nothing.
    unsafe {
        c.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// The last 2000 characters of a tool's stderr, trimmed: what an error message quotes.
pub fn stderr_tail(stderr: &[u8]) -> String {
    let err = String::from_utf8_lossy(stderr);
    let tail: String = err
        .chars()
        .rev()
        .take(2000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    tail.trim().to_string()
}

/// An external command as program + arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv(pub Vec<OsString>);

/// A tool failed to start or exited non-zero.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// Could not be started (not installed?).
    #[error("cannot run `{argv}`")]
    Spawn {
        /// The command line, for the message.
        argv: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Exited with a failure status.
    #[error("`{argv}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        argv: String,
        /// Exit status.
        status: std::process::ExitStatus,
        /// Last 2000 bytes of stderr.
        stderr: String,
    },
    /// Ran past its time limit and was killed.
    #[error("`{argv}` did not finish within {:.1} s and was killed: {stderr}", limit.as_secs_f64())]
    TimedOut {
        /// The command line.
        argv: String,
        /// The limit it met.
        limit: Duration,
        /// Last 2000 bytes of what it wrote to stderr by then.
        stderr: String,
    },
}

/// The time limit for a tool that writes `bytes` (an image created fully allocated, a
/// disk copied): [`TIME_LIMIT`] plus the time at 10 MiB/s, a floor no working disk is
/// under.
pub fn limit_for_bytes(bytes: u64) -> Duration {
    TIME_LIMIT + Duration::from_secs(bytes / (10 << 20))
}

impl Argv {
    /// A command from any string-like parts.
    pub fn new<I, S>(parts: I) -> Argv
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Argv(parts.into_iter().map(|s| s.as_ref().to_owned()).collect())
    }

    /// The argv as text for messages and transcripts.
    pub fn display(&self) -> String {
        self.0
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A `Command` for this argv, its life tied to zvbench's ([`die_with_parent`]).
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.0[0]);
        c.args(&self.0[1..]);
        die_with_parent(&mut c);
        c
    }

    /// Runs to completion within [`TIME_LIMIT`]; a non-zero exit is an error carrying
    /// stderr.
    pub fn run(&self) -> Result<Output, CmdError> {
        self.run_within(TIME_LIMIT)
    }

    /// Runs to completion within `limit`, killing the tool when it is reached; a non-zero
    /// exit or the limit is an error carrying stderr.
    pub fn run_within(&self, limit: Duration) -> Result<Output, CmdError> {
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| CmdError::Spawn {
                argv: self.display(),
                source,
            })?;
        // Both pipes drained while waiting, so a chatty tool never blocks on a full pipe.
        let drain = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut v);
                }
                v
            })
        };
        let out_reader = drain(child.stdout.take().map(|r| Box::new(r) as _));
        let err_reader = drain(child.stderr.take().map(|r| Box::new(r) as _));
        let deadline = Instant::now() + limit;
        let mut pause = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                // The limit, or waitpid failing (nothing left to wait for): kill and reap.
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let stdout = out_reader.join().unwrap_or_default();
        let stderr = err_reader.join().unwrap_or_default();
        match status {
            None => Err(CmdError::TimedOut {
                argv: self.display(),
                limit,
                stderr: stderr_tail(&stderr),
            }),
            Some(status) if !status.success() => Err(CmdError::Failed {
                argv: self.display(),
                status,
                stderr: stderr_tail(&stderr),
            }),
            Some(status) => Ok(Output {
                status,
                stdout,
                stderr,
            }),
        }
    }

    /// Runs and returns stdout as text.
    pub fn stdout(&self) -> Result<String, CmdError> {
        Ok(String::from_utf8_lossy(&self.run()?.stdout).into_owned())
    }

    /// Runs a long build step in `dir` with stdout and stderr appended to `log` (no time
    /// limit: a build takes what it takes), in its own process group so that when
    /// `stopped()` turns true (Ctrl-C) the whole group (make and its compilers) gets
    /// SIGTERM and the step fails with "interrupted". A non-zero exit is an error quoting
    /// the log's last 15 lines.
    pub fn run_logged(
        &self,
        dir: &Path,
        log: &Path,
        stopped: &dyn Fn() -> bool,
    ) -> anyhow::Result<()> {
        use anyhow::Context;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let mut child = self
            .command()
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| format!("run {}", self.display()))?;
        let st = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if stopped() {
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
                let _ = child.wait();
                anyhow::bail!("interrupted");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if !st.success() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            anyhow::bail!(
                "`{}` failed ({st}); last lines:\n{}",
                self.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_past_its_limit_is_killed_and_named() {
        let start = Instant::now();
        let e = Argv::new(["sh", "-c", "echo started >&2; exec sleep 30"])
            .run_within(Duration::from_millis(300))
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(10), "killed promptly");
        let msg = e.to_string();
        assert!(
            msg.contains("did not finish within 0.3 s and was killed"),
            "{msg}"
        );
        assert!(msg.contains("sleep 30") && msg.contains("started"), "{msg}");
    }

    #[test]
    fn output_failure_and_long_output_come_back() {
        let big = Argv::new(["sh", "-c", "head -c 1000000 /dev/zero; echo done >&2"])
            .run()
            .unwrap();
        assert_eq!(
            big.stdout.len(),
            1_000_000,
            "more than a pipe's buffer, drained"
        );
        assert_eq!(String::from_utf8_lossy(&big.stderr), "done\n");
        let e = Argv::new(["sh", "-c", "echo why >&2; exit 3"])
            .run()
            .unwrap_err();
        assert!(
            matches!(&e, CmdError::Failed { stderr, .. } if stderr == "why"),
            "{e}"
        );
        assert!(matches!(
            Argv::new(["/nonexistent/tool"]).run(),
            Err(CmdError::Spawn { .. })
        ));
    }
}
