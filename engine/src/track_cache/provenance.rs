//! What a cache's results were computed from, so that a reader refuses results that no longer
//! match what it would compute now: the model, where and at what precision it ran, the predictor
//! settings, the source frames, the prompts and the engine. Each is a short string (hashes as
//! hex), compared for equality; the cache's header stores them as JSON.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clip::Clip;
use crate::error::{Error, Result};
use crate::predictor::{ClipSession, SessionSettings};
use crate::script::{Interaction, Script};

/// What the results were computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// `sam2-rotoscope engine <version>`.
    pub engine: String,
    /// SHA-256 of the model's `manifest.json`, which lists the SHA-256 of every model file.
    pub model: String,
    /// The graphs' precision and the execution providers they ran on (`fp32 on CPU`; `fast set
    /// <SHA-256 of fast/manifest.json> on CPU` at precision fast).
    pub precision: String,
    /// The session settings that change results.
    pub predictor: String,
    /// A fingerprint of the source frames ([`fingerprint_clip`] for a folder clip; the host's
    /// own for a plugin).
    pub source: String,
    /// A hash of the prompts ([`prompts_hash`] for a script).
    pub prompts: String,
}

/// The shape of what the cache holds; a reader needs it to render, and a mismatch is staleness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub width: u32,
    pub height: u32,
    pub num_frames: usize,
    /// Side of the square low-res logit map (S/4).
    pub low_res: usize,
}

/// The header record's JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Header {
    pub format: String,
    pub version: u32,
    /// Distinguishes two caches written to the same path, so that a reader notices a replacement
    /// even where the file system reuses an inode.
    pub generation: String,
    pub provenance: Provenance,
    pub layout: Layout,
}

pub(crate) const HEADER_FORMAT: &str = "sam2-rotoscope-track-cache";

impl Provenance {
    /// The provenance of `session`'s results, given where its frames and prompts came from.
    pub fn for_session(session: &ClipSession, source: String, prompts: String) -> Provenance {
        let model = session.model();
        let mut providers: Vec<String> = Vec::new();
        for graph in [
            &model.image_encoder,
            &model.mask_decoder,
            &model.memory_encoder,
            &model.memory_attention,
        ] {
            let name = graph.lock().provider().to_string();
            if !providers.contains(&name) {
                providers.push(name);
            }
        }
        // The exact graphs by the manifest's precision (as before the fast set existed, so that
        // earlier caches stay valid); the fast set by the hash of its manifest, which lists the
        // hash of each of its graphs.
        let precision = match model.graph_set().fast() {
            None => serde_json::to_value(model.manifest().precision)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            Some(fast) => format!("fast set {}", fast.sha256()),
        };
        let settings = session.settings();
        Provenance {
            engine: engine_version(),
            model: model.dir().manifest_sha256().to_string(),
            precision: format!("{precision} on {}", providers.join("+")),
            predictor: predictor_text(settings),
            source,
            prompts,
        }
    }

    /// What differs from `expected`, in words (empty when nothing does); `None` fields of
    /// `expected` are not checked.
    pub fn differences(&self, expected: &Expected) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |what: &str, cached: &str, now: &Option<String>| {
            if let Some(now) = now
                && now != cached
            {
                out.push(format!(
                    "{what} changed ({} then, {} now)",
                    short(cached),
                    short(now)
                ));
            }
        };
        check("the prompts", &self.prompts, &expected.prompts);
        check("the model", &self.model, &expected.model);
        check("the source frames", &self.source, &expected.source);
        check(
            "the precision or device",
            &self.precision,
            &expected.precision,
        );
        check(
            "the predictor settings",
            &self.predictor,
            &expected.predictor,
        );
        check("the engine", &self.engine, &expected.engine);
        out
    }
}

/// What a reader expects; a `None` field is not checked (a render task without the model, say).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    pub engine: Option<String>,
    pub model: Option<String>,
    pub precision: Option<String>,
    pub predictor: Option<String>,
    pub source: Option<String>,
    pub prompts: Option<String>,
}

impl From<&Provenance> for Expected {
    fn from(p: &Provenance) -> Expected {
        Expected {
            engine: Some(p.engine.clone()),
            model: Some(p.model.clone()),
            precision: Some(p.precision.clone()),
            predictor: Some(p.predictor.clone()),
            source: Some(p.source.clone()),
            prompts: Some(p.prompts.clone()),
        }
    }
}

/// Hashes are long; twelve hex digits tell two apart in a message.
fn short(text: &str) -> String {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("{}…", &text[..12])
    } else {
        text.to_string()
    }
}

/// The session settings that change results, as a cache's `predictor` names them.
pub fn predictor_text(settings: &SessionSettings) -> String {
    format!(
        "add_all_frames_to_correct_as_cond={}, fill_hole_area={}",
        settings.add_all_frames_to_correct_as_cond, settings.fill_hole_area
    )
}

/// The engine as a cache names it.
pub fn engine_version() -> String {
    format!("sam2-rotoscope engine {}", env!("CARGO_PKG_VERSION"))
}

/// SHA-256 of a model's `manifest.json` (which lists the SHA-256 of every model file) without
/// opening the model: what a render task checks when it is given the model directory.
pub fn model_hash(model_dir: &Path) -> Result<String> {
    let manifest = if model_dir.is_file() {
        model_dir.to_path_buf()
    } else {
        model_dir.join("manifest.json")
    };
    let bytes = std::fs::read(&manifest).map_err(|e| Error::io(&manifest, e))?;
    Ok(crate::model::sha256_hex(&bytes))
}

/// A fingerprint of a folder clip: SHA-256 over the frame count, and each frame's number, byte
/// length and content, in order. Reads every frame file once (a render task pays that once, at
/// disk speed), so that any edited frame makes the cache stale.
pub fn fingerprint_clip(clip: &Clip) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update((clip.len() as u64).to_le_bytes());
    let mut buf = vec![0u8; 1 << 20];
    for frame in clip.frames() {
        let mut file = File::open(&frame.path).map_err(|e| Error::io(&frame.path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(&frame.path, e))?
            .len();
        hasher.update(frame.number.to_le_bytes());
        hasher.update(len.to_le_bytes());
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(&frame.path, e))?;
            let Some(chunk) = buf.get(..n) else { break };
            if n == 0 {
                break;
            }
            hasher.update(chunk);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A hash of a script's prompts: its predictor settings and interactions as parsed (so that
/// formatting and comments change nothing), and the content of every mask file it names.
pub fn prompts_hash(script: &Script) -> Result<String> {
    let mut hasher = Sha256::new();
    let json = serde_json::to_vec(&(&script.predictor, &script.interactions)).map_err(|e| {
        Error::Internal {
            message: format!("the script's prompts could not be serialized ({e})"),
        }
    })?;
    hasher.update((json.len() as u64).to_le_bytes());
    hasher.update(&json);
    for interaction in &script.interactions {
        if let Interaction::AddMask { mask, .. } = interaction {
            let path = script.resolve(mask);
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}
