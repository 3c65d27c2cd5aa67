//! Helpers of tests/plugin.rs: the bundle and the CLI built once per test process, fixture clips
//! as OpenFX images, the CLI's mattes for a script, prompt documents, and host process facts.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};

use crate::driver::{self, Components, Depth, Host, HostOptions, Image};

/// What [`setup`] built.
#[derive(Debug)]
pub struct Built {
    /// The folder holding `SAM2Rotoscope.ofx.bundle` with the test model in its default model
    /// folder (`bundle/build-bundle.sh --with-test-model --debug`): OFX_PLUGIN_PATH.
    pub bundle_dir: PathBuf,
    /// The same bundle without a model (`--out`), for the "no model" message.
    pub bundle_without_model_dir: PathBuf,
    /// The engine CLI, `sam2-rotoscope`, of the same profile.
    pub cli: PathBuf,
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => PathBuf::from(t),
        _ => driver::workspace_root().join("target"),
    }
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .current_dir(driver::workspace_root())
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{shown} failed ({}):\n{text}", out.status))
    }
}

fn build() -> Result<Built, String> {
    let root = driver::workspace_root();
    let script = root.join("bundle/build-bundle.sh");
    // A debug build: bundle/build-bundle.sh documents --debug as the build for tests.
    run(Command::new("bash")
        .arg(&script)
        .args(["--with-test-model", "--debug"]))?;
    let bundle_dir = driver::sam2_bundle_dir();
    let bundle_without_model_dir = target_dir().join("plugin-tests/bundle-without-model");
    run(Command::new("bash").arg(&script).args([
        "--debug",
        "--out",
        &bundle_without_model_dir.to_string_lossy(),
    ]))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo).args([
        "build",
        "-p",
        "sam2-rotoscope-cli",
        "--bin",
        "sam2-rotoscope",
    ]))?;
    let cli = target_dir().join("debug/sam2-rotoscope");
    for (what, path) in [
        (
            "the bundle",
            bundle_dir.join("SAM2Rotoscope.ofx.bundle/Contents/Linux-x86-64/SAM2Rotoscope.ofx"),
        ),
        (
            "the record of the bundled ONNX Runtime (its size and SHA-256)",
            bundle_dir.join(
                "SAM2Rotoscope.ofx.bundle/Contents/Linux-x86-64/libonnxruntime.so.1.32.0.record.json",
            ),
        ),
        (
            "the bundled test model",
            bundle_dir
                .join("SAM2Rotoscope.ofx.bundle/Contents/Resources/models/test/manifest.json"),
        ),
        ("the CLI", cli.clone()),
    ] {
        if !path.is_file() {
            return Err(format!("{what} is not at {}", path.display()));
        }
    }
    if bundle_without_model_dir
        .join("SAM2Rotoscope.ofx.bundle/Contents/Resources/models/test")
        .exists()
    {
        return Err("the bundle without a model has one".into());
    }
    Ok(Built {
        bundle_dir,
        bundle_without_model_dir,
        cli,
    })
}

/// Builds the bundles and the CLI once per test process (and the host, through the driver).
pub fn setup() -> &'static Built {
    static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();
    match BUILT.get_or_init(|| {
        driver::build().map_err(|e| e.to_string())?;
        build()
    }) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

/// Seconds a host may take to answer one command before the test calls it hung.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The plug-in's log file in every test host that does not name its own (so that the tests do
/// not write to the user's cache folder); docs/plugin.md.
pub fn test_log_file() -> PathBuf {
    target_dir().join("plugin-tests/logs/sam2-rotoscope.log")
}

/// Where the plug-in puts track caches in the test hosts when its Track Cache File is empty (so
/// that the tests do not write to the user's cache folder).
pub fn test_cache_dir() -> PathBuf {
    target_dir().join("plugin-tests/track-caches")
}

/// A host whose OFX_PLUGIN_PATH is `plugin_dir`, with the per-command timeout, not loaded yet;
/// the plug-in logs to [`test_log_file`] and puts track caches in [`test_cache_dir`].
pub fn spawn(plugin_dir: &Path) -> Host {
    spawn_with_env(
        plugin_dir,
        &[
            (
                "SAM2_ROTOSCOPE_LOG_FILE",
                &test_log_file().to_string_lossy(),
            ),
            (
                "SAM2_ROTOSCOPE_CACHE_DIR",
                &test_cache_dir().to_string_lossy(),
            ),
        ],
    )
}

/// As [`spawn`], with this environment for the host (and so the plug-in).
pub fn spawn_with_env(plugin_dir: &Path, env: &[(&str, &str)]) -> Host {
    let mut options = HostOptions::new(plugin_dir).timeout(ANSWER_TIMEOUT);
    for (key, value) in env {
        options = options.env(key, value);
    }
    Host::spawn_with(options).unwrap()
}

/// A loaded host over `plugin_dir` with this environment.
pub fn host_with_env(plugin_dir: &Path, env: &[(&str, &str)]) -> Host {
    let mut host = spawn_with_env(plugin_dir, env);
    let report = host.load().unwrap();
    assert!(
        report.plugin(driver::SAM2_PLUGIN_ID).is_some_and(|p| p.ok),
        "{}",
        report.raw
    );
    host
}

/// A host over `plugin_dir`, loaded, with the per-command timeout.
pub fn host_over(plugin_dir: &Path) -> Host {
    let mut host = spawn(plugin_dir);
    let report = host.load().unwrap();
    let me = report
        .plugin(driver::SAM2_PLUGIN_ID)
        .unwrap_or_else(|| panic!("the plug-in is not found: {}", report.raw));
    assert!(me.ok, "{me:?}");
    host
}

/// A host over the bundle with the test model.
pub fn host() -> Host {
    host_over(&setup().bundle_dir)
}

/// The host's process id (the driver shows it in its Debug form only).
pub fn host_pid(host: &Host) -> u32 {
    let shown = format!("{host:?}");
    shown
        .split("pid: ")
        .nth(1)
        .and_then(|s| {
            s.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no pid in {shown}"))
}

/// The resident set size of a process, in KiB (VmRSS of /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

// ------------------------------------------------------------------------------------------------
// Fixtures

pub fn fixtures() -> PathBuf {
    sam2_rotoscope_tests::fixtures_dir()
}

/// An 8-bit RGB frame as the CLI reads it: (width, height, packed RGB, top row first).
#[derive(Debug, Clone)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Frame {
    /// The frame as an OpenFX image: bottom row first, 8-bit RGB.
    pub fn to_image(&self) -> Image {
        let mut img = Image::new(self.width, self.height, Components::Rgb, Depth::Byte);
        let row = self.width * 3;
        for y in 0..self.height {
            let top = self.height - 1 - y;
            img.data[y * row..(y + 1) * row].copy_from_slice(&self.rgb[top * row..(top + 1) * row]);
        }
        img
    }
}

/// The frames of `fixtures/clips/<name>` (PNG, decoded by the `image` crate as the engine does).
pub fn clip(name: &str) -> Vec<Frame> {
    let dir = fixtures().join("clips").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no frames in {}", dir.display());
    files
        .iter()
        .map(|f| {
            let img = image::open(f).unwrap().to_rgb8();
            Frame {
                width: img.width() as usize,
                height: img.height() as usize,
                rgb: img.into_raw(),
            }
        })
        .collect()
}

pub fn images(frames: &[Frame]) -> Vec<Image> {
    frames.iter().map(Frame::to_image).collect()
}

/// The CLI's mattes of a script: object id → one 8-bit matte per frame (top row first).
#[derive(Debug)]
pub struct Mattes {
    pub width: usize,
    pub height: usize,
    pub objects: BTreeMap<u64, Vec<Vec<u8>>>,
}

impl Mattes {
    /// The union (per-pixel maximum) of every object's matte on `frame`.
    pub fn union(&self, frame: usize) -> Vec<u8> {
        let mut out = vec![0u8; self.width * self.height];
        for m in self.objects.values() {
            for (o, v) in out.iter_mut().zip(&m[frame]) {
                *o = (*o).max(*v);
            }
        }
        out
    }

    pub fn frames(&self) -> usize {
        self.objects.values().next().map_or(0, Vec::len)
    }
}

/// Runs `sam2-rotoscope track` on `fixtures/scripts/<script>.json` (8-bit mattes, the CLI's
/// defaults, which are the plug-in's) once per process and reads its mattes.
pub fn cli_mattes(script: &str) -> Arc<Mattes> {
    cli_mattes_on(script, None)
}

/// [`cli_mattes`] on the first `first_frames` frames of the script's clip (a copy), when given.
/// SAM 2's mattes depend on the clip's length, not only on the frames before: the temporal
/// encoding of object pointers is scaled by min(clip length, 16).
pub fn cli_mattes_on(script: &str, first_frames: Option<usize>) -> Arc<Mattes> {
    let path = fixtures().join("scripts").join(format!("{script}.json"));
    cli_mattes_at(&format!("{script}@{first_frames:?}"), &path, first_frames)
}

/// [`cli_mattes`] for `fixtures/scripts/<script>.json` with its interactions replaced by
/// `interactions` (the same clip); `key` names the variant.
pub fn cli_mattes_with(script: &str, key: &str, interactions: Value) -> Arc<Mattes> {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let original = fixtures().join("scripts").join(format!("{script}.json"));
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&original).unwrap()).unwrap();
    let clip = original
        .parent()
        .unwrap()
        .join(doc["clip"].as_str().expect("the script names its clip"));
    doc["clip"] = json!(clip.to_string_lossy());
    doc["interactions"] = interactions;
    let path = dir.path().join(format!("{key}.json"));
    std::fs::write(&path, doc.to_string()).unwrap();
    cli_mattes_at(key, &path, None)
}

fn cli_mattes_at(key: &str, script_path: &Path, first_frames: Option<usize>) -> Arc<Mattes> {
    static DONE: OnceLock<Mutex<HashMap<String, Arc<Mattes>>>> = OnceLock::new();
    let mut done = DONE.get_or_init(Mutex::default).lock().unwrap();
    if let Some(m) = done.get(key) {
        return Arc::clone(m);
    }
    let built = setup();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mattes");
    let mut cmd = Command::new(&built.cli);
    cmd.arg("track")
        .arg("--model")
        .arg(fixtures().join("models/test"))
        .arg("--script")
        .arg(script_path)
        .arg("--out")
        .arg(&out)
        .args(["--bits", "8"]);
    if let Some(k) = first_frames {
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(script_path).unwrap()).unwrap();
        let clip = script_path
            .parent()
            .unwrap()
            .join(doc["clip"].as_str().expect("the script names its clip"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&clip)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let short = tmp.path().join("clip");
        std::fs::create_dir(&short).unwrap();
        for f in files.iter().take(k) {
            std::fs::copy(f, short.join(f.file_name().unwrap())).unwrap();
        }
        cmd.arg("--clip").arg(&short);
    }
    run(&mut cmd).unwrap();
    let mut objects = BTreeMap::new();
    let (mut width, mut height) = (0, 0);
    for entry in std::fs::read_dir(&out).unwrap() {
        let dir = entry.unwrap().path();
        let id: u64 = dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .strip_prefix("object_")
            .unwrap()
            .parse()
            .unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let mattes: Vec<Vec<u8>> = files
            .iter()
            .map(|f| {
                let img = image::open(f).unwrap();
                assert_eq!(img.color(), image::ColorType::L8, "{}", f.display());
                let img = img.to_luma8();
                (width, height) = (img.width() as usize, img.height() as usize);
                img.into_raw()
            })
            .collect();
        objects.insert(id, mattes);
    }
    let m = Arc::new(Mattes {
        width,
        height,
        objects,
    });
    done.insert(key.to_string(), Arc::clone(&m));
    m
}

/// The interactions of `fixtures/scripts/<script>.json`.
pub fn script(script: &str) -> Value {
    let path = fixtures().join("scripts").join(format!("{script}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

// ------------------------------------------------------------------------------------------------
// Images

/// Channel `c` of an 8-bit image, top row first (the CLI's matte layout).
pub fn channel_top_down(img: &Image, c: usize) -> Vec<u8> {
    assert_eq!(img.depth, Depth::Byte, "an 8-bit image");
    let n = img.components.count();
    let mut out = Vec::with_capacity(img.width * img.height);
    for row in (0..img.height).rev() {
        let start = row * img.width * n;
        out.extend(
            img.data[start..start + img.width * n]
                .chunks_exact(n)
                .map(|p| p[c]),
        );
    }
    out
}

/// Channel `c` of an image at any depth in 8-bit code values (normalised value × 255, rounded),
/// top row first.
pub fn channel_u8(img: &Image, c: usize) -> Vec<u8> {
    if img.depth == Depth::Byte {
        return channel_top_down(img, c);
    }
    raw_top_down(img, c)
        .into_iter()
        .map(|v| {
            let n = match img.depth {
                Depth::Short => v / 65535.0,
                _ => v,
            };
            (n.clamp(0.0, 1.0) * 255.0).round() as u8
        })
        .collect()
}

/// Channel `c` as stored (0–255, 0–65535, or the half/float value), top row first.
pub fn raw_top_down(img: &Image, c: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(img.width * img.height);
    for row in (0..img.height as i32).rev() {
        for x in 0..img.width as i32 {
            out.push(img.get_raw(img.x1 + x, img.y1 + row, c));
        }
    }
    out
}

/// Where two mattes differ, for messages: (count, first few (x, y, left, right)).
pub fn differences(a: &[u8], b: &[u8], width: usize) -> (usize, Vec<(usize, usize, u8, u8)>) {
    assert_eq!(a.len(), b.len(), "matte sizes differ");
    let all: Vec<(usize, usize, u8, u8)> = a
        .iter()
        .zip(b)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, (x, y))| (i % width, i / width, *x, *y))
        .collect();
    let n = all.len();
    (n, all.into_iter().take(8).collect())
}

/// Whether an output image shows `frame` unchanged: RGB equal, alpha opaque (an RGB source).
pub fn shows_source(out: &Image, frame: &Frame) -> Result<(), String> {
    if (out.width, out.height) != (frame.width, frame.height) {
        return Err(format!(
            "output {}×{}, source {}×{}",
            out.width, out.height, frame.width, frame.height
        ));
    }
    if out.depth != Depth::Byte || out.components != Components::Rgba {
        return Err(format!("output is {:?} {:?}", out.depth, out.components));
    }
    for c in 0..3 {
        let got = channel_top_down(out, c);
        let want: Vec<u8> = frame.rgb.chunks_exact(3).map(|p| p[c]).collect();
        let (n, first) = differences(&got, &want, frame.width);
        if n > 0 {
            return Err(format!("channel {c}: {n} pixels differ, e.g. {first:?}"));
        }
    }
    let alpha = channel_top_down(out, 3);
    if let Some(i) = alpha.iter().position(|&a| a != 255) {
        return Err(format!("alpha {} at pixel {i}", alpha[i]));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Prompts

/// A click: source pixel (x right, y down) and label (1 positive, 0 negative).
pub type Click = ([f64; 2], u8);

/// One frame's prompt: frame number, box, clicks.
pub type FramePrompt<'a> = (i64, Option<[f64; 4]>, &'a [Click]);

/// A prompts parameter value (docs/plugin.md): frames → (box, points, labels).
pub fn prompts_doc(frames: &[FramePrompt]) -> String {
    let mut map = serde_json::Map::new();
    for (frame, bbox, points) in frames {
        let mut f = json!({
            "points": points.iter().map(|(p, _)| json!(p)).collect::<Vec<_>>(),
            "labels": points.iter().map(|(_, l)| json!(l)).collect::<Vec<_>>(),
        });
        if let Some(b) = bbox {
            f["box"] = json!(b);
        }
        map.insert(frame.to_string(), f);
    }
    json!({"format": "sam2-rotoscope-prompts", "version": 1, "frames": map}).to_string()
}

/// A prompts parameter's value, parsed; `Value::Null` for the empty string (no prompts).
pub fn parse_prompts(value: &Value) -> Value {
    let text = value.as_str().expect("a string parameter");
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("bad prompts {text:?}: {e}"))
    }
}

/// The add_points interactions of a script: (frame, object, clicks).
pub fn script_clicks(script: &str) -> Vec<(i64, u32, Vec<Click>)> {
    let s = self::script(script);
    s["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["op"] == "add_points")
        .map(|i| {
            let points = i["points"]
                .as_array()
                .unwrap()
                .iter()
                .zip(i["labels"].as_array().unwrap())
                .map(|(p, l)| {
                    (
                        [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()],
                        l.as_u64().unwrap() as u8,
                    )
                })
                .collect();
            (
                i["frame"].as_i64().unwrap(),
                i["object"].as_u64().unwrap() as u32,
                points,
            )
        })
        .collect()
}

/// The prompts parameter values of a script's clicks, by object slot.
pub fn script_prompt_params(script: &str) -> Vec<(u32, String)> {
    let clicks = script_clicks(script);
    let mut slots: Vec<u32> = clicks.iter().map(|c| c.1).collect();
    slots.sort_unstable();
    slots.dedup();
    slots
        .into_iter()
        .map(|slot| {
            let frames: Vec<FramePrompt> = clicks
                .iter()
                .filter(|c| c.1 == slot)
                .map(|c| (c.0, None, c.2.as_slice()))
                .collect();
            (slot, prompts_doc(&frames))
        })
        .collect()
}
