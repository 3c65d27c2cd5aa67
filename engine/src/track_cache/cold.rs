//! A session's cold tier: the logits of tracked frames far behind a propagation live in the
//! session's track cache, not in RAM, and are read back on demand (viewing, a memory rebuilt, a
//! click on such a frame) — memory flat in the clip's length.

use std::sync::Arc;

use super::{Expected, Result, TrackCacheError, TrackCacheReader, TrackCacheWriter, View};
use crate::masklet::FrameResult;
use crate::object::ObjectId;

/// The writer of a session's cache, and a reader of what it wrote.
#[derive(Debug)]
pub struct ColdStore {
    writer: TrackCacheWriter,
    reader: TrackCacheReader,
}

impl ColdStore {
    pub fn new(writer: TrackCacheWriter) -> Result<ColdStore> {
        let reader = TrackCacheReader::open(writer.path(), &Expected::default(), View::Latest)?;
        Ok(ColdStore { writer, reader })
    }

    pub fn writer(&self) -> &TrackCacheWriter {
        &self.writer
    }

    pub(crate) fn writer_mut(&mut self) -> &mut TrackCacheWriter {
        &mut self.writer
    }

    /// Makes `result` readable from the cache (appending it unless the cache has it already).
    pub(crate) fn freeze(
        &mut self,
        object: ObjectId,
        frame: usize,
        result: &FrameResult,
    ) -> Result<()> {
        self.writer.put(object, frame, Some(result))?;
        self.reader.refresh()
    }

    /// The logits [`ColdStore::freeze`] stored.
    pub(crate) fn thaw(&self, object: ObjectId, frame: usize) -> Result<Arc<[f32]>> {
        match self.reader.read(object, frame)? {
            Some(cached) => Ok(Arc::from(cached.low_res_logits)),
            None => Err(TrackCacheError::NotCached {
                path: self.writer.path().to_path_buf(),
                object: object.0,
                frame,
            }),
        }
    }
}
