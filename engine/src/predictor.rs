//! The clip session: the official `SAM2VideoPredictor` verbs (add points / box / mask on any
//! frame, propagate, remove an object, reset) over a frame source, with the memory bank per object.
//!
//! The bookkeeping is a port of the official predictor, kept close to it so that it can be read
//! side by side (`sam2/sam2_video_predictor.py`, and `bundle/exporter/sam2export/onnx_driver.py`,
//! the same logic in plain Python, checked there against the official traces). One deliberate
//! difference in defaults: a prompt on an already tracked frame becomes a conditioning frame
//! (`add_all_frames_to_correct_as_cond`), so an artist's correction carries through every later
//! propagation; the official default — which drops it at the next propagation — is selectable.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;

use crate::error::{Error, Result};
use crate::frame_cache::{DEFAULT_FRAME_CACHE_BYTES, DiskCacheSettings, FrameCache, Residency};
use crate::frame_source::FrameSource;
use crate::frames::Frames;
use crate::mask_decoder::PointPrompt;
use crate::mask_prompt;
use crate::masklet::{FrameResult, Masklet, Prompt};
use crate::memory_bank::Storage;
use crate::model::Model;
use crate::object::ObjectId;
use crate::propagation::Direction;
pub use crate::propagation::{Propagation, PropagationEnd};
use crate::script::Label;
use crate::track_cache::{ColdStore, Layout, Provenance, TrackCacheWriter};
use crate::track_step::{self, Conditioning, StepInput, TrackStep, TrackedFrame};

/// Choices a session makes that the model does not fix.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSettings {
    /// A prompt on a tracked frame makes it a conditioning frame, so the correction sticks.
    /// `true` here; the official predictor defaults to `false` (see [`SessionSettings::official`]).
    pub add_all_frames_to_correct_as_cond: bool,
    /// Background holes of at most this many low-res pixels are filled (0: off). The official
    /// predictor fills holes of 8 on a GPU and skips it on a CPU; CPU traces need 0.
    pub fill_hole_area: u32,
    /// Byte budget of the image-encoder feature cache in memory.
    pub frame_cache_bytes: usize,
    /// Where encoder features that leave memory are kept, and how many bytes of them (a folder
    /// of the session's own, removed with the session); `None`: they are dropped and encoded
    /// again when needed.
    pub frame_cache_disk: Option<DiskCacheSettings>,
    /// Keep the memory of every tracked frame, as the official predictor does, instead of
    /// dropping those beyond the memory bank's reach (rebuilt on demand). Faster re-tracking far
    /// from where the last propagation ended, at ~0.5 MiB per frame and object at 1024.
    pub keep_all_memories: bool,
}

impl SessionSettings {
    /// Our defaults for `model`: corrections stick, the model's hole filling.
    pub fn for_model(model: &Model) -> SessionSettings {
        SessionSettings::for_manifest(model.manifest())
    }

    /// [`SessionSettings::for_model`] from the model's manifest alone (no model loaded: a
    /// render from a track cache checks the settings the cache was tracked with).
    pub fn for_manifest(manifest: &crate::model::manifest::Manifest) -> SessionSettings {
        SessionSettings {
            add_all_frames_to_correct_as_cond: true,
            fill_hole_area: manifest.predictor.fill_hole_area,
            frame_cache_bytes: DEFAULT_FRAME_CACHE_BYTES,
            frame_cache_disk: Some(DiskCacheSettings::default()),
            keep_all_memories: false,
        }
    }

    /// The official predictor's defaults for `model`.
    pub fn official(model: &Model) -> SessionSettings {
        SessionSettings {
            add_all_frames_to_correct_as_cond: model
                .manifest()
                .predictor
                .add_all_frames_to_correct_as_cond,
            ..SessionSettings::for_model(model)
        }
    }
}

/// One object's output on one frame. `result` is `None` when nothing is stored for the object
/// there (the official predictor shows −1024 logits: no mask).
#[derive(Debug, Clone)]
pub struct ObjectOutput {
    pub object: ObjectId,
    pub result: Option<FrameResult>,
}

/// All objects' outputs on one frame, in the session's object order.
#[derive(Debug, Clone)]
pub struct FrameMasks {
    pub frame: usize,
    pub objects: Vec<ObjectOutput>,
}

/// What a session has run so far: how the benchmarks split time and how the tests check that a
/// cached frame costs no encoder run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub image_encoder_runs: u64,
    pub mask_decoder_runs: u64,
    pub memory_encoder_runs: u64,
    pub memory_attention_runs: u64,
    /// Runs of the memory attention graph. The `*_runs` above count objects, and a propagation
    /// steps a frame's objects through each graph together (as many as the graphs take), so with
    /// several objects this is smaller than `memory_attention_runs`.
    pub memory_attention_graph_runs: u64,
    /// Memories rebuilt after [`ClipSession`] dropped them behind a propagation.
    pub memories_rebuilt: u64,
    /// Frames whose encoder features were read back from the frame cache's disk tier.
    pub frame_cache_disk_reads: u64,
}

/// Where a new prompt's step starts from and where its output goes.
struct PromptedFrame {
    conditioning: Conditioning,
    /// The direction the frame was tracked in (forward when it was not).
    direction: Direction,
    storage: Storage,
}

/// A tracking session on one clip.
#[derive(Debug)]
pub struct ClipSession {
    settings: SessionSettings,
    frames: Frames,
    objects: IndexMap<ObjectId, Masklet>,
    /// The cold tier, when a track cache is attached ([`ClipSession::attach_cache`]).
    cold: Option<ColdStore>,
}

impl ClipSession {
    pub fn new(
        model: Arc<Model>,
        source: Box<dyn FrameSource>,
        settings: SessionSettings,
    ) -> Result<ClipSession> {
        if source.num_frames() == 0 {
            return Err(Error::EmptySource);
        }
        Ok(ClipSession {
            frames: Frames::new(
                model,
                source,
                settings.frame_cache_bytes,
                settings.frame_cache_disk.clone(),
            ),
            settings,
            objects: IndexMap::new(),
            cold: None,
        })
    }

    /// Attaches a track cache: from now on the session writes every result there as it goes
    /// cold — a tracked frame far behind the propagation whose memory was dropped — and keeps only
    /// the results near the propagation (and the prompted frames') logits in RAM, so that its
    /// memory stays flat in the clip's length. [`ClipSession::result`] then shows cold results with
    /// empty logits ([`FrameResult::is_cold`]); [`ClipSession::logits`] reads any result's logits.
    /// [`ClipSession::commit_cache`] writes the rest and commits.
    pub fn attach_cache(&mut self, writer: TrackCacheWriter) -> Result<()> {
        self.cold = Some(ColdStore::new(writer)?);
        Ok(())
    }

    /// Creates the track cache at `path` for this session and attaches it
    /// ([`ClipSession::attach_cache`]): its provenance names this session's model, precision and
    /// predictor settings, with the caller's fingerprints of the `source` frames and the `prompts`;
    /// its layout is the clip's size and length and the model's low-res side.
    pub fn create_cache(&mut self, path: &Path, source: String, prompts: String) -> Result<()> {
        let provenance = Provenance::for_session(self, source, prompts);
        let (width, height) = self.video_size();
        let layout = Layout {
            width,
            height,
            num_frames: self.num_frames(),
            low_res: self.model().geometry().low_res,
        };
        self.attach_cache(TrackCacheWriter::create(path, &provenance, layout)?)
    }

    /// The attached track cache's writer.
    pub fn cache(&self) -> Option<&TrackCacheWriter> {
        self.cold.as_ref().map(ColdStore::writer)
    }

    /// Brings the attached track cache up to the session's state and commits it
    /// ([`TrackCacheWriter::commit`]); nothing without one.
    pub fn commit_cache(&mut self) -> Result<()> {
        let ClipSession { cold, objects, .. } = self;
        let Some(cold) = cold else {
            return Ok(());
        };
        let ids: Vec<ObjectId> = objects.keys().copied().collect();
        cold.writer_mut()
            .commit_state(&ids, |frame, object| objects.get(&object)?.result(frame))?;
        Ok(())
    }

    /// The logits of `object`'s result on `frame`, read back from the track cache when the
    /// result is cold; `None` when there is no result.
    pub fn logits(&self, frame: usize, object: ObjectId) -> Result<Option<Arc<[f32]>>> {
        match self.result(frame, object) {
            None => Ok(None),
            Some(r) if r.is_cold() => track_step::thaw(self.cold.as_ref(), object, frame).map(Some),
            Some(r) => Ok(Some(Arc::clone(&r.low_res_logits))),
        }
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.frames.model
    }

    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    pub fn num_frames(&self) -> usize {
        self.frames.num_frames
    }

    /// (width, height) of the source frames.
    pub fn video_size(&self) -> (u32, u32) {
        self.frames.video_size
    }

    /// Object ids in the session's order (the order of their first prompt).
    pub fn object_ids(&self) -> Vec<ObjectId> {
        self.objects.keys().copied().collect()
    }

    pub fn masklet(&self, object: ObjectId) -> Option<&Masklet> {
        self.objects.get(&object)
    }

    /// The stored result of `object` on `frame` (no model call).
    pub fn result(&self, frame: usize, object: ObjectId) -> Option<&FrameResult> {
        self.objects.get(&object)?.result(frame)
    }

    /// Encodes `frame` ahead of a click, so the click costs the decoder only.
    pub fn prepare_frame(&mut self, frame: usize) -> Result<()> {
        self.frames
            .features(frame, Residency::Interactive)
            .map(|_| ())
    }

    /// Whether a later prompt made `object`'s result on `frame` out of date.
    pub fn is_stale(&self, frame: usize, object: ObjectId) -> bool {
        self.objects.get(&object).is_some_and(|m| m.is_stale(frame))
    }

    pub fn frame_cache(&self) -> &FrameCache {
        &self.frames.cache
    }

    /// Model calls so far.
    pub fn stats(&self) -> SessionStats {
        self.frames.stats
    }

    fn check_points(&self, frame: usize, object: ObjectId, points: &[[f64; 2]]) -> Result<()> {
        let (w, h) = self.frames.video_size;
        for p in points {
            if !(p[0].is_finite() && p[1].is_finite())
                || p[0] < 0.0
                || p[1] < 0.0
                || p[0] > f64::from(w)
                || p[1] > f64::from(h)
            {
                return Err(Error::InvalidPrompt {
                    frame,
                    object,
                    problem: format!(
                        "the point ({}, {}) lies outside the {w}×{h} image",
                        p[0], p[1]
                    ),
                });
            }
        }
        Ok(())
    }

    /// Source pixels → model pixels, in f32 as the official code computes it.
    fn to_model(&self, p: [f64; 2]) -> [f32; 2] {
        let (w, h) = self.frames.video_size;
        let s = self.frames.model.geometry().image_size as f32;
        [(p[0] as f32 / w as f32) * s, (p[1] as f32 / h as f32) * s]
    }

    /// Clicks on `frame` for `object` (a new object is created on its first prompt). With
    /// `clear_old_points` false they are appended to the frame's earlier clicks.
    pub fn add_points(
        &mut self,
        frame: usize,
        object: ObjectId,
        points: &[[f64; 2]],
        labels: &[Label],
        clear_old_points: bool,
    ) -> Result<FrameMasks> {
        if points.is_empty() || points.len() != labels.len() {
            return Err(Error::InvalidPrompt {
                frame,
                object,
                problem: format!(
                    "{} points with {} labels were given; give at least one point and one label per point",
                    points.len(),
                    labels.len()
                ),
            });
        }
        self.frames.check(frame)?;
        self.check_points(frame, object, points)?;
        let coords = points.iter().map(|&p| self.to_model(p)).collect();
        let labels = labels.iter().map(|&l| i64::from(l) as i32).collect();
        self.add_point_prompt(
            frame,
            object,
            PointPrompt { coords, labels },
            clear_old_points,
        )
    }

    /// A box `[x0, y0, x1, y1]` (replacing the object's earlier clicks on that frame), optionally
    /// followed by clicks.
    pub fn add_box(
        &mut self,
        frame: usize,
        object: ObjectId,
        bbox: [f64; 4],
        points: &[[f64; 2]],
        labels: &[Label],
    ) -> Result<FrameMasks> {
        if points.len() != labels.len() {
            return Err(Error::InvalidPrompt {
                frame,
                object,
                problem: format!(
                    "{} points with {} labels were given",
                    points.len(),
                    labels.len()
                ),
            });
        }
        if bbox[0] > bbox[2] || bbox[1] > bbox[3] {
            return Err(Error::InvalidPrompt {
                frame,
                object,
                problem: "the box's first corner must be its top-left one".into(),
            });
        }
        self.frames.check(frame)?;
        let corners = [[bbox[0], bbox[1]], [bbox[2], bbox[3]]];
        self.check_points(frame, object, &corners)?;
        self.check_points(frame, object, points)?;
        let mut coords: Vec<[f32; 2]> = corners.iter().map(|&p| self.to_model(p)).collect();
        coords.extend(points.iter().map(|&p| self.to_model(p)));
        let mut all_labels = vec![2, 3];
        all_labels.extend(labels.iter().map(|&l| i64::from(l) as i32));
        self.add_point_prompt(
            frame,
            object,
            PointPrompt {
                coords,
                labels: all_labels,
            },
            true,
        )
    }

    fn add_point_prompt(
        &mut self,
        frame: usize,
        object: ObjectId,
        mut points: PointPrompt,
        clear_old: bool,
    ) -> Result<FrameMasks> {
        let masklet = self.objects.entry(object).or_default();
        if !clear_old && let Some(Prompt::Points(old)) = masklet.prompts.get(&frame) {
            let mut merged = old.clone();
            merged.coords.extend(points.coords);
            merged.labels.extend(points.labels);
            points = merged;
        }
        crate::mask_decoder::check_point_count(frame, object, points.len())?;
        masklet
            .prompts
            .insert(frame, Prompt::Points(points.clone()));
        masklet.invalidate_after(frame);
        let storage = self.prompt_frame(object, frame).storage;
        let clamp = self.frames.model.manifest().decoder.prev_mask_logits_clamp;
        let previous_logits = self
            .objects
            .get(&object)
            .and_then(|m| m.lookup(frame, storage))
            .map(|r| {
                let logits = if r.is_cold() {
                    track_step::thaw(self.cold.as_ref(), object, frame)?
                } else {
                    Arc::clone(&r.low_res_logits)
                };
                Ok::<_, Error>(
                    logits
                        .iter()
                        .map(|v| v.clamp(-clamp, clamp))
                        .collect::<Vec<f32>>(),
                )
            })
            .transpose()?;
        self.prompt_step(
            object,
            frame,
            &Prompt::Points(points),
            previous_logits.as_deref(),
        )
    }

    /// A mask prompt: `mask` is `width · height` booleans (row-major) at the video size.
    pub fn add_mask(
        &mut self,
        frame: usize,
        object: ObjectId,
        mask: &[bool],
    ) -> Result<FrameMasks> {
        let (w, h) = self.frames.video_size;
        if mask.len() != w as usize * h as usize {
            return Err(Error::InvalidPrompt {
                frame,
                object,
                problem: format!(
                    "the mask has {} pixels but the {w}×{h} video needs {}",
                    mask.len(),
                    w as usize * h as usize
                ),
            });
        }
        self.frames.check(frame)?;
        let s = self.frames.model.geometry().image_size;
        let resized = mask_prompt::to_model_size(mask, w as usize, h as usize, s);
        let masklet = self.objects.entry(object).or_default();
        let prompt = Prompt::Mask(resized.into());
        masklet.prompts.insert(frame, prompt.clone());
        masklet.invalidate_after(frame);
        self.prompt_step(object, frame, &prompt, None)
    }

    /// Decodes a new prompt on `frame` and stores the output until the next propagation merges
    /// it; returns the frame's consolidated masks.
    fn prompt_step(
        &mut self,
        object: ObjectId,
        frame: usize,
        prompt: &Prompt,
        previous_logits: Option<&[f32]>,
    ) -> Result<FrameMasks> {
        let PromptedFrame {
            conditioning,
            direction,
            storage,
        } = self.prompt_frame(object, frame);
        let result = self.step(&StepInput {
            object,
            frame,
            conditioning,
            prompt,
            direction,
            previous_logits,
        })?;
        if let Some(m) = self.objects.get_mut(&object) {
            m.bank.insert_temporary(frame, storage, result);
        }
        self.consolidate(frame, storage)
    }

    /// The official rules for a new prompt on `frame`.
    fn prompt_frame(&self, object: ObjectId, frame: usize) -> PromptedFrame {
        let tracked = self
            .objects
            .get(&object)
            .and_then(|m| m.tracked.get(&frame).copied());
        let is_cond = tracked.is_none() || self.settings.add_all_frames_to_correct_as_cond;
        PromptedFrame {
            conditioning: match tracked {
                None => Conditioning::NoMemory,
                Some(_) => Conditioning::MemoryBank,
            },
            direction: tracked.unwrap_or_default(),
            storage: if is_cond {
                Storage::Cond
            } else {
                Storage::NonCond
            },
        }
    }

    /// Every object's output on `frame`; a cold result comes back with its logits, so that a
    /// step's outputs never show one.
    fn consolidate(&self, frame: usize, storage: Storage) -> Result<FrameMasks> {
        let mut objects = Vec::with_capacity(self.objects.len());
        for (&object, m) in &self.objects {
            let mut result = m.lookup(frame, storage).cloned();
            if let Some(r) = result.as_mut().filter(|r| r.is_cold()) {
                r.low_res_logits = track_step::thaw(self.cold.as_ref(), object, frame)?;
            }
            objects.push(ObjectOutput { object, result });
        }
        Ok(FrameMasks { frame, objects })
    }

    /// `propagate_in_video_preflight`: merges prompts' temporary outputs into each object's
    /// memory bank, encoding their memories.
    fn preflight(&mut self) -> Result<()> {
        if self.objects.is_empty() {
            return Err(Error::NothingToTrack { object: None });
        }
        let frames = &mut self.frames;
        for (&object, masklet) in self.objects.iter_mut() {
            masklet
                .bank
                .merge_temporary(&mut |frame, logits, score, origin| {
                    frames.encode_memory(frame, logits, score, origin, Residency::Interactive)
                })?;
            if masklet.bank.conditioning_frames().next().is_none() {
                return Err(Error::NothingToTrack {
                    object: Some(object),
                });
            }
        }
        Ok(())
    }

    /// The retention policy after a propagation step at `frame` (unless the settings keep every
    /// memory): see [`crate::memory_bank::MemoryBank::forget_far`].
    fn forget_far_memories(&mut self, frame: usize) -> Result<()> {
        if self.settings.keep_all_memories {
            return Ok(());
        }
        let settings = &self.frames.model.manifest().memory;
        for (&object, masklet) in self.objects.iter_mut() {
            masklet.bank.forget_far(frame, settings);
            if let Some(cold) = self.cold.as_mut() {
                masklet.bank.freeze_far(frame, settings, &mut |t, result| {
                    Ok(cold.freeze(object, t, result)?)
                })?;
            }
        }
        Ok(())
    }

    /// Runs one step for `input.object` ([`TrackStep`]).
    fn step(&mut self, input: &StepInput<'_>) -> Result<FrameResult> {
        let object = input.object;
        let masklet = self
            .objects
            .get_mut(&object)
            .ok_or(Error::UnknownObject { object })?;
        TrackStep {
            frames: &mut self.frames,
            bank: &mut masklet.bank,
            fill_hole_area: self.settings.fill_hole_area,
            cold: self.cold.as_ref(),
        }
        .run(input)
    }

    /// Every object's output on `frame` as a propagation reaches it: its conditioning output where
    /// it has one; the others are stepped together ([`TrackedFrame`]), which stores their results
    /// in their banks.
    fn track_frame(&mut self, frame: usize, direction: Direction) -> Result<Vec<ObjectOutput>> {
        TrackedFrame {
            frames: &mut self.frames,
            banks: self
                .objects
                .iter_mut()
                .filter(|(_, m)| m.bank.conditioning(frame).is_none())
                .map(|(&object, m)| (object, &mut m.bank))
                .collect(),
            fill_hole_area: self.settings.fill_hole_area,
            cold: self.cold.as_ref(),
        }
        .run(frame, direction)?;
        self.objects
            .iter_mut()
            .map(|(&object, m)| {
                m.tracked.insert(frame, direction);
                m.stale.remove(&frame);
                let result = m
                    .bank
                    .conditioning(frame)
                    .or_else(|| m.bank.lookup(frame, Storage::NonCond))
                    .cloned()
                    .ok_or_else(|| Error::Internal {
                        message: format!(
                            "object {object}: frame {frame} was tracked but holds no output"
                        ),
                    })?;
                Ok(ObjectOutput {
                    object,
                    result: Some(result),
                })
            })
            .collect()
    }

    /// Tracks every object through the clip; `on_frame` sees each frame's masks as they come and
    /// may stop the propagation (an artist's cancel).
    pub fn propagate(
        &mut self,
        request: Propagation,
        mut on_frame: impl FnMut(&FrameMasks) -> ControlFlow<()>,
    ) -> Result<PropagationEnd> {
        if let Some(start) = request.start_frame {
            self.frames.check(start)?;
        }
        self.preflight()?;
        let num_frames = self.frames.num_frames;
        let start = match request.start_frame {
            Some(s) => s,
            None => self
                .objects
                .values()
                .flat_map(|m| m.bank.conditioning_frames())
                .min()
                .ok_or(Error::NothingToTrack { object: None })?,
        };
        let order = request.frames(start, num_frames);
        let direction = request.direction;
        for (done, &frame) in order.iter().enumerate() {
            let outputs = self.track_frame(frame, direction)?;
            self.forget_far_memories(frame)?;
            if on_frame(&FrameMasks {
                frame,
                objects: outputs,
            })
            .is_break()
            {
                return Ok(PropagationEnd::Cancelled { frames: done + 1 });
            }
        }
        Ok(PropagationEnd::Completed {
            frames: order.len(),
        })
    }

    /// Removes an object; returns the updated masks of the frames where it had prompts (other
    /// objects' outputs there). Removing the last object resets the session, as officially; an
    /// unknown id is an error (the official predictor ignores it silently).
    pub fn remove_object(&mut self, object: ObjectId) -> Result<Vec<FrameMasks>> {
        if !self.objects.contains_key(&object) {
            return Err(Error::UnknownObject { object });
        }
        if self.objects.len() == 1 {
            self.reset();
            return Ok(Vec::new());
        }
        let Some(masklet) = self.objects.get_mut(&object) else {
            return Ok(Vec::new());
        };
        let frames = masklet.prompted_frames();
        for &frame in &frames {
            masklet.clear_prompt(frame);
        }
        self.objects.shift_remove(&object);
        frames
            .into_iter()
            .map(|frame| {
                let is_cond = self
                    .objects
                    .values()
                    .any(|m| m.bank.has_temporary_cond(frame));
                self.consolidate(
                    frame,
                    if is_cond {
                        Storage::Cond
                    } else {
                        Storage::NonCond
                    },
                )
            })
            .collect()
    }

    /// Removes `object`'s prompts on `frame` (the official `clear_all_prompts_in_frame`): its output
    /// there stays as a tracked (non-conditioning) result until a propagation recomputes it, and
    /// the frames tracked from it are marked stale. Prompts on other frames are kept. Returns the
    /// frame's masks after the removal.
    pub fn clear_prompts_in_frame(&mut self, frame: usize, object: ObjectId) -> Result<FrameMasks> {
        self.frames.check(frame)?;
        let masklet = self
            .objects
            .get_mut(&object)
            .ok_or(Error::UnknownObject { object })?;
        masklet.invalidate_after(frame);
        masklet.clear_prompt(frame);
        let is_cond = self
            .objects
            .values()
            .any(|m| m.bank.has_temporary_cond(frame));
        self.consolidate(
            frame,
            if is_cond {
                Storage::Cond
            } else {
                Storage::NonCond
            },
        )
    }

    /// Changes the encoder cache's byte budget, evicting at once if it shrank.
    pub fn set_frame_cache_budget(&mut self, bytes: usize) {
        self.settings.frame_cache_bytes = bytes;
        self.frames.cache.set_budget(bytes);
    }

    /// Drops every cached frame encoding, in memory and on disk (a host's "purge caches");
    /// results and prompts stay.
    pub fn clear_frame_cache(&mut self) {
        self.frames.cache.clear();
    }

    /// Forgets every object and prompt (the encoder cache stays: the frames did not change).
    pub fn reset(&mut self) {
        self.objects.clear();
    }
}
