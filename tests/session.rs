//! The clip session's behaviour beyond parity: corrections that stick, what a prompt invalidates,
//! the bounded memory bank, the frame cache, image mode, and bad input as sentences.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use sam2_engine::frame_cache::DEFAULT_STREAMED_FRAMES;
use sam2_engine::predictor::{ClipSession, Propagation, PropagationEnd, SessionSettings};
use sam2_engine::script::{Label, ObjectId};
use sam2_engine::{Direction, Error, FolderSource, FrameSource, Model, RgbFrame, Runtime};
use sam2_rotoscope_tests::fixtures_dir;

fn model() -> Arc<Model> {
    let runtime = Runtime::load_default().unwrap().with_intra_threads(Some(1));
    Model::open(fixtures_dir().join("models/test"), &runtime).unwrap()
}

fn clip(name: &str) -> Box<dyn FrameSource> {
    Box::new(FolderSource::open(fixtures_dir().join("clips").join(name)).unwrap())
}

fn session(name: &str, settings: impl FnOnce(&mut SessionSettings)) -> ClipSession {
    let model = model();
    let mut s = SessionSettings::for_model(&model);
    settings(&mut s);
    ClipSession::new(model, clip(name), s).unwrap()
}

fn propagate(session: &mut ClipSession, request: Propagation) -> usize {
    let mut frames = 0;
    let end = session
        .propagate(request, |_| {
            frames += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(end, PropagationEnd::Completed { frames });
    frames
}

fn logits(session: &ClipSession, frame: usize, object: u64) -> Vec<f32> {
    session
        .result(frame, ObjectId(object))
        .unwrap()
        .low_res_logits
        .to_vec()
}

const OBJ: ObjectId = ObjectId(1);

/// A procedural clip: a disk moving right over a gradient, any length.
struct Moving {
    frames: usize,
    fail_at: Option<usize>,
    wrong_size_at: Option<usize>,
}

impl FrameSource for Moving {
    fn num_frames(&self) -> usize {
        self.frames
    }
    fn video_size(&self) -> (u32, u32) {
        (160, 90)
    }
    fn frame(&mut self, index: usize) -> sam2_engine::Result<RgbFrame> {
        if self.fail_at == Some(index) {
            return Err(Error::FrameSource {
                frame: index,
                message: "the host could not render the source at that time".into(),
            });
        }
        let (w, h) = if self.wrong_size_at == Some(index) {
            (80, 45)
        } else {
            (160, 90)
        };
        let cx = 20.0 + (index % 100) as f32 * 1.2;
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let inside = (x as f32 - cx).powi(2) + (y as f32 - 45.0).powi(2) < 300.0;
                let v = if inside {
                    [220, 60, 40]
                } else {
                    [(x * 255 / w) as u8, 100, (y * 255 / h) as u8]
                };
                data.extend_from_slice(&v);
            }
        }
        Ok(RgbFrame {
            width: w as u32,
            height: h as u32,
            data,
        })
    }
}

#[test]
fn a_correction_sticks_through_the_next_propagation_by_default() {
    let correction = |s: &mut ClipSession| {
        s.add_points(0, OBJ, &[[60.0, 80.0]], &[Label::Positive], true)
            .unwrap();
        propagate(s, Propagation::default());
        let after_click = s
            .add_points(
                6,
                OBJ,
                &[[180.0, 80.0], [150.0, 95.0]],
                &[Label::Positive, Label::Negative],
                true,
            )
            .unwrap();
        let clicked = after_click.objects[0]
            .result
            .as_ref()
            .unwrap()
            .low_res_logits
            .to_vec();
        propagate(s, Propagation::default());
        clicked
    };
    let mut ours = session("crossing", |_| {});
    let clicked = correction(&mut ours);
    assert_eq!(
        logits(&ours, 6, 1),
        clicked,
        "our default keeps the corrected frame as the artist left it"
    );

    let mut official = session("crossing", |s| s.add_all_frames_to_correct_as_cond = false);
    let clicked = correction(&mut official);
    let recomputed = logits(&official, 6, 1);
    let diff = recomputed
        .iter()
        .zip(&clicked)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        diff > 1e-2,
        "the official default recomputes frame 6 without the correction (diff {diff})"
    );
}

#[test]
fn a_prompt_invalidates_only_later_tracked_frames_and_keeps_other_prompts() {
    let mut s = session("shapes", |_| {});
    s.add_points(0, OBJ, &[[70.0, 90.0]], &[Label::Positive], true)
        .unwrap();
    s.add_points(8, OBJ, &[[166.0, 88.0]], &[Label::Positive], true)
        .unwrap();
    propagate(&mut s, Propagation::default());
    assert!((0..10).all(|f| !s.is_stale(f, OBJ)));
    let before: Vec<Vec<f32>> = (0..10).map(|f| logits(&s, f, 1)).collect();

    s.add_points(4, OBJ, &[[118.0, 92.0]], &[Label::Positive], true)
        .unwrap();
    let stale: Vec<usize> = (0..10).filter(|&f| s.is_stale(f, OBJ)).collect();
    assert_eq!(stale, vec![5, 6, 7, 8, 9]);
    let masklet = s.masklet(OBJ).unwrap();
    assert_eq!(
        masklet.prompted_frames(),
        vec![0, 4, 8],
        "the other frames' prompts are kept"
    );
    for f in [0, 1, 2, 3, 5, 9] {
        assert_eq!(
            logits(&s, f, 1),
            before[f],
            "frame {f} still shows its result until re-tracked"
        );
    }
    propagate(
        &mut s,
        Propagation {
            start_frame: Some(4),
            ..Default::default()
        },
    );
    assert!((0..10).all(|f| !s.is_stale(f, OBJ)));
}

#[test]
fn the_memory_bank_stays_bounded_and_dropped_memories_are_rebuilt_exactly() {
    let model = model();
    let settings = SessionSettings::for_model(&model);
    let source = Moving {
        frames: 60,
        fail_at: None,
        wrong_size_at: None,
    };
    let mut s = ClipSession::new(Arc::clone(&model), Box::new(source), settings.clone()).unwrap();
    s.add_points(0, OBJ, &[[20.0, 45.0]], &[Label::Positive], true)
        .unwrap();
    propagate(&mut s, Propagation::default());
    let held = s.masklet(OBJ).unwrap().memories_held();
    let reach = model.manifest().memory.num_maskmem as usize;
    assert!(
        held <= 1 + reach + 1,
        "{held} memories held after 60 frames"
    );
    assert!(
        s.frame_cache().len() <= 10,
        "{} frames cached after a propagation",
        s.frame_cache().len()
    );

    // Re-track 20..30 in reverse: frames 21..26 lost their memories and must be rebuilt, giving
    // exactly what a session that never dropped them gives (same inputs, same graphs).
    let rebuilt_before = s.stats().memories_rebuilt;
    propagate(
        &mut s,
        Propagation {
            start_frame: Some(30),
            direction: Direction::Reverse,
            max_frames: Some(10),
        },
    );
    assert!(s.stats().memories_rebuilt > rebuilt_before);
    let reference = {
        let mut keep = settings;
        keep.keep_all_memories = true;
        let source = Moving {
            frames: 60,
            fail_at: None,
            wrong_size_at: None,
        };
        let mut r = ClipSession::new(model, Box::new(source), keep).unwrap();
        r.add_points(0, OBJ, &[[20.0, 45.0]], &[Label::Positive], true)
            .unwrap();
        propagate(&mut r, Propagation::default());
        assert_eq!(r.masklet(OBJ).unwrap().memories_held(), 60);
        propagate(
            &mut r,
            Propagation {
                start_frame: Some(30),
                direction: Direction::Reverse,
                max_frames: Some(10),
            },
        );
        assert_eq!(r.stats().memories_rebuilt, 0);
        r
    };
    for f in 20..=30 {
        let (a, b) = (logits(&s, f, 1), logits(&reference, f, 1));
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert_eq!(
            diff, 0.0,
            "frame {f}: a rebuilt memory changed the result by {diff}"
        );
    }
}

/// A 24-frame session: a click on frame 0, Track Forward, a correction click on frame 12 and
/// Track Forward again — the re-track case of the bench.
fn retrack(disk: Option<sam2_engine::frame_cache::DiskCacheSettings>) -> ClipSession {
    let model = model();
    let settings = SessionSettings {
        frame_cache_disk: disk,
        ..SessionSettings::for_model(&model)
    };
    let source = Moving {
        frames: 24,
        fail_at: None,
        wrong_size_at: None,
    };
    let mut s = ClipSession::new(model, Box::new(source), settings).unwrap();
    s.add_points(0, OBJ, &[[20.0, 45.0]], &[Label::Positive], true)
        .unwrap();
    propagate(&mut s, Propagation::default());
    assert_eq!(s.stats().image_encoder_runs, 24);
    s.add_points(
        12,
        OBJ,
        &[[34.0, 45.0], [90.0, 20.0]],
        &[Label::Positive, Label::Negative],
        true,
    )
    .unwrap();
    propagate(
        &mut s,
        Propagation {
            start_frame: Some(12),
            ..Propagation::default()
        },
    );
    s
}

#[test]
fn re_tracking_reads_encoder_features_back_from_disk_bit_for_bit() {
    let parent = tempfile::tempdir().unwrap();
    let on_disk = retrack(Some(sam2_engine::frame_cache::DiskCacheSettings {
        budget_bytes: 1 << 30,
        parent: parent.path().to_path_buf(),
    }));
    assert_eq!(
        on_disk.stats().image_encoder_runs,
        24,
        "frames already seen are not encoded again"
    );
    assert!(on_disk.stats().frame_cache_disk_reads >= 4);
    let folder = on_disk
        .frame_cache()
        .disk()
        .and_then(|d| d.folder())
        .unwrap()
        .to_path_buf();
    assert!(folder.starts_with(parent.path()));

    let without = retrack(None);
    assert!(without.stats().image_encoder_runs > 24);
    assert_eq!(without.stats().frame_cache_disk_reads, 0);
    // A disk tier that cannot be written degrades to encoding again.
    let blocked = parent.path().join("a-file");
    std::fs::write(&blocked, b"not a folder").unwrap();
    let unwritable = retrack(Some(sam2_engine::frame_cache::DiskCacheSettings {
        budget_bytes: 1 << 30,
        parent: blocked,
    }));
    assert!(unwritable.frame_cache().disk().unwrap().is_off());
    assert_eq!(
        unwritable.stats().image_encoder_runs,
        without.stats().image_encoder_runs
    );
    for f in 0..24 {
        let reference = logits(&without, f, 1);
        assert_eq!(logits(&on_disk, f, 1), reference, "frame {f}");
        assert_eq!(logits(&unwritable, f, 1), reference, "frame {f}");
    }
    drop(on_disk);
    assert!(!folder.exists(), "the session's folder goes with it");
}

#[test]
fn clicks_on_an_encoded_frame_and_revisits_cost_no_encoder_run() {
    let mut s = session("shapes", |_| {});
    s.prepare_frame(3).unwrap();
    let encoded = s.stats().image_encoder_runs;
    s.add_points(3, OBJ, &[[106.0, 92.0]], &[Label::Positive], true)
        .unwrap();
    s.add_points(3, OBJ, &[[150.0, 140.0]], &[Label::Negative], false)
        .unwrap();
    assert_eq!(s.stats().image_encoder_runs, encoded);
    assert_eq!(s.stats().mask_decoder_runs, 2);
    propagate(&mut s, Propagation::default());
    let after = s.stats();
    for f in 3..10 {
        assert!(s.result(f, OBJ).is_some());
    }
    assert_eq!(s.stats(), after, "reading tracked frames runs nothing");
}

#[test]
fn image_mode_gives_three_candidates_and_picks_the_best_predicted_iou() {
    let mut s = session("shapes", |_| {});
    let out = s
        .add_points(2, OBJ, &[[94.0, 93.0]], &[Label::Positive], true)
        .unwrap();
    let result = out.objects[0].result.as_ref().unwrap();
    let candidates = result
        .candidates
        .as_ref()
        .expect("a clicked frame carries its candidates");
    assert_eq!(candidates.logits.shape(), &[3, 64, 64]);
    let best = (0..3)
        .max_by(|&a, &b| candidates.ious[a].total_cmp(&candidates.ious[b]))
        .unwrap();
    assert_eq!(
        candidates.chosen_iou, candidates.ious[best],
        "one click: multimask, best predicted IoU"
    );
    let chosen: Vec<f32> = candidates
        .logits
        .index_axis(ndarray::Axis(0), best)
        .iter()
        .copied()
        .collect();
    assert_eq!(result.low_res_logits.to_vec(), chosen);
}

#[test]
fn bad_input_is_a_sentence_not_a_panic() {
    let mut s = session("shapes", |_| {});
    let e = s
        .add_points(10, OBJ, &[[5.0, 5.0]], &[Label::Positive], true)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Frame 10 is outside the clip, which has 10 frames (0–9)."
    );
    let e = s
        .add_points(0, OBJ, &[[400.0, 5.0]], &[Label::Positive], true)
        .unwrap_err();
    assert!(e.to_string().contains("outside the 320×180 image"), "{e}");
    let e = s.add_points(0, OBJ, &[[5.0, 5.0]], &[], true).unwrap_err();
    assert!(e.to_string().contains("one label per point"), "{e}");
    let e = s.add_mask(0, OBJ, &[true; 10]).unwrap_err();
    assert!(e.to_string().contains("the mask has 10 pixels"), "{e}");
    let e = s
        .propagate(Propagation::default(), |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert!(e.to_string().starts_with("Nothing to track yet"), "{e}");
    let e = s.remove_object(ObjectId(42)).unwrap_err();
    assert_eq!(e.to_string(), "There is no object 42 in this session.");
    let e = s
        .propagate(
            Propagation {
                start_frame: Some(99),
                ..Default::default()
            },
            |_| ControlFlow::Continue(()),
        )
        .unwrap_err();
    assert!(matches!(e, Error::FrameOutOfRange { frame: 99, .. }));

    // A frame source that fails, or hands over a frame of another size.
    let model = model();
    let settings = SessionSettings::for_model(&model);
    let mut failing = ClipSession::new(
        Arc::clone(&model),
        Box::new(Moving {
            frames: 5,
            fail_at: Some(2),
            wrong_size_at: Some(3),
        }),
        settings.clone(),
    )
    .unwrap();
    failing
        .add_points(0, OBJ, &[[20.0, 45.0]], &[Label::Positive], true)
        .unwrap();
    let e = failing
        .propagate(Propagation::default(), |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Frame 2 could not be read: the host could not render the source at that time."
    );
    let e = failing
        .add_points(3, OBJ, &[[20.0, 45.0]], &[Label::Positive], true)
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Frame 3 could not be read: it is 80×45"),
        "{e}"
    );
    // The prompt on frame 0 survived both failures.
    assert_eq!(failing.masklet(OBJ).unwrap().prompted_frames(), vec![0, 3]);

    let e = ClipSession::new(
        model,
        Box::new(Moving {
            frames: 0,
            fail_at: None,
            wrong_size_at: None,
        }),
        settings,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "The clip has no frames; there is nothing to track."
    );
    let e = FolderSource::open(PathBuf::from("/nonexistent/clip")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/clip"), "{e}");
}

#[test]
fn a_propagation_can_be_cancelled_and_resumed() {
    let mut s = session("shapes", |_| {});
    s.add_points(0, OBJ, &[[70.0, 90.0]], &[Label::Positive], true)
        .unwrap();
    let mut seen = 0;
    let end = s
        .propagate(Propagation::default(), |_| {
            seen += 1;
            if seen == 4 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(end, PropagationEnd::Cancelled { frames: 4 });
    assert!(s.result(3, OBJ).is_some() && s.result(4, OBJ).is_none());
    propagate(
        &mut s,
        Propagation {
            start_frame: Some(3),
            ..Default::default()
        },
    );
    assert!(s.result(9, OBJ).is_some());
}

#[test]
fn a_session_moved_to_another_thread_and_sessions_sharing_a_model_track_as_on_one_thread() {
    // Hosts render on threads of their own: a session is prompted on one thread and propagated
    // on another, while other sessions run the same model (and so its locked graphs) at once.
    let model = model();
    let prompted = |model: &Arc<Model>| {
        let mut s = ClipSession::new(
            Arc::clone(model),
            clip("shapes"),
            SessionSettings::for_model(model),
        )
        .unwrap();
        s.add_points(0, OBJ, &[[70.0, 90.0]], &[Label::Positive], true)
            .unwrap();
        s
    };
    let tracked = |mut s: ClipSession| {
        propagate(&mut s, Propagation::default());
        let frames: Vec<Vec<f32>> = (0..s.num_frames()).map(|f| logits(&s, f, 1)).collect();
        (s, frames)
    };
    let (_, alone) = tracked(prompted(&model));

    let moved = prompted(&model);
    let others: Vec<_> = (0..2)
        .map(|_| {
            let model = Arc::clone(&model);
            std::thread::spawn(move || tracked(prompted(&model)).1)
        })
        .collect();
    let (back, on_thread) = std::thread::spawn(move || tracked(moved)).join().unwrap();
    assert_eq!(on_thread, alone, "a session moved to another thread");
    for other in others {
        assert_eq!(other.join().unwrap(), alone, "a session sharing the model");
    }
    // The session came back with its results.
    assert_eq!(logits(&back, 9, 1), alone[9]);
}

#[test]
fn memories_are_stored_in_the_manifests_storage_dtype() {
    // float32 storage skips the official bf16 rounding: the same track to within that rounding,
    // with memories twice the bytes.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    sam2_rotoscope_tests::copy_dir(&fixtures_dir().join("models/test"), &dir).unwrap();
    let path = dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(manifest["memory"]["memory_storage_dtype"], "bfloat16");
    manifest["memory"]["memory_storage_dtype"] = "float32".into();
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let runtime = Runtime::load_default().unwrap().with_intra_threads(Some(1));
    let float32 = Model::open(&dir, &runtime).unwrap();

    let track = |model: Arc<Model>| {
        let settings = SessionSettings::for_model(&model);
        let mut s = ClipSession::new(model, clip("shapes"), settings).unwrap();
        s.add_points(0, OBJ, &[[70.0, 90.0]], &[Label::Positive], true)
            .unwrap();
        propagate(&mut s, Propagation::default());
        s
    };
    let rounded = track(model());
    let exact = track(float32);
    let memory_bytes =
        |s: &ClipSession, f: usize| s.result(f, OBJ).unwrap().memory.as_ref().unwrap().bytes();
    assert_eq!(memory_bytes(&exact, 9), 2 * memory_bytes(&rounded, 9));
    assert_eq!(
        logits(&exact, 0, 1),
        logits(&rounded, 0, 1),
        "the prompt needs no memory"
    );
    let mut differs = false;
    for f in 1..10 {
        let (a, b) = (logits(&exact, f, 1), logits(&rounded, f, 1));
        differs |= a != b;
        // The same mask: the rounding moves logits, not which side of 0 they are on.
        let flipped = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| (**x > 0.0) != (**y > 0.0))
            .count();
        assert!(
            flipped * 100 <= a.len(),
            "frame {f}: {flipped} of {} mask pixels differ",
            a.len()
        );
    }
    assert!(
        differs,
        "float32 memories must change the tracked logits somewhere"
    );
}

#[test]
fn clearing_one_frames_prompt_keeps_the_track_and_the_other_prompts() {
    let mut s = session("shapes", |_| {});
    s.add_points(0, OBJ, &[[70.0, 90.0]], &[Label::Positive], true)
        .unwrap();
    s.add_points(5, OBJ, &[[130.0, 92.0]], &[Label::Positive], true)
        .unwrap();
    propagate(&mut s, Propagation::default());
    let kept = logits(&s, 5, 1);
    let out = s.clear_prompts_in_frame(5, OBJ).unwrap();
    assert_eq!(
        out.objects[0]
            .result
            .as_ref()
            .unwrap()
            .low_res_logits
            .to_vec(),
        kept
    );
    assert_eq!(s.masklet(OBJ).unwrap().prompted_frames(), vec![0]);
    assert!((6..10).all(|f| s.is_stale(f, OBJ)) && !s.is_stale(4, OBJ));
    propagate(&mut s, Propagation::default());
    assert!(
        logits(&s, 5, 1) != kept,
        "frame 5 is tracked again from frame 0 alone"
    );
    let e = s.clear_prompts_in_frame(3, ObjectId(9)).unwrap_err();
    assert_eq!(e.to_string(), "There is no object 9 in this session.");

    s.set_frame_cache_budget(0);
    assert!(s.frame_cache().len() <= 1);
    s.clear_frame_cache();
    assert!(s.frame_cache().is_empty());
}

#[test]
fn objects_tracked_together_match_each_object_tracked_alone() {
    // Objects 1 and 2 are prompted on frame 0 and share every run of a propagation; object 3,
    // prompted on frames 0 and 4, attends to other memories and runs in a group of its own. SAM 2
    // tracks objects independently, so each must get what a session holding only it gets.
    type Prompt = fn(&mut ClipSession, ObjectId);
    let prompts: [(u64, Prompt); 3] = [
        (1, |s, o| {
            s.add_points(0, o, &[[60.0, 80.0]], &[Label::Positive], true)
                .map(drop)
                .unwrap()
        }),
        (2, |s, o| {
            s.add_box(0, o, [234.0, 50.0, 306.0, 106.0], &[], &[])
                .map(drop)
                .unwrap()
        }),
        (3, |s, o| {
            for frame in [0, 4] {
                s.add_points(frame, o, &[[160.0, 90.0]], &[Label::Positive], true)
                    .map(drop)
                    .unwrap()
            }
        }),
    ];
    let mut together = session("crossing", |_| {});
    for (id, prompt) in prompts {
        prompt(&mut together, ObjectId(id));
    }
    let frames = propagate(&mut together, Propagation::default());
    let stats = together.stats();
    // Objects 1 and 2 share one run on each of frames 1–11; object 3 runs alone on all but its
    // prompted frames 0 and 4.
    let tracked = frames as u64 - 1;
    assert_eq!(stats.memory_attention_runs, 2 * tracked + (tracked - 1));
    assert_eq!(
        stats.memory_attention_graph_runs,
        tracked + (tracked - 1),
        "{stats:?}"
    );
    for (id, prompt) in prompts {
        assert_matches_alone(&together, frames, ObjectId(id), prompt);
    }
}

/// Object `id` of `together` has, on each of its `frames` tracked frames, the logits of a session
/// that holds only it, prompted by `prompt` and tracked the same way (SAM 2 tracks objects
/// independently; a batch must not change that).
fn assert_matches_alone(
    together: &ClipSession,
    frames: usize,
    id: ObjectId,
    prompt: impl FnOnce(&mut ClipSession, ObjectId),
) {
    let mut alone = session("crossing", |_| {});
    prompt(&mut alone, id);
    assert_eq!(propagate(&mut alone, Propagation::default()), frames);
    for f in 0..frames {
        let (a, b) = (logits(together, f, id.0), logits(&alone, f, id.0));
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-5, "object {id}, frame {f}: |Δlogit| {worst}");
    }
}

#[test]
fn more_objects_than_one_run_takes_are_split_across_runs_without_mixing_them_up() {
    use sam2_engine::model::MAX_OBJECTS_PER_RUN;
    // One object more than a run takes, each clicked on its own spot of frame 0: the last one
    // lands alone in a second run of every graph.
    let count = MAX_OBJECTS_PER_RUN + 1;
    let click = |i: usize| [20.0 + 17.0 * (i % 17) as f64, 30.0 + 60.0 * (i / 17) as f64];
    let mut together = session("crossing", |_| {});
    for i in 0..count {
        together
            .add_points(
                0,
                ObjectId(i as u64 + 1),
                &[click(i)],
                &[Label::Positive],
                true,
            )
            .unwrap();
    }
    let frames = propagate(&mut together, Propagation::default());
    let tracked = frames as u64 - 1;
    assert_eq!(
        together.stats().memory_attention_graph_runs,
        2 * tracked,
        "two runs a frame"
    );
    // The first and the last object of the first run, and the one in the second run.
    for i in [0, MAX_OBJECTS_PER_RUN - 1, MAX_OBJECTS_PER_RUN] {
        assert_matches_alone(&together, frames, ObjectId(i as u64 + 1), |s, o| {
            s.add_points(0, o, &[click(i)], &[Label::Positive], true)
                .map(drop)
                .unwrap()
        });
    }
}

#[test]
fn a_propagation_moves_only_frames_memories_and_masks_between_host_and_graphs() {
    // On a GPU provider every byte a graph takes from host memory or gives back crosses the bus.
    // A frame's features, the position encodings and the conditioned features stay where the
    // graphs run; per tracked frame only the frame, the memories and pointers it attends to and
    // the decoder's small inputs go in, and only the mask, its scores, the pointer and the new
    // memory come out. Counted exactly, so that any feature map crossing fails the test.
    let model = model();
    let g = model.geometry();
    let (s, c, m, f, low) = (g.image_size, g.hidden_dim, g.mem_dim, g.feat, g.low_res);
    let memory = 4 * m * f * f;
    let mask = 4 * low * low;
    let feature_maps = 4 * (c * f * f + c / 8 * 4 * f * 4 * f + c / 4 * 2 * f * 2 * f);
    let manifest = model.manifest();
    let num_maskmem = manifest.memory.num_maskmem as usize;
    let max_pointers = manifest.memory.max_obj_ptrs_in_encoder as usize;
    let expected = |frames: usize| {
        // The prompted frame's memory is encoded as the propagation starts: its mask, score and
        // origin flag in, the memory out.
        let mut to_graphs = mask + 4 + 1;
        let mut from_graphs = memory;
        for t in 1..frames {
            let (memories, pointers) = (t.min(num_maskmem), t.min(max_pointers));
            // The image encoder: the frame.
            to_graphs += 4 * 3 * s * s;
            // Memory attention: the memories (one prompted, the rest the latest), their slots,
            // the pointers and their positions.
            to_graphs += memories * (memory + 8) + pointers * (4 * c + 4);
            // The decoder: the padding point and its label, the (unused) mask input, two flags.
            to_graphs += 8 + 4 + mask + 1 + 1;
            // The memory encoder: the mask, the score, the origin flag.
            to_graphs += mask + 4 + 1;
            // Out: the mask, its IoU, the pointer, the object score; the memory.
            from_graphs += mask + 4 + 4 * c + 4 + memory;
        }
        (to_graphs as u64, from_graphs as u64)
    };
    let track = |disk: bool| {
        let mut settings = SessionSettings::for_model(&model);
        if !disk {
            settings.frame_cache_disk = None;
        }
        let mut session = ClipSession::new(Arc::clone(&model), clip("shapes"), settings).unwrap();
        session
            .add_points(0, OBJ, &[[106.0, 92.0]], &[Label::Positive], true)
            .unwrap();
        let before = model.traffic();
        let frames = propagate(&mut session, Propagation::default());
        let moved = model.traffic().since(before);
        (frames, (moved.to_graphs, moved.from_graphs))
    };
    let (frames, moved) = track(false);
    assert_eq!(
        moved,
        expected(frames),
        "{frames} frames without a disk tier"
    );
    // With the disk tier, a streamed frame leaving memory comes back from the graphs' memory
    // once, to be written: the frames past the last few a propagation keeps.
    let (frames, moved) = track(true);
    let (to_graphs, from_graphs) = expected(frames);
    let evicted = (frames - 1).saturating_sub(DEFAULT_STREAMED_FRAMES) as u64;
    assert!(evicted > 0, "the clip is long enough to evict a frame");
    assert_eq!(
        moved,
        (to_graphs, from_graphs + evicted * feature_maps as u64),
        "{frames} frames with a disk tier"
    );
}
