//! Image-encoder features by frame: in memory, least recently used first out, under a byte
//! budget; then on disk ([`disk`]) under a disk budget.
//!
//! Encoding is the most expensive step (seconds per frame at 1024 on a CPU), and artists click
//! back and forth over the same frames; a correction click on an encoded frame then costs only the
//! decoder, and Track Forward over frames already seen costs memory attention, the decoder and the
//! memory encoder only.
//!
//! Two kinds of residents in memory: frames an artist works on (prompted or prepared: kept by
//! recency under the byte budget) and frames a propagation streams through (only the last few
//! are kept in memory, whatever the budget, so that the process's memory stays flat however
//! long the clip). A streamed frame that an artist then clicks on becomes an interactive one.
//! Every frame that leaves memory goes to the disk tier when the session has one (only the
//! interactive ones when the encoder runs on a card: [`DiskFrames`]), and comes back from there
//! bit for bit.

pub mod disk;

use std::sync::Arc;

use indexmap::IndexMap;

use crate::image_encoder::FrameFeatures;
use crate::model::GraphTensor;
pub use disk::{DEFAULT_DISK_CACHE_BYTES, DiskCacheSettings, DiskTier};

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

/// Which frames leaving memory the disk tier keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFrames {
    /// Every frame: on the CPU, encoding a frame again takes seconds at 1024, reading it back
    /// milliseconds.
    All,
    /// Only the artist's frames. When the image encoder runs on a card, writing a streamed
    /// frame's features costs more than encoding it again: at 1024, 16 MiB copied down from the
    /// card and about 20 MB written and checksummed per frame (45 ms at this project's CI disk's
    /// 433 MB/s), against about 10 ms to encode it on an H100 (issue 14's measurement) — and a
    /// propagation streams every frame past the last few through the tier.
    InteractiveOnly,
}

#[derive(Debug)]
pub struct FrameCache {
    budget: usize,
    bytes: usize,
    streamed_capacity: usize,
    /// Oldest use first.
    entries: IndexMap<usize, (Arc<FrameFeatures>, Residency)>,
    /// Where frames leaving memory go; `None`: they are dropped.
    disk: Option<DiskTier>,
    disk_frames: DiskFrames,
}

impl FrameCache {
    /// A cache of `budget_bytes` in memory, with a disk tier when `disk` is given.
    pub fn new(budget_bytes: usize, disk: Option<DiskCacheSettings>) -> FrameCache {
        FrameCache {
            budget: budget_bytes,
            bytes: 0,
            streamed_capacity: DEFAULT_STREAMED_FRAMES,
            entries: IndexMap::new(),
            disk: disk.map(DiskTier::new),
            disk_frames: DiskFrames::All,
        }
    }

    /// The cache with its disk tier keeping only `frames`.
    pub fn with_disk_frames(mut self, frames: DiskFrames) -> FrameCache {
        self.disk_frames = frames;
        self
    }

    /// The features of `frame` from memory or, failing that, read back from the disk tier (and
    /// kept in memory again as `residency`); `pos_enc` is the session's shared position
    /// encoding, which the disk tier does not store.
    pub fn load(
        &mut self,
        frame: usize,
        residency: Residency,
        pos_enc: Option<&Arc<GraphTensor>>,
    ) -> Option<Arc<FrameFeatures>> {
        if let Some(features) = self.get(frame, residency) {
            return Some(features);
        }
        let features = Arc::new(self.disk.as_mut()?.load(frame, pos_enc?)?);
        self.insert(frame, Arc::clone(&features), residency);
        Some(features)
    }

    /// The disk tier, when the session has one.
    pub fn disk(&self) -> Option<&DiskTier> {
        self.disk.as_ref()
    }

    /// Removes the entry at `index` from memory, keeping it on disk when there is a disk tier
    /// that keeps such frames ([`DiskFrames`]).
    fn evict(&mut self, index: usize) {
        if let Some((frame, (evicted, residency))) = self.entries.shift_remove_index(index) {
            self.bytes -= evicted.bytes();
            let kept = match self.disk_frames {
                DiskFrames::All => true,
                DiskFrames::InteractiveOnly => residency == Residency::Interactive,
            };
            if kept && let Some(disk) = self.disk.as_mut() {
                disk.store(frame, &evicted);
            }
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

    /// Whether `frame` is cached in memory, without touching its recency.
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
                self.evict(index);
                excess -= 1;
            } else {
                index += 1;
            }
        }
        self.evict_to_budget();
    }

    fn evict_to_budget(&mut self) {
        while self.bytes > self.budget && self.entries.len() > 1 {
            self.evict(0);
        }
    }

    /// Forgets every frame, in memory and on disk.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        if let Some(disk) = self.disk.as_mut() {
            disk.clear();
        }
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
    use crate::model::GraphTensor;
    use ndarray::Array4;

    fn tensor(a: Array4<f32>) -> GraphTensor {
        crate::model::graph_tensor::test_tensor(a)
    }

    /// A 1 MiB disk tier under `parent`.
    fn disk_in(parent: &tempfile::TempDir) -> DiskCacheSettings {
        DiskCacheSettings {
            budget_bytes: 1 << 20,
            parent: parent.path().to_path_buf(),
        }
    }

    fn features(values: usize) -> Arc<FrameFeatures> {
        Arc::new(FrameFeatures {
            vision_features: tensor(Array4::zeros((1, 1, 1, values))),
            vision_pos_enc: Arc::new(tensor(Array4::zeros((1, 1, 1, 1)))),
            high_res_0: tensor(Array4::zeros((1, 1, 1, 0))),
            high_res_1: tensor(Array4::zeros((1, 1, 1, 0))),
        })
    }

    #[test]
    fn evicts_least_recently_used_first_under_the_budget() {
        let mut cache = FrameCache::new(3 * 400, None);
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
        let mut cache = FrameCache::new(100, None);
        cache.insert(7, features(1000), Residency::Interactive);
        assert_eq!(cache.len(), 1);
        cache.insert(7, features(10), Residency::Interactive);
        assert_eq!(cache.bytes(), 40);
        cache.insert(8, features(10), Residency::Interactive);
        cache.set_budget(40);
        assert_eq!(cache.len(), 1);
        assert!(cache.contains(8));
    }

    fn valued(value: f32) -> Arc<FrameFeatures> {
        Arc::new(FrameFeatures {
            vision_features: tensor(Array4::from_elem((1, 2, 3, 4), value)),
            vision_pos_enc: Arc::new(tensor(Array4::zeros((1, 2, 3, 4)))),
            high_res_0: tensor(Array4::from_elem((1, 1, 6, 8), -value)),
            high_res_1: tensor(Array4::from_elem((1, 1, 3, 4), value * 0.5)),
        })
    }

    #[test]
    fn frames_leaving_memory_come_back_from_disk_until_cleared() {
        let parent = tempfile::tempdir().unwrap();
        let disk = disk_in(&parent);
        let mut cache = FrameCache::new(1 << 30, Some(disk));
        let pos = Arc::new(tensor(Array4::from_elem((1, 2, 3, 4), 9.0)));
        for frame in 0..20 {
            cache.insert(frame, valued(frame as f32), Residency::Streamed);
        }
        assert_eq!(cache.len(), DEFAULT_STREAMED_FRAMES);
        assert_eq!(cache.disk().unwrap().len(), 20 - DEFAULT_STREAMED_FRAMES);
        assert!(!cache.contains(3));
        assert!(
            cache.load(3, Residency::Streamed, None).is_none(),
            "no position encoding"
        );
        let back = cache.load(3, Residency::Streamed, Some(&pos)).unwrap();
        assert!(
            back.vision_features
                .to_host()
                .unwrap()
                .iter()
                .all(|&v| v == 3.0)
        );
        assert!(
            back.high_res_0
                .to_host()
                .unwrap()
                .iter()
                .all(|&v| v == -3.0)
        );
        assert!(back.high_res_1.to_host().unwrap().iter().all(|&v| v == 1.5));
        assert!(Arc::ptr_eq(&back.vision_pos_enc, &pos));
        assert!(cache.contains(3), "read back into memory");
        // Shrinking the memory budget moves interactive frames to disk as well.
        cache.insert(100, valued(100.0), Residency::Interactive);
        cache.set_budget(0);
        assert_eq!(cache.len(), 1);
        assert!(cache.disk().unwrap().contains(100) || cache.contains(100));
        let folder = cache.disk().unwrap().folder().unwrap().to_path_buf();
        cache.clear();
        assert!(cache.is_empty() && cache.disk().unwrap().is_empty());
        assert!(!folder.exists());
        assert!(cache.load(3, Residency::Streamed, Some(&pos)).is_none());
    }

    #[test]
    fn a_propagation_keeps_only_the_last_streamed_frames_and_spares_interactive_ones() {
        let mut cache = FrameCache::new(1 << 30, None);
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

    #[test]
    fn a_tier_for_interactive_frames_only_drops_streamed_frames_and_keeps_the_artists() {
        let parent = tempfile::tempdir().unwrap();
        let disk = disk_in(&parent);
        let mut cache =
            FrameCache::new(1 << 30, Some(disk)).with_disk_frames(DiskFrames::InteractiveOnly);
        cache.insert(100, valued(100.0), Residency::Interactive);
        for frame in 0..20 {
            cache.insert(frame, valued(frame as f32), Residency::Streamed);
        }
        assert_eq!(cache.len(), DEFAULT_STREAMED_FRAMES + 1);
        assert!(!cache.contains(3));
        assert!(
            cache.disk().unwrap().is_empty(),
            "streamed frames leaving memory are dropped"
        );
        cache.set_budget(0);
        assert!(
            cache.disk().unwrap().contains(100),
            "the artist's frame leaving memory is kept on disk"
        );
    }
}
