//! The subcommands, one documented function each (`main.rs` only parses and dispatches):
//! each module holds its subcommand's arguments (clap derive) and the function that runs
//! it, returning the process's exit status. They are the CLI's edge: they print.

pub mod check;
pub mod clean;
pub mod compare;
pub mod doctor;
pub mod history;
pub mod image;
pub mod import;
pub mod lab;
pub mod report;
pub mod run;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The VBoxManage program: `ZVBENCH_VBOXMANAGE`, else `VBoxManage` on PATH.
pub fn vboxmanage() -> std::ffi::OsString {
    std::env::var_os(crate::hypervisor::vbox::VBOXMANAGE_ENV).unwrap_or_else(|| "VBoxManage".into())
}

/// What a guest boots: the agent and the kernel (`run`, `image build`).
#[derive(clap::Args)]
pub struct GuestArgs {
    /// The static guest agent (default: built by scripts/build-agent).
    #[arg(long)]
    pub agent: Option<PathBuf>,
    /// Guest kernel image (with --modules); default: the host's, else Debian's package.
    #[arg(long, requires = "modules")]
    pub kernel: Option<PathBuf>,
    /// The guest kernel's lib/modules/<release> directory.
    #[arg(long, requires = "kernel")]
    pub modules: Option<PathBuf>,
    /// zvbench's minimal guest kernel instead: Debian's linux-source-6.1 with only what the
    /// agent needs, built in; built once into the cache (about 10 min on 2 cores). Boots
    /// faster under TCG, most of all nested in a VM (the ZFS lab).
    #[arg(long, conflicts_with = "kernel")]
    pub tiny_kernel: bool,
}

impl GuestArgs {
    /// The guest kernel these arguments name: the minimal one, the given one, the host's
    /// or Debian's.
    pub fn kernel(
        &self,
        cache: &Path,
        stop: &crate::Interrupt,
    ) -> Result<crate::guest::kernel::GuestKernel> {
        if self.tiny_kernel {
            return crate::guest::tiny::ensure(cache, &|| stop.is_set());
        }
        crate::guest::kernel::find(self.kernel.clone().zip(self.modules.clone()), cache)
    }
}

/// zvbench's cache: `$XDG_CACHE_HOME/zvbench`, else `~/.cache/zvbench`, else
/// `/var/tmp/zvbench`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"))
        .join("zvbench")
}

/// The static agent: `--agent`, else next to this binary's target directory; refused
/// unless it is a statically linked x86-64 ELF.
pub fn find_agent(given: Option<PathBuf>) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => {
            let exe = std::env::current_exe()?;
            let target_dir = exe
                .parent()
                .and_then(Path::parent)
                .context("cannot locate the target directory")?;
            target_dir.join("x86_64-unknown-linux-gnu/agent/zvbench-agent")
        }
    };
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "guest agent {} not found; build it with scripts/build-agent or pass --agent",
            path.display()
        )
    })?;
    match crate::guest::initramfs::elf_is_static(&bytes) {
        Some(true) => {}
        Some(false) => bail!(
            "{} is dynamically linked; the guest has no libc: build it with scripts/build-agent",
            path.display()
        ),
        None => bail!("{} is not an x86-64 ELF executable", path.display()),
    }
    Ok(path)
}
