//! Reads a track cache, many processes at once, while its writer may still append.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::provenance::{Expected, HEADER_FORMAT, Header, Layout, Provenance};
use super::record::{
    self, BLOCK_HEAD_LEN, BlockHead, BlockKind, MAX_PAYLOAD, PREFIX_LEN, RECORD_HEAD_LEN,
    SIGNATURE, Tag, VERSION,
};
use super::{Result, TrackCacheError, codec};
use crate::object::ObjectId;

/// Which of the file's results a reader serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The state at the last commit: whole steps only, what a render uses.
    Committed,
    /// Also the blocks of a step in progress (a live view while another process tracks).
    Latest,
}

/// One object's cached result on one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedFrame {
    pub object_score: f32,
    /// `[S/4 · S/4]` logits at the matte precision ([`crate::matte::precision`]): what the
    /// session's own mattes were made from.
    pub low_res_logits: Vec<f32>,
}

/// Where a block is, and what its fixed part said when it was indexed.
#[derive(Debug, Clone, Copy)]
struct BlockRef {
    offset: u64,
    len: u32,
    head: BlockHead,
}

/// A reader of one cache file; see the module documentation of `track_cache`.
#[derive(Debug)]
pub struct TrackCacheReader {
    path: PathBuf,
    file: File,
    identity: Option<(u64, u64)>,
    header: Header,
    view: View,
    committed: HashMap<(ObjectId, u32), BlockRef>,
    pending: HashMap<(ObjectId, u32), BlockRef>,
    /// The objects of the last commit (`None` before the first).
    objects: Option<Vec<ObjectId>>,
    /// Objects of blocks after the last commit, in order of appearance.
    pending_objects: Vec<ObjectId>,
    /// Where the next unread record starts.
    scanned_to: u64,
}

impl TrackCacheReader {
    /// Opens the cache at `path` and indexes it, refusing it when its provenance differs from
    /// `expected` (a sentence saying what changed).
    pub fn open(path: &Path, expected: &Expected, view: View) -> Result<Self> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TrackCacheError::Missing {
                    path: path.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(TrackCacheError::Io {
                    action: "open",
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let io = |source| TrackCacheError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        };
        let mut prefix = [0u8; PREFIX_LEN as usize];
        let whole = record::read_at(&file, 0, &mut prefix).map_err(io)?;
        if !whole || prefix.get(..8) != Some(SIGNATURE.as_slice()) {
            return Err(TrackCacheError::NotACache {
                path: path.to_path_buf(),
            });
        }
        let version = record::u32_at(&prefix, 8).unwrap_or(0);
        if version != VERSION {
            return Err(TrackCacheError::Version {
                path: path.to_path_buf(),
                found: version,
                expected: VERSION,
            });
        }
        let corrupt = |offset: u64, problem: &str| TrackCacheError::Corrupt {
            path: path.to_path_buf(),
            offset,
            problem: problem.to_string(),
        };
        let (tag, payload, intact) = read_record(&file, PREFIX_LEN)
            .map_err(io)?
            .ok_or_else(|| corrupt(PREFIX_LEN, "its header is cut short"))?;
        if tag != Tag::Header as u32 {
            return Err(corrupt(PREFIX_LEN, "it does not start with a header"));
        }
        if !intact {
            return Err(corrupt(PREFIX_LEN, "its header's checksum does not match"));
        }
        let header: Header = serde_json::from_slice(&payload)
            .map_err(|e| corrupt(PREFIX_LEN, &format!("its header is unreadable: {e}")))?;
        if header.format != HEADER_FORMAT || header.version != VERSION {
            return Err(corrupt(PREFIX_LEN, "its header names another format"));
        }
        let changes = header.provenance.differences(expected);
        if !changes.is_empty() {
            return Err(TrackCacheError::Stale {
                path: path.to_path_buf(),
                changes: changes.join("; "),
            });
        }
        let identity = identity(&file);
        let mut reader = TrackCacheReader {
            path: path.to_path_buf(),
            file,
            identity,
            header,
            view,
            committed: HashMap::new(),
            pending: HashMap::new(),
            objects: None,
            pending_objects: Vec::new(),
            scanned_to: PREFIX_LEN + RECORD_HEAD_LEN + payload.len() as u64,
        };
        reader.scan()?;
        Ok(reader)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn provenance(&self) -> &Provenance {
        &self.header.provenance
    }

    pub fn layout(&self) -> Layout {
        self.header.layout
    }

    /// Whether a step has been committed yet.
    pub fn is_committed(&self) -> bool {
        self.objects.is_some()
    }

    /// The objects the session held at the last commit; in the [`View::Latest`] view also those
    /// of blocks written since.
    pub fn objects(&self) -> Vec<ObjectId> {
        let mut out = self.objects.clone().unwrap_or_default();
        if self.view == View::Latest {
            for o in &self.pending_objects {
                if !out.contains(o) {
                    out.push(*o);
                }
            }
        }
        out
    }

    /// Takes in what the writer appended since; refuses a cache replaced or truncated meanwhile.
    pub fn refresh(&mut self) -> Result<()> {
        self.check_same_file()?;
        self.scan()
    }

    /// The cached result of `object` on `frame`: `None` when the cache holds none (the object
    /// has no result there: an empty matte). The block is checksummed again, so that damage
    /// since the index was built is an error, never a wrong matte.
    pub fn read(&self, object: ObjectId, frame: usize) -> Result<Option<CachedFrame>> {
        self.check_same_file()?;
        let Ok(key_frame) = u32::try_from(frame) else {
            return Ok(None);
        };
        let key = (object, key_frame);
        let found = match self.view {
            View::Latest => self.pending.get(&key).or_else(|| self.committed.get(&key)),
            View::Committed => self.committed.get(&key),
        };
        let Some(block) = found.copied() else {
            return Ok(None);
        };
        let corrupt = |problem: &str| TrackCacheError::Corrupt {
            path: self.path.clone(),
            offset: block.offset,
            problem: problem.to_string(),
        };
        let (tag, payload, intact) = read_record(&self.file, block.offset)
            .map_err(|source| TrackCacheError::Io {
                action: "read",
                path: self.path.clone(),
                source,
            })?
            .ok_or_else(|| TrackCacheError::Truncated {
                path: self.path.clone(),
                offset: block.offset,
            })?;
        if tag != Tag::Block as u32 || payload.len() != block.len as usize {
            return Err(corrupt("a block's framing changed after it was indexed"));
        }
        if !intact {
            return Err(corrupt("a block's checksum does not match its content"));
        }
        let head =
            BlockHead::parse(&payload).ok_or_else(|| corrupt("a block's head is invalid"))?;
        if head.object != block.head.object || head.frame != block.head.frame {
            return Err(corrupt("a block names another object or frame"));
        }
        match head.kind {
            BlockKind::Absent => Ok(None),
            BlockKind::Logits => {
                let data = payload.get(BLOCK_HEAD_LEN..).unwrap_or_default();
                let logits =
                    codec::decode_quantized(data, head.count as usize, self.header.layout.low_res)
                        .ok_or_else(|| corrupt("a block's logits do not decompress"))?;
                Ok(Some(CachedFrame {
                    object_score: head.object_score,
                    low_res_logits: logits,
                }))
            }
        }
    }

    fn check_same_file(&self) -> Result<()> {
        let now = std::fs::metadata(&self.path)
            .ok()
            .and_then(|m| meta_identity(&m));
        if self.identity.is_some() && now != self.identity {
            return Err(TrackCacheError::Replaced {
                path: self.path.clone(),
            });
        }
        let len = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.scanned_to {
            return Err(TrackCacheError::Truncated {
                path: self.path.clone(),
                offset: len,
            });
        }
        Ok(())
    }

    /// Indexes the records from `scanned_to` up to the end or a torn tail.
    fn scan(&mut self) -> Result<()> {
        let io = |source| TrackCacheError::Io {
            action: "read",
            path: self.path.clone(),
            source,
        };
        let len = self.file.metadata().map_err(io)?.len();
        let layout = self.header.layout;
        loop {
            let offset = self.scanned_to;
            let corrupt = |problem: &str| TrackCacheError::Corrupt {
                path: self.path.clone(),
                offset,
                problem: problem.to_string(),
            };
            let Some(head) = read_head(&self.file, offset) else {
                break; // torn or at the end
            };
            let tag = record::u32_at(&head, 0).unwrap_or(0);
            let size = record::u32_at(&head, 4).unwrap_or(0);
            let Some(tag) = Tag::from_u32(tag) else {
                return Err(corrupt("a record has an unknown tag"));
            };
            if size > MAX_PAYLOAD {
                return Err(corrupt("a record claims an impossible length"));
            }
            let end = offset + RECORD_HEAD_LEN + u64::from(size);
            if end > len {
                break; // torn tail: a writer is appending it, or was killed doing so
            }
            match tag {
                Tag::Header => return Err(corrupt("a second header follows the first")),
                Tag::Block => {
                    let mut fixed = [0u8; BLOCK_HEAD_LEN];
                    let whole = record::read_at(&self.file, offset + RECORD_HEAD_LEN, &mut fixed)
                        .map_err(io)?;
                    let head = BlockHead::parse(&fixed)
                        .filter(|_| whole && size as usize >= BLOCK_HEAD_LEN)
                        .ok_or_else(|| corrupt("a block's head is invalid"))?;
                    let expected = (layout.low_res * layout.low_res) as u32;
                    let shape_ok = match head.kind {
                        BlockKind::Absent => head.count == 0,
                        BlockKind::Logits => {
                            head.count == expected && head.encoding == codec::QUANTIZED
                        }
                    };
                    if head.frame as usize >= layout.num_frames || !shape_ok {
                        return Err(corrupt("a block does not fit the cache's layout"));
                    }
                    self.pending.insert(
                        (head.object, head.frame),
                        BlockRef {
                            offset,
                            len: size,
                            head,
                        },
                    );
                    if !self.pending_objects.contains(&head.object)
                        && !self
                            .objects
                            .as_ref()
                            .is_some_and(|o| o.contains(&head.object))
                    {
                        self.pending_objects.push(head.object);
                    }
                }
                Tag::Commit => {
                    let Some((_, payload, intact)) = read_record(&self.file, offset).map_err(io)?
                    else {
                        break;
                    };
                    if !intact {
                        if end == len {
                            break; // a commit being written
                        }
                        return Err(corrupt("a commit record's checksum does not match"));
                    }
                    let objects = record::parse_commit(&payload)
                        .ok_or_else(|| corrupt("a commit record is invalid"))?;
                    self.committed.extend(self.pending.drain());
                    self.pending_objects.clear();
                    self.objects = Some(objects);
                }
            }
            self.scanned_to = end;
        }
        Ok(())
    }
}

/// A record's 12-byte head at `offset`, if the file holds all of it.
fn read_head(file: &File, offset: u64) -> Option<[u8; RECORD_HEAD_LEN as usize]> {
    let mut head = [0u8; RECORD_HEAD_LEN as usize];
    match record::read_at(file, offset, &mut head) {
        Ok(true) => Some(head),
        _ => None,
    }
}

/// The tag and payload of the record at `offset`, and whether its checksum matches; `None` when
/// the file ends first.
fn read_record(file: &File, offset: u64) -> std::io::Result<Option<(u32, Vec<u8>, bool)>> {
    let Some(head) = read_head(file, offset) else {
        return Ok(None);
    };
    let tag = record::u32_at(&head, 0).unwrap_or(0);
    let size = record::u32_at(&head, 4).unwrap_or(0).min(MAX_PAYLOAD);
    let mut payload = vec![0u8; size as usize];
    if !record::read_at(file, offset + RECORD_HEAD_LEN, &mut payload)? {
        return Ok(None);
    }
    let intact = record::u32_at(&head, 8) == Some(record::checksum(tag, &payload));
    Ok(Some((tag, payload, intact)))
}

fn identity(file: &File) -> Option<(u64, u64)> {
    file.metadata().ok().and_then(|m| meta_identity(&m))
}

#[cfg(unix)]
fn meta_identity(m: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn meta_identity(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}
