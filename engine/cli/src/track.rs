//! `track`: an interaction script on a clip → a matte sequence per object, and optionally the
//! reference-trace record of every step.
//!
//! Everything that can be checked without ONNX Runtime is checked first (paths, the script against
//! the clip, the output folders, the model's hashes), so that a typo costs no model load and
//! leaves nothing behind.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use sam2_engine::frame_cache::DiskCacheSettings;
use sam2_engine::matte::MatteUpsampler;
use sam2_engine::model::{ModelDir, Runtime};
use sam2_engine::replay::{StepFrames, run_script_with};
use sam2_engine::script::{Interaction, ObjectId, Op};
use sam2_engine::staged_dir::StagedDir;
use sam2_engine::trace_writer::{TraceInfo, TraceWriter, trace_existing};
use sam2_engine::track_cache::{
    SourcePrint, fingerprint_clip, frame_digest, is_track_cache, prompts_hash,
};
use sam2_engine::{ClipSession, FolderSource, FrameSource, Model, Script, SessionSettings};

use crate::args::TrackArgs;
use crate::error::CliError;
use crate::lock::OutputLock;
use crate::mattes::Refine;
use crate::report::Report;
use crate::{mattes, progress, signals};

const OUT_FOLDER: &str = "output folder";
const TRACE_FOLDER: &str = "trace folder";

/// Returns what was done, for [`Report::finish`].
pub fn run(args: &TrackArgs, report: &mut Report) -> Result<String, CliError> {
    let matte_settings = args.matte.settings();
    matte_settings.validate()?;
    let refinement = args.matte.refinement()?;
    if !args.model.exists() {
        return Err(CliError::ModelMissing {
            path: args.model.clone(),
        });
    }
    if !args.script.exists() {
        return Err(CliError::ScriptMissing {
            path: args.script.clone(),
        });
    }
    let script = Script::read(&args.script)?;
    if script.predictor.non_overlap_masks == Some(true) {
        return Err(CliError::NonOverlapMasks {
            script: args.script.clone(),
        });
    }
    let clip_path = args
        .clip
        .clone()
        .or_else(|| script.clip_path())
        .ok_or_else(|| CliError::NoClip {
            script: args.script.clone(),
        })?;
    if !clip_path.exists() {
        return Err(CliError::ClipMissing { path: clip_path });
    }
    let mut source = FolderSource::open(&clip_path)?;
    warn_about_gaps(&clip_path, &source);
    script.check_frames(&args.script, source.num_frames())?;
    check_apart(&args.out, args.trace.as_deref())?;
    if let Some(cache) = &args.cache {
        check_cache_apart(cache, &args.out, args.trace.as_deref())?;
        if cache.exists() && !is_track_cache(cache) {
            return Err(CliError::NotACache {
                path: cache.clone(),
            });
        }
    }
    // Fingerprinted before tracking reads the frames, so that the cache names what was read:
    // the files, and each frame as the model sees it (what the effect checks a frame against).
    let fingerprint = match &args.cache {
        Some(_) => Some(source_print(&mut source)?),
        None => None,
    };
    StagedDir::check(&args.out, mattes::existing(args.force))
        .map_err(|e| CliError::from_write(OUT_FOLDER, e))?;
    if let Some(trace) = &args.trace {
        StagedDir::check(trace, trace_existing(args.force))
            .map_err(|e| CliError::from_write(TRACE_FOLDER, e))?;
    }
    // Before any work: a second run on the same folders fails now, not after all its work.
    let out_lock = OutputLock::take(&args.out, OUT_FOLDER)?;
    out_lock.remove_leftovers(&args.out);
    let _trace_lock = match &args.trace {
        Some(trace) => {
            let lock = OutputLock::take(trace, TRACE_FOLDER)?;
            lock.remove_leftovers(trace);
            Some(lock)
        }
        None => None,
    };
    // Each stage below takes seconds on a large model; a signal is honoured between them.
    let model_dir = ModelDir::open(&args.model)?;
    signals::check()?;
    let runtime = Runtime::load_default()?
        .with_device(args.device.model())
        .with_intra_threads(args.threads.map(usize::from));
    let model = Model::load_at(model_dir, &runtime, args.precision.engine())?;
    signals::check()?;
    let mut upsampler = MatteUpsampler::new(args.device.matte())?;
    let settings = session_settings(&model, &script, args);
    let mut session = ClipSession::new(model, Box::new(source), settings)?;
    signals::check()?;
    if let (Some(path), Some(fingerprint)) = (&args.cache, fingerprint) {
        // The session writes results there as they go cold (memory flat in clip length),
        // and the rest at the commit below.
        session.create_cache(path, fingerprint.to_string(), prompts_hash(&script)?)?;
    }

    let out = signals::create_folder(
        || StagedDir::create(&args.out, mattes::existing(args.force)),
        StagedDir::path,
    )
    .map_err(|e| CliError::from_write(OUT_FOLDER, e))?;
    let mut trace = match &args.trace {
        Some(target) => {
            let mut info = TraceInfo::for_session(&session, &runtime);
            info.clip = Some(clip_path.clone());
            info.script = Some(args.script.clone());
            let writer = signals::create_folder(
                || TraceWriter::create(target, info, trace_existing(args.force)),
                TraceWriter::staging_path,
            )
            .map_err(|e| CliError::from_trace(TRACE_FOLDER, e))?;
            Some(writer)
        }
        None => None,
    };

    // Tracking. Time spent writing the trace is not tracking time.
    let planned = planned_updates(&script, session.num_frames());
    let bar = progress::start(planned);
    bar.set_message("tracking");
    let updates = Cell::new(0u64);
    let count = |n: u64| {
        updates.set(updates.get() + n);
        if updates.get() > bar.length().unwrap_or(0) {
            bar.set_length(updates.get());
        }
        bar.inc(n);
    };
    let mut trace_time = Duration::ZERO;
    let mut trace_error = None;
    let started = Instant::now();
    // A signal stops the run after the frame or step in progress.
    let stop = || match signals::stop_requested() {
        Some(_) => ControlFlow::Break(()),
        None => ControlFlow::Continue(()),
    };
    // Without a trace, a propagation's outputs are not kept: they are in the session (and, gone
    // cold, in the cache), so that memory stays flat in the clip's length.
    let keep = match trace {
        Some(_) => StepFrames::Kept,
        None => StepFrames::Streamed,
    };
    let ran = run_script_with(
        &mut session,
        &script,
        keep,
        |_, _| {
            count(1);
            stop()
        },
        |step| {
            if step.op != Op::Propagate {
                count(step.frames.len() as u64);
            }
            stop()?;
            if let Some(writer) = trace.as_mut() {
                let t = Instant::now();
                if let Err(e) = writer.write_step(step) {
                    trace_error = Some(e);
                    return ControlFlow::Break(());
                }
                trace_time += t.elapsed();
            }
            ControlFlow::Continue(())
        },
    );
    progress::finish();
    ran?;
    if let Some(e) = trace_error {
        return Err(e.into());
    }
    signals::check()?;
    // Readers see the cache's results from this commit on.
    session.commit_cache()?;
    let tracking = started.elapsed().saturating_sub(trace_time);

    // Mattes.
    let objects = session.object_ids().len();
    let frames = session.num_frames();
    let started = Instant::now();
    let bar = progress::start((objects * frames) as u64);
    bar.set_message("mattes");
    let written = mattes::write_all(
        &session,
        out.path(),
        &mut upsampler,
        &matte_settings,
        refinement.as_ref().map(|settings| Refine {
            settings,
            clip: &clip_path,
        }),
        args.bits,
        &bar,
    );
    progress::finish();
    let written = written?;
    let matte_time = started.elapsed();

    // Only renames are left once the trace is sealed, so that a failure between the two outputs
    // is as unlikely as it can be.
    let trace = trace
        .map(TraceWriter::seal)
        .transpose()
        .map_err(|e| CliError::from_trace(TRACE_FOLDER, e))?;
    let (out_path, trace_path) = signals::commit(|| {
        let out_path = out
            .commit()
            .map_err(|e| CliError::from_write(OUT_FOLDER, e))?;
        let trace_path = trace
            .map(StagedDir::commit)
            .transpose()
            .map_err(|e| CliError::from_write(TRACE_FOLDER, e))?;
        Ok::<_, CliError>((out_path, trace_path))
    })?;

    let seconds = tracking.as_secs_f64();
    let stats = session.stats();
    let mut trace_note = trace_path
        .map(|p| format!("; trace in {}", p.display()))
        .unwrap_or_default();
    if let Some(writer) = session.cache() {
        trace_note.push_str(&format!(
            "; track cache {} ({} blocks, {:.1} KiB)",
            writer.path().display(),
            writer.blocks(),
            writer.bytes() as f64 / 1024.0
        ));
    }
    report.line(&format!(
        "{frames} frames, {objects} object{}: {} frame updates in {seconds:.2} s ({:.1} frames/s); \
         model runs: image encoder {}, mask decoder {}, memory attention {}, memory encoder {}, \
         memories rebuilt {}, frames' features read back from disk {}; {written} {}-bit mattes in {} ({:.2} s){trace_note}{}",
        if objects == 1 { "" } else { "s" },
        updates.get(),
        updates.get() as f64 / seconds.max(1e-9),
        stats.image_encoder_runs,
        stats.mask_decoder_runs,
        stats.memory_attention_runs,
        stats.memory_encoder_runs,
        stats.memories_rebuilt,
        stats.frame_cache_disk_reads,
        args.bits.count(),
        out_path.display(),
        matte_time.as_secs_f64(),
        crate::report::peak_memory(),
    ));
    Ok(format!("The mattes are in {}", out_path.display()))
}

/// The clip's files' fingerprint and every frame's digest (each frame decoded once more).
fn source_print(source: &mut FolderSource) -> Result<SourcePrint, CliError> {
    let files = fingerprint_clip(source.clip())?;
    let frames = (0..source.num_frames())
        .map(|i| source.frame(i).map(|f| frame_digest(&f)))
        .collect::<sam2_engine::Result<Vec<u64>>>()?;
    Ok(SourcePrint {
        frames,
        files: Some(files),
    })
}

/// One warning when the clip's frame numbers have gaps: the frames are renumbered 0, 1, 2, … in
/// order, which a user who numbered them 0, 5, 9 may not expect.
fn warn_about_gaps(clip_path: &Path, source: &FolderSource) {
    let numbers: Vec<u64> = source.clip().frames().iter().map(|f| f.number).collect();
    if let Some(gap) = first_gap(&numbers) {
        progress::print_line(&format!(
            "warning: The frames of {} are numbered with gaps ({} is followed by {}); they are taken in order as frames 0 to {}, so frame {} of the script and the mattes is the file numbered {}.",
            clip_path.display(),
            gap.before,
            gap.after,
            numbers.len().saturating_sub(1),
            gap.index,
            gap.after
        ));
    }
}

/// Where a clip's frame numbers first jump: the file numbered `after` follows `before` and is
/// frame `index`.
#[derive(Debug, PartialEq, Eq)]
struct Gap {
    before: u64,
    after: u64,
    index: usize,
}

/// The first gap in `numbers` (sorted, as the clip lists them), if any. A clip that starts at 1
/// (or any number) has no gap: numbering from 1 is common and means nothing.
fn first_gap(numbers: &[u64]) -> Option<Gap> {
    numbers
        .windows(2)
        .enumerate()
        .find_map(|(i, pair)| match *pair {
            [before, after] if after != before.saturating_add(1) => Some(Gap {
                before,
                after,
                index: i + 1,
            }),
            _ => None,
        })
}

/// Our defaults (corrections stick), then the script's `predictor` settings, then the flags.
fn session_settings(model: &Model, script: &Script, args: &TrackArgs) -> SessionSettings {
    let mut settings = SessionSettings::for_model(model);
    let overrides = &script.predictor;
    if let Some(keep) = overrides.add_all_frames_to_correct_as_cond {
        settings.add_all_frames_to_correct_as_cond = keep;
    }
    if let Some(area) = overrides.fill_hole_area {
        settings.fill_hole_area = area;
    }
    if args.official_corrections {
        settings.add_all_frames_to_correct_as_cond =
            SessionSettings::official(model).add_all_frames_to_correct_as_cond;
    }
    if let Some(area) = args.fill_hole_area {
        settings.fill_hole_area = area;
    }
    settings.frame_cache_bytes = args.frame_cache_mib.saturating_mul(1 << 20);
    settings.frame_cache_disk = (args.frame_cache_disk_mib > 0).then(|| DiskCacheSettings {
        budget_bytes: args.frame_cache_disk_mib.saturating_mul(1 << 20),
        parent: args
            .frame_cache_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir),
    });
    settings
}

/// The trace must not be written into the matte folder or the other way round: one rename would
/// carry off or clobber the other.
fn check_apart(out: &Path, trace: Option<&Path>) -> Result<(), CliError> {
    let Some(trace) = trace else {
        return Ok(());
    };
    let (a, b) = match (std::path::absolute(out), std::path::absolute(trace)) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Ok(()), // StagedDir reports unusable paths
    };
    if a.starts_with(&b) || b.starts_with(&a) {
        return Err(CliError::OutputsOverlap {
            out: out.to_path_buf(),
            trace: trace.to_path_buf(),
        });
    }
    Ok(())
}

/// The cache must not be inside an output folder, which is renamed or replaced as a whole.
fn check_cache_apart(cache: &Path, out: &Path, trace: Option<&Path>) -> Result<(), CliError> {
    let Ok(c) = std::path::absolute(cache) else {
        return Ok(());
    };
    for folder in std::iter::once(out).chain(trace) {
        if let Ok(f) = std::path::absolute(folder)
            && c.starts_with(&f)
        {
            return Err(CliError::CacheInOutput {
                cache: cache.to_path_buf(),
                folder: folder.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// How many frame updates the script will make (prompted frames, propagated frames), for the
/// progress bar. Exact for scripts whose propagations start where the script says or at the
/// earliest prompt; the bar grows if a run makes more.
fn planned_updates(script: &Script, num_frames: usize) -> u64 {
    let mut prompted: BTreeMap<ObjectId, BTreeSet<usize>> = BTreeMap::new();
    let mut total = 0usize;
    for interaction in &script.interactions {
        match interaction {
            Interaction::AddPoints { frame, object, .. }
            | Interaction::AddBox { frame, object, .. }
            | Interaction::AddMask { frame, object, .. } => {
                prompted.entry(*object).or_default().insert(*frame);
                total += 1;
            }
            Interaction::Propagate {
                start_frame,
                reverse,
                max_frames,
            } => {
                let earliest = prompted.values().flatten().min().copied();
                let Some(start) = start_frame.or(earliest) else {
                    continue;
                };
                let span = match (*reverse, start) {
                    (true, 0) => 0,
                    (true, _) => start + 1,
                    (false, _) => num_frames.saturating_sub(start),
                };
                total += max_frames.map_or(span, |m| span.min(m.saturating_add(1)));
            }
            Interaction::RemoveObject { object } => {
                total += prompted.remove(object).map_or(0, |frames| frames.len());
            }
            Interaction::Reset => prompted.clear(),
        }
    }
    total as u64
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn script(json: &str) -> Script {
        let text = format!(
            r#"{{"format": "sam2-rotoscope-script", "version": 1, "interactions": {json}}}"#
        );
        Script::parse(Path::new("s.json"), text.as_bytes(), PathBuf::new()).unwrap()
    }

    #[test]
    fn planned_updates_follow_the_official_counting() {
        let click = |frame: usize, object: u64| {
            format!(
                r#"{{"op": "add_points", "frame": {frame}, "object": {object}, "points": [[1, 1]], "labels": [1]}}"#
            )
        };
        let s = script(&format!("[{}, {{\"op\": \"propagate\"}}]", click(3, 1)));
        assert_eq!(planned_updates(&s, 10), 1 + 7);
        let s = script(&format!(
            "[{}, {}, {{\"op\": \"propagate\", \"reverse\": true, \"max_frames\": 2}}]",
            click(5, 1),
            click(4, 2)
        ));
        assert_eq!(planned_updates(&s, 10), 2 + 3);
        let s = script(&format!(
            "[{}, {{\"op\": \"propagate\", \"start_frame\": 0, \"reverse\": true}}, {{\"op\": \"remove_object\", \"object\": 1}}, {{\"op\": \"reset\"}}, {{\"op\": \"propagate\"}}]",
            click(0, 1)
        ));
        assert_eq!(planned_updates(&s, 10), 1 + 1);
    }

    #[test]
    fn the_first_gap_in_the_frame_numbers_is_found() {
        assert_eq!(
            first_gap(&[0, 5, 9]),
            Some(Gap {
                before: 0,
                after: 5,
                index: 1
            })
        );
        assert_eq!(
            first_gap(&[1, 2, 3, 7]),
            Some(Gap {
                before: 3,
                after: 7,
                index: 3
            })
        );
        assert_eq!(first_gap(&[1, 2, 3]), None);
        assert_eq!(first_gap(&[0]), None);
        assert_eq!(first_gap(&[]), None);
    }

    #[test]
    fn outputs_must_not_nest() {
        let out = Path::new("/x/out");
        assert!(check_apart(out, Some(Path::new("/x/out/trace"))).is_err());
        assert!(check_apart(out, Some(Path::new("/x"))).is_err());
        assert!(check_apart(out, Some(out)).is_err());
        assert!(check_apart(out, Some(Path::new("/x/trace"))).is_ok());
        assert!(check_apart(out, None).is_ok());
    }
}
