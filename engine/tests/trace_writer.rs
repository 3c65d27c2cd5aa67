//! The trace writer round trip: a real replay of fixture scripts, written with
//! `trace_writer::TraceWriter`, read back with `Trace::open`, matches the committed reference
//! traces at the parity tolerances — so a trace the engine writes means what a reference trace
//! means, and the same reader compares them.

// Test code unwraps, panics and indexes on purpose (clippy.toml allows it inside #[test] functions;
// the helpers here are test code too).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use common::{compare_traces, fixtures_dir, model_for, reference_settings};
use sam2_engine::predictor::{ClipSession, SessionSettings};
use sam2_engine::replay::run_script;
use sam2_engine::staged_dir::Existing;
use sam2_engine::trace_writer::{TraceInfo, TraceWriter};
use sam2_engine::{FolderSource, Model, Runtime, Script, Trace};

/// A reset (a step without a file), a removed object, box and mask prompts, and corrections
/// kept: every kind of step the writer sees. engine/cli/tests/cli.rs covers every fixture script.
const TRACES: [&str; 3] = ["reset", "three_objects", "correction_kept"];

#[test]
fn a_trace_written_from_a_replay_reads_back_and_matches_its_reference() {
    // One thread per operator: runs repeat bit for bit (see tests/parity.rs).
    let runtime = Runtime::load_default().unwrap().with_intra_threads(Some(1));
    let mut models: HashMap<String, Arc<Model>> = HashMap::new();
    for name in TRACES {
        let reference = Trace::open(fixtures_dir().join("traces").join(name)).unwrap();
        let header = reference.header();
        let model = models
            .entry(header.model_manifest_sha256.clone())
            .or_insert_with(|| {
                Model::open(model_for(&header.model_manifest_sha256), &runtime).unwrap()
            })
            .clone();
        let script_path = reference.script_path().unwrap();
        let clip_path = reference.clip_path().unwrap();
        let script = Script::read(&script_path).unwrap();
        let wanted = reference_settings(&reference);
        let mut settings = SessionSettings::official(&model);
        if let Some(keep) = wanted.keep_corrections {
            settings.add_all_frames_to_correct_as_cond = keep;
        }
        if !wanted.fill_hole_applied {
            settings.fill_hole_area = 0;
        }
        let source = FolderSource::open(&clip_path).unwrap();
        let mut session = ClipSession::new(model, Box::new(source), settings).unwrap();

        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("trace");
        let mut info = TraceInfo::for_session(&session, &runtime);
        info.clip = Some(clip_path.clone());
        info.script = Some(script_path.clone());
        let mut writer = TraceWriter::create(&target, info, Existing::Refuse).unwrap();
        run_script(
            &mut session,
            &script,
            |_, _| ControlFlow::Continue(()),
            |step| {
                writer.write_step(step).unwrap();
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        assert!(
            !target.exists(),
            "{name}: the trace appears only when finished"
        );
        assert_eq!(writer.finish().unwrap(), target);

        let ours = Trace::open(&target).unwrap();
        let compared = compare_traces(&ours, &reference);
        assert_eq!(
            compared.outputs,
            header.steps.iter().map(|s| s.outputs).sum::<usize>()
        );
        assert!(compared.masks_checked > 0);
        // The paths in trace.json lead back to the same clip and script.
        let same = |a: Option<std::path::PathBuf>, b: &std::path::Path| {
            assert_eq!(
                a.unwrap().canonicalize().unwrap(),
                b.canonicalize().unwrap(),
                "{name}"
            );
        };
        same(ours.clip_path(), &clip_path);
        same(ours.script_path(), &script_path);
        let ours = ours.header();
        assert!(
            ours.producer.starts_with("sam2-rotoscope engine ") && ours.producer.ends_with(" CPU)"),
            "{}",
            ours.producer
        );
        assert!(!ours.predictor.fill_hole_applied);
        assert_eq!(
            ours.predictor.add_all_frames_to_correct_as_cond,
            header.predictor.add_all_frames_to_correct_as_cond
        );
        // Nothing but the trace is left in the folder: no staging folder.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
        eprintln!(
            "{name:<16} {:3} outputs, max |Δlogit| {:.2e}, {} mask pixels compared",
            compared.outputs, compared.worst_logit, compared.masks_checked
        );
    }
}
