//! `zvbench-agent`: runs passes from the command line, or a job file as PID 1 in a guest.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use zvbench_agent::output::{self, Format};
use zvbench_agent::pass::{run_pass, verify_failed, Observer, PassSpec, Quiet};

/// zvbench's guest agent: sequential I/O with flush controls and latency histograms.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one pass (optionally repeated) on a file or block device.
    Run {
        #[command(flatten)]
        spec: PassSpec,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Run the pass this many times (at least 1).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        repeat: u32,
        /// Write --path even though it holds data zvbench did not write (never a file or
        /// device in use). Must name the same file or device as --path.
        #[arg(long, value_name = "PATH")]
        allow_destroy: Option<PathBuf>,
    },
    /// Act as PID 1 in a zvbench initramfs (automatic when the agent is PID 1).
    Init,
    /// Run a job file's passes as an ordinary process, sending the frames PID 1 mode
    /// sends (hello, marks, sync acknowledgements, records, done) to its frame port.
    Job {
        /// The job file (JSON, as the runner writes it).
        file: PathBuf,
    },
}

fn main() {
    if std::process::id() == 1 {
        zvbench_agent::init::main();
    }
    if let Err(e) = real_main() {
        eprintln!(
            "zvbench-agent: error: {}",
            zvbench_agent::error_chain(e.as_ref())
        );
        std::process::exit(2);
    }
}

/// Shows progress on a terminal.
struct Bar {
    workload: &'static str,
    rep: u32,
    reps: u32,
    shown: bool,
}

impl Observer for Bar {
    fn progress(&mut self, done: u64, total: u64, el: Duration) {
        self.shown = true;
        eprint!(
            "\r{} {}/{}: {:>3}% {:.1} MiB/s   ",
            self.workload,
            self.rep,
            self.reps,
            done * 100 / total.max(1),
            done as f64 / (1u64 << 20) as f64 / el.as_secs_f64().max(1e-9)
        );
    }
}

/// Whether two paths name the same file or device (after resolving links).
fn names_same(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Init => bail!("init mode only runs as PID 1 inside a zvbench initramfs"),
        Cmd::Job { file } => zvbench_agent::init::run_file(&file)
            .map(drop)
            .map_err(anyhow::Error::msg),
        Cmd::Run {
            mut spec,
            format,
            repeat,
            allow_destroy,
        } => {
            if let Some(named) = allow_destroy {
                spec.allow_destroy = names_same(&named, &spec.path);
                if !spec.allow_destroy {
                    bail!(
                        "--allow-destroy {} does not name --path {}; name exactly the file or device that may be lost",
                        named.display(),
                        spec.path.display()
                    );
                }
            }
            let tty = std::io::stderr().is_terminal();
            let mut stdout = std::io::stdout().lock();
            let mut any_verify_failed = false;
            for i in 0..repeat {
                let mut bar = Bar {
                    workload: spec.workload.as_str(),
                    rep: i + 1,
                    reps: repeat,
                    shown: false,
                };
                let obs: &mut dyn Observer = if tty { &mut bar } else { &mut Quiet };
                let rec =
                    run_pass(&spec, obs).with_context(|| format!("pass {} of {repeat}", i + 1))?;
                if bar.shown {
                    eprint!("\r\x1b[K");
                }
                any_verify_failed |= verify_failed(&rec);
                output::write(&mut stdout, format, std::slice::from_ref(&rec), i == 0)?;
                stdout.flush()?;
            }
            if any_verify_failed {
                bail!("verification failed: some blocks did not read back as written (see verify above)");
            }
            Ok(())
        }
    }
}
