//! A session's private spill file: the full-precision logits of its cold results, which the
//! model may read again (a memory rebuilt, a click on a frame gone cold) and which the track
//! cache holds only rounded. Lossless (about 200 KiB per frame and object at 1024²) and on disk,
//! not in RAM; the index (a few words per result) stays in RAM.
//!
//! The file lives beside the cache under a hidden name and is gone when the session ends: on Unix
//! it is unlinked as soon as it is open, so not even a killed process leaves it behind. A result
//! frozen again (tracked again after a new prompt) is appended again; the file only grows during
//! a session.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Result, TrackCacheError, codec, record};
use crate::object::ObjectId;

/// Where one result's bytes are.
#[derive(Debug, Clone, Copy)]
struct Slot {
    offset: u64,
    len: u32,
    count: u32,
    crc: u32,
}

#[derive(Debug)]
pub(crate) struct Spill {
    /// The cache it belongs to, for messages.
    cache: PathBuf,
    /// Where the file is while it has a name (never on Unix).
    path: Option<PathBuf>,
    file: File,
    end: u64,
    index: HashMap<(ObjectId, usize), Slot>,
    /// Where the pixels a memory's rebuild puts back are (see `Retention::Spilled`).
    unfilled: HashMap<(ObjectId, usize), Slot>,
}

impl Spill {
    /// A new, empty spill beside `cache`.
    pub(crate) fn create(cache: &Path) -> Result<Spill> {
        let name = cache
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "track-cache".to_string());
        let path = cache.with_file_name(format!(".{name}.{}.spill", std::process::id()));
        let io = |action: &'static str| {
            let cache = cache.to_path_buf();
            move |source| TrackCacheError::Io {
                action,
                path: cache,
                source,
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io("create the spill file beside"))?;
        let path = if cfg!(unix) {
            std::fs::remove_file(&path).map_err(io("unlink the spill file beside"))?;
            None
        } else {
            Some(path)
        };
        Ok(Spill {
            cache: cache.to_path_buf(),
            path,
            file,
            end: 0,
            index: HashMap::new(),
            unfilled: HashMap::new(),
        })
    }

    /// Keeps `logits` of `object` on `frame`, replacing what was kept for them.
    pub(crate) fn put(&mut self, object: ObjectId, frame: usize, logits: &[f32]) -> Result<()> {
        let bytes = codec::encode_lossless(logits).map_err(|source| self.io("write", source))?;
        self.file
            .write_all(&bytes)
            .map_err(|source| self.io("write the spill file of", source))?;
        self.index.insert(
            (object, frame),
            Slot {
                offset: self.end,
                len: bytes.len() as u32,
                count: logits.len() as u32,
                crc: crc32fast::hash(&bytes),
            },
        );
        self.end += bytes.len() as u64;
        Ok(())
    }

    /// Keeps the pixels (index, value) a memory's rebuild puts back, for `object` on `frame`.
    pub(crate) fn put_unfilled(
        &mut self,
        object: ObjectId,
        frame: usize,
        pixels: &[(u32, f32)],
    ) -> Result<()> {
        let mut bytes = Vec::with_capacity(pixels.len() * 8);
        for (index, value) in pixels {
            bytes.extend_from_slice(&index.to_le_bytes());
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        self.file
            .write_all(&bytes)
            .map_err(|source| self.io("write the spill file of", source))?;
        self.unfilled.insert(
            (object, frame),
            Slot {
                offset: self.end,
                len: bytes.len() as u32,
                count: pixels.len() as u32,
                crc: crc32fast::hash(&bytes),
            },
        );
        self.end += bytes.len() as u64;
        Ok(())
    }

    /// The pixels [`Spill::put_unfilled`] kept; `None` when it kept none for them.
    pub(crate) fn get_unfilled(
        &self,
        object: ObjectId,
        frame: usize,
    ) -> Result<Option<Vec<(u32, f32)>>> {
        let Some(slot) = self.unfilled.get(&(object, frame)).copied() else {
            return Ok(None);
        };
        let bytes = self.read(slot)?;
        Ok(Some(
            bytes
                .chunks_exact(8)
                .map(|c| {
                    let word = |at: usize| {
                        c.get(at..at + 4)
                            .and_then(|b| <[u8; 4]>::try_from(b).ok())
                            .unwrap_or_default()
                    };
                    (u32::from_le_bytes(word(0)), f32::from_le_bytes(word(4)))
                })
                .collect(),
        ))
    }

    /// A slot's bytes, checked against its checksum.
    fn read(&self, slot: Slot) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; slot.len as usize];
        let whole = record::read_at(&self.file, slot.offset, &mut bytes)
            .map_err(|source| self.io("read the spill file of", source))?;
        if !whole || crc32fast::hash(&bytes) != slot.crc {
            return Err(TrackCacheError::Corrupt {
                path: self.cache.clone(),
                offset: slot.offset,
                problem: "the session's spill file of full-precision logits changed".to_string(),
            });
        }
        Ok(bytes)
    }

    /// The logits [`Spill::put`] kept; `None` when it kept none for them.
    pub(crate) fn get(&self, object: ObjectId, frame: usize) -> Result<Option<Arc<[f32]>>> {
        let Some(slot) = self.index.get(&(object, frame)).copied() else {
            return Ok(None);
        };
        let damaged = || TrackCacheError::Corrupt {
            path: self.cache.clone(),
            offset: slot.offset,
            problem: "the session's spill file of full-precision logits changed".to_string(),
        };
        let mut bytes = vec![0u8; slot.len as usize];
        let whole = record::read_at(&self.file, slot.offset, &mut bytes)
            .map_err(|source| self.io("read the spill file of", source))?;
        if !whole || crc32fast::hash(&bytes) != slot.crc {
            return Err(damaged());
        }
        let values = codec::decode_lossless(&bytes, slot.count as usize).ok_or_else(damaged)?;
        Ok(Some(Arc::from(values)))
    }

    fn io(&self, action: &'static str, source: std::io::Error) -> TrackCacheError {
        TrackCacheError::Io {
            action,
            path: self.cache.clone(),
            source,
        }
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_logits_bit_for_bit_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("clip.sam2cache");
        let mut spill = Spill::create(&cache).unwrap();
        let a: Vec<f32> = (0..256).map(|i| (i as f32 * 0.123).sin() * 7.3).collect();
        let b: Vec<f32> = a.iter().map(|v| v * -1.000_1).collect();
        spill.put(ObjectId(1), 4, &a).unwrap();
        spill.put(ObjectId(2), 4, &b).unwrap();
        assert_eq!(&*spill.get(ObjectId(1), 4).unwrap().unwrap(), &a[..]);
        spill.put(ObjectId(1), 4, &b).unwrap();
        assert_eq!(&*spill.get(ObjectId(1), 4).unwrap().unwrap(), &b[..]);
        assert!(spill.get(ObjectId(1), 5).unwrap().is_none());
        if cfg!(unix) {
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
        drop(spill);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
