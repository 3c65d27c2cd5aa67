//! The plugin's log: a file the artist (or whoever supports them) can read when the host only
//! says "could not start". Inside a host, `log` messages would otherwise go nowhere.
//!
//! - `SAM2_ROTOSCOPE_LOG` = `off`, `error`, `warn` (the default), `info`, `debug` or `trace`: how
//!   much is written.
//! - `SAM2_ROTOSCOPE_LOG_FILE`: the file; by default `sam2-rotoscope.log` in
//!   `$XDG_CACHE_HOME/sam2-rotoscope/logs/` (else `~/.cache/sam2-rotoscope/logs/`) on Linux,
//!   `~/Library/Logs/SAM2Rotoscope/` on macOS, `%LOCALAPPDATA%\SAM2Rotoscope\logs\` on Windows.
//! - Rotated by size: past [`MAX_BYTES`] the file becomes `….log.1` (and `.1` becomes `.2`, …),
//!   keeping [`KEEP`] old files.
//!
//! Installed once, at kOfxActionLoad ([`install`]); it never panics, and when the file cannot be
//! opened logging stays off. Every persistent error message ends with [`pointer`], which names
//! the file.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};
use once_cell::sync::OnceCell;
use parking_lot::Mutex;

/// The environment variable that sets how much is logged.
pub const LEVEL_ENV: &str = "SAM2_ROTOSCOPE_LOG";
/// The environment variable that names the log file.
pub const FILE_ENV: &str = "SAM2_ROTOSCOPE_LOG_FILE";
/// The size past which the file is rotated.
pub const MAX_BYTES: u64 = 5 << 20;
/// How many rotated files are kept.
pub const KEEP: usize = 3;

const FILE_NAME: &str = "sam2-rotoscope.log";

/// Where the log goes, and whether it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Writing to this file.
    On(PathBuf),
    /// Off by choice; the file it would go to, when one is known.
    Off(Option<PathBuf>),
    /// On, but this file could not be opened (or another logger was installed first).
    Unwritable(PathBuf),
}

static DESTINATION: OnceCell<Destination> = OnceCell::new();

/// The level `SAM2_ROTOSCOPE_LOG` asks for; `warn` when unset or not a level.
pub fn parse_level(value: Option<&str>) -> LevelFilter {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Some("off") => LevelFilter::Off,
        Some("error") => LevelFilter::Error,
        Some("info") => LevelFilter::Info,
        Some("debug") => LevelFilter::Debug,
        Some("trace") => LevelFilter::Trace,
        _ => LevelFilter::Warn,
    }
}

/// The default log file for this platform, from the environment given (`var`).
pub fn default_file(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    // Logs sit under the user's cache folder, except on macOS, whose place for them is ~/Library/Logs.
    let dir = if cfg!(target_os = "macos") {
        var("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join("Library/Logs/SAM2Rotoscope"))
    } else {
        sam2_engine::user_cache::user_cache_dir(var).map(|d| d.join("logs"))
    };
    dir.map(|d| d.join(FILE_NAME))
}

/// A size-rotated log file.
#[derive(Debug)]
pub struct Sink {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    state: Mutex<Option<(File, u64)>>,
}

impl Sink {
    /// Opens (creating its folder) `path` for appending.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> std::io::Result<Sink> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Sink {
            path: path.to_path_buf(),
            max_bytes,
            keep,
            state: Mutex::new(Some((file, size))),
        })
    }

    /// `path.n`.
    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Moves the file to `.1` (and older ones up, the oldest out) and starts a new one.
    fn rotate(&self, state: &mut Option<(File, u64)>) {
        *state = None;
        // Failures leave the files where they are: the next write appends to the old file.
        let _ = fs::remove_file(self.rotated(self.keep));
        for n in (1..self.keep).rev() {
            let _ = fs::rename(self.rotated(n), self.rotated(n + 1));
        }
        if self.keep > 0 {
            let _ = fs::rename(&self.path, self.rotated(1));
        } else {
            let _ = fs::remove_file(&self.path);
        }
        *state = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .ok()
            .map(|f| (f, 0));
    }

    /// Appends one line, rotating first when it would pass the size limit.
    pub fn write_line(&self, line: &str) {
        let mut state = self.state.lock();
        let len = line.len() as u64 + 1;
        if state
            .as_ref()
            .is_none_or(|(_, size)| *size > 0 && size + len > self.max_bytes)
        {
            self.rotate(&mut state);
        }
        if let Some((file, size)) = state.as_mut()
            && writeln!(file, "{line}").is_ok()
        {
            *size += len;
        }
    }

    fn flush(&self) {
        if let Some((file, _)) = self.state.lock().as_mut() {
            let _ = file.flush();
        }
    }
}

/// Civil date and time (UTC) of a Unix time, as `YYYY-MM-DDTHH:MM:SSZ` (no date crate needed:
/// Howard Hinnant's days-to-civil algorithm).
pub fn timestamp(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The `log` implementation: every record at or above the level, one line each.
#[derive(Debug)]
struct FileLogger {
    level: LevelFilter,
    sink: Sink,
}

impl Log for FileLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // One line per record: a message's own line breaks are kept visible but inline.
        let message = record.args().to_string().replace('\n', " ⏎ ");
        self.sink.write_line(&format!(
            "{} {:<5} [{}] {}: {message}",
            timestamp(now),
            record.level(),
            std::process::id(),
            record.target()
        ));
    }

    fn flush(&self) {
        self.sink.flush();
    }
}

static LOGGER: OnceCell<FileLogger> = OnceCell::new();

/// Where the environment says the log goes, with its level.
fn configured() -> (LevelFilter, Option<PathBuf>) {
    let level = parse_level(std::env::var(LEVEL_ENV).ok().as_deref());
    let path = std::env::var_os(FILE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| default_file(|name| std::env::var_os(name)));
    (level, path)
}

/// Installs the logger once per process, as the environment says; later calls do nothing.
/// Never fails: when the file cannot be opened, or another logger is installed, it stays off.
pub fn install() -> &'static Destination {
    DESTINATION.get_or_init(|| {
        let (level, path) = configured();
        let Some(path) = path else {
            return Destination::Off(None);
        };
        if level == LevelFilter::Off {
            return Destination::Off(Some(path));
        }
        let Ok(sink) = Sink::open(&path, MAX_BYTES, KEEP) else {
            return Destination::Unwritable(path);
        };
        let logger = LOGGER.get_or_init(|| FileLogger { level, sink });
        if log::set_logger(logger).is_err() {
            return Destination::Unwritable(path);
        }
        log::set_max_level(level);
        log::info!(
            "SAM 2 Rotoscope {} logging at level {level} to {}",
            env!("CARGO_PKG_VERSION"),
            path.display()
        );
        Destination::On(path)
    })
}

/// The sentence that ends every persistent error message: where to read more.
pub fn pointer() -> String {
    match DESTINATION.get() {
        Some(Destination::On(path)) => format!("Details are in the log, {}.", path.display()),
        Some(Destination::Off(Some(path))) => format!(
            "For details, start the host with the environment variable {LEVEL_ENV}=debug; the log then goes to {}.",
            path.display()
        ),
        Some(Destination::Unwritable(path)) => format!(
            "The log could not be written to {}; set {FILE_ENV} to a file that can be, and restart the host, for details.",
            path.display()
        ),
        Some(Destination::Off(None)) | None => format!(
            "For details, start the host with the environment variables {LEVEL_ENV}=debug and {FILE_ENV} set to a log file."
        ),
    }
}

/// `text` followed by [`pointer`].
pub fn with_pointer(text: &str) -> String {
    format!("{text} {}", pointer())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_default_to_warnings() {
        assert_eq!(parse_level(None), LevelFilter::Warn);
        assert_eq!(parse_level(Some("nonsense")), LevelFilter::Warn);
        assert_eq!(parse_level(Some(" DEBUG ")), LevelFilter::Debug);
        assert_eq!(parse_level(Some("off")), LevelFilter::Off);
        assert_eq!(parse_level(Some("error")), LevelFilter::Error);
        assert_eq!(parse_level(Some("trace")), LevelFilter::Trace);
    }

    #[test]
    fn the_default_file_follows_the_platform_conventions() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let home_only = default_file(env(&[("HOME", "/home/a")]));
        let with_cache = default_file(env(&[("HOME", "/home/a"), ("XDG_CACHE_HOME", "/c")]));
        let with_appdata = default_file(env(&[("LOCALAPPDATA", "C:/Users/a/AppData/Local")]));
        if cfg!(target_os = "linux") {
            assert_eq!(
                home_only,
                Some(PathBuf::from(
                    "/home/a/.cache/sam2-rotoscope/logs/sam2-rotoscope.log"
                ))
            );
            assert_eq!(
                with_cache,
                Some(PathBuf::from("/c/sam2-rotoscope/logs/sam2-rotoscope.log"))
            );
            assert_eq!(with_appdata, None);
        }
        assert_eq!(default_file(env(&[])), None);
    }

    #[test]
    fn the_file_rotates_by_size_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/er/test.log");
        let sink = Sink::open(&path, 100, 2).unwrap();
        for i in 0..20 {
            sink.write_line(&format!("line {i:02} {}", "x".repeat(20)));
        }
        sink.flush();
        let read = |p: &Path| fs::read_to_string(p).unwrap();
        // 30 bytes a line: three lines a file; 20 lines = 6 full files and 2 lines.
        assert_eq!(read(&path).lines().count(), 2);
        assert!(read(&path).starts_with("line 18"));
        assert!(read(&sink.rotated(1)).starts_with("line 15"));
        assert!(read(&sink.rotated(2)).starts_with("line 12"));
        assert!(!sink.rotated(3).exists(), "only two old files are kept");
        for p in [path.clone(), sink.rotated(1), sink.rotated(2)] {
            assert!(fs::metadata(&p).unwrap().len() <= 100, "{}", p.display());
        }
        // Reopened, it appends.
        drop(sink);
        let again = Sink::open(&path, 100, 2).unwrap();
        again.write_line("line 20");
        again.flush();
        assert_eq!(read(&path).lines().last(), Some("line 20"));
    }

    #[test]
    fn timestamps_are_utc_civil_time() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(timestamp(1_796_558_399), "2026-12-06T11:59:59Z");
    }
}
