//! One effect instance's hold on a tracking session: an engine [`ClipSession`] over the host's clip
//! (the per-clip memory bank that outlives render calls *and instances*: it lives in the
//! process-wide [`SESSIONS`] registry, shared by every instance that agrees on its key — see
//! registry.rs), kept in step with the prompts stored in the parameters. No OpenFX here: the
//! instance hands in the prompts, its frames ([`ClipFrames`], bound to the session only while this
//! instance works with it) and a model.
//!
//! **Prompts → session.** The parameters are the truth; [`Tracker::sync`] compares them with what
//! the session was given and sends only the difference: clicks appended on a frame go in as those
//! clicks (the engine's `clear_old_points = false`, as if clicked now); any other change to a
//! frame's prompt replaces it (`add_box`, or `add_points` with the frame's clicks); a frame whose
//! prompts were all removed keeps its result as a tracked frame (the official
//! `clear_all_prompts_in_frame`); an object whose prompts were all removed is taken out; one the
//! session lost is rebuilt from its prompts. The engine then marks what
//! each prompt made out of date ([`ClipSession::is_stale`]).
//!
//! **What a frame shows.** An object's result on a frame is *current* when the frame is prompted
//! for it, or when it was tracked, no later prompt made it stale, and the artist did not clear it
//! ([`Tracker::clear_after`]). A frame is ready when every object is current there.
//! [`Tracker::ensure_frame`] makes a frame ready by propagating from the nearest ready frame when
//! that is at most `reach` frames away — one frame at a time, in order, exactly what
//! [`ClipSession::propagate`] does, so a host that renders a clip in order advances the track
//! through the memory bank and gets the same mattes as a Track button.
//!
//! Object ids in the session are the objects' slot numbers (1–8).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use once_cell::sync::Lazy;
use parking_lot::Mutex;
use sam2_engine::model::Device;
use sam2_engine::script::{Label, ObjectId};
use sam2_engine::{
    ClipSession, Direction, FrameSource, Model, Propagation, PropagationEnd, RgbFrame,
    SessionSettings,
};

use crate::error::{PluginError, Result};
use crate::prompts::{FramePrompt, ObjectPrompts, Point};
use crate::registry::{
    Budgeted, Lease, ModelIdentity, Precision, PredictorKey, PromptsKey, Registry, SessionKey,
    SourceKey,
};

/// Objects an effect instance offers.
pub const MAX_OBJECTS: u32 = 8;

/// Default of how far a render propagates on its own (frames); the "Track on render" parameter.
pub const DEFAULT_RENDER_REACH: usize = 8;

/// Clip length used when neither the host nor the Clip Length parameter says how long the clip
/// is (MLT 7.42): tracking goes on, open-ended, from the frames the host renders. The engine's
/// results depend on the length only through the object pointers' positions
/// (`min(num_frames, 16)`, engine/src/memory_selection.rs): forward tracking is exact for clips
/// of 16 frames or more.
pub const OPEN_ENDED_FRAMES: usize = 1 << 20;

/// How the clip's length was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClipLength {
    /// From the host (frame range, effect duration) or the Clip Length parameter.
    Known,
    /// Nobody said: [`OPEN_ENDED_FRAMES`].
    OpenEnded,
}

/// The clip as the session sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipInfo {
    /// Host frame number of clip index 0.
    pub first_frame: i64,
    pub num_frames: usize,
    pub length: ClipLength,
    /// Full-resolution (width, height) of the source.
    pub video_size: (u32, u32),
    /// Frames are encoded from linear light to sRGB before the model sees them.
    pub linear_light: bool,
    /// A hash of the frames' pixel depth and components ([`SourceKey::format`]).
    pub format: u64,
}

impl ClipInfo {
    /// The clip index of a host frame, if inside the clip.
    pub fn index(&self, frame: i64) -> Option<usize> {
        let index = usize::try_from(frame.checked_sub(self.first_frame)?).ok()?;
        (index < self.num_frames).then_some(index)
    }

    pub fn frame(&self, index: usize) -> i64 {
        self.first_frame
            .saturating_add(i64::try_from(index).unwrap_or(i64::MAX))
    }

    pub fn last_frame(&self) -> i64 {
        self.frame(self.num_frames.saturating_sub(1))
    }

    /// The registry's view of the clip.
    pub fn source_key(&self) -> SourceKey {
        SourceKey {
            first_frame: self.first_frame,
            num_frames: (self.length == ClipLength::Known).then_some(self.num_frames),
            width: self.video_size.0,
            height: self.video_size.1,
            linear_light: self.linear_light,
            format: self.format,
        }
    }
}

/// A frame of the clip and its fingerprint (`None`: read at a proxy scale, provisional) — what an
/// effect instance hands the shared session ([`Tracker::bind`]).
pub trait ClipFrames: Send {
    fn frame(&mut self, index: usize) -> sam2_engine::Result<(RgbFrame, Option<u64>)>;
}

/// The fingerprints of the frames a session encoded, by clip index (`None`: a proxy frame).
pub type Prints = Arc<Mutex<HashMap<usize, Option<u64>>>>;

/// The frames of the instance working with the session now (a session outlives the instance
/// that made it: MLT makes one per frame).
type Bound = Arc<Mutex<Option<Box<dyn ClipFrames>>>>;

/// The session's frame source: whatever instance is bound, fingerprints recorded.
struct Relay {
    info: ClipInfo,
    bound: Bound,
    prints: Prints,
}

impl FrameSource for Relay {
    fn num_frames(&self) -> usize {
        self.info.num_frames
    }

    fn video_size(&self) -> (u32, u32) {
        self.info.video_size
    }

    fn frames_may_be_scaled(&self) -> bool {
        true
    }

    fn frame(&mut self, index: usize) -> sam2_engine::Result<RgbFrame> {
        let mut bound = self.bound.lock();
        let Some(frames) = bound.as_mut() else {
            return Err(sam2_engine::Error::FrameSource {
                frame: index,
                message: "no effect instance is working with the session".into(),
            });
        };
        let (frame, print) = frames.frame(index)?;
        self.prints.lock().insert(index, print);
        Ok(frame)
    }
}

/// Where a frame stands after [`Tracker::ensure_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameState {
    /// Every object has a current result here.
    Ready,
    /// No object has prompts: there is nothing to matte.
    NoObjects,
    /// Not tracked yet for the objects `missing` (slots), and no ready frame within reach; the
    /// nearest ready frame (clip index), if any. The other objects are current here.
    NotTracked {
        nearest: Option<usize>,
        missing: Vec<u32>,
    },
}

/// Which way a Track button goes from the current frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackDirection {
    Forward,
    Backward,
    Both,
}

/// How a Track button's work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackOutcome {
    /// Frames visited.
    pub frames: usize,
    pub cancelled: bool,
}

/// What [`Tracker::sync`] did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Clip indices of the frames whose prompts changed.
    pub changed: Vec<usize>,
    /// Objects left out of the session, and why.
    pub failed: Vec<(u32, PluginError)>,
}

/// What [`Tracker::settle`] found on a frame.
#[derive(Debug)]
pub struct Settled {
    /// Objects left out of the session, and why.
    pub failed: Vec<(u32, PluginError)>,
    pub state: FrameState,
    /// The low-resolution logits of the objects current on the frame, by slot.
    pub logits: Vec<(u32, Arc<[f32]>)>,
}

/// What the status line shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerStatus {
    /// The model's folder name.
    pub model: String,
    pub objects: usize,
    pub ready_frames: usize,
    /// The clip's length, `None` when open-ended.
    pub num_frames: Option<usize>,
    pub cache_bytes: usize,
    pub cache_budget: usize,
    /// Effect instances sharing the session's registry, and its sessions.
    pub sessions: usize,
}

/// A tracking session, shared through the [`SESSIONS`] registry: the engine session and what it
/// was given.
pub struct Live {
    info: ClipInfo,
    session: ClipSession,
    /// The prompts the session holds, by slot, as clamped into the clip.
    applied: BTreeMap<u32, ObjectPrompts>,
    /// Frames whose tracked results the artist cleared, until a propagation visits them again.
    cleared: BTreeSet<usize>,
    /// The frames the session encoded (shared with its [`Relay`]).
    prints: Prints,
    /// The instance working with the session now (shared with its [`Relay`]).
    bound: Bound,
    /// One past the highest clip index anyone asked for: bounds scans of open-ended clips.
    seen: usize,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("info", &self.info)
            .field("applied", &self.applied.keys())
            .finish_non_exhaustive()
    }
}

impl Budgeted for Live {
    fn bytes(&self) -> usize {
        let masks: usize = self
            .session
            .object_ids()
            .into_iter()
            .filter_map(|id| self.session.masklet(id).map(|m| m.bytes()))
            .sum();
        self.session.frame_cache().bytes().saturating_add(masks)
    }

    /// Gives back encoded frames (the model recomputes them when needed).
    fn trim(&mut self, target: usize) {
        let cache = self.session.frame_cache().bytes();
        let keep = target.saturating_sub(self.bytes().saturating_sub(cache));
        if keep < self.session.frame_cache().budget() {
            self.session.set_frame_cache_budget(keep);
        }
    }
}

impl Live {
    fn new(model: &Arc<Model>, info: ClipInfo, cache_bytes: usize) -> Result<Live> {
        let prints = Prints::default();
        let bound = Bound::default();
        let relay = Relay {
            info,
            bound: Arc::clone(&bound),
            prints: Arc::clone(&prints),
        };
        let settings = SessionSettings {
            frame_cache_bytes: cache_bytes,
            ..SessionSettings::for_model(model)
        };
        Ok(Live {
            info,
            session: ClipSession::new(Arc::clone(model), Box::new(relay), settings)?,
            applied: BTreeMap::new(),
            cleared: BTreeSet::new(),
            prints,
            bound,
            seen: 0,
        })
    }

    /// The clip indices worth scanning (an open-ended clip: those seen so far).
    fn extent(&self) -> usize {
        match self.info.length {
            ClipLength::Known => self.info.num_frames,
            ClipLength::OpenEnded => self.seen.min(self.info.num_frames),
        }
    }
}

/// Every tracking session of the process, by what decides its results (registry.rs): shared by
/// every effect instance and render thread, bounded as a whole by the Memory Budget.
pub static SESSIONS: Lazy<Registry<SessionKey, Live>> =
    Lazy::new(|| Registry::new(DEFAULT_SESSIONS_BUDGET));

/// The registry's budget until an instance sets its Memory Budget.
const DEFAULT_SESSIONS_BUDGET: usize = 1 << 30;

/// How long an instance waits for a session another instance (or render thread) works with
/// before it says "busy" (a host running a Track button's progress bar may ask for a render of
/// another instance on the same thread: never wait forever).
const SESSION_WAIT: Duration = Duration::from_secs(120);

/// What identifies a session besides the clip: the model's files, its device and precision.
#[derive(Debug, Clone)]
pub struct ModelChoice {
    pub identity: ModelIdentity,
    pub device: Device,
}

/// One instance's hold on a shared tracking session, and the frames it hands the session.
pub struct Tracker {
    /// [`SESSIONS`], except in tests that keep theirs apart.
    registry: &'static Registry<SessionKey, Live>,
    lease: Option<Lease<SessionKey, Live>>,
    frames: Option<Box<dyn ClipFrames>>,
    info: Option<ClipInfo>,
    low_res: Option<usize>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("lease", &self.lease)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::in_registry(&SESSIONS)
    }
}

fn object_id(slot: u32) -> ObjectId {
    ObjectId(u64::from(slot))
}

/// The key of the prompts: their exact values (Debug prints floats so that they read back
/// bit for bit).
fn prompts_key(objects: &BTreeMap<u32, ObjectPrompts>) -> PromptsKey {
    PromptsKey::of(&format!("{objects:?}"))
}

impl Tracker {
    /// A tracker whose sessions are kept in `registry`.
    pub fn in_registry(registry: &'static Registry<SessionKey, Live>) -> Tracker {
        Tracker {
            registry,
            lease: None,
            frames: None,
            info: None,
            low_res: None,
        }
    }

    /// Makes sure this instance holds the session for `model` over a clip like `info` with
    /// `objects` as prompts: the one another instance made, when one agrees on all of it;
    /// otherwise this instance's own, carried over when only the prompts changed and nobody else
    /// uses it ([`Tracker::sync`] then sends the difference), or a new one.
    pub fn ensure_session(
        &mut self,
        model: &Arc<Model>,
        choice: &ModelChoice,
        info: ClipInfo,
        objects: &BTreeMap<u32, ObjectPrompts>,
        cache_bytes: usize,
    ) -> Result<()> {
        let key = SessionKey {
            model: choice.identity.clone(),
            device: choice.device,
            precision: Precision::of(model),
            predictor: {
                let s = SessionSettings::for_model(model);
                PredictorKey {
                    add_all_frames_to_correct_as_cond: s.add_all_frames_to_correct_as_cond,
                    fill_hole_area: s.fill_hole_area,
                    keep_all_memories: s.keep_all_memories,
                }
            },
            source: info.source_key(),
            prompts: prompts_key(objects),
        };
        let create = || Live::new(model, info, cache_bytes);
        match &mut self.lease {
            Some(lease) if lease.key() == &key => {}
            Some(lease) if lease.key().model == key.model && lease.key().source == key.source => {
                lease.rekey(key, create)?;
            }
            _ => {
                self.lease = None;
                self.lease = Some(self.registry.acquire(key, create)?);
            }
        }
        self.info = Some(info);
        self.low_res = Some(model.geometry().low_res);
        self.with_live(|live| {
            // The memory budget applies to the live session at once.
            if live.session.frame_cache().budget() != cache_bytes {
                live.session.set_frame_cache_budget(cache_bytes);
            }
        })?;
        Ok(())
    }

    /// Hands the session this instance's frames for the work that follows.
    pub fn bind(&mut self, frames: Box<dyn ClipFrames>) {
        self.frames = Some(frames);
    }

    /// Works with the shared session, this instance's frames bound meanwhile; `None` without a
    /// session. Waits for another user at most [`SESSION_WAIT`].
    fn with_live<R>(&mut self, work: impl FnOnce(&mut Live) -> R) -> Result<Option<R>> {
        let Some(lease) = &self.lease else {
            return Ok(None);
        };
        let frames = &mut self.frames;
        lease
            .try_with(SESSION_WAIT, |live| {
                *live.bound.lock() = frames.take();
                let result = work(live);
                *frames = live.bound.lock().take();
                result
            })
            .map(Some)
            .ok_or(PluginError::Busy)
    }

    /// Starts the session over (the source changed, or proxy frames were encoded): everything it
    /// computed goes, for every instance sharing it; [`Tracker::sync`] gives it the prompts again.
    pub fn drop_session(&mut self) -> Result<()> {
        let restarted = self.with_live(|live| {
            let model = Arc::clone(live.session.model());
            let budget = live.session.frame_cache().budget();
            Live::new(&model, live.info, budget).map(|fresh| *live = fresh)
        })?;
        restarted.transpose()?;
        Ok(())
    }

    /// Whether another instance or render thread is working with the session right now.
    pub fn session_busy(&self) -> bool {
        self.lease.as_ref().is_some_and(Lease::is_busy)
    }

    /// Lets go of the session (it idles in the registry for the next instance).
    pub fn release(&mut self) {
        self.lease = None;
        self.info = None;
    }

    pub fn has_session(&self) -> bool {
        self.lease.is_some()
    }

    pub fn clip(&self) -> Option<ClipInfo> {
        self.info
    }

    /// Works with the engine session (tests, the status line).
    pub fn with_session<R>(&mut self, work: impl FnOnce(&ClipSession) -> R) -> Result<Option<R>> {
        self.with_live(|live| work(&live.session))
    }

    /// The fingerprint the session recorded for clip index `index`: `None` when it did not
    /// encode the frame, `Some(None)` when it read it at a proxy scale.
    pub fn fingerprint(&mut self, index: usize) -> Result<Option<Option<u64>>> {
        Ok(self
            .with_live(|live| live.prints.lock().get(&index).copied())?
            .flatten())
    }

    /// Whether the session encoded a frame read at a proxy scale.
    pub fn has_proxy_frames(&mut self) -> Result<bool> {
        Ok(self
            .with_live(|live| live.prints.lock().values().any(Option::is_none))?
            .unwrap_or(false))
    }

    /// Brings the session in step with `objects`: the enabled objects' prompts by slot. An object
    /// whose prompts the engine refuses (a frame the host cannot hand over) is left out, and the
    /// others go on; the report says which frames changed and which objects failed.
    pub fn sync(&mut self, objects: &BTreeMap<u32, ObjectPrompts>) -> Result<SyncReport> {
        Ok(self
            .with_live(|live| live.sync(objects))?
            .transpose()?
            .unwrap_or_default())
    }

    /// Whether every object has a current result on clip index `index`.
    pub fn is_ready(&mut self, index: usize) -> bool {
        self.with_live(|l| l.is_ready(index))
            .ok()
            .flatten()
            .unwrap_or(false)
    }

    /// Makes clip index `index` ready if a ready frame lies within `reach` frames (the past
    /// first), propagating from there; `stop` is asked after each frame (a host's abort).
    pub fn ensure_frame(
        &mut self,
        index: usize,
        reach: usize,
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<FrameState> {
        Ok(self
            .with_live(|live| live.ensure_frame(index, reach, stop))?
            .transpose()?
            .unwrap_or(FrameState::NoObjects))
    }

    /// The Track buttons: propagates from clip index `from` through the clip. `progress` sees
    /// (frames done, frames to do) after each frame and may stop the work.
    pub fn track(
        &mut self,
        from: usize,
        direction: TrackDirection,
        progress: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<TrackOutcome> {
        Ok(self
            .with_live(|live| live.track(from, direction, progress))?
            .transpose()?
            .unwrap_or(TrackOutcome {
                frames: 0,
                cancelled: false,
            }))
    }

    /// A Track button's whole work: the prompts synced ([`Tracker::sync`]) and the clip tracked from
    /// `from` ([`Tracker::track`]) in one hold of the session, so that the objects it reports left
    /// out are those the track went without, whatever another instance's render does meanwhile.
    pub fn sync_and_track(
        &mut self,
        objects: &BTreeMap<u32, ObjectPrompts>,
        from: usize,
        direction: TrackDirection,
        progress: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<(Vec<(u32, PluginError)>, TrackOutcome)> {
        let done = self.with_live(|live| -> Result<_> {
            let report = live.sync(objects)?;
            let outcome = live.track(from, direction, progress)?;
            Ok((report.failed, outcome))
        })?;
        Ok(done.transpose()?.unwrap_or((
            Vec::new(),
            TrackOutcome {
                frames: 0,
                cancelled: false,
            },
        )))
    }

    /// "Clear track after the current frame": tracked results after clip index `index` are no
    /// longer shown until tracked again (prompted frames keep their own masks).
    pub fn clear_after(&mut self, index: usize) -> Result<()> {
        self.with_live(|live| {
            let end = live.extent().max(index.saturating_add(1));
            live.cleared.extend(index.saturating_add(1)..end);
        })?;
        Ok(())
    }

    /// Forgets every object and result; the encoder cache stays (the frames did not change).
    pub fn reset(&mut self) -> Result<()> {
        self.with_live(|live| {
            live.session.reset();
            live.applied.clear();
            live.cleared.clear();
        })?;
        Ok(())
    }

    /// The low-resolution logits (`S/4 × S/4`) of every object with a current result on clip
    /// index `index`, by slot.
    pub fn logits(&mut self, index: usize) -> Result<Vec<(u32, Arc<[f32]>)>> {
        Ok(self
            .with_live(|live| live.logits(index))?
            .unwrap_or_default())
    }

    /// A render's whole step on clip index `index`: the prompts synced ([`Tracker::sync`]), the
    /// frame made ready within `reach` ([`Tracker::ensure_frame`]) and its logits, in one hold
    /// of the session. Another instance's render (a frame-threaded host renders neighbouring
    /// frames at once) may not step in between: what the render reports — objects left out, the
    /// frame's state — and the mattes it shows are the same moment's truth.
    pub fn settle(
        &mut self,
        objects: &BTreeMap<u32, ObjectPrompts>,
        index: usize,
        reach: usize,
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<Settled> {
        let settled = self.with_live(|live| -> Result<Settled> {
            let report = live.sync(objects)?;
            let state = live.ensure_frame(index, reach, stop)?;
            Ok(Settled {
                failed: report.failed,
                state,
                logits: live.logits(index),
            })
        })?;
        Ok(settled.transpose()?.unwrap_or(Settled {
            failed: Vec::new(),
            state: FrameState::NoObjects,
            logits: Vec::new(),
        }))
    }

    /// Side of the low-resolution logits, when there is a session.
    pub fn low_res_side(&self) -> Option<usize> {
        self.lease.as_ref().and(self.low_res)
    }

    pub fn status(&mut self) -> Result<Option<TrackerStatus>> {
        let sessions = self.registry.stats().sessions;
        self.with_live(|live| {
            let cache = live.session.frame_cache();
            TrackerStatus {
                model: live
                    .session
                    .model()
                    .dir()
                    .path()
                    .file_name()
                    .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned()),
                objects: live.session.object_ids().len(),
                ready_frames: (0..live.extent()).filter(|&i| live.is_ready(i)).count(),
                num_frames: (live.info.length == ClipLength::Known).then_some(live.info.num_frames),
                cache_bytes: cache.bytes(),
                cache_budget: cache.budget(),
                sessions,
            }
        })
    }
}

impl Live {
    fn sync(&mut self, objects: &BTreeMap<u32, ObjectPrompts>) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let changed = &mut report.changed;
        let info = self.info;
        let wanted: BTreeMap<u32, ObjectPrompts> = objects
            .iter()
            .filter(|(slot, _)| (1..=MAX_OBJECTS).contains(*slot))
            .map(|(&slot, p)| (slot, clamp_to_clip(p, &info)))
            .filter(|(_, p)| !p.is_empty())
            .collect();
        let gone: Vec<u32> = self
            .applied
            .keys()
            .filter(|slot| !wanted.contains_key(slot))
            .copied()
            .collect();
        for slot in gone {
            if let Some(old) = self.applied.remove(&slot) {
                changed.extend(old.frames.keys().filter_map(|&f| info.index(f)));
            }
            self.remove_object(slot)?;
        }
        for (slot, new) in &wanted {
            if let Err(e) = self.sync_object(*slot, new, changed) {
                report.failed.push((*slot, e));
            }
        }
        changed.sort_unstable();
        changed.dedup();
        Ok(report)
    }

    fn ensure_frame(
        &mut self,
        index: usize,
        reach: usize,
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<FrameState> {
        self.seen = self.seen.max(index.saturating_add(1));
        if self.session.object_ids().is_empty() {
            return Ok(FrameState::NoObjects);
        }
        if self.is_ready(index) {
            return Ok(FrameState::Ready);
        }
        let n = self.info.num_frames;
        // A frame whose track the artist cleared waits for a Track button.
        let reach = if self.cleared.contains(&index) {
            0
        } else {
            reach
        };
        let from = (1..=reach).find_map(|d| {
            let before = index.checked_sub(d).filter(|&s| self.is_ready(s));
            let after = index.checked_add(d).filter(|&s| s < n && self.is_ready(s));
            before.or(after)
        });
        if let Some(s) = from {
            let request = if s < index {
                Propagation {
                    start_frame: Some(s + 1),
                    direction: Direction::Forward,
                    max_frames: Some(index - s - 1),
                }
            } else {
                Propagation {
                    start_frame: Some(s - 1),
                    direction: Direction::Reverse,
                    max_frames: Some(s - 1 - index),
                }
            };
            self.propagate(request, &mut |_| {
                if stop() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
            if self.is_ready(index) {
                return Ok(FrameState::Ready);
            }
        }
        let nearest = (0..self.extent())
            .filter(|&s| self.is_ready(s))
            .min_by_key(|&s| s.abs_diff(index));
        let missing = self
            .session
            .object_ids()
            .into_iter()
            .filter(|&id| !self.is_current(index, id))
            .filter_map(|id| u32::try_from(id.0).ok())
            .collect();
        Ok(FrameState::NotTracked { nearest, missing })
    }

    fn track(
        &mut self,
        from: usize,
        direction: TrackDirection,
        progress: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<TrackOutcome> {
        let n = self.info.num_frames;
        let from = from.min(n.saturating_sub(1));
        self.seen = self.seen.max(from.saturating_add(1));
        let forward = Propagation {
            start_frame: Some(from),
            direction: Direction::Forward,
            max_frames: None,
        };
        let backward = Propagation {
            direction: Direction::Reverse,
            ..forward
        };
        // The engine visits from..n forwards and 0..=from backwards (nothing from frame 0).
        let backward_frames = if from > 0 { from + 1 } else { 0 };
        let passes: Vec<(Propagation, usize)> = match direction {
            TrackDirection::Forward => vec![(forward, n - from)],
            TrackDirection::Backward => vec![(backward, backward_frames)],
            TrackDirection::Both => vec![(forward, n - from), (backward, backward_frames)],
        };
        let total: usize = passes.iter().map(|(_, k)| k).sum();
        let mut done = 0;
        let mut furthest = self.seen;
        for (request, _) in passes {
            let end = self.propagate(request, &mut |frame| {
                done += 1;
                furthest = furthest.max(frame.saturating_add(1));
                progress(done, total)
            })?;
            if matches!(end, PropagationEnd::Cancelled { .. }) {
                self.seen = furthest;
                return Ok(TrackOutcome {
                    frames: done,
                    cancelled: true,
                });
            }
        }
        self.seen = furthest;
        Ok(TrackOutcome {
            frames: done,
            cancelled: false,
        })
    }

    fn logits(&self, index: usize) -> Vec<(u32, Arc<[f32]>)> {
        self.session
            .object_ids()
            .into_iter()
            .filter(|&id| self.is_current(index, id))
            .filter_map(|id| {
                let slot = u32::try_from(id.0).ok()?;
                let result = self.session.result(index, id)?;
                Some((slot, Arc::clone(&result.low_res_logits)))
            })
            .collect()
    }

    fn is_current(&self, index: usize, id: ObjectId) -> bool {
        let Some(masklet) = self.session.masklet(id) else {
            return false;
        };
        if masklet.result(index).is_none() {
            return false;
        }
        masklet.prompt(index).is_some()
            || (masklet.is_tracked(index)
                && !masklet.is_stale(index)
                && !self.cleared.contains(&index))
    }

    fn is_ready(&self, index: usize) -> bool {
        let ids = self.session.object_ids();
        !ids.is_empty() && ids.into_iter().all(|id| self.is_current(index, id))
    }

    fn propagate(
        &mut self,
        request: Propagation,
        on_frame: &mut dyn FnMut(usize) -> ControlFlow<()>,
    ) -> Result<PropagationEnd> {
        let cleared = &mut self.cleared;
        Ok(self.session.propagate(request, |masks| {
            cleared.remove(&masks.frame);
            on_frame(masks.frame)
        })?)
    }

    fn remove_object(&mut self, slot: u32) -> Result<()> {
        let id = object_id(slot);
        if self.session.masklet(id).is_some() {
            self.session.remove_object(id)?;
        }
        Ok(())
    }

    /// Sends the difference between `new` and what the session holds for `slot`.
    fn sync_object(
        &mut self,
        slot: u32,
        new: &ObjectPrompts,
        changed: &mut Vec<usize>,
    ) -> Result<()> {
        let old = self.applied.get(&slot).cloned().unwrap_or_default();
        if &old == new {
            return Ok(());
        }
        let info = self.info;
        let dropped_frame = old.frames.keys().any(|f| !new.frames.contains_key(f));
        changed.extend(
            old.frames
                .iter()
                .filter(|(f, p)| new.frames.get(f) != Some(p))
                .chain(
                    new.frames
                        .iter()
                        .filter(|(f, p)| old.frames.get(f) != Some(p)),
                )
                .filter_map(|(&f, _)| info.index(f)),
        );
        // Recorded first, so that a failure leaves `applied` describing at most what the session
        // lacks: the next sync then rebuilds the object.
        self.applied.remove(&slot);
        let result = if self.session.masklet(object_id(slot)).is_none() {
            self.rebuild_object(slot, new)
        } else if dropped_frame && new.frames.is_empty() {
            self.remove_object(slot)
        } else {
            // A frame whose prompts were all removed keeps its result as a tracked frame (the
            // official `clear_all_prompts_in_frame`); the rest of the track stays.
            old.frames
                .keys()
                .filter(|f| !new.frames.contains_key(f))
                .filter_map(|&f| info.index(f))
                .try_for_each(|index| {
                    self.session
                        .clear_prompts_in_frame(index, object_id(slot))
                        .map(|_| ())
                })
                .map_err(Into::into)
                .and_then(|()| {
                    new.frames
                        .iter()
                        .filter(|(f, p)| old.frames.get(f) != Some(p))
                        .try_for_each(|(&f, p)| self.apply_frame(slot, f, p, old.frames.get(&f)))
                })
        };
        match result {
            Ok(()) => {
                self.applied.insert(slot, new.clone());
                Ok(())
            }
            Err(e) => {
                // Leave no half-given object behind.
                self.remove_object(slot)?;
                Err(e)
            }
        }
    }

    fn rebuild_object(&mut self, slot: u32, prompts: &ObjectPrompts) -> Result<()> {
        self.remove_object(slot)?;
        prompts
            .frames
            .iter()
            .try_for_each(|(&f, p)| self.apply_frame(slot, f, p, None))
    }

    fn apply_frame(
        &mut self,
        slot: u32,
        frame: i64,
        new: &FramePrompt,
        old: Option<&FramePrompt>,
    ) -> Result<()> {
        let Some(index) = self.info.index(frame) else {
            return Ok(());
        };
        let id = object_id(slot);
        let split = |points: &[Point]| -> (Vec<[f64; 2]>, Vec<Label>) {
            points.iter().map(|p| (p.xy(), p.label)).unzip()
        };
        match (old, new.bbox) {
            (Some(old), _) if new.extends(old) => {
                let (points, labels) = split(new.points.get(old.points.len()..).unwrap_or(&[]));
                self.session
                    .add_points(index, id, &points, &labels, false)?;
            }
            (_, Some(bbox)) => {
                let (points, labels) = split(&new.points);
                self.session.add_box(index, id, bbox, &points, &labels)?;
            }
            (_, None) => {
                let (points, labels) = split(&new.points);
                self.session.add_points(index, id, &points, &labels, true)?;
            }
        }
        Ok(())
    }
}

/// The prompts that fall inside the clip, with coordinates clamped into the image (a prompt
/// made on a larger format stays usable instead of failing).
pub(crate) fn clamp_to_clip(prompts: &ObjectPrompts, info: &ClipInfo) -> ObjectPrompts {
    let (w, h) = (f64::from(info.video_size.0), f64::from(info.video_size.1));
    let clamp = |x: f64, y: f64| (x.clamp(0.0, w), y.clamp(0.0, h));
    ObjectPrompts {
        frames: prompts
            .frames
            .iter()
            .filter(|(f, _)| info.index(**f).is_some())
            .map(|(&f, p)| {
                let bbox = p.bbox.map(|b| {
                    let (x0, y0) = clamp(b[0], b[1]);
                    let (x1, y1) = clamp(b[2], b[3]);
                    [x0, y0, x1, y1]
                });
                let points = p
                    .points
                    .iter()
                    .map(|pt| {
                        let (x, y) = clamp(pt.x, pt.y);
                        Point::new(x, y, pt.label)
                    })
                    .collect();
                (f, FramePrompt { bbox, points })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use sam2_engine::{FolderSource, Runtime};

    use super::*;
    use crate::prompts::PromptEdit;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
    }

    fn model() -> Arc<Model> {
        let runtime = Runtime::load_default().unwrap().with_intra_threads(Some(1));
        Model::open(fixtures().join("models/test"), &runtime).unwrap()
    }

    fn source() -> Box<dyn FrameSource> {
        Box::new(FolderSource::open(fixtures().join("clips/shapes")).unwrap())
    }

    /// A frame source as an instance hands it to the session.
    struct Frames(Box<dyn FrameSource>);

    impl ClipFrames for Frames {
        fn frame(&mut self, index: usize) -> sam2_engine::Result<(RgbFrame, Option<u64>)> {
            Ok((self.0.frame(index)?, Some(index as u64)))
        }
    }

    fn choice() -> ModelChoice {
        ModelChoice {
            identity: ModelIdentity::of(&fixtures().join("models/test")).unwrap(),
            device: Device::Cpu,
        }
    }

    /// The fixture clip "shapes" as a session sees it, its first frame being host frame `first`.
    fn fixture_info(first_frame: i64) -> ClipInfo {
        let src = source();
        ClipInfo {
            first_frame,
            num_frames: src.num_frames(),
            length: ClipLength::Known,
            video_size: src.video_size(),
            linear_light: false,
            format: 0,
        }
    }

    /// A tracker with a registry of its own (tests run in parallel).
    fn own_tracker() -> Tracker {
        Tracker::in_registry(Box::leak(Box::new(Registry::new(1 << 30))))
    }

    /// A tracker over the fixture clip "shapes" whose first frame is host frame 101.
    fn tracker() -> (Tracker, ClipInfo) {
        let info = fixture_info(101);
        let mut t = own_tracker();
        t.ensure_session(&model(), &choice(), info, &BTreeMap::new(), 64 << 20)
            .unwrap();
        t.bind(Box::new(Frames(source())));
        (t, info)
    }

    fn click(frame: i64, x: f64, y: f64) -> PromptEdit {
        PromptEdit::AddPoint {
            frame,
            point: Point::new(x, y, Label::Positive),
        }
    }

    fn objects(list: &[(u32, &ObjectPrompts)]) -> BTreeMap<u32, ObjectPrompts> {
        list.iter().map(|(s, p)| (*s, (*p).clone())).collect()
    }

    fn stats(t: &mut Tracker) -> sam2_engine::SessionStats {
        t.with_session(|s| s.stats()).unwrap().unwrap()
    }

    fn masklet_prompted(t: &mut Tracker, slot: u32) -> Vec<usize> {
        t.with_session(|s| s.masklet(object_id(slot)).unwrap().prompted_frames())
            .unwrap()
            .unwrap()
    }

    fn ids(t: &mut Tracker) -> Vec<ObjectId> {
        t.with_session(|s| s.object_ids()).unwrap().unwrap()
    }

    /// The fixture clip, except that one frame cannot be had (a host without temporal access).
    struct Refusing {
        inner: Box<dyn FrameSource>,
        refused: usize,
    }

    impl ClipFrames for Refusing {
        fn frame(&mut self, index: usize) -> sam2_engine::Result<(RgbFrame, Option<u64>)> {
            if index == self.refused {
                return Err(sam2_engine::Error::FrameSource {
                    frame: index,
                    message: "refused".into(),
                });
            }
            Ok((self.inner.frame(index)?, None))
        }
    }

    #[test]
    fn an_object_the_engine_refuses_is_left_out_and_the_others_go_on() {
        let info = fixture_info(0);
        let mut t = own_tracker();
        t.ensure_session(&model(), &choice(), info, &BTreeMap::new(), 64 << 20)
            .unwrap();
        t.bind(Box::new(Refusing {
            inner: source(),
            refused: 7,
        }));
        let mut a = ObjectPrompts::default();
        a.apply(click(0, 100.0, 90.0));
        let mut b = ObjectPrompts::default();
        b.apply(click(7, 250.0, 60.0));
        let report = t.sync(&objects(&[(1, &a), (2, &b)])).unwrap();
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].0, 2);
        assert!(
            report.failed[0].1.to_string().contains("Frame 7"),
            "{:?}",
            report.failed
        );
        assert_eq!(ids(&mut t), vec![object_id(1)]);
        assert!(t.is_ready(0));
        // The next sync tries object 2 again (and fails again, leaving object 1 alone).
        let report = t.sync(&objects(&[(1, &a), (2, &b)])).unwrap();
        assert_eq!(report.failed.len(), 1);
        assert!(report.changed.contains(&7));
        assert!(t.is_ready(0));
    }

    /// Only the frame being rendered can be had (a frame-threaded host without temporal access:
    /// each render's instance holds its own frame); `on_refusal` runs when another is asked for.
    struct OnlyFrame {
        inner: Box<dyn FrameSource>,
        frame: usize,
        on_refusal: Box<dyn FnMut() + Send>,
    }

    impl ClipFrames for OnlyFrame {
        fn frame(&mut self, index: usize) -> sam2_engine::Result<(RgbFrame, Option<u64>)> {
            if index != self.frame {
                (self.on_refusal)();
                return Err(sam2_engine::Error::FrameSource {
                    frame: index,
                    message: "not the rendered frame".into(),
                });
            }
            Ok((self.inner.frame(index)?, Some(index as u64)))
        }
    }

    #[test]
    fn a_renders_report_and_mattes_are_one_moment_while_another_render_steps_in() {
        // MLT renders frames 0 and 1 at once, an instance each, one shared session. The render
        // of frame 1 cannot read the prompted frame 0; the render of frame 0 starts the moment
        // it finds that out. Whichever order the session lets them in, the render of frame 1
        // reports "left out" only beside no matte — never beside the matte frame 0's render
        // made possible meanwhile.
        let registry: &'static Registry<SessionKey, Live> =
            Box::leak(Box::new(Registry::new(1 << 30)));
        let info = fixture_info(0);
        let mut p = ObjectPrompts::default();
        p.apply(click(0, 100.0, 90.0));
        let wanted = objects(&[(1, &p)]);
        let wanted_b = wanted.clone();
        fn instance(
            registry: &'static Registry<SessionKey, Live>,
            info: ClipInfo,
            wanted: &BTreeMap<u32, ObjectPrompts>,
            frame: usize,
            on_refusal: Box<dyn FnMut() + Send>,
        ) -> Tracker {
            let mut t = Tracker::in_registry(registry);
            t.ensure_session(&model(), &choice(), info, wanted, 64 << 20)
                .unwrap();
            t.bind(Box::new(OnlyFrame {
                inner: source(),
                frame,
                on_refusal,
            }));
            t
        }
        let (started, start) = std::sync::mpsc::channel::<()>();
        let mut b = instance(registry, info, &wanted, 0, Box::new(|| {}));
        let render_0 = std::thread::spawn(move || {
            start.recv().unwrap();
            b.settle(&wanted_b, 0, 1, &mut || false).unwrap()
        });
        let mut a = instance(
            registry,
            info,
            &wanted,
            1,
            Box::new(move || {
                let _ = started.send(());
                std::thread::sleep(Duration::from_millis(300));
            }),
        );
        let first = a.settle(&wanted, 1, 1, &mut || false).unwrap();
        assert_eq!(first.failed.len(), 1, "{:?}", first.failed);
        assert_eq!(first.state, FrameState::NoObjects);
        assert!(first.logits.is_empty());
        let b = render_0.join().unwrap();
        assert!(b.failed.is_empty(), "{:?}", b.failed);
        assert_eq!(b.state, FrameState::Ready);
        // Frame 1 rendered again (MLT's render waits for its predecessor): tracked from frame 0,
        // nothing left out.
        let again = a.settle(&wanted, 1, 1, &mut || false).unwrap();
        assert!(again.failed.is_empty(), "{:?}", again.failed);
        assert_eq!(again.state, FrameState::Ready);
        assert_eq!(again.logits.len(), 1);
    }

    #[test]
    fn clip_indices_map_to_host_frames() {
        let info = ClipInfo {
            first_frame: 1001,
            num_frames: 10,
            length: ClipLength::Known,
            video_size: (4, 4),
            linear_light: false,
            format: 0,
        };
        assert_eq!(info.index(1001), Some(0));
        assert_eq!(info.index(1010), Some(9));
        assert_eq!(info.index(1011), None);
        assert_eq!(info.index(1000), None);
        assert_eq!(info.index(i64::MIN), None);
        assert_eq!(info.frame(3), 1004);
        assert_eq!(info.last_frame(), 1010);
    }

    #[test]
    fn prompts_out_of_the_clip_are_dropped_and_points_clamped() {
        let info = ClipInfo {
            first_frame: 0,
            num_frames: 2,
            length: ClipLength::Known,
            video_size: (10, 5),
            linear_light: false,
            format: 0,
        };
        let mut p = ObjectPrompts::default();
        p.apply(click(0, -3.0, 99.0));
        p.apply(click(7, 1.0, 1.0));
        p.apply(PromptEdit::SetBox {
            frame: 1,
            bbox: [-1.0, -1.0, 20.0, 3.0],
        });
        let c = clamp_to_clip(&p, &info);
        assert_eq!(c.frames.len(), 2);
        assert_eq!(c.frame(0).unwrap().points[0].xy(), [0.0, 5.0]);
        assert_eq!(c.frame(1).unwrap().bbox, Some([0.0, 0.0, 10.0, 3.0]));
    }

    #[test]
    fn only_what_changed_reaches_the_engine_and_a_render_tracks_within_reach() {
        let (mut t, info) = tracker();
        assert_eq!(
            t.ensure_frame(0, 8, &mut || false).unwrap(),
            FrameState::NoObjects
        );
        let mut a = ObjectPrompts::default();
        a.apply(click(101, 100.0, 90.0));
        assert_eq!(t.sync(&objects(&[(1, &a)])).unwrap().changed, vec![0]);
        assert_eq!(stats(&mut t).mask_decoder_runs, 1);
        // The same prompts again: nothing runs.
        assert!(t.sync(&objects(&[(1, &a)])).unwrap().changed.is_empty());
        assert_eq!(stats(&mut t).mask_decoder_runs, 1);
        // An appended click: one decoder run, clicks appended in the engine.
        a.apply(click(101, 110.0, 95.0));
        assert_eq!(t.sync(&objects(&[(1, &a)])).unwrap().changed, vec![0]);
        assert_eq!(stats(&mut t).mask_decoder_runs, 2);
        // The frame was encoded by the first click: the second costs the decoder only.
        assert_eq!(stats(&mut t).image_encoder_runs, 1);
        assert_eq!(masklet_prompted(&mut t, 1), vec![0]);
        // Frame 0 is prompted: ready. Frame 3 is within reach: tracked on demand, in order.
        assert!(t.is_ready(0));
        assert_eq!(
            t.ensure_frame(3, 8, &mut || false).unwrap(),
            FrameState::Ready
        );
        assert!((0..=3).all(|i| t.is_ready(i)));
        assert!(!t.is_ready(4));
        assert_eq!(t.logits(3).unwrap().len(), 1);
        // Beyond reach: not tracked, with the nearest ready frame named.
        let far = info.num_frames - 1;
        assert_eq!(
            t.ensure_frame(far, 2, &mut || false).unwrap(),
            FrameState::NotTracked {
                nearest: Some(3),
                missing: vec![1]
            }
        );
        assert!(t.logits(far).unwrap().is_empty());
    }

    #[test]
    fn frame_by_frame_rendering_gives_the_track_buttons_mattes() {
        let mut p = ObjectPrompts::default();
        p.apply(click(101, 100.0, 90.0));
        let (mut by_render, info) = tracker();
        by_render.sync(&objects(&[(1, &p)])).unwrap();
        for i in 0..info.num_frames {
            assert_eq!(
                by_render.ensure_frame(i, 1, &mut || false).unwrap(),
                FrameState::Ready,
                "{i}"
            );
        }
        let (mut by_button, _) = tracker();
        by_button.sync(&objects(&[(1, &p)])).unwrap();
        let mut seen = Vec::new();
        let outcome = by_button
            .track(0, TrackDirection::Forward, &mut |done, total| {
                seen.push((done, total));
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(outcome.frames, info.num_frames);
        assert!(!outcome.cancelled);
        assert_eq!(seen.last(), Some(&(info.num_frames, info.num_frames)));
        for i in 0..info.num_frames {
            let a = by_render.logits(i).unwrap();
            let b = by_button.logits(i).unwrap();
            assert_eq!(a.len(), 1);
            assert_eq!(a[0].1, b[0].1, "frame {i}");
        }
    }

    #[test]
    fn edits_invalidate_what_depends_on_them_and_removing_a_frame_keeps_the_rest() {
        let (mut t, info) = tracker();
        let n = info.num_frames;
        let mut a = ObjectPrompts::default();
        a.apply(click(101, 100.0, 90.0));
        let mut b = ObjectPrompts::default();
        b.apply(click(101, 250.0, 60.0));
        t.sync(&objects(&[(1, &a), (2, &b)])).unwrap();
        t.track(0, TrackDirection::Forward, &mut |_, _| {
            ControlFlow::Continue(())
        })
        .unwrap();
        assert!((0..n).all(|i| t.is_ready(i)));
        // A correction on frame 5 (clip index 4) makes later frames stale, not earlier ones.
        a.apply(click(105, 120.0, 90.0));
        assert_eq!(
            t.sync(&objects(&[(1, &a), (2, &b)])).unwrap().changed,
            vec![4]
        );
        assert!((0..=4).all(|i| t.is_ready(i)));
        assert!((5..n).all(|i| !t.is_ready(i)));
        // Object 2's track is untouched by object 1's prompt.
        let stale = t
            .with_session(|s| {
                let m = s.masklet(object_id(2)).unwrap();
                (0..n).any(|i| m.is_stale(i))
            })
            .unwrap()
            .unwrap();
        assert!(!stale);
        // Removing the correction before any propagation used it gives frame 5 its tracked result
        // back and keeps the track before it; the frames after it stay out of date (the
        // correction marked them) until the next propagation.
        a.apply(PromptEdit::ClearFrame { frame: 105 });
        t.sync(&objects(&[(1, &a), (2, &b)])).unwrap();
        assert!((0..=4).all(|i| t.is_ready(i)));
        assert!((5..n).all(|i| !t.is_ready(i)));
        assert_eq!(masklet_prompted(&mut t, 1), vec![0]);
        // Disabling object 2 removes it; clearing everything leaves no objects.
        t.sync(&objects(&[(1, &a)])).unwrap();
        assert_eq!(ids(&mut t), vec![object_id(1)]);
        t.sync(&BTreeMap::new()).unwrap();
        assert_eq!(
            t.ensure_frame(0, 8, &mut || false).unwrap(),
            FrameState::NoObjects
        );
    }

    #[test]
    fn a_cleared_track_is_hidden_until_tracked_again_and_tracking_can_be_cancelled() {
        let (mut t, info) = tracker();
        let n = info.num_frames;
        let mut a = ObjectPrompts::default();
        a.apply(click(104, 100.0, 90.0));
        t.sync(&objects(&[(1, &a)])).unwrap();
        // Cancelled after two frames of a both-ways track from clip index 3.
        let outcome = t
            .track(3, TrackDirection::Both, &mut |done, total| {
                assert_eq!(total, (n - 3) + 4);
                if done == 2 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert_eq!(
            outcome,
            TrackOutcome {
                frames: 2,
                cancelled: true
            }
        );
        assert!(t.is_ready(4) && !t.is_ready(5));
        t.track(3, TrackDirection::Both, &mut |_, _| {
            ControlFlow::Continue(())
        })
        .unwrap();
        assert!((0..n).all(|i| t.is_ready(i)));
        t.clear_after(4).unwrap();
        assert!((0..=4).all(|i| t.is_ready(i)));
        assert!((5..n).all(|i| !t.is_ready(i)));
        assert_eq!(t.status().unwrap().unwrap().ready_frames, 5);
        // A render does not bring a cleared frame back on its own; a Track button does.
        assert_eq!(
            t.ensure_frame(6, 8, &mut || false).unwrap(),
            FrameState::NotTracked {
                nearest: Some(4),
                missing: vec![1]
            }
        );
        t.track(4, TrackDirection::Forward, &mut |_, _| {
            ControlFlow::Continue(())
        })
        .unwrap();
        assert!((0..n).all(|i| t.is_ready(i)));
        t.reset().unwrap();
        assert_eq!(
            t.ensure_frame(0, 8, &mut || false).unwrap(),
            FrameState::NoObjects
        );
    }

    #[test]
    fn an_instance_per_frame_tracks_on_in_the_shared_session() {
        // MLT: a fresh instance for every frame, none kept. They agree on the key, so each finds
        // what the previous one tracked, and rendering in order gives the Track button's results
        // with every frame encoded once.
        let registry: &'static Registry<SessionKey, Live> =
            Box::leak(Box::new(Registry::new(1 << 30)));
        let mut p = ObjectPrompts::default();
        p.apply(click(101, 100.0, 90.0));
        let prompts = objects(&[(1, &p)]);
        let (mut by_button, info) = tracker();
        by_button.sync(&prompts).unwrap();
        by_button
            .track(0, TrackDirection::Forward, &mut |_, _| {
                ControlFlow::Continue(())
            })
            .unwrap();
        let model = model();
        for i in 0..info.num_frames {
            let mut t = Tracker::in_registry(registry);
            t.ensure_session(&model, &choice(), info, &prompts, 64 << 20)
                .unwrap();
            t.bind(Box::new(Frames(source())));
            t.sync(&prompts).unwrap();
            assert_eq!(
                t.ensure_frame(i, 1, &mut || false).unwrap(),
                FrameState::Ready,
                "{i}"
            );
            assert_eq!(
                t.logits(i).unwrap()[0].1,
                by_button.logits(i).unwrap()[0].1,
                "frame {i}"
            );
            if i + 1 == info.num_frames {
                assert_eq!(stats(&mut t).image_encoder_runs, info.num_frames as u64);
            }
        }
        assert_eq!(registry.stats().sessions, 1);
        assert_eq!(registry.stats().in_use, 0);
        // Other prompts are another session; a session nobody holds goes on a purge.
        let mut other = Tracker::in_registry(registry);
        let mut q = ObjectPrompts::default();
        q.apply(click(101, 250.0, 60.0));
        other
            .ensure_session(&model, &choice(), info, &objects(&[(1, &q)]), 64 << 20)
            .unwrap();
        assert_eq!(registry.stats().sessions, 2);
        assert_eq!(registry.release_idle(), 1);
        assert_eq!(registry.stats().sessions, 1);
    }
}
