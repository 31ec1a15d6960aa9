//! The `send` step of a zvol target: `zfs send POOL/VOL@zvbench-send | zfs receive
//! POOL2/DEST/VOL`, timed. The pipe is two child processes joined by zvbench itself (no
//! shell), which counts the bytes of the stream as it copies them; either side failing
//! stops the other, and a watchdog kills both when the time limit passes or the run is
//! interrupted, so a side that hangs never hangs the run.

use crate::cmd::Argv;
use crate::host::owner::RunLock;
use crate::host::storage::Provisioned;
use crate::host::zfs;
use crate::names::check_dataset;
use crate::Interrupt;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The snapshot a target is sent from, taken after its last repetition.
pub const SEND_SNAPSHOT: &str = "zvbench-send";

/// `zfs send NAME@SNAP` (a full stream; no `-p`: zvbench's tag is set on the copy itself).
pub fn send_argv(snapshot: &str) -> Argv {
    Argv::new(["zfs", "send", snapshot])
}

/// `zfs receive DEST`: no `-u` or `-o`, which zfs-fuse's receive lacks and a volume does
/// not need.
pub fn receive_argv(dest: &str) -> Argv {
    Argv::new(["zfs", "receive", dest])
}

/// Where a target's copy is received: `<send_to>/<the source's last component>`, checked
/// as a ZFS name and refused when it would be the source itself or inside it.
pub fn destination(source: &str, send_to: &str) -> Result<String, String> {
    let leaf = source.rsplit('/').next().unwrap_or(source);
    let dest = format!("{send_to}/{leaf}");
    check_dataset(&dest)?;
    if dest == source || dest.starts_with(&format!("{source}/")) {
        return Err(format!(
            "send_to {send_to:?} would receive {source} onto itself; name a dataset on another pool"
        ));
    }
    Ok(dest)
}

/// A timed send, as run.json keeps it (`storage.<target>.send`).
pub use zvbench_reports::run_json::SendStep as Sent;

/// Why a pipe of two commands failed.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    /// A side could not be started.
    #[error("cannot run `{argv}`")]
    Spawn {
        /// The command.
        argv: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// One side or both failed (exit status, stderr), or the watchdog stopped them.
    #[error("{0}")]
    Failed(String),
}

/// What a finished pipe moved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moved {
    /// Bytes copied from the first command to the second.
    pub bytes: u64,
    /// Seconds from the first spawn to both exits.
    pub seconds: f64,
}

/// The last 2000 characters of a child's stderr, read on a thread so that a chatty child
/// never blocks on a full pipe.
fn read_stderr(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut err = child.stderr.take();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = err.as_mut() {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = e.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 8000 {
                    buf.drain(..buf.len() - 2000);
                }
            }
        }
        crate::cmd::stderr_tail(&buf)
    })
}

fn spawn(argv: &Argv, stdin: Stdio, stdout: Stdio) -> Result<Child, PipeError> {
    argv.command()
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| PipeError::Spawn {
            argv: argv.display(),
            source,
        })
}

/// Why the watchdog stopped the pipe.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stopped {
    TimedOut,
    Interrupted,
}

/// Kills both children (by pid: they are not reaped until the watchdog is joined, so the
/// pids cannot be reused) when `limit` passes or `stop` is set before `done` says the copy
/// ended.
fn watchdog(
    pids: [u32; 2],
    limit: Duration,
    stop: Interrupt,
    done: mpsc::Receiver<()>,
) -> std::thread::JoinHandle<Option<Stopped>> {
    std::thread::spawn(move || {
        let start = Instant::now();
        loop {
            match done.recv_timeout(Duration::from_millis(100)) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return None,
            }
            let why = if stop.is_set() {
                Stopped::Interrupted
            } else if start.elapsed() > limit {
                Stopped::TimedOut
            } else {
                continue;
            };
            for pid in pids.iter().filter_map(|p| i32::try_from(*p).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return Some(why);
        }
    })
}

/// Runs `from | to`, zvbench copying (and counting) the stream between them. Either side
/// failing ends the other (the sender sees a closed pipe, the receiver end of input), and
/// both are killed after `limit` or when `stop` is set. The error names each side that
/// failed with its exit status and stderr.
pub fn pipe(from: &Argv, to: &Argv, limit: Duration, stop: &Interrupt) -> Result<Moved, PipeError> {
    let start = Instant::now();
    let mut src = spawn(from, Stdio::null(), Stdio::piped())?;
    let mut dst = match spawn(to, Stdio::piped(), Stdio::null()) {
        Ok(c) => c,
        Err(e) => {
            let _ = src.kill();
            let _ = src.wait();
            return Err(e);
        }
    };
    let (src_err, dst_err) = (read_stderr(&mut src), read_stderr(&mut dst));
    let (tx, rx) = mpsc::channel();
    let dog = watchdog([src.id(), dst.id()], limit, stop.clone(), rx);
    let mut reader = src.stdout.take();
    let mut writer = dst.stdin.take();
    let mut bytes = 0u64;
    let mut copy_error = None;
    let mut src_killed = false;
    let mut buf = vec![0u8; 1 << 17];
    if let (Some(r), Some(w)) = (reader.as_mut(), writer.as_mut()) {
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    copy_error = Some(format!("reading from `{}`: {e}", from.display()));
                    break;
                }
            };
            if let Err(e) = w.write_all(&buf[..n]) {
                // The receiver is gone: the sender must not wait on a full pipe forever.
                copy_error = Some(if e.kind() == std::io::ErrorKind::BrokenPipe {
                    format!(
                        "`{}` stopped reading after {bytes} bytes, so `{}` was stopped",
                        to.display(),
                        from.display()
                    )
                } else {
                    format!("writing to `{}`: {e}", to.display())
                });
                src_killed = src.kill().is_ok();
                break;
            }
            bytes += n as u64;
        }
    }
    // End of stream for the receiver; the sender's end closed (a receiver that died early
    // leaves the sender a broken pipe).
    drop(writer);
    drop(reader);
    let _ = tx.send(());
    let stopped = dog.join().unwrap_or(None);
    let statuses = [src.wait(), dst.wait()];
    let seconds = start.elapsed().as_secs_f64();
    let tails = [
        src_err.join().unwrap_or_default(),
        dst_err.join().unwrap_or_default(),
    ];
    let mut problems = Vec::new();
    match stopped {
        Some(Stopped::TimedOut) => problems.push(format!(
            "stopped after {} s (the time limit): both sides killed",
            limit.as_secs()
        )),
        Some(Stopped::Interrupted) => problems.push("interrupted: both sides killed".into()),
        None => {}
    }
    if let Some(e) = copy_error {
        problems.push(e);
    }
    let killed = [src_killed || stopped.is_some(), stopped.is_some()];
    for (((argv, status), tail), killed) in [from, to].iter().zip(&statuses).zip(&tails).zip(killed)
    {
        // A side zvbench killed failed because of what is said above.
        let by_us = killed
            && status
                .as_ref()
                .is_ok_and(|s| s.signal() == Some(libc::SIGKILL));
        if by_us {
            continue;
        }
        if let Some(why) = side_failure(status) {
            let said = if tail.is_empty() {
                String::new()
            } else {
                format!(": {tail}")
            };
            problems.push(format!("`{}` failed ({why}){said}", argv.display()));
        }
    }
    if problems.is_empty() {
        Ok(Moved { bytes, seconds })
    } else {
        Err(PipeError::Failed(problems.join("; ")))
    }
}

fn side_failure(status: &std::io::Result<ExitStatus>) -> Option<String> {
    match status {
        Ok(s) if s.success() => None,
        Ok(s) => Some(s.to_string()),
        Err(e) => Some(format!("not reaped: {e}")),
    }
}

/// Sends `snapshot` to `dest` and times it; `dest` must not exist (the caller registers its
/// teardown first). Runs [`pipe`] with zfs's two commands.
pub fn send_receive(
    snapshot: &str,
    dest: &str,
    limit: Duration,
    stop: &Interrupt,
) -> Result<Sent, PipeError> {
    let (from, to) = (send_argv(snapshot), receive_argv(dest));
    let m = pipe(&from, &to, limit, stop)?;
    Ok(Sent {
        snapshot: snapshot.to_string(),
        received_as: dest.to_string(),
        bytes: m.bytes,
        seconds: m.seconds,
        mib_per_s: mib_per_s(m.bytes, m.seconds),
        commands: format!("{} | {}", from.display(), to.display()),
    })
}

/// The send step of a target: snapshots `source@zvbench-send` (destroyed with the source),
/// registers `<send_to>/<leaf>` with the target's teardown (and the run's lock) before
/// anything creates it, then sends and times. `<send_to>` must exist; the copy must not.
pub fn send_step(
    p: &mut Provisioned,
    lock: &RunLock,
    source: &str,
    send_to: &str,
    limit: Duration,
    stop: &Interrupt,
) -> anyhow::Result<Sent> {
    let dest = destination(source, send_to).map_err(anyhow::Error::msg)?;
    if zfs::exists_argv(&dest).run().is_ok() {
        anyhow::bail!("{dest} exists already; a send is received only into a new dataset");
    }
    let snapshot = format!("{source}@{SEND_SNAPSHOT}");
    zfs::snapshot_argv(&snapshot).run()?;
    p.own_dataset(lock, &dest)?;
    Ok(send_receive(&snapshot, &dest, limit, stop)?)
}

/// Bytes per second in MiB/s; 0 for no time (a finite number for run.json).
pub fn mib_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 && seconds.is_finite() {
        bytes as f64 / (1u64 << 20) as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_and_destination() {
        assert_eq!(
            send_argv("tank/v@zvbench-send").display(),
            "zfs send tank/v@zvbench-send"
        );
        assert_eq!(receive_argv("backup/v").display(), "zfs receive backup/v");
        assert_eq!(
            destination("tank/zvbench/r1-zvol", "backup/copies").unwrap(),
            "backup/copies/r1-zvol"
        );
        for (src, to) in [
            ("tank/r1-zvol", "tank"),
            ("tank/r1-zvol", "tank/r1-zvol"),
            ("tank/r1-zvol", "bad name"),
            ("tank/r1-zvol", "1pool"),
            ("tank/r1-zvol", "backup/"),
        ] {
            assert!(destination(src, to).is_err(), "{src} → {to}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(mib_per_s(3 << 20, 2.0), 1.5);
        assert_eq!(mib_per_s(1, 0.0), 0.0);
        assert_eq!(mib_per_s(1, f64::NAN), 0.0);
    }

    fn sh(script: &str) -> Argv {
        Argv::new(["sh", "-c", script])
    }

    #[test]
    fn a_pipe_counts_every_byte() {
        let m = pipe(
            &Argv::new(["head", "-c", "3000000", "/dev/zero"]),
            &sh("test \"$(wc -c)\" = 3000000"),
            Duration::from_secs(60),
            &Interrupt::default(),
        )
        .unwrap();
        assert_eq!(m.bytes, 3_000_000);
        assert!(m.seconds > 0.0);
    }

    #[test]
    fn a_failing_sender_is_named_with_its_stderr() {
        let e = pipe(
            &sh("printf partial; echo 'no such snapshot' >&2; exit 3"),
            &sh("cat >/dev/null; echo 'incomplete stream' >&2; exit 1"),
            Duration::from_secs(60),
            &Interrupt::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("exit status: 3): no such snapshot"), "{e}");
        assert!(e.contains("exit status: 1): incomplete stream"), "{e}");
    }

    /// A receiver that dies at once must not leave an endless sender running (or the
    /// run waiting on it).
    #[test]
    fn a_dead_receiver_stops_an_endless_sender() {
        let start = Instant::now();
        let e = pipe(
            &Argv::new(["cat", "/dev/zero"]),
            &sh("head -c 100000 >/dev/null; echo 'cannot receive' >&2; exit 1"),
            Duration::from_secs(120),
            &Interrupt::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(start.elapsed() < Duration::from_secs(60), "{e}");
        assert!(e.contains("`sh -c head -c 100000"), "{e}");
        assert!(e.contains("cannot receive"), "{e}");
    }

    #[test]
    fn a_hung_side_is_killed_at_the_limit_or_on_interrupt() {
        let e = pipe(
            &Argv::new(["sleep", "600"]),
            &Argv::new(["cat"]),
            Duration::from_secs(1),
            &Interrupt::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("stopped after 1 s (the time limit)"), "{e}");
        let stop = Interrupt::default();
        stop.set();
        let e = pipe(
            &Argv::new(["cat", "/dev/zero"]),
            &Argv::new(["sleep", "600"]),
            Duration::from_secs(600),
            &stop,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("interrupted"), "{e}");
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let e = pipe(
            &Argv::new(["zvbench-no-such-tool"]),
            &Argv::new(["cat"]),
            Duration::from_secs(5),
            &Interrupt::default(),
        )
        .unwrap_err();
        assert!(matches!(e, PipeError::Spawn { .. }), "{e}");
        let e = pipe(
            &Argv::new(["true"]),
            &Argv::new(["zvbench-no-such-tool"]),
            Duration::from_secs(5),
            &Interrupt::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("zvbench-no-such-tool"), "{e}");
    }
}
