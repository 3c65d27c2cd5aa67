//! The engine's command line.
//!
//! - `check-model DIR`: everything the engine can check about a model directory without a clip —
//!   manifest, file hashes, tensors, the four sessions against the manifest, one run of each graph
//!   on zeros — so that an export is accepted or refused before it reaches a host.
//! - `track`: runs an interaction script on a clip and writes a matte sequence per object (and,
//!   with `--trace`, a reference trace; with `--cache`, a track cache), so that the engine can be
//!   used and checked without a compositing host.
//! - `render`: matte sequences of a frame range from a track cache alone (no model, no ONNX
//!   Runtime): the render tasks of a farm job whose tracking task wrote the cache.
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
mod render;
mod report;
mod runtime_dir;
mod signals;
mod track;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command, DeviceArg};
use crate::error::CliError;
use crate::report::Report;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    let device = match &cli.command {
        Command::Track(args) => Some(args.device),
        Command::Render(args) => Some(args.device),
        Command::CheckModel(_) => None,
    };
    if device.is_some_and(|d| d != DeviceArg::Cpu) {
        // Before anything else: it may run this command again, in this process.
        runtime_dir::ensure();
    }
    progress::install_logger(cli.verbose);
    let mut report = Report::new();
    let outcome =
        match cli.command {
            Command::CheckModel(args) => check_model::run(&args, &mut report),
            // Before anything starts a thread: the threads inherit the blocked signals.
            Command::Track(args) => signals::install(signals::Output::Staged)
                .and_then(|()| track::run(&args, &mut report)),
            // A signal stops a render after the mattes being written (each written beside its place
            // and renamed when whole).
            Command::Render(args) => signals::install(signals::Output::Shared)
                .and_then(|()| render::run(&args, &mut report)),
        };
    match outcome.and_then(|done| report.finish(done)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            progress::print_line(&format!("error: {e}"));
            match e {
                CliError::Stopped { signal } | CliError::RenderStopped { signal } => {
                    ExitCode::from(signal.exit_code())
                }
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// Help and version exit 0, usage errors 2, as clap decides — and help that cannot be printed is
/// not a panic: a closed pipe keeps clap's code, any other failure is an error (1).
fn clap_exit(e: &clap::Error) -> ExitCode {
    let code = ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1));
    match e.print() {
        Ok(()) => code,
        Err(io) if io.kind() == std::io::ErrorKind::BrokenPipe => code,
        Err(io) => {
            progress::print_line(&format!("error: Could not print to stdout: {io}."));
            ExitCode::FAILURE
        }
    }
}
