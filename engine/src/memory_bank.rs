//! The memory bank of one object (the paper's "memory bank"): its outputs by frame, split as the
//! official predictor splits them — conditioning outputs of prompted frames, non-conditioning
//! outputs of tracked frames, and temporary outputs of prompts not yet merged by a propagation —
//! with what reads and changes them: selection of what a frame attends to, the official lookups,
//! the merge at a propagation's start, and the retention policy (which memories may be dropped
//! and how a dropped one is rebuilt).
//!
//! Maps keep insertion order with the semantics of Python dicts (re-inserting a key keeps its
//! place; removal shifts), because the bank concatenates memories in that order.

use std::sync::Arc;

use indexmap::IndexMap;

use crate::error::{Error, Result};
use crate::masklet::FrameResult;
use crate::memory_attention::{MemoryEntry, PointerEntry};
use crate::memory_encoder::MemoryFeatures;
use crate::memory_selection::{self, MemoryPick};
use crate::model::manifest::MemorySettings;
use crate::object::ObjectId;
use crate::propagation::Direction;

/// Which of the two output maps a result belongs to (the official `cond_frame_outputs` and
/// `non_cond_frame_outputs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Storage {
    /// A prompted frame's output: every later frame may attend to it.
    Cond,
    /// A tracked frame's output: only the next few frames attend to it.
    NonCond,
}

/// Where the mask the memory encoder read came from; the encoder treats the two differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskOrigin {
    /// Clicks (or any prompt, once a propagation merges it): the mask is binarized
    /// (`is_mask_from_pts`).
    Points,
    /// Tracking: the mask goes through the scaled sigmoid.
    Tracked,
}

/// Whether a memory may be dropped, and what rebuilding it needs beyond the stored logits.
#[derive(Debug, Clone, PartialEq)]
pub enum Retention {
    /// The memory may be dropped and rebuilt bit for bit: the encoder's input was the stored
    /// logits with these pixels put back — those hole filling changed after the memory encoder
    /// ran, with their values before (empty for most masks).
    Rebuildable { unfilled: Arc<[(u32, f32)]> },
    /// The memory may be dropped and rebuilt bit for bit from a cold result: its logits and the
    /// pixels to put back are both in the session's spill (`track_cache::ColdStore`), so that a
    /// cold frame keeps nothing of that size in RAM.
    Spilled,
    /// The memory is kept for good: rebuilding it would need more bytes than it takes itself.
    Pinned,
}

/// The memory encoder's input for a frame, as far as it differs from frame to frame, so that a
/// dropped memory can be rebuilt bit for bit.
#[derive(Debug, Clone, PartialEq)]
pub struct MemorySource {
    pub origin: MaskOrigin,
    pub retention: Retention,
}

impl Default for MemorySource {
    /// A tracked mask whose memory reads the stored logits as they are.
    fn default() -> MemorySource {
        MemorySource::from_stored(MaskOrigin::Tracked)
    }
}

impl MemorySource {
    /// A memory encoded from the stored logits as they are.
    pub fn from_stored(origin: MaskOrigin) -> MemorySource {
        MemorySource {
            origin,
            retention: Retention::Rebuildable {
                unfilled: Arc::from(Vec::new()),
            },
        }
    }

    /// The logits the memory encoder read, from the stored ones.
    pub fn encoder_input(&self, stored: &[f32]) -> Vec<f32> {
        let mut logits = stored.to_vec();
        if let Retention::Rebuildable { unfilled } = &self.retention {
            for &(index, value) in unfilled.iter() {
                if let Some(v) = logits.get_mut(index as usize) {
                    *v = value;
                }
            }
        }
        logits
    }
}

/// Runs the memory encoder on one frame: `(frame, logits, object score, mask origin)`.
pub(crate) type EncodeMemory<'e> =
    dyn FnMut(usize, &[f32], f32, MaskOrigin) -> Result<MemoryFeatures> + 'e;

/// Reads back what the memory encoder read for a cold result (frame → logits with the pixels of
/// a [`Retention::Spilled`] result put back).
pub(crate) type Thaw<'t> = dyn FnMut(usize) -> Result<Arc<[f32]>> + 't;

/// Moves a result's logits out of RAM (frame, result), and the pixels its memory's rebuild puts
/// back; [`Thaw`] must give back the encoder's input after.
pub(crate) type Freeze<'f> = dyn FnMut(usize, &FrameResult) -> Result<()> + 'f;

/// One object's outputs by frame; see the module documentation.
#[derive(Debug, Default, Clone)]
pub struct MemoryBank {
    cond: IndexMap<usize, FrameResult>,
    non_cond: IndexMap<usize, FrameResult>,
    temp_cond: IndexMap<usize, FrameResult>,
    temp_non_cond: IndexMap<usize, FrameResult>,
}

impl MemoryBank {
    /// The memories and pointers `frame` attends to ([`memory_selection::select_memory`] over the
    /// merged outputs).
    pub fn select(
        &self,
        frame: usize,
        settings: &MemorySettings,
        num_frames: usize,
        direction: Direction,
    ) -> MemoryPick {
        memory_selection::select_memory(
            settings,
            frame,
            &self.cond,
            &self.non_cond,
            num_frames,
            direction,
        )
    }

    /// A picked entry's output, with the official lookup order ([`memory_selection::lookup`]).
    pub fn lookup(&self, frame: usize, storage: Storage) -> Option<&FrameResult> {
        memory_selection::lookup(frame, storage, &self.cond, &self.non_cond)
    }

    /// The official consolidation lookup: the temporary output of that storage, then the
    /// conditioning output, then the non-conditioning one.
    pub fn consolidated(&self, frame: usize, storage: Storage) -> Option<&FrameResult> {
        let temp = match storage {
            Storage::Cond => &self.temp_cond,
            Storage::NonCond => &self.temp_non_cond,
        };
        temp.get(&frame)
            .or_else(|| self.cond.get(&frame))
            .or_else(|| self.non_cond.get(&frame))
    }

    /// The newest output stored for `frame`: what a viewer shows.
    pub fn latest(&self, frame: usize) -> Option<&FrameResult> {
        self.temp_cond
            .get(&frame)
            .or_else(|| self.temp_non_cond.get(&frame))
            .or_else(|| self.cond.get(&frame))
            .or_else(|| self.non_cond.get(&frame))
    }

    /// The merged conditioning output of `frame`, which a propagation passes through unchanged.
    pub fn conditioning(&self, frame: usize) -> Option<&FrameResult> {
        self.cond.get(&frame)
    }

    /// Frames with a merged conditioning output, in insertion order.
    pub fn conditioning_frames(&self) -> impl Iterator<Item = usize> + '_ {
        self.cond.keys().copied()
    }

    /// Whether a prompt on `frame` is waiting to be merged as a conditioning output.
    pub fn has_temporary_cond(&self, frame: usize) -> bool {
        self.temp_cond.contains_key(&frame)
    }

    /// Stores a prompt's output until the next propagation merges it.
    pub(crate) fn insert_temporary(&mut self, frame: usize, storage: Storage, result: FrameResult) {
        match storage {
            Storage::Cond => self.temp_cond.insert(frame, result),
            Storage::NonCond => self.temp_non_cond.insert(frame, result),
        };
    }

    /// Stores a propagation's output for a tracked frame.
    pub(crate) fn insert_tracked(&mut self, frame: usize, result: FrameResult) {
        self.non_cond.insert(frame, result);
    }

    /// `propagate_in_video_preflight` for one object: merges the temporary outputs into the bank,
    /// encoding the memories they lack, and drops tracked outputs of frames that are now
    /// conditioning frames.
    pub(crate) fn merge_temporary(&mut self, encode: &mut EncodeMemory<'_>) -> Result<()> {
        for storage in [Storage::NonCond, Storage::Cond] {
            let temp = match storage {
                Storage::Cond => std::mem::take(&mut self.temp_cond),
                Storage::NonCond => std::mem::take(&mut self.temp_non_cond),
            };
            for (frame, mut result) in temp {
                if result.memory.is_none() {
                    // Prompted frames are encoded as clicked, whatever the prompt (official).
                    result.memory_source = MemorySource::from_stored(MaskOrigin::Points);
                    result.memory = Some(encode(
                        frame,
                        &result.low_res_logits,
                        result.object_score,
                        MaskOrigin::Points,
                    )?);
                }
                match storage {
                    Storage::Cond => self.cond.insert(frame, result),
                    Storage::NonCond => self.non_cond.insert(frame, result),
                };
            }
        }
        let cond: Vec<usize> = self.cond.keys().copied().collect();
        for frame in cond {
            self.non_cond.shift_remove(&frame);
        }
        Ok(())
    }

    /// Takes back the prompt of `frame` (the official `clear_all_prompts_in_frame`): its
    /// temporary outputs go, and a merged conditioning output stays as a tracked one. Returns
    /// whether there was a merged conditioning output.
    pub(crate) fn demote(&mut self, frame: usize) -> bool {
        self.temp_cond.shift_remove(&frame);
        self.temp_non_cond.shift_remove(&frame);
        match self.cond.shift_remove(&frame) {
            Some(result) => {
                self.non_cond.insert(frame, result);
                true
            }
            None => false,
        }
    }

    /// The picked entries whose memory was dropped ([`MemoryBank::forget_far`]).
    pub(crate) fn dropped(&self, pick: &MemoryPick) -> Vec<(usize, Storage)> {
        pick.memories
            .iter()
            .filter(|p| {
                self.lookup(p.frame, p.storage)
                    .is_some_and(|r| r.memory.is_none())
            })
            .map(|p| (p.frame, p.storage))
            .collect()
    }

    /// Re-encodes a memory that [`MemoryBank::forget_far`] dropped: same frame features, same
    /// stored logits, same mask origin — the same memory. `object` names the bank in errors.
    pub(crate) fn restore(
        &mut self,
        object: ObjectId,
        frame: usize,
        storage: Storage,
        encode: &mut EncodeMemory<'_>,
        thaw: &mut Thaw<'_>,
    ) -> Result<()> {
        // The official lookup, for writing.
        let result = if storage == Storage::Cond || !self.non_cond.contains_key(&frame) {
            self.cond.get_mut(&frame)
        } else {
            self.non_cond.get_mut(&frame)
        }
        .ok_or_else(|| Error::Internal {
            message: format!(
                "object {object}: no result on frame {frame} to rebuild a memory from"
            ),
        })?;
        let input = if result.is_cold() {
            result.memory_source.encoder_input(&thaw(frame)?)
        } else {
            result.memory_source.encoder_input(&result.low_res_logits)
        };
        result.memory = Some(encode(
            frame,
            &input,
            result.object_score,
            result.memory_source.origin,
        )?);
        Ok(())
    }

    /// The inputs of memory attention for `pick`: every picked memory and pointer, which must be
    /// present (restore dropped memories first). `object` names the bank in errors.
    pub(crate) fn attention_inputs(
        &self,
        object: ObjectId,
        pick: &MemoryPick,
    ) -> Result<(Vec<MemoryEntry<'_>>, Vec<PointerEntry<'_>>)> {
        let missing = |t: usize| Error::Internal {
            message: format!("object {object}: the memory of frame {t} is missing"),
        };
        let mut memories = Vec::with_capacity(pick.memories.len());
        for p in &pick.memories {
            let result = self
                .lookup(p.frame, p.storage)
                .ok_or_else(|| missing(p.frame))?;
            let features = result.memory.as_ref().ok_or_else(|| missing(p.frame))?;
            memories.push(MemoryEntry {
                features,
                temporal_slot: p.temporal_slot,
            });
        }
        let mut pointers = Vec::with_capacity(pick.pointers.len());
        for p in &pick.pointers {
            let result = self
                .lookup(p.frame, p.storage)
                .ok_or_else(|| missing(p.frame))?;
            pointers.push(PointerEntry {
                pointer: &result.object_pointer,
                position: p.position,
            });
        }
        Ok((memories, pointers))
    }

    /// How far from the current frame the bank reads tracked memories: the last
    /// `num_maskmem − 1` recent frames, times the stride.
    pub fn reach(settings: &MemorySettings) -> usize {
        (settings.num_maskmem as usize) * (settings.memory_temporal_stride_for_eval.max(1) as usize)
    }

    /// The retention policy: drops the memories of tracked (non-conditioning) frames beyond the
    /// bank's reach ([`MemoryBank::reach`]) from `frame`, where a propagation now stands — they
    /// would sit unused, and memory use would grow with the clip. A later propagation that needs
    /// one rebuilds it exactly ([`MemoryBank::restore`]). Whichever is smaller stays: the memory
    /// itself, or what rebuilding it needs beyond the stored logits.
    pub(crate) fn forget_far(&mut self, frame: usize, settings: &MemorySettings) {
        let reach = MemoryBank::reach(settings);
        for (&t, result) in self.non_cond.iter_mut() {
            let Some(memory) = &result.memory else {
                continue;
            };
            let rebuild_bytes = match &result.memory_source.retention {
                Retention::Rebuildable { unfilled } => unfilled.len() * size_of::<(u32, f32)>(),
                Retention::Spilled => 0,
                Retention::Pinned => continue,
            };
            if t.abs_diff(frame) <= reach {
                continue;
            }
            if rebuild_bytes < memory.bytes() {
                result.memory = None;
            } else {
                result.memory_source.retention = Retention::Pinned;
            }
        }
    }

    /// The cold tier: moves the logits of tracked frames beyond the bank's reach from `frame`
    /// whose memory was dropped ([`MemoryBank::forget_far`]) out of RAM through `freeze`, so that
    /// a session's memory stays flat in the clip's length. Conditioning outputs stay.
    pub(crate) fn freeze_far(
        &mut self,
        frame: usize,
        settings: &MemorySettings,
        freeze: &mut Freeze<'_>,
    ) -> Result<()> {
        let reach = MemoryBank::reach(settings);
        for (&t, result) in self.non_cond.iter_mut() {
            if result.memory.is_some() || result.is_cold() || t.abs_diff(frame) <= reach {
                continue;
            }
            freeze(t, result)?;
            result.low_res_logits = Arc::from(Vec::new());
            result.candidates = None;
            // `freeze` spilled the pixels to put back with the logits.
            if matches!(&result.memory_source.retention, Retention::Rebuildable { unfilled } if !unfilled.is_empty())
            {
                result.memory_source.retention = Retention::Spilled;
            }
        }
        Ok(())
    }

    fn all(&self) -> impl Iterator<Item = &FrameResult> {
        [
            &self.cond,
            &self.non_cond,
            &self.temp_cond,
            &self.temp_non_cond,
        ]
        .into_iter()
        .flat_map(|m| m.values())
    }

    /// Memories held, for the bounded-memory checks.
    pub fn memories_held(&self) -> usize {
        self.all().filter(|r| r.memory.is_some()).count()
    }

    /// Bytes held by the outputs.
    pub fn bytes(&self) -> usize {
        self.all().map(FrameResult::bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::memory_selection::tests::settings;

    /// An output whose logits and score say which frame it is; a memory of `memory` values.
    fn output(frame: usize, memory: Option<usize>, unfilled: usize) -> FrameResult {
        FrameResult {
            low_res_logits: Arc::from(vec![frame as f32; 4]),
            object_pointer: Arc::from(vec![0.0f32; 2]),
            object_score: frame as f32,
            memory: memory.map(|n| MemoryFeatures::Float32(Arc::from(vec![0.0f32; n]))),
            memory_source: MemorySource {
                origin: MaskOrigin::Tracked,
                retention: Retention::Rebuildable {
                    unfilled: (0..unfilled as u32).map(|i| (i, -1.0)).collect(),
                },
            },
            candidates: None,
        }
    }

    #[test]
    fn merging_encodes_prompts_as_clicked_and_a_prompted_frame_leaves_the_tracked_outputs() {
        let mut bank = MemoryBank::default();
        bank.insert_tracked(3, output(3, Some(8), 0));
        bank.insert_tracked(4, output(4, Some(8), 0));
        bank.insert_temporary(4, Storage::Cond, output(4, None, 0));
        bank.insert_temporary(6, Storage::NonCond, output(6, None, 0));
        let mut encoded = Vec::new();
        bank.merge_temporary(&mut |frame, logits, score, origin| {
            encoded.push((frame, logits.to_vec(), score, origin));
            Ok(MemoryFeatures::Float32(Arc::from(vec![1.0f32; 8])))
        })
        .unwrap();
        // Non-conditioning temporaries first, then conditioning ones (the official order).
        assert_eq!(
            encoded,
            vec![
                (6, vec![6.0; 4], 6.0, MaskOrigin::Points),
                (4, vec![4.0; 4], 4.0, MaskOrigin::Points)
            ]
        );
        assert_eq!(bank.conditioning_frames().collect::<Vec<_>>(), vec![4]);
        // Frame 4 is only a conditioning output now; 3 and 6 are tracked ones.
        assert!(
            bank.lookup(4, Storage::NonCond)
                .is_some_and(|r| r.memory.is_some())
        );
        assert_eq!(bank.memories_held(), 3);
        assert!(!bank.has_temporary_cond(4));
        assert!(bank.demote(4));
        assert!(bank.conditioning(4).is_none());
        assert!(bank.lookup(4, Storage::NonCond).is_some());
        assert!(!bank.demote(4));
    }

    #[test]
    fn far_tracked_memories_are_dropped_unless_rebuilding_them_costs_more_and_come_back_exactly() {
        let s = settings();
        let reach = MemoryBank::reach(&s);
        assert_eq!(reach, 7);
        let mut bank = MemoryBank::default();
        // 8 f32 values: 32 bytes of memory; an unfilled pixel costs 8 bytes to keep.
        bank.insert_tracked(0, output(0, Some(8), 0));
        bank.insert_tracked(1, output(1, Some(8), 5));
        bank.insert_tracked(2, output(2, Some(8), 1));
        bank.insert_tracked(20, output(20, Some(8), 0));
        bank.forget_far(20, &s);
        let kept =
            |bank: &MemoryBank, t| bank.lookup(t, Storage::NonCond).unwrap().memory.is_some();
        assert!(!kept(&bank, 0), "beyond reach: dropped");
        assert!(
            kept(&bank, 1),
            "40 bytes to rebuild > 32 bytes of memory: kept"
        );
        assert_eq!(
            bank.lookup(1, Storage::NonCond)
                .unwrap()
                .memory_source
                .retention,
            Retention::Pinned
        );
        assert!(!kept(&bank, 2), "8 bytes to rebuild < 32: dropped");
        assert!(kept(&bank, 20), "within reach");

        let pick = bank.select(21, &s, 30, Direction::Forward);
        assert!(pick.memories.iter().all(|p| p.frame == 20));
        let mut rebuilt = Vec::new();
        let mut encode = |frame: usize, logits: &[f32], _: f32, origin| {
            rebuilt.push((frame, logits.to_vec(), origin));
            Ok(MemoryFeatures::Float32(Arc::from(vec![0.0f32; 8])))
        };
        let mut thaw = |_: usize| -> Result<Arc<[f32]>> { unreachable!("nothing is cold") };
        bank.restore(ObjectId(1), 2, Storage::NonCond, &mut encode, &mut thaw)
            .unwrap();
        assert!(matches!(
            bank.restore(ObjectId(1), 9, Storage::NonCond, &mut encode, &mut thaw),
            Err(Error::Internal { .. })
        ));
        // The encoder reads the stored logits with the unfilled pixel put back.
        assert_eq!(
            rebuilt,
            vec![(2, vec![-1.0, 2.0, 2.0, 2.0], MaskOrigin::Tracked)]
        );
        assert!(kept(&bank, 2));
    }
}
