//! The host side of a target: storage provisioned and torn down (files, loop devices,
//! zvols, ZFS datasets), the run's lock and what it created, and the `send_to` step.

pub mod loopdev;
pub mod owner;
pub mod send;
pub mod storage;
pub mod zfs;
