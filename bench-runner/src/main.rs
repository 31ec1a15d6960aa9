//! `zvbench`: the host CLI.
fn main() {}
