//! The matte sequences: for every object the session holds and every frame of the clip, the
//! finished matte as a grayscale PNG, `object_<id>/<frame:05>.png`.
//!
//! A frame without a result gets the matte of the official "no output" logits (−1024
//! everywhere), which is empty under any sensible threshold: a compositor reading the folder as an
//! image sequence must find every frame.
//!
//! Upsampling runs on the calling thread (it may hold the GPU); finishing and PNG encoding, the
//! expensive part at 4K, run on a few worker threads fed through a short queue, so memory stays at
//! a few frames.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use indicatif::ProgressBar;
use parking_lot::Mutex;
use sam2_engine::matte::{
    EdgeRefinement, Guide, MatteSettings, MatteUpsampler, finish, to_u8, to_u16,
};
use sam2_engine::staged_dir::{Existing, entries, first_foreign};
use sam2_engine::trace::NO_OBJECT_LOGIT;
use sam2_engine::{ClipSession, FolderSource, FrameSource, ObjectId};

use crate::args::Bits;
use crate::error::CliError;
use crate::signals;

/// How an existing output folder is treated: refused, or replaced when it holds only what this
/// command writes — `object_<id>` folders of `<frame>.png` files.
pub fn existing(replace: bool) -> Existing {
    if replace {
        Existing::Replace {
            foreign: not_a_matte,
            what: "an earlier matte output",
        }
    } else {
        Existing::Refuse
    }
}

/// The first entry of an output folder that this command does not write.
fn not_a_matte(dir: &Path) -> io::Result<Option<PathBuf>> {
    if let Some(entry) = first_foreign(dir, |name, kind| kind.is_dir() && is_object_folder(name))? {
        return Ok(Some(entry));
    }
    for (folder, _) in entries(dir)? {
        if let Some(entry) = first_foreign(&dir.join(&folder), |name, kind| {
            kind.is_file() && is_frame_file(name)
        })? {
            return Ok(Some(Path::new(&folder).join(entry)));
        }
    }
    Ok(None)
}

fn is_object_folder(name: &OsStr) -> bool {
    name.to_str()
        .and_then(|n| n.strip_prefix("object_"))
        .is_some_and(all_digits)
}

/// `<frame>.png`, the frame five digits or more.
fn is_frame_file(name: &OsStr) -> bool {
    name.to_str()
        .and_then(|n| n.strip_suffix(".png"))
        .is_some_and(|frame| frame.len() >= 5 && all_digits(frame))
}

fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// One matte to finish and encode.
struct Job {
    path: PathBuf,
    /// Upsampled logits, video size.
    logits: Vec<f32>,
}

/// How matte files reach their folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Into a new folder that nothing else writes (a staged output): folders are created, files
    /// written in place.
    Fresh,
    /// Into a folder other processes may write too (render tasks of one farm job): folders are
    /// created if missing, each file written beside its place and renamed over it, so that a
    /// reader never sees half a matte and a task run again replaces its frames.
    Shared,
}

/// What to write: which objects and frames, where, how.
pub struct Plan<'a> {
    pub dir: &'a Path,
    pub objects: &'a [ObjectId],
    pub frames: Range<usize>,
    pub width: usize,
    pub height: usize,
    /// Side of the low-res logit maps.
    pub side: usize,
    pub settings: &'a MatteSettings,
    /// Refine Edges, with the clip whose frames guide it.
    pub refine: Option<Refine<'a>>,
    pub bits: Bits,
    pub placement: Placement,
}

/// Refine Edges for a matte sequence: the settings and the clip folder whose frames are the guide.
#[derive(Debug, Clone, Copy)]
pub struct Refine<'a> {
    pub settings: &'a EdgeRefinement,
    pub clip: &'a Path,
}

/// The low-res logits of an object on a frame (`None`: no result, an empty matte).
pub type Lookup<'l> = dyn FnMut(ObjectId, usize) -> Result<Option<Arc<[f32]>>, CliError> + 'l;

/// Writes the mattes of every object the session holds, for every frame, into `dir`; returns how
/// many were written.
pub fn write_all(
    session: &ClipSession,
    dir: &Path,
    upsampler: &mut MatteUpsampler,
    settings: &MatteSettings,
    refine: Option<Refine<'_>>,
    bits: Bits,
    bar: &ProgressBar,
) -> Result<usize, CliError> {
    let (w, h) = session.video_size();
    let objects = session.object_ids();
    let plan = Plan {
        dir,
        objects: &objects,
        frames: 0..session.num_frames(),
        width: w as usize,
        height: h as usize,
        side: session.model().geometry().low_res,
        settings,
        refine,
        bits,
        placement: Placement::Fresh,
    };
    write(
        &plan,
        // Cold results come back from the session's track cache.
        &mut |object, frame| Ok(session.logits(frame, object)?),
        upsampler,
        bar,
    )
}

/// Writes the mattes `plan` asks for, the logits from `lookup`; returns how many were written.
pub fn write(
    plan: &Plan,
    lookup: &mut Lookup<'_>,
    upsampler: &mut MatteUpsampler,
    bar: &ProgressBar,
) -> Result<usize, CliError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let (sender, receiver) = mpsc::sync_channel::<Job>(workers * 2);
    let receiver = Mutex::new(receiver);
    let failure: Mutex<Option<CliError>> = Mutex::new(None);
    let written = Mutex::new(0usize);
    let produced = std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let job = receiver.lock().recv();
                    let Ok(job) = job else { break };
                    if failure.lock().is_some() {
                        continue; // drain the queue
                    }
                    match encode(&job, plan) {
                        Ok(()) => {
                            *written.lock() += 1;
                            bar.inc(1);
                        }
                        Err(e) => {
                            failure.lock().get_or_insert(e);
                        }
                    }
                }
            });
        }
        let produced = produce(plan, lookup, upsampler, &sender, &failure);
        drop(sender);
        produced
    });
    produced?;
    if let Some(e) = failure.into_inner() {
        return Err(e);
    }
    Ok(written.into_inner())
}

/// Upsamples each object's result on each frame and queues it. Frame by frame, so that a guide
/// frame for Refine Edges is decoded once for all objects.
fn produce(
    plan: &Plan,
    lookup: &mut Lookup<'_>,
    upsampler: &mut MatteUpsampler,
    queue: &mpsc::SyncSender<Job>,
    failure: &Mutex<Option<CliError>>,
) -> Result<(), CliError> {
    let (w, h, side) = (plan.width, plan.height, plan.side);
    let mut folders = Vec::with_capacity(plan.objects.len());
    for &object in plan.objects {
        let folder = plan.dir.join(format!("object_{object}"));
        let created = match plan.placement {
            Placement::Fresh => fs::create_dir(&folder),
            Placement::Shared => fs::create_dir_all(&folder),
        };
        created.map_err(|e| CliError::Png {
            path: folder.clone(),
            message: format!("its folder could not be created ({e})"),
        })?;
        folders.push((object, folder));
    }
    let mut guides = match plan.refine {
        Some(refine) => Some((refine.settings, FolderSource::open(refine.clip)?)),
        None => None,
    };
    for frame in plan.frames.clone() {
        let guide = match guides.as_mut() {
            Some((_, source)) if !plan.objects.is_empty() => Some(source.frame(frame)?),
            _ => None,
        };
        for (object, folder) in &folders {
            if failure.lock().is_some() {
                return Ok(());
            }
            signals::check()?;
            let logits = match (lookup(*object, frame)?, &guide, &guides) {
                (Some(low_res), Some(image), Some((settings, _))) => upsampler.upsample_refined(
                    &low_res,
                    side,
                    side,
                    Guide {
                        rgb: &image.data,
                        width: image.width as usize,
                        height: image.height as usize,
                    },
                    Some(settings),
                )?,
                (Some(low_res), _, _) => upsampler.upsample(&low_res, side, side, w, h)?,
                (None, _, _) => vec![NO_OBJECT_LOGIT; w * h],
            };
            let job = Job {
                path: folder.join(format!("{frame:05}.png")),
                logits,
            };
            if queue.send(job).is_err() {
                return Ok(()); // every worker has stopped; `failure` says why
            }
        }
    }
    Ok(())
}

/// Finishes one matte and writes it as a PNG. Fast compression: mattes are mostly flat, so it
/// costs little size and saves most of the encoding time at 4K.
fn encode(job: &Job, format: &Plan) -> Result<(), CliError> {
    let png_error = |message: String| CliError::Png {
        path: job.path.clone(),
        message,
    };
    let matte = finish(&job.logits, format.width, format.height, format.settings)?;
    let target = match format.placement {
        Placement::Fresh => job.path.clone(),
        Placement::Shared => {
            let name = job
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            job.path
                .with_file_name(format!(".{name}.{}.tmp", std::process::id()))
        }
    };
    if target == job.path {
        let file = File::create(&target).map_err(|e| png_error(e.to_string()))?;
        return write_png(file, &matte, format).map_err(png_error);
    }
    // Registered while it exists, so that a second signal removes it (see `signals`).
    let written = signals::create_temp_file(&target)
        .map_err(|e| e.to_string())
        .and_then(|file| write_png(file, &matte, format))
        .and_then(|()| fs::rename(&target, &job.path).map_err(|e| e.to_string()));
    if written.is_err() {
        let _ = fs::remove_file(&target);
    }
    signals::forget_file(&target);
    written.map_err(png_error)
}

fn write_png(file: File, matte: &[f32], format: &Plan) -> Result<(), String> {
    let png_error = |e: &dyn std::fmt::Display| e.to_string();
    let mut out = BufWriter::new(file);
    let encoder =
        PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive);
    let (w, h) = (format.width as u32, format.height as u32);
    match format.bits {
        Bits::Eight => encoder.write_image(&to_u8(matte), w, h, ExtendedColorType::L8),
        // Native-endian samples; the encoder writes PNG's big-endian.
        Bits::Sixteen => encoder.write_image(
            bytemuck::cast_slice(&to_u16(matte)),
            w,
            h,
            ExtendedColorType::L16,
        ),
    }
    .map_err(|e| png_error(&e))?;
    out.flush().map_err(|e| png_error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_object_folders_are_ours() {
        assert!(is_object_folder(OsStr::new("object_12")));
        for name in [
            "object_",
            "object_x",
            "objects",
            "notes.txt",
            "object_1.png",
        ] {
            assert!(!is_object_folder(OsStr::new(name)), "{name}");
        }
        for name in ["00000.png", "123456.png"] {
            assert!(is_frame_file(OsStr::new(name)), "{name}");
        }
        for name in [
            "0000.png",
            "00000.PNG",
            "0000x.png",
            "00000.png.bak",
            ".png",
        ] {
            assert!(!is_frame_file(OsStr::new(name)), "{name}");
        }
    }
}
