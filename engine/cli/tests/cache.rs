//! The track cache through the command line: `track --cache` once, then `render` in several
//! processes at once, each matte byte for byte what `track` wrote — with no ONNX Runtime — and a
//! cache that is stale, damaged, truncated or replaced, before or during a render, is one
//! sentence, never a crash and never a wrong matte.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sam2-rotoscope"));
    command.env_remove("RUST_LOG");
    command
}

/// A render command that could not load ONNX Runtime if it tried.
fn render_command(cache: &Path, out: &Path, extra: &[&str]) -> Command {
    render_clip(cache, &fixtures().join("clips/crossing"), out, extra)
}

fn render_clip(cache: &Path, clip: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut command = binary();
    command
        .env("SAM2_ORT_DYLIB", "/nonexistent/libonnxruntime.so")
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .arg("render")
        .arg("--cache")
        .arg(cache)
        .arg("--clip")
        .arg(clip)
        .arg("--out")
        .arg(out)
        .args(["--device", "cpu"])
        .args(MATTE)
        .args(extra);
    command
}

/// Finishing that every matte goes through, so that a difference anywhere shows.
const MATTE: [&str; 4] = ["--softness", "1", "--feather", "1.5"];

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_ok(output: &Output, what: &str) {
    assert!(output.status.success(), "{what} failed: {}", stderr(output));
}

/// Tracks three_objects (three objects, one removed, a re-propagation) into `dir/track` and
/// `dir/cache`.
fn track(dir: &Path) -> (PathBuf, PathBuf) {
    track_script(dir, &fixtures().join("scripts/three_objects.json"))
}

fn track_script(dir: &Path, script: &Path) -> (PathBuf, PathBuf) {
    let out = dir.join("track");
    let cache = dir.join("shot.sam2cache");
    let mut args: Vec<OsString> = vec!["track".into(), "--model".into()];
    args.push(fixtures().join("models/test").into());
    args.push("--script".into());
    args.push(script.into());
    args.push("--out".into());
    args.push(out.clone().into());
    args.push("--cache".into());
    args.push(cache.clone().into());
    args.extend(["--device", "cpu", "--threads", "1"].map(OsString::from));
    args.extend(MATTE.map(OsString::from));
    let output = binary().args(&args).output().unwrap();
    assert_ok(&output, "track");
    (out, cache)
}

/// Every `object_<id>/<frame>.png` under `dir`, sorted.
fn mattes(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for folder in std::fs::read_dir(dir).unwrap() {
        let folder = folder.unwrap().path();
        for file in std::fs::read_dir(&folder).unwrap() {
            out.push(
                file.unwrap()
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_path_buf(),
            );
        }
    }
    out.sort();
    out
}

/// Each matte under `dir` is byte for byte the same file under `reference`.
fn assert_same_mattes(dir: &Path, reference: &Path) -> usize {
    let files = mattes(dir);
    for file in &files {
        assert_eq!(
            std::fs::read(dir.join(file)).unwrap(),
            std::fs::read(reference.join(file)).unwrap(),
            "{} differs",
            file.display()
        );
    }
    files.len()
}

#[test]
fn four_processes_render_disjoint_ranges_byte_for_byte_what_track_wrote_without_onnx_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let (tracked, cache) = track(dir.path());
    let expected = mattes(&tracked);
    // Objects 1 and 3 (2 was removed), 12 frames.
    assert_eq!(expected.len(), 24);

    let single = dir.path().join("single");
    let output = render_command(&cache, &single, &[]).output().unwrap();
    assert_ok(&output, "render");
    assert_eq!(mattes(&single), expected);
    assert_same_mattes(&single, &tracked);

    let farm = dir.path().join("farm");
    let tasks: Vec<Child> = ["0-2", "3-5", "6-8", "9-11"]
        .into_iter()
        .map(|range| {
            render_command(&cache, &farm, &["--frames", range])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for task in tasks {
        assert_ok(&task.wait_with_output().unwrap(), "a render task");
    }
    assert_eq!(mattes(&farm), expected, "every matte once, no leftovers");
    assert_eq!(assert_same_mattes(&farm, &single), 24);

    // One frame, and a task run again over its own frames.
    let output = render_command(&cache, &farm, &["--frames", "7"])
        .output()
        .unwrap();
    assert_ok(&output, "render of one frame");
    assert_eq!(assert_same_mattes(&farm, &single), 24);
}

fn refused(output: &Output) -> String {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(!message.contains("panicked"), "{message}");
    assert!(message.starts_with("error: "), "{message}");
    assert_eq!(message.trim_end().lines().count(), 1, "{message}");
    message
}

#[test]
fn a_stale_damaged_or_truncated_cache_is_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cache) = track(dir.path());
    let out = dir.path().join("out");

    // Other prompts, another model, another clip, edited frames.
    let other_script = fixtures().join("scripts/two_objects.json");
    let output = render_command(&cache, &out, &["--script", other_script.to_str().unwrap()])
        .output()
        .unwrap();
    let message = refused(&output);
    assert!(
        message.contains("is out of date: the prompts changed"),
        "{message}"
    );
    let same_script = fixtures().join("scripts/three_objects.json");
    let model = fixtures().join("models/test");
    let output = render_command(
        &cache,
        &out,
        &[
            "--script",
            same_script.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--frames",
            "0",
        ],
    )
    .output()
    .unwrap();
    assert_ok(&output, "render checked against its script and model");

    let mut command = render_clip(&cache, &fixtures().join("clips/shapes"), &out, &[]);
    let message = refused(&command.output().unwrap());
    assert!(
        message.contains("was tracked on a clip of 12 frames of 320×180"),
        "{message}"
    );

    let edited = dir.path().join("edited");
    std::fs::create_dir(&edited).unwrap();
    for entry in std::fs::read_dir(fixtures().join("clips/crossing")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), edited.join(entry.file_name())).unwrap();
    }
    let frame = mattes_free_first_file(&edited);
    let mut bytes = std::fs::read(&frame).unwrap();
    let last = bytes.len() - 20; // inside the image data, the header stays readable
    bytes[last] ^= 1;
    std::fs::write(&frame, bytes).unwrap();
    let message = refused(&render_clip(&cache, &edited, &out, &[]).output().unwrap());
    assert!(message.contains("the source frames changed"), "{message}");

    // A damaged block: the frames before it render, then one sentence.
    let clean = std::fs::read(&cache).unwrap();
    let mut bytes = clean.clone();
    let at = block_offset(&clean, 3, 11) + 100;
    bytes[at] ^= 0xff;
    std::fs::write(&cache, &bytes).unwrap();
    let message = refused(&render_command(&cache, &out, &[]).output().unwrap());
    assert!(message.contains("is damaged at byte"), "{message}");

    // Cut in half: its commit is gone.
    std::fs::write(&cache, &clean[..clean.len() / 2]).unwrap();
    let message = refused(&render_command(&cache, &out, &[]).output().unwrap());
    assert!(message.contains("holds no finished tracking"), "{message}");

    // Not a cache; none at all.
    std::fs::write(&cache, b"not a cache").unwrap();
    let message = refused(&render_command(&cache, &out, &[]).output().unwrap());
    assert!(message.contains("is not a track cache"), "{message}");
    std::fs::remove_file(&cache).unwrap();
    let message = refused(&render_command(&cache, &out, &[]).output().unwrap());
    assert!(message.contains("does not exist"), "{message}");
}

/// Where the newest block of `object` on `frame` starts (docs/formats.md, "Track cache": a
/// 12-byte signature, then records of tag, length and checksum, a block's payload starting with
/// the object and the frame).
fn block_offset(cache: &[u8], object: u64, frame: u32) -> usize {
    let u32_at = |at: usize| u32::from_le_bytes(cache[at..at + 4].try_into().unwrap());
    let mut at = 12;
    let mut found = None;
    while at + 12 <= cache.len() {
        let (tag, len) = (u32_at(at), u32_at(at + 4) as usize);
        let payload = at + 12;
        if tag == 2
            && u64::from_le_bytes(cache[payload..payload + 8].try_into().unwrap()) == object
            && u32_at(payload + 8) == frame
        {
            found = Some(at);
        }
        at = payload + len;
    }
    found.unwrap()
}

fn mattes_free_first_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.swap_remove(3)
}

/// Frames of the clip rendered while the cache is damaged.
const LONG: usize = 60;

/// What happens to the cache while a render runs.
#[derive(Debug, Clone, Copy)]
enum Mishap {
    Corrupt,
    Truncate,
    Replace,
}

/// A clip of `frames` frames (the crossing clip's, over and over) and a one-click script on it,
/// long enough that a render cannot have read the whole cache ahead of its first matte (it reads
/// at most a few dozen ahead).
fn long_clip(dir: &Path, frames: usize) -> (PathBuf, PathBuf) {
    let clip = dir.join("long");
    std::fs::create_dir(&clip).unwrap();
    for i in 0..frames {
        let source = fixtures().join(format!("clips/crossing/{:05}.png", i % 12));
        std::fs::copy(source, clip.join(format!("{i:05}.png"))).unwrap();
    }
    let script = dir.join("script.json");
    let json = serde_json::json!({
        "format": "sam2-rotoscope-script", "version": 1, "clip": clip,
        "interactions": [
            {"op": "add_points", "frame": 0, "object": 1, "points": [[60.0, 80.0]], "labels": [1]},
            {"op": "propagate"}
        ]
    });
    std::fs::write(&script, json.to_string()).unwrap();
    (clip, script)
}

/// Starts a render, stops it (SIGSTOP) once its first matte is there, does `mishap` to the cache,
/// lets it go on and returns its output.
#[cfg(unix)]
fn render_through(mishap: Mishap, cache: &Path, clip: &Path, out: &Path, tracked: &Path) -> Output {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let clean = std::fs::read(cache).unwrap();
    let child = render_clip(cache, clip, out, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(child.id() as i32);
    let first = out.join("object_1/00000.png");
    let started = Instant::now();
    while !first.exists() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1));
    }
    kill(pid, Signal::SIGSTOP).unwrap();
    match mishap {
        // The block of the last frame, read last.
        Mishap::Corrupt => {
            let mut bytes = clean.clone();
            let at = block_offset(&clean, 1, LONG as u32 - 1) + 100;
            bytes[at] ^= 0xff;
            use std::io::Write;
            std::fs::OpenOptions::new()
                .write(true)
                .open(cache)
                .unwrap()
                .write_all(&bytes)
                .unwrap();
        }
        Mishap::Truncate => std::fs::OpenOptions::new()
            .write(true)
            .open(cache)
            .unwrap()
            .set_len(clean.len() as u64 / 3)
            .unwrap(),
        Mishap::Replace => {
            let staged = cache.with_extension("new");
            std::fs::write(&staged, &clean).unwrap();
            std::fs::rename(&staged, cache).unwrap();
        }
    }
    kill(pid, Signal::SIGCONT).unwrap();
    let output = child.wait_with_output().unwrap();
    // Whatever was written before is whole and right.
    assert_same_mattes(out, tracked);
    std::fs::write(cache, &clean).unwrap();
    output
}

#[cfg(unix)]
#[test]
fn a_cache_damaged_truncated_or_replaced_during_a_render_stops_it_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let (clip, script) = long_clip(dir.path(), LONG);
    let (tracked, cache) = track_script(dir.path(), &script);
    for (mishap, words) in [
        (Mishap::Corrupt, "is damaged at byte"),
        (Mishap::Truncate, "was truncated while it was being read"),
        (Mishap::Replace, "was replaced while it was being read"),
    ] {
        let out = dir.path().join(format!("{mishap:?}"));
        let output = render_through(mishap, &cache, &clip, &out, &tracked);
        let message = refused(&output);
        assert!(message.contains(words), "{mishap:?}: {message}");
        assert!(mattes(&out).len() < LONG, "{mishap:?}: the render stopped");
    }
}

/// Starts a render of the long clip and stops it (SIGSTOP) once its first matte is there.
#[cfg(unix)]
fn paused_render(cache: &Path, clip: &Path, out: &Path) -> (Child, nix::unistd::Pid) {
    use nix::sys::signal::{Signal, kill};
    let child = render_clip(cache, clip, out, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let first = out.join("object_1/00000.png");
    let started = Instant::now();
    while !first.exists() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1));
    }
    kill(pid, Signal::SIGSTOP).unwrap();
    (child, pid)
}

/// SIGINT or SIGTERM during a render: it stops after the mattes being written, with one sentence
/// and 128 + the signal's number; every matte there is whole and right, no file half-written is
/// left. A second signal ends it at once and still leaves nothing half-written.
#[cfg(unix)]
#[test]
fn a_signal_stops_a_render_with_every_matte_whole() {
    use nix::sys::signal::{Signal, kill};
    use std::os::unix::process::ExitStatusExt;

    let dir = tempfile::tempdir().unwrap();
    let (clip, script) = long_clip(dir.path(), LONG);
    let (tracked, cache) = track_script(dir.path(), &script);
    for (signal, code) in [(Signal::SIGINT, 130), (Signal::SIGTERM, 143)] {
        let out = dir.path().join(format!("{signal}"));
        let (child, pid) = paused_render(&cache, &clip, &out);
        kill(pid, signal).unwrap();
        kill(pid, Signal::SIGCONT).unwrap();
        let output = child.wait_with_output().unwrap();
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(code), "{signal}: {text}");
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [format!(
                "error: Stopped by {signal} before every matte was written; the mattes written are whole, none is half-written. Run the same command again to write the rest."
            )],
            "{signal}"
        );
        let written = assert_same_mattes(&out, &tracked);
        assert!((1..LONG).contains(&written), "{signal}: {written} mattes");
    }

    // Two signals: the second ends the process at once.
    let out = dir.path().join("twice");
    let (child, pid) = paused_render(&cache, &clip, &out);
    kill(pid, Signal::SIGINT).unwrap();
    kill(pid, Signal::SIGTERM).unwrap();
    kill(pid, Signal::SIGCONT).unwrap();
    let output = child.wait_with_output().unwrap();
    let text = stderr(&output);
    assert!(
        output.status.code() == Some(130) || output.status.signal() == Some(Signal::SIGTERM as i32),
        "{:?}: {text}",
        output.status
    );
    // Whole mattes only: a file being written was removed (assert_same_mattes reads every file).
    assert!(assert_same_mattes(&out, &tracked) < LONG);
}
