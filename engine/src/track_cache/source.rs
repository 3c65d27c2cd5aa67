//! The `source` of a cache's provenance as every writer computes it: a digest of each frame as
//! the model saw it (8-bit RGB, after any colour conversion), and, for a folder clip, the files'
//! fingerprint ([`super::fingerprint_clip`]).
//!
//! Per-frame digests let a reader that holds one frame — an effect rendering it, which cannot
//! read the rest of the clip — check that frame against the one that was tracked, and let the
//! effect and the CLI agree on a clip they read differently (host images, PNG files): both give
//! the model the same RGB bytes.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::frame_source::RgbFrame;

/// What a cache says about its source frames.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourcePrint {
    /// [`frame_digest`] of every frame, by index; empty when unknown (a cache of an older CLI).
    pub frames: Vec<u64>,
    /// [`super::fingerprint_clip`] of a folder clip's files.
    pub files: Option<String>,
}

/// The first 64 bits of the SHA-256 over a frame's width, height and RGB bytes.
pub fn frame_digest(frame: &RgbFrame) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(frame.width.to_le_bytes());
    hasher.update(frame.height.to_le_bytes());
    hasher.update(&frame.data);
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(hash.get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(first)
}

impl SourcePrint {
    /// The digest of frame `index`, when known.
    pub fn frame(&self, index: usize) -> Option<u64> {
        self.frames.get(index).copied()
    }

    /// Reads what [`SourcePrint`]'s `Display` wrote; a bare SHA-256 (a cache of an earlier CLI)
    /// is the files' fingerprint alone. `None`: not a source fingerprint.
    pub fn parse(text: &str) -> Option<SourcePrint> {
        let is_sha = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if is_sha(text) {
            return Some(SourcePrint {
                frames: Vec::new(),
                files: Some(text.to_string()),
            });
        }
        let mut print = SourcePrint::default();
        for part in text.split("; ") {
            if let Some(list) = part.strip_prefix("frames ") {
                print.frames = list
                    .split(',')
                    .filter(|d| !d.is_empty())
                    .map(|d| u64::from_str_radix(d, 16).ok())
                    .collect::<Option<Vec<u64>>>()?;
            } else if let Some(sha) = part.strip_prefix("files ") {
                if !is_sha(sha) {
                    return None;
                }
                print.files = Some(sha.to_string());
            } else {
                return None;
            }
        }
        Some(print)
    }
}

/// `frames <16 hex digits>,…` then `; files <SHA-256>` when known.
impl fmt::Display for SourcePrint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("frames ")?;
        for (i, d) in self.frames.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d:016x}")?;
        }
        if let Some(files) = &self.files {
            write!(f, "; files {files}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_print_reads_back_and_tells_frames_apart() {
        let frame = |v: u8| RgbFrame {
            width: 2,
            height: 1,
            data: vec![v; 6],
        };
        let print = SourcePrint {
            frames: vec![frame_digest(&frame(0)), frame_digest(&frame(1)), 7],
            files: Some("ab".repeat(32)),
        };
        assert_ne!(print.frames[0], print.frames[1]);
        let text = print.to_string();
        assert!(text.starts_with("frames "), "{text}");
        assert_eq!(SourcePrint::parse(&text), Some(print.clone()));
        let frames_only = SourcePrint {
            files: None,
            ..print
        };
        assert_eq!(
            SourcePrint::parse(&frames_only.to_string()),
            Some(frames_only)
        );
        let older = "cd".repeat(32);
        assert_eq!(
            SourcePrint::parse(&older),
            Some(SourcePrint {
                frames: Vec::new(),
                files: Some(older.clone())
            })
        );
        assert_eq!(SourcePrint::parse("host frames 1,2"), None);
        assert_eq!(SourcePrint::parse("frames 1,zz"), None);
    }
}
