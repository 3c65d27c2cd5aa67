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
//! clap's message and exit code 2; an interrupted run exits with 130 and leaves no output.

mod args;
mod check_model;
mod error;
mod interrupt;
mod mattes;
mod progress;
mod track;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version exit 0, usage errors 2, as clap decides.
        Err(e) => e.exit(),
    };
    progress::install_logger(cli.verbose);
    let outcome = match cli.command {
        Command::CheckModel(args) => check_model::run(&args),
        Command::Track(args) => interrupt::install().and_then(|()| track::run(&args)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            progress::print_line(&format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}
