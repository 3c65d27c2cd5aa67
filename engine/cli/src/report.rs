//! What the command line prints on stdout: a report of work that is already done.
//!
//! `println!` panics when stdout is closed (`… | head -1`) or full (`> /dev/full`), after the
//! work was done and committed. Here a failed write ends the printing, not the command: the
//! command finishes, and [`Report::finish`] says what became of the report. A closed pipe means
//! the reader wanted no more, so it is not an error (exit 0, one note on stderr); any other
//! failure is (exit 1), with a sentence saying that the work itself was done.

use std::io::{self, Write};

use crate::error::CliError;
use crate::progress;

/// Lines for stdout; see the module documentation.
#[derive(Debug, Default)]
pub struct Report {
    failure: Option<io::Error>,
}

impl Report {
    pub fn new() -> Report {
        Report::default()
    }

    /// Prints `line` unless an earlier line could not be printed.
    pub fn line(&mut self, line: &str) {
        if self.failure.is_some() {
            return;
        }
        let mut out = io::stdout().lock();
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            self.failure = Some(e);
        }
    }

    /// `Ok` when everything was printed or the reader closed stdout; `done` says what was done
    /// in spite of a failure, as the start of a sentence ("The mattes are in out").
    pub fn finish(self, done: String) -> Result<(), CliError> {
        match self.failure {
            None => Ok(()),
            Some(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                progress::print_line("note: stdout was closed, so the report was not printed.");
                Ok(())
            }
            Some(source) => Err(CliError::Stdout { done, source }),
        }
    }
}

/// `; peak memory N MiB` — the process's peak resident set so far (`VmHWM`, Linux), what a farm
/// job's memory request is sized by; empty where the system does not say.
pub fn peak_memory() -> String {
    let kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        });
    kib.map(|kib| format!("; peak memory {:.1} MiB", kib as f64 / 1024.0))
        .unwrap_or_default()
}
