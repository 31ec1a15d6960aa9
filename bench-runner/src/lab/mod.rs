//! The ZFS lab: real OpenZFS on a host that cannot load it. `zvbench lab -- CMD...` builds
//! (once, cached) OpenZFS modules for Debian's guest kernel, boots that kernel under QEMU
//! with the host's root read-only over virtio-9p and the modules loaded, gives it pool
//! disks (raw files on virtio-blk, `cache=none`), runs CMD inside and brings back its
//! output and exit status. Everything it made (VM, disk files, control files) is gone when
//! it returns, on an error or Ctrl-C too.
//!
//! It is a zvbench subcommand rather than a script because it is zvbench's own code that
//! must run inside (the guest half is `zvbench lab-guest`), and because it reuses the
//! runner's kernel fetch, initramfs writer, QEMU guard and interrupt handling.
//!
//! `machine` boots one lab VM and waits for it; `powercut` (host side) and `cutstep`
//! (inside) build the power-cut check on it; `openzfs`, `vm` and `guest` are the pieces
//! a boot needs.

pub mod cutstep;
pub mod guest;
pub mod machine;
pub mod openzfs;
pub mod powercut;
pub mod vm;

pub use machine::{build_only, run, run_attached, Attach, LabOptions, Outcome};
