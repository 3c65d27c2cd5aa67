//! Rust driver for `ofx-host`, the headless OpenFX test host (tests/host/ofx_host.cpp, on the
//! official OpenFX HostSupport library). Include it from a test with
//!
//! ```ignore
//! #[path = "host/driver.rs"]   // relative to the including file
//! mod ofx_host;
//! use ofx_host::{Host, Image, Render, Pen};
//! ```
//!
//! [`build`] runs `tests/host/build.sh` once per test process; [`Host::spawn`] starts a host that
//! finds plug-ins through `OFX_PLUGIN_PATH` like a real host; each method sends one command of the
//! line protocol (tests/host/PROTOCOL.md) and parses the answer. A plug-in status other than
//! `kOfxStatOK` is data, not an error, except where a method says it needs success (`render`,
//! `create_instance`): use the `*_raw` variants to look at failures.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::missing_errors_doc
)]

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Identifier of our plug-in (plugin/, bundled by bundle/build-bundle.sh into
/// `target/bundle/SAM2Rotoscope.ofx.bundle`); the host also accepts its label, "SAM 2 Rotoscope".
pub const SAM2_PLUGIN_ID: &str = "com.sam2rotoscope.SAM2Rotoscope";
/// Identifiers of the bundles `build.sh` makes in [`Built::test_plugins`].
pub const INVERT_ID: &str = "uk.co.thefoundry.OfxInvertExample";
pub const BASIC_GAIN_ID: &str = "uk.co.thefoundry.BasicGainPlugin";
pub const TESTER_ID: &str = "net.sam2rotoscope.test.Tester";

/// OpenFX context names.
pub const FILTER: &str = "filter";
pub const GENERAL: &str = "general";

// ------------------------------------------------------------------------------------------------
// Errors

#[derive(Debug)]
pub enum HostError {
    /// tests/host/build.sh failed (its output is in the message).
    Build(String),
    /// The host process could not be started or talked to.
    Io(String),
    /// The host answered {"ok": false}: it could not do what was asked.
    Command { cmd: String, error: String },
    /// The plug-in answered with a status other than the one the method needs.
    Status {
        cmd: String,
        status: String,
        response: Value,
    },
    /// The host process crashed (a plug-in crash: `error` names the action) or exited.
    Died { error: String, stderr: String },
    /// No answer within the timeout; the host was killed.
    Timeout {
        cmd: String,
        after: Duration,
        stderr: String,
    },
    /// The answer was not what the protocol promises.
    Protocol(String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Build(m) => write!(f, "building the OFX test host failed:\n{m}"),
            Self::Io(m) => write!(f, "ofx-host I/O: {m}"),
            Self::Command { cmd, error } => write!(f, "ofx-host `{cmd}` failed: {error}"),
            Self::Status {
                cmd,
                status,
                response,
            } => {
                write!(
                    f,
                    "ofx-host `{cmd}`: the plug-in answered {status}: {response}"
                )
            }
            Self::Died { error, stderr } => write!(
                f,
                "ofx-host died: {error}\n--- host stderr (tail) ---\n{stderr}"
            ),
            Self::Timeout { cmd, after, stderr } => {
                write!(
                    f,
                    "ofx-host `{cmd}`: no answer after {after:?}\n--- host stderr (tail) ---\n{stderr}"
                )
            }
            Self::Protocol(m) => write!(f, "ofx-host protocol: {m}"),
        }
    }
}

impl std::error::Error for HostError {}

pub type Result<T> = std::result::Result<T, HostError>;

// ------------------------------------------------------------------------------------------------
// Building

/// Where the build put things.
#[derive(Debug, Clone)]
pub struct Built {
    /// The host executable.
    pub host: PathBuf,
    /// A directory with the SDK examples (Invert, Basic) and the tester plug-in bundles.
    pub test_plugins: PathBuf,
}

/// The workspace root: the first ancestor of this crate's directory holding tests/host/build.sh.
pub fn workspace_root() -> PathBuf {
    let start = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    start
        .ancestors()
        .find(|d| d.join("tests/host/build.sh").is_file())
        .map(Path::to_path_buf)
        .unwrap_or(start)
}

/// The directory that holds our bundle (`SAM2Rotoscope.ofx.bundle`), as bundle/build-bundle.sh
/// makes it: `target/bundle` (or `$CARGO_TARGET_DIR/bundle`).
pub fn sam2_bundle_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => PathBuf::from(t).join("bundle"),
        _ => workspace_root().join("target/bundle"),
    }
}

/// Builds the host and the test plug-ins (once per process; later calls return the first result).
pub fn build() -> Result<&'static Built> {
    static BUILT: OnceLock<std::result::Result<Built, String>> = OnceLock::new();
    BUILT
        .get_or_init(run_build)
        .as_ref()
        .map_err(|e| HostError::Build(e.clone()))
}

fn run_build() -> std::result::Result<Built, String> {
    let script = workspace_root().join("tests/host/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "{} exited with {}\n{stdout}{stderr}",
            script.display(),
            out.status
        ));
    }
    let find = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(PathBuf::from)
            .ok_or_else(|| format!("build.sh printed no {key}\n{stdout}{stderr}"))
    };
    Ok(Built {
        host: find("OFX_HOST=")?,
        test_plugins: find("OFX_TEST_PLUGINS=")?,
    })
}

// ------------------------------------------------------------------------------------------------
// Images (the raw "OFXR" format of tests/host/pixels.h)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    Byte,
    Short,
    Half,
    Float,
}

impl Depth {
    pub fn name(self) -> &'static str {
        match self {
            Self::Byte => "byte",
            Self::Short => "short",
            Self::Half => "half",
            Self::Float => "float",
        }
    }
    fn code(self) -> u32 {
        match self {
            Self::Byte => 1,
            Self::Short => 2,
            Self::Half => 3,
            Self::Float => 4,
        }
    }
    fn from_code(c: u32) -> Option<Self> {
        Some(match c {
            1 => Self::Byte,
            2 => Self::Short,
            3 => Self::Half,
            4 => Self::Float,
            _ => return None,
        })
    }
    pub fn bytes(self) -> usize {
        match self {
            Self::Byte => 1,
            Self::Short | Self::Half => 2,
            Self::Float => 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Components {
    Rgba,
    Rgb,
    Alpha,
}

impl Components {
    pub fn count(self) -> usize {
        match self {
            Self::Rgba => 4,
            Self::Rgb => 3,
            Self::Alpha => 1,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Rgba => "RGBA",
            Self::Rgb => "RGB",
            Self::Alpha => "Alpha",
        }
    }
    fn from_count(n: u32) -> Option<Self> {
        Some(match n {
            4 => Self::Rgba,
            3 => Self::Rgb,
            1 => Self::Alpha,
            _ => return None,
        })
    }
}

/// IEEE binary16 bits to f32.
pub fn half_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // subnormal: renormalise
            let mut e = 127 - 15 + 1;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x3ff) << 13)
        }
        (31, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// f32 to IEEE binary16 bits, round to nearest even.
pub fn f32_to_half(f: f32) -> u16 {
    let x = f.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let man = x & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 31 {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let mut h = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let halfway = 1 << (shift - 1);
        if rem > halfway || (rem == halfway && h & 1 == 1) {
            h += 1;
        }
        return sign | h as u16;
    }
    let mut h = u32::from(sign) | ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && h & 1 == 1) {
        h += 1;
    }
    h as u16
}

/// An image as OpenFX lays it out: bounds (`x1`, `y1`, width, height) in pixels, rows bottom-up,
/// interleaved components, samples stored little-endian in `data` at `depth`.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub x1: i32,
    pub y1: i32,
    pub width: usize,
    pub height: usize,
    pub components: Components,
    pub depth: Depth,
    pub data: Vec<u8>,
}

impl Image {
    /// A black (all-zero) image at the origin.
    pub fn new(width: usize, height: usize, components: Components, depth: Depth) -> Self {
        let len = width * height * components.count() * depth.bytes();
        Self {
            x1: 0,
            y1: 0,
            width,
            height,
            components,
            depth,
            data: vec![0; len],
        }
    }

    /// An image whose sample (x, y, c) is `f(x, y, c)` in normalised units (0..1 for integer depths).
    pub fn from_fn(
        width: usize,
        height: usize,
        components: Components,
        depth: Depth,
        f: impl Fn(usize, usize, usize) -> f32,
    ) -> Self {
        let mut img = Self::new(width, height, components, depth);
        for y in 0..height {
            for x in 0..width {
                for c in 0..components.count() {
                    img.set(x as i32, y as i32, c, f(x, y, c));
                }
            }
        }
        img
    }

    fn offset(&self, x: i32, y: i32, c: usize) -> usize {
        assert!(
            x >= self.x1
                && y >= self.y1
                && ((x - self.x1) as usize) < self.width
                && ((y - self.y1) as usize) < self.height,
            "pixel ({x}, {y}) outside the image bounds ({}, {}) {}x{}",
            self.x1,
            self.y1,
            self.width,
            self.height
        );
        assert!(
            c < self.components.count(),
            "component {c} of a {} image",
            self.components.name()
        );
        let (px, py) = ((x - self.x1) as usize, (y - self.y1) as usize);
        ((py * self.width + px) * self.components.count() + c) * self.depth.bytes()
    }

    /// Sample (x, y, c) in normalised units: bytes /255, shorts /65535, half and float as stored.
    pub fn get(&self, x: i32, y: i32, c: usize) -> f32 {
        let o = self.offset(x, y, c);
        let d = &self.data[o..o + self.depth.bytes()];
        match self.depth {
            Depth::Byte => f32::from(d[0]) / 255.0,
            Depth::Short => f32::from(u16::from_le_bytes([d[0], d[1]])) / 65535.0,
            Depth::Half => half_to_f32(u16::from_le_bytes([d[0], d[1]])),
            Depth::Float => f32::from_le_bytes([d[0], d[1], d[2], d[3]]),
        }
    }

    /// Sample (x, y, c) as stored: 0..255 for bytes, 0..65535 for shorts, the value for half/float.
    pub fn get_raw(&self, x: i32, y: i32, c: usize) -> f64 {
        let o = self.offset(x, y, c);
        let d = &self.data[o..o + self.depth.bytes()];
        match self.depth {
            Depth::Byte => f64::from(d[0]),
            Depth::Short => f64::from(u16::from_le_bytes([d[0], d[1]])),
            Depth::Half => f64::from(half_to_f32(u16::from_le_bytes([d[0], d[1]]))),
            Depth::Float => f64::from(f32::from_le_bytes([d[0], d[1], d[2], d[3]])),
        }
    }

    /// Sets sample (x, y, c) from a normalised value (clamped and rounded for integer depths).
    pub fn set(&mut self, x: i32, y: i32, c: usize, v: f32) {
        let o = self.offset(x, y, c);
        let clamp = |v: f32| if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
        match self.depth {
            Depth::Byte => self.data[o] = (clamp(v) * 255.0).round() as u8,
            Depth::Short => self.data[o..o + 2]
                .copy_from_slice(&((clamp(v) * 65535.0).round() as u16).to_le_bytes()),
            Depth::Half => self.data[o..o + 2].copy_from_slice(&f32_to_half(v).to_le_bytes()),
            Depth::Float => self.data[o..o + 4].copy_from_slice(&v.to_le_bytes()),
        }
    }

    /// All samples, normalised, in storage order.
    pub fn to_f32(&self) -> Vec<f32> {
        let n = self.components.count();
        let mut out = Vec::with_capacity(self.width * self.height * n);
        for y in 0..self.height as i32 {
            for x in 0..self.width as i32 {
                for c in 0..n {
                    out.push(self.get(self.x1 + x, self.y1 + y, c));
                }
            }
        }
        out
    }

    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| HostError::Io(format!("reading {}: {e}", path.display())))?;
        let bad = |m: &str| HostError::Protocol(format!("{}: {m}", path.display()));
        if bytes.len() < 32 || &bytes[..4] != b"OFXR" {
            return Err(bad("not an OFXR image"));
        }
        let u = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        if u(4) != 1 {
            return Err(bad("unknown OFXR version"));
        }
        let components = Components::from_count(u(24)).ok_or_else(|| bad("bad component count"))?;
        let depth = Depth::from_code(u(28)).ok_or_else(|| bad("bad depth"))?;
        let (width, height) = (u(16) as usize, u(20) as usize);
        let len = width * height * components.count() * depth.bytes();
        if bytes.len() != 32 + len {
            return Err(bad("size does not match the header"));
        }
        Ok(Self {
            x1: u(8) as i32,
            y1: u(12) as i32,
            width,
            height,
            components,
            depth,
            data: bytes[32..].to_vec(),
        })
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut bytes = Vec::with_capacity(32 + self.data.len());
        bytes.extend_from_slice(b"OFXR");
        for v in [
            1,
            self.x1 as u32,
            self.y1 as u32,
            self.width as u32,
            self.height as u32,
            self.components.count() as u32,
            self.depth.code(),
        ] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.extend_from_slice(&self.data);
        std::fs::write(path, bytes)
            .map_err(|e| HostError::Io(format!("writing {}: {e}", path.display())))
    }
}

// ------------------------------------------------------------------------------------------------
// Command arguments

/// A clip's footage: `set_source`.
#[derive(Debug, Clone)]
pub struct Source {
    pub clip: String,
    pub frames: Vec<Image>,
    pub first_frame: i32,
    /// The clip's depth/components as the host declares them (the frames are converted); default:
    /// the frames' own.
    pub depth: Option<Depth>,
    pub components: Option<Components>,
    pub pixel_aspect: f64,
    /// "none", "lower" or "upper".
    pub field_order: String,
    pub frame_rate: f64,
    /// "premultiplied", "unpremultiplied" or "opaque"; default by components.
    pub premult: Option<String>,
    /// "fail" (no image outside the clip, the default) or "clamp".
    pub out_of_range: Option<String>,
}

impl Source {
    pub fn new(frames: Vec<Image>) -> Self {
        Self {
            clip: "Source".into(),
            frames,
            first_frame: 0,
            depth: None,
            components: None,
            pixel_aspect: 1.0,
            field_order: "none".into(),
            frame_rate: 24.0,
            premult: None,
            out_of_range: None,
        }
    }
    pub fn clip(mut self, name: &str) -> Self {
        self.clip = name.into();
        self
    }
    pub fn first_frame(mut self, f: i32) -> Self {
        self.first_frame = f;
        self
    }
    pub fn depth(mut self, d: Depth) -> Self {
        self.depth = Some(d);
        self
    }
    pub fn components(mut self, c: Components) -> Self {
        self.components = Some(c);
        self
    }
    pub fn pixel_aspect(mut self, par: f64) -> Self {
        self.pixel_aspect = par;
        self
    }
    pub fn field_order(mut self, f: &str) -> Self {
        self.field_order = f.into();
        self
    }
    pub fn frame_rate(mut self, fps: f64) -> Self {
        self.frame_rate = fps;
        self
    }
    pub fn premult(mut self, p: &str) -> Self {
        self.premult = Some(p.into());
        self
    }
    pub fn out_of_range(mut self, mode: &str) -> Self {
        self.out_of_range = Some(mode.into());
        self
    }
}

/// A render request: `render`.
#[derive(Debug, Clone)]
pub struct Render {
    pub time: f64,
    /// Several frames (with `threads`, rendered concurrently); overrides `time`.
    pub times: Option<Vec<f64>>,
    pub threads: usize,
    pub render_scale: (f64, f64),
    /// Pixels at render scale [x1, y1, x2, y2]; default the region of definition.
    pub window: Option<[i32; 4]>,
    /// Any further protocol fields (field, draft, interactive, sequential, output_bounds, fill,
    /// abort_after_polls, abort_at_progress, abort_after_ms, identity_check, ...).
    pub extra: serde_json::Map<String, Value>,
}

impl Render {
    pub fn at(time: f64) -> Self {
        Self {
            time,
            times: None,
            threads: 1,
            render_scale: (1.0, 1.0),
            window: None,
            extra: serde_json::Map::new(),
        }
    }
    pub fn times(times: &[f64], threads: usize) -> Self {
        let mut r = Self::at(times.first().copied().unwrap_or(0.0));
        r.times = Some(times.to_vec());
        r.threads = threads.max(1);
        r
    }
    pub fn scale(mut self, s: f64) -> Self {
        self.render_scale = (s, s);
        self
    }
    pub fn scale_xy(mut self, sx: f64, sy: f64) -> Self {
        self.render_scale = (sx, sy);
        self
    }
    pub fn window(mut self, w: [i32; 4]) -> Self {
        self.window = Some(w);
        self
    }
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PenKind {
    Down,
    Motion,
    Up,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    Shift,
    Ctrl,
    Alt,
}

/// An overlay pen event at canonical coordinates: `pen`.
#[derive(Debug, Clone)]
pub struct Pen {
    pub kind: PenKind,
    pub x: f64,
    pub y: f64,
    pub modifiers: Vec<Modifier>,
    pub time: Option<f64>,
    pub render_scale: (f64, f64),
    pub pressure: f64,
}

impl Pen {
    fn new(kind: PenKind, x: f64, y: f64) -> Self {
        Self {
            kind,
            x,
            y,
            modifiers: Vec::new(),
            time: None,
            render_scale: (1.0, 1.0),
            pressure: 1.0,
        }
    }
    pub fn down(x: f64, y: f64) -> Self {
        Self::new(PenKind::Down, x, y)
    }
    pub fn motion(x: f64, y: f64) -> Self {
        Self::new(PenKind::Motion, x, y)
    }
    pub fn up(x: f64, y: f64) -> Self {
        Self::new(PenKind::Up, x, y)
    }
    pub fn shift(mut self) -> Self {
        self.modifiers.push(Modifier::Shift);
        self
    }
    pub fn ctrl(mut self) -> Self {
        self.modifiers.push(Modifier::Ctrl);
        self
    }
    pub fn alt(mut self) -> Self {
        self.modifiers.push(Modifier::Alt);
        self
    }
    pub fn at(mut self, time: f64) -> Self {
        self.time = Some(time);
        self
    }
    pub fn scale(mut self, s: f64) -> Self {
        self.render_scale = (s, s);
        self
    }
}

// ------------------------------------------------------------------------------------------------
// Answers

/// One plug-in found by `load`.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    pub id: String,
    pub label: String,
    pub ok: bool,
    pub error: Option<String>,
    /// OFX context names (kOfxImageEffectContextFilter, ...).
    pub contexts: Vec<String>,
    /// OFX depth names (kOfxBitDepthByte, ...).
    pub pixel_depths: Vec<String>,
    pub overlay: bool,
    pub bundle: String,
}

#[derive(Debug, Clone)]
pub struct LoadReport {
    pub plugins: Vec<PluginInfo>,
    /// The whole answer: per-binary reports (`binaries`), `search_path`, captured `log`.
    pub raw: Value,
}

impl LoadReport {
    pub fn plugin(&self, id: &str) -> Option<&PluginInfo> {
        self.plugins.iter().find(|p| p.id == id)
    }
}

/// A rendered frame and the host's answer (statuses, RoD, RoIs, frames needed, timings...).
#[derive(Debug, Clone)]
pub struct Rendered {
    pub image: Image,
    pub response: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// OFX message type (OfxMessageError, OfxMessageWarning, OfxMessageMessage, OfxMessageQuestion,
    /// OfxMessageLog) or "clear" for a cleared persistent message.
    pub kind: String,
    pub id: String,
    pub text: String,
    pub persistent: bool,
}

#[derive(Debug, Clone)]
pub struct Messages {
    /// The instance's current persistent message.
    pub persistent: Option<Message>,
    /// Everything posted to the instance, in order.
    pub log: Vec<Message>,
    /// Messages not tied to a live instance (posted during describe, or by HostSupport on a
    /// plug-in exception).
    pub host_log: Vec<Message>,
}

fn message(v: &Value) -> Message {
    Message {
        kind: v["type"].as_str().unwrap_or("").into(),
        id: v["id"].as_str().unwrap_or("").into(),
        text: v["text"].as_str().unwrap_or("").into(),
        persistent: v["persistent"].as_bool().unwrap_or(false),
    }
}

/// JSON equality with numbers compared by value: the host writes integral numbers without a
/// fraction, so `2.0` sent comes back as `2` (serde_json tells those apart).
pub fn json_same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_same(v, w)))
        }
        _ => a == b,
    }
}

/// `assert_eq!` for JSON values under [`json_same`].
#[track_caller]
pub fn assert_json(left: &Value, right: &Value) {
    assert!(
        json_same(left, right),
        "JSON differs:\n  left: {left}\n right: {right}"
    );
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

// ------------------------------------------------------------------------------------------------
// The host process

/// How to start a host.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Directories for OFX_PLUGIN_PATH.
    pub plugin_path: Vec<PathBuf>,
    /// Extra environment for the host (and so the plug-ins), e.g. SAM2_ORT_DYLIB.
    pub env: Vec<(String, String)>,
    /// Per-command answer timeout (default 120 s, or OFX_HOST_TIMEOUT_S).
    pub timeout: Duration,
    /// Copy the host's stderr to this process's stderr as it comes (or OFX_HOST_ECHO_STDERR=1).
    pub echo_stderr: bool,
}

impl HostOptions {
    pub fn new(plugin_dir: impl AsRef<Path>) -> Self {
        let timeout = std::env::var("OFX_HOST_TIMEOUT_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(Duration::from_secs(120), Duration::from_secs);
        Self {
            plugin_path: vec![plugin_dir.as_ref().to_path_buf()],
            env: Vec::new(),
            timeout,
            echo_stderr: std::env::var_os("OFX_HOST_ECHO_STDERR").is_some_and(|v| v == "1"),
        }
    }
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
}

/// A running `ofx-host`. Dropping it quits the host (and kills it if it does not quit).
pub struct Host {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    timeout: Duration,
    tmp: tempfile::TempDir,
    files: usize,
    dead: Option<String>,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

const STDERR_KEEP: usize = 64 * 1024;

impl Host {
    /// Builds (once) and starts a host whose OFX_PLUGIN_PATH is `plugin_dir`.
    pub fn spawn(plugin_dir: impl AsRef<Path>) -> Result<Self> {
        Self::spawn_with(HostOptions::new(plugin_dir))
    }

    /// A host over the test plug-ins (SDK Invert and Basic, the tester).
    pub fn spawn_test_plugins() -> Result<Self> {
        let built = build()?;
        Self::spawn(&built.test_plugins)
    }

    pub fn spawn_with(opts: HostOptions) -> Result<Self> {
        let built = build()?;
        let path =
            std::env::join_paths(&opts.plugin_path).map_err(|e| HostError::Io(e.to_string()))?;
        let mut cmd = Command::new(&built.host);
        cmd.env("OFX_PLUGIN_PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| HostError::Io(format!("starting {}: {e}", built.host.display())))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| HostError::Io("no stdout".into()))?;
        let mut err = child
            .stderr
            .take()
            .ok_or_else(|| HostError::Io("no stderr".into()))?;

        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let echo = opts.echo_stderr;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]);
                if echo {
                    eprint!("{text}");
                }
                let mut s = sink
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                s.push_str(&text);
                if s.len() > STDERR_KEEP {
                    let mut cut = s.len() - STDERR_KEEP / 2;
                    while !s.is_char_boundary(cut) {
                        cut += 1;
                    }
                    s.drain(..cut);
                }
            }
        });
        let tmp = tempfile::Builder::new()
            .prefix("ofx-host-")
            .tempdir()
            .map_err(|e| HostError::Io(format!("temp dir: {e}")))?;
        Ok(Self {
            child,
            stdin,
            lines,
            stderr,
            timeout: opts.timeout,
            tmp,
            files: 0,
            dead: None,
        })
    }

    /// What the host wrote on stderr (the last 32-64 KB).
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A scratch directory that lives as long as the host.
    pub fn temp_dir(&self) -> &Path {
        self.tmp.path()
    }

    fn temp_file(&mut self, stem: &str) -> PathBuf {
        self.files += 1;
        self.tmp.path().join(format!("{stem}-{}.raw", self.files))
    }

    fn stderr_tail(&self) -> String {
        // Give the stderr reader a moment to catch the last words of a dying host.
        std::thread::sleep(Duration::from_millis(50));
        let s = self.stderr();
        let keep = 8000;
        if s.len() <= keep {
            return s;
        }
        let mut cut = s.len() - keep;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s[cut..].to_string()
    }

    /// Sends one command and returns the answer as it is, `{"ok": false}` included.
    pub fn request_raw(&mut self, cmd: Value) -> Result<Value> {
        let name = cmd["cmd"].as_str().unwrap_or("?").to_string();
        if let Some(error) = &self.dead {
            return Err(HostError::Died {
                error: error.clone(),
                stderr: self.stderr_tail(),
            });
        }
        let mut line =
            serde_json::to_string(&cmd).map_err(|e| HostError::Protocol(e.to_string()))?;
        line.push('\n');
        let write = self
            .stdin
            .as_mut()
            .map(|s| s.write_all(line.as_bytes()).and_then(|()| s.flush()));
        if !matches!(write, Some(Ok(()))) {
            return Err(self.died("the host closed its stdin".into()));
        }
        match self.lines.recv_timeout(self.timeout) {
            Ok(l) => {
                let v: Value = serde_json::from_str(&l).map_err(|e| {
                    HostError::Protocol(format!("bad answer to `{name}`: {e}: {l}"))
                })?;
                if v["crash"].as_bool() == Some(true) {
                    let error = v["error"].as_str().unwrap_or("crash").to_string();
                    return Err(self.died(error));
                }
                Ok(v)
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                self.dead = Some(format!("killed after no answer to `{name}`"));
                Err(HostError::Timeout {
                    cmd: name,
                    after: self.timeout,
                    stderr: self.stderr_tail(),
                })
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(self.died(format!("exited ({status}) while running `{name}`")))
            }
        }
    }

    fn died(&mut self, error: String) -> HostError {
        self.dead = Some(error.clone());
        HostError::Died {
            error,
            stderr: self.stderr_tail(),
        }
    }

    /// Sends one command; `{"ok": false}` becomes [`HostError::Command`].
    pub fn request(&mut self, cmd: Value) -> Result<Value> {
        let name = cmd["cmd"].as_str().unwrap_or("?").to_string();
        let v = self.request_raw(cmd)?;
        if v["ok"].as_bool() == Some(true) {
            Ok(v)
        } else {
            Err(HostError::Command {
                cmd: name,
                error: v["error"].as_str().unwrap_or("(no error text)").to_string(),
            })
        }
    }

    fn require_status(cmd: &str, v: Value, wanted: &[&str]) -> Result<Value> {
        let status = v["status"].as_str().unwrap_or("").to_string();
        if wanted.contains(&status.as_str()) {
            Ok(v)
        } else {
            Err(HostError::Status {
                cmd: cmd.into(),
                status,
                response: v,
            })
        }
    }

    // --- plug-ins ------------------------------------------------------------------------------

    /// Host settings that plug-ins read at load (host_name, host_label) or the host uses
    /// (question_reply "yes"/"no", out_of_range "fail"/"clamp", cpus, respect_thread_safety), and
    /// the behaviours of other hosts (PROTOCOL.md, "Behaving like other hosts"): clip_fetch,
    /// clip_frame_range, secret_params, frame_threaded, overlay_draw, or mlt: true for all of MLT's.
    pub fn configure(&mut self, settings: Value) -> Result<Value> {
        let mut cmd = settings;
        cmd["cmd"] = json!("configure");
        self.request(cmd)
    }

    /// Behaves like MLT 7.42 (melt, Kdenlive, Shotcut): no temporal clip access and a clip fetch
    /// that serves the frame being rendered for any time, clips without a frame range, an effect
    /// that sees no project, duration or timeline bounds, secret params hidden, a fresh instance
    /// for every frame. Call before `load` and `create_instance`.
    pub fn behave_like_mlt(&mut self) -> Result<Value> {
        self.configure(json!({"mlt": true}))
    }

    /// Scans OFX_PLUGIN_PATH: loads (kOfxActionLoad) and describes every plug-in.
    pub fn load(&mut self) -> Result<LoadReport> {
        let raw = self.request(json!({"cmd": "load"}))?;
        let plugins = raw["plugins"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| PluginInfo {
                        id: p["id"].as_str().unwrap_or("").into(),
                        label: p["label"].as_str().unwrap_or("").into(),
                        ok: p["ok"].as_bool().unwrap_or(false),
                        error: p["error"].as_str().map(String::from),
                        contexts: strings(&p["contexts"]),
                        pixel_depths: strings(&p["pixel_depths"]),
                        overlay: p["overlay"].as_bool().unwrap_or(false),
                        bundle: p["bundle"].as_str().unwrap_or("").into(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(LoadReport { plugins, raw })
    }

    /// The plug-in's description; with a context, its clips and params there too.
    pub fn describe(&mut self, plugin: &str, context: Option<&str>) -> Result<Value> {
        let mut cmd = json!({"cmd": "describe", "plugin": plugin});
        if let Some(c) = context {
            cmd["context"] = json!(c);
        }
        self.request(cmd)
    }

    /// Which suites the plug-ins asked for, and whether the host had them.
    pub fn suites(&mut self) -> Result<Value> {
        Ok(self.request(json!({"cmd": "suites"}))?["suites"].clone())
    }

    // --- instances -----------------------------------------------------------------------------

    /// Creates an instance (kOfxActionCreateInstance, then clip preferences); fails unless the
    /// plug-in created it.
    pub fn create_instance(&mut self, plugin: &str, context: &str) -> Result<Value> {
        let v = self.create_instance_raw(json!({"plugin": plugin, "context": context}))?;
        if v["created"].as_bool() == Some(true) {
            Ok(v)
        } else {
            Self::require_status("create_instance", v, &[])
        }
    }

    /// `create_instance` with any arguments (name, params: {...} set before creation,
    /// params_file, interactive); the plug-in's refusal is an answer here.
    pub fn create_instance_raw(&mut self, args: Value) -> Result<Value> {
        let mut cmd = args;
        cmd["cmd"] = json!("create_instance");
        self.request(cmd)
    }

    pub fn destroy_instance(&mut self) -> Result<()> {
        self.request(json!({"cmd": "destroy_instance"})).map(drop)
    }

    /// Makes `source.frames` the footage of `source.clip` (frames first_frame, first_frame+1, ...).
    pub fn set_source_with(&mut self, source: &Source) -> Result<Value> {
        let mut paths = Vec::new();
        for img in &source.frames {
            let p = self.temp_file("source");
            img.write(&p)?;
            paths.push(p.to_string_lossy().into_owned());
        }
        let mut cmd = json!({
            "cmd": "set_source",
            "clip": source.clip,
            "frames": paths,
            "first_frame": source.first_frame,
            "pixel_aspect": source.pixel_aspect,
            "field_order": source.field_order,
            "frame_rate": source.frame_rate,
        });
        if let Some(d) = source.depth {
            cmd["depth"] = json!(d.name());
        }
        if let Some(c) = source.components {
            cmd["components"] = json!(c.name());
        }
        if let Some(p) = &source.premult {
            cmd["premult"] = json!(p);
        }
        if let Some(o) = &source.out_of_range {
            cmd["out_of_range"] = json!(o);
        }
        let v = self.request(cmd);
        for p in &paths {
            let _ = std::fs::remove_file(p);
        }
        v
    }

    /// `set_source_with` for the Source clip with default settings.
    pub fn set_source(&mut self, frames: &[Image]) -> Result<Value> {
        self.set_source_with(&Source::new(frames.to_vec()))
    }

    /// Sets a param as a user would (then kOfxActionInstanceChanged, reason user edit). Values:
    /// bool, int, double, choice (index or option label), string, [r,g,b,a], [r,g,b], [x,y], [x,y,z].
    pub fn set_param(&mut self, name: &str, value: impl Into<Value>) -> Result<Value> {
        self.request(json!({"cmd": "set_param", "name": name, "value": value.into()}))
    }

    /// Presses a push button (kOfxActionInstanceChanged, reason user edit).
    pub fn press_button(&mut self, name: &str) -> Result<Value> {
        self.request(json!({"cmd": "set_param", "name": name}))
    }

    /// A param's value.
    pub fn get_param(&mut self, name: &str) -> Result<Value> {
        Ok(self.request(json!({"cmd": "get_param", "name": name}))?["value"].clone())
    }

    /// Every param: {"values": {name: value}, "params": [summaries]}.
    pub fn params(&mut self) -> Result<Value> {
        self.request(json!({"cmd": "params"}))
    }

    pub fn set_time(&mut self, time: f64) -> Result<()> {
        self.request(json!({"cmd": "set_time", "time": time}))
            .map(drop)
    }

    // --- interaction ---------------------------------------------------------------------------

    /// An overlay pen event (the overlay is created on first use). Modifiers are sent as key
    /// down/up events of Shift_L/Control_L/Alt_L before the pen event.
    pub fn pen(&mut self, pen: &Pen) -> Result<Value> {
        let kind = match pen.kind {
            PenKind::Down => "down",
            PenKind::Motion => "motion",
            PenKind::Up => "up",
        };
        let mods: Vec<&str> = pen
            .modifiers
            .iter()
            .map(|m| match m {
                Modifier::Shift => "shift",
                Modifier::Ctrl => "ctrl",
                Modifier::Alt => "alt",
            })
            .collect();
        let mut cmd = json!({
            "cmd": "pen", "kind": kind, "x": pen.x, "y": pen.y, "modifiers": mods,
            "render_scale": [pen.render_scale.0, pen.render_scale.1], "pressure": pen.pressure,
        });
        if let Some(t) = pen.time {
            cmd["time"] = json!(t);
        }
        self.request(cmd)
    }

    /// A key event on the overlay: kind "down" | "up" | "repeat"; key a name (shift, ctrl, alt,
    /// escape, return, delete, backspace, left, ...), one character, or a keysym number.
    pub fn key(&mut self, kind: &str, key: impl Into<Value>) -> Result<Value> {
        self.request(json!({"cmd": "key", "kind": kind, "key": key.into()}))
    }

    /// Draws the overlay (OfxDrawSuiteV1, no OpenGL) and returns the recorded drawing operations.
    pub fn draw(&mut self, time: f64) -> Result<Value> {
        self.request(json!({"cmd": "draw", "time": time}))
    }

    /// Draws the overlay in the host's OpenGL viewer (configure `overlay_draw: "opengl"` before
    /// `load`) and reads it back: the answer (status, drawn_pixels, stack_depths, renderer, ...)
    /// and the viewport's pixels (8-bit RGBA, y up; canonical (x, y) is pixel (x / pixel scale,
    /// y / pixel scale) from the project offset).
    pub fn draw_opengl(&mut self, time: f64) -> Result<(Value, Image)> {
        let out = self.temp_file("overlay");
        let v = self.request(json!({"cmd": "draw", "time": time, "out": out.to_string_lossy()}))?;
        let image = Image::read(&out)?;
        let _ = std::fs::remove_file(&out);
        Ok((v, image))
    }

    // --- rendering -----------------------------------------------------------------------------

    fn render_cmd(&mut self, r: &Render, outs: &[PathBuf]) -> Value {
        let mut cmd = json!({
            "cmd": "render",
            "time": r.time,
            "threads": r.threads,
            "render_scale": [r.render_scale.0, r.render_scale.1],
            "outs": outs.iter().map(|p| p.to_string_lossy().into_owned()).collect::<Vec<_>>(),
        });
        if let Some(t) = &r.times {
            cmd["times"] = json!(t);
        }
        if let Some(w) = r.window {
            cmd["window"] = json!(w);
        }
        for (k, v) in &r.extra {
            cmd[k] = v.clone();
        }
        cmd
    }

    /// Renders and returns the host's answer whatever the plug-in's status (no image read).
    pub fn render_raw(&mut self, r: &Render) -> Result<Value> {
        let cmd = self.render_cmd(r, &[]);
        self.request(cmd)
    }

    /// Renders one frame; the plug-in must answer kOfxStatOK.
    pub fn render(&mut self, r: &Render) -> Result<Rendered> {
        let out = self.temp_file("render");
        let cmd = self.render_cmd(r, std::slice::from_ref(&out));
        let v = Self::require_status("render", self.request(cmd)?, &["kOfxStatOK"])?;
        let image = Image::read(&out)?;
        let _ = std::fs::remove_file(&out);
        Ok(Rendered { image, response: v })
    }

    /// Renders `r.times` (from `r.threads` threads at once); every render must succeed.
    pub fn render_many(&mut self, r: &Render) -> Result<Vec<Rendered>> {
        let n = r.times.as_ref().map_or(r.threads, Vec::len);
        let outs: Vec<PathBuf> = (0..n).map(|_| self.temp_file("render")).collect();
        let cmd = self.render_cmd(r, &outs);
        let v = Self::require_status("render", self.request(cmd)?, &["kOfxStatOK"])?;
        let renders = if n == 1 {
            vec![v.clone()]
        } else {
            v["renders"].as_array().cloned().unwrap_or_default()
        };
        let mut result = Vec::new();
        for (resp, out) in renders.into_iter().zip(&outs) {
            let image = Image::read(out)?;
            let _ = std::fs::remove_file(out);
            result.push(Rendered {
                image,
                response: resp,
            });
        }
        Ok(result)
    }

    /// Starts a render in the background; then [`Host::abort`] and/or [`Host::wait`].
    pub fn render_async(&mut self, r: &Render) -> Result<i64> {
        let mut cmd = self.render_cmd(r, &[]);
        cmd["async"] = json!(true);
        self.request(cmd)?["job"]
            .as_i64()
            .ok_or_else(|| HostError::Protocol("no job id".into()))
    }

    /// Waits for a background render and returns its answer.
    pub fn wait(&mut self, job: i64) -> Result<Value> {
        self.request(json!({"cmd": "wait", "job": job}))
    }

    /// Makes the instance's abort() answer 1 from now on (until the next render starts).
    pub fn abort(&mut self) -> Result<()> {
        self.request(json!({"cmd": "abort"})).map(drop)
    }

    /// Arms a cancel for what comes next (not only renders): once the plug-in reports progress
    /// `at_progress`, progressUpdate answers kOfxStatReplyNo and abort() answers 1.
    pub fn cancel_at_progress(&mut self, at_progress: f64) -> Result<()> {
        self.request(json!({"cmd": "abort", "at_progress": at_progress}))
            .map(drop)
    }

    /// Clears a cancel.
    pub fn clear_abort(&mut self) -> Result<()> {
        self.request(json!({"cmd": "abort", "reset": true}))
            .map(drop)
    }

    // --- logs ----------------------------------------------------------------------------------

    pub fn messages(&mut self) -> Result<Messages> {
        let v = self.request(json!({"cmd": "messages"}))?;
        let list = |v: &Value| {
            v.as_array()
                .map(|a| a.iter().map(message).collect())
                .unwrap_or_default()
        };
        Ok(Messages {
            persistent: if v["persistent"].is_null() {
                None
            } else {
                Some(message(&v["persistent"]))
            },
            log: list(&v["log"]),
            host_log: list(&v["host_log"]),
        })
    }

    /// The progress suite calls: [{kind: start|update|end, message, value, ms}].
    pub fn progress(&mut self) -> Result<Vec<Value>> {
        Ok(self.request(json!({"cmd": "progress"}))?["log"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Every action the instance was sent, with its status.
    pub fn events(&mut self) -> Result<Value> {
        self.request(json!({"cmd": "events"}))
    }

    /// Every clipGetImage call: clip, time, frame, in_render, ok.
    pub fn fetches(&mut self) -> Result<Vec<Value>> {
        Ok(self.request(json!({"cmd": "fetches"}))?["log"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Images handed to plug-ins and not yet released.
    pub fn live_images(&mut self) -> Result<i64> {
        Ok(self.request(json!({"cmd": "images"}))?["live_images"]
            .as_i64()
            .unwrap_or(-1))
    }

    // --- project save / reopen ------------------------------------------------------------------

    /// kOfxActionSyncPrivateData, then writes every persistent param value to `path`.
    pub fn save_params(&mut self, path: &Path) -> Result<Value> {
        self.request(json!({"cmd": "save_params", "path": path.to_string_lossy()}))
    }

    /// Project reopen: destroys the instance and creates a new one with the saved values set before
    /// kOfxActionCreateInstance.
    pub fn load_params(&mut self, path: &Path) -> Result<Value> {
        self.request(json!({"cmd": "load_params", "path": path.to_string_lossy()}))
    }

    /// Destroys every instance and unloads the plug-ins (kOfxActionUnload).
    pub fn unload(&mut self) -> Result<()> {
        self.request(json!({"cmd": "unload"})).map(drop)
    }

    /// Unloads everything and ends the host.
    pub fn quit(mut self) -> Result<()> {
        self.quit_inner()
    }

    fn quit_inner(&mut self) -> Result<()> {
        if self.dead.is_some() {
            return Ok(());
        }
        let r = self.request_raw(json!({"cmd": "quit"}));
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.dead = Some("quit".into());
                return r.map(drop);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dead = Some("killed after quit".into());
        r.map(drop)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.dead.is_none() {
            let _ = self.quit_inner();
        } else {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
