//! The file's framing: a signature, then records — `tag u32 | length u32 | crc32 u32 | payload` —
//! each checksummed over tag, length and payload (all integers little-endian). A record whose
//! length runs past the end of the file is a torn tail (a writer mid-append, or killed), not
//! damage.

use std::fs::File;
use std::io;

use crate::object::ObjectId;

/// `SAM2TRKC` and the format version.
pub(crate) const SIGNATURE: &[u8; 8] = b"SAM2TRKC";
/// 2: logits at the matte precision (16-bit codes), no longer lossless f32.
pub(crate) const VERSION: u32 = 2;
/// Signature and version.
pub(crate) const PREFIX_LEN: u64 = 12;
/// Tag, length, checksum.
pub(crate) const RECORD_HEAD_LEN: u64 = 12;
/// A block's fixed part: object, frame, score, kind, encoding, reserved, value count.
pub(crate) const BLOCK_HEAD_LEN: usize = 8 + 4 + 4 + 1 + 1 + 2 + 4;
/// No record is larger: a 4096² logit map with room to spare (keeps a damaged length from
/// asking for gigabytes).
pub(crate) const MAX_PAYLOAD: u32 = 1 << 28;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    /// The provenance and layout, JSON; the first record.
    Header = 1,
    /// One object's result on one frame (or its absence).
    Block = 2,
    /// The objects a finished step leaves in the session; everything before it is committed.
    Commit = 3,
}

impl Tag {
    pub(crate) fn from_u32(value: u32) -> Option<Tag> {
        match value {
            1 => Some(Tag::Header),
            2 => Some(Tag::Block),
            3 => Some(Tag::Commit),
            _ => None,
        }
    }
}

/// Whether a block holds logits or says that the object has no result on the frame (an earlier
/// result there is withdrawn: the object was removed, or the session reset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockKind {
    Absent = 0,
    Logits = 1,
}

/// A block's fixed part, as the index keeps it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BlockHead {
    pub object: ObjectId,
    pub frame: u32,
    pub object_score: f32,
    pub kind: BlockKind,
    pub encoding: u8,
    pub count: u32,
}

impl BlockHead {
    pub(crate) fn to_bytes(self) -> [u8; BLOCK_HEAD_LEN] {
        let mut out = [0u8; BLOCK_HEAD_LEN];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            if let Some(slot) = out.get_mut(at..at + bytes.len()) {
                slot.copy_from_slice(bytes);
            }
            at += bytes.len();
        };
        put(&self.object.0.to_le_bytes());
        put(&self.frame.to_le_bytes());
        put(&self.object_score.to_bits().to_le_bytes());
        put(&[self.kind as u8, self.encoding, 0, 0]);
        put(&self.count.to_le_bytes());
        out
    }

    pub(crate) fn parse(bytes: &[u8]) -> Option<BlockHead> {
        let object = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
        let frame = u32_at(bytes, 8)?;
        let object_score = f32::from_bits(u32_at(bytes, 12)?);
        let kind = match bytes.get(16)? {
            0 => BlockKind::Absent,
            1 => BlockKind::Logits,
            _ => return None,
        };
        let encoding = *bytes.get(17)?;
        let count = u32_at(bytes, 20)?;
        Some(BlockHead {
            object: ObjectId(object),
            frame,
            object_score,
            kind,
            encoding,
            count,
        })
    }
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The checksum of a record.
pub(crate) fn checksum(tag: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&tag.to_le_bytes());
    hasher.update(&(payload.len() as u32).to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// A whole record, ready to append.
pub(crate) fn frame(tag: Tag, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEAD_LEN as usize + payload.len());
    out.extend_from_slice(&(tag as u32).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(tag as u32, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The commit payload: object count, then the ids.
pub(crate) fn commit_payload(objects: &[ObjectId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 8 * objects.len());
    out.extend_from_slice(&(objects.len() as u32).to_le_bytes());
    for o in objects {
        out.extend_from_slice(&o.0.to_le_bytes());
    }
    out
}

pub(crate) fn parse_commit(payload: &[u8]) -> Option<Vec<ObjectId>> {
    let count = u32_at(payload, 0)? as usize;
    if payload.len() != 4 + 8 * count {
        return None;
    }
    (0..count)
        .map(|i| {
            let at = 4 + 8 * i;
            Some(ObjectId(u64::from_le_bytes(
                payload.get(at..at + 8)?.try_into().ok()?,
            )))
        })
        .collect()
}

/// Reads exactly `buf.len()` bytes at `offset`; `Ok(false)` when the file ends first.
pub(crate) fn read_at(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        let Some(rest) = buf.get_mut(done..) else {
            break;
        };
        let n = read_some_at(file, rest, offset + done as u64)?;
        if n == 0 {
            return Ok(false);
        }
        done += n;
    }
    Ok(true)
}

#[cfg(unix)]
fn read_some_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(windows)]
fn read_some_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::windows::fs::FileExt;
    file.seek_read(buf, offset)
}
