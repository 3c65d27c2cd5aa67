//! Inputs that used to cost without bound or fail without a sentence: too many clicks on one
//! frame, a truncated ONNX Runtime library, a truncated or corrupt JPEG frame.

use std::sync::Arc;

use sam2_engine::mask_decoder::MAX_PROMPT_POINTS;
use sam2_engine::masklet::Prompt;
use sam2_engine::predictor::{ClipSession, SessionSettings};
use sam2_engine::script::{Label, ObjectId};
use sam2_engine::{Error, FolderSource, Model, Runtime};
use sam2_rotoscope_tests::fixtures_dir;

const OBJ: ObjectId = ObjectId(1);

fn model() -> Arc<Model> {
    let runtime = Runtime::load_default().unwrap().with_intra_threads(Some(1));
    Model::open(fixtures_dir().join("models/test"), &runtime).unwrap()
}

fn shapes_session() -> ClipSession {
    let model = model();
    let settings = SessionSettings::for_model(&model);
    let clip = FolderSource::open(fixtures_dir().join("clips/shapes")).unwrap();
    ClipSession::new(model, Box::new(clip), settings).unwrap()
}

/// `n` clicks spread over the 320×180 shapes frame, alternately positive and negative.
fn clicks(n: usize) -> (Vec<[f64; 2]>, Vec<Label>) {
    let points = (0..n)
        .map(|i| [(i * 37 % 320) as f64, (i * 11 % 180) as f64])
        .collect();
    let labels = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                Label::Positive
            } else {
                Label::Negative
            }
        })
        .collect();
    (points, labels)
}

fn stored_points(session: &ClipSession, frame: usize) -> Option<usize> {
    match session.masklet(OBJ)?.prompt(frame)? {
        Prompt::Points(points) => Some(points.len()),
        _ => None,
    }
}

#[test]
fn clicks_per_frame_and_object_are_bounded() {
    let mut session = shapes_session();
    // At the limit: decoded.
    let (points, labels) = clicks(MAX_PROMPT_POINTS);
    session.add_points(0, OBJ, &points, &labels, true).unwrap();
    assert_eq!(stored_points(&session, 0), Some(MAX_PROMPT_POINTS));

    // One more: refused with a sentence, and the frame keeps its earlier prompt.
    let (points, labels) = clicks(MAX_PROMPT_POINTS + 1);
    let err = session
        .add_points(0, OBJ, &points, &labels, true)
        .unwrap_err();
    assert!(
        matches!(err, Error::TooManyPoints { frame: 0, count, max, .. }
            if count == MAX_PROMPT_POINTS + 1 && max == MAX_PROMPT_POINTS),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("object 1 on frame 0"), "{text}");
    assert!(
        text.contains(&format!("more than the {MAX_PROMPT_POINTS}")),
        "{text}"
    );
    assert_eq!(stored_points(&session, 0), Some(MAX_PROMPT_POINTS));

    // Clicks added to a frame's earlier ones count together.
    let (points, labels) = clicks(200);
    session.add_points(1, OBJ, &points, &labels, true).unwrap();
    let (points, labels) = clicks(MAX_PROMPT_POINTS - 200 + 1);
    let err = session
        .add_points(1, OBJ, &points, &labels, false)
        .unwrap_err();
    assert!(
        matches!(err, Error::TooManyPoints { frame: 1, .. }),
        "{err:?}"
    );
    assert_eq!(stored_points(&session, 1), Some(200));
    session
        .add_points(1, OBJ, &points[1..], &labels[1..], false)
        .unwrap();
    assert_eq!(stored_points(&session, 1), Some(MAX_PROMPT_POINTS));

    // A box is two points.
    let (points, labels) = clicks(MAX_PROMPT_POINTS - 1);
    let err = session
        .add_box(2, OBJ, [10.0, 10.0, 100.0, 100.0], &points, &labels)
        .unwrap_err();
    assert!(
        matches!(err, Error::TooManyPoints { frame: 2, .. }),
        "{err:?}"
    );
    session
        .add_box(
            2,
            OBJ,
            [10.0, 10.0, 100.0, 100.0],
            &points[1..],
            &labels[1..],
        )
        .unwrap();
}

#[test]
fn a_truncated_onnx_runtime_library_is_a_sentence_not_a_crash() {
    // The library that is loaded for real in this process; its copies must never be.
    let library = sam2_engine::model::runtime::default_library_path()
        .canonicalize()
        .unwrap();
    let bytes = std::fs::read(&library).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = library.file_name().unwrap();
    let record = sam2_engine::model::library::record_path(&dir.path().join(name));
    for with_record in [false, true] {
        let copy = dir.path().join(name);
        std::fs::write(&copy, &bytes[..bytes.len() * 2 / 3]).unwrap();
        if with_record {
            let record_json = format!(
                r#"{{"format": "sam2-rotoscope-library-record", "version": 1, "file": "{}", "bytes": {}, "sha256": "{}"}}"#,
                name.to_string_lossy(),
                bytes.len(),
                sam2_engine::model::sha256_hex(&bytes)
            );
            std::fs::write(&record, record_json).unwrap();
        }
        let err = Runtime::load(&copy).unwrap_err();
        assert!(matches!(err, Error::RuntimeDamaged { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&copy.display().to_string()), "{text}");
        assert!(text.contains("damaged"), "{text}");
        assert!(text.contains("fetch-onnxruntime.sh"), "{text}");
        if with_record {
            assert!(text.contains(&format!("says {}", bytes.len())), "{text}");
        } else {
            assert!(text.contains("cut short"), "{text}");
        }
    }
}
