//! `zvbench image build`: the bootable guest ISO of one target, as a run builds it.

use super::{cache_dir, find_agent, GuestArgs};
use anyhow::Result;
use std::path::PathBuf;

/// What `zvbench image` does.
#[derive(clap::Subcommand)]
pub enum ImageAction {
    /// Build the ISO a target's guest boots (ISOLINUX, guest kernel, initramfs with the
    /// agent and the target's job), as `zvbench run` does for VirtualBox and boot = "iso".
    Build {
        /// The scenario file.
        scenario: PathBuf,
        /// The guest target whose job the ISO carries.
        #[arg(long)]
        target: String,
        /// The ISO to write.
        #[arg(long)]
        out: PathBuf,
        /// The agent and kernel the guest boots.
        #[command(flatten)]
        guest: GuestArgs,
    },
}

/// Builds the ISO and prints its path; exit status 0.
pub fn image(action: ImageAction, stop: &crate::Interrupt) -> Result<i32> {
    let ImageAction::Build {
        scenario,
        target,
        out,
        guest,
    } = action;
    let plan = crate::scenario::load(&scenario)?;
    let kernel = guest.kernel(&cache_dir(), stop)?;
    crate::run::guest_image(&plan, &target, &kernel, &find_agent(guest.agent)?, &out)?;
    println!("{}", out.display());
    Ok(0)
}
