//! Where the committed fixtures are, for the end-to-end tests.
//!
//! The layout is fixed by the fixture generator (bundle/exporter): `models/<name>/manifest.json`,
//! `clips/<name>/`, `scripts/<name>.json`, `traces/<name>/trace.json`. The tests enumerate what is
//! there instead of naming fixtures, so a fixture added by the generator is checked without a code
//! change. `SAM2_FIXTURES_DIR` points the tests at another fixture tree (a freshly generated one,
//! before it is committed).

use std::io;
use std::path::{Path, PathBuf};

/// The fixture root: `SAM2_FIXTURES_DIR` if set, else `tests/fixtures` of this checkout.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("SAM2_FIXTURES_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
    }
}

/// The entries of `fixtures/<kind>` that satisfy `keep`, sorted; none if the folder is absent.
fn entries(kind: &str, keep: impl Fn(&Path) -> bool) -> io::Result<Vec<PathBuf>> {
    let dir = fixtures_dir().join(kind);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if keep(&path) {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Model directories: `models/*/` holding a `manifest.json`.
pub fn model_dirs() -> io::Result<Vec<PathBuf>> {
    entries("models", |p| p.join("manifest.json").is_file())
}

/// Clip folders: `clips/*/`.
pub fn clip_dirs() -> io::Result<Vec<PathBuf>> {
    entries("clips", Path::is_dir)
}

/// Scripts: `scripts/*.json`.
pub fn script_files() -> io::Result<Vec<PathBuf>> {
    entries("scripts", |p| {
        p.is_file() && p.extension().is_some_and(|e| e == "json")
    })
}

/// Trace folders: `traces/*/` holding a `trace.json`.
pub fn trace_dirs() -> io::Result<Vec<PathBuf>> {
    entries("traces", |p| p.join("trace.json").is_file())
}

/// Copies the directory tree `from` into `to` (created), for tests that damage a copy.
pub fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
