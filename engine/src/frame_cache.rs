//! Image-encoder features by frame, least recently used first out, under a byte budget.
//!
//! Encoding is the most expensive step (seconds per frame at 1024 on a CPU), and artists click
//! back and forth over the same frames; a correction click on an encoded frame then costs only the
//! decoder.
//!
//! Two kinds of residents: frames an artist works on (prompted or prepared: kept by recency under
//! the byte budget) and frames a propagation streams through (each needed once; only the last few
//! are kept, whatever the budget, so that memory stays flat however long the clip). A streamed
//! frame that an artist then clicks on becomes an interactive one.

use std::sync::Arc;

use indexmap::IndexMap;

use crate::image_encoder::FrameFeatures;

/// Default budget: 1 GiB, about 50 frames of the 1024 models (20 MiB each), the whole of a
/// typical shot at 256.
pub const DEFAULT_FRAME_CACHE_BYTES: usize = 1 << 30;

/// Streamed frames kept besides the interactive ones: enough to rebuild a memory bank
/// (num_maskmem − 1 = 6 recent frames) around where a propagation stopped.
pub const DEFAULT_STREAMED_FRAMES: usize = 8;

/// Why a frame is in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residency {
    /// Prompted or prepared by the artist: kept by recency under the byte budget.
    Interactive,
    /// Encoded by a propagation: only the last few are kept.
    Streamed,
}

#[derive(Debug)]
pub struct FrameCache {
    budget: usize,
    bytes: usize,
    streamed_capacity: usize,
    /// Oldest use first.
    entries: IndexMap<usize, (Arc<FrameFeatures>, Residency)>,
}

impl FrameCache {
    pub fn new(budget_bytes: usize) -> FrameCache {
        FrameCache {
            budget: budget_bytes,
            bytes: 0,
            streamed_capacity: DEFAULT_STREAMED_FRAMES,
            entries: IndexMap::new(),
        }
    }

    /// The features of `frame`, marking them most recently used; an interactive use of a
    /// streamed frame makes it interactive.
    pub fn get(&mut self, frame: usize, residency: Residency) -> Option<Arc<FrameFeatures>> {
        let index = self.entries.get_index_of(&frame)?;
        let last = self.entries.len() - 1;
        self.entries.move_index(index, last);
        let entry = self.entries.get_mut(&frame)?;
        if residency == Residency::Interactive {
            entry.1 = Residency::Interactive;
        }
        Some(Arc::clone(&entry.0))
    }

    /// Whether `frame` is cached, without touching its recency.
    pub fn contains(&self, frame: usize) -> bool {
        self.entries.contains_key(&frame)
    }

    /// Inserts, then evicts: streamed frames beyond the streamed capacity (oldest first), then
    /// the least recently used frames until the budget holds. The newest entry always stays,
    /// even over budget: the caller is about to use it.
    pub fn insert(&mut self, frame: usize, features: Arc<FrameFeatures>, residency: Residency) {
        self.bytes += features.bytes();
        if let Some((old, _)) = self.entries.insert(frame, (features, residency)) {
            self.bytes -= old.bytes();
        }
        let last = self.entries.len() - 1;
        if let Some(index) = self.entries.get_index_of(&frame) {
            self.entries.move_index(index, last);
        }
        let streamed = self
            .entries
            .values()
            .filter(|(_, r)| *r == Residency::Streamed)
            .count();
        let mut excess = streamed.saturating_sub(self.streamed_capacity);
        let mut index = 0;
        while excess > 0 && index + 1 < self.entries.len() {
            if self
                .entries
                .get_index(index)
                .is_some_and(|(_, (_, r))| *r == Residency::Streamed)
            {
                if let Some((_, (evicted, _))) = self.entries.shift_remove_index(index) {
                    self.bytes -= evicted.bytes();
                }
                excess -= 1;
            } else {
                index += 1;
            }
        }
        self.evict_to_budget();
    }

    fn evict_to_budget(&mut self) {
        while self.bytes > self.budget && self.entries.len() > 1 {
            if let Some((_, (evicted, _))) = self.entries.shift_remove_index(0) {
                self.bytes -= evicted.bytes();
            }
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    pub fn set_budget(&mut self, budget_bytes: usize) {
        self.budget = budget_bytes;
        self.evict_to_budget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    fn features(values: usize) -> Arc<FrameFeatures> {
        Arc::new(FrameFeatures {
            vision_features: Array4::zeros((1, 1, 1, values)),
            vision_pos_enc: Arc::new(Array4::zeros((1, 1, 1, 1))),
            high_res_0: Array4::zeros((1, 1, 1, 0)),
            high_res_1: Array4::zeros((1, 1, 1, 0)),
        })
    }

    #[test]
    fn evicts_least_recently_used_first_under_the_budget() {
        let mut cache = FrameCache::new(3 * 400);
        for frame in 0..3 {
            cache.insert(frame, features(100), Residency::Interactive);
        }
        assert_eq!(cache.bytes(), 1200);
        assert!(cache.get(0, Residency::Interactive).is_some()); // 0 becomes the most recent
        cache.insert(3, features(100), Residency::Interactive);
        assert!(!cache.contains(1), "frame 1 was the least recently used");
        assert!(cache.contains(0) && cache.contains(2) && cache.contains(3));
        assert_eq!(cache.bytes(), 1200);
    }

    #[test]
    fn keeps_the_newest_entry_even_over_budget_and_accounts_replacements() {
        let mut cache = FrameCache::new(100);
        cache.insert(7, features(1000), Residency::Interactive);
        assert_eq!(cache.len(), 1);
        cache.insert(7, features(10), Residency::Interactive);
        assert_eq!(cache.bytes(), 40);
        cache.insert(8, features(10), Residency::Interactive);
        cache.set_budget(40);
        assert_eq!(cache.len(), 1);
        assert!(cache.contains(8));
    }

    #[test]
    fn a_propagation_keeps_only_the_last_streamed_frames_and_spares_interactive_ones() {
        let mut cache = FrameCache::new(1 << 30);
        cache.insert(100, features(10), Residency::Interactive);
        for frame in 0..50 {
            cache.insert(frame, features(10), Residency::Streamed);
        }
        assert_eq!(cache.len(), DEFAULT_STREAMED_FRAMES + 1);
        assert!(cache.contains(100));
        assert!(cache.contains(49) && cache.contains(42) && !cache.contains(41));
        // Clicking on a streamed frame keeps it beyond the streamed window.
        assert!(cache.get(45, Residency::Interactive).is_some());
        for frame in 50..60 {
            cache.insert(frame, features(10), Residency::Streamed);
        }
        assert!(cache.contains(45) && cache.contains(100));
        assert_eq!(cache.len(), DEFAULT_STREAMED_FRAMES + 2);
    }
}
