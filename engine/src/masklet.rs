//! A masklet (the paper's per-object spatio-temporal mask): everything the predictor holds about
//! one object — its prompts by frame, its memory bank of per-frame outputs, which frames a
//! propagation reached and in which direction, and which results a later prompt made stale.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ndarray::Array3;

use crate::mask_decoder::PointPrompt;
pub use crate::memory_bank::MemorySource;
use crate::memory_bank::{MemoryBank, Storage};
use crate::memory_encoder::MemoryFeatures;
use crate::propagation::Direction;

/// What the predictor keeps of one object on one frame (the official "compact output").
#[derive(Debug, Clone)]
pub struct FrameResult {
    /// `[S/4 · S/4]` mask logits; empty when the result is cold ([`FrameResult::is_cold`]).
    pub low_res_logits: Arc<[f32]>,
    /// `[C]`.
    pub object_pointer: Arc<[f32]>,
    pub object_score: f32,
    /// Missing until the memory encoder ran for this frame (prompts are encoded when a
    /// propagation starts, as the official predictor does), and dropped again for tracked frames
    /// far behind a propagation — the memory bank only ever reads the last few (see
    /// [`MemorySource`]).
    pub memory: Option<MemoryFeatures>,
    /// How `memory` was (or would be) computed, so that a dropped memory can be rebuilt exactly.
    pub memory_source: MemorySource,
    /// The decoder's three candidates, for prompted frames (image mode shows them).
    pub candidates: Option<Arc<MaskCandidates>>,
}

/// The multimask outputs of the decoder on a prompted frame.
#[derive(Debug, Clone)]
pub struct MaskCandidates {
    /// `[3, S/4, S/4]` logits (−1024 where the object is absent).
    pub logits: Array3<f32>,
    /// Predicted IoU of each candidate.
    pub ious: [f32; 3],
    /// Predicted IoU of the mask the decoder chose.
    pub chosen_iou: f32,
}

impl FrameResult {
    /// Whether the logits were moved to the session's track cache (a session with one attached,
    /// [`crate::ClipSession::attach_cache`], keeps only the results near the propagation in RAM);
    /// [`crate::ClipSession::logits`] reads them back.
    pub fn is_cold(&self) -> bool {
        self.low_res_logits.is_empty()
    }

    /// Whether the model thinks the object is visible on this frame.
    pub fn is_present(&self) -> bool {
        self.object_score > 0.0
    }

    pub fn bytes(&self) -> usize {
        4 * (self.low_res_logits.len() + self.object_pointer.len())
            + self.memory.as_ref().map_or(0, MemoryFeatures::bytes)
    }
}

/// A prompt on one frame: clicks (and box corners), or a mask.
#[derive(Debug, Clone)]
pub enum Prompt {
    Points(PointPrompt),
    /// The mask resized to S×S and binarized, row-major.
    Mask(Arc<[f32]>),
}

/// One object's state in a session.
#[derive(Debug, Default, Clone)]
pub struct Masklet {
    pub(crate) prompts: HashMap<usize, Prompt>,
    pub(crate) bank: MemoryBank,
    /// The direction each tracked frame was last reached in.
    pub(crate) tracked: HashMap<usize, Direction>,
    /// Tracked frames whose results a later prompt made out of date (a propagation recomputes
    /// them); their results stay viewable until then.
    pub(crate) stale: BTreeSet<usize>,
}

impl Masklet {
    /// The object's memory bank.
    pub fn memory_bank(&self) -> &MemoryBank {
        &self.bank
    }

    /// The official consolidation lookup ([`MemoryBank::consolidated`]).
    pub fn lookup(&self, frame: usize, storage: Storage) -> Option<&FrameResult> {
        self.bank.consolidated(frame, storage)
    }

    /// The result a viewer shows for `frame`: the newest of what is stored.
    pub fn result(&self, frame: usize) -> Option<&FrameResult> {
        self.bank.latest(frame)
    }

    /// Takes back the prompt on `frame`: its output stays as a tracked result until a
    /// propagation recomputes it (the official `clear_all_prompts_in_frame`).
    pub(crate) fn clear_prompt(&mut self, frame: usize) {
        self.prompts.remove(&frame);
        if self.bank.demote(frame) {
            self.tracked.remove(&frame);
        }
    }

    /// Frames with a prompt, ascending.
    pub fn prompted_frames(&self) -> Vec<usize> {
        let mut frames: Vec<usize> = self.prompts.keys().copied().collect();
        frames.sort_unstable();
        frames
    }

    pub fn prompt(&self, frame: usize) -> Option<&Prompt> {
        self.prompts.get(&frame)
    }

    /// Whether the frame was reached by a propagation.
    pub fn is_tracked(&self, frame: usize) -> bool {
        self.tracked.contains_key(&frame)
    }

    /// Whether a prompt made this frame's result out of date (re-propagate to refresh it).
    pub fn is_stale(&self, frame: usize) -> bool {
        self.stale.contains(&frame)
    }

    /// Frames with an out-of-date result, ascending.
    pub fn stale_frames(&self) -> impl Iterator<Item = usize> + '_ {
        self.stale.iter().copied()
    }

    /// Marks what a new prompt on `frame` invalidates: the tracked frames after it in the
    /// direction it was tracked from (forward when it was not tracked). Prompts and results on
    /// other frames are kept.
    pub(crate) fn invalidate_after(&mut self, frame: usize) {
        let direction = self.tracked.get(&frame).copied().unwrap_or_default();
        let later: Vec<usize> = self
            .tracked
            .keys()
            .copied()
            .filter(|&t| direction.is_beyond(t, frame))
            .collect();
        self.stale.extend(later);
    }

    /// Memories held (the bank's size), for the bounded-memory checks.
    pub fn memories_held(&self) -> usize {
        self.bank.memories_held()
    }

    /// Bytes held by this object's results.
    pub fn bytes(&self) -> usize {
        self.bank.bytes()
    }
}
