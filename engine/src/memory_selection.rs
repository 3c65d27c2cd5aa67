//! Which memories and object pointers a frame attends to — one pure function over an object's
//! prompted ("conditioning") and recent outputs, keyed by frame; [`crate::memory_bank::MemoryBank`]
//! applies it to what it holds.
//!
//! A line-by-line port of `SAM2Base._prepare_memory_conditioned_features` up to the concatenation
//! (and of `select_closest_cond_frames`); `bundle/exporter/sam2export/memory_selection.py` is the same
//! function in Python, checked there against the official code. Map order matters to the last
//! float bit only (attention sums over memory tokens), but it is kept: conditioning frames in
//! insertion order, then recent frames from the oldest to the newest.

use indexmap::IndexMap;

use crate::memory_bank::Storage;
use crate::model::manifest::MemorySettings;
use crate::propagation::Direction;

/// A memory frame to attend to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PickedMemory {
    pub frame: usize,
    /// Index into the temporal encodings: `num_maskmem − t_pos − 1` (prompted frames: t_pos 0).
    pub temporal_slot: i64,
    /// [`Storage::Cond`]: look the output up among the selected conditioning frames;
    /// [`Storage::NonCond`]: among the recent outputs first and the unselected conditioning frames
    /// second (the official lookup, [`lookup`]).
    pub storage: Storage,
}

/// An object pointer to attend to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PickedPointer {
    pub frame: usize,
    /// Signed frame distance divided by `min(num_frames, max_obj_ptrs_in_encoder) − 1`, in f32
    /// as the official code computes it.
    pub position: f32,
    /// Where to look the pointer up, as for [`PickedMemory::storage`].
    pub storage: Storage,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryPick {
    pub memories: Vec<PickedMemory>,
    pub pointers: Vec<PickedPointer>,
}

/// `select_closest_cond_frames`: (selected, unselected) conditioning frames, in the official order.
pub fn select_closest_cond_frames<V>(
    frame: usize,
    cond: &IndexMap<usize, V>,
    max_cond_frames: i64,
) -> (Vec<usize>, Vec<usize>) {
    let all: Vec<usize> = cond.keys().copied().collect();
    // −1 (any negative): every conditioning frame.
    let Ok(max_cond_frames) = usize::try_from(max_cond_frames) else {
        return (all, Vec::new());
    };
    if all.len() <= max_cond_frames {
        return (all, Vec::new());
    }
    let mut selected = Vec::new();
    if let Some(before) = all.iter().copied().filter(|&t| t < frame).max() {
        selected.push(before);
    }
    if let Some(after) = all.iter().copied().filter(|&t| t >= frame).min() {
        selected.push(after);
    }
    let remain = max_cond_frames.saturating_sub(selected.len());
    let mut rest: Vec<usize> = all
        .iter()
        .copied()
        .filter(|t| !selected.contains(t))
        .collect();
    rest.sort_by_key(|&t| t.abs_diff(frame)); // stable, as Python's sorted
    selected.extend(rest.into_iter().take(remain));
    let unselected = all.into_iter().filter(|t| !selected.contains(t)).collect();
    (selected, unselected)
}

/// The memories and pointers of frame `frame` for one object.
pub fn select_memory<V>(
    settings: &MemorySettings,
    frame: usize,
    cond: &IndexMap<usize, V>,
    non_cond: &IndexMap<usize, V>,
    num_frames: usize,
    direction: Direction,
) -> MemoryPick {
    let reverse = direction.is_reverse();
    let num_maskmem = i64::from(settings.num_maskmem);
    let (selected, unselected) =
        select_closest_cond_frames(frame, cond, settings.max_cond_frames_in_attn);
    let recent = |t: i64| -> Option<usize> {
        let t = usize::try_from(t).ok()?;
        (non_cond.contains_key(&t) || unselected.contains(&t)).then_some(t)
    };
    let mut pick = MemoryPick::default();
    pick.memories.extend(selected.iter().map(|&t| PickedMemory {
        frame: t,
        temporal_slot: num_maskmem - 1,
        storage: Storage::Cond,
    }));

    let f = frame as i64;
    let stride = i64::from(settings.memory_temporal_stride_for_eval.max(1));
    for t_pos in 1..num_maskmem {
        let t_rel = num_maskmem - t_pos;
        let prev = if t_rel == 1 {
            if reverse { f + t_rel } else { f - t_rel }
        } else if !reverse {
            (f - 2).div_euclid(stride) * stride - (t_rel - 2) * stride
        } else {
            -((-(f + 2)).div_euclid(stride)) * stride + (t_rel - 2) * stride
        };
        if let Some(t) = recent(prev) {
            pick.memories.push(PickedMemory {
                frame: t,
                temporal_slot: num_maskmem - t_pos - 1,
                storage: Storage::NonCond,
            });
        }
    }

    if settings.use_obj_ptrs_in_encoder {
        let max_ptrs = num_frames.min(settings.max_obj_ptrs_in_encoder as usize);
        let t_diff_max = max_ptrs.saturating_sub(1) as f32;
        let sign = if reverse { -1 } else { 1 };
        let mut raw: Vec<(i64, usize, Storage)> = Vec::new();
        for &t in &selected {
            let in_past = !settings.only_obj_ptrs_in_the_past_for_eval
                || if reverse { t >= frame } else { t <= frame };
            if in_past {
                let d = if settings.use_signed_tpos_enc_to_obj_ptrs {
                    (f - t as i64) * sign
                } else {
                    (f - t as i64).abs()
                };
                raw.push((d, t, Storage::Cond));
            }
        }
        for t_diff in 1..max_ptrs as i64 {
            let t = if reverse { f + t_diff } else { f - t_diff };
            if t < 0 || t >= num_frames as i64 {
                break;
            }
            if let Some(t) = recent(t) {
                raw.push((t_diff, t, Storage::NonCond));
            }
        }
        // The official code divides an int64 tensor by a Python int: float32 true division.
        pick.pointers = raw
            .into_iter()
            .map(|(d, t, storage)| PickedPointer {
                frame: t,
                position: d as f32 / t_diff_max,
                storage,
            })
            .collect();
    }
    pick
}

/// Resolves a picked entry to its stored value with the official lookup order.
pub fn lookup<'a, V>(
    frame: usize,
    storage: Storage,
    cond: &'a IndexMap<usize, V>,
    non_cond: &'a IndexMap<usize, V>,
) -> Option<&'a V> {
    match storage {
        Storage::Cond => cond.get(&frame),
        Storage::NonCond => non_cond.get(&frame).or_else(|| cond.get(&frame)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// SAM 2.1's memory settings, shared with the memory bank's tests.
    pub(crate) fn settings() -> MemorySettings {
        MemorySettings {
            num_maskmem: 7,
            max_cond_frames_in_attn: -1,
            memory_temporal_stride_for_eval: 1,
            use_obj_ptrs_in_encoder: true,
            max_obj_ptrs_in_encoder: 16,
            only_obj_ptrs_in_the_past_for_eval: true,
            add_tpos_enc_to_obj_ptrs: true,
            proj_tpos_enc_in_obj_ptrs: true,
            use_signed_tpos_enc_to_obj_ptrs: true,
            directly_add_no_mem_embed: true,
            sigmoid_scale_for_mem_enc: 20.0,
            sigmoid_bias_for_mem_enc: -10.0,
            binarize_mask_from_pts_for_mem_enc: true,
            non_overlap_masks_for_mem_enc: false,
            memory_storage_dtype: crate::model::manifest::StorageDtype::Bfloat16,
            no_obj_embed_spatial: true,
            maskmem_tpos_enc: "memory_attention.onnx".into(),
            obj_ptr_tpos_proj: "memory_attention.onnx".into(),
        }
    }

    fn map(frames: &[usize]) -> IndexMap<usize, ()> {
        frames.iter().map(|&t| (t, ())).collect()
    }

    #[test]
    fn full_bank_takes_the_prompt_and_six_recent_frames_oldest_first() {
        let pick = select_memory(
            &settings(),
            20,
            &map(&[0]),
            &map(&(1..20).collect::<Vec<_>>()),
            30,
            Direction::Forward,
        );
        let frames: Vec<(usize, i64, bool)> = pick
            .memories
            .iter()
            .map(|m| (m.frame, m.temporal_slot, m.storage == Storage::Cond))
            .collect();
        assert_eq!(
            frames,
            // Frame t−k takes slot k−1: the newest recent frame has slot 0.
            vec![
                (0, 6, true),
                (14, 5, false),
                (15, 4, false),
                (16, 3, false),
                (17, 2, false),
                (18, 1, false),
                (19, 0, false)
            ]
        );
        // 1 prompted + 15 recent pointers, distances normalised by min(30, 16) − 1 = 15.
        assert_eq!(pick.pointers.len(), 16);
        assert_eq!(pick.pointers[0].frame, 0);
        assert_eq!(pick.pointers[0].position, 20.0 / 15.0);
        assert_eq!(pick.pointers[1].frame, 19);
        assert_eq!(pick.pointers[1].position, 1.0 / 15.0);
        assert_eq!(pick.pointers[15].frame, 5);
    }

    #[test]
    fn a_future_prompt_is_a_memory_but_not_a_pointer() {
        let pick = select_memory(
            &settings(),
            0,
            &map(&[5]),
            &map(&[]),
            10,
            Direction::Forward,
        );
        assert_eq!(pick.memories.len(), 1);
        assert!(pick.pointers.is_empty());
    }

    #[test]
    fn reverse_tracking_looks_at_later_frames_with_distances_signed_by_direction() {
        let pick = select_memory(
            &settings(),
            14,
            &map(&[20]),
            &map(&[15, 16, 17, 18, 19, 21]),
            30,
            Direction::Reverse,
        );
        let frames: Vec<usize> = pick.memories.iter().map(|m| m.frame).collect();
        assert_eq!(frames, vec![20, 19, 18, 17, 16, 15]);
        // (frame − t) · −1: a prompt 6 frames "behind" in the reverse direction is +6.
        assert_eq!(pick.pointers[0].position, 6.0 / 15.0);
        assert_eq!(pick.pointers[1].frame, 15);
        assert_eq!(pick.pointers[1].position, 1.0 / 15.0);
    }

    #[test]
    fn short_clips_normalise_pointer_distances_by_their_length() {
        let pick = select_memory(&settings(), 1, &map(&[0]), &map(&[]), 2, Direction::Forward);
        assert_eq!(pick.pointers.len(), 1);
        assert_eq!(pick.pointers[0].position, 1.0);
    }

    #[test]
    fn a_cond_frame_limit_keeps_the_closest_before_and_after_then_the_nearest() {
        let cond = map(&[0, 10, 20, 30]);
        let (selected, unselected) = select_closest_cond_frames(12, &cond, 3);
        assert_eq!(selected, vec![10, 20, 0]);
        assert_eq!(unselected, vec![30]);
        // An unselected prompted frame among the recent slots is attended as a recent frame.
        let mut s = settings();
        s.max_cond_frames_in_attn = 2;
        let pick = select_memory(
            &s,
            30,
            &map(&[27, 28, 40]),
            &map(&[]),
            50,
            Direction::Forward,
        );
        let got: Vec<(usize, i64, bool)> = pick
            .memories
            .iter()
            .map(|m| (m.frame, m.temporal_slot, m.storage == Storage::Cond))
            .collect();
        assert_eq!(got, vec![(28, 6, true), (40, 6, true), (27, 2, false)]);
    }
}
