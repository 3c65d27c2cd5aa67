use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;

use super::*;
use crate::masklet::FrameResult;
use crate::matte::precision::round_logits;
use crate::memory_bank::MemorySource;
use crate::object::ObjectId;

const SIDE: usize = 16;

fn layout() -> Layout {
    Layout {
        width: 64,
        height: 48,
        num_frames: 6,
        low_res: SIDE,
    }
}

fn provenance(prompts: &str) -> Provenance {
    Provenance {
        engine: engine_version(),
        model: "a".repeat(64),
        precision: "fp32 on CPU".into(),
        predictor: "fill_hole_area=0".into(),
        source: "b".repeat(64),
        prompts: prompts.into(),
    }
}

/// Logits that say which object, frame and take they are.
fn result(object: u64, frame: usize, take: u32) -> FrameResult {
    let logits: Vec<f32> = (0..SIDE * SIDE)
        .map(|i| {
            ((i as f32) * 0.1 + frame as f32).sin() * 10.0 + object as f32 + take as f32 * 0.25
        })
        .collect();
    FrameResult {
        low_res_logits: Arc::from(logits),
        object_pointer: Arc::from(vec![0.0f32; 4]),
        object_score: frame as f32 - 2.5,
        memory: None,
        memory_source: MemorySource::default(),
        candidates: None,
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn open(path: &std::path::Path, view: View) -> Result<TrackCacheReader> {
    TrackCacheReader::open(path, &Expected::from(&provenance("p1")), view)
}

#[test]
fn committed_results_come_back_at_the_matte_precision_and_later_blocks_win() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shot.sam2cache");
    let mut w = TrackCacheWriter::create(&path, &provenance("p1"), layout()).unwrap();
    let take1: Vec<FrameResult> = (0..6).map(|f| result(1, f, 1)).collect();
    let objects = [ObjectId(1), ObjectId(7)];
    let seven = result(7, 2, 1);
    w.commit_state(&objects, |f, o| match o.0 {
        1 => take1.get(f),
        _ => (f == 2).then_some(&seven),
    })
    .unwrap();
    let after_first = w.blocks();
    assert_eq!(after_first, 7, "6 frames of object 1, one of object 7");
    // An unchanged state appends nothing but the commit.
    w.commit_state(&objects, |f, o| match o.0 {
        1 => take1.get(f),
        _ => (f == 2).then_some(&seven),
    })
    .unwrap();
    assert_eq!(w.blocks(), after_first);

    let r = open(&path, View::Committed).unwrap();
    assert_eq!(r.objects(), objects.to_vec());
    assert_eq!(r.layout(), layout());
    for (f, want) in take1.iter().enumerate() {
        let got = r.read(ObjectId(1), f).unwrap().unwrap();
        assert_eq!(
            bits(&got.low_res_logits),
            bits(&round_logits(&want.low_res_logits))
        );
        assert_eq!(got.object_score, want.object_score);
    }
    assert!(r.read(ObjectId(7), 1).unwrap().is_none());
    assert!(r.read(ObjectId(7), 2).unwrap().is_some());
    assert!(r.read(ObjectId(9), 2).unwrap().is_none());

    // A re-track changes frames 3–5 of object 1 and removes object 7.
    let take2: Vec<FrameResult> = (0..6)
        .map(|f| result(1, f, if f >= 3 { 2 } else { 1 }))
        .collect();
    w.commit_state(&[ObjectId(1)], |f, _| take2.get(f)).unwrap();
    assert_eq!(w.blocks(), after_first + 3 + 1);
    let r = open(&path, View::Committed).unwrap();
    assert_eq!(r.objects(), vec![ObjectId(1)]);
    for (f, want) in take2.iter().enumerate() {
        let got = r.read(ObjectId(1), f).unwrap().unwrap();
        assert_eq!(
            bits(&got.low_res_logits),
            bits(&round_logits(&want.low_res_logits)),
            "frame {f}"
        );
    }
    assert!(r.read(ObjectId(7), 2).unwrap().is_none(), "withdrawn");
}

#[test]
fn readers_see_whole_steps_and_skip_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let mut w = TrackCacheWriter::create(&path, &provenance("p1"), layout()).unwrap();
    let r = open(&path, View::Committed).unwrap();
    assert!(!r.is_committed());
    let a = result(1, 0, 1);
    w.commit_state(&[ObjectId(1)], |f, _| (f == 0).then_some(&a))
        .unwrap();
    // A step in progress: one block appended, no commit yet, and half a record after it.
    let b = result(1, 1, 1);
    w.put(ObjectId(1), 1, Some(&b)).unwrap();
    let mut committed = open(&path, View::Committed).unwrap();
    let mut latest = open(&path, View::Latest).unwrap();
    assert!(committed.read(ObjectId(1), 1).unwrap().is_none());
    assert!(latest.read(ObjectId(1), 1).unwrap().is_some());
    let len = std::fs::metadata(&path).unwrap().len();
    let mut raw = OpenOptions::new().append(true).open(&path).unwrap();
    raw.write_all(&[2, 0, 0, 0, 200, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(raw);
    let torn = open(&path, View::Latest).unwrap();
    assert!(torn.read(ObjectId(1), 1).unwrap().is_some());
    // The writer goes on after the tail is cut back (a real writer never leaves one and goes
    // on; it is simulated here).
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len)
        .unwrap();
    w.commit_state(&[ObjectId(1)], |f, _| match f {
        0 => Some(&a),
        1 => Some(&b),
        _ => None,
    })
    .unwrap();
    committed.refresh().unwrap();
    latest.refresh().unwrap();
    assert!(committed.read(ObjectId(1), 1).unwrap().is_some());
    assert_eq!(committed.objects(), vec![ObjectId(1)]);
}

#[test]
fn a_cache_of_other_prompts_is_refused_with_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    TrackCacheWriter::create(&path, &provenance("p1"), layout()).unwrap();
    let mut expected = Expected::from(&provenance("p2"));
    let e = TrackCacheReader::open(&path, &expected, View::Committed).unwrap_err();
    assert!(matches!(e, TrackCacheError::Stale { .. }));
    let message = e.to_string();
    assert!(
        message.contains("the prompts changed (p1 then, p2 now)"),
        "{message}"
    );
    assert!(message.contains("track the clip again"), "{message}");
    // Unchecked fields are not compared.
    expected.prompts = None;
    TrackCacheReader::open(&path, &expected, View::Committed).unwrap();
    expected.model = Some("c".repeat(64));
    let message = TrackCacheReader::open(&path, &expected, View::Committed)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("the model changed (aaaaaaaaaaaa… then, cccccccccccc… now)"),
        "{message}"
    );
}

#[test]
fn damage_truncation_and_replacement_are_sentences_never_wrong_logits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let mut w = TrackCacheWriter::create(&path, &provenance("p1"), layout()).unwrap();
    let results: Vec<FrameResult> = (0..6).map(|f| result(1, f, 1)).collect();
    w.commit_state(&[ObjectId(1)], |f, _| results.get(f))
        .unwrap();
    drop(w);
    let clean = std::fs::read(&path).unwrap();

    // A flipped byte inside the last block's logits: the index is fine, the read is refused.
    let r = open(&path, View::Committed).unwrap();
    let mut bytes = clean.clone();
    let at = bytes.len() - 40;
    bytes[at] ^= 0x55;
    // Written in place (same inode), as damage on disk would be.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    let e = r.read(ObjectId(1), 5).unwrap_err();
    assert!(matches!(e, TrackCacheError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("checksum"), "{e}");
    assert!(r.read(ObjectId(1), 0).is_ok(), "other blocks still read");

    // A damaged record head in the middle: opening says where.
    let mut bytes = clean.clone();
    let header_end = 12 + 12 + u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
    bytes[header_end] = 99;
    std::fs::write(&path, &bytes).unwrap();
    let e = open(&path, View::Committed).unwrap_err();
    assert!(
        matches!(e, TrackCacheError::Corrupt { offset, .. } if offset == header_end as u64),
        "{e}"
    );

    // Truncated while a reader has it open.
    std::fs::write(&path, &clean).unwrap();
    let r = open(&path, View::Committed).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(header_end as u64 + 30)
        .unwrap();
    let e = r.read(ObjectId(1), 3).unwrap_err();
    assert!(matches!(e, TrackCacheError::Truncated { .. }), "{e}");
    // Truncated before opening: a torn tail, nothing committed.
    let r = open(&path, View::Committed).unwrap();
    assert!(!r.is_committed());

    // Replaced while a reader has it open.
    std::fs::write(&path, &clean).unwrap();
    let r = open(&path, View::Committed).unwrap();
    TrackCacheWriter::create(&path, &provenance("p1"), layout()).unwrap();
    let e = r.read(ObjectId(1), 3).unwrap_err();
    assert!(matches!(e, TrackCacheError::Replaced { .. }), "{e}");

    // Not a cache at all; another version.
    std::fs::write(&path, b"hello").unwrap();
    assert!(matches!(
        open(&path, View::Committed),
        Err(TrackCacheError::NotACache { .. })
    ));
    let mut bytes = clean.clone();
    bytes[8] = 9;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        open(&path, View::Committed),
        Err(TrackCacheError::Version { found: 9, .. })
    ));
    // Version 1 (lossless logits) is refused with the sentence that says to track again.
    bytes[8] = 1;
    std::fs::write(&path, &bytes).unwrap();
    let e = open(&path, View::Committed).unwrap_err();
    assert!(
        matches!(
            e,
            TrackCacheError::Version {
                found: 1,
                expected: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("Track the clip again"), "{e}");
    assert!(matches!(
        open(&dir.path().join("none"), View::Committed),
        Err(TrackCacheError::Missing { .. })
    ));
}

#[test]
fn one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let w = TrackCacheWriter::create(&path, &provenance("p1"), layout()).unwrap();
    let e = TrackCacheWriter::create(&path, &provenance("p1"), layout()).unwrap_err();
    assert!(matches!(e, TrackCacheError::Busy { .. }), "{e}");
    drop(w);
    TrackCacheWriter::create(&path, &provenance("p1"), layout()).unwrap();
}

#[test]
fn results_that_do_not_fit_the_layout_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let mut w = TrackCacheWriter::create(&path, &provenance("p1"), layout()).unwrap();
    let e = w.put(ObjectId(1), 6, Some(&result(1, 0, 1))).unwrap_err();
    assert!(e.to_string().contains("the cache is for 6 frames"), "{e}");
    let mut small = result(1, 0, 1);
    small.low_res_logits = Arc::from(vec![0.0f32; 3]);
    assert!(w.put(ObjectId(1), 0, Some(&small)).is_err());
}
