//! zvbench's measuring engine.
//!
//! The same code runs as PID 1 inside a guest's initramfs and as an ordinary program on the
//! host (the baseline), so that the two measurements differ only by the storage path under
//! them. This library also owns the one definition of the result record ([`record`]) and of
//! the host-guest frame format ([`frame`]) that the runner and the reports read.
#![deny(missing_docs)]

pub mod aligned;
pub mod blkid;
pub mod cache;
pub mod devstat;
pub mod engine;
pub mod frame;
pub mod hist;
pub mod init;
pub mod job;
pub mod offsets;
pub mod output;
pub mod pass;
pub mod record;
pub mod series;
pub mod size;
pub mod target;
pub mod verify;
pub mod worker;

pub use record::{PassRecord, SCHEMA_VERSION};

/// A hash of the agent's sources: equal in the runner and in a guest agent built from the
/// same tree.
pub const BUILD_ID: &str = env!("ZVBENCH_AGENT_BUILD_ID");
pub use size::ByteSize;

/// Formats an error and its sources as one line: `outer: cause: root cause`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
