//! Image-encoder features by frame, least recently used first out, under a byte budget.
//!
//! Encoding is the most expensive step (seconds per frame at 1024 on a CPU), and artists click
//! back and forth over the same frames; a correction click on an encoded frame then costs only the
//! decoder.

use std::sync::Arc;

use indexmap::IndexMap;

use crate::image_encoder::FrameFeatures;

/// Default budget: 1 GiB, about 50 frames of the 1024 models (20 MiB each), the whole of a
/// typical shot at 256.
pub const DEFAULT_FRAME_CACHE_BYTES: usize = 1 << 30;

#[derive(Debug)]
pub struct FrameCache {
    budget: usize,
    bytes: usize,
    /// Oldest use first.
    entries: IndexMap<usize, Arc<FrameFeatures>>,
}

impl FrameCache {
    pub fn new(budget_bytes: usize) -> FrameCache {
        FrameCache {
            budget: budget_bytes,
            bytes: 0,
            entries: IndexMap::new(),
        }
    }

    /// The features of `frame`, marking them most recently used.
    pub fn get(&mut self, frame: usize) -> Option<Arc<FrameFeatures>> {
        let index = self.entries.get_index_of(&frame)?;
        let last = self.entries.len() - 1;
        self.entries.move_index(index, last);
        self.entries.get(&frame).cloned()
    }

    /// Whether `frame` is cached, without touching its recency.
    pub fn contains(&self, frame: usize) -> bool {
        self.entries.contains_key(&frame)
    }

    /// Inserts, then evicts the least recently used frames until the budget holds. The newest
    /// entry always stays, even over budget: the caller is about to use it.
    pub fn insert(&mut self, frame: usize, features: Arc<FrameFeatures>) {
        self.bytes += features.bytes();
        if let Some(old) = self.entries.insert(frame, features) {
            self.bytes -= old.bytes();
        }
        let last = self.entries.len() - 1;
        if let Some(index) = self.entries.get_index_of(&frame) {
            self.entries.move_index(index, last);
        }
        while self.bytes > self.budget && self.entries.len() > 1 {
            if let Some((_, evicted)) = self.entries.shift_remove_index(0) {
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

    pub fn set_budget(&mut self, budget_bytes: usize) {
        self.budget = budget_bytes;
        while self.bytes > self.budget && self.entries.len() > 1 {
            if let Some((_, evicted)) = self.entries.shift_remove_index(0) {
                self.bytes -= evicted.bytes();
            }
        }
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
            cache.insert(frame, features(100));
        }
        assert_eq!(cache.bytes(), 1200);
        assert!(cache.get(0).is_some()); // 0 becomes the most recent
        cache.insert(3, features(100));
        assert!(!cache.contains(1), "frame 1 was the least recently used");
        assert!(cache.contains(0) && cache.contains(2) && cache.contains(3));
        assert_eq!(cache.bytes(), 1200);
    }

    #[test]
    fn keeps_the_newest_entry_even_over_budget_and_accounts_replacements() {
        let mut cache = FrameCache::new(100);
        cache.insert(7, features(1000));
        assert_eq!(cache.len(), 1);
        cache.insert(7, features(10));
        assert_eq!(cache.bytes(), 40);
        cache.insert(8, features(10));
        cache.set_budget(40);
        assert_eq!(cache.len(), 1);
        assert!(cache.contains(8));
    }
}
