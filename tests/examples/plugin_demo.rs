//! The demo (README command 1): the SAM 2 Rotoscope effect in a real OpenFX host.
//!
//! The host is `tests/host` (the official HostSupport library); the effect is the built bundle
//! `target/bundle/SAM2Rotoscope.ofx.bundle` with the test model. On the fixture clip of two objects
//! crossing, it clicks both objects on the first frame (through the prompts parameters, as a saved
//! project holds them), presses Track Forward, renders every frame as the overlay and as the matte,
//! and writes them as PNGs with a contact sheet (source / overlay / matte). It also runs the engine
//! CLI on the same clip and clicks and prints the time per frame of both: the plugin's own cost.
//!
//!     cargo run --release -p sam2-rotoscope-tests --example plugin_demo
//!
//! The test model has random weights: the mattes show that the pipeline works end to end, not
//! what a trained SAM 2 segments.

#[path = "../host/driver.rs"]
mod driver;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use driver::{
    Components, Depth, Host, Image, Render, SAM2_PLUGIN_ID, sam2_bundle_dir, workspace_root,
};
use image::{RgbImage, RgbaImage};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Output modes in the order of the effect's choice.
const OVERLAY: i64 = 2;
const MATTE_ONLY: i64 = 1;
/// Frames shown on the contact sheet.
const SHEET_FRAMES: [usize; 5] = [0, 3, 6, 9, 11];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The clip's frames, top row first (as files and the engine hold them).
fn read_clip(dir: &Path) -> Result<Vec<RgbImage>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| Ok(image::open(f)?.to_rgb8()))
        .collect()
}

/// An RGB frame as an OpenFX image: bottom row first.
fn to_ofx(frame: &RgbImage) -> Image {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let mut img = Image::new(w, h, Components::Rgb, Depth::Byte);
    let row = w * 3;
    for y in 0..h {
        let top = h - 1 - y;
        img.data[y * row..(y + 1) * row]
            .copy_from_slice(&frame.as_raw()[top * row..(top + 1) * row]);
    }
    img
}

/// An 8-bit RGBA OpenFX output as a PNG-ready image, top row first.
fn from_ofx(img: &Image) -> RgbaImage {
    let (w, h) = (img.width as u32, img.height as u32);
    RgbaImage::from_fn(w, h, |x, y| {
        let oy = img.y1 + (h - 1 - y) as i32;
        let ox = img.x1 + x as i32;
        let px = |c| (img.get(ox, oy, c).clamp(0.0, 1.0) * 255.0).round() as u8;
        image::Rgba([px(0), px(1), px(2), px(3)])
    })
}

fn prompts(x: f64, y: f64) -> String {
    serde_json::json!({
        "format": "sam2-rotoscope-prompts",
        "version": 1,
        "frames": {"0": {"points": [[x, y]], "labels": [1]}}
    })
    .to_string()
}

fn run() -> Result<()> {
    let root = workspace_root();
    let out = root.join("out/demo/plugin");
    let clip_dir = root.join("tests/fixtures/clips/crossing");
    let bundle = sam2_bundle_dir();
    if !bundle.join("SAM2Rotoscope.ofx.bundle").is_dir() {
        return Err(format!(
            "the bundle is not built in {}; run bundle/build-bundle.sh --with-test-model",
            bundle.display()
        )
        .into());
    }
    driver::build()?;
    let frames = read_clip(&clip_dir)?;
    let n = frames.len();

    let mut host = Host::spawn(&bundle)?;
    let report = host.load()?;
    if report.plugin(SAM2_PLUGIN_ID).is_none_or(|p| !p.ok) {
        return Err(format!("the host did not load the effect: {}", report.raw).into());
    }
    host.create_instance(SAM2_PLUGIN_ID, "filter")?;
    host.set_source(&frames.iter().map(to_ofx).collect::<Vec<_>>())?;
    // The clicks of tests/fixtures/scripts/two_objects.json: the disk and the triangle.
    host.set_param("object1Prompts", prompts(60.0, 80.0))?;
    host.set_param("object2Prompts", prompts(270.0, 90.0))?;
    host.set_time(0.0)?;
    let track = Instant::now();
    host.press_button("trackForward")?;
    let track_s = track.elapsed().as_secs_f64();
    if let Some(m) = host.messages()?.persistent {
        println!("effect says: {}", m.text);
    }

    std::fs::create_dir_all(&out)?;
    let mut sheets: Vec<Vec<RgbaImage>> = vec![Vec::new(), Vec::new()];
    let mut render_s = 0.0;
    for (row, (mode, name)) in [(OVERLAY, "overlay"), (MATTE_ONLY, "matte")]
        .into_iter()
        .enumerate()
    {
        host.set_param("outputMode", mode)?;
        let dir = out.join(name);
        std::fs::create_dir_all(&dir)?;
        for t in 0..n {
            let start = Instant::now();
            let rendered = host.render(&Render::at(t as f64))?;
            render_s += start.elapsed().as_secs_f64();
            let png = from_ofx(&rendered.image);
            png.save(dir.join(format!("{t:05}.png")))?;
            if SHEET_FRAMES.contains(&t) {
                // The sheet shows colour only (the matte row's RGB is the matte), opaque.
                let mut opaque = png.clone();
                opaque.pixels_mut().for_each(|p| p.0[3] = 255);
                sheets[row].push(opaque);
            }
        }
    }

    // Contact sheet: source, overlay and matte rows at the chosen frames.
    let (w, h) = (frames[0].width(), frames[0].height());
    let cols = SHEET_FRAMES.iter().filter(|&&f| f < n).count() as u32;
    let mut sheet = RgbaImage::new(w * cols, h * 3);
    for (c, &f) in SHEET_FRAMES.iter().filter(|&&f| f < n).enumerate() {
        let source = image::DynamicImage::ImageRgb8(frames[f].clone()).to_rgba8();
        image::imageops::replace(&mut sheet, &source, i64::from(c as u32 * w), 0);
        for (row, images) in sheets.iter().enumerate() {
            if let Some(img) = images.get(c) {
                image::imageops::replace(
                    &mut sheet,
                    img,
                    i64::from(c as u32 * w),
                    i64::from((row as u32 + 1) * h),
                );
            }
        }
    }
    let sheet_path = root.join("out/demo/contact_sheet.png");
    sheet.save(&sheet_path)?;

    // The engine CLI on the same clip and clicks, for the plugin's own cost.
    let cli = root.join("target/release/sam2-rotoscope");
    let mut cli_line = String::from("(the CLI is not built; cargo build --release)");
    if cli.is_file() {
        let model = root.join("tests/fixtures/models/test");
        let script = root.join("tests/fixtures/scripts/two_objects.json");
        let cli_out = root.join("out/demo/cli-mattes");
        let start = Instant::now();
        let status = Command::new(&cli)
            .args(["track", "--device", "cpu", "--force", "--model"])
            .arg(&model)
            .arg("--script")
            .arg(&script)
            .arg("--out")
            .arg(&cli_out)
            .output()?;
        let cli_s = start.elapsed().as_secs_f64();
        if status.status.success() {
            // The summary line: "12 frames, 2 objects: 14 frame updates in 0.31 s (…)".
            let stdout = String::from_utf8_lossy(&status.stdout);
            let tracking_s = stdout
                .split(" frame updates in ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|v| v.parse::<f64>().ok());
            cli_line = match tracking_s {
                Some(t) => format!(
                    "engine CLI on the same clip and clicks: tracking {:.1} ms per frame ({:.1} ms with loading and writing)",
                    t * 1000.0 / n as f64,
                    cli_s * 1000.0 / n as f64
                ),
                None => format!(
                    "engine CLI (load, track, write mattes): {:.1} ms per frame",
                    cli_s * 1000.0 / n as f64
                ),
            };
        }
    }
    println!(
        "contact sheet: {} (rows: source, overlay, matte; frames {:?})",
        sheet_path.display(),
        &SHEET_FRAMES[..cols as usize]
    );
    println!(
        "frames: {} (overlay) and {} (matte)",
        out.join("overlay").display(),
        out.join("matte").display()
    );
    println!(
        "plugin in the host: Track Forward {:.1} ms per frame, a render of a tracked frame {:.1} ms; {cli_line}",
        track_s * 1000.0 / n as f64,
        render_s * 1000.0 / (2 * n) as f64
    );
    host.quit()?;
    Ok(())
}
