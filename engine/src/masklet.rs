//! A masklet: everything the predictor holds about one object — its prompts by frame, and its
//! per-frame results split as the official predictor splits them (conditioning outputs of prompted
//! frames, non-conditioning outputs of tracked frames, and temporary outputs of prompts not yet
//! merged by a propagation).
//!
//! Maps keep insertion order with the semantics of Python dicts (re-inserting a key keeps its
//! place; removal shifts), because the memory bank concatenates in that order.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use indexmap::IndexMap;
use ndarray::Array3;

use crate::mask_decoder::PointPrompt;
use crate::memory_encoder::MemoryFeatures;

/// What the predictor keeps of one object on one frame (the official "compact output").
#[derive(Debug, Clone)]
pub struct FrameResult {
    /// `[S/4 · S/4]` mask logits.
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

/// The memory encoder's input for a frame, as far as it differs from frame to frame, so that a
/// dropped memory can be rebuilt bit for bit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemorySource {
    /// The mask came from clicks (binarized) rather than tracking (scaled sigmoid).
    pub from_points: bool,
    /// Pixels that hole filling changed after the memory encoder ran, with their values before:
    /// the encoder's input is the stored logits with these put back. Empty when nothing changed
    /// (a handful of pixels otherwise).
    pub unfilled: Arc<[(u32, f32)]>,
    /// The memory is kept for good: rebuilding it would need more bytes (`unfilled`) than it
    /// takes itself, so `unfilled` was let go instead.
    pub pinned: bool,
}

impl MemorySource {
    /// The logits the memory encoder read, from the stored ones.
    pub fn encoder_input(&self, stored: &[f32]) -> Vec<f32> {
        let mut logits = stored.to_vec();
        for &(index, value) in self.unfilled.iter() {
            if let Some(v) = logits.get_mut(index as usize) {
                *v = value;
            }
        }
        logits
    }
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

/// Direction a frame was last tracked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
}

impl Direction {
    pub fn is_reverse(self) -> bool {
        self == Direction::Reverse
    }
}

/// Which of the two output maps a result belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Cond,
    NonCond,
}

#[derive(Debug, Default, Clone)]
pub struct Masklet {
    pub(crate) prompts: HashMap<usize, Prompt>,
    pub(crate) cond: IndexMap<usize, FrameResult>,
    pub(crate) non_cond: IndexMap<usize, FrameResult>,
    pub(crate) temp_cond: IndexMap<usize, FrameResult>,
    pub(crate) temp_non_cond: IndexMap<usize, FrameResult>,
    pub(crate) tracked: HashMap<usize, Direction>,
    /// Tracked frames whose results a later prompt made out of date (a propagation recomputes
    /// them); their results stay viewable until then.
    pub(crate) stale: BTreeSet<usize>,
}

impl Masklet {
    pub(crate) fn temp(&mut self, storage: Storage) -> &mut IndexMap<usize, FrameResult> {
        match storage {
            Storage::Cond => &mut self.temp_cond,
            Storage::NonCond => &mut self.temp_non_cond,
        }
    }

    /// The official consolidation lookup: the temporary output of that storage, then the
    /// conditioning output, then the non-conditioning one.
    pub fn lookup(&self, frame: usize, storage: Storage) -> Option<&FrameResult> {
        let temp = match storage {
            Storage::Cond => &self.temp_cond,
            Storage::NonCond => &self.temp_non_cond,
        };
        temp.get(&frame)
            .or_else(|| self.cond.get(&frame))
            .or_else(|| self.non_cond.get(&frame))
    }

    /// The result a viewer shows for `frame`: the newest of what is stored.
    pub fn result(&self, frame: usize) -> Option<&FrameResult> {
        self.temp_cond
            .get(&frame)
            .or_else(|| self.temp_non_cond.get(&frame))
            .or_else(|| self.cond.get(&frame))
            .or_else(|| self.non_cond.get(&frame))
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
        let reverse = self.tracked.get(&frame).is_some_and(|d| d.is_reverse());
        let later: Vec<usize> = self
            .tracked
            .keys()
            .copied()
            .filter(|&t| if reverse { t < frame } else { t > frame })
            .collect();
        self.stale.extend(later);
    }

    /// Memories held (the bank's size), for the bounded-memory checks.
    pub fn memories_held(&self) -> usize {
        [
            &self.cond,
            &self.non_cond,
            &self.temp_cond,
            &self.temp_non_cond,
        ]
        .iter()
        .flat_map(|m| m.values())
        .filter(|r| r.memory.is_some())
        .count()
    }

    /// Bytes held by this object's results.
    pub fn bytes(&self) -> usize {
        [
            &self.cond,
            &self.non_cond,
            &self.temp_cond,
            &self.temp_non_cond,
        ]
        .iter()
        .flat_map(|m| m.values())
        .map(FrameResult::bytes)
        .sum()
    }
}
