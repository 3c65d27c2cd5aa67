//! The committed fixtures, read by the engine: every model directory opens, verifies and loads into
//! ONNX Runtime with the interface its manifest declares; every script, clip and trace parses and
//! agrees with the others; and damaged copies of a model fail with messages that name the file and
//! the problem.
//!
//! Each test also asserts that there is something to check, so an empty or misplaced fixture tree
//! fails instead of passing vacuously.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sam2_engine::clip::{self, Clip};
use sam2_engine::model::{GraphName, ModelDir, Runtime, runtime, sha256_hex};
use sam2_engine::script::{Interaction, Script};
use sam2_engine::trace::Trace;
use sam2_engine::{Error, FileKind};
use sam2_rotoscope_tests::{
    clip_dirs, copy_dir, fixtures_dir, model_dirs, script_files, trace_dirs,
};

fn some(kind: &str, found: std::io::Result<Vec<PathBuf>>) -> Vec<PathBuf> {
    let found = found.unwrap_or_else(|e| panic!("listing the {kind} fixtures failed: {e}"));
    assert!(
        !found.is_empty(),
        "no {kind} fixtures under {}; the fixture tree is missing or misplaced",
        fixtures_dir().display()
    );
    found
}

fn open_model(dir: &Path) -> ModelDir {
    ModelDir::open(dir).unwrap_or_else(|e| panic!("{e}"))
}

fn runtime() -> Runtime {
    Runtime::load_default()
        .unwrap_or_else(|e| panic!("{e}"))
        .with_intra_threads(Some(1))
}

#[test]
fn every_model_opens_and_verifies() {
    for dir in some("model", model_dirs()) {
        let model = open_model(&dir);
        let m = model.manifest();
        let c = m.hidden_dim as usize;
        let t = model.tensors();
        assert_eq!(t.no_mem_embed.shape(), [1, 1, c], "{}", dir.display());
        assert_eq!(t.no_obj_ptr.shape(), [1, c], "{}", dir.display());
        assert_eq!(
            t.mask_downsample_weight.shape(),
            [1, 1, 4, 4],
            "{}",
            dir.display()
        );
        assert_eq!(t.mask_downsample_bias.shape(), [1], "{}", dir.display());
        assert!(
            t.no_mem_embed
                .iter()
                .chain(t.no_obj_ptr.iter())
                .all(|v| v.is_finite()),
            "{}: tensors must be finite",
            dir.display()
        );
        let bytes = std::fs::read(dir.join("manifest.json")).unwrap();
        assert_eq!(model.manifest_sha256(), sha256_hex(&bytes));
        assert_eq!(model.manifest_sha256().len(), 64);
    }
}

#[test]
fn every_model_loads_sessions_that_match_its_manifest_and_run() {
    let runtime = runtime();
    for dir in some("model", model_dirs()) {
        let model = open_model(&dir);
        let mut sessions = model
            .load_sessions(&runtime)
            .unwrap_or_else(|e| panic!("{e}"));
        for name in GraphName::ALL {
            let graph = sessions.get_mut(name);
            assert_eq!(graph.name(), name);
            assert_eq!(graph.path(), model.graph_path(name));
            // On zeros: an image for the encoder, one memory frame and one pointer for memory
            // attention, one point for the decoder; every output must have the declared shape.
            graph
                .run_on_zeros()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

#[test]
fn every_clip_lists_frames_of_one_size() {
    for dir in some("clip", clip_dirs()) {
        let clip = Clip::open(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert!(!clip.is_empty());
        let [w, h] = clip.video_size().unwrap_or_else(|e| panic!("{e}"));
        assert!(w > 0 && h > 0, "{}", dir.display());
        let numbers: Vec<u64> = clip.frames().iter().map(|f| f.number).collect();
        assert!(
            numbers.windows(2).all(|p| p[0] < p[1]),
            "{}: {numbers:?}",
            dir.display()
        );
    }
}

#[test]
fn every_script_parses_and_fits_its_clip() {
    for path in some("script", script_files()) {
        let script = Script::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !script.interactions.is_empty(),
            "{} has no interactions",
            path.display()
        );
        let Some(clip_path) = script.clip_path() else {
            continue;
        };
        let clip = Clip::open(&clip_path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        script
            .check_frames(&path, clip.len())
            .unwrap_or_else(|e| panic!("{e}"));
        let video_size = clip.video_size().unwrap_or_else(|e| panic!("{e}"));
        for interaction in &script.interactions {
            if let Interaction::AddMask { mask, .. } = interaction {
                let mask = script.resolve(mask);
                let size =
                    clip::image_size(&mask).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(
                    size,
                    video_size,
                    "{}: mask {} must have the clip's size",
                    path.display(),
                    mask.display()
                );
            }
        }
    }
}

#[test]
fn every_trace_is_consistent_with_its_model_clip_and_script() {
    let models: BTreeMap<String, ModelDir> = some("model", model_dirs())
        .iter()
        .map(|dir| {
            let model = open_model(dir);
            (model.manifest_sha256().to_string(), model)
        })
        .collect();
    for dir in some("trace", trace_dirs()) {
        let trace = Trace::open(&dir).unwrap_or_else(|e| panic!("{e}"));
        let header = trace.header();
        let name = dir.display();
        let model = models.get(&header.model_manifest_sha256).unwrap_or_else(|| {
            panic!(
                "{name}: made with the model whose manifest has SHA-256 {}, which is not among the fixture models",
                header.model_manifest_sha256
            )
        });
        let low_res = model.manifest().low_res_size() as usize;
        if let Some(image_size) = header.image_size {
            assert_eq!(
                image_size,
                model.manifest().image_size,
                "{name}: image_size"
            );
        }

        let clip_path = trace
            .clip_path()
            .unwrap_or_else(|| panic!("{name} names no clip"));
        let clip = Clip::open(&clip_path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(clip.len(), header.num_frames, "{name}: num_frames");
        let [w, h] = clip.video_size().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            [w as usize, h as usize],
            header.video_size,
            "{name}: video_size"
        );

        let script_path = trace
            .script_path()
            .unwrap_or_else(|| panic!("{name} names no script"));
        let script = Script::read(&script_path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            script.interactions.len(),
            header.steps.len(),
            "{name}: one step per interaction"
        );

        for (index, (step, interaction)) in
            header.steps.iter().zip(&script.interactions).enumerate()
        {
            assert_eq!(step.op, interaction.op(), "{name}: step {index}");
            let outputs = trace.read_step(index).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(outputs.len(), step.outputs, "{name}: step {index}");
            if outputs.is_empty() {
                continue;
            }
            assert_eq!(
                outputs.low_res_size(),
                low_res,
                "{name}: step {index}: low_res_logits must be S/4 = {low_res} square"
            );
            // A prompt outputs on the prompted frame only.
            if let Some(frame) = interaction.frame() {
                assert!(
                    outputs.frame.iter().all(|&f| f == frame as i64),
                    "{name}: step {index} ({}) outputs frames {:?}, not only frame {frame}",
                    step.op,
                    outputs.frame
                );
            }
            for k in 0..outputs.len() {
                assert!(
                    outputs.object_id(k).is_some(),
                    "{name}: step {index} output {k}"
                );
            }
        }
    }
}

// ---- Damaged copies of a model -------------------------------------------------------------

/// A temporary copy of the first fixture model.
fn model_copy() -> (tempfile::TempDir, PathBuf) {
    let source = some("model", model_dirs()).remove(0);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    copy_dir(&source, &dir).unwrap();
    (tmp, dir)
}

fn open_err(dir: &Path) -> (Error, String) {
    match ModelDir::open(dir) {
        Ok(_) => panic!("opening the damaged model {} must fail", dir.display()),
        Err(e) => {
            let text = e.to_string();
            (e, text)
        }
    }
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
}

fn graph_file(dir: &Path, name: GraphName) -> PathBuf {
    let value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    dir.join(value["graphs"][name.as_str()]["file"].as_str().unwrap())
}

#[test]
fn truncated_graph_file_is_reported_as_truncated() {
    let (_tmp, dir) = model_copy();
    let file = graph_file(&dir, GraphName::ImageEncoder);
    let bytes = std::fs::read(&file).unwrap();
    let full = bytes.len();
    std::fs::write(&file, &bytes[..full / 2]).unwrap();
    let (err, text) = open_err(&dir);
    assert!(matches!(err, Error::ModelFileTruncated { .. }), "{err:?}");
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(text.contains("truncated"), "{text}");
    assert!(
        text.contains(&format!("expected {full} bytes, found {}", full / 2)),
        "{text}"
    );
}

#[test]
fn flipped_byte_is_reported_as_hash_mismatch() {
    let (_tmp, dir) = model_copy();
    let file = graph_file(&dir, GraphName::MaskDecoder);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let (err, text) = open_err(&dir);
    let Error::ModelFileHash {
        actual, expected, ..
    } = &err
    else {
        panic!("expected ModelFileHash, got {err:?}");
    };
    assert_eq!(*actual, sha256_hex(&bytes));
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(
        text.contains("SHA-256") && text.contains(actual) && text.contains(expected),
        "{text}"
    );
}

#[test]
fn missing_file_is_reported_as_missing() {
    let (_tmp, dir) = model_copy();
    let file = dir.join("tensors").join("no_obj_ptr.npy");
    assert!(
        file.is_file(),
        "the fixture model must have {}",
        file.display()
    );
    std::fs::remove_file(&file).unwrap();
    let (err, text) = open_err(&dir);
    assert!(matches!(err, Error::ModelFileMissing { .. }), "{err:?}");
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(text.contains("does not exist"), "{text}");
}

#[test]
fn unknown_manifest_format_is_refused() {
    let (_tmp, dir) = model_copy();
    edit_manifest(&dir, |m| m["format"] = "sam2-rotoscope-trace".into());
    let (err, text) = open_err(&dir);
    assert!(
        matches!(
            err,
            Error::UnknownFormat {
                kind: FileKind::Manifest,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        text.contains(&dir.join("manifest.json").display().to_string()),
        "{text}"
    );
    assert!(text.contains("\"sam2-rotoscope-trace\""), "{text}");
    assert!(text.contains("\"sam2-rotoscope-model\""), "{text}");
}

#[test]
fn newer_manifest_version_is_refused() {
    let (_tmp, dir) = model_copy();
    edit_manifest(&dir, |m| m["version"] = 2.into());
    let (err, text) = open_err(&dir);
    assert!(
        matches!(
            err,
            Error::NewerVersion {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        text.contains(&dir.join("manifest.json").display().to_string()),
        "{text}"
    );
    assert!(text.contains("version 2"), "{text}");
}

#[test]
fn manifest_off_the_documented_interface_is_refused() {
    let (_tmp, dir) = model_copy();
    edit_manifest(&dir, |m| {
        m["graphs"]["mask_decoder"]["inputs"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .filter(|v| v["name"] == "point_labels")
            .for_each(|v| v["dtype"] = "int64".into());
    });
    let (err, text) = open_err(&dir);
    assert!(matches!(err, Error::InvalidManifest { .. }), "{err:?}");
    assert!(
        text.contains("point_labels") && text.contains("int64"),
        "{text}"
    );
}

#[test]
fn behaviour_the_engine_does_not_implement_is_refused_at_open() {
    for (section, key, value) in [
        ("memory", "non_overlap_masks_for_mem_enc", true),
        ("memory", "directly_add_no_mem_embed", false),
        ("predictor", "non_overlap_masks", true),
        ("predictor", "clear_non_cond_mem_around_input", true),
    ] {
        let (_tmp, dir) = model_copy();
        edit_manifest(&dir, |m| m[section][key] = value.into());
        let (err, text) = open_err(&dir);
        let setting = format!("{section}.{key}");
        assert!(
            matches!(&err, Error::UnsupportedBehaviour { setting: s, .. } if *s == setting),
            "{err:?}"
        );
        assert!(
            text.contains(&setting) && text.contains("manifest.json"),
            "{text}"
        );
    }
}

#[test]
fn manifest_path_leaving_the_directory_is_refused() {
    let (_tmp, dir) = model_copy();
    edit_manifest(&dir, |m| {
        m["files"]["../outside.onnx"] = serde_json::json!({"sha256": "0".repeat(64), "bytes": 1});
    });
    let (err, text) = open_err(&dir);
    assert!(matches!(err, Error::InvalidManifest { .. }), "{err:?}");
    assert!(text.contains("\"../outside.onnx\""), "{text}");
}

#[test]
fn graph_that_differs_from_its_manifest_is_refused() {
    // A doc-conforming manifest whose image encoder file is really the memory encoder, with the
    // hash updated: only the session-level check can see it.
    let (_tmp, dir) = model_copy();
    let encoder = graph_file(&dir, GraphName::ImageEncoder);
    std::fs::copy(graph_file(&dir, GraphName::MemoryEncoder), &encoder).unwrap();
    let bytes = std::fs::read(&encoder).unwrap();
    let key = encoder.file_name().unwrap().to_str().unwrap().to_string();
    edit_manifest(&dir, |m| {
        m["files"][&key]["sha256"] = sha256_hex(&bytes).into();
        m["files"][&key]["bytes"] = bytes.len().into();
    });
    let model = open_model(&dir);
    let err = model.load_sessions(&runtime()).map(|_| ());
    let Err(err @ Error::GraphMismatch { .. }) = err else {
        panic!("expected GraphMismatch, got {err:?}");
    };
    let text = err.to_string();
    assert!(text.contains(&encoder.display().to_string()), "{text}");
    assert!(text.contains("\"image\""), "{text}");
}

#[test]
fn missing_runtime_library_names_the_path_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("libonnxruntime.so");
    let err = Runtime::load(&path).map(|_| ());
    let Err(err @ Error::RuntimeMissing { .. }) = err else {
        panic!("expected RuntimeMissing, got {err:?}");
    };
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("bundle/fetch-onnxruntime.sh"), "{text}");
    assert!(text.contains(runtime::ORT_DYLIB_ENV), "{text}");
}

#[test]
fn a_file_that_is_not_onnx_runtime_is_refused() {
    // Load the real library first: a second, different library must be refused whichever test
    // ran first, and a file that is no library must never reach dlopen as a success.
    let real = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("libonnxruntime.so");
    std::fs::write(&path, b"not a shared library").unwrap();
    let err = Runtime::load(&path).map(|_| ());
    let Err(err) = err else {
        panic!("{} must not load as ONNX Runtime", path.display());
    };
    assert!(
        matches!(
            err,
            Error::RuntimeAlreadyLoaded { .. }
                | Error::RuntimeLoad { .. }
                | Error::RuntimeDamaged { .. }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    // The same library again is fine.
    let again = Runtime::load(real.library_path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.library_path(), real.library_path());
}
