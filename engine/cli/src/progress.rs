//! Everything the command line prints while it works: the progress bar and the engine's log.
//!
//! Both go to stderr and must not tear each other: a log line printed while the bar is drawn is
//! printed above it ([`print_line`]). The bar is drawn only when stderr is a terminal, so logs
//! and CI output stay plain text.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};
use log::{Level, LevelFilter, Log, Metadata, Record};
use parking_lot::Mutex;

/// The bar being drawn, if any.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A progress bar over `total` frame updates; hidden when stderr is not a terminal.
pub fn start(total: u64) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:>13} [{bar:30}] {pos}/{len} frames, {per_sec}, {eta} left",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    *BAR.lock() = Some(bar.clone());
    bar
}

/// Removes the bar from the screen.
pub fn finish() {
    if let Some(bar) = BAR.lock().take() {
        bar.finish_and_clear();
    }
}

/// Prints a line to stderr, above the bar if one is drawn. A stderr that cannot be written is
/// ignored: there is nowhere left to say so.
pub fn print_line(line: &str) {
    let print = || {
        let _ = writeln!(std::io::stderr(), "{line}");
    };
    let bar = BAR.lock().clone();
    match bar {
        Some(bar) if !bar.is_hidden() => bar.suspend(print),
        _ => print(),
    }
}

/// The engine's `log` records on stderr: warnings always, information with `--verbose`. Only
/// the engine's own records: its dependencies (wgpu, naga) log internals a user cannot act on.
struct StderrLog;

static LOG: StderrLog = StderrLog;

impl Log for StderrLog {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level() && metadata.target().starts_with("sam2_engine")
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let word = match record.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug | Level::Trace => "debug",
        };
        print_line(&format!("{word}: {}", record.args()));
    }

    fn flush(&self) {}
}

pub fn install_logger(verbose: bool) {
    // Fails only if a logger is already set, which nothing else in this binary does.
    if log::set_logger(&LOG).is_ok() {
        log::set_max_level(if verbose {
            LevelFilter::Info
        } else {
            LevelFilter::Warn
        });
    }
}
