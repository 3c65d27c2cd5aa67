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
use std::sync::Arc;

use indexmap::IndexMap;
use ndarray::{Array4, ArrayView4};

use crate::error::{Error, Result};
use crate::fill_holes::fill_holes;
use crate::frame_cache::{DEFAULT_FRAME_CACHE_BYTES, FrameCache, Residency};
use crate::frame_source::FrameSource;
use crate::image_encoder::{self, FrameFeatures};
use crate::mask_decoder::{self, PointPrompt};
use crate::mask_prompt;
use crate::masklet::{
    Direction, FrameResult, MaskCandidates, Masklet, MemorySource, Prompt, Storage,
};
use crate::memory_attention::{self, MemoryEntry, PointerEntry};
use crate::memory_bank::{lookup, select_memory};
use crate::memory_encoder;
use crate::model::Model;
use crate::resample::sam2_input;
use crate::script::{Label, ObjectId};

/// Choices a session makes that the model does not fix.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSettings {
    /// A prompt on a tracked frame makes it a conditioning frame, so the correction sticks.
    /// `true` here; the official predictor defaults to `false` (see [`SessionSettings::official`]).
    pub add_all_frames_to_correct_as_cond: bool,
    /// Background holes of at most this many low-res pixels are filled (0: off). The official
    /// predictor fills holes of 8 on a GPU and skips it on a CPU; CPU traces need 0.
    pub fill_hole_area: u32,
    /// Byte budget of the image-encoder feature cache.
    pub frame_cache_bytes: usize,
    /// Keep the memory of every tracked frame, as the official predictor does, instead of
    /// dropping those beyond the memory bank's reach (rebuilt on demand). Faster re-tracking far
    /// from where the last propagation ended, at ~0.5 MiB per frame and object at 1024.
    pub keep_all_memories: bool,
}

impl SessionSettings {
    /// Our defaults for `model`: corrections stick, the model's hole filling.
    pub fn for_model(model: &Model) -> SessionSettings {
        SessionSettings {
            add_all_frames_to_correct_as_cond: true,
            fill_hole_area: model.manifest().predictor.fill_hole_area,
            frame_cache_bytes: DEFAULT_FRAME_CACHE_BYTES,
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

/// A propagation request: the official `propagate_in_video` arguments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Propagation {
    /// Default: the earliest prompted frame of any object.
    pub start_frame: Option<usize>,
    pub reverse: bool,
    /// Default: the whole clip. `n` visits up to n + 1 frames (the official counting).
    pub max_frames: Option<usize>,
}

/// What a session has run so far: how the benchmarks split time and how the tests check that a
/// cached frame costs no encoder run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub image_encoder_runs: u64,
    pub mask_decoder_runs: u64,
    pub memory_encoder_runs: u64,
    pub memory_attention_runs: u64,
    /// Memories rebuilt after [`ClipSession`] dropped them behind a propagation.
    pub memories_rebuilt: u64,
}

/// How a propagation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropagationEnd {
    Completed { frames: usize },
    Cancelled { frames: usize },
}

/// Frames: the source, the feature cache and the constants every frame shares.
struct Frames {
    model: Arc<Model>,
    source: Box<dyn FrameSource>,
    cache: FrameCache,
    vision_pos_enc: Option<Arc<Array4<f32>>>,
    memory_pos_enc: Option<Array4<f32>>,
    num_frames: usize,
    video_size: (u32, u32),
    stats: SessionStats,
}

impl std::fmt::Debug for Frames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frames")
            .field("num_frames", &self.num_frames)
            .field("video_size", &self.video_size)
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl Frames {
    fn check(&self, frame: usize) -> Result<()> {
        if frame < self.num_frames {
            Ok(())
        } else {
            Err(Error::FrameOutOfRange {
                frame,
                num_frames: self.num_frames,
            })
        }
    }

    /// The encoder features of `frame`, from the cache or by encoding it.
    fn features(&mut self, frame: usize, residency: Residency) -> Result<Arc<FrameFeatures>> {
        self.check(frame)?;
        if let Some(features) = self.cache.get(frame, residency) {
            return Ok(features);
        }
        let image = self.source.frame(frame)?;
        let scaled = self.source.frames_may_be_scaled() && image.width > 0 && image.height > 0;
        if ((image.width, image.height) != self.video_size && !scaled)
            || image.data.len() != image.width as usize * image.height as usize * 3
        {
            return Err(Error::FrameSource {
                frame,
                message: format!(
                    "it is {}×{} ({} bytes) but the clip is {}×{} RGB",
                    image.width,
                    image.height,
                    image.data.len(),
                    self.video_size.0,
                    self.video_size.1
                ),
            });
        }
        let m = self.model.manifest();
        let input = sam2_input(
            &image.data,
            image.width,
            image.height,
            m.image_size,
            m.image_mean,
            m.image_std,
        );
        self.stats.image_encoder_runs += 1;
        let features = Arc::new(image_encoder::encode(
            &self.model,
            input.view(),
            self.vision_pos_enc.as_ref(),
        )?);
        if self.vision_pos_enc.is_none() {
            self.vision_pos_enc = Some(Arc::clone(&features.vision_pos_enc));
        }
        self.cache.insert(frame, Arc::clone(&features), residency);
        Ok(features)
    }

    fn encode_memory(
        &mut self,
        frame: usize,
        logits: &[f32],
        score: f32,
        from_points: bool,
        residency: Residency,
    ) -> Result<memory_encoder::MemoryFeatures> {
        let features = self.features(frame, residency)?;
        self.stats.memory_encoder_runs += 1;
        let (memory, pos) = memory_encoder::encode_memory(
            &self.model,
            features.vision_features.view(),
            logits,
            score,
            from_points,
        )?;
        if self.memory_pos_enc.is_none() {
            self.memory_pos_enc = Some(pos);
        }
        Ok(memory)
    }
}

/// A tracking session on one clip.
#[derive(Debug)]
pub struct ClipSession {
    settings: SessionSettings,
    frames: Frames,
    objects: IndexMap<ObjectId, Masklet>,
}

impl ClipSession {
    pub fn new(
        model: Arc<Model>,
        source: Box<dyn FrameSource>,
        settings: SessionSettings,
    ) -> Result<ClipSession> {
        let num_frames = source.num_frames();
        if num_frames == 0 {
            return Err(Error::EmptySource);
        }
        let m = model.manifest();
        if !m.memory.directly_add_no_mem_embed {
            return Err(Error::UnsupportedModel {
                problem: "it does not add the no-memory embedding directly on the first frame (directly_add_no_mem_embed), which every SAM 2 and SAM 2.1 release does".into(),
            });
        }
        let video_size = source.video_size();
        Ok(ClipSession {
            frames: Frames {
                cache: FrameCache::new(settings.frame_cache_bytes),
                model,
                source,
                vision_pos_enc: None,
                memory_pos_enc: None,
                num_frames,
                video_size,
                stats: SessionStats::default(),
            },
            settings,
            objects: IndexMap::new(),
        })
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
        masklet
            .prompts
            .insert(frame, Prompt::Points(points.clone()));
        masklet.invalidate_after(frame);
        let (is_init, direction, storage) = self.prompt_frame(object, frame);
        let clamp = self.frames.model.manifest().decoder.prev_mask_logits_clamp;
        let prev_logits = self
            .objects
            .get(&object)
            .and_then(|m| m.lookup(frame, storage))
            .map(|r| {
                r.low_res_logits
                    .iter()
                    .map(|v| v.clamp(-clamp, clamp))
                    .collect::<Vec<f32>>()
            });
        let prompt = Prompt::Points(points);
        let result = self.run_frame(
            object,
            frame,
            is_init,
            Some(&prompt),
            direction,
            false,
            prev_logits.as_deref(),
        )?;
        if let Some(m) = self.objects.get_mut(&object) {
            m.temp(storage).insert(frame, result);
        }
        Ok(self.consolidate(frame, storage))
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
        masklet.prompts.insert(frame, Prompt::Mask(resized.into()));
        masklet.invalidate_after(frame);
        let prompt = masklet.prompts.get(&frame).cloned();
        let (is_init, direction, storage) = self.prompt_frame(object, frame);
        let result = self.run_frame(
            object,
            frame,
            is_init,
            prompt.as_ref(),
            direction,
            false,
            None,
        )?;
        if let Some(m) = self.objects.get_mut(&object) {
            m.temp(storage).insert(frame, result);
        }
        Ok(self.consolidate(frame, storage))
    }

    /// (is the frame an initial conditioning frame, the direction it was tracked in, where its
    /// output goes) — the official rules for a new prompt.
    fn prompt_frame(&self, object: ObjectId, frame: usize) -> (bool, Direction, Storage) {
        let tracked = self
            .objects
            .get(&object)
            .and_then(|m| m.tracked.get(&frame).copied());
        let is_init = tracked.is_none();
        let direction = tracked.unwrap_or(Direction::Forward);
        let is_cond = is_init || self.settings.add_all_frames_to_correct_as_cond;
        (
            is_init,
            direction,
            if is_cond {
                Storage::Cond
            } else {
                Storage::NonCond
            },
        )
    }

    fn consolidate(&self, frame: usize, storage: Storage) -> FrameMasks {
        FrameMasks {
            frame,
            objects: self
                .objects
                .iter()
                .map(|(&object, m)| ObjectOutput {
                    object,
                    result: m.lookup(frame, storage).cloned(),
                })
                .collect(),
        }
    }

    /// `track_step` + `_run_single_frame_inference` for one object on one frame.
    #[allow(clippy::too_many_arguments)]
    fn run_frame(
        &mut self,
        object: ObjectId,
        frame: usize,
        is_init_cond: bool,
        prompt: Option<&Prompt>,
        direction: Direction,
        run_memory_encoder: bool,
        prev_logits: Option<&[f32]>,
    ) -> Result<FrameResult> {
        let model = Arc::clone(&self.frames.model);
        let m = model.manifest();
        let g = model.geometry();
        let residency = if prompt.is_some() {
            Residency::Interactive
        } else {
            Residency::Streamed
        };
        let features = self.frames.features(frame, residency)?;
        let dec = &m.decoder;
        let (mut logits, pointer, score, candidates) = match prompt {
            Some(Prompt::Mask(mask)) if dec.use_mask_input_as_output_without_sam => {
                let low = mask_prompt::mask_as_logits(
                    mask,
                    g.image_size,
                    dec.mask_as_output_scale,
                    dec.mask_as_output_bias,
                );
                let down = mask_prompt::downsample(mask, g.image_size, model.tensors());
                let down =
                    ArrayView4::from_shape((1, 1, g.low_res, g.low_res), &down).map_err(|e| {
                        Error::Internal {
                            message: e.to_string(),
                        }
                    })?;
                self.frames.stats.mask_decoder_runs += 1;
                let out = mask_decoder::decode(
                    &model,
                    features.vision_features.view(),
                    &features,
                    &PointPrompt::padding(),
                    Some(down),
                    false,
                )?;
                let present = mask.iter().any(|&v| v > 0.0);
                let lam = if present { 1.0f32 } else { 0.0 };
                let no_obj = model.tensors().no_obj_ptr.as_slice().unwrap_or_default();
                let mut pointer = out.object_pointer;
                if dec.pred_obj_scores {
                    for (i, p) in pointer.iter_mut().enumerate() {
                        if dec.fixed_no_obj_ptr {
                            *p *= lam;
                        }
                        *p += (1.0 - lam) * no_obj.get(i).copied().unwrap_or(0.0);
                    }
                }
                (
                    low,
                    pointer,
                    dec.mask_as_output_scale * lam + dec.mask_as_output_bias,
                    None,
                )
            }
            _ => {
                let conditioned;
                let pix = if is_init_cond {
                    let embed = &model.tensors().no_mem_embed;
                    let mut pix = features.vision_features.clone();
                    for (c, mut plane) in pix
                        .index_axis_mut(ndarray::Axis(0), 0)
                        .outer_iter_mut()
                        .enumerate()
                    {
                        let e = embed.get((0, 0, c)).copied().unwrap_or(0.0);
                        plane.mapv_inplace(|v| v + e);
                    }
                    conditioned = pix;
                    conditioned.view()
                } else {
                    conditioned = self.condition(object, frame, &features, direction)?;
                    conditioned.view()
                };
                let points = match prompt {
                    Some(Prompt::Points(p)) => p.clone(),
                    _ => PointPrompt::padding(),
                };
                let num_points = match prompt {
                    Some(Prompt::Points(p)) => p.len() as u32,
                    _ => 0,
                };
                let multimask = dec.multimask_output_in_sam
                    && (is_init_cond || dec.multimask_output_for_tracking)
                    && (dec.multimask_min_pt_num..=dec.multimask_max_pt_num).contains(&num_points);
                let mask_input = match prev_logits {
                    Some(l) => Some(
                        ArrayView4::from_shape((1, 1, g.low_res, g.low_res), l).map_err(|e| {
                            Error::Internal {
                                message: e.to_string(),
                            }
                        })?,
                    ),
                    None => None,
                };
                self.frames.stats.mask_decoder_runs += 1;
                let out =
                    mask_decoder::decode(&model, pix, &features, &points, mask_input, multimask)?;
                let candidates = matches!(prompt, Some(Prompt::Points(_))).then(|| {
                    let ious = &out.multimask_ious;
                    Arc::new(MaskCandidates {
                        logits: out.multimask_logits.clone(),
                        ious: [0, 1, 2].map(|i| ious.get(i).copied().unwrap_or(0.0)),
                        chosen_iou: out.iou,
                    })
                });
                (
                    out.low_res_logits,
                    out.object_pointer,
                    out.object_score,
                    candidates,
                )
            }
        };
        let from_points = matches!(prompt, Some(Prompt::Points(_)));
        let memory = if run_memory_encoder {
            Some(
                self.frames
                    .encode_memory(frame, &logits, score, from_points, residency)?,
            )
        } else {
            None
        };
        // The official predictor fills holes after the memory encoder ran on the unfilled mask;
        // what filling changed is kept so the memory can be rebuilt from the stored logits.
        let mut unfilled = Vec::new();
        if self.settings.fill_hole_area > 0 {
            let before = logits.clone();
            let filled = fill_holes(
                &mut logits,
                g.low_res,
                g.low_res,
                self.settings.fill_hole_area as usize,
            );
            if filled > 0 && run_memory_encoder {
                unfilled = before
                    .iter()
                    .zip(&logits)
                    .enumerate()
                    .filter(|(_, (a, b))| a.to_bits() != b.to_bits())
                    .map(|(i, (&a, _))| (i as u32, a))
                    .collect();
            }
        }
        Ok(FrameResult {
            low_res_logits: logits.into(),
            object_pointer: pointer.into(),
            object_score: score,
            memory,
            memory_source: MemorySource {
                from_points,
                // A memory encoded later (at preflight) reads the stored logits as they are.
                unfilled: unfilled.into(),
                pinned: false,
            },
            candidates,
        })
    }

    /// Memory attention over the object's memory bank for `frame`.
    fn condition(
        &mut self,
        object: ObjectId,
        frame: usize,
        features: &FrameFeatures,
        direction: Direction,
    ) -> Result<Array4<f32>> {
        let model = Arc::clone(&self.frames.model);
        let masklet = self
            .objects
            .get(&object)
            .ok_or(Error::UnknownObject { object })?;
        let pick = select_memory(
            &model.manifest().memory,
            frame,
            &masklet.cond,
            &masklet.non_cond,
            self.frames.num_frames,
            direction.is_reverse(),
        );
        // Memories dropped behind an earlier propagation are rebuilt from the stored logits.
        let dropped: Vec<(usize, bool)> = pick
            .memories
            .iter()
            .filter(|p| {
                lookup(p.frame, p.from_cond, &masklet.cond, &masklet.non_cond)
                    .is_some_and(|r| r.memory.is_none())
            })
            .map(|p| (p.frame, p.from_cond))
            .collect();
        for (t, from_cond) in dropped {
            self.restore_memory(object, t, from_cond)?;
        }
        let masklet = self
            .objects
            .get(&object)
            .ok_or(Error::UnknownObject { object })?;
        let missing = |t: usize| Error::Internal {
            message: format!("object {object}: the memory of frame {t} is missing"),
        };
        let mut memories = Vec::with_capacity(pick.memories.len());
        for p in &pick.memories {
            let result = lookup(p.frame, p.from_cond, &masklet.cond, &masklet.non_cond)
                .ok_or_else(|| missing(p.frame))?;
            let features = result.memory.as_ref().ok_or_else(|| missing(p.frame))?;
            memories.push(MemoryEntry {
                features,
                temporal_slot: p.temporal_slot,
            });
        }
        let mut pointers = Vec::with_capacity(pick.pointers.len());
        for p in &pick.pointers {
            let result = lookup(p.frame, p.from_cond, &masklet.cond, &masklet.non_cond)
                .ok_or_else(|| missing(p.frame))?;
            pointers.push(PointerEntry {
                pointer: &result.object_pointer,
                position: p.position,
            });
        }
        let pos = self
            .frames
            .memory_pos_enc
            .as_ref()
            .ok_or_else(|| missing(frame))?;
        self.frames.stats.memory_attention_runs += 1;
        memory_attention::condition(
            &model,
            features.vision_features.view(),
            features.vision_pos_enc.view(),
            &memories,
            pos.view(),
            &pointers,
        )
    }

    /// Re-encodes a memory that [`ClipSession::forget_far_memories`] dropped: same frame features,
    /// same stored logits, same flags — the same memory.
    fn restore_memory(&mut self, object: ObjectId, frame: usize, from_cond: bool) -> Result<()> {
        let masklet = self
            .objects
            .get_mut(&object)
            .ok_or(Error::UnknownObject { object })?;
        let result = if from_cond || !masklet.non_cond.contains_key(&frame) {
            masklet.cond.get_mut(&frame)
        } else {
            masklet.non_cond.get_mut(&frame)
        }
        .ok_or_else(|| Error::Internal {
            message: format!(
                "object {object}: no result on frame {frame} to rebuild a memory from"
            ),
        })?;
        let input = result.memory_source.encoder_input(&result.low_res_logits);
        let memory = self.frames.encode_memory(
            frame,
            &input,
            result.object_score,
            result.memory_source.from_points,
            Residency::Streamed,
        )?;
        result.memory = Some(memory);
        self.frames.stats.memories_rebuilt += 1;
        Ok(())
    }

    /// Drops the memories of tracked (non-conditioning) frames more than a memory bank's reach
    /// away from `frame`, where a propagation now stands: the bank only reads the last
    /// `num_maskmem − 1` recent frames (times the stride), so these would sit unused, and memory
    /// use would grow with the clip. A later propagation that needs one rebuilds it exactly
    /// ([`ClipSession::restore_memory`]).
    fn forget_far_memories(&mut self, frame: usize) {
        if self.settings.keep_all_memories {
            return;
        }
        let m = &self.frames.model.manifest().memory;
        let reach = (m.num_maskmem as usize) * (m.memory_temporal_stride_for_eval.max(1) as usize);
        for masklet in self.objects.values_mut() {
            for (&t, result) in masklet.non_cond.iter_mut() {
                let Some(memory) = &result.memory else {
                    continue;
                };
                if t.abs_diff(frame) <= reach || result.memory_source.pinned {
                    continue;
                }
                // Whichever is smaller stays: the memory itself, or what rebuilding it needs
                // beyond the stored logits (the pixels hole filling changed; none for most masks).
                let rebuild_bytes = result.memory_source.unfilled.len() * size_of::<(u32, f32)>();
                if rebuild_bytes < memory.bytes() {
                    result.memory = None;
                } else {
                    result.memory_source.unfilled = Arc::from(Vec::new());
                    result.memory_source.pinned = true;
                }
            }
        }
    }

    /// `propagate_in_video_preflight`: merges prompts' temporary outputs into the memory bank,
    /// encoding their memories.
    fn preflight(&mut self) -> Result<()> {
        if self.objects.is_empty() {
            return Err(Error::NothingToTrack { object: None });
        }
        let frames = &mut self.frames;
        for (&object, masklet) in self.objects.iter_mut() {
            for storage in [Storage::NonCond, Storage::Cond] {
                let temp = std::mem::take(masklet.temp(storage));
                for (frame, mut result) in temp {
                    if result.memory.is_none() {
                        // Prompted frames are encoded as clicked, whatever the prompt (official).
                        result.memory_source = MemorySource {
                            from_points: true,
                            unfilled: Arc::from(Vec::new()),
                            pinned: false,
                        };
                        result.memory = Some(frames.encode_memory(
                            frame,
                            &result.low_res_logits,
                            result.object_score,
                            true,
                            Residency::Interactive,
                        )?);
                    }
                    match storage {
                        Storage::Cond => masklet.cond.insert(frame, result),
                        Storage::NonCond => masklet.non_cond.insert(frame, result),
                    };
                }
            }
            if masklet.cond.is_empty() {
                return Err(Error::NothingToTrack {
                    object: Some(object),
                });
            }
            let cond: Vec<usize> = masklet.cond.keys().copied().collect();
            for frame in cond {
                masklet.non_cond.shift_remove(&frame);
            }
        }
        Ok(())
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
                .flat_map(|m| m.cond.keys().copied())
                .min()
                .ok_or(Error::NothingToTrack { object: None })?,
        };
        let max_frames = request.max_frames.unwrap_or(num_frames);
        let order: Vec<usize> = if request.reverse {
            let end = start.saturating_sub(max_frames);
            if start > 0 {
                (end..=start).rev().collect()
            } else {
                Vec::new()
            }
        } else {
            let end = start.saturating_add(max_frames).min(num_frames - 1);
            (start..=end).collect()
        };
        let direction = if request.reverse {
            Direction::Reverse
        } else {
            Direction::Forward
        };
        let ids = self.object_ids();
        for (done, &frame) in order.iter().enumerate() {
            let mut outputs = Vec::with_capacity(ids.len());
            for &object in &ids {
                let stored = self
                    .objects
                    .get(&object)
                    .and_then(|m| m.cond.get(&frame).cloned());
                let result = match stored {
                    Some(result) => result,
                    None => {
                        let result =
                            self.run_frame(object, frame, false, None, direction, true, None)?;
                        if let Some(m) = self.objects.get_mut(&object) {
                            m.non_cond.insert(frame, result.clone());
                        }
                        result
                    }
                };
                if let Some(m) = self.objects.get_mut(&object) {
                    m.tracked.insert(frame, direction);
                    m.stale.remove(&frame);
                }
                outputs.push(ObjectOutput {
                    object,
                    result: Some(result),
                });
            }
            self.forget_far_memories(frame);
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
            masklet.prompts.remove(&frame);
            masklet.temp_cond.shift_remove(&frame);
            masklet.temp_non_cond.shift_remove(&frame);
            if let Some(result) = masklet.cond.shift_remove(&frame) {
                masklet.non_cond.insert(frame, result);
                masklet.tracked.remove(&frame);
            }
        }
        self.objects.shift_remove(&object);
        Ok(frames
            .into_iter()
            .map(|frame| {
                let is_cond = self
                    .objects
                    .values()
                    .any(|m| m.temp_cond.contains_key(&frame));
                self.consolidate(
                    frame,
                    if is_cond {
                        Storage::Cond
                    } else {
                        Storage::NonCond
                    },
                )
            })
            .collect())
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
        masklet.prompts.remove(&frame);
        masklet.temp_cond.shift_remove(&frame);
        masklet.temp_non_cond.shift_remove(&frame);
        if let Some(result) = masklet.cond.shift_remove(&frame) {
            masklet.non_cond.insert(frame, result);
            masklet.tracked.remove(&frame);
        }
        let is_cond = self
            .objects
            .values()
            .any(|m| m.temp_cond.contains_key(&frame));
        Ok(self.consolidate(
            frame,
            if is_cond {
                Storage::Cond
            } else {
                Storage::NonCond
            },
        ))
    }

    /// Changes the encoder cache's byte budget, evicting at once if it shrank.
    pub fn set_frame_cache_budget(&mut self, bytes: usize) {
        self.settings.frame_cache_bytes = bytes;
        self.frames.cache.set_budget(bytes);
    }

    /// Drops every cached frame encoding (a host's "purge caches"); results and prompts stay.
    pub fn clear_frame_cache(&mut self) {
        self.frames.cache.clear();
    }

    /// Forgets every object and prompt (the encoder cache stays: the frames did not change).
    pub fn reset(&mut self) {
        self.objects.clear();
    }
}
