//! The SAM 2 plug-in's overlay in an OpenGL host without the Draw Suite (hosts before OpenFX 1.5):
//! the test host offers no Draw Suite, makes an offscreen Mesa context current for the draw action
//! (tests/host/PROTOCOL.md, `overlay_draw: "opengl"`), and reads the pixels back; the overlay must
//! draw its prompts there with legacy OpenGL, where they are, and leave the host's GL state as it
//! found it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "host/driver.rs"]
mod driver;

use std::process::Command;
use std::time::Duration;

use driver::{Components, Depth, FILTER, Host, HostOptions, Image, Pen, SAM2_PLUGIN_ID};
use serde_json::json;

/// The bundle with the test model, as tests/plugin.rs builds it.
fn bundle() -> std::path::PathBuf {
    driver::build().unwrap();
    let out = Command::new("bash")
        .arg(driver::workspace_root().join("bundle/build-bundle.sh"))
        .args(["--with-test-model", "--debug"])
        .current_dir(driver::workspace_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bundle/build-bundle.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    driver::sam2_bundle_dir()
}

/// The overlay's fill of a positive point (plugin/src/pen.rs), in 8 bits.
const POSITIVE: [f32; 3] = [0.2, 0.9, 0.3];

fn rgba(img: &Image, x: i32, y: i32) -> [f32; 4] {
    [0, 1, 2, 3].map(|c| img.get(x, y, c))
}

fn is_positive_fill(p: [f32; 4]) -> bool {
    (0..3).all(|c| (p[c] - POSITIVE[c]).abs() < 1.5 / 255.0) && p[3] == 1.0
}

#[test]
fn a_point_prompt_is_drawn_with_opengl_where_it_was_clicked() {
    let dir = bundle();
    let mut host =
        Host::spawn_with(HostOptions::new(&dir).timeout(Duration::from_secs(120))).unwrap();
    host.configure(json!({"overlay_draw": "opengl"})).unwrap();
    host.load().unwrap();
    let frame = Image::from_fn(96, 64, Components::Rgb, Depth::Byte, |x, y, c| {
        ((x * 3 + y * 5 + c * 40) % 200) as f32 / 255.0
    });
    host.set_source(&[frame]).unwrap();
    host.create_instance(SAM2_PLUGIN_ID, FILTER).unwrap();
    let suites = host.suites().unwrap();
    assert!(
        suites
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["suite"] != "OfxDrawSuite" || s["provided"] == false),
        "{suites}"
    );

    // Nothing prompted yet: nothing drawn, and the GL state is untouched.
    let (v, img) = host.draw_opengl(0.0).unwrap();
    assert_eq!(v["drawn_pixels"], 0, "{v}");
    assert_eq!((img.width, img.height), (96, 64));

    // A click at canonical (30, 40): a positive point of the selected object.
    host.pen(&Pen::down(30.0, 40.0).at(0.0)).unwrap();
    host.pen(&Pen::up(30.0, 40.0).at(0.0)).unwrap();
    let (v, img) = host.draw_opengl(0.0).unwrap();
    assert_eq!(v["status"], "kOfxStatOK", "{v}");
    assert_eq!(v["gl_error"], 0, "{v}");
    driver::assert_json(&v["stack_depths"], &json!([1, 1, 0]));
    // The filled square is centred on the click (canonical = viewport pixels at pixel scale 1).
    for (x, y) in [(30, 40), (28, 38), (31, 41)] {
        assert!(
            is_positive_fill(rgba(&img, x, y)),
            "({x}, {y}): {:?} in {v}",
            rgba(&img, x, y)
        );
    }
    let filled: Vec<(i32, i32)> = (0..64)
        .flat_map(|y| (0..96).map(move |x| (x, y)))
        .filter(|&(x, y)| is_positive_fill(rgba(&img, x, y)))
        .collect();
    assert!(
        filled
            .iter()
            .all(|&(x, y)| (x - 30).abs() <= 5 && (y - 40).abs() <= 5),
        "the fill stays around the click: {filled:?}"
    );
    assert_eq!(rgba(&img, 80, 10)[3], 0.0, "nothing drawn far from it");

    // At a viewer zoomed out twice the point is drawn at half the coordinates.
    host.request(json!({"cmd": "draw", "pixel_scale": [2.0, 2.0]}))
        .unwrap();
    let (v, img) = host.draw_opengl(0.0).unwrap();
    driver::assert_json(&v["viewport_size"], &json!([48, 32]));
    assert!(is_positive_fill(rgba(&img, 15, 20)), "{v}");
    host.quit().unwrap();
}
