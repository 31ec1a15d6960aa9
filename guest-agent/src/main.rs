//! `zvbench-agent`: runs passes from the command line, or a job file as PID 1 in a guest.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::{IsTerminal, Write};
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
        /// Run the pass this many times.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
    },
    /// Act as PID 1 in a zvbench initramfs (automatic when the agent is PID 1).
    Init,
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

fn real_main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Init => bail!("init mode only runs as PID 1 inside a zvbench initramfs"),
        Cmd::Run {
            spec,
            format,
            repeat,
        } => {
            let tty = std::io::stderr().is_terminal();
            let mut stdout = std::io::stdout().lock();
            let mut any_verify_failed = false;
            for i in 0..repeat.max(1) {
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
