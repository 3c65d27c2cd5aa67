//! Official-format checkpoints loaded in Rust (engine/src/checkpoint): the committed checkpoint of
//! the test architecture (tests/fixtures/checkpoints/sam2.1_hiera_test.pt, saved by PyTorch from
//! the fixture model's seeded weights) becomes, through the bundled graph templates, a model
//! directory whose weights and outputs are bit for bit those of the exporter's model directory
//! made from the same weights (tests/fixtures/models/test); broken or foreign checkpoints are a
//! sentence and leave nothing behind.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sam2_engine::checkpoint::cache::model_dir_for;
use sam2_engine::predictor::{ClipSession, SessionSettings};
use sam2_engine::replay::run_script;
use sam2_engine::{Error, FolderSource, Model, ModelDir, Runtime, Script, Trace};
use sam2_rotoscope_tests::{fixtures_dir, trace_dirs};

fn checkpoint() -> PathBuf {
    fixtures_dir().join("checkpoints/sam2.1_hiera_test.pt")
}

fn templates() -> Vec<PathBuf> {
    vec![fixtures_dir().join("../../bundle/templates")]
}

fn runtime() -> Runtime {
    Runtime::load_default().unwrap().with_intra_threads(Some(1))
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Every output of every step of `script`, as (step, frame, object, logits bits, score bits).
fn outputs(model: &Arc<Model>, trace: &Trace) -> Vec<(usize, usize, u64, Vec<u32>, u32)> {
    let header = trace.header();
    let script = Script::read(trace.script_path().unwrap()).unwrap();
    let source = FolderSource::open(trace.clip_path().unwrap()).unwrap();
    let mut settings = SessionSettings::official(model);
    settings.add_all_frames_to_correct_as_cond = header.predictor.add_all_frames_to_correct_as_cond;
    settings.fill_hole_area = 0;
    let mut session = ClipSession::new(Arc::clone(model), Box::new(source), settings).unwrap();
    let mut all = Vec::new();
    run_script(
        &mut session,
        &script,
        |_, _| std::ops::ControlFlow::Continue(()),
        |step| {
            for frame in &step.frames {
                for out in &frame.objects {
                    if let Some(r) = &out.result {
                        all.push((
                            step.step,
                            frame.frame,
                            out.object.0,
                            r.low_res_logits.iter().map(|v| v.to_bits()).collect(),
                            r.object_score.to_bits(),
                        ));
                    }
                }
            }
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    all
}

#[test]
fn the_test_checkpoint_builds_the_exporters_model_bit_for_bit() {
    let cache = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let dir = model_dir_for(&checkpoint(), &templates(), cache.path()).unwrap();
    let first = started.elapsed();
    let started = std::time::Instant::now();
    let again = model_dir_for(&checkpoint(), &templates(), cache.path()).unwrap();
    eprintln!("built in {first:?}, found again in {:?}", started.elapsed());
    assert_eq!(dir, again);

    let built = ModelDir::open(&dir).unwrap();
    let python = ModelDir::open(fixtures_dir().join("models/test")).unwrap();
    // The weights: the exporter's hash of model.state_dict(), recomputed from the checkpoint.
    assert_eq!(
        built.manifest().weights_sha256,
        python.manifest().weights_sha256
    );
    assert_eq!(built.manifest().family, python.manifest().family);
    assert_eq!(built.manifest().size, python.manifest().size);
    assert_eq!(built.manifest().memory, python.manifest().memory);
    assert_eq!(built.manifest().decoder, python.manifest().decoder);
    assert_eq!(built.manifest().graphs, python.manifest().graphs);
    // The small tensors, byte for byte as numpy wrote them.
    for (name, spec) in &python.manifest().tensors {
        let want = std::fs::read(python.path().join(&spec.file)).unwrap();
        let got = std::fs::read(built.path().join(&built.manifest().tensors[name].file)).unwrap();
        assert_eq!(got, want, "tensor {name}");
    }

    // The graphs: every output of every committed trace of the test model, bit for bit.
    let runtime = runtime();
    let python_hash = python.manifest_sha256().to_string();
    let built = Model::load(built, &runtime).unwrap();
    let python = Model::load(python, &runtime).unwrap();
    let mut compared = 0;
    for dir in trace_dirs().unwrap() {
        let trace = Trace::open(&dir).unwrap();
        if trace.header().model_manifest_sha256 != python_hash {
            continue;
        }
        let want = outputs(&python, &trace);
        let got = outputs(&built, &trace);
        assert!(!want.is_empty());
        assert!(
            got == want,
            "{}: outputs differ between the checkpoint's model and the exporter's",
            dir.display()
        );
        compared += want.len();
    }
    assert!(compared > 100, "only {compared} outputs compared");
}

#[test]
fn a_model_path_may_be_a_checkpoint() {
    let cache = tempfile::tempdir().unwrap();
    let model = ModelDir::open_in(checkpoint(), &templates(), cache.path()).unwrap();
    assert!(model.path().starts_with(cache.path()));
    assert!(matches!(
        model.manifest().source,
        sam2_engine::model::manifest::Source::Checkpoint { .. }
    ));
    // A model directory is still opened as itself.
    let dir = ModelDir::open_in(
        fixtures_dir().join("models/test"),
        &templates(),
        cache.path(),
    )
    .unwrap();
    assert_eq!(dir.path(), fixtures_dir().join("models/test"));
}

#[test]
fn a_truncated_checkpoint_is_a_sentence_and_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(checkpoint()).unwrap();
    let cut = work.path().join("sam2.1_hiera_cut.pt");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let cache = work.path().join("cache");
    let err = model_dir_for(&cut, &templates(), &cache).unwrap_err();
    assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    assert_eq!(files_under(&cache), 0);
}

#[test]
fn a_checkpoint_that_is_not_sam2_is_a_sentence_and_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let err = model_dir_for(
        &fixtures_dir().join("checkpoints/not_sam2.pt"),
        &templates(),
        &cache,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("is not a SAM 2 checkpoint"),
        "{err}"
    );
    assert_eq!(files_under(&cache), 0);

    let text = work.path().join("notes.pt");
    std::fs::write(&text, "not a checkpoint").unwrap();
    let err = model_dir_for(&text, &templates(), &cache).unwrap_err();
    assert!(
        err.to_string().contains("not a PyTorch zip archive"),
        "{err}"
    );
    assert_eq!(files_under(&cache), 0);
}

#[test]
fn a_size_without_a_template_is_a_sentence_and_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let only_sam2 = work.path().join("templates");
    std::fs::create_dir_all(&only_sam2).unwrap();
    sam2_rotoscope_tests::copy_dir(
        &fixtures_dir().join("../../bundle/templates/sam2-test"),
        &only_sam2.join("sam2-test"),
    )
    .unwrap();
    let err = model_dir_for(&checkpoint(), &[only_sam2], &cache).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("SAM 2.1 checkpoint of a size no graph template fits"),
        "{message}"
    );
    assert!(message.contains("Hiera width 16, 5 blocks"), "{message}");
    assert!(message.contains("sam2-test"), "{message}");
    assert_eq!(files_under(&cache), 0);
}
