//! The engine's command line.
//!
//! - `check-model DIR`: everything the engine can check about a model directory without a clip —
//!   manifest, file hashes, tensors, the four sessions against the manifest, one run of each graph
//!   on zeros — so that an export is accepted or refused before it reaches a host.
//! - `track`: runs an interaction script on a clip and writes a matte sequence per object (and,
//!   with `--trace`, a reference trace), so that the engine can be used and checked without a
//!   compositing host.
//!
//! Every failure is one line on stderr, `error: <sentence>`, and exit code 1; a usage error is
//! clap's message and exit code 2; a run stopped by SIGINT, SIGTERM or SIGHUP leaves no output
//! and exits with 128 + the signal's number (130, 143, 129).

mod args;
mod check_model;
mod error;
mod lock;
mod mattes;
mod progress;
mod signals;
mod track;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::error::CliError;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version exit 0, usage errors 2, as clap decides.
        Err(e) => e.exit(),
    };
    progress::install_logger(cli.verbose);
    let outcome = match cli.command {
        Command::CheckModel(args) => check_model::run(&args),
        // Before anything starts a thread: the threads inherit the blocked signals.
        Command::Track(args) => signals::install().and_then(|()| track::run(&args)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            progress::print_line(&format!("error: {e}"));
            match e {
                CliError::Stopped { signal } => ExitCode::from(signal.exit_code()),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
