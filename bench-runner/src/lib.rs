//! zvbench's host side: scenarios, storage provisioning, guests and the flush trace.
#![deny(missing_docs)]

pub mod cmd;
pub mod commands;
pub mod guest;
pub mod host;
pub mod hypervisor;
pub mod lab;
pub mod names;
pub mod observe;
pub mod powercut;
pub mod run;
pub mod scenario;
pub mod writelog;

/// The tests' prerequisite check (no silent skips), shared with the integration tests.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../tests/common/require.rs"]
mod require;

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

/// Set by SIGINT (Ctrl-C), SIGTERM or SIGHUP, with the signal's number: long steps check it
/// and unwind, so every guard tears down what it owns, and zvbench exits 128 + the signal.
#[derive(Clone, Default)]
pub struct Interrupt(Arc<AtomicI32>);

impl Interrupt {
    /// Whether the run should stop.
    pub fn is_set(&self) -> bool {
        self.signal().is_some()
    }

    /// Asks the run to stop, as Ctrl-C does.
    pub fn set(&self) {
        self.set_signal(libc::SIGINT)
    }

    /// Asks the run to stop because of `sig`; the first signal is kept.
    pub fn set_signal(&self, sig: i32) {
        let _ = self
            .0
            .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The signal that asked the run to stop.
    pub fn signal(&self) -> Option<i32> {
        Some(self.0.load(Ordering::SeqCst)).filter(|&s| s != 0)
    }

    /// The exit status for a stop by signal: 128 + its number (130 for SIGINT, 143 for
    /// SIGTERM), as shells report it.
    pub fn exit_code(&self) -> Option<i32> {
        self.signal().map(|s| 128 + s)
    }

    /// Catches SIGINT, SIGTERM and SIGHUP for the whole process: they are blocked in the
    /// calling thread (call it first in `main`, before any thread starts, so every thread
    /// inherits the mask; children get an empty mask from std) and a thread waits for them.
    /// With `unwind`, a signal sets `self` and the run unwinds through its guards; without,
    /// zvbench exits at once with 128 + the signal (commands with nothing to tear down).
    pub fn watch(&self, unwind: bool) -> std::io::Result<()> {
        use nix::sys::signal::{SigSet, Signal};
        let mut set = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            set.add(s);
        }
        set.thread_block()?;
        let me = self.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || loop {
                let Ok(sig) = set.wait() else { continue };
                if !unwind {
                    std::process::exit(128 + sig as i32);
                }
                observe::warning!("\nzvbench: {sig}: stopping and tearing down");
                me.set_signal(sig as i32);
            })?;
        Ok(())
    }
}

/// An error and its causes on one line.
pub fn chain(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}
