//! The hypervisors that boot a guest: QEMU and VirtualBox.

pub mod qemu;
pub mod vbox;
