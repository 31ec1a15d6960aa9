//! Where the library's messages go: progress lines, notes and warnings reach one
//! [`Observer`], installed once by the binary (`zvbench`'s prints them as it always has);
//! library modules call [`progress!`], [`note!`], [`warning!`] or [`output!`] instead of
//! printing. The observer is process-wide rather than passed down because some messages
//! come from where no caller can hand one in: a teardown step failing in `Drop`, the
//! signal thread.

use std::fmt;
use std::sync::OnceLock;

/// What kind of message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A step of a run starting or ending.
    Progress,
    /// Something worth knowing that changes no result (a fallback taken, a build begun).
    Note,
    /// Something failed, and zvbench goes on (a target, a teardown step).
    Warning,
    /// A result line of a subcommand run inside the lab VM (its standard output).
    Output,
}

/// One of a command's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Its standard output.
    Stdout,
    /// Its standard error.
    Stderr,
}

/// Receives the library's messages.
pub trait Observer: Sync {
    /// One message: a whole line as zvbench prints it, with its `zvbench:` prefix.
    fn message(&self, level: Level, text: fmt::Arguments<'_>);
    /// Bytes the command in the lab VM wrote to `stream`, as they come (not lines).
    fn command_output(&self, stream: Stream, bytes: &[u8]);
}

/// The CLI's observer: [`Level::Output`] on standard output, the rest on standard error,
/// one line each; a lab command's output on zvbench's stream of the same name.
pub struct Console;

impl Observer for Console {
    fn message(&self, level: Level, text: fmt::Arguments<'_>) {
        match level {
            Level::Output => println!("{text}"),
            Level::Progress | Level::Note | Level::Warning => eprintln!("{text}"),
        }
    }

    fn command_output(&self, stream: Stream, bytes: &[u8]) {
        use std::io::Write;
        let mut to: Box<dyn Write> = match stream {
            Stream::Stdout => Box::new(std::io::stdout().lock()),
            Stream::Stderr => Box::new(std::io::stderr().lock()),
        };
        // A reader that went away loses the copy, not the command.
        let _ = to.write_all(bytes);
        let _ = to.flush();
    }
}

static OBSERVER: OnceLock<&'static dyn Observer> = OnceLock::new();

/// Installs the process's observer; `false` when one was installed before (it stays).
/// Until one is installed, messages go to [`Console`].
pub fn install(o: &'static dyn Observer) -> bool {
    OBSERVER.set(o).is_ok()
}

fn observer() -> &'static dyn Observer {
    OBSERVER.get().copied().unwrap_or(&Console)
}

/// Sends one message to the observer.
pub fn emit(level: Level, text: fmt::Arguments<'_>) {
    observer().message(level, text);
}

/// Sends a lab command's output to the observer.
pub fn command_output(stream: Stream, bytes: &[u8]) {
    observer().command_output(stream, bytes);
}

/// A progress line ([`Level::Progress`]), `format!` syntax.
macro_rules! progress {
    ($($t:tt)*) => {
        $crate::observe::emit($crate::observe::Level::Progress, format_args!($($t)*))
    };
}

/// A note ([`Level::Note`]), `format!` syntax.
macro_rules! note {
    ($($t:tt)*) => {
        $crate::observe::emit($crate::observe::Level::Note, format_args!($($t)*))
    };
}

/// A warning ([`Level::Warning`]), `format!` syntax.
macro_rules! warning {
    ($($t:tt)*) => {
        $crate::observe::emit($crate::observe::Level::Warning, format_args!($($t)*))
    };
}

/// A result line ([`Level::Output`]), `format!` syntax.
macro_rules! output {
    ($($t:tt)*) => {
        $crate::observe::emit($crate::observe::Level::Output, format_args!($($t)*))
    };
}

pub(crate) use {note, output, progress, warning};

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Keeps what it is sent, and passes it on to the console (other tests' messages
    /// arrive here too once it is installed).
    struct Capture(Mutex<Vec<(Level, String)>>);

    impl Observer for Capture {
        fn message(&self, level: Level, text: fmt::Arguments<'_>) {
            Console.message(level, text);
            self.0.lock().unwrap().push((level, text.to_string()));
        }

        fn command_output(&self, stream: Stream, bytes: &[u8]) {
            Console.command_output(stream, bytes);
            let text = format!("{stream:?}: {}", String::from_utf8_lossy(bytes));
            self.0.lock().unwrap().push((Level::Output, text));
        }
    }

    #[test]
    fn messages_reach_the_installed_observer_with_their_level() {
        static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));
        assert!(install(&CAPTURE));
        assert!(!install(&Console), "the first observer stays");
        warning!("zvbench: warning: test {}", 1);
        progress!("      pass {}", "a");
        command_output(Stream::Stderr, b"partial");
        let got = CAPTURE.0.lock().unwrap().clone();
        assert!(got.contains(&(Level::Warning, "zvbench: warning: test 1".into())));
        assert!(got.contains(&(Level::Progress, "      pass a".into())));
        assert!(got.contains(&(Level::Output, "Stderr: partial".into())));
    }
}
