//! A clip: a folder of frames named by integer, ordered by that integer, as the official predictor
//! orders a JPEG folder (docs/formats.md, "Clip").
//!
//! A frame's index is its position in that order, not the number in its name: `0.png, 5.png` is a
//! two-frame clip. Files with other extensions are ignored (a `.DS_Store` must not stop a shot),
//! but an image whose name is not an integer is an error, because the official predictor fails on
//! it too and silently dropping a frame would shift every later frame index.
//!
//! The frame size is read from the PNG or JPEG header only; decoding is the preprocessing's job.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The extensions read as frames, compared case-insensitively.
pub const FRAME_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// One frame file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The integer in the file name; orders the frames.
    pub number: u64,
    pub path: PathBuf,
}

/// A listed clip folder; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    dir: PathBuf,
    frames: Vec<Frame>,
}

impl Clip {
    /// Lists the frames of the folder `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Clip> {
        let dir = dir.as_ref();
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut frames = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let path = entry.path();
            let is_frame = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| FRAME_EXTENSIONS.iter().any(|f| e.eq_ignore_ascii_case(f)));
            if !is_frame || path.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let number = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| Error::FrameName {
                    dir: dir.to_path_buf(),
                    name: name.clone(),
                })?;
            frames.push(Frame { number, path });
        }
        if frames.is_empty() {
            return Err(Error::EmptyClip {
                dir: dir.to_path_buf(),
            });
        }
        frames.sort_by(|a, b| a.number.cmp(&b.number).then_with(|| a.path.cmp(&b.path)));
        for pair in frames.windows(2) {
            if let [a, b] = pair
                && a.number == b.number
            {
                let file_name = |f: &Frame| {
                    f.path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                };
                return Err(Error::DuplicateFrame {
                    dir: dir.to_path_buf(),
                    number: a.number,
                    first: file_name(a),
                    second: file_name(b),
                });
            }
        }
        Ok(Clip {
            dir: dir.to_path_buf(),
            frames,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The frames in order; index = frame index.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// The number of frames (at least 1).
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Always false: opening refuses an empty folder. Here for the `len` convention.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The file of frame `index`.
    pub fn frame_path(&self, index: usize) -> Option<&Path> {
        self.frames.get(index).map(|f| f.path.as_path())
    }

    /// The video size `[W, H]`, read from every frame's header; all frames must agree.
    pub fn video_size(&self) -> Result<[u32; 2]> {
        let mut size: Option<(&Path, [u32; 2])> = None;
        for frame in &self.frames {
            let this = image_size(&frame.path)?;
            match size {
                None => size = Some((&frame.path, this)),
                Some((first, [w, h])) if this != [w, h] => {
                    return Err(Error::FrameSize {
                        path: frame.path.clone(),
                        first: first.to_path_buf(),
                        expected_w: w,
                        expected_h: h,
                        found_w: this[0],
                        found_h: this[1],
                    });
                }
                Some(_) => {}
            }
        }
        size.map(|(_, s)| s).ok_or_else(|| Error::EmptyClip {
            dir: self.dir.clone(),
        })
    }
}

/// `[width, height]` of a PNG or JPEG file, from its header.
pub fn image_size(path: &Path) -> Result<[u32; 2]> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::new(file);
    let header_error = |problem: &str| Error::FrameHeader {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    };
    let mut magic = [0u8; 8];
    reader
        .read_exact(&mut magic)
        .map_err(|_| header_error("the file is shorter than any image header"))?;
    if magic == *b"\x89PNG\r\n\x1a\n" {
        // The first chunk must be IHDR: length (4), type (4), width (4), height (4), big-endian.
        let mut ihdr = [0u8; 16];
        reader
            .read_exact(&mut ihdr)
            .map_err(|_| header_error("the PNG header is cut short"))?;
        let [_, _, _, _, t0, t1, t2, t3, w0, w1, w2, w3, h0, h1, h2, h3] = ihdr;
        if [t0, t1, t2, t3] != *b"IHDR" {
            return Err(header_error("the PNG does not start with an IHDR chunk"));
        }
        return Ok([
            u32::from_be_bytes([w0, w1, w2, w3]),
            u32::from_be_bytes([h0, h1, h2, h3]),
        ]);
    }
    if magic[..2] == [0xFF, 0xD8] {
        reader
            .seek(SeekFrom::Start(2))
            .map_err(|e| Error::io(path, e))?;
        return jpeg_size(&mut reader)
            .ok_or_else(|| header_error("no JPEG frame header (SOF) was found"));
    }
    Err(header_error(
        "it starts with neither the PNG nor the JPEG signature",
    ))
}

/// Walks JPEG segments to the first start-of-frame marker.
fn jpeg_size(reader: &mut (impl Read + Seek)) -> Option<[u32; 2]> {
    let mut byte = [0u8; 1];
    loop {
        // A marker is 0xFF (possibly repeated as fill) followed by a code.
        reader.read_exact(&mut byte).ok()?;
        if byte[0] != 0xFF {
            return None;
        }
        let mut code = 0xFF;
        while code == 0xFF {
            reader.read_exact(&mut byte).ok()?;
            code = byte[0];
        }
        // Markers without a length: TEM, RST0–7.
        if code == 0x01 || (0xD0..=0xD7).contains(&code) {
            continue;
        }
        if code == 0xD9 || code == 0xDA {
            return None; // end of image or start of scan before any frame header
        }
        let mut length = [0u8; 2];
        reader.read_exact(&mut length).ok()?;
        let length = u16::from_be_bytes(length);
        let is_sof = (0xC0..=0xCF).contains(&code) && !matches!(code, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            // precision (1), height (2), width (2)
            let mut sof = [0u8; 5];
            reader.read_exact(&mut sof).ok()?;
            let [_, h0, h1, w0, w1] = sof;
            return Some([
                u32::from(u16::from_be_bytes([w0, w1])),
                u32::from(u16::from_be_bytes([h0, h1])),
            ]);
        }
        let skip = i64::from(length.checked_sub(2)?);
        reader.seek(SeekFrom::Current(skip)).ok()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        bytes.extend_from_slice(&w.to_be_bytes());
        bytes.extend_from_slice(&h.to_be_bytes());
        bytes.extend_from_slice(&[8, 6, 0, 0, 0]);
        bytes
    }

    fn jpeg_header(w: u16, h: u16) -> Vec<u8> {
        let mut bytes = vec![0xFF, 0xD8];
        // An APP0 segment to skip, then SOF0.
        bytes.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x06, b'J', b'F', b'I', b'F']);
        bytes.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 8]);
        bytes.extend_from_slice(&h.to_be_bytes());
        bytes.extend_from_slice(&w.to_be_bytes());
        bytes.extend_from_slice(&[1, 1, 0x11, 0]);
        bytes
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    #[test]
    fn orders_by_integer_value_and_ignores_other_files() -> Result<()> {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["10.png", "2.PNG", "0001.jpg", "0.JPEG"] {
            write(tmp.path(), name, &png_header(4, 3));
        }
        write(tmp.path(), "notes.txt", b"not a frame");
        write(tmp.path(), ".DS_Store", b"");
        let clip = Clip::open(tmp.path())?;
        let numbers: Vec<u64> = clip.frames().iter().map(|f| f.number).collect();
        assert_eq!(numbers, [0, 1, 2, 10]);
        assert_eq!(clip.len(), 4);
        assert_eq!(
            clip.frame_path(3),
            Some(tmp.path().join("10.png").as_path())
        );
        Ok(())
    }

    #[test]
    fn empty_folder_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "readme.md", b"x");
        let err = Clip::open(tmp.path()).map(|_| ());
        let Err(err @ Error::EmptyClip { .. }) = err else {
            panic!("expected EmptyClip, got {err:?}");
        };
        let text = err.to_string();
        assert!(
            text.contains(&tmp.path().display().to_string()) && text.contains("no frames"),
            "{text}"
        );
    }

    #[test]
    fn non_integer_name_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "0.png", &png_header(4, 3));
        write(tmp.path(), "frame_1.png", &png_header(4, 3));
        let err = Clip::open(tmp.path()).map(|_| ());
        let Err(err @ Error::FrameName { .. }) = err else {
            panic!("expected FrameName, got {err:?}");
        };
        assert!(err.to_string().contains("frame_1.png"), "{err}");
        for bad in ["-1.png", "+1.png", "1.5.png"] {
            let tmp = tempfile::tempdir().unwrap();
            write(tmp.path(), bad, &png_header(4, 3));
            assert!(
                matches!(Clip::open(tmp.path()), Err(Error::FrameName { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn duplicate_numbers_are_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "1.png", &png_header(4, 3));
        write(tmp.path(), "001.jpg", &jpeg_header(4, 3));
        let err = Clip::open(tmp.path()).map(|_| ());
        let Err(err @ Error::DuplicateFrame { number: 1, .. }) = err else {
            panic!("expected DuplicateFrame, got {err:?}");
        };
        assert!(err.to_string().contains("001.jpg"), "{err}");
    }

    #[test]
    fn reads_png_and_jpeg_sizes() -> Result<()> {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "0.png", &png_header(192, 128));
        write(tmp.path(), "1.jpg", &jpeg_header(192, 128));
        let clip = Clip::open(tmp.path())?;
        assert_eq!(clip.video_size()?, [192, 128]);
        write(tmp.path(), "2.jpg", &jpeg_header(128, 192));
        let clip = Clip::open(tmp.path())?;
        let err = clip.video_size().map(|_| ());
        let Err(err @ Error::FrameSize { .. }) = err else {
            panic!("expected FrameSize, got {err:?}");
        };
        assert!(err.to_string().contains("128×192"), "{err}");
        Ok(())
    }

    #[test]
    fn garbage_is_not_an_image() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "0.png", b"GIF89a......");
        let err = image_size(&tmp.path().join("0.png")).map(|_| ());
        assert!(matches!(err, Err(Error::FrameHeader { .. })), "{err:?}");
    }
}
