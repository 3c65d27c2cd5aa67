//! A session's cold tier: the logits of tracked frames far behind a propagation live on disk, not
//! in RAM, and are read back on demand (viewing, a memory rebuilt, a click on such a frame) —
//! memory flat in the clip's length. A cold result goes to two places: the session's track cache
//! (rounded to the matte precision, what mattes and other processes read) and the session's
//! private spill (full precision, what the model reads again: see `track_cache::spill`).

use std::sync::Arc;

use super::spill::Spill;
use super::{Result, TrackCacheError, TrackCacheWriter};
use crate::masklet::FrameResult;
use crate::memory_bank::Retention;
use crate::object::ObjectId;

/// The writer of a session's cache, and the spill of what went cold.
#[derive(Debug)]
pub struct ColdStore {
    writer: TrackCacheWriter,
    spill: Spill,
}

impl ColdStore {
    pub fn new(writer: TrackCacheWriter) -> Result<ColdStore> {
        let spill = Spill::create(writer.path())?;
        Ok(ColdStore { writer, spill })
    }

    pub fn writer(&self) -> &TrackCacheWriter {
        &self.writer
    }

    pub(crate) fn writer_mut(&mut self) -> &mut TrackCacheWriter {
        &mut self.writer
    }

    /// Moves `result`'s logits out of RAM: into the cache (unless it has them already) and, at
    /// full precision, into the spill.
    pub(crate) fn freeze(
        &mut self,
        object: ObjectId,
        frame: usize,
        result: &FrameResult,
    ) -> Result<()> {
        self.writer.put(object, frame, Some(result))?;
        self.spill.put(object, frame, &result.low_res_logits)?;
        if let Retention::Rebuildable { unfilled } = &result.memory_source.retention
            && !unfilled.is_empty()
        {
            self.spill.put_unfilled(object, frame, unfilled)?;
        }
        Ok(())
    }

    /// What the memory encoder read for a frame [`ColdStore::freeze`] moved out: its logits with
    /// the spilled pixels put back.
    pub(crate) fn thaw_encoder_input(&self, object: ObjectId, frame: usize) -> Result<Arc<[f32]>> {
        let logits = self.thaw(object, frame)?;
        match self.spill.get_unfilled(object, frame)? {
            None => Ok(logits),
            Some(unfilled) => {
                let mut input = logits.to_vec();
                for (index, value) in unfilled {
                    if let Some(v) = input.get_mut(index as usize) {
                        *v = value;
                    }
                }
                Ok(Arc::from(input))
            }
        }
    }

    /// The full-precision logits [`ColdStore::freeze`] moved out.
    pub(crate) fn thaw(&self, object: ObjectId, frame: usize) -> Result<Arc<[f32]>> {
        self.spill
            .get(object, frame)?
            .ok_or_else(|| TrackCacheError::NotCached {
                path: self.writer.path().to_path_buf(),
                object: object.0,
                frame,
            })
    }
}
