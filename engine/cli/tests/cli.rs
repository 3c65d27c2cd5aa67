//! The `sam2-rotoscope` binary, run as a user runs it.
//!
//! The main claim: the CLI reproduces a reference trace on a clip and script it has never seen,
//! given only the model directory and the files. Every committed reference trace is replayed by
//! `track --trace` and the written trace compared with the reference at the parity tolerances;
//! the mattes of the same runs are checked against the written logits. Then the failures a user
//! meets: a frame outside the clip, a missing model, clip or ONNX Runtime, a broken model, an
//! existing output folder, a usage error, SIGINT/SIGTERM/SIGHUP — each one sentence, and no
//! output left behind.
//!
//! `CARGO_BIN_EXE_sam2-rotoscope` is why this file lives in the CLI's crate: cargo builds the
//! binary before these tests and tells them where it is.

// Test code unwraps, panics and indexes on purpose (clippy.toml allows it inside #[test] functions;
// the helpers here are test code too).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

// The engine's fixture helpers (where the fixtures are, how two traces are compared), shared
// rather than copied so that both crates compare traces at the same tolerances.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{
    compare_traces, final_outputs, fixtures_dir, matte_upsampled, model_for, reference_settings,
    trace_dirs,
};
use sam2_engine::{Script, Trace};

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sam2-rotoscope"));
    // A terminal's settings must not change what the tests see.
    command.env_remove("RUST_LOG");
    command
}

fn run(args: &[OsString]) -> Output {
    binary().args(args).output().unwrap()
}

fn os(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The flags that make a run reproduce `reference`: its correction setting and its hole filling
/// (none on a CPU), one thread per operator, the CPU.
fn reproducing_flags(reference: &Trace) -> Vec<OsString> {
    let settings = reference_settings(reference);
    let mut flags = os(&[&"--device", &"cpu", &"--threads", &"1"]);
    if settings.keep_corrections == Some(false) {
        flags.push("--official-corrections".into());
    }
    if !settings.fill_hole_applied {
        flags.extend(os(&[&"--fill-hole-area", &"0"]));
    }
    flags
}

/// `track` on the reference's clip and script, into `dir/out` (and `dir/trace`).
fn track_like(reference: &Trace, dir: &Path, extra: &[&str]) -> Output {
    let header = reference.header();
    let mut args = os(&[
        &"track",
        &"--model",
        &model_for(&header.model_manifest_sha256),
        &"--clip",
        &reference.clip_path().unwrap(),
        &"--script",
        &reference.script_path().unwrap(),
        &"--out",
        &dir.join("out"),
    ]);
    args.extend(reproducing_flags(reference));
    args.extend(extra.iter().map(OsString::from));
    run(&args)
}

fn assert_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: exit {:?}\nstderr: {}",
        output.status.code(),
        stderr(output)
    );
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Checks the mattes written for `reference`'s script against the trace of the same run: one
/// folder per object the session holds at the end, one PNG of the clip size per frame, and each
/// pixel `max` where the upsampled logits (at the matte precision) are > 0 (a hard matte), else 0.
fn check_hard_mattes(out: &Path, trace: &Trace, script: &Script, bits: u8) -> usize {
    let header = trace.header();
    let [w, h] = header.video_size;
    let latest = final_outputs(trace, script);
    let mut objects: Vec<u64> = latest.keys().map(|&(_, o)| o).collect();
    objects.sort_unstable();
    objects.dedup();
    let folders: Vec<String> = objects.iter().map(|o| format!("object_{o}")).collect();
    let mut listed = names(out);
    listed.sort_by_key(|n| {
        n.trim_start_matches("object_")
            .parse::<u64>()
            .unwrap_or(u64::MAX)
    });
    assert_eq!(listed, folders, "{}", out.display());
    let max = if bits == 8 { 255u16 } else { 65535 };
    let mut steps = std::collections::HashMap::new();
    let mut count = 0;
    for &object in &objects {
        let folder = out.join(format!("object_{object}"));
        let expected: Vec<String> = (0..header.num_frames)
            .map(|f| format!("{f:05}.png"))
            .collect();
        assert_eq!(names(&folder), expected, "{}", folder.display());
        for frame in 0..header.num_frames {
            let path = folder.join(format!("{frame:05}.png"));
            let image = image::open(&path).unwrap();
            assert_eq!(
                (image.width() as usize, image.height() as usize),
                (w, h),
                "{}",
                path.display()
            );
            let pixels: Vec<u16> = match bits {
                8 => {
                    assert!(
                        matches!(image, image::DynamicImage::ImageLuma8(_)),
                        "{}",
                        path.display()
                    );
                    image
                        .to_luma8()
                        .into_raw()
                        .into_iter()
                        .map(u16::from)
                        .collect()
                }
                _ => {
                    assert!(
                        matches!(image, image::DynamicImage::ImageLuma16(_)),
                        "{}",
                        path.display()
                    );
                    image.to_luma16().into_raw()
                }
            };
            let expected: Vec<u16> = match latest.get(&(frame, object)) {
                Some(&(step, k)) => {
                    let outputs = steps
                        .entry(step)
                        .or_insert_with(|| trace.read_step(step).unwrap());
                    matte_upsampled(outputs, k, header.video_size)
                        .iter()
                        .map(|&v| if v > 0.0 { max } else { 0 })
                        .collect()
                }
                None => vec![0; w * h],
            };
            assert!(
                pixels == expected,
                "{}: not the hard matte of the logits",
                path.display()
            );
            count += 1;
        }
    }
    count
}

/// One reference trace: `track --trace` into a fresh folder, the written trace compared with
/// the reference, the mattes with the written logits. Returns a line for the log.
fn reproduce(dir: &Path) -> String {
    let reference = Trace::open(dir).unwrap();
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let tmp = tempfile::tempdir().unwrap();
    let trace_dir = tmp.path().join("trace");
    let output = track_like(
        &reference,
        tmp.path(),
        &["--trace", trace_dir.to_str().unwrap()],
    );
    assert_ok(&output, &name);
    let summary = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        summary.contains("frames/s") && summary.contains("image encoder"),
        "{summary}"
    );
    assert_eq!(
        names(tmp.path()),
        ["out", "trace"],
        "{name}: nothing else is left behind"
    );

    let ours = Trace::open(&trace_dir).unwrap();
    let compared = compare_traces(&ours, &reference);
    assert!(compared.masks_checked > 0, "{name}");
    let script = Script::read(reference.script_path().unwrap()).unwrap();
    let mattes = check_hard_mattes(&tmp.path().join("out"), &ours, &script, 8);
    format!(
        "{name:<20} {:3} outputs, max |Δlogit| {:.2e}; {mattes} mattes; {}",
        compared.outputs,
        compared.worst_logit,
        summary.trim()
    )
}

#[test]
fn track_reproduces_every_reference_trace_and_writes_its_mattes() {
    let traces = trace_dirs();
    assert!(
        !traces.is_empty(),
        "no reference traces under {}",
        fixtures_dir().display()
    );
    // A few at a time: each run is a process of its own, and most of a run is single-threaded.
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(dir) = traces.get(i) else { break };
                    eprintln!("{}", reproduce(dir));
                }
            });
        }
    });
}

#[test]
fn features_kept_on_disk_reproduce_a_re_tracking_trace_and_the_folder_goes() {
    // No memory for features: every frame passes through the disk tier, and the correction's
    // re-tracking reads them back.
    let reference = reference("correction_kept");
    let tmp = tempfile::tempdir().unwrap();
    let caches = tmp.path().join("caches");
    std::fs::create_dir(&caches).unwrap();
    let trace_dir = tmp.path().join("trace");
    let output = track_like(
        &reference,
        tmp.path(),
        &[
            "--trace",
            trace_dir.to_str().unwrap(),
            "--frame-cache-mib",
            "0",
            "--frame-cache-dir",
            caches.to_str().unwrap(),
        ],
    );
    assert_ok(&output, "correction_kept through the disk tier");
    let summary = String::from_utf8_lossy(&output.stdout).into_owned();
    let reads = summary
        .split("read back from disk ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(reads.is_some_and(|n| n > 0), "{summary}");
    let compared = compare_traces(&Trace::open(&trace_dir).unwrap(), &reference);
    assert!(compared.masks_checked > 0);
    assert_eq!(
        names(&caches.join("sam2-rotoscope-frames")),
        Vec::<String>::new(),
        "the run's feature folder is removed at its end"
    );
}

fn reference(name: &str) -> Trace {
    Trace::open(fixtures_dir().join("traces").join(name)).unwrap()
}

#[test]
fn sixteen_bit_mattes_cover_every_object_and_frame() {
    let reference = reference("two_objects");
    let tmp = tempfile::tempdir().unwrap();
    let trace_dir = tmp.path().join("trace");
    let output = track_like(
        &reference,
        tmp.path(),
        &["--bits", "16", "--trace", trace_dir.to_str().unwrap()],
    );
    assert_ok(&output, "16 bit");
    let ours = Trace::open(&trace_dir).unwrap();
    let script = Script::read(reference.script_path().unwrap()).unwrap();
    let count = check_hard_mattes(&tmp.path().join("out"), &ours, &script, 16);
    assert_eq!(count, 2 * reference.header().num_frames);
}

#[test]
fn a_soft_matte_is_the_model_s_probability() {
    let reference = reference("one_click");
    let tmp = tempfile::tempdir().unwrap();
    let trace_dir = tmp.path().join("trace");
    let output = track_like(
        &reference,
        tmp.path(),
        &["--softness", "1", "--trace", trace_dir.to_str().unwrap()],
    );
    assert_ok(&output, "soft");
    let ours = Trace::open(&trace_dir).unwrap();
    let step = ours.header().steps.len() - 1;
    let outputs = ours.read_step(step).unwrap();
    let k = outputs.len() - 1;
    let frame = outputs.frame[k] as usize;
    let path = tmp.path().join(format!("out/object_1/{frame:05}.png"));
    let matte = image::open(&path).unwrap().to_luma8().into_raw();
    let mut partial = 0;
    for (&v, &logit) in matte
        .iter()
        .zip(&matte_upsampled(&outputs, k, ours.header().video_size))
    {
        let p = 255.0 / (1.0 + (-logit).exp());
        assert!(
            (f32::from(v) - p).abs() <= 1.0,
            "{v} vs {p} at logit {logit}"
        );
        partial += usize::from(v > 0 && v < 255);
    }
    assert!(
        partial > 0,
        "a soft matte has edge pixels between 0 and 255"
    );
}

/// A run that must fail: exit code 1, one `error: <sentence>` line on stderr, and no output
/// folder (nor a staging folder) left in `dir`, whose entries before the run are `before`.
fn assert_refused(output: &Output, dir: &Path, before: &[&str]) -> String {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(1), "stderr: {text}");
    let line = text.trim_end();
    assert!(!line.contains('\n'), "one line, not: {text}");
    assert!(line.starts_with("error: ") && line.ends_with('.'), "{line}");
    assert!(
        line["error: ".len()..].starts_with(char::is_uppercase),
        "{line}"
    );
    assert_eq!(names(dir), before, "nothing is left behind");
    line.to_string()
}

/// A script on the shapes clip (10 frames) with a click on `frame`.
fn click_script(dir: &Path, frame: usize) -> PathBuf {
    let path = dir.join("script.json");
    let clip = fixtures_dir().join("clips/shapes").canonicalize().unwrap();
    let json = serde_json::json!({
        "format": "sam2-rotoscope-script", "version": 1, "clip": clip,
        "interactions": [
            {"op": "add_points", "frame": frame, "object": 1, "points": [[70.0, 90.0]], "labels": [1]},
            {"op": "propagate"}
        ]
    });
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

fn test_model() -> PathBuf {
    fixtures_dir().join("models/test")
}

fn track_args(model: &Path, script: &Path, out: &Path) -> Vec<OsString> {
    os(&[
        &"track",
        &"--model",
        &model,
        &"--script",
        &script,
        &"--out",
        &out,
        &"--device",
        &"cpu",
    ])
}

#[test]
fn a_frame_outside_the_clip_is_one_sentence_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let script = click_script(tmp.path(), 12);
    let output = run(&track_args(&test_model(), &script, &tmp.path().join("out")));
    let line = assert_refused(&output, tmp.path(), &["script.json"]);
    assert!(
        line.contains("frame 12") && line.contains("10 frames"),
        "{line}"
    );
}

#[test]
fn a_missing_model_clip_or_script_is_one_sentence() {
    let tmp = tempfile::tempdir().unwrap();
    let script = click_script(tmp.path(), 0);
    let out = tmp.path().join("out");
    let missing = tmp.path().join("nowhere");
    let line = assert_refused(
        &run(&track_args(&missing, &script, &out)),
        tmp.path(),
        &["script.json"],
    );
    assert!(
        line.contains("model directory") && line.contains("nowhere"),
        "{line}"
    );
    let mut args = track_args(&test_model(), &script, &out);
    args.extend(os(&[&"--clip", &missing]));
    let line = assert_refused(&run(&args), tmp.path(), &["script.json"]);
    assert!(
        line.contains("clip folder") && line.contains("nowhere"),
        "{line}"
    );
    let line = assert_refused(
        &run(&track_args(&test_model(), &missing, &out)),
        tmp.path(),
        &["script.json"],
    );
    assert!(
        line.contains("script") && line.contains("nowhere"),
        "{line}"
    );
}

#[test]
fn a_missing_onnx_runtime_is_one_sentence() {
    let tmp = tempfile::tempdir().unwrap();
    let script = click_script(tmp.path(), 0);
    let library = tmp.path().join("libonnxruntime.so");
    let output = binary()
        .args(track_args(&test_model(), &script, &tmp.path().join("out")))
        .env("SAM2_ORT_DYLIB", &library)
        .output()
        .unwrap();
    let line = assert_refused(&output, tmp.path(), &["script.json"]);
    assert!(
        line.contains("ONNX Runtime") && line.contains("libonnxruntime.so"),
        "{line}"
    );
}

#[test]
fn a_broken_model_is_one_sentence() {
    let tmp = tempfile::tempdir().unwrap();
    let script = click_script(tmp.path(), 0);
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for entry in std::fs::read_dir(test_model()).unwrap() {
        let entry = entry.unwrap();
        let target = model.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir(&target).unwrap();
            for file in std::fs::read_dir(entry.path()).unwrap() {
                let file = file.unwrap();
                std::fs::copy(file.path(), target.join(file.file_name())).unwrap();
            }
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
    // Same size, other bytes: only the hash can tell.
    let tensor = model.join("tensors/no_obj_ptr.npy");
    let mut bytes = std::fs::read(&tensor).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&tensor, bytes).unwrap();
    let output = run(&track_args(&model, &script, &tmp.path().join("out")));
    let line = assert_refused(&output, tmp.path(), &["model", "script.json"]);
    assert!(
        line.contains("no_obj_ptr.npy") && line.contains("SHA-256"),
        "{line}"
    );
}

#[test]
fn an_existing_output_folder_is_replaced_only_with_force_and_only_if_it_is_output() {
    let tmp = tempfile::tempdir().unwrap();
    let script = click_script(tmp.path(), 0);
    let out = tmp.path().join("out");
    std::fs::create_dir_all(out.join("object_7")).unwrap();
    std::fs::write(out.join("object_7/00000.png"), b"old").unwrap();
    let line = assert_refused(
        &run(&track_args(&test_model(), &script, &out)),
        tmp.path(),
        &["out", "script.json"],
    );
    assert!(line.contains("--force") && line.contains("out"), "{line}");
    assert!(out.join("object_7/00000.png").is_file(), "left as it was");

    let mut forced = track_args(&test_model(), &script, &out);
    forced.push("--force".into());
    assert_ok(&run(&forced), "--force");
    assert_eq!(names(&out), ["object_1"], "the old output is gone");
    assert_eq!(names(&out.join("object_1")).len(), 10);
    assert_eq!(
        names(tmp.path()),
        ["out", "script.json"],
        "no staging or replaced folder left"
    );

    // A folder that holds anything else is never replaced.
    std::fs::write(out.join("notes.txt"), b"mine").unwrap();
    let line = assert_refused(&run(&forced), tmp.path(), &["out", "script.json"]);
    assert!(line.contains("notes.txt"), "{line}");
    assert!(out.join("notes.txt").is_file());
}

#[test]
fn an_impossible_matte_setting_is_one_sentence() {
    let tmp = tempfile::tempdir().unwrap();
    let script = click_script(tmp.path(), 0);
    let mut args = track_args(&test_model(), &script, &tmp.path().join("out"));
    args.extend(os(&[&"--feather", &"-1"]));
    let line = assert_refused(&run(&args), tmp.path(), &["script.json"]);
    assert!(
        line.contains("feather") && line.contains("0 or more"),
        "{line}"
    );
}

#[test]
fn usage_errors_exit_with_2() {
    let tmp = tempfile::tempdir().unwrap();
    let script = click_script(tmp.path(), 0);
    let mut args = track_args(&test_model(), &script, &tmp.path().join("out"));
    args.extend(os(&[&"--bits", &"12"]));
    let output = run(&args);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--bits"));
    let output = run(&os(&[&"track"]));
    assert_eq!(output.status.code(), Some(2));
    let output = run(&os(&[&"--help"]));
    assert_ok(&output, "--help");
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        help.contains("track") && help.contains("check-model"),
        "{help}"
    );
    assert_eq!(names(tmp.path()), ["script.json"]);
}

#[test]
fn check_model_accepts_the_fixture_model() {
    let output = run(&os(&[&"check-model", &test_model()]));
    assert_ok(&output, "check-model");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.trim_end().ends_with("ok"));
    // Its fast set is checked too.
    assert!(
        stdout.contains("fast set: image_encoder int8_dynamic"),
        "{stdout}"
    );
}

/// Copies `from` into `to` without its `fast/` folder.
fn copy_without_fast_set(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "fast" {
                copy_without_fast_set(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn track_at_precision_fast_runs_the_fast_set_and_a_model_without_one_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let script = click_script(tmp.path(), 0);
    let mut args = track_args(&test_model(), &script, &tmp.path().join("fast"));
    args.extend(os(&[&"--precision", &"fast", &"--threads", &"1"]));
    assert_ok(&run(&args), "track --precision fast");
    assert!(tmp.path().join("fast/object_1/00009.png").is_file());

    let model = tmp.path().join("model");
    copy_without_fast_set(&test_model(), &model);
    let mut args = track_args(&model, &script, &tmp.path().join("out"));
    args.extend(os(&[&"--precision", &"fast"]));
    let line = assert_refused(&run(&args), tmp.path(), &["fast", "model", "script.json"]);
    assert!(line.contains("no fast graph set"), "{line}");
    assert!(line.contains("bundle/exporter/py fast --model"), "{line}");
}

/// `track` on the three-objects script into `dir/out` (and `dir/trace`), one thread per operator.
fn three_objects_args(dir: &Path) -> Vec<OsString> {
    let reference = reference("three_objects");
    let mut args = track_args(
        &test_model(),
        &reference.script_path().unwrap(),
        &dir.join("out"),
    );
    args.extend(os(&[&"--trace", &dir.join("trace"), &"--threads", &"1"]));
    args
}

/// Starts `args` and waits until its staging folder appears in `dir` (tracking has begun);
/// `None` when the run ended first.
#[cfg(unix)]
fn start_tracking(args: &[OsString], dir: &Path) -> Option<std::process::Child> {
    use std::time::{Duration, Instant};
    let mut child = binary()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if names(dir).iter().any(|n| n.contains(".partial-")) {
            return Some(child);
        }
        if child.try_wait().unwrap().is_some() || started.elapsed() > Duration::from_secs(60) {
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A signal during a run: the run returns from the graph it is in, removes its staging folders,
/// prints exactly one line and exits with 128 + the signal's number. A run that finishes
/// before the signal arrives is retried.
#[cfg(unix)]
fn assert_signal_stops_cleanly(signal: nix::sys::signal::Signal, code: i32) {
    for _attempt in 0..5 {
        let tmp = tempfile::tempdir().unwrap();
        let Some(child) = start_tracking(&three_objects_args(tmp.path()), tmp.path()) else {
            continue;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
        let output = child.wait_with_output().unwrap();
        if output.status.success() {
            continue; // it finished before the signal arrived
        }
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(code), "{signal}: {text}");
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [format!(
                "error: Stopped by {signal} before the output was complete; nothing was written."
            )],
            "{signal}: exactly one line, nothing from ONNX Runtime"
        );
        assert!(
            names(tmp.path()).is_empty(),
            "{signal}: left behind: {:?}",
            names(tmp.path())
        );
        return;
    }
    panic!("no run could be stopped by {signal} in 5 attempts");
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_cleanly_with_130() {
    assert_signal_stops_cleanly(nix::sys::signal::Signal::SIGINT, 130);
}

#[cfg(unix)]
#[test]
fn sigterm_stops_cleanly_with_143() {
    assert_signal_stops_cleanly(nix::sys::signal::Signal::SIGTERM, 143);
}

#[cfg(unix)]
#[test]
fn sighup_stops_cleanly_with_129() {
    assert_signal_stops_cleanly(nix::sys::signal::Signal::SIGHUP, 129);
}

/// A second signal while the run stops ends it at once, and still leaves nothing behind.
#[cfg(unix)]
#[test]
fn a_second_signal_stops_at_once_and_leaves_nothing() {
    use nix::sys::signal::{Signal, kill};
    for _attempt in 0..5 {
        let tmp = tempfile::tempdir().unwrap();
        let Some(child) = start_tracking(&three_objects_args(tmp.path()), tmp.path()) else {
            continue;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        kill(pid, Signal::SIGINT).unwrap();
        let _ = kill(pid, Signal::SIGTERM);
        let output = child.wait_with_output().unwrap();
        if output.status.success() {
            continue;
        }
        let text = stderr(&output);
        let lines: Vec<&str> = text.lines().collect();
        // Either the first signal's stop was done before the second arrived (130), or the
        // second ended the process (killed by SIGTERM); nothing is left either way.
        use std::os::unix::process::ExitStatusExt;
        match output.status.code() {
            Some(130) => assert!(
                lines.len() <= 2
                    && lines.first()
                        == Some(
                            &"error: Stopped by SIGINT before the output was complete; nothing was written."
                        ),
                "{text}"
            ),
            // Ended by the second signal's default action.
            None => assert!(
                output.status.signal() == Some(Signal::SIGTERM as i32)
                    && lines.len() <= 2
                    && lines.contains(
                        &"error: Stopped at once by a second SIGTERM; nothing was written."
                    ),
                "{:?}: {text}",
                output.status
            ),
            other => panic!("exit {other:?}: {text}"),
        }
        assert!(
            names(tmp.path()).is_empty(),
            "left behind: {:?}",
            names(tmp.path())
        );
        return;
    }
    panic!("no run could be stopped in 5 attempts");
}

/// Two runs on the same output folder: the second fails at once, before any work, with a
/// sentence — the lock's, which is taken before the model is even read (a run that got past it
/// would fail at its commit, or with --force silently replace the other's output); the first
/// is undisturbed.
#[cfg(unix)]
#[test]
fn a_second_run_on_the_same_output_fails_at_once() {
    for _attempt in 0..5 {
        let tmp = tempfile::tempdir().unwrap();
        let mut args = three_objects_args(tmp.path());
        args.push("--force".into());
        let Some(first) = start_tracking(&args, tmp.path()) else {
            continue;
        };
        let second = run(&args);
        let first = first.wait_with_output().unwrap();
        if !first.status.success() {
            panic!("the first run failed: {}", stderr(&first));
        }
        let text = stderr(&second);
        if second.status.success() {
            continue; // the first finished before the second started
        }
        assert_eq!(second.status.code(), Some(1), "{text}");
        let line = text.trim_end();
        assert!(
            !line.contains('\n')
                && line
                    .starts_with("error: Another sam2-rotoscope run is writing the output folder"),
            "{text}"
        );
        assert_eq!(
            names(tmp.path()),
            ["out", "trace"],
            "only the first run's output"
        );
        let objects = names(&tmp.path().join("out"));
        assert!(
            !objects.is_empty() && objects.iter().all(|n| n.starts_with("object_")),
            "{objects:?}"
        );
        return;
    }
    panic!("no two runs overlapped in 5 attempts");
}

/// A staging folder left by a run that was killed outright is removed by the next run on the
/// same output; one whose process still runs is not.
#[cfg(unix)]
#[test]
fn a_killed_run_s_staging_folder_is_removed_by_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let script = click_script(tmp.path(), 0);
    let out = tmp.path().join("out");
    // A process id that runs no process: a child that has been waited for.
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let dead = tmp.path().join(format!(".out.partial-{gone_pid}-0"));
    let alive = tmp
        .path()
        .join(format!(".out.partial-{}-0", std::process::id()));
    for dir in [&dead, &alive] {
        std::fs::create_dir_all(dir.join("object_1")).unwrap();
        std::fs::write(dir.join("object_1/00000.png"), b"half").unwrap();
    }
    assert_ok(&run(&track_args(&test_model(), &script, &out)), "track");
    let alive_name = alive.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        names(tmp.path()),
        [alive_name.as_str(), "out", "script.json"]
    );
}

/// A stdout whose reader is gone: every write fails with EPIPE.
fn closed_pipe() -> std::process::Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer.into()
}

/// A stdout that is always full: every write fails with ENOSPC.
fn full_device() -> std::process::Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap()
        .into()
}

fn with_stdout(args: &[OsString], stdout: std::process::Stdio) -> Output {
    binary()
        .args(args)
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

/// The reader of stdout went away (`… | head -1`): the work is done, so the run succeeds and
/// says once, on stderr, that the report was not printed — no panic.
#[cfg(unix)]
#[test]
fn a_closed_stdout_is_not_a_failure() {
    const NOTE: &str = "note: stdout was closed, so the report was not printed.";
    let output = with_stdout(&os(&[&"check-model", &test_model()]), closed_pipe());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output).trim_end(), NOTE);

    let tmp = tempfile::tempdir().unwrap();
    let script = click_script(tmp.path(), 0);
    let out = tmp.path().join("out");
    let output = with_stdout(&track_args(&test_model(), &script, &out), closed_pipe());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output).trim_end(), NOTE);
    assert_eq!(
        names(&out.join("object_1")).len(),
        10,
        "the mattes are written"
    );

    let output = with_stdout(&os(&[&"--help"]), closed_pipe());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
}

/// A full stdout (`> /dev/full`) is an error, one sentence that says the work itself was done.
#[cfg(unix)]
#[test]
fn a_full_stdout_is_one_sentence_after_the_work() {
    let output = with_stdout(&os(&[&"check-model", &test_model()]), full_device());
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let line = text.trim_end();
    assert!(
        !line.contains('\n')
            && line.starts_with("error: The model directory ")
            && line.contains("is usable, but the report could not be printed to stdout")
            && line.ends_with('.'),
        "{text}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let script = click_script(tmp.path(), 0);
    let out = tmp.path().join("out");
    let output = with_stdout(&track_args(&test_model(), &script, &out), full_device());
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.trim_end().starts_with("error: The mattes are in ") && !text.trim_end().contains('\n'),
        "{text}"
    );
    assert_eq!(
        names(&out.join("object_1")).len(),
        10,
        "the mattes are written"
    );

    let output = with_stdout(&os(&[&"--help"]), full_device());
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).starts_with("error: Could not print to stdout"));
}

/// `--force` replaces only what this command writes: a user's file inside an object folder, or
/// a file where an object folder would be, makes it refuse, naming that path.
#[test]
fn force_never_deletes_a_user_s_file_inside_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    let script = click_script(tmp.path(), 0);
    let out = tmp.path().join("out");
    std::fs::create_dir_all(out.join("object_1")).unwrap();
    std::fs::write(out.join("object_1/00000.png"), b"old").unwrap();
    std::fs::write(out.join("object_1/notes.txt"), b"mine").unwrap();
    let mut forced = track_args(&test_model(), &script, &out);
    forced.push("--force".into());
    let line = assert_refused(&run(&forced), tmp.path(), &["out", "script.json"]);
    assert!(line.contains("holds object_1/notes.txt"), "{line}");
    assert_eq!(names(&out.join("object_1")), ["00000.png", "notes.txt"]);

    std::fs::remove_dir_all(out.join("object_1")).unwrap();
    std::fs::write(out.join("object_7"), b"a file, not an earlier output").unwrap();
    let line = assert_refused(&run(&forced), tmp.path(), &["out", "script.json"]);
    assert!(line.contains("holds object_7,"), "{line}");
    assert!(out.join("object_7").is_file());

    // A trace folder likewise.
    std::fs::remove_file(out.join("object_7")).unwrap();
    let trace = tmp.path().join("trace");
    std::fs::create_dir_all(trace.join("step_000.npz")).unwrap();
    let mut traced = forced.clone();
    traced.extend(os(&[&"--trace", &trace]));
    let line = assert_refused(&run(&traced), tmp.path(), &["out", "script.json", "trace"]);
    assert!(line.contains("holds step_000.npz,"), "{line}");
}

/// A disk that fills while the trace is written (here: a file size limit, EFBIG): one error line
/// naming the file, nothing from the zip library, nothing left behind.
#[cfg(unix)]
#[test]
fn a_trace_that_cannot_be_written_is_one_sentence() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = three_objects_args(tmp.path());
    args.push("--force".into());
    // The shell ignores SIGXFSZ (inherited by the CLI) so that writes past the limit fail with
    // EFBIG instead of killing the process; 64 blocks is less than a propagation's .npz.
    let output = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 64; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_sam2-rotoscope"))
        .args(&args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let line = text.trim_end();
    assert!(
        !line.contains('\n')
            && line.starts_with("error: Could not write ")
            && line.contains(".npz"),
        "{text}"
    );
    assert!(
        names(tmp.path()).is_empty(),
        "left behind: {:?}",
        names(tmp.path())
    );
}

/// A successful run prints nothing on stderr, even where Mesa's Vulkan layer would complain
/// about a missing `XDG_RUNTIME_DIR` (cron, ssh, containers) while wgpu looks for a GPU.
#[cfg(unix)]
#[test]
fn a_run_on_device_auto_without_a_runtime_dir_is_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let script = click_script(tmp.path(), 0);
    let mut args = track_args(&test_model(), &script, &tmp.path().join("out"));
    args.truncate(args.len() - 2); // --device cpu
    args.extend(os(&[&"--device", &"auto"]));
    let output = binary()
        .args(&args)
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert_ok(&output, "--device auto");
    assert_eq!(stderr(&output), "", "nothing on stderr");
}

/// Frames numbered with gaps are taken in order, and the run says so once, naming the first gap.
#[test]
fn frames_numbered_with_gaps_are_named_once() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = tmp.path().join("clip");
    std::fs::create_dir(&clip).unwrap();
    let shapes = fixtures_dir().join("clips/shapes");
    for (number, source) in [(0, 0), (5, 1), (9, 2)] {
        std::fs::copy(
            shapes.join(format!("{source:05}.png")),
            clip.join(format!("{number:05}.png")),
        )
        .unwrap();
    }
    let script = click_script(tmp.path(), 0);
    let out = tmp.path().join("out");
    let mut args = track_args(&test_model(), &script, &out);
    args.extend(os(&[&"--clip", &clip]));
    let output = run(&args);
    assert_ok(&output, "gaps");
    let text = stderr(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].starts_with("warning: The frames of ")
            && lines[0].contains("(0 is followed by 5)")
            && lines[0].contains("frames 0 to 2"),
        "{text}"
    );
    assert_eq!(
        names(&out.join("object_1")),
        ["00000.png", "00001.png", "00002.png"]
    );

    // Numbered from 5 on without gaps: nothing to say.
    std::fs::rename(clip.join("00009.png"), clip.join("00006.png")).unwrap();
    std::fs::rename(clip.join("00005.png"), clip.join("00007.png")).unwrap();
    std::fs::rename(clip.join("00000.png"), clip.join("00005.png")).unwrap();
    args.push("--force".into());
    let output = run(&args);
    assert_ok(&output, "no gaps");
    assert_eq!(stderr(&output), "");
}

/// Every file under `dir` (relative path → bytes), for byte-for-byte comparisons of outputs.
fn files(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), bytes);
            }
        }
    }
    out
}

#[test]
fn an_official_checkpoint_tracks_like_its_exported_model_with_no_python() {
    let tmp = tempfile::tempdir().unwrap();
    let script = click_script(tmp.path(), 2);
    let checkpoint = fixtures_dir().join("checkpoints/sam2.1_hiera_test.pt");
    let from_checkpoint = tmp.path().join("from_checkpoint");
    let output = binary()
        .args(track_args(&checkpoint, &script, &from_checkpoint))
        .env("PATH", "/nonexistent")
        .env("SAM2_CACHE_DIR", tmp.path().join("cache"))
        .output()
        .unwrap();
    assert_ok(&output, "track from a checkpoint");
    let from_model = tmp.path().join("from_model");
    assert_ok(
        &run(&track_args(&test_model(), &script, &from_model)),
        "track from the model directory",
    );
    let (a, b) = (files(&from_checkpoint), files(&from_model));
    assert!(!a.is_empty());
    assert_eq!(
        a, b,
        "the checkpoint's mattes differ from the exported model's"
    );
}

#[test]
fn refine_edges_changes_the_mattes_and_a_render_from_the_cache_refines_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let script = click_script(tmp.path(), 0);
    let clip = fixtures_dir().join("clips/shapes");
    let cache = tmp.path().join("track.cache");
    let soft: [&dyn AsRef<std::ffi::OsStr>; 2] = [&"--softness", &"1"];
    let refine: [&dyn AsRef<std::ffi::OsStr>; 4] =
        [&"--refine-edges", &"colour", &"--edge-radius", &"4"];

    let plain = tmp.path().join("plain");
    let mut args = track_args(&test_model(), &script, &plain);
    args.extend(os(&soft));
    assert_ok(&run(&args), "track without refinement");

    let refined = tmp.path().join("refined");
    let mut args = track_args(&test_model(), &script, &refined);
    args.extend(os(&soft));
    args.extend(os(&refine));
    args.extend(os(&[&"--cache", &cache]));
    assert_ok(&run(&args), "track with refinement");

    let rendered = tmp.path().join("rendered");
    let mut args = os(&[
        &"render",
        &"--cache",
        &cache,
        &"--clip",
        &clip,
        &"--out",
        &rendered,
        &"--device",
        &"cpu",
    ]);
    args.extend(os(&soft));
    args.extend(os(&refine));
    assert_ok(&run(&args), "render from the cache with refinement");

    let (plain, refined, rendered) = (files(&plain), files(&refined), files(&rendered));
    assert_eq!(
        plain.keys().collect::<Vec<_>>(),
        refined.keys().collect::<Vec<_>>()
    );
    let changed = plain.iter().filter(|(k, v)| refined[*k] != **v).count();
    assert!(changed > 0, "Refine Edges changed no matte");
    assert_eq!(
        refined, rendered,
        "render from the cache refined differently from track"
    );

    let bad = run(&os(&[
        &"track",
        &"--model",
        &test_model(),
        &"--script",
        &script,
        &"--out",
        &tmp.path().join("bad"),
        &"--refine-edges",
        &"colour",
        &"--edge-radius",
        &"0.5",
    ]));
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("edge radius"), "{}", stderr(&bad));
}
