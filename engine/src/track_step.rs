//! The official `track_step` (with `_run_single_frame_inference`'s hole filling), in its order —
//! `_prepare_memory_conditioned_features` (memory attention over the memory bank, or the
//! no-memory embedding on an initial prompt), `_forward_sam_heads` (prompt encoder + mask
//! decoder) or `_use_mask_as_output` for a mask prompt, then `_encode_new_memory` — for one
//! object's prompt on a frame ([`TrackStep`]), and for every object a propagation reaches on a
//! frame ([`TrackedFrame`]).

use std::sync::Arc;

use ndarray::ArrayView4;

use crate::error::{Error, Result};
use crate::fill_holes::fill_holes_in_mask_scores;
use crate::frame_cache::Residency;
use crate::frames::Frames;
use crate::image_encoder::FrameFeatures;
use crate::mask_decoder::{self, Candidates, DecoderOutput, PointPrompt};
use crate::mask_prompt;
use crate::masklet::{FrameResult, MaskCandidates, Prompt};
use crate::memory_attention::{self, BankInputs};
use crate::memory_bank::{MaskOrigin, MemoryBank, MemorySource, Retention};
use crate::memory_encoder::MemoryFeatures;
use crate::memory_selection::MemoryPick;
use crate::model::GraphTensor;
use crate::model::manifest::DecoderSettings;
use crate::object::ObjectId;
use crate::propagation::Direction;
use crate::track_cache::ColdStore;

/// What the frame's features are conditioned on before the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conditioning {
    /// The learned no-memory embedding: the object's first prompt on a frame no propagation
    /// reached (the official `is_init_cond_frame`).
    NoMemory,
    /// Memory attention over the object's memory bank.
    MemoryBank,
}

/// The inputs of one prompt step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepInput<'a> {
    pub object: ObjectId,
    pub frame: usize,
    pub conditioning: Conditioning,
    pub prompt: &'a Prompt,
    /// The direction the memory bank looks back in.
    pub direction: Direction,
    /// The frame's earlier logits, fed back to the decoder with new clicks (already clamped).
    pub previous_logits: Option<&'a [f32]>,
}

/// One step's view of the session: the frames and the object's memory bank.
pub(crate) struct TrackStep<'s> {
    pub frames: &'s mut Frames,
    pub bank: &'s mut MemoryBank,
    /// Background holes of at most this many low-res pixels are filled (0: off).
    pub fill_hole_area: u32,
    /// Where cold results' logits are (a session with a track cache attached).
    pub cold: Option<&'s ColdStore>,
}

/// What the decoder (or a mask prompt used as output) gives one step.
struct HeadOutput {
    logits: Vec<f32>,
    pointer: Vec<f32>,
    score: f32,
    candidates: Option<Arc<MaskCandidates>>,
}

impl From<DecoderOutput> for HeadOutput {
    fn from(out: DecoderOutput) -> HeadOutput {
        let candidates = out.candidates.map(|c| {
            Arc::new(MaskCandidates {
                logits: c.logits,
                ious: c.ious,
                chosen_iou: out.iou,
            })
        });
        HeadOutput {
            logits: out.low_res_logits,
            pointer: out.object_pointer,
            score: out.object_score,
            candidates,
        }
    }
}

fn shape_error(what: &str, e: ndarray::ShapeError) -> Error {
    Error::Internal {
        message: format!("{what} does not have the model's low-resolution size: {e}"),
    }
}

impl TrackStep<'_> {
    /// `track_step` + `_run_single_frame_inference`: the frame's output for the object.
    pub(crate) fn run(&mut self, input: &StepInput<'_>) -> Result<FrameResult> {
        let features = self.frames.features(input.frame, Residency::Interactive)?;
        let model = Arc::clone(&self.frames.model);
        let dec = &model.manifest().decoder;
        let head = match input.prompt {
            Prompt::Mask(mask) if dec.use_mask_input_as_output_without_sam => {
                self.use_mask_as_output(mask, &features)?
            }
            _ => {
                let conditioned = self.prepare_memory_conditioned_features(input, &features)?;
                self.forward_sam_heads(input, &conditioned, &features)?
            }
        };
        let origin = match input.prompt {
            Prompt::Points(_) => MaskOrigin::Points,
            _ => MaskOrigin::Tracked,
        };
        // The memory is encoded when the next propagation merges the output (the official
        // preflight).
        Ok(finish(
            head,
            None,
            origin,
            model.geometry().low_res,
            self.fill_hole_area,
        ))
    }

    /// `_prepare_memory_conditioned_features`: the frame's features with the no-memory
    /// embedding added, or conditioned on the memory bank by memory attention.
    fn prepare_memory_conditioned_features(
        &mut self,
        input: &StepInput<'_>,
        features: &FrameFeatures,
    ) -> Result<GraphTensor> {
        let model = Arc::clone(&self.frames.model);
        match input.conditioning {
            // A prompt on a frame before any memory: the features come to the host and back (on
            // a card, 4 MiB each way at 1024, once per such click).
            Conditioning::NoMemory => {
                let embed = &model.tensors().no_mem_embed;
                let transfer = |source| Error::TensorTransfer {
                    what: "frame's features",
                    source,
                };
                let mut pix = features
                    .vision_features
                    .to_host()
                    .map_err(transfer)?
                    .into_owned();
                for (c, mut plane) in pix
                    .index_axis_mut(ndarray::Axis(0), 0)
                    .outer_iter_mut()
                    .enumerate()
                {
                    let e = embed
                        .get((0, 0, c))
                        .copied()
                        .ok_or_else(|| Error::Internal {
                            message: format!(
                                "no_mem_embed has {} channels, fewer than the features' {}",
                                embed.len(),
                                c + 1
                            ),
                        })?;
                    plane.mapv_inplace(|v| v + e);
                }
                GraphTensor::from_host(pix).map_err(transfer)
            }
            Conditioning::MemoryBank => {
                let (object, frame) = (input.object, input.frame);
                let pick = pick_memories(
                    self.frames,
                    self.bank,
                    self.cold,
                    object,
                    frame,
                    input.direction,
                )?;
                let (memories, pointers) = self.bank.attention_inputs(object, &pick)?;
                self.frames.stats.memory_attention_runs += 1;
                self.frames.stats.memory_attention_graph_runs += 1;
                let pos = memory_pos_enc(self.frames, object, frame)?;
                memory_attention::condition(
                    &model,
                    &features.vision_features,
                    &features.vision_pos_enc,
                    &[BankInputs {
                        memories: &memories,
                        pointers: &pointers,
                    }],
                    pos,
                )?
                .pop()
                .ok_or_else(|| Error::Internal {
                    message: "memory attention gave no features for its one object".into(),
                })
            }
        }
    }

    /// `_forward_sam_heads`: prompt encoder and mask decoder on the conditioned features.
    fn forward_sam_heads(
        &mut self,
        input: &StepInput<'_>,
        conditioned: &GraphTensor,
        features: &FrameFeatures,
    ) -> Result<HeadOutput> {
        let model = Arc::clone(&self.frames.model);
        let dec = &model.manifest().decoder;
        let low_res = model.geometry().low_res;
        let padding;
        let (points, num_points) = match input.prompt {
            Prompt::Points(p) => (p, p.len() as u32),
            _ => {
                padding = PointPrompt::padding();
                (&padding, 0)
            }
        };
        let multimask = multimask(dec, input.conditioning, num_points);
        let mask_input = input
            .previous_logits
            .map(|l| ArrayView4::from_shape((1, 1, low_res, low_res), l))
            .transpose()
            .map_err(|e| shape_error("the previous mask logits", e))?;
        self.frames.stats.mask_decoder_runs += 1;
        let keep = match input.prompt {
            Prompt::Points(_) => Candidates::Keep,
            _ => Candidates::Discard,
        };
        let out = mask_decoder::decode(
            &model,
            conditioned,
            features,
            points,
            mask_input,
            multimask,
            keep,
        )?;
        Ok(out.into())
    }

    /// `_use_mask_as_output`: a mask prompt becomes the output as it is (scaled logits), the
    /// decoder only giving the object pointer.
    fn use_mask_as_output(&mut self, mask: &[f32], features: &FrameFeatures) -> Result<HeadOutput> {
        let model = Arc::clone(&self.frames.model);
        let dec = &model.manifest().decoder;
        let g = model.geometry();
        let low = mask_prompt::mask_as_logits(
            mask,
            g.image_size,
            dec.mask_as_output_scale,
            dec.mask_as_output_bias,
        );
        let down = mask_prompt::downsample(mask, g.image_size, model.tensors())?;
        let down = ArrayView4::from_shape((1, 1, g.low_res, g.low_res), &down)
            .map_err(|e| shape_error("the downsampled mask prompt", e))?;
        self.frames.stats.mask_decoder_runs += 1;
        let out = mask_decoder::decode(
            &model,
            &features.vision_features,
            features,
            &PointPrompt::padding(),
            Some(down),
            false,
            Candidates::Discard,
        )?;
        let present = mask.iter().any(|&v| v > 0.0);
        let lam = if present { 1.0f32 } else { 0.0 };
        let mut pointer = out.object_pointer;
        if dec.pred_obj_scores {
            let no_obj = model
                .tensors()
                .no_obj_ptr
                .as_slice()
                .ok_or_else(|| Error::Internal {
                    message: "no_obj_ptr is not a contiguous array".into(),
                })?;
            if no_obj.len() != pointer.len() {
                return Err(Error::Internal {
                    message: format!(
                        "no_obj_ptr has {} values but the object pointer {}",
                        no_obj.len(),
                        pointer.len()
                    ),
                });
            }
            for (p, &n) in pointer.iter_mut().zip(no_obj) {
                if dec.fixed_no_obj_ptr {
                    *p *= lam;
                }
                *p += (1.0 - lam) * n;
            }
        }
        Ok(HeadOutput {
            logits: low,
            pointer,
            score: dec.mask_as_output_scale * lam + dec.mask_as_output_bias,
            candidates: None,
        })
    }
}

/// Whether the decoder picks the best of three candidates (the official `multimask_output` of
/// `_forward_sam_heads`).
fn multimask(dec: &DecoderSettings, conditioning: Conditioning, num_points: u32) -> bool {
    dec.multimask_output_in_sam
        && (conditioning == Conditioning::NoMemory || dec.multimask_output_for_tracking)
        && (dec.multimask_min_pt_num..=dec.multimask_max_pt_num).contains(&num_points)
}

/// The memories and pointers `object` attends to on `frame`, with the memories dropped behind an
/// earlier propagation rebuilt from the stored logits.
fn pick_memories(
    frames: &mut Frames,
    bank: &mut MemoryBank,
    cold: Option<&ColdStore>,
    object: ObjectId,
    frame: usize,
    direction: Direction,
) -> Result<MemoryPick> {
    let model = Arc::clone(&frames.model);
    let pick = bank.select(
        frame,
        &model.manifest().memory,
        frames.num_frames,
        direction,
    );
    for (t, storage) in bank.dropped(&pick) {
        bank.restore(
            object,
            t,
            storage,
            &mut |t, logits, score, origin| {
                frames.encode_memory(t, logits, score, origin, Residency::Streamed)
            },
            &mut |t| thaw_encoder_input(cold, object, t),
        )?;
        frames.stats.memories_rebuilt += 1;
    }
    Ok(pick)
}

/// The memory position encoding, which exists once any memory was encoded.
fn memory_pos_enc(frames: &Frames, object: ObjectId, frame: usize) -> Result<&GraphTensor> {
    frames.memory_pos_enc().ok_or_else(|| Error::Internal {
        message: format!(
            "object {object}: frame {frame} attends to memories before any was encoded"
        ),
    })
}

/// A step's result from the decoder's output and the memory: the official predictor fills holes
/// after the memory encoder ran on the unfilled mask; what filling changed is kept so the memory
/// can be rebuilt from the stored logits.
fn finish(
    head: HeadOutput,
    memory: Option<MemoryFeatures>,
    origin: MaskOrigin,
    low_res: usize,
    fill_hole_area: u32,
) -> FrameResult {
    let HeadOutput {
        mut logits,
        pointer,
        score,
        candidates,
    } = head;
    let mut unfilled = Vec::new();
    if fill_hole_area > 0 {
        // Only a memory encoded now needs the pixels filling changes (a later one reads the
        // stored logits as they are).
        let before = memory.is_some().then(|| logits.clone());
        let filled =
            fill_holes_in_mask_scores(&mut logits, low_res, low_res, fill_hole_area as usize);
        if let Some(before) = before.filter(|_| filled > 0) {
            unfilled = before
                .iter()
                .zip(&logits)
                .enumerate()
                .filter(|(_, (a, b))| a.to_bits() != b.to_bits())
                .map(|(i, (&a, _))| (i as u32, a))
                .collect();
        }
    }
    FrameResult {
        low_res_logits: logits.into(),
        object_pointer: pointer.into(),
        object_score: score,
        memory,
        memory_source: MemorySource {
            origin,
            // A memory encoded later (at the merge) reads the stored logits as they are.
            retention: Retention::Rebuildable {
                unfilled: unfilled.into(),
            },
        },
        candidates,
    }
}

/// The objects a propagation reaches on one frame, stepped together where the graphs take several
/// objects ([`crate::model::ObjectBatching`]): memory attention and the decoder once per group of
/// objects whose memory banks line up, the memory encoder once for all — the same arithmetic as
/// one step per object, in fewer, larger runs.
pub(crate) struct TrackedFrame<'s> {
    pub frames: &'s mut Frames,
    /// The objects, each with its memory bank.
    pub banks: Vec<(ObjectId, &'s mut MemoryBank)>,
    pub fill_hole_area: u32,
    pub cold: Option<&'s ColdStore>,
}

impl TrackedFrame<'_> {
    /// Steps every object onto `frame`, reached in `direction`, and stores each result in its
    /// bank.
    pub(crate) fn run(self, frame: usize, direction: Direction) -> Result<()> {
        let TrackedFrame {
            frames,
            mut banks,
            fill_hole_area,
            cold,
        } = self;
        let Some(first_object) = banks.first().map(|(object, _)| *object) else {
            return Ok(());
        };
        let features = frames.features(frame, Residency::Streamed)?;
        let model = Arc::clone(&frames.model);
        let mut picks = Vec::with_capacity(banks.len());
        for (object, bank) in banks.iter_mut() {
            picks.push(pick_memories(
                frames, bank, cold, *object, frame, direction,
            )?);
        }
        let mut inputs = Vec::with_capacity(banks.len());
        for ((object, bank), pick) in banks.iter().zip(&picks) {
            inputs.push(bank.attention_inputs(*object, pick)?);
        }
        let objects: Vec<BankInputs<'_>> = inputs
            .iter()
            .map(|(memories, pointers)| BankInputs { memories, pointers })
            .collect();
        // Objects share a run when their banks line up (the graph takes one list of slots and
        // pointer positions); objects prompted on other frames form groups of their own.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, object) in objects.iter().enumerate() {
            let home = groups.iter_mut().find(|g| {
                g.first()
                    .and_then(|&j| objects.get(j))
                    .is_some_and(|first| first.same_layout(object))
            });
            match home {
                Some(group) => group.push(i),
                None => groups.push(vec![i]),
            }
        }
        let pos = memory_pos_enc(frames, first_object, frame)?;
        let dec = &model.manifest().decoder;
        // Decoder outputs by object, in the order of `banks`.
        let mut heads: Vec<(usize, DecoderOutput)> = Vec::with_capacity(objects.len());
        let mut graph_runs = 0;
        for group in &groups {
            let members: Vec<BankInputs<'_>> = group
                .iter()
                .filter_map(|&i| objects.get(i).copied())
                .collect();
            let conditioned = memory_attention::condition(
                &model,
                &features.vision_features,
                &features.vision_pos_enc,
                &members,
                pos,
            )?;
            graph_runs += model.object_runs(members.len()).count() as u64;
            let outputs = mask_decoder::decode_objects(
                &model,
                &conditioned,
                &features,
                &PointPrompt::padding(),
                None,
                multimask(dec, Conditioning::MemoryBank, 0),
                Candidates::Discard,
            )?;
            heads.extend(group.iter().copied().zip(outputs));
        }
        heads.sort_by_key(|(i, _)| *i);
        let n = objects.len() as u64;
        frames.stats.memory_attention_runs += n;
        frames.stats.memory_attention_graph_runs += graph_runs;
        frames.stats.mask_decoder_runs += n;
        let masks: Vec<(&[f32], f32)> = heads
            .iter()
            .map(|(_, h)| (h.low_res_logits.as_slice(), h.object_score))
            .collect();
        let memories =
            frames.encode_memories(frame, &masks, MaskOrigin::Tracked, Residency::Streamed)?;
        if heads.len() != banks.len() || memories.len() != banks.len() {
            return Err(Error::Internal {
                message: format!(
                    "frame {frame}: the decoder answered for {} and the memory encoder for {} of {} objects",
                    heads.len(),
                    memories.len(),
                    banks.len()
                ),
            });
        }
        let low_res = model.geometry().low_res;
        for (((_, bank), (_, head)), memory) in banks.iter_mut().zip(heads).zip(memories) {
            bank.insert_tracked(
                frame,
                finish(
                    head.into(),
                    Some(memory),
                    MaskOrigin::Tracked,
                    low_res,
                    fill_hole_area,
                ),
            );
        }
        Ok(())
    }
}

/// What the memory encoder read for a cold result of `object` on `frame`.
fn thaw_encoder_input(
    cold: Option<&ColdStore>,
    object: ObjectId,
    frame: usize,
) -> Result<Arc<[f32]>> {
    match cold {
        Some(store) => Ok(store.thaw_encoder_input(object, frame)?),
        None => thaw(None, object, frame),
    }
}

/// The logits of a cold result of `object` on `frame`.
pub(crate) fn thaw(cold: Option<&ColdStore>, object: ObjectId, frame: usize) -> Result<Arc<[f32]>> {
    match cold {
        Some(store) => Ok(store.thaw(object, frame)?),
        None => Err(Error::Internal {
            message: format!(
                "object {object}: the result on frame {frame} is cold but the session has no track cache"
            ),
        }),
    }
}
