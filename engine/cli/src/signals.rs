//! Stopping a run on SIGINT (Ctrl-C), SIGTERM (`kill`, `timeout`, `docker stop`, farm managers)
//! and SIGHUP (a closed terminal), leaving nothing half-written behind.
//!
//! The three signals are blocked in every thread ([`install`] runs before any other thread is
//! started, and threads inherit the mask) and received by one thread of ours with `sigwait`: no
//! code runs in a signal context, and the signal's number is known. That thread only raises a
//! flag ([`check`], [`stop_requested`]); the main thread polls it between model calls and
//! frames, returns from the graph it is in, drops its staging folders (which removes them) and
//! prints one line. Ending the process while ONNX Runtime runs a graph would print its own errors
//! and leave the staging folders to chance.
//!
//! `render` writes into a folder other tasks share, each matte beside its place then renamed: a
//! first signal lets the mattes being written finish (each is whole) and stops; the files being
//! written are registered here too, so that a second signal removes them.
//!
//! A second signal while the run stops means "now": the signal thread removes the staging folders
//! and files registered here, prints its line and lets the signal's default action end the
//! process (a parent sees it killed by that signal; a shell reports 128 + its number). [`commit`]
//! holds the same lock as that removal, so a finished output is never removed half-way through
//! its rename.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use parking_lot::Mutex;

use crate::error::CliError;
use crate::progress;

/// The signals that stop a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Interrupt,
    Terminate,
    Hangup,
}

impl StopSignal {
    const ALL: [StopSignal; 3] = [
        StopSignal::Interrupt,
        StopSignal::Terminate,
        StopSignal::Hangup,
    ];

    fn signal(self) -> Signal {
        match self {
            StopSignal::Interrupt => Signal::SIGINT,
            StopSignal::Terminate => Signal::SIGTERM,
            StopSignal::Hangup => Signal::SIGHUP,
        }
    }

    fn from_signal(signal: Signal) -> Option<StopSignal> {
        StopSignal::ALL.into_iter().find(|s| s.signal() == signal)
    }

    /// `SIGINT`, `SIGTERM`, `SIGHUP`.
    pub fn name(self) -> &'static str {
        self.signal().as_str()
    }

    /// The shell's convention for a process ended by a signal: 128 + its number (130 for
    /// SIGINT, 143 for SIGTERM, 129 for SIGHUP).
    pub fn exit_code(self) -> u8 {
        match self {
            StopSignal::Interrupt => 130,
            StopSignal::Terminate => 143,
            StopSignal::Hangup => 129,
        }
    }
}

impl std::fmt::Display for StopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The signal that asked the run to stop (its number), 0 while none has.
static STOP: AtomicI32 = AtomicI32::new(0);

/// What the signal thread removes before it ends the process on a second signal.
#[derive(Debug)]
enum Leftover {
    Folder(PathBuf),
    File(PathBuf),
}

static LEFTOVERS: Mutex<Vec<Leftover>> = Mutex::new(Vec::new());

/// What a run writes, for the line a second signal prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// A staged output, renamed into place at the end (`track`): all or nothing.
    Staged,
    /// Files renamed into a shared folder one by one (`render`): those written are whole.
    Shared,
}

static OUTPUT: AtomicU8 = AtomicU8::new(Output::Staged as u8);

/// Whether the output has been renamed into place ([`commit`]).
static STAGE: AtomicU8 = AtomicU8::new(BEFORE_COMMIT);
const BEFORE_COMMIT: u8 = 0;
const COMMITTED: u8 = 1;

/// Blocks the stop signals in this thread — and so in every thread started after — and starts
/// the thread that receives them. Must run before any other thread is started.
pub fn install(output: Output) -> Result<(), CliError> {
    OUTPUT.store(output as u8, Ordering::SeqCst);
    let mut set = SigSet::empty();
    for s in StopSignal::ALL {
        set.add(s.signal());
    }
    let handler_error = |message: String| CliError::SignalHandler { message };
    set.thread_block()
        .map_err(|e| handler_error(e.to_string()))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || receive(set))
        .map_err(|e| handler_error(e.to_string()))?;
    Ok(())
}

fn receive(set: SigSet) {
    // sigwait fails only for a set it cannot wait on, which would fail every time.
    while let Ok(signal) = set.wait() {
        let Some(stop) = StopSignal::from_signal(signal) else {
            continue;
        };
        if STOP
            .compare_exchange(0, signal as i32, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            stop_now(stop);
        }
    }
}

/// A second signal: remove what is registered and end the process at once.
fn stop_now(stop: StopSignal) -> ! {
    // Held until the process ends, so that no commit starts after this.
    let leftovers = LEFTOVERS.lock();
    for leftover in leftovers.iter() {
        match leftover {
            Leftover::Folder(path) => remove_folder(path),
            Leftover::File(path) => {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    // After the commit the output is complete, and the line must not say otherwise.
    progress::print_line(&if OUTPUT.load(Ordering::SeqCst) == Output::Shared as u8 {
        format!(
            "error: Stopped at once by a second {stop}; the mattes written before are whole, the ones being written were removed."
        )
    } else if STAGE.load(Ordering::SeqCst) == COMMITTED {
        format!("error: Stopped at once by a second {stop}, after the output was complete.")
    } else {
        format!("error: Stopped at once by a second {stop}; nothing was written.")
    });
    // The signal's own default action ends the process: no atexit handlers (ONNX Runtime's
    // teardown under a running graph is what prints), and the parent sees "killed by SIGxxx".
    // No handler was ever installed, so unblocking the signal here and raising it does that.
    let mut set = SigSet::empty();
    set.add(stop.signal());
    let _ = set.thread_unblock();
    let _ = nix::sys::signal::raise(stop.signal());
    std::process::exit(i32::from(stop.exit_code()))
}

/// Removes `path`, retrying while a writer thread still adds files to it.
fn remove_folder(path: &Path) {
    for _ in 0..50 {
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => return,
        }
    }
}

/// The signal that asked the run to stop, if one has.
pub fn stop_requested() -> Option<StopSignal> {
    match STOP.load(Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n).ok().and_then(StopSignal::from_signal),
    }
}

/// `Err` once a signal asked the run to stop.
pub fn check() -> Result<(), CliError> {
    match stop_requested() {
        Some(signal) => Err(CliError::Stopped { signal }),
        None => Ok(()),
    }
}

/// Runs `create`, which makes a staging folder, and registers the folder (`path` of what it
/// returns) for removal on a second signal. Both happen under the registry's lock, so that a
/// second signal either sees the folder registered or stops the process before it exists.
pub fn create_folder<T, E>(
    create: impl FnOnce() -> Result<T, E>,
    path: impl FnOnce(&T) -> &Path,
) -> Result<T, E> {
    let mut leftovers = LEFTOVERS.lock();
    let made = create()?;
    leftovers.push(Leftover::Folder(path(&made).to_path_buf()));
    Ok(made)
}

/// [`create_folder`] for a lock file.
pub fn create_file<T, E>(
    create: impl FnOnce() -> Result<T, E>,
    path: impl FnOnce(&T) -> &Path,
) -> Result<T, E> {
    let mut leftovers = LEFTOVERS.lock();
    let made = create()?;
    leftovers.push(Leftover::File(path(&made).to_path_buf()));
    Ok(made)
}

/// Creates the file `path` (a matte written beside its place, renamed over it when whole) and
/// registers it for removal on a second signal until [`forget_file`].
pub fn create_temp_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut leftovers = LEFTOVERS.lock();
    let file = std::fs::File::create(path)?;
    leftovers.push(Leftover::File(path.to_path_buf()));
    Ok(file)
}

/// Forgets a file [`create_temp_file`] registered (renamed into place, or removed).
pub fn forget_file(path: &Path) {
    LEFTOVERS
        .lock()
        .retain(|l| !matches!(l, Leftover::File(p) if p == path));
}

/// Runs `renames` (moving the staging folders into place) unless a signal asked the run to stop
/// first, where a second signal cannot interrupt it; then forgets the staging folders.
pub fn commit<T>(renames: impl FnOnce() -> Result<T, CliError>) -> Result<T, CliError> {
    let mut leftovers = LEFTOVERS.lock();
    check()?;
    let result = renames();
    if result.is_ok() {
        STAGE.store(COMMITTED, Ordering::SeqCst);
    }
    leftovers.retain(|l| matches!(l, Leftover::File(_)));
    result
}
