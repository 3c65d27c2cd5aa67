//! The effect's track cache (docs/formats.md, "Track cache"): the prompts as the interaction
//! script that tracks the whole clip (what Track Whole Clip Into Cache runs, what the CLI's
//! `track` runs headless from the exported script), what a render expects of a cache, and the
//! lookup of a frame's results in it. No OpenFX here.
//!
//! **What a cache must match.** The prompts (the hash of the script built from the enabled
//! objects' prompts), the model (its manifest's hash, and the predictor settings the manifest
//! gives) and the engine version; the source frame by frame (each frame's digest as the model saw
//! it, checked on every full-resolution render of that frame); the clip's size and length. A
//! render does not load the model, so neither the precision nor the device the cache was tracked
//! on is checked: a cache tracked on a GPU renders on a CPU-only node. Anything else is a sentence
//! saying why the cache is not used — never a result of other prompts, another model or other
//! pixels.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use once_cell::sync::Lazy;
use parking_lot::Mutex;
use sam2_engine::model::manifest::Manifest;
use sam2_engine::script::{Interaction, ObjectId, SCRIPT_FORMAT};
use sam2_engine::track_cache::{
    Expected, SourcePrint, TrackCacheError, TrackCacheReader, View, engine_version, predictor_text,
    prompts_hash,
};
use sam2_engine::{Script, SessionSettings};

use crate::error::{PluginError, Result};
use crate::prompts::ObjectPrompts;
use crate::tracker::{ClipInfo, ClipLength, clamp_to_clip};

/// What a cache's file name ends with when the effect picks it.
pub const EXTENSION: &str = "sam2track";

/// The interaction script of `objects`' prompts over the clip: every prompt (clamped into the
/// clip, as the session is given them) object by object in slot order, frame by frame, then a
/// propagation forward from the first prompted frame and one back from it — the whole clip.
pub fn script(objects: &BTreeMap<u32, ObjectPrompts>, info: &ClipInfo) -> Script {
    let mut interactions = Vec::new();
    for (&slot, prompts) in objects {
        let object = ObjectId(u64::from(slot));
        for (&frame, prompt) in &clamp_to_clip(prompts, info).frames {
            let Some(index) = info.index(frame) else {
                continue;
            };
            let points = prompt.points.iter().map(|p| p.xy()).collect();
            let labels = prompt.points.iter().map(|p| p.label).collect();
            interactions.push(match prompt.bbox {
                Some(bbox) => Interaction::AddBox {
                    frame: index,
                    object,
                    bbox,
                    points,
                    labels,
                },
                None if prompt.points.is_empty() => continue,
                None => Interaction::AddPoints {
                    frame: index,
                    object,
                    points,
                    labels,
                    clear_old_points: true,
                },
            });
        }
    }
    if !interactions.is_empty() {
        for reverse in [false, true] {
            interactions.push(Interaction::Propagate {
                start_frame: None,
                reverse,
                max_frames: None,
            });
        }
    }
    Script {
        format: SCRIPT_FORMAT.to_string(),
        version: 1,
        clip: None,
        predictor: Default::default(),
        interactions,
        base_dir: PathBuf::new(),
    }
}

/// Whether a script prompts anything.
pub fn has_prompts(script: &Script) -> bool {
    script
        .interactions
        .iter()
        .any(|i| !matches!(i, Interaction::Propagate { .. }))
}

/// The script's JSON, as `sam2-rotoscope track --script` reads it.
pub fn script_json(script: &Script) -> Result<String> {
    serde_json::to_string_pretty(script)
        .map(|mut text| {
            text.push('\n');
            text
        })
        .map_err(|e| PluginError::Internal(format!("the script could not be written ({e})")))
}

/// Where the script of the cache at `cache` goes: `FILE.script.json` beside it.
pub fn script_path(cache: &Path) -> PathBuf {
    let mut name = cache.as_os_str().to_os_string();
    name.push(".script.json");
    PathBuf::from(name)
}

/// The folder the effect puts caches in when the Track Cache File is empty: OpenFX gives an
/// effect no project path, so not beside the project but in the user's cache folder —
/// `$SAM2_ROTOSCOPE_CACHE_DIR`, else `$XDG_CACHE_HOME/sam2-rotoscope/track-caches` (else
/// `~/.cache/…`) on Linux, `~/Library/Caches/SAM2Rotoscope/TrackCaches` on macOS,
/// `%LOCALAPPDATA%\SAM2Rotoscope\TrackCaches` on Windows. Never the working directory.
pub fn default_dir(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let nonempty = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = nonempty("SAM2_ROTOSCOPE_CACHE_DIR") {
        return Some(dir);
    }
    // The platform's way of naming a folder: lower case with hyphens on Linux.
    let folder = if cfg!(any(target_os = "windows", target_os = "macos")) {
        "TrackCaches"
    } else {
        "track-caches"
    };
    sam2_engine::user_cache::user_cache_dir(var).map(|d| d.join(folder))
}

/// A new cache file name for one effect instance, unique across processes and time.
pub fn new_file_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("track-{nanos:x}-{:x}.{EXTENSION}", std::process::id())
}

/// What a render expects of a cache, from the prompts' script and the model folder (`None`: the
/// model is not installed here, or is a checkpoint file: then it is not checked).
pub fn expected(script: &Script, model_dir: Option<&Path>) -> Result<Expected> {
    let mut expected = Expected {
        engine: Some(engine_version()),
        prompts: Some(prompts_hash(script)?),
        ..Expected::default()
    };
    if let Some(dir) = model_dir.filter(|d| d.is_dir()) {
        let (model, predictor) = model_facts(&dir.join(sam2_engine::model::MANIFEST_FILE))?;
        expected.model = Some(model);
        expected.predictor = Some(predictor);
    }
    Ok(expected)
}

/// A manifest as last read: its path, length and modification time, then what it says.
type ManifestFacts = (PathBuf, u64, Option<std::time::SystemTime>, String, String);

/// The manifest read last, so that a render reads and hashes it again only when it changed.
static MANIFEST: Lazy<Mutex<Option<ManifestFacts>>> = Lazy::new(Mutex::default);

/// The hash of the manifest at `path` and the predictor settings it gives.
fn model_facts(path: &Path) -> Result<(String, String)> {
    let unreadable = |e: &dyn std::fmt::Display| {
        PluginError::Model(format!(
            "The model's manifest {} cannot be read: {e}.",
            path.display()
        ))
    };
    let meta = std::fs::metadata(path).map_err(|e| unreadable(&e))?;
    let (len, modified) = (meta.len(), meta.modified().ok());
    let mut known = MANIFEST.lock();
    if let Some((p, l, m, model, predictor)) = known.as_ref()
        && (p.as_path(), *l, *m) == (path, len, modified)
    {
        return Ok((model.clone(), predictor.clone()));
    }
    let bytes = std::fs::read(path).map_err(|e| unreadable(&e))?;
    let manifest = Manifest::parse(path, &bytes)?;
    let model = sam2_engine::model::sha256_hex(&bytes);
    let predictor = predictor_text(&SessionSettings::for_manifest(&manifest));
    *known = Some((
        path.to_path_buf(),
        len,
        modified,
        model.clone(),
        predictor.clone(),
    ));
    Ok((model, predictor))
}

/// Why a cache is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Out of date (other prompts, model or source): a warning; otherwise (damaged, truncated,
    /// not a cache, unfinished) an error.
    pub stale: bool,
    pub text: String,
}

impl From<TrackCacheError> for Problem {
    fn from(e: TrackCacheError) -> Problem {
        Problem {
            stale: matches!(e, TrackCacheError::Stale { .. }),
            text: e.to_string(),
        }
    }
}

/// What the cache gives for a frame.
#[derive(Debug)]
pub enum Lookup {
    /// Every object's low-resolution logits (by slot), of side `side`.
    Served { logits: Logits, side: usize },
    /// No cache at that path, or it does not hold this frame: the live session renders it.
    NotCovered,
    /// The cache is not used, and why.
    Unusable(Problem),
}

/// An open cache, and what it was opened for.
#[derive(Debug)]
pub struct OpenCache {
    path: PathBuf,
    expected: Expected,
    reader: TrackCacheReader,
    source: Option<SourcePrint>,
    /// The last frame served, with the file's length then: a host rendering a frame in tiles gets
    /// the same logits (the same `Arc`s), so the finished mattes are reused, not made again.
    last: Option<(usize, u64, Logits)>,
}

/// Every object's low-resolution logits on a frame, by slot.
pub type Logits = Vec<(u32, Arc<[f32]>)>;

/// The status line's words on the cache at `path`: its file name, and how many frames it holds
/// when the last render opened it and found it matching.
pub fn status(slot: &Option<OpenCache>, path: &Path) -> String {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    match slot.as_ref().filter(|c| c.path == path) {
        Some(c) => format!(
            "track cache {name} in use ({} frames)",
            c.reader.layout().num_frames
        ),
        None if path.exists() => format!("track cache {name}"),
        None => format!("track cache {name} not written yet"),
    }
}

/// The results of clip index `index` from the cache at `path`, keeping it open in `slot` between
/// renders (taking in what its writer appended since, reopening it when it was replaced).
/// `digest`: the rendered frame as the model would see it, when it is at full resolution — asked
/// for only when a cache covers the frame (it converts and hashes the whole frame).
pub fn lookup(
    slot: &mut Option<OpenCache>,
    path: &Path,
    expected: &Expected,
    info: &ClipInfo,
    index: usize,
    digest: impl FnOnce() -> Option<u64>,
) -> Lookup {
    let same = slot
        .as_ref()
        .is_some_and(|c| c.path == path && &c.expected == expected);
    if same {
        match slot.as_mut().map(|c| c.reader.refresh()) {
            Some(Ok(())) => {}
            Some(Err(TrackCacheError::Replaced { .. })) => *slot = None,
            Some(Err(e)) => {
                *slot = None;
                return Lookup::Unusable(e.into());
            }
            None => {}
        }
    } else {
        *slot = None;
    }
    if slot.is_none() {
        match TrackCacheReader::open(path, expected, View::Committed) {
            Ok(reader) => {
                let source = SourcePrint::parse(&reader.provenance().source);
                *slot = Some(OpenCache {
                    path: path.to_path_buf(),
                    expected: expected.clone(),
                    reader,
                    source,
                    last: None,
                });
            }
            Err(TrackCacheError::Missing { .. }) => return Lookup::NotCovered,
            Err(e) => return Lookup::Unusable(e.into()),
        }
    }
    let Some(cache) = slot.as_mut() else {
        return Lookup::NotCovered;
    };
    match serve(cache, info, index, digest) {
        Ok(lookup) => lookup,
        Err(e) => {
            *slot = None;
            Lookup::Unusable(e.into())
        }
    }
}

fn serve(
    cache: &mut OpenCache,
    info: &ClipInfo,
    index: usize,
    digest: impl FnOnce() -> Option<u64>,
) -> Result<Lookup, TrackCacheError> {
    let path = &cache.path;
    let stale = |changes: String| TrackCacheError::Stale {
        path: path.clone(),
        changes,
    };
    let layout = cache.reader.layout();
    let (w, h) = info.video_size;
    // A clip of unknown length (MLT) takes the cache's: each frame is checked as it renders.
    if (layout.width, layout.height) != (w, h)
        || (info.length == ClipLength::Known && layout.num_frames != info.num_frames)
    {
        return Err(stale(format!(
            "the clip changed ({} frames of {}×{} then, {} frames of {w}×{h} now)",
            layout.num_frames, layout.width, layout.height, info.num_frames
        )));
    }
    let Some(source) = cache
        .source
        .as_ref()
        .filter(|s| s.frames.len() == layout.num_frames)
    else {
        return Err(stale(
            "its source frames cannot be checked frame by frame (it was written by an earlier version)"
                .into(),
        ));
    };
    if !cache.reader.is_committed() {
        return Err(TrackCacheError::Uncommitted { path: path.clone() });
    }
    if index >= layout.num_frames {
        return Ok(Lookup::NotCovered);
    }
    if let Some(digest) = digest()
        && source.frame(index) != Some(digest)
    {
        return Err(stale(format!(
            "the source frames changed (frame {} is not the one tracked)",
            info.frame(index)
        )));
    }
    let length = std::fs::metadata(path).map_or(0, |m| m.len());
    if let Some((_, _, logits)) = cache
        .last
        .as_ref()
        .filter(|(i, l, _)| (*i, *l) == (index, length))
    {
        return Ok(Lookup::Served {
            logits: logits.clone(),
            side: layout.low_res,
        });
    }
    let objects = cache.reader.objects();
    if objects.is_empty() {
        return Ok(Lookup::NotCovered);
    }
    let mut logits = Vec::with_capacity(objects.len());
    for object in objects {
        let Some(found) = cache.reader.read(object, index)? else {
            return Ok(Lookup::NotCovered);
        };
        let Ok(slot) = u32::try_from(object.0) else {
            return Ok(Lookup::NotCovered);
        };
        logits.push((slot, Arc::from(found.low_res_logits)));
    }
    cache.last = Some((index, length, logits.clone()));
    Ok(Lookup::Served {
        logits,
        side: layout.low_res,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompts::{Point, PromptEdit};
    use sam2_engine::script::Label;

    fn info() -> ClipInfo {
        ClipInfo {
            first_frame: 101,
            num_frames: 10,
            length: ClipLength::Known,
            video_size: (320, 180),
            linear_light: false,
            format: 0,
        }
    }

    #[test]
    fn the_script_prompts_in_slot_and_frame_order_then_tracks_the_whole_clip() {
        let mut a = ObjectPrompts::default();
        a.apply(PromptEdit::AddPoint {
            frame: 104,
            point: Point::new(10.0, 20.0, Label::Positive),
        });
        a.apply(PromptEdit::AddPoint {
            frame: 102,
            point: Point::new(400.0, 20.0, Label::Negative),
        });
        let mut b = ObjectPrompts::default();
        b.apply(PromptEdit::SetBox {
            frame: 101,
            bbox: [1.0, 2.0, 30.0, 40.0],
        });
        // Outside the clip: dropped.
        b.apply(PromptEdit::AddPoint {
            frame: 300,
            point: Point::new(1.0, 1.0, Label::Positive),
        });
        let objects: BTreeMap<u32, ObjectPrompts> = [(2, b), (1, a)].into_iter().collect();
        let script = script(&objects, &info());
        let json = script_json(&script).unwrap();
        let back = Script::parse(Path::new("x.json"), json.as_bytes(), PathBuf::new()).unwrap();
        assert_eq!(
            back, script,
            "the exported script reads back as it was built"
        );
        assert_eq!(prompts_hash(&back).unwrap(), prompts_hash(&script).unwrap());
        let ops: Vec<(String, Option<usize>)> = script
            .interactions
            .iter()
            .map(|i| (i.op().as_str().to_string(), i.frame()))
            .collect();
        assert_eq!(
            ops,
            [
                ("add_points".to_string(), Some(1)),
                ("add_points".to_string(), Some(3)),
                ("add_box".to_string(), Some(0)),
                ("propagate".to_string(), None),
                ("propagate".to_string(), None),
            ]
        );
        // Clamped into the frame, as the session is given it.
        assert!(matches!(
            &script.interactions[0],
            Interaction::AddPoints { points, .. } if points == &vec![[320.0, 20.0]]
        ));
        assert!(has_prompts(&script));
        assert!(!has_prompts(&super::script(&BTreeMap::new(), &info())));
    }

    #[test]
    fn the_cache_folder_is_the_users_never_the_working_directory() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            default_dir(env(&[
                ("SAM2_ROTOSCOPE_CACHE_DIR", "/farm/caches"),
                ("HOME", "/h")
            ])),
            Some(PathBuf::from("/farm/caches"))
        );
        assert_eq!(default_dir(env(&[])), None);
        if cfg!(target_os = "linux") {
            assert_eq!(
                default_dir(env(&[("HOME", "/h")])),
                Some(PathBuf::from("/h/.cache/sam2-rotoscope/track-caches"))
            );
        }
        assert_ne!(new_file_name(), "");
        assert!(new_file_name().ends_with(".sam2track"));
        assert_eq!(
            script_path(Path::new("/a/shot.sam2track")),
            PathBuf::from("/a/shot.sam2track.script.json")
        );
    }
}
