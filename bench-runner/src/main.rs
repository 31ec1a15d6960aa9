//! `zvbench`: the host CLI — a thin shell over the library. It parses the command line,
//! sets up signals and dispatches to one function per subcommand in
//! [`zvbench::commands`], which prints and returns the exit status.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use zvbench::commands::{
    self, check::CheckArgs, clean::CleanArgs, compare::CompareArgs, history::HistoryArgs,
    image::ImageAction, import::ImportTool, lab::CutStep, lab::LabArgs, report::ReportArgs,
    run::RunArgs,
};
use zvbench::Interrupt;

/// Benchmarks a VM guest's storage end to end and traces every flush from the guest down
/// to the host device.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario: provision, benchmark, trace flushes, tear down, report.
    Run(RunArgs),
    /// Validate a scenario and run every host check that creates nothing.
    Check(CheckArgs),
    /// Write summary.md, plots/ (PNG, SVG) and report.html for a run directory; print the summary.
    Report(ReportArgs),
    /// Compare a history of baseline runs with the current run; exit 1 on flushes lost at
    /// any layer or a regression a confirmation run (`--confirm`) shows too, 3 on a
    /// regression in one current run (confirm it), 2 on bad input.
    Compare(CompareArgs),
    /// Turn fio JSON or sysbench fileio text into results.csv rows in a run directory.
    Import {
        #[command(subcommand)]
        tool: ImportTool,
    },
    /// One metric across many runs, ordered by their run.json date: a table and a plot.
    History(HistoryArgs),
    /// The bootable guest ISO.
    Image {
        #[command(subcommand)]
        action: ImageAction,
    },
    /// Remove what dead runs left (never a live run's): their QEMU processes, loop devices,
    /// files named as zvbench names them, tagged datasets, VirtualBox VMs. Exit 1 if
    /// something could not be removed.
    Clean(CleanArgs),
    /// Say what this host can run and what is missing.
    Doctor,
    /// Run a command in the ZFS lab: a VM with real OpenZFS (modules built once for the
    /// guest kernel), the host's root read-only, and pool disks /dev/vda, /dev/vdb, ….
    /// Exits with the command's status.
    Lab(Box<LabArgs>),
    /// Inside the lab VM: one half of `zvbench lab --powercut` (run as the lab's command).
    #[command(hide = true)]
    LabCutStep {
        #[command(subcommand)]
        step: CutStep,
    },
    /// Inside the lab VM: PID 1 on the host's root (started by the lab's initramfs).
    #[command(hide = true)]
    LabGuest {
        /// The job file in the control share.
        job: std::path::PathBuf,
    },
}

impl Cmd {
    /// A run, a lab VM and an image build (which may build the minimal kernel: make's
    /// process group is ended on the way out) unwind through their guards on a signal;
    /// every other command has nothing to tear down and stops at once.
    fn unwinds(&self) -> bool {
        matches!(self, Cmd::Run(_) | Cmd::Lab(_) | Cmd::Image { .. })
    }

    /// Output-only commands stop quietly when their reader goes (`zvbench compare … |
    /// head`), as Unix tools do, instead of panicking on a write to a closed pipe.
    fn output_only(&self) -> bool {
        !matches!(self, Cmd::Run(_) | Cmd::Lab(_) | Cmd::LabGuest { .. })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The library's progress, notes and warnings: printed as lines, as they always were.
    zvbench::observe::install(&zvbench::observe::Console);
    let stop = Interrupt::default();
    if cli.cmd.output_only() {
        // SAFETY: setting a signal's disposition before any thread is started.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    if let Err(e) = stop.watch(cli.cmd.unwinds()) {
        eprintln!("zvbench: warning: cannot catch signals ({e}); an interrupted run may leave files: `zvbench clean`");
    }
    let r = dispatch(cli.cmd, &stop);
    let code = match r {
        Ok(c) => stop.exit_code().unwrap_or(c),
        Err(e) => {
            eprintln!("zvbench: error: {}", zvbench::chain(&e));
            stop.exit_code().unwrap_or(2)
        }
    };
    // Statuses are 0..=255 (a lab command's own, or 128 + a signal).
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}

/// Runs one subcommand; its exit status.
fn dispatch(cmd: Cmd, stop: &Interrupt) -> anyhow::Result<i32> {
    match cmd {
        Cmd::Run(a) => commands::run::run(a, stop),
        Cmd::Check(a) => commands::check::check(&a),
        Cmd::Report(a) => commands::report::report(&a),
        Cmd::Compare(a) => commands::compare::compare(&a),
        Cmd::Import { tool } => commands::import::import(&tool),
        Cmd::History(a) => commands::history::history(&a),
        Cmd::Image { action } => commands::image::image(action, stop),
        Cmd::Clean(a) => Ok(commands::clean::command(a)),
        Cmd::Doctor => Ok(commands::doctor::report(
            &commands::cache_dir(),
            &commands::vboxmanage(),
        )),
        Cmd::Lab(a) => commands::lab::lab(*a, stop),
        Cmd::LabCutStep { step } => commands::lab::cut_step(step),
        Cmd::LabGuest { job } => zvbench::lab::guest::main(&job),
    }
}
