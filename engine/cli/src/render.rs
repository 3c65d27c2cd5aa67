//! `render`: matte sequences from a track cache alone — what a render farm's tasks run after one
//! tracking task. Nothing here loads a model or ONNX Runtime; the clip is read only to check that
//! it is the clip the cache was tracked on.

use std::sync::Arc;
use std::time::Instant;

use sam2_engine::Script;
use sam2_engine::clip::Clip;
use sam2_engine::matte::MatteUpsampler;
use sam2_engine::track_cache::{
    Expected, SourcePrint, TrackCacheError, TrackCacheReader, View, fingerprint_clip, frame_digest,
    model_hash, prompts_hash,
};

use crate::args::{FrameRange, RenderArgs};
use crate::error::CliError;
use crate::mattes::{self, Placement, Plan, Refine};
use crate::report::Report;
use crate::{progress, signals};

/// Returns what was done, for [`Report::finish`].
pub fn run(args: &RenderArgs, report: &mut Report) -> Result<String, CliError> {
    let matte_settings = args.matte.settings();
    matte_settings.validate()?;
    let refinement = args.matte.refinement()?;
    if !args.clip.exists() {
        return Err(CliError::ClipMissing {
            path: args.clip.clone(),
        });
    }
    let clip = Clip::open(&args.clip)?;
    let mut expected = Expected::default();
    if let Some(model) = &args.model {
        if !model.exists() {
            return Err(CliError::ModelMissing {
                path: model.clone(),
            });
        }
        expected.model = Some(model_hash(model)?);
    }
    if let Some(script) = &args.script {
        if !script.exists() {
            return Err(CliError::ScriptMissing {
                path: script.clone(),
            });
        }
        expected.prompts = Some(prompts_hash(&Script::read(script)?)?);
    }
    let reader = TrackCacheReader::open(&args.cache, &expected, View::Committed)?;
    signals::check()?;
    let layout = reader.layout();
    let [width, height] = clip.video_size()?;
    if (layout.num_frames, layout.width, layout.height) != (clip.len(), width, height) {
        return Err(CliError::CacheClip {
            cache: args.cache.clone(),
            clip: args.clip.clone(),
            cached: format!(
                "{} frames of {}×{}",
                layout.num_frames, layout.width, layout.height
            ),
            found: format!("{} frames of {width}×{height}", clip.len()),
        });
    }
    if let Some(change) = source_change(&reader.provenance().source, &args.clip, &clip)? {
        return Err(TrackCacheError::Stale {
            path: args.cache.clone(),
            changes: change,
        }
        .into());
    }
    if !reader.is_committed() {
        return Err(TrackCacheError::Uncommitted {
            path: args.cache.clone(),
        }
        .into());
    }
    let range = args.frames.unwrap_or(FrameRange {
        first: 0,
        last: layout.num_frames.saturating_sub(1),
    });
    if range.last >= layout.num_frames {
        return Err(CliError::FramesOutside {
            first: range.first,
            last: range.last,
            frames: layout.num_frames,
            max: layout.num_frames.saturating_sub(1),
        });
    }
    let mut upsampler = MatteUpsampler::new(args.device.matte())?;
    let objects = reader.objects();
    let plan = Plan {
        dir: &args.out,
        objects: &objects,
        frames: range.first..range.last + 1,
        width: width as usize,
        height: height as usize,
        side: layout.low_res,
        settings: &matte_settings,
        refine: refinement.as_ref().map(|settings| Refine {
            settings,
            clip: &args.clip,
        }),
        bits: args.bits,
        placement: Placement::Shared,
    };
    std::fs::create_dir_all(&args.out).map_err(|e| CliError::Png {
        path: args.out.clone(),
        message: format!("the output folder could not be created ({e})"),
    })?;
    let frames = range.last + 1 - range.first;
    let bar = progress::start((objects.len() * frames) as u64);
    bar.set_message("mattes");
    let started = Instant::now();
    let written = mattes::write(
        &plan,
        &mut |object, frame| {
            Ok(reader
                .read(object, frame)?
                .map(|cached| Arc::from(cached.low_res_logits)))
        },
        &mut upsampler,
        &bar,
    );
    progress::finish();
    let written = written.map_err(|e| match e {
        CliError::Stopped { signal } => CliError::RenderStopped { signal },
        other => other,
    })?;
    let seconds = started.elapsed().as_secs_f64();
    report.line(&format!(
        "frames {} to {}, {} object{}: {written} {}-bit mattes from the track cache in {seconds:.2} s ({:.1} frames/s){}",
        range.first,
        range.last,
        objects.len(),
        if objects.len() == 1 { "" } else { "s" },
        args.bits.count(),
        frames as f64 / seconds.max(1e-9),
        crate::report::peak_memory(),
    ));
    Ok(format!("The mattes are in {}", args.out.display()))
}

/// How the clip differs from the frames the cache was tracked from, in words (`None`: it does
/// not). A cache the CLI wrote names the clip's files; one the effect wrote names only each frame
/// as the model saw it, so every frame is decoded and compared.
fn source_change(
    cached: &str,
    clip_path: &std::path::Path,
    clip: &Clip,
) -> Result<Option<String>, CliError> {
    let Some(print) = SourcePrint::parse(cached) else {
        return Ok(Some(
            "the source frames cannot be checked (the cache names them in an unknown way)".into(),
        ));
    };
    if let Some(files) = &print.files {
        let now = fingerprint_clip(clip)?;
        return Ok((&now != files).then(|| {
            format!(
                "the source frames changed ({}… then, {}… now)",
                files.get(..12).unwrap_or(files),
                now.get(..12).unwrap_or(&now)
            )
        }));
    }
    let mut source = sam2_engine::FolderSource::open(clip_path)?;
    for (index, digest) in print.frames.iter().enumerate() {
        let frame = sam2_engine::FrameSource::frame(&mut source, index)?;
        if frame_digest(&frame) != *digest {
            return Ok(Some(format!(
                "the source frames changed (frame {index} differs from the one tracked)"
            )));
        }
    }
    Ok(None)
}
