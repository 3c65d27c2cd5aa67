//! A masklet: everything the predictor holds about one object — its prompts by frame, and its
//! per-frame results split as the official predictor splits them (conditioning outputs of prompted
//! frames, non-conditioning outputs of tracked frames, and temporary outputs of prompts not yet
//! merged by a propagation).
//!
//! Maps keep insertion order with the semantics of Python dicts (re-inserting a key keeps its
//! place; removal shifts), because the memory bank concatenates in that order.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;

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
    /// propagation starts, as the official predictor does).
    pub memory: Option<MemoryFeatures>,
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
