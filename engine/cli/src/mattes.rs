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
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use indicatif::ProgressBar;
use parking_lot::Mutex;
use sam2_engine::ClipSession;
use sam2_engine::matte::{MatteSettings, MatteUpsampler, finish, to_u8, to_u16};
use sam2_engine::staged_dir::{Existing, entries, first_foreign};
use sam2_engine::trace::NO_OBJECT_LOGIT;

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

/// What stays the same for every matte.
struct Format<'a> {
    width: usize,
    height: usize,
    settings: &'a MatteSettings,
    bits: Bits,
}

/// Writes the mattes of every object the session holds, for every frame, into `dir`; returns how
/// many were written.
pub fn write_all(
    session: &ClipSession,
    dir: &Path,
    upsampler: &mut MatteUpsampler,
    settings: &MatteSettings,
    bits: Bits,
    bar: &ProgressBar,
) -> Result<usize, CliError> {
    let (w, h) = session.video_size();
    let format = Format {
        width: w as usize,
        height: h as usize,
        settings,
        bits,
    };
    let side = session.model().geometry().low_res;
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
                    match encode(&job, &format) {
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
        let produced = produce(session, dir, upsampler, side, &format, &sender, &failure);
        drop(sender);
        produced
    });
    produced?;
    if let Some(e) = failure.into_inner() {
        return Err(e);
    }
    Ok(written.into_inner())
}

/// Upsamples each object's result on each frame and queues it.
fn produce(
    session: &ClipSession,
    dir: &Path,
    upsampler: &mut MatteUpsampler,
    side: usize,
    format: &Format,
    queue: &mpsc::SyncSender<Job>,
    failure: &Mutex<Option<CliError>>,
) -> Result<(), CliError> {
    let (w, h) = (format.width, format.height);
    for object in session.object_ids() {
        let folder = dir.join(format!("object_{object}"));
        fs::create_dir(&folder).map_err(|e| CliError::Png {
            path: folder.clone(),
            message: format!("its folder could not be created ({e})"),
        })?;
        for frame in 0..session.num_frames() {
            if failure.lock().is_some() {
                return Ok(());
            }
            signals::check()?;
            let logits = match session.result(frame, object) {
                Some(result) => upsampler.upsample(&result.low_res_logits, side, side, w, h)?,
                None => vec![NO_OBJECT_LOGIT; w * h],
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
fn encode(job: &Job, format: &Format) -> Result<(), CliError> {
    let png_error = |message: String| CliError::Png {
        path: job.path.clone(),
        message,
    };
    let matte = finish(&job.logits, format.width, format.height, format.settings)?;
    let file = File::create(&job.path).map_err(|e| png_error(e.to_string()))?;
    let mut out = BufWriter::new(file);
    let encoder =
        PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive);
    let (w, h) = (format.width as u32, format.height as u32);
    match format.bits {
        Bits::Eight => encoder.write_image(&to_u8(&matte), w, h, ExtendedColorType::L8),
        // Native-endian samples; the encoder writes PNG's big-endian.
        Bits::Sixteen => encoder.write_image(
            bytemuck::cast_slice(&to_u16(&matte)),
            w,
            h,
            ExtendedColorType::L16,
        ),
    }
    .map_err(|e| png_error(e.to_string()))?;
    out.flush().map_err(|e| png_error(e.to_string()))
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
