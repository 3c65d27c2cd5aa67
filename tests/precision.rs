//! Precision fast on the fixture model: its fast set (`models/test/fast`, made by
//! `bundle/exporter/py fast`) loads, runs every fixture script and stays within a stated bound of
//! the exact graphs; a model without a set, with a stale one or with a damaged one refuses fast
//! with a sentence rather than running exact in its place; fast and exact results carry different
//! provenance.
//!
//! The bound here is the fixture's (a shrunk model at 256², random weights); the release bound —
//! no more deviation than the official predictor's bfloat16 autocast shows from its float32 on
//! the same weights and clip — is measured by `./bench.sh` on the 1024² tiny model, where the
//! speed is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sam2_engine::model::fast_set::FAST_SET_MANIFEST;
use sam2_engine::model::{FastSet, FastTarget, GraphSet};
use sam2_engine::replay::run_script;
use sam2_engine::track_cache::{Expected, Provenance};
use sam2_engine::{ClipSession, Error, FolderSource, Model, ModelDir, Precision, Runtime, Script};
use sam2_rotoscope_tests::{copy_dir, fixtures_dir};

/// Largest |low-res logit difference| between fast and exact allowed on these scripts: measured
/// 1.03 with the image encoder in int8 (ONNX Runtime 1.32, x86-64), about twice that for other
/// CPUs' integer kernels. (The official bfloat16 autocast moves the same fixture's logits by at
/// most 0.06: the fast set does not meet the release bound on this model; docs/precision.md.)
const MAX_LOGIT_DIFFERENCE: f32 = 2.0;
/// Largest fraction of low-res mask pixels (logit > 0) allowed to flip: measured 2.15 % (the
/// fixture's random weights leave many logits near 0).
const MAX_FLIPPED: f64 = 0.04;

/// The fixture scripts compared.
const SCRIPTS: [&str; 4] = [
    "correction_kept.json",
    "box.json",
    "mask_prompt.json",
    "occlusion_track.json",
];

fn runtime() -> Runtime {
    Runtime::load_default()
        .unwrap_or_else(|e| panic!("{e}"))
        .with_intra_threads(Some(1))
}

fn fixture_model() -> PathBuf {
    fixtures_dir().join("models").join("test")
}

fn load(dir: &Path, precision: Precision) -> Arc<Model> {
    let opened = ModelDir::open(dir).unwrap_or_else(|e| panic!("{e}"));
    Model::load_at(opened, &runtime(), precision).unwrap_or_else(|e| panic!("{e}"))
}

/// Every low-res logit map the script's steps produce, in order.
fn logits(model: &Arc<Model>, script_path: &Path) -> Vec<Vec<f32>> {
    let script = Script::read(script_path).unwrap_or_else(|e| panic!("{e}"));
    let source = FolderSource::open(script.clip_path().unwrap()).unwrap();
    let settings = sam2_engine::SessionSettings::for_model(model);
    let mut session = ClipSession::new(Arc::clone(model), Box::new(source), settings).unwrap();
    let mut out = Vec::new();
    run_script(
        &mut session,
        &script,
        |_, _| std::ops::ControlFlow::Continue(()),
        |step| {
            for frame in &step.frames {
                for object in &frame.objects {
                    if let Some(result) = &object.result {
                        out.push(result.low_res_logits.to_vec());
                    }
                }
            }
            std::ops::ControlFlow::Continue(())
        },
    )
    .unwrap_or_else(|e| panic!("{}: {e}", script_path.display()));
    out
}

#[test]
fn the_fast_sets_run_every_script_within_the_bound_of_exact() {
    let dir = fixture_model();
    let exact = load(&dir, Precision::Exact);
    assert_eq!(exact.precision(), Precision::Exact);
    // Precision fast on the CPU takes the CPU set.
    let cpu = load(&dir, Precision::Fast);
    assert_eq!(cpu.precision(), Precision::Fast);
    assert_eq!(
        cpu.graph_set().fast().map(FastSet::target),
        Some(FastTarget::Cpu)
    );
    // The GPU set (float16) runs on the CPU provider too, slowly: enough to hold it to the bound.
    let opened = ModelDir::open(&dir).unwrap_or_else(|e| panic!("{e}"));
    let gpu_set = FastSet::open(&opened, FastTarget::Gpu).unwrap_or_else(|e| panic!("{e}"));
    assert!(gpu_set.summary().contains("fp16"), "{}", gpu_set.summary());
    let gpu = Model::load_set(opened, &runtime(), GraphSet::Fast(Box::new(gpu_set)))
        .unwrap_or_else(|e| panic!("{e}"));
    for (target, fast) in [(FastTarget::Cpu, cpu), (FastTarget::Gpu, gpu)] {
        let mut worst = 0.0f32;
        let (mut flipped, mut pixels) = (0usize, 0usize);
        let mut scripts = 0;
        // Clicks, a box, a mask, a correction and occlusion: every kind of step, in a few scripts
        // (a debug build runs each twice).
        for name in SCRIPTS {
            let script = fixtures_dir().join("scripts").join(name);
            let a = logits(&exact, &script);
            let b = logits(&fast, &script);
            assert_eq!(a.len(), b.len(), "{}: output count", script.display());
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.len(), y.len());
                for (p, q) in x.iter().zip(y) {
                    worst = worst.max((p - q).abs());
                    flipped += usize::from((*p > 0.0) != (*q > 0.0));
                }
                pixels += x.len();
            }
            scripts += 1;
        }
        assert!(scripts > 0, "no fixture script ran");
        let fraction = flipped as f64 / pixels.max(1) as f64;
        println!(
            "{target} fast set vs exact over {scripts} scripts: max |Δlogit| {worst}, {flipped} of {pixels} mask pixels flip ({:.4}%)",
            fraction * 100.0
        );
        assert!(
            worst > 0.0,
            "{target}: fast gave the exact logits: the fast set's graphs did not run"
        );
        assert!(
            worst <= MAX_LOGIT_DIFFERENCE,
            "{target}: max |Δlogit| {worst} > {MAX_LOGIT_DIFFERENCE}"
        );
        assert!(
            fraction <= MAX_FLIPPED,
            "{target}: {fraction} of pixels flip > {MAX_FLIPPED}"
        );
    }
}

#[test]
fn fast_and_exact_results_carry_different_provenance() {
    let dir = fixture_model();
    let script_path = fixtures_dir().join("scripts").join("one_click.json");
    let script = Script::read(&script_path).unwrap();
    let provenance = |precision| {
        let model = load(&dir, precision);
        let source = FolderSource::open(script.clip_path().unwrap()).unwrap();
        let settings = sam2_engine::SessionSettings::for_model(&model);
        let session = ClipSession::new(model, Box::new(source), settings).unwrap();
        Provenance::for_session(&session, "frames".into(), "prompts".into())
    };
    let exact = provenance(Precision::Exact);
    let fast = provenance(Precision::Fast);
    // The exact graphs keep the provenance they always had, so earlier caches stay valid.
    assert_eq!(exact.precision, "fp32 on CPU");
    assert_eq!(exact.model, fast.model);
    assert_ne!(exact.precision, fast.precision);
    assert!(
        fast.precision.starts_with("fast set "),
        "{}",
        fast.precision
    );
    let differences = fast.differences(&Expected::from(&exact));
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert!(
        differences[0].contains("the precision or device changed"),
        "{differences:?}"
    );
}

/// A temporary copy of the fixture model.
fn model_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    copy_dir(&fixture_model(), &dir).unwrap();
    (tmp, dir)
}

fn fast_err(dir: &Path) -> (Error, String) {
    let opened = ModelDir::open(dir).unwrap_or_else(|e| panic!("{e}"));
    match Model::load_at(opened, &runtime(), Precision::Fast) {
        Ok(_) => panic!("precision fast must be refused for {}", dir.display()),
        Err(e) => {
            let text = e.to_string();
            (e, text)
        }
    }
}

#[test]
fn a_model_without_a_fast_set_refuses_fast_and_says_how_to_add_one() {
    let (_tmp, dir) = model_copy();
    std::fs::remove_dir_all(dir.join("fast")).unwrap();
    let (err, text) = fast_err(&dir);
    assert!(matches!(err, Error::FastSetMissing { .. }), "{err:?}");
    assert!(text.contains(&dir.display().to_string()), "{text}");
    assert!(text.contains("bundle/exporter/py fast --model"), "{text}");
    assert!(text.contains("precision exact"), "{text}");
    // Exact is untouched by the missing set.
    let exact = load(&dir, Precision::Exact);
    assert_eq!(exact.precision(), Precision::Exact);
}

#[test]
fn a_fast_set_from_another_export_is_refused() {
    let (_tmp, dir) = model_copy();
    // Any change to manifest.json (here a key the engine ignores) is another export.
    let path = dir.join("manifest.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    value["exported_again"] = true.into();
    std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    let (err, text) = fast_err(&dir);
    assert!(matches!(err, Error::FastSetStale { .. }), "{err:?}");
    assert!(text.contains(FAST_SET_MANIFEST), "{text}");
    assert!(text.contains("another export"), "{text}");
}

#[test]
fn a_damaged_fast_graph_is_refused_by_its_hash() {
    let (_tmp, dir) = model_copy();
    let graph = dir.join("fast").join("image_encoder.onnx");
    let mut bytes = std::fs::read(&graph).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&graph, &bytes).unwrap();
    let (err, text) = fast_err(&dir);
    assert!(matches!(err, Error::ModelFileHash { .. }), "{err:?}");
    assert!(text.contains("image_encoder.onnx"), "{text}");
}

#[test]
fn a_fast_set_whose_graph_leaves_the_directory_is_refused() {
    let (_tmp, dir) = model_copy();
    let path = dir.join(FAST_SET_MANIFEST);
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    value["graphs"]["mask_decoder"]["file"] = "../mask_decoder.onnx".into();
    value["graphs"]["mask_decoder"]["precision"] = "int8_dynamic".into();
    std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    let (err, text) = fast_err(&dir);
    assert!(matches!(err, Error::InvalidFastSet { .. }), "{err:?}");
    assert!(text.contains("../mask_decoder.onnx"), "{text}");
    assert!(text.contains("bundle/exporter/py fast"), "{text}");
}
