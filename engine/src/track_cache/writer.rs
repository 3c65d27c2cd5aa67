//! Appends a session's results to a track cache as tracking proceeds.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::provenance::{HEADER_FORMAT, Header, Layout, Provenance};
use super::record::{self, BlockHead, BlockKind, SIGNATURE, Tag, VERSION};
use super::{Result, TrackCacheError, codec};
use crate::masklet::FrameResult;
use crate::object::ObjectId;
use crate::predictor::{ClipSession, FrameMasks};

/// Blocks appended between two flushes to disk when no commit comes (a long propagation).
const SYNC_EVERY: usize = 256;

/// What the newest block of an (object, frame) says, to skip appending an unchanged result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    Absent,
    Logits { crc: u32, score: u32, len: usize },
}

impl Stamp {
    fn of(result: Option<&FrameResult>) -> Stamp {
        match result {
            None => Stamp::Absent,
            Some(r) => Stamp::Logits {
                crc: crc32fast::hash(bytemuck::cast_slice(&r.low_res_logits)),
                score: r.object_score.to_bits(),
                len: r.low_res_logits.len(),
            },
        }
    }
}

/// The one writer of a cache file; see the module documentation of `track_cache`.
#[derive(Debug)]
pub struct TrackCacheWriter {
    path: PathBuf,
    file: File,
    /// Held (locked) for the writer's life: a second writer is refused.
    _lock: File,
    layout: Layout,
    written: HashMap<(ObjectId, usize), Stamp>,
    unsynced: usize,
    bytes: u64,
    blocks: u64,
}

impl TrackCacheWriter {
    /// Starts a new cache at `path` for results of `provenance`; an existing cache there is
    /// replaced atomically (readers of the old one notice). The header is on disk on return.
    pub fn create(path: &Path, provenance: &Provenance, layout: Layout) -> Result<Self> {
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| TrackCacheError::Io {
                action,
                path,
                source,
            }
        };
        let lock_path = lock_path(path);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("create the lock file of", path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(TrackCacheError::Busy {
                    path: path.to_path_buf(),
                    lock: lock_path,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io("lock", path)(e)),
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "track-cache".to_string());
        let staging = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let header = Header {
            format: HEADER_FORMAT.to_string(),
            version: VERSION,
            generation: generation(),
            provenance: provenance.clone(),
            layout,
        };
        let json = serde_json::to_vec(&header).map_err(|e| TrackCacheError::Io {
            action: "write the header of",
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        let mut prefix = SIGNATURE.to_vec();
        prefix.extend_from_slice(&VERSION.to_le_bytes());
        prefix.extend_from_slice(&record::frame(Tag::Header, &json));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&staging)
            .map_err(io("create", &staging))?;
        let written = file
            .write_all(&prefix)
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&staging, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&staging);
            return Err(io("write", path)(e));
        }
        sync_parent(path);
        Ok(TrackCacheWriter {
            path: path.to_path_buf(),
            file,
            _lock: lock,
            layout,
            written: HashMap::new(),
            unsynced: 0,
            bytes: prefix.len() as u64,
            blocks: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the file so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Blocks appended so far.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Appends `object`'s result on `frame` (`None`: it has none there) unless the newest block
    /// already says the same, or the result is cold (in the cache already). Returns whether a
    /// block was appended.
    pub fn put(
        &mut self,
        object: ObjectId,
        frame: usize,
        result: Option<&FrameResult>,
    ) -> Result<bool> {
        if result.is_some_and(FrameResult::is_cold) {
            return Ok(false); // in the cache already: a session put it there when it went cold
        }
        let stamp = Stamp::of(result);
        let key = (object, frame);
        let known = self.written.get(&key).copied();
        if known == Some(stamp) || (known.is_none() && stamp == Stamp::Absent) {
            return Ok(false);
        }
        let unstorable = |problem: String| TrackCacheError::Unstorable {
            path: self.path.clone(),
            object: object.0,
            frame,
            problem,
        };
        if frame >= self.layout.num_frames {
            return Err(unstorable(format!(
                "the cache is for {} frames",
                self.layout.num_frames
            )));
        }
        let (head, data) = match result {
            None => (
                BlockHead {
                    object,
                    frame: frame as u32,
                    object_score: f32::NAN,
                    kind: BlockKind::Absent,
                    encoding: 0,
                    count: 0,
                },
                Vec::new(),
            ),
            Some(r) => {
                let expected = self.layout.low_res * self.layout.low_res;
                if r.low_res_logits.len() != expected {
                    return Err(unstorable(format!(
                        "it has {} logits, the cache's layout {expected}",
                        r.low_res_logits.len()
                    )));
                }
                let data = codec::encode_quantized(&r.low_res_logits, self.layout.low_res)
                    .map_err(|e| unstorable(format!("compressing it failed ({e})")))?;
                (
                    BlockHead {
                        object,
                        frame: frame as u32,
                        object_score: r.object_score,
                        kind: BlockKind::Logits,
                        encoding: codec::QUANTIZED,
                        count: expected as u32,
                    },
                    data,
                )
            }
        };
        let mut payload = head.to_bytes().to_vec();
        payload.extend_from_slice(&data);
        self.append(&record::frame(Tag::Block, &payload))?;
        self.written.insert(key, stamp);
        self.blocks += 1;
        self.unsynced += 1;
        if self.unsynced >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(true)
    }

    /// Appends every object's result on one propagated frame.
    pub fn put_frame(&mut self, masks: &FrameMasks) -> Result<()> {
        for output in &masks.objects {
            self.put(output.object, masks.frame, output.result.as_ref())?;
        }
        Ok(())
    }

    /// Brings the cache up to `session`'s state — every object's result on every frame, the
    /// withdrawal of results the session no longer holds — and commits it: readers see the new
    /// state from now on, whole. Call it at the end of every step (a click, a propagation).
    pub fn commit(&mut self, session: &ClipSession) -> Result<()> {
        self.commit_state(&session.object_ids(), |frame, object| {
            session.result(frame, object)
        })
    }

    /// [`TrackCacheWriter::commit`] for any holder of results: `objects` in the session's order,
    /// `result` the result of an object on a frame.
    pub fn commit_state<'s>(
        &mut self,
        objects: &[ObjectId],
        result: impl Fn(usize, ObjectId) -> Option<&'s FrameResult>,
    ) -> Result<()> {
        for &object in objects {
            for frame in 0..self.layout.num_frames {
                self.put(object, frame, result(frame, object))?;
            }
        }
        let mut gone: Vec<(ObjectId, usize)> = self
            .written
            .iter()
            .filter(|&(&(object, frame), &stamp)| {
                stamp != Stamp::Absent
                    && (!objects.contains(&object) || result(frame, object).is_none())
            })
            .map(|(&key, _)| key)
            .collect();
        gone.sort_unstable();
        for (object, frame) in gone {
            self.put(object, frame, None)?;
        }
        self.append(&record::frame(
            Tag::Commit,
            &record::commit_payload(objects),
        ))?;
        self.sync()
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        // One write per record: a reader sees a prefix of it at worst, which it skips as a torn
        // tail.
        self.file
            .write_all(bytes)
            .map_err(|source| TrackCacheError::Io {
                action: "append to",
                path: self.path.clone(),
                source,
            })?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.unsynced = 0;
        self.file.sync_data().map_err(|source| TrackCacheError::Io {
            action: "flush to disk",
            path: self.path.clone(),
            source,
        })
    }
}

/// `<cache>.lock`, beside the cache; it stays (removing it could let two writers lock two files).
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// Unique enough across processes and time: process id and clock.
fn generation() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}", std::process::id(), nanos)
}

/// Makes the rename durable; a failure only weakens durability, never correctness.
fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        let dir = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}
