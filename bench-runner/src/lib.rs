//! zvbench's host side: scenarios, storage provisioning, guests and the flush trace.
#![deny(missing_docs)]

pub mod cmd;
pub mod initramfs;
pub mod kernel;
pub mod names;
pub mod qemu;
pub mod scenario;
pub mod storage;
pub mod zfs;
