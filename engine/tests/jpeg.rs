//! JPEG frames decode to exactly the bytes Pillow gives (tests/fixtures/jpeg, written by
//! `bundle/exporter/sam2export/jpeg_fixtures.py`), and what Pillow refuses as truncated is refused
//! with a sentence naming the file.

// Test code unwraps, panics and indexes on purpose (clippy.toml allows it inside #[test] functions;
// the helpers below are test code too).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use sam2_engine::jpeg::{JpegError, decode_jpeg};
use sam2_engine::{FolderSource, FrameSource};

fn jpeg_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/jpeg")
}

fn jpegs() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(jpeg_fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    files
}

/// The fixture's `refused.json`: file name → Pillow's message.
fn refused() -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(jpeg_fixtures().join("refused.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["refused"].as_object().unwrap().clone()
}

#[test]
fn jpegs_decode_to_pillows_bytes() {
    let refused = refused();
    let mut decoded = 0;
    for jpeg in jpegs() {
        let name = jpeg.file_name().unwrap().to_string_lossy().into_owned();
        let png = jpeg.with_extension("png");
        if !png.is_file() {
            assert!(
                refused.contains_key(&name),
                "{name}: no PNG and not refused"
            );
            continue;
        }
        let ours =
            decode_jpeg(&std::fs::read(&jpeg).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let pillow = image::open(&png).unwrap().to_rgb8();
        assert_eq!(
            (ours.width, ours.height),
            pillow.dimensions(),
            "{name}: size"
        );
        let differing: Vec<i32> = ours
            .data
            .iter()
            .zip(pillow.as_raw())
            .map(|(&a, &b)| i32::from(a) - i32::from(b))
            .filter(|&d| d != 0)
            .collect();
        assert!(
            differing.is_empty(),
            "{name}: {} of {} bytes differ from Pillow's, by up to {}",
            differing.len(),
            ours.data.len(),
            differing.iter().map(|d| d.abs()).max().unwrap_or(0)
        );
        // Damaged but complete data is decoded as Pillow decodes it, with libjpeg's warning kept
        // (a flipped bit need not give one: it may just change a coefficient).
        let damaged = ["corrupt", "extraneous", "truncated_then_ended"];
        if name.contains("truncated_then_ended") {
            assert!(ours.warning.is_some(), "{name}: no warning");
        } else if !damaged.iter().any(|d| name.contains(d)) {
            assert_eq!(ours.warning, None, "{name}");
        }
        decoded += 1;
    }
    assert!(decoded >= 10, "only {decoded} JPEG fixtures were compared");
}

#[test]
fn what_pillow_refuses_as_truncated_is_refused() {
    let refused = refused();
    assert!(refused.len() >= 4);
    for (name, pillow_message) in &refused {
        assert!(
            pillow_message
                .as_str()
                .unwrap()
                .starts_with("image file is truncated"),
            "{name}: {pillow_message}"
        );
        let bytes = std::fs::read(jpeg_fixtures().join(name)).unwrap();
        assert_eq!(
            decode_jpeg(&bytes).map(|_| ()),
            Err(JpegError::Truncated),
            "{name}"
        );
    }
}

#[test]
fn a_truncated_frame_in_a_clip_is_a_sentence_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = jpeg_fixtures();
    // The truncated frame has the clip's size in its header, so the clip opens; reading it fails.
    std::fs::copy(
        fixtures.join("cat_q75_420.jpg"),
        dir.path().join("00000.jpg"),
    )
    .unwrap();
    std::fs::copy(
        fixtures.join("truncated_half.jpg"),
        dir.path().join("00001.jpg"),
    )
    .unwrap();
    let mut source = FolderSource::open(dir.path()).unwrap();
    let first = source.frame(0).unwrap();
    let pillow = image::open(fixtures.join("cat_q75_420.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(first.data, pillow.into_raw());
    let err = source.frame(1).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("Frame 1 could not be read"), "{text}");
    assert!(text.contains("00001.jpg"), "{text}");
    assert!(text.contains("truncated"), "{text}");
}
