//! Running external tools from argv vectors (never a shell), with errors that carry the
//! argv and the tool's stderr.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

/// Makes the child receive SIGKILL when zvbench dies, even by `kill -9`
/// (`PR_SET_PDEATHSIG`). prctl(2): the signal is sent when the *thread* that forked the
/// child exits, so children are spawned by the thread that runs the whole run (the main
/// thread, or a test's thread) and never from a short-lived helper thread. A parent that
/// died before the prctl took effect is caught by comparing `getppid` with its pid.
pub fn die_with_parent(c: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
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

    /// Runs to completion; a non-zero exit is an error carrying stderr.
    pub fn run(&self) -> Result<Output, CmdError> {
        let out = self
            .command()
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|source| CmdError::Spawn {
                argv: self.display(),
                source,
            })?;
        if !out.status.success() {
            return Err(CmdError::Failed {
                argv: self.display(),
                status: out.status,
                stderr: stderr_tail(&out.stderr),
            });
        }
        Ok(out)
    }

    /// Runs and returns stdout as text.
    pub fn stdout(&self) -> Result<String, CmdError> {
        Ok(String::from_utf8_lossy(&self.run()?.stdout).into_owned())
    }
}
