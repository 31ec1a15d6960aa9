//! zvbench's host side: scenarios, storage provisioning, guests and the flush trace.
#![deny(missing_docs)]

pub mod cmd;
pub mod doctor;
pub mod guest;
pub mod import;
pub mod initramfs;
pub mod iso;
pub mod kernel;
pub mod lab;
pub mod names;
pub mod provenance;
pub mod qemu;
pub mod report;
pub mod run;
pub mod scenario;
pub mod storage;
pub mod vbox;
pub mod zfs;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set by Ctrl-C (SIGINT) or SIGTERM; long waits check it and unwind, so every guard
/// tears down what it owns.
#[derive(Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Whether the run should stop.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Asks the run to stop.
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst)
    }
}

/// An error and its causes on one line.
pub fn chain(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}
