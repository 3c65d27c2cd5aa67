//! A session's frames as the model sees them: the source, the image-encoder feature cache, the
//! position encodings every frame shares, and the counters of what ran — the official
//! `_get_image_feature` and the memory encoder's frame-level inputs.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::frame_cache::{DiskCacheSettings, DiskFrames, FrameCache, Residency};
use crate::frame_source::FrameSource;
use crate::image_encoder::{self, FrameFeatures};
use crate::memory_bank::MaskOrigin;
use crate::memory_encoder::{self, MemoryFeatures};
use crate::model::{GraphTensor, Model};
use crate::predictor::SessionStats;

/// Frames: the source, the feature cache and the constants every frame shares.
pub(crate) struct Frames {
    pub(crate) model: Arc<Model>,
    pub(crate) source: Box<dyn FrameSource>,
    pub(crate) cache: FrameCache,
    vision_pos_enc: Option<Arc<GraphTensor>>,
    /// The memory position encoding: the same for every frame, so the first run's is kept.
    memory_pos_enc: Option<GraphTensor>,
    pub(crate) num_frames: usize,
    pub(crate) video_size: (u32, u32),
    pub(crate) stats: SessionStats,
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
    pub(crate) fn new(
        model: Arc<Model>,
        source: Box<dyn FrameSource>,
        cache_bytes: usize,
        disk: Option<DiskCacheSettings>,
    ) -> Frames {
        let num_frames = source.num_frames();
        let video_size = source.video_size();
        let disk_frames = if model.encodes_on_card() {
            DiskFrames::InteractiveOnly
        } else {
            DiskFrames::All
        };
        Frames {
            cache: FrameCache::new(cache_bytes, disk).with_disk_frames(disk_frames),
            model,
            source,
            vision_pos_enc: None,
            memory_pos_enc: None,
            num_frames,
            video_size,
            stats: SessionStats::default(),
        }
    }

    pub(crate) fn check(&self, frame: usize) -> Result<()> {
        if frame < self.num_frames {
            Ok(())
        } else {
            Err(Error::FrameOutOfRange {
                frame,
                num_frames: self.num_frames,
            })
        }
    }

    /// The encoder features of `frame`, from the cache (memory, then disk) or by encoding it.
    pub(crate) fn features(
        &mut self,
        frame: usize,
        residency: Residency,
    ) -> Result<Arc<FrameFeatures>> {
        self.check(frame)?;
        let in_memory = self.cache.contains(frame);
        if let Some(features) = self
            .cache
            .load(frame, residency, self.vision_pos_enc.as_ref())
        {
            if !in_memory {
                self.stats.frame_cache_disk_reads += 1;
            }
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
        let input = image_encoder::input(&self.model, &image.data, image.width, image.height)?;
        self.stats.image_encoder_runs += 1;
        let features = Arc::new(image_encoder::encode(
            &self.model,
            &input,
            self.vision_pos_enc.as_ref(),
        )?);
        if self.vision_pos_enc.is_none() {
            self.vision_pos_enc = Some(Arc::clone(&features.vision_pos_enc));
        }
        self.cache.insert(frame, Arc::clone(&features), residency);
        Ok(features)
    }

    /// `_encode_new_memory` for one object's mask on `frame`.
    pub(crate) fn encode_memory(
        &mut self,
        frame: usize,
        logits: &[f32],
        score: f32,
        origin: MaskOrigin,
        residency: Residency,
    ) -> Result<MemoryFeatures> {
        let features = self.features(frame, residency)?;
        self.stats.memory_encoder_runs += 1;
        memory_encoder::encode_memory(
            &self.model,
            &features.vision_features,
            logits,
            score,
            origin,
            &mut self.memory_pos_enc,
        )
    }

    /// `_encode_new_memory` for several objects' masks `(logits, object score)` on `frame`, in
    /// as few runs as the graph allows.
    pub(crate) fn encode_memories(
        &mut self,
        frame: usize,
        masks: &[(&[f32], f32)],
        origin: MaskOrigin,
        residency: Residency,
    ) -> Result<Vec<MemoryFeatures>> {
        let features = self.features(frame, residency)?;
        self.stats.memory_encoder_runs += masks.len() as u64;
        memory_encoder::encode_memories(
            &self.model,
            &features.vision_features,
            masks,
            origin,
            &mut self.memory_pos_enc,
        )
    }

    /// The memory position encoding, known once a memory was encoded.
    pub(crate) fn memory_pos_enc(&self) -> Option<&GraphTensor> {
        self.memory_pos_enc.as_ref()
    }
}
