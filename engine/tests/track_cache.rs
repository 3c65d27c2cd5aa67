//! The track cache on real sessions: every fixture script replayed with a cache writer, then
//! read back — the cache's objects are the session's, every object's logits on every frame are
//! the session's rounded to the matte precision and its score bit for bit (withdrawn results
//! included: removed objects, a reset), and a matte rendered from the cache is the live
//! session's byte for byte. And the provenance hashes: a script's prompts hash ignores formatting but not a mask
//! file's content; a clip's fingerprint sees one changed byte.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::ops::ControlFlow;

use common::{fixtures_dir, model_for, trace_dirs};
use sam2_engine::clip::Clip;
use sam2_engine::matte::precision::round_logits;
use sam2_engine::matte::{MatteDevice, MatteSettings, MatteUpsampler, finish, to_u16};
use sam2_engine::predictor::{ClipSession, SessionSettings};
use sam2_engine::replay::run_script;
use sam2_engine::track_cache::{
    Expected, Layout, Provenance, TrackCacheReader, TrackCacheWriter, View, fingerprint_clip,
    prompts_hash,
};
use sam2_engine::{FolderSource, Model, Runtime, Script, Trace};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn every_fixture_script_comes_back_from_the_cache_at_the_matte_precision() {
    let runtime = Runtime::load_default().unwrap().with_intra_threads(Some(1));
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut upsampler = MatteUpsampler::new(MatteDevice::Cpu).unwrap();
    let soft = MatteSettings {
        softness: 1.0,
        ..MatteSettings::default()
    };
    let mut mattes_differing_from_lossless = 0;
    for trace in trace_dirs() {
        let name = trace.file_name().unwrap().to_string_lossy().into_owned();
        // Each trace names its script and, by hash, its model (2.1 and 2.0 fixtures).
        let reference = Trace::open(&trace).unwrap();
        let model = Model::open(
            model_for(&reference.header().model_manifest_sha256),
            &runtime,
        )
        .unwrap();
        let script_path = reference.script_path().unwrap();
        let script = Script::read(&script_path).unwrap();
        let clip = script.clip_path().unwrap();
        let source = FolderSource::open(&clip).unwrap();
        let fingerprint = fingerprint_clip(source.clip()).unwrap();
        let mut session = ClipSession::new(
            model.clone(),
            Box::new(source),
            SessionSettings::for_model(&model),
        )
        .unwrap();
        let provenance =
            Provenance::for_session(&session, fingerprint, prompts_hash(&script).unwrap());
        let (width, height) = session.video_size();
        let layout = Layout {
            width,
            height,
            num_frames: session.num_frames(),
            low_res: model.geometry().low_res,
        };
        let path = dir.path().join(format!("{name}.sam2cache"));
        let mut writer = TrackCacheWriter::create(&path, &provenance, layout).unwrap();
        run_script(
            &mut session,
            &script,
            |_, masks| {
                writer.put_frame(masks).unwrap();
                ControlFlow::Continue(())
            },
            |_| ControlFlow::Continue(()),
        )
        .unwrap();
        writer.commit(&session).unwrap();

        let reader =
            TrackCacheReader::open(&path, &Expected::from(&provenance), View::Committed).unwrap();
        assert_eq!(reader.objects(), session.object_ids(), "{name}");
        for object in session.object_ids() {
            for frame in 0..session.num_frames() {
                let cached = reader.read(object, frame).unwrap();
                match (session.result(frame, object), cached) {
                    (None, None) => {}
                    (Some(live), Some(cached)) => {
                        assert_eq!(
                            bits(&cached.low_res_logits),
                            bits(&round_logits(&live.low_res_logits)),
                            "{name}: object {object}, frame {frame}"
                        );
                        // The matte a render task makes from the cache is the live session's.
                        let side = layout.low_res;
                        let (w, h) = (width as usize, height as usize);
                        let mut matte = |logits: &[f32]| {
                            let up = upsampler.upsample(logits, side, side, w, h).unwrap();
                            to_u16(&finish(&up, w, h, &soft).unwrap())
                        };
                        let from_live = matte(&live.low_res_logits);
                        assert_eq!(
                            from_live,
                            matte(&cached.low_res_logits),
                            "{name}: matte of object {object}, frame {frame}"
                        );
                        let lossless = sam2_engine::matte::upsample_bilinear(
                            &live.low_res_logits,
                            side,
                            side,
                            w,
                            h,
                        )
                        .unwrap();
                        mattes_differing_from_lossless += usize::from(
                            to_u16(&finish(&lossless, w, h, &soft).unwrap()) != from_live,
                        );
                        assert_eq!(
                            cached.object_score.to_bits(),
                            live.object_score.to_bits(),
                            "{name}"
                        );
                        checked += 1;
                    }
                    (live, cached) => panic!(
                        "{name}: object {object}, frame {frame}: live {}, cached {}",
                        live.is_some(),
                        cached.is_some()
                    ),
                }
            }
        }
    }
    assert!(checked > 100, "{checked} results compared");
    // The rounding is visible in 16-bit soft mattes: the comparison above is not vacuous.
    assert!(
        mattes_differing_from_lossless > 0,
        "no matte changed by the rounding"
    );
}

#[test]
fn the_prompts_hash_sees_prompts_and_mask_content_but_not_formatting() {
    let dir = tempfile::tempdir().unwrap();
    let original = fixtures_dir().join("scripts/mask_prompt.json");
    let script = Script::read(&original).unwrap();
    let hash = prompts_hash(&script).unwrap();

    // The same script written compactly, next to a copy of its mask.
    let text = std::fs::read_to_string(&original).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mask = script
        .interactions
        .iter()
        .find_map(|i| match i {
            sam2_engine::script::Interaction::AddMask { mask, .. } => Some(mask.clone()),
            _ => None,
        })
        .unwrap();
    let mask_copy = dir.path().join(&mask);
    std::fs::create_dir_all(mask_copy.parent().unwrap()).unwrap();
    std::fs::copy(script.resolve(&mask), &mask_copy).unwrap();
    let copy = dir.path().join("script.json");
    std::fs::write(&copy, serde_json::to_string(&value).unwrap()).unwrap();
    assert_eq!(prompts_hash(&Script::read(&copy).unwrap()).unwrap(), hash);

    // One pixel of the mask changed: another hash.
    let mut image = image::open(&mask_copy).unwrap().to_luma8();
    let pixel = image.get_pixel_mut(0, 0);
    pixel.0[0] = 255 - pixel.0[0];
    image.save(&mask_copy).unwrap();
    assert_ne!(prompts_hash(&Script::read(&copy).unwrap()).unwrap(), hash);
}

#[test]
fn a_clip_fingerprint_sees_one_changed_byte() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixtures_dir().join("clips/shapes");
    for entry in std::fs::read_dir(&clip).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let original = fingerprint_clip(&Clip::open(&clip).unwrap()).unwrap();
    assert_eq!(
        fingerprint_clip(&Clip::open(dir.path()).unwrap()).unwrap(),
        original
    );
    let frame = Clip::open(dir.path())
        .unwrap()
        .frame_path(5)
        .unwrap()
        .to_path_buf();
    let mut bytes = std::fs::read(&frame).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&frame, bytes).unwrap();
    assert_ne!(
        fingerprint_clip(&Clip::open(dir.path()).unwrap()).unwrap(),
        original
    );
}

/// Every step's outputs of a script, as bits.
type Outputs = Vec<Vec<(usize, u64, Option<(Vec<u32>, u32)>)>>;

fn replay(session: &mut ClipSession, script: &Script) -> Outputs {
    let mut steps = Vec::new();
    run_script(
        session,
        script,
        |_, _| ControlFlow::Continue(()),
        |step| {
            steps.push(
                step.frames
                    .iter()
                    .flat_map(|f| {
                        f.objects.iter().map(|o| {
                            (
                                f.frame,
                                o.object.0,
                                o.result
                                    .as_ref()
                                    .map(|r| (bits(&r.low_res_logits), r.object_score.to_bits())),
                            )
                        })
                    })
                    .collect(),
            );
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    steps
}

#[test]
fn a_session_with_a_cold_tier_gives_every_output_bit_for_bit_with_far_logits_out_of_ram() {
    let runtime = Runtime::load_default().unwrap().with_intra_threads(Some(1));
    let dir = tempfile::tempdir().unwrap();
    let (mut cold_results, mut rebuilt, mut spilled) = (0, 0, 0);
    for trace in trace_dirs() {
        let name = trace.file_name().unwrap().to_string_lossy().into_owned();
        let reference = Trace::open(&trace).unwrap();
        let model = Model::open(
            model_for(&reference.header().model_manifest_sha256),
            &runtime,
        )
        .unwrap();
        let script = Script::read(reference.script_path().unwrap()).unwrap();
        let clip = script.clip_path().unwrap();
        let session = || {
            ClipSession::new(
                model.clone(),
                Box::new(FolderSource::open(&clip).unwrap()),
                SessionSettings::for_model(&model),
            )
            .unwrap()
        };
        let mut plain = session();
        let expected = replay(&mut plain, &script);

        let mut tiered = session();
        let path = dir.path().join(format!("{name}.sam2cache"));
        tiered.create_cache(&path, "s".into(), "p".into()).unwrap();
        assert_eq!(
            replay(&mut tiered, &script),
            expected,
            "{name}: step outputs"
        );
        rebuilt += tiered.stats().memories_rebuilt;
        for object in plain.object_ids() {
            for frame in 0..plain.num_frames() {
                let want = plain.result(frame, object).map(|r| bits(&r.low_res_logits));
                let got = tiered.logits(frame, object).unwrap().map(|l| bits(&l));
                assert_eq!(got, want, "{name}: object {object}, frame {frame}");
                cold_results +=
                    usize::from(tiered.result(frame, object).is_some_and(|r| r.is_cold()));
                spilled += usize::from(tiered.result(frame, object).is_some_and(|r| {
                    r.memory_source.retention == sam2_engine::memory_bank::Retention::Spilled
                }));
            }
        }
        // What the cache holds after the commit is the session's final state.
        tiered.commit_cache().unwrap();
        let reader = TrackCacheReader::open(&path, &Expected::default(), View::Committed).unwrap();
        for object in plain.object_ids() {
            for frame in 0..plain.num_frames() {
                let want = plain
                    .result(frame, object)
                    .map(|r| bits(&round_logits(&r.low_res_logits)));
                let got = reader
                    .read(object, frame)
                    .unwrap()
                    .map(|c| bits(&c.low_res_logits));
                assert_eq!(got, want, "{name}: cached object {object}, frame {frame}");
            }
        }
    }
    assert!(cold_results > 10, "{cold_results} results went cold");
    assert!(rebuilt > 0, "no memory was rebuilt from cold logits");
    // Results whose rebuild puts back pixels that hole filling changed keep those in the spill.
    assert!(
        spilled > 0,
        "no cold result's rebuild information went to the spill"
    );
}

fn masks_bits(masks: &sam2_engine::FrameMasks) -> Vec<(u64, Option<Vec<u32>>)> {
    masks
        .objects
        .iter()
        .map(|o| {
            (
                o.object.0,
                o.result.as_ref().map(|r| bits(&r.low_res_logits)),
            )
        })
        .collect()
}

#[test]
fn a_click_on_a_frame_gone_cold_sees_every_object_s_logits() {
    use sam2_engine::script::{Label, ObjectId};
    let runtime = Runtime::load_default().unwrap().with_intra_threads(Some(1));
    let model = Model::open(fixtures_dir().join("models/test"), &runtime).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = Script::read(fixtures_dir().join("scripts/three_objects.json")).unwrap();
    let clip = script.clip_path().unwrap();
    let session = || {
        ClipSession::new(
            model.clone(),
            Box::new(FolderSource::open(&clip).unwrap()),
            SessionSettings::for_model(&model),
        )
        .unwrap()
    };
    let mut plain = session();
    let mut tiered = session();
    tiered
        .create_cache(&dir.path().join("c"), "s".into(), "p".into())
        .unwrap();
    for s in [&mut plain, &mut tiered] {
        replay(s, &script);
        s.propagate(sam2_engine::Propagation::default(), |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    }
    // Frame 1 is far behind where the propagation ended: cold for every object.
    for object in tiered.object_ids() {
        assert!(tiered.result(1, object).unwrap().is_cold());
    }
    // Object 3's click: its own cold logits are the decoder's input, object 1's cold result is
    // part of the output.
    let first: Vec<_> = [&mut plain, &mut tiered]
        .into_iter()
        .map(|s| {
            masks_bits(
                &s.add_points(1, ObjectId(3), &[[250.0, 80.0]], &[Label::Positive], true)
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(first[1], first[0]);
    assert!(first[0].iter().all(|(_, r)| r.is_some()));
    let click = |s: &mut ClipSession| {
        s.add_points(1, ObjectId(1), &[[60.0, 80.0]], &[Label::Positive], true)
            .unwrap()
    };
    let want = click(&mut plain);
    let got = click(&mut tiered);
    assert_eq!(masks_bits(&got), masks_bits(&want));
    let clear = |s: &mut ClipSession| s.clear_prompts_in_frame(1, ObjectId(1)).unwrap();
    assert_eq!(
        masks_bits(&clear(&mut tiered)),
        masks_bits(&clear(&mut plain))
    );
    let ids = plain.object_ids();
    for frame in 0..plain.num_frames() {
        for &object in &ids {
            assert_eq!(
                tiered.logits(frame, object).unwrap().map(|l| bits(&l)),
                plain.logits(frame, object).unwrap().map(|l| bits(&l)),
            );
        }
    }
}
