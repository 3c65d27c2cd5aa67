//! SAM 2 Rotoscope as a compositing host sees it: the bundle that bundle/build-bundle.sh makes
//! (debug build, the test model in its default model folder), loaded by the OpenFX test host
//! (tests/host/, on the official HostSupport library) through OFX_PLUGIN_PATH, and driven as an
//! artist would: describe, feed footage, click in the viewer, press Track, render, save and reopen
//! the project, and a thousand random actions.
//!
//! The mattes are checked against the engine's CLI (`sam2-rotoscope track`) on the same fixture
//! clips and interaction scripts: the plug-in renders in 8 bits here (the clip's depth; the
//! fixture clips are 8-bit PNGs) and its default finishing is the CLI's (hard matte, threshold 0),
//! so every matte is 0 or 255 and must be equal to the CLI's bit for bit.
//!
//! Coordinates: the host speaks OpenFX canonical coordinates (y up, origin bottom-left); the
//! scripts and the prompts parameter use source pixels from the top-left corner (y down), so a
//! script point (x, y) is the pen position (x, H − y) for a source of height H (docs/plugin.md).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "host/driver.rs"]
mod driver;
#[path = "plugin_support/mod.rs"]
mod support;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use driver::{Depth, FILTER, GENERAL, Host, HostError, Image, Pen, Render, SAM2_PLUGIN_ID, Source};
use serde_json::{Value, json};
use support::{Click, Frame, Mattes};

/// The output modes, as indices of the `outputMode` choice (docs/plugin.md).
const SOURCE_WITH_MATTE: i64 = 0;
const MATTE_ONLY: i64 = 1;
const ID_MATTE: i64 = 3;
const SELECTED_ONLY: i64 = 4;

// ------------------------------------------------------------------------------------------------
// Helpers

/// Presses a push button at `time` (kOfxActionInstanceChanged, user edit); the plug-in must
/// answer kOfxStatOK.
fn press(host: &mut Host, button: &str, time: f64) -> Value {
    let r = host
        .request(json!({"cmd": "set_param", "name": button, "time": time}))
        .unwrap();
    assert_eq!(r["status"], "kOfxStatOK", "{button}: {r}");
    r
}

/// A click (pen down and up at the same place) at source pixel (x, y) of a source `height` pixels
/// high, at `time`; with Ctrl held for a negative point.
fn click(host: &mut Host, height: usize, x: f64, y: f64, time: f64, ctrl: bool) -> Value {
    let cy = height as f64 - y;
    let mut down = Pen::down(x, cy).at(time);
    let mut up = Pen::up(x, cy).at(time);
    if ctrl {
        down = down.ctrl();
        up = up.ctrl();
    }
    let d = host.pen(&down).unwrap();
    assert_eq!(d["status"], "kOfxStatOK", "pen down: {d}");
    let u = host.pen(&up).unwrap();
    assert_eq!(u["status"], "kOfxStatOK", "pen up: {u}");
    u
}

/// Object `slot`'s prompts parameter, parsed (`Null` when empty).
fn prompts(host: &mut Host, slot: u32) -> Value {
    support::parse_prompts(&host.get_param(&format!("object{slot}Prompts")).unwrap())
}

/// The prompts document the plug-in writes for one frame: points with labels, and a box.
fn frame_doc(points: &[Click], bbox: Option<[f64; 4]>) -> Value {
    let mut f = json!({
        "points": points.iter().map(|(p, _)| json!(p)).collect::<Vec<_>>(),
        "labels": points.iter().map(|(_, l)| json!(l)).collect::<Vec<_>>(),
    });
    if let Some(b) = bbox {
        f["box"] = json!(b);
    }
    f
}

/// Asserts that `frames` of a parsed prompts parameter is `expected` ({frame: frame_doc}).
#[track_caller]
fn assert_prompts(got: &Value, expected: &Value) {
    assert_eq!(got["format"], "sam2-rotoscope-prompts", "{got}");
    assert_eq!(got["version"], 1, "{got}");
    driver::assert_json(&got["frames"], expected);
}

fn render(host: &mut Host, time: f64) -> Image {
    host.render(&Render::at(time)).unwrap().image
}

fn alpha(host: &mut Host, time: f64) -> Vec<u8> {
    support::channel_top_down(&render(host, time), 3)
}

#[track_caller]
fn assert_matte(got: &[u8], want: &[u8], width: usize, what: &str) {
    let (n, first) = support::differences(got, want, width);
    assert!(
        n == 0,
        "{what}: {n} pixels differ from the CLI's matte (x, y, plug-in, CLI): {first:?}"
    );
}

/// A host with `clip` as its footage and a fresh instance in "Matte only" mode.
fn instance_over(clip: &str) -> (Host, Vec<Frame>) {
    let frames = support::clip(clip);
    let mut host = support::host();
    host.set_source(&support::images(&frames)).unwrap();
    host.create_instance(SAM2_PLUGIN_ID, FILTER).unwrap();
    host.set_param("outputMode", MATTE_ONLY).unwrap();
    (host, frames)
}

/// Checks every frame's render against the CLI: the union in "Matte only", and with several
/// objects each object's matte in "Selected object only" (RGB: the source, unpremultiplied) and
/// the object numbers in "ID matte". Any depth: the mattes are hard (0 or 1), so they are the
/// CLI's 8-bit values exactly at every depth.
fn check_all_frames(host: &mut Host, frames: &[Frame], cli: &Mattes, what: &str) {
    assert_eq!(cli.frames(), frames.len());
    host.set_param("outputMode", MATTE_ONLY).unwrap();
    for f in 0..frames.len() {
        let out = render(host, f as f64);
        let a = support::channel_u8(&out, 3);
        assert_matte(&a, &cli.union(f), cli.width, &format!("{what}, frame {f}"));
        // Matte only: the matte in every channel.
        assert_eq!(support::channel_u8(&out, 0), a, "{what}, frame {f}");
        assert!(a.contains(&255), "{what}: frame {f} has an empty matte");
    }
    if cli.objects.len() > 1 {
        host.set_param("outputMode", SELECTED_ONLY).unwrap();
        for (&id, mattes) in &cli.objects {
            host.set_param("selectedObject", id as i64 - 1).unwrap();
            for (f, frame) in frames.iter().enumerate() {
                let out = render(host, f as f64);
                let a = support::channel_u8(&out, 3);
                assert_matte(
                    &a,
                    &mattes[f],
                    cli.width,
                    &format!("{what}, object {id}, frame {f}"),
                );
                let green: Vec<u8> = frame.rgb.chunks_exact(3).map(|p| p[1]).collect();
                assert_eq!(support::channel_u8(&out, 1), green, "{what}: source green");
            }
        }
        // ID matte: the number of the object covering the pixel (the lower number where both
        // do), stored as that whole number at every depth; alpha 1 where an object is.
        host.set_param("outputMode", ID_MATTE).unwrap();
        for f in 0..frames.len() {
            let out = render(host, f as f64);
            let ids = support::raw_top_down(&out, 0);
            let alpha = support::channel_u8(&out, 3);
            for (i, (id, a)) in ids.iter().zip(&alpha).enumerate() {
                let want = cli
                    .objects
                    .iter()
                    .find(|(_, m)| m[f][i] == 255)
                    .map_or(0.0, |(&k, _)| k as f64);
                assert!(
                    *id == want && *a == if want > 0.0 { 255 } else { 0 },
                    "{what}: ID matte at frame {f}, pixel ({}, {}): {id} (alpha {a}), the CLI's mattes say {want}",
                    i % cli.width,
                    i / cli.width
                );
            }
        }
        host.set_param("outputMode", MATTE_ONLY).unwrap();
        host.set_param("selectedObject", 0).unwrap();
    }
    let m = host.messages().unwrap();
    assert!(m.persistent.is_none(), "{what}: {:?}", m.persistent);
    assert_eq!(
        host.live_images().unwrap(),
        0,
        "{what}: images not released"
    );
}

/// The fetch log split by render: each render fetches its Output image first. Returns
/// (render time, Source fetches) per render and the Source fetches outside renders.
fn fetches_by_render(log: &[Value]) -> (Vec<(f64, Vec<Value>)>, Vec<Value>) {
    let mut renders: Vec<(f64, Vec<Value>)> = Vec::new();
    let mut outside = Vec::new();
    for e in log {
        if e["clip"] == "Output" {
            renders.push((e["time"].as_f64().unwrap(), Vec::new()));
        } else if e["in_render"] == true {
            renders
                .last_mut()
                .expect("a source fetch in a render before its output")
                .1
                .push(e.clone());
        } else {
            outside.push(e.clone());
        }
    }
    (renders, outside)
}

// ------------------------------------------------------------------------------------------------
// 1. Load and describe

/// The load report: one plug-in, ours, with its label, overlay, contexts, depths and bundle.
fn the_load_report_lists_the_effect(host: &mut Host) {
    let report = host.load().unwrap();
    assert_eq!(report.plugins.len(), 1, "{}", report.raw);
    let me = report.plugin(SAM2_PLUGIN_ID).unwrap();
    assert!(me.ok, "{me:?}");
    assert_eq!(me.label, "SAM 2 Rotoscope");
    assert!(me.overlay, "the viewer overlay is declared");
    assert_eq!(
        me.contexts,
        [
            "OfxImageEffectContextFilter",
            "OfxImageEffectContextGeneral"
        ]
    );
    assert_eq!(
        me.pixel_depths,
        [
            "OfxBitDepthByte",
            "OfxBitDepthShort",
            "OfxBitDepthHalf",
            "OfxBitDepthFloat"
        ]
    );
    assert!(
        me.bundle.ends_with("SAM2Rotoscope.ofx.bundle"),
        "{}",
        me.bundle
    );
    for b in report.raw["binaries"].as_array().unwrap() {
        assert_eq!(b["ok"], true, "{b}");
    }
}

/// The effect's own description (kOfxActionDescribe).
fn the_effect_describes_itself(host: &mut Host) {
    let d = host.describe(SAM2_PLUGIN_ID, None).unwrap();
    assert_eq!(d["label"], "SAM 2 Rotoscope");
    assert_eq!(d["grouping"], "Keyer");
    assert_json_fields(
        &d,
        &json!({
            "render_thread_safety": "OfxImageEffectRenderInstanceSafe",
            "supports_tiles": true,
            "supports_multi_resolution": true,
            "temporal_clip_access": true,
            "overlay": true,
            "single_instance": false,
        }),
    );
}

/// One context's description: the clips, the four pages and every parameter's kind.
fn the_context_declares_clips_pages_and_parameters(host: &mut Host, context: &str) {
    let d = host.describe(SAM2_PLUGIN_ID, Some(context)).unwrap();
    let clips: Vec<&str> = d["clips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(clips, ["Source", "Output"], "{context}");
    let source = &d["clips"][0];
    assert_eq!(
        source["components"],
        json!(["OfxImageComponentRGBA", "OfxImageComponentRGB"])
    );
    assert_eq!(source["optional"], false);
    assert_eq!(source["temporal_access"], true);
    assert_eq!(
        d["clips"][1]["components"],
        json!(["OfxImageComponentRGBA"])
    );

    let params = d["params"].as_array().unwrap();
    let param = |name: &str| {
        params
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{context}: no param {name}"))
            .clone()
    };
    // The four pages, in order, with their children.
    let pages: Vec<&str> = params
        .iter()
        .filter(|p| p["type"] == "OfxParamTypePage")
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    assert_eq!(pages, ["Prompts", "Matte", "Model", "Cache"], "{context}");
    let children = |page: &str| -> Vec<String> {
        param(page)["props"]["OfxParamPropPageChild"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };
    let prompts_page = children("promptsPage");
    for name in [
        "selectedObject",
        "trackForward",
        "trackBackward",
        "trackBoth",
        "clearTrackAfter",
        "clearFrame",
        "clearAll",
        "status",
    ] {
        assert!(prompts_page.contains(&name.to_string()), "{name}");
    }
    for slot in 1..=8 {
        let group = format!("object{slot}Group");
        assert!(prompts_page.contains(&group), "{group}");
        assert_eq!(param(&group)["type"], "OfxParamTypeGroup");
        for field in ["Name", "Colour", "Enabled", "Prompts"] {
            let p = param(&format!("object{slot}{field}"));
            assert_eq!(p["parent"], group.as_str(), "{p}");
        }
        let prompts = param(&format!("object{slot}Prompts"));
        assert_eq!(prompts["type"], "OfxParamTypeString");
        assert_eq!(
            prompts["secret"], false,
            "the prompts are settable by hosts that skip secret parameters (MLT)"
        );
        assert_eq!(prompts["persistent"], true, "the prompts are saved");
    }
    assert_eq!(
        children("mattePage"),
        [
            "outputMode",
            "premultiply",
            "overlayOpacity",
            "refineEdges",
            "edgeRadius",
            "edgeEpsilon",
            "threshold",
            "softness",
            "feather",
            "chokeExpand",
            "fillHoles",
            "removeSpecks"
        ]
    );
    assert_eq!(
        children("modelPage"),
        ["modelDirectory", "device", "precision", "linearSource"]
    );
    assert_eq!(
        children("cachePage"),
        [
            "memoryBudget",
            "trackOnRender",
            "clipLength",
            "trackCacheFile",
            "trackIntoCache",
            "exportScript"
        ]
    );
    for button in [
        "trackForward",
        "trackBackward",
        "trackBoth",
        "clearTrackAfter",
        "clearFrame",
        "clearAll",
        "trackIntoCache",
        "exportScript",
    ] {
        assert_eq!(param(button)["type"], "OfxParamTypePushButton", "{button}");
    }
    let kinds = [
        ("selectedObject", "OfxParamTypeChoice"),
        ("outputMode", "OfxParamTypeChoice"),
        ("premultiply", "OfxParamTypeBoolean"),
        ("overlayOpacity", "OfxParamTypeDouble"),
        ("refineEdges", "OfxParamTypeChoice"),
        ("edgeRadius", "OfxParamTypeDouble"),
        ("edgeEpsilon", "OfxParamTypeDouble"),
        ("threshold", "OfxParamTypeDouble"),
        ("softness", "OfxParamTypeDouble"),
        ("feather", "OfxParamTypeDouble"),
        ("chokeExpand", "OfxParamTypeInteger"),
        ("fillHoles", "OfxParamTypeInteger"),
        ("removeSpecks", "OfxParamTypeInteger"),
        ("modelDirectory", "OfxParamTypeString"),
        ("device", "OfxParamTypeChoice"),
        ("precision", "OfxParamTypeChoice"),
        ("linearSource", "OfxParamTypeBoolean"),
        ("memoryBudget", "OfxParamTypeInteger"),
        ("trackOnRender", "OfxParamTypeInteger"),
        ("trackCacheFile", "OfxParamTypeString"),
        ("status", "OfxParamTypeString"),
        ("object1Colour", "OfxParamTypeRGB"),
        ("object1Enabled", "OfxParamTypeBoolean"),
    ];
    for (name, kind) in kinds {
        assert_eq!(param(name)["type"], kind, "{name}");
    }
    assert_eq!(
        param("selectedObject")["options"],
        json!((1..=8).map(|i| format!("Object {i}")).collect::<Vec<_>>())
    );
    assert_eq!(
        param("outputMode")["options"],
        json!([
            "Source + matte as alpha",
            "Matte only",
            "Overlay (tinted objects)",
            "ID matte (object number)",
            "Selected object only"
        ])
    );
    assert_eq!(param("device")["options"].as_array().unwrap().len(), 3);
    assert_eq!(
        param("precision")["options"],
        json!(["Exact", "Fast (quantized)"])
    );
    assert_eq!(param("precision")["props"]["OfxParamPropDefault"], 0);
    assert_eq!(
        param("refineEdges")["options"],
        json!(["Off", "Colour", "Luminance"])
    );
    assert_eq!(param("refineEdges")["props"]["OfxParamPropDefault"], 0);
    assert_eq!(param("edgeRadius")["props"]["OfxParamPropDefault"], 0.0);
    assert_eq!(
        param("edgeEpsilon")["props"]["OfxParamPropDefault"].as_f64(),
        Some(f64::from(sam2_engine::matte::DEFAULT_EPSILON))
    );
    assert_eq!(
        param("status")["persistent"],
        false,
        "the status is not saved"
    );
    assert_eq!(
        param("modelDirectory")["props"]["OfxParamPropStringMode"],
        "OfxParamStringIsDirectoryPath"
    );
    assert_eq!(param("trackOnRender")["props"]["OfxParamPropDefault"], 8);
    assert_eq!(param("memoryBudget")["props"]["OfxParamPropDefault"], 1024);
}

#[test]
fn loads_and_describes_itself_in_the_filter_and_general_contexts() {
    let mut host = support::spawn(&support::setup().bundle_dir);
    the_load_report_lists_the_effect(&mut host);
    the_effect_describes_itself(&mut host);
    for context in [FILTER, GENERAL] {
        the_context_declares_clips_pages_and_parameters(&mut host, context);
    }
    // A context it does not offer is refused.
    assert!(matches!(
        host.describe(SAM2_PLUGIN_ID, Some("generator")),
        Err(HostError::Command { .. })
    ));

    // An instance in each context renders (no prompts: the source with an empty matte).
    let frames = support::clip("shapes");
    host.set_source(&support::images(&frames[..2])).unwrap();
    for context in [FILTER, GENERAL] {
        let created = host.create_instance(SAM2_PLUGIN_ID, context).unwrap();
        assert_eq!(
            created["clips"]["Output"]["components"],
            "OfxImageComponentRGBA"
        );
        assert_eq!(created["clips"]["Output"]["depth"], "byte");
        let out = render(&mut host, 1.0);
        assert!(
            support::channel_top_down(&out, 3).iter().all(|&a| a == 0),
            "{context}: no object, no matte"
        );
        let green: Vec<u8> = frames[1].rgb.chunks_exact(3).map(|p| p[1]).collect();
        assert_eq!(support::channel_top_down(&out, 1), green, "{context}");
        host.destroy_instance().unwrap();
    }
    host.quit().unwrap();
}

#[track_caller]
fn assert_json_fields(got: &Value, expected: &Value) {
    for (k, v) in expected.as_object().unwrap() {
        assert!(driver::json_same(&got[k], v), "{k}: {v} expected in {got}");
    }
}

// ------------------------------------------------------------------------------------------------
// 2. No model

#[test]
fn a_missing_model_is_a_persistent_error_and_the_source_passes_through() {
    let built = support::setup();
    let frames = support::clip("shapes");
    let clicks = support::prompts_doc(&[(0, None, &[([70.0, 90.0], 1)])]);

    // A bundle without a model, and no Model Directory.
    let mut host = support::host_over(&built.bundle_without_model_dir);
    host.set_source(&support::images(&frames[..3])).unwrap();
    host.create_instance(SAM2_PLUGIN_ID, FILTER).unwrap();
    host.set_param("object1Prompts", clicks.as_str()).unwrap();
    for mode in [SOURCE_WITH_MATTE, MATTE_ONLY] {
        host.set_param("outputMode", mode).unwrap();
        for f in [0, 2] {
            let out = render(&mut host, f as f64);
            support::shows_source(&out, &frames[f]).unwrap_or_else(|e| {
                panic!("no model, mode {mode}, frame {f}: not the source: {e}")
            });
        }
        let p = host
            .messages()
            .unwrap()
            .persistent
            .expect("a persistent message");
        assert_eq!(p.kind, "OfxMessageError", "{p:?}");
        assert!(
            p.text.contains("No SAM 2 model") && p.text.contains("Model Directory"),
            "{p:?}"
        );
        assert!(
            p.text.contains("Resources/models"),
            "it names where it looked: {p:?}"
        );
    }
    // The Track button says so too, and the prompts stay.
    press(&mut host, "trackForward", 0.0);
    let p = host.messages().unwrap().persistent.expect("a message");
    assert!(p.text.contains("No SAM 2 model"), "{p:?}");
    assert_eq!(host.get_param("object1Prompts").unwrap(), clicks.as_str());
    assert_eq!(host.live_images().unwrap(), 0);
    host.quit().unwrap();

    // The bundle with the model, a Model Directory that does not exist, then one without a
    // manifest, then the real one: the message names the problem and goes away once fixed.
    let (mut host, frames) = instance_over("shapes");
    host.set_param("object1Prompts", clicks.as_str()).unwrap();
    let missing = std::env::temp_dir().join("sam2-rotoscope-no-such-model-dir");
    let empty = tempfile::tempdir().unwrap();
    for (dir, needle) in [
        (missing.clone(), missing.display().to_string()),
        (empty.path().to_path_buf(), "no manifest.json".to_string()),
    ] {
        host.set_param("modelDirectory", dir.to_string_lossy().as_ref())
            .unwrap();
        let out = render(&mut host, 0.0);
        support::shows_source(&out, &frames[0])
            .unwrap_or_else(|e| panic!("{}: not the source: {e}", dir.display()));
        let p = host
            .messages()
            .unwrap()
            .persistent
            .expect("a persistent message");
        assert_eq!(p.kind, "OfxMessageError", "{p:?}");
        assert!(p.text.contains(&needle), "{}: {p:?}", dir.display());
        assert!(
            p.text.contains(&dir.display().to_string()),
            "the message names the folder: {p:?}"
        );
    }
    let model = support::fixtures().join("models/test");
    host.set_param("modelDirectory", model.to_string_lossy().as_ref())
        .unwrap();
    let a = alpha(&mut host, 0.0);
    assert_matte(
        &a,
        &support::cli_mattes("one_click").union(0),
        frames[0].width,
        "a model again",
    );
    assert!(host.messages().unwrap().persistent.is_none());
    host.set_param("modelDirectory", "").unwrap();
    assert_eq!(
        alpha(&mut host, 0.0),
        a,
        "the bundled model is the same one"
    );
    assert!(host.messages().unwrap().persistent.is_none());
    host.quit().unwrap();
}

/// A host over the bundle without a model, with this environment, that rendered frame 0 with one
/// click: the error message it shows.
fn missing_model_message(env: &[(&str, &str)]) -> String {
    let frames = support::clip("shapes");
    let clicks = support::prompts_doc(&[(0, None, &[([70.0, 90.0], 1)])]);
    let mut host = support::host_with_env(&support::setup().bundle_without_model_dir, env);
    host.set_source(&support::images(&frames[..2])).unwrap();
    host.create_instance(SAM2_PLUGIN_ID, FILTER).unwrap();
    host.set_param("object1Prompts", clicks.as_str()).unwrap();
    render(&mut host, 0.0);
    let p = host.messages().unwrap().persistent.expect("a message");
    assert_eq!(p.kind, "OfxMessageError", "{p:?}");
    assert!(p.text.contains("No SAM 2 model"), "{p:?}");
    host.quit().unwrap();
    p.text
}

#[test]
fn an_error_message_names_the_log_that_holds_its_cause() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("not/yet/there/sam2.log");
    let log_name = log.to_string_lossy().into_owned();

    // On (info): the message ends with the log's path, and the log holds the cause.
    let text = missing_model_message(&[
        ("SAM2_ROTOSCOPE_LOG", "info"),
        ("SAM2_ROTOSCOPE_LOG_FILE", &log_name),
    ]);
    assert!(
        text.ends_with(&format!("Details are in the log, {log_name}.")),
        "{text}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("logging at level INFO"),
        "the log says how it was started:\n{logged}"
    );
    assert!(
        logged
            .lines()
            .any(|l| l.contains(" ERROR ") && l.contains("No SAM 2 model")),
        "the cause is logged as an error:\n{logged}"
    );

    // Off: no file; the message says how to switch it on and where it would go.
    let off = logs.path().join("off.log");
    let off_name = off.to_string_lossy().into_owned();
    let text = missing_model_message(&[
        ("SAM2_ROTOSCOPE_LOG", "off"),
        ("SAM2_ROTOSCOPE_LOG_FILE", &off_name),
    ]);
    assert!(
        text.contains("SAM2_ROTOSCOPE_LOG=debug") && text.contains(&off_name),
        "{text}"
    );
    assert!(!off.exists(), "logging off writes nothing");

    // A file that cannot be written: the effect works as before, and says where it tried.
    let blocked = logs.path().join("a-file");
    std::fs::write(&blocked, "").unwrap();
    let unwritable = blocked.join("sam2.log");
    let unwritable_name = unwritable.to_string_lossy().into_owned();
    let text = missing_model_message(&[("SAM2_ROTOSCOPE_LOG_FILE", &unwritable_name)]);
    assert!(
        text.contains("could not be written") && text.contains(&unwritable_name),
        "{text}"
    );
}

// ------------------------------------------------------------------------------------------------
// 3. Parity with the CLI

/// Clicks `script`'s prompts with the pen on frame 0 and checks the prompts parameters.
fn click_script(host: &mut Host, height: usize, script: &str) {
    for (frame, object, points) in support::script_clicks(script) {
        host.set_param("selectedObject", i64::from(object) - 1)
            .unwrap();
        for &(p, label) in &points {
            let r = click(host, height, p[0], p[1], frame as f64, label == 0);
            assert!(
                r["plugin_changed"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(format!("object{object}Prompts"))),
                "{r}"
            );
        }
        assert_prompts(
            &prompts(host, object),
            &json!({ frame.to_string(): frame_doc(&points, None) }),
        );
    }
}

/// Two objects clicked with the pen on the crossing clip, tracked forward: the progress bar, the
/// frames read outside renders, the status line and the CLI's mattes; a disabled object, enabled
/// again, is tracked again to the same mattes.
fn two_clicked_objects_track_forward_to_the_cli_mattes() {
    // Two objects clicked with the pen on the crossing clip.
    let (mut host, frames) = instance_over("crossing");
    let n = frames.len();
    click_script(&mut host, frames[0].height, "two_objects");
    host.request(json!({"cmd": "progress", "clear": true}))
        .unwrap();
    host.request(json!({"cmd": "fetches", "clear": true}))
        .unwrap();
    let r = press(&mut host, "trackForward", 0.0);
    assert!(
        r["plugin_changed"]
            .as_array()
            .unwrap()
            .contains(&json!("revision")),
        "tracking bumps the revision so the host drops cached frames: {r}"
    );
    // The progress bar went from start to end, and every frame was read by time (temporal
    // access) outside any render.
    let progress = host.progress().unwrap();
    assert_eq!(
        progress.first().map(|p| p["kind"].clone()),
        Some(json!("start")),
        "{progress:?}"
    );
    assert_eq!(
        progress.last().map(|p| p["kind"].clone()),
        Some(json!("end")),
        "{progress:?}"
    );
    let (renders, outside) = fetches_by_render(&host.fetches().unwrap());
    assert!(renders.is_empty());
    let mut fetched: Vec<i64> = outside
        .iter()
        .filter(|e| e["ok"] == true)
        .map(|e| e["frame"].as_i64().unwrap())
        .collect();
    fetched.sort_unstable();
    fetched.dedup();
    assert_eq!(
        fetched,
        (0..n as i64).collect::<Vec<_>>(),
        "frames the Track read"
    );
    let status = host.get_param("status").unwrap();
    assert!(
        status
            .as_str()
            .unwrap()
            .contains(&format!("{n}/{n} frames tracked")),
        "{status}"
    );
    let cli = support::cli_mattes("two_objects");
    check_all_frames(&mut host, &frames, &cli, "two_objects, Track");
    // A disabled object is not output; enabled again, it gets its prompts back and is tracked
    // again (on render, within reach) to the same mattes.
    host.set_param("object2Enabled", false).unwrap();
    for f in [0, 5] {
        assert_matte(
            &alpha(&mut host, f as f64),
            &cli.objects[&1][f],
            cli.width,
            &format!("object 2 disabled, frame {f}"),
        );
    }
    assert_eq!(
        prompts(&mut host, 2)["frames"]["0"],
        frame_doc(&[([270.0, 90.0], 1)], None)
    );
    host.set_param("object2Enabled", true).unwrap();
    for f in 0..=5 {
        assert_matte(
            &alpha(&mut host, f as f64),
            &cli.union(f),
            cli.width,
            &format!("object 2 enabled again, frame {f}"),
        );
    }
    host.quit().unwrap();
}

/// The progress bar's cancel button stops the Track half-way and keeps what was tracked (with
/// Track On Render off, the rest shows the source and a warning); Track again finishes it.
fn a_cancelled_track_keeps_what_it_tracked(host: &mut Host, frames: &[Frame], cli: &Mattes) {
    let n = frames.len();
    host.set_param("trackOnRender", 0).unwrap();
    host.cancel_at_progress(0.5).unwrap();
    press(host, "trackForward", 0.0);
    host.clear_abort().unwrap();
    let status = host.get_param("status").unwrap();
    let tracked: usize = status
        .as_str()
        .unwrap()
        .split(" frames tracked")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|s| s.split('/').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no frame count in the status {status}"));
    assert!(tracked > 1 && tracked < n, "cancelled half-way: {status}");
    for f in 0..tracked {
        assert_matte(
            &alpha(host, f as f64),
            &cli.union(f),
            cli.width,
            &format!("cancelled Track, frame {f}"),
        );
    }
    support::shows_source(&render(host, (n - 1) as f64), &frames[n - 1])
        .unwrap_or_else(|e| panic!("an untracked frame after a cancelled Track: {e}"));
    assert!(
        host.messages()
            .unwrap()
            .persistent
            .is_some_and(|p| p.text.contains("not tracked"))
    );
    host.set_param("trackOnRender", 8).unwrap();
    press(host, "trackForward", 0.0);
    check_all_frames(host, frames, cli, "one_click, Track");
}

/// Clear Track After frame 4: the later mattes are hidden (the source is shown, with a warning),
/// and a render does not bring them back even within reach; Track does.
fn clear_track_after_hides_the_later_mattes(host: &mut Host, frames: &[Frame], cli: &Mattes) {
    press(host, "clearTrackAfter", 4.0);
    assert_matte(&alpha(host, 4.0), &cli.union(4), cli.width, "frame 4, kept");
    for f in [5, 8] {
        support::shows_source(&render(host, f as f64), &frames[f])
            .unwrap_or_else(|e| panic!("frame {f} after Clear Track After: {e}"));
        let p = host.messages().unwrap().persistent.expect("a warning");
        assert_eq!(p.kind, "OfxMessageWarning", "{p:?}");
        assert!(
            p.text.contains(&format!("Frame {f} is not tracked")),
            "{p:?}"
        );
    }
    press(host, "trackForward", 4.0);
    check_all_frames(host, frames, cli, "one_click, tracked again from frame 4");
}

/// Every depth the plug-in declares gives the same mattes (a new instance on the clip at that
/// depth: it encodes the frames from images of that depth).
fn every_depth_tracks_to_the_same_mattes(host: &mut Host, frames: &[Frame], cli: &Mattes) {
    let n = frames.len();
    for depth in [Depth::Short, Depth::Half, Depth::Float] {
        host.destroy_instance().unwrap();
        host.set_source_with(&Source::new(support::images(frames)).depth(depth))
            .unwrap();
        host.create_instance(SAM2_PLUGIN_ID, FILTER).unwrap();
        for (slot, doc) in support::script_prompt_params("one_click") {
            host.set_param(&format!("object{slot}Prompts"), doc.as_str())
                .unwrap();
        }
        host.request(json!({"cmd": "fetches", "clear": true}))
            .unwrap();
        press(host, "trackForward", 0.0);
        assert!(
            host.fetches()
                .unwrap()
                .iter()
                .filter(|e| e["clip"] == "Source")
                .count()
                >= n,
            "{depth:?}: the new instance reads the frames"
        );
        let out = render(host, 0.0);
        assert_eq!(out.depth, depth);
        check_all_frames(host, frames, cli, &format!("one_click, {depth:?} clip"));
    }
}

#[test]
fn track_forward_gives_the_cli_mattes() {
    two_clicked_objects_track_forward_to_the_cli_mattes();
    // One object given through its prompts parameter on the shapes clip.
    let (mut host, frames) = instance_over("shapes");
    for (slot, doc) in support::script_prompt_params("one_click") {
        host.set_param(&format!("object{slot}Prompts"), doc.as_str())
            .unwrap();
    }
    let cli = support::cli_mattes("one_click");
    a_cancelled_track_keeps_what_it_tracked(&mut host, &frames, &cli);
    clear_track_after_hides_the_later_mattes(&mut host, &frames, &cli);
    every_depth_tracks_to_the_same_mattes(&mut host, &frames, &cli);
    host.quit().unwrap();
}

#[test]
fn boxes_added_clicks_and_track_both_ways_give_the_cli_mattes() {
    // Boxes (one with a click) through the prompts parameters: the box script.
    let (mut host, frames) = instance_over("shapes");
    let s = support::script("box");
    for i in s["interactions"].as_array().unwrap() {
        if i["op"] != "add_box" {
            continue;
        }
        let bbox: Vec<f64> = i["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let points: Vec<Click> = i["points"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .zip(i["labels"].as_array().unwrap())
                    .map(|(p, l)| {
                        (
                            [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()],
                            l.as_u64().unwrap() as u8,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let doc = support::prompts_doc(&[(
            i["frame"].as_i64().unwrap(),
            Some([bbox[0], bbox[1], bbox[2], bbox[3]]),
            &points,
        )]);
        host.set_param(&format!("object{}Prompts", i["object"]), doc.as_str())
            .unwrap();
    }
    press(&mut host, "trackForward", 0.0);
    check_all_frames(
        &mut host,
        &frames,
        &support::cli_mattes("box"),
        "box, Track",
    );

    // Clicks added to a frame after it was rendered go to SAM 2 as added clicks (the clicks
    // script: three clicks, then one more with clear_old_points false).
    press(&mut host, "clearAll", 0.0);
    let s = support::script("clicks");
    let steps: Vec<&Value> = s["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["op"] == "add_points")
        .collect();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1]["clear_old_points"], false);
    let h = frames[0].height;
    for step in steps {
        for (p, l) in step["points"]
            .as_array()
            .unwrap()
            .iter()
            .zip(step["labels"].as_array().unwrap())
        {
            click(
                &mut host,
                h,
                p[0].as_f64().unwrap(),
                p[1].as_f64().unwrap(),
                0.0,
                l == 0,
            );
        }
        render(&mut host, 0.0);
    }
    press(&mut host, "trackForward", 0.0);
    check_all_frames(
        &mut host,
        &frames,
        &support::cli_mattes("clicks"),
        "clicks, Track",
    );

    // Track Both Ways from a click in the middle of the clip: the mid_clip script's first two
    // propagations (forward from frame 5, then backward from it).
    press(&mut host, "clearAll", 0.0);
    let s = support::script("mid_clip");
    let interactions: Vec<Value> = s["interactions"].as_array().unwrap()[..3].to_vec();
    assert_json_fields(
        &interactions[1],
        &json!({"op": "propagate", "start_frame": 5}),
    );
    assert_json_fields(
        &interactions[2],
        &json!({"reverse": true, "start_frame": 5}),
    );
    let p = &interactions[0]["points"][0];
    let frame = interactions[0]["frame"].as_f64().unwrap();
    click(
        &mut host,
        h,
        p[0].as_f64().unwrap(),
        p[1].as_f64().unwrap(),
        frame,
        false,
    );
    press(&mut host, "trackBoth", frame);
    let cli = support::cli_mattes_with("mid_clip", "mid_clip_both_ways", json!(interactions));
    check_all_frames(&mut host, &frames, &cli, "mid_clip, Track Both Ways");
    host.quit().unwrap();
}

#[test]
fn rendering_in_order_tracks_frame_by_frame_with_the_cli_mattes() {
    // No Track button: a host rendering the clip in order, one sequence, one frame at a time.
    // The test host always offers temporal clip access (its protocol cannot turn it off), so
    // "only the current frame" is checked in the fetch log: every source image a render asked
    // for is the frame being rendered.
    let (mut host, frames) = instance_over("crossing");
    let n = frames.len();
    click_script(&mut host, frames[0].height, "two_objects");
    host.request(json!({"cmd": "fetches", "clear": true}))
        .unwrap();
    let times: Vec<f64> = (0..n).map(|f| f as f64).collect();
    let rendered = host
        .render_many(&Render::times(&times, 1).with("sequential", true))
        .unwrap();
    let cli = support::cli_mattes("two_objects");
    for (f, r) in rendered.iter().enumerate() {
        assert_matte(
            &support::channel_top_down(&r.image, 3),
            &cli.union(f),
            cli.width,
            &format!("two_objects in order, frame {f}"),
        );
    }
    let (renders, outside) = fetches_by_render(&host.fetches().unwrap());
    assert!(
        outside.is_empty(),
        "fetches outside the renders: {outside:?}"
    );
    assert_eq!(renders.len(), n);
    for (t, fetched) in &renders {
        // Once: the image composed into the output is the one the model encodes.
        assert_eq!(
            fetched.len(),
            1,
            "the render of frame {t} fetched the source more than once: {fetched:?}"
        );
        for e in fetched {
            assert_eq!(
                e["frame"].as_f64(),
                Some(*t),
                "the render of frame {t} read another frame: {e}"
            );
        }
    }
    // Tracked by rendering: the per-object mattes are the CLI's as well.
    check_all_frames(&mut host, &frames, &cli, "two_objects, in order");
    host.quit().unwrap();

    // One object; a frame beyond "Track On Render" (8 frames) shows the source and says which
    // frame is tracked; rendering on in order tracks it.
    let (mut host, frames) = instance_over("shapes");
    let n = frames.len();
    for (slot, doc) in support::script_prompt_params("one_click") {
        host.set_param(&format!("object{slot}Prompts"), doc.as_str())
            .unwrap();
    }
    host.request(json!({"cmd": "fetches", "clear": true}))
        .unwrap();
    let cli = support::cli_mattes("one_click");
    assert_matte(
        &alpha(&mut host, 0.0),
        &cli.union(0),
        cli.width,
        "one_click, frame 0",
    );
    let last = n - 1;
    let out = render(&mut host, last as f64);
    support::shows_source(&out, &frames[last])
        .unwrap_or_else(|e| panic!("frame {last}, out of reach: not the source: {e}"));
    let p = host.messages().unwrap().persistent.expect("a warning");
    assert_eq!(p.kind, "OfxMessageWarning", "{p:?}");
    assert!(
        p.text.contains(&format!("Frame {last} is not tracked")) && p.text.contains("frame is 0"),
        "{p:?}"
    );
    for f in 1..n {
        assert_matte(
            &alpha(&mut host, f as f64),
            &cli.union(f),
            cli.width,
            &format!("one_click in order, frame {f}"),
        );
    }
    assert!(host.messages().unwrap().persistent.is_none());
    let (renders, outside) = fetches_by_render(&host.fetches().unwrap());
    assert!(outside.is_empty(), "{outside:?}");
    for (t, fetched) in &renders {
        assert_eq!(fetched.len(), 1, "render of {t}: {fetched:?}");
        for e in fetched {
            assert_eq!(e["frame"].as_f64(), Some(*t), "render of {t}: {e}");
        }
    }
    host.quit().unwrap();
}

/// The host's frame numbers and pixel aspect ratio: a clip whose first frame is 1001, with
/// pixels twice as wide as high. Prompts are keyed by host frame number and stored in source
/// pixels (canonical x ÷ PAR); the mattes are the CLI's on the same pixels.
#[test]
fn host_frame_numbers_and_pixel_aspect_map_to_the_clip() {
    let frames = support::clip("shapes");
    let (w, h) = (frames[0].width as f64, frames[0].height as f64);
    let mut host = support::host();
    host.set_source_with(
        &Source::new(support::images(&frames))
            .first_frame(1001)
            .pixel_aspect(2.0),
    )
    .unwrap();
    host.create_instance(SAM2_PLUGIN_ID, FILTER).unwrap();
    host.set_param("outputMode", MATTE_ONLY).unwrap();
    let [(_, _, clicks)] = support::script_clicks("one_click").try_into().unwrap();
    let [(p, 1)] = clicks.as_slice() else {
        panic!("one positive click: {clicks:?}");
    };
    host.pen(&Pen::down(p[0] * 2.0, h - p[1]).at(1001.0))
        .unwrap();
    host.pen(&Pen::up(p[0] * 2.0, h - p[1]).at(1001.0)).unwrap();
    assert_prompts(
        &prompts(&mut host, 1),
        &json!({"1001": frame_doc(&[(*p, 1)], None)}),
    );
    // The overlay draws it back where it was clicked.
    let ops = host.draw(1001.0).unwrap()["ops"].clone();
    let square = ops
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["primitive"] == "polygon")
        .unwrap_or_else(|| panic!("no point drawn: {ops}"));
    let pts = square["points"].as_array().unwrap();
    let cx = pts.iter().map(|q| q[0].as_f64().unwrap()).sum::<f64>() / pts.len() as f64;
    let cy = pts.iter().map(|q| q[1].as_f64().unwrap()).sum::<f64>() / pts.len() as f64;
    assert!(
        (cx - p[0] * 2.0).abs() < 1e-9 && (cy - (h - p[1])).abs() < 1e-9,
        "drawn at ({cx}, {cy})"
    );

    host.request(json!({"cmd": "fetches", "clear": true}))
        .unwrap();
    press(&mut host, "trackForward", 1001.0);
    let mut fetched: Vec<i64> = host
        .fetches()
        .unwrap()
        .iter()
        .filter(|e| e["ok"] == true)
        .map(|e| e["frame"].as_i64().unwrap())
        .collect();
    fetched.sort_unstable();
    fetched.dedup();
    assert_eq!(fetched, (1001..1011).collect::<Vec<i64>>());
    let cli = support::cli_mattes("one_click");
    for f in 0..frames.len() {
        let r = host.render(&Render::at(1001.0 + f as f64)).unwrap();
        assert_json_fields(&r.response, &json!({"rod": [0, 0, w * 2.0, h]}));
        assert_matte(
            &support::channel_top_down(&r.image, 3),
            &cli.union(f),
            cli.width,
            &format!("frame {}", 1001 + f),
        );
    }
    // Frame 1000 is outside the clip: the source (none there) and a message naming the range.
    let r = host.render_raw(&Render::at(1000.0)).unwrap();
    assert_eq!(r["status"], "kOfxStatOK", "{r}");
    let m = host.messages().unwrap().persistent.expect("a message");
    assert!(m.text.contains("1001") && m.text.contains("1010"), "{m:?}");
    assert_eq!(host.live_images().unwrap(), 0);
    host.quit().unwrap();
}

// ------------------------------------------------------------------------------------------------
// 4. Out-of-order renders from several threads

#[test]
fn out_of_order_renders_from_several_threads_equal_the_in_order_renders() {
    let (mut host, frames) = instance_over("crossing");
    let n = frames.len();
    let mut params = serde_json::Map::new();
    for (slot, doc) in support::script_prompt_params("two_objects") {
        params.insert(format!("object{slot}Prompts"), json!(doc));
    }
    // Source + soft matte, premultiplied: every channel depends on the mattes.
    params.insert("outputMode".into(), json!(SOURCE_WITH_MATTE));
    params.insert("softness".into(), json!(1.0));
    params.insert("premultiply".into(), json!(true));
    for (k, v) in &params {
        host.set_param(k, v.clone()).unwrap();
    }
    press(&mut host, "trackForward", 0.0);
    let reference: Vec<Image> = (0..n).map(|f| render(&mut host, f as f64)).collect();
    let distinct = reference.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(distinct > n / 2, "the frames differ from each other");

    let shuffled = [
        7.0, 2.0, 11.0, 0.0, 5.0, 9.0, 1.0, 10.0, 3.0, 6.0, 8.0, 4.0, 5.0, 5.0, 0.0,
    ];
    let check = |rendered: &[driver::Rendered], times: &[f64], what: &str| {
        assert_eq!(rendered.len(), times.len());
        for (r, t) in rendered.iter().zip(times) {
            assert!(
                r.image == reference[*t as usize],
                "{what}: frame {t} differs from its in-order render"
            );
        }
    };
    for fill in [0.25, 1.0] {
        let r = host
            .render_many(&Render::times(&shuffled, 3).with("fill", fill))
            .unwrap();
        check(&r, &shuffled, "3 threads");
    }
    // A tile equals the same window of the whole frame.
    let tile = host
        .render(&Render::at(6.0).window([40, 30, 200, 150]))
        .unwrap()
        .image;
    for y in 30..150 {
        for x in 40..200 {
            for c in 0..4 {
                assert_eq!(
                    tile.get_raw(x, y, c),
                    reference[6].get_raw(x, y, c),
                    "({x}, {y})"
                );
            }
        }
    }

    // A second instance with the same prompts, tracked, rendering at the same time as the first
    // (different instances render in parallel and share the model).
    let created = host
        .create_instance_raw(json!({
            "plugin": SAM2_PLUGIN_ID, "context": FILTER, "name": "second", "params": params,
        }))
        .unwrap();
    assert_eq!(created["created"], true, "{created}");
    press(&mut host, "trackForward", 0.0);
    let dir = host.temp_dir().to_path_buf();
    let outs: Vec<String> = (0..shuffled.len())
        .map(|i| {
            dir.join(format!("main-{i}.raw"))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let job = host
        .render_async(
            &Render::times(&shuffled, 2)
                .with("instance", "main")
                .with("outs", json!(outs)),
        )
        .unwrap();
    let reversed: Vec<f64> = shuffled.iter().rev().copied().collect();
    let second = host
        .render_many(&Render::times(&reversed, 2).with("instance", "second"))
        .unwrap();
    let first = host.wait(job).unwrap();
    assert_eq!(first["status"], "kOfxStatOK", "{first}");
    check(&second, &reversed, "the second instance");
    for (out, t) in outs.iter().zip(&shuffled) {
        let img = Image::read(&PathBuf::from(out)).unwrap();
        assert!(
            img == reference[*t as usize],
            "the first instance, alongside the second: frame {t} differs"
        );
    }
    assert_eq!(host.live_images().unwrap(), 0);
    host.quit().unwrap();
}

// ------------------------------------------------------------------------------------------------
// 5. Save and reopen

#[test]
fn saved_and_reopened_prompts_render_the_same() {
    let (mut host, frames) = instance_over("crossing");
    let n = frames.len();
    let h = frames[0].height as f64;
    // Object 1: a click and a negative click; object 2: a box drawn with the pen; and a few
    // other settings.
    host.set_param("selectedObject", 0).unwrap();
    click(&mut host, frames[0].height, 60.0, 80.0, 0.0, false);
    click(&mut host, frames[0].height, 20.0, 20.0, 0.0, true);
    host.set_param("selectedObject", 1).unwrap();
    host.pen(&Pen::down(240.0, h - 60.0).at(0.0)).unwrap();
    host.pen(&Pen::motion(270.0, h - 90.0).at(0.0)).unwrap();
    host.pen(&Pen::up(300.0, h - 120.0).at(0.0)).unwrap();
    assert_prompts(
        &prompts(&mut host, 2),
        &json!({"0": frame_doc(&[], Some([240.0, 60.0, 300.0, 120.0]))}),
    );
    for (name, value) in [
        ("object1Name", json!("Hero")),
        ("object2Name", json!("Car")),
        ("outputMode", json!(SOURCE_WITH_MATTE)),
        ("softness", json!(1.0)),
        ("premultiply", json!(true)),
        ("threshold", json!(0.5)),
        ("refineEdges", json!(2)),
        ("edgeRadius", json!(5.0)),
        ("edgeEpsilon", json!(1e-3)),
    ] {
        host.set_param(name, value).unwrap();
    }
    press(&mut host, "trackForward", 0.0);
    let reference: Vec<Image> = (0..n).map(|f| render(&mut host, f as f64)).collect();
    let before = host.params().unwrap()["values"].clone();

    let file = host.temp_dir().join("project.json");
    let saved = host.save_params(&file).unwrap();
    let doc = &saved["document"]["params"];
    for name in [
        "object1Prompts",
        "object2Prompts",
        "object1Name",
        "threshold",
        "outputMode",
        "refineEdges",
        "edgeRadius",
        "edgeEpsilon",
    ] {
        assert_eq!(doc[name], before[name], "{name} is saved");
    }
    for name in ["status", "revision", "trackForward"] {
        assert!(doc.get(name).is_none(), "{name} is not saved: {doc}");
    }

    // Reopen: a new instance created with the saved values.
    let created = host.load_params(&file).unwrap();
    assert_eq!(created["created"], true, "{created}");
    let after = host.params().unwrap()["values"].clone();
    for name in [
        "object1Prompts",
        "object2Prompts",
        "object1Name",
        "object2Name",
        "softness",
        "threshold",
        "premultiply",
        "outputMode",
    ] {
        assert_eq!(after[name], before[name], "{name} after reopening");
    }
    // The prompted frame shows its matte at once; the rest after Track.
    assert!(
        render(&mut host, 0.0) == reference[0],
        "frame 0 after reopening"
    );
    press(&mut host, "trackForward", 0.0);
    for f in [5, 11, 0, 3, 8, 1, 2, 4, 6, 7, 9, 10] {
        assert!(
            render(&mut host, f as f64) == reference[f],
            "frame {f} after reopening and tracking"
        );
    }
    assert!(host.messages().unwrap().persistent.is_none());

    // The same values pasted onto a fresh instance (each set with instanceChanged).
    host.create_instance_raw(
        json!({"plugin": SAM2_PLUGIN_ID, "context": FILTER, "name": "pasted"}),
    )
    .unwrap();
    let r = host
        .request(json!({"cmd": "load_params", "path": file.to_string_lossy(), "recreate": false}))
        .unwrap();
    assert!(!r["changes"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(
        host.get_param("object2Prompts").unwrap(),
        before["object2Prompts"]
    );
    press(&mut host, "trackForward", 0.0);
    for f in [11, 0, 6] {
        assert!(
            render(&mut host, f as f64) == reference[f],
            "pasted: frame {f}"
        );
    }
    assert_eq!(host.live_images().unwrap(), 0);
    host.quit().unwrap();
}

// ------------------------------------------------------------------------------------------------
// 7. The overlay

/// The overlay test's session: a host over the shapes clip with a soft matte (any change to the
/// model's output changes the render), and the last render of frame 0, which every edit must
/// change.
struct PenSession {
    host: Host,
    frames: Vec<Frame>,
    height: usize,
    last: Vec<u8>,
}

impl PenSession {
    fn start() -> PenSession {
        let (mut host, frames) = instance_over("shapes");
        let height = frames[0].height;
        host.set_param("softness", 1.0).unwrap();
        let empty = alpha(&mut host, 0.0);
        assert!(empty.iter().all(|&a| a == 0), "no prompts, no matte");
        assert_eq!(prompts(&mut host, 1), Value::Null);
        PenSession {
            host,
            frames,
            height,
            last: empty,
        }
    }

    fn h(&self) -> f64 {
        self.height as f64
    }

    fn click(&mut self, x: f64, y: f64, time: f64, ctrl: bool) -> Value {
        click(&mut self.host, self.height, x, y, time, ctrl)
    }

    /// Renders frame 0 and checks that `what` changed it.
    fn changed(&mut self, what: &str) -> Vec<u8> {
        let a = alpha(&mut self.host, 0.0);
        assert!(a != self.last, "{what}: the render did not change");
        self.last = a.clone();
        a
    }

    fn assert_frame0(&mut self, expected: Value) {
        assert_prompts(&prompts(&mut self.host, 1), &json!({ "0": expected }));
    }
}

/// A click: a positive point, y flipped from canonical to source pixels; the frame's matte is the
/// CLI's, and the overlay draws the point where it was clicked (canonical coordinates).
fn a_click_adds_a_positive_point_drawn_where_it_was_clicked(s: &mut PenSession) {
    let r = s.click(70.0, 90.0, 0.0, false);
    assert_eq!(r["handled"], true);
    assert!(
        r["plugin_changed"]
            .as_array()
            .unwrap()
            .contains(&json!("object1Prompts")),
        "{r}"
    );
    s.assert_frame0(frame_doc(&[([70.0, 90.0], 1)], None));
    let one_click = s.changed("a click");
    assert!(one_click.iter().any(|&a| a > 0));
    s.host.set_param("softness", 0.0).unwrap();
    let hard = render(&mut s.host, 0.0);
    s.host.set_param("softness", 1.0).unwrap();
    assert_matte(
        &support::channel_top_down(&hard, 3),
        &support::cli_mattes("one_click").union(0),
        s.frames[0].width,
        "the clicked frame",
    );
    let drawn = s.host.draw(0.0).unwrap();
    // OpenFX 1.5: a host with the Draw Suite takes the V2 overlay entry, declared with V1.
    assert_eq!(drawn["overlay_entry"], "V2", "{drawn}");
    let ops = drawn["ops"].clone();
    let polygons: Vec<&Value> = ops
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["primitive"] == "polygon")
        .collect();
    assert_eq!(polygons.len(), 1, "{ops}");
    let pts = polygons[0]["points"].as_array().unwrap();
    let cx = pts.iter().map(|p| p[0].as_f64().unwrap()).sum::<f64>() / pts.len() as f64;
    let cy = pts.iter().map(|p| p[1].as_f64().unwrap()).sum::<f64>() / pts.len() as f64;
    assert!(
        (cx - 70.0).abs() < 1e-9 && (cy - (s.h() - 90.0)).abs() < 1e-9,
        "{cx}, {cy}"
    );
}

/// Ctrl-click and Alt-click: negative points; Shift-click: positive.
fn modifiers_choose_the_points_label(s: &mut PenSession) {
    let h = s.h();
    s.click(200.0, 40.0, 0.0, true);
    s.changed("a ctrl-click");
    s.host
        .pen(&Pen::down(250.0, h - 150.0).alt().at(0.0))
        .unwrap();
    s.host
        .pen(&Pen::up(250.0, h - 150.0).alt().at(0.0))
        .unwrap();
    s.changed("an alt-click");
    s.host
        .pen(&Pen::down(120.0, h - 100.0).shift().at(0.0))
        .unwrap();
    s.host
        .pen(&Pen::up(120.0, h - 100.0).shift().at(0.0))
        .unwrap();
    s.changed("a shift-click");
    s.assert_frame0(frame_doc(
        &[
            ([70.0, 90.0], 1),
            ([200.0, 40.0], 0),
            ([250.0, 150.0], 0),
            ([120.0, 100.0], 1),
        ],
        None,
    ));
}

/// Clicking an existing point (within 7 screen pixels) removes it.
fn a_click_on_a_point_removes_it(s: &mut PenSession) {
    s.click(203.0, 42.0, 0.0, false);
    s.assert_frame0(frame_doc(
        &[([70.0, 90.0], 1), ([250.0, 150.0], 0), ([120.0, 100.0], 1)],
        None,
    ));
    s.changed("removing a point");
}

/// A drag draws a box (the rubber band shows while dragging) and replaces the frame's clicks; a
/// click after the box is kept with it, and a press that moves 2 pixels is still a click.
fn a_drag_draws_a_box_that_replaces_the_clicks(s: &mut PenSession) {
    let h = s.h();
    s.host.pen(&Pen::down(40.0, h - 60.0).at(0.0)).unwrap();
    s.host.pen(&Pen::motion(80.0, h - 100.0).at(0.0)).unwrap();
    s.host.pen(&Pen::motion(110.0, h - 125.0).at(0.0)).unwrap();
    let ops = s.host.draw(0.0).unwrap()["ops"].clone();
    let band = [
        [40.0, h - 60.0],
        [110.0, h - 60.0],
        [110.0, h - 125.0],
        [40.0, h - 125.0],
    ];
    assert!(
        ops.as_array().unwrap().iter().any(|o| {
            o["primitive"] == "line_loop"
                && o["points"].as_array().is_some_and(|p| {
                    p.len() == 4
                        && band
                            .iter()
                            .all(|c| p.iter().any(|q| q[0] == c[0] && q[1] == c[1]))
                })
        }),
        "no rubber band {band:?} in {ops}"
    );
    s.host.pen(&Pen::up(110.0, h - 125.0).at(0.0)).unwrap();
    s.assert_frame0(frame_doc(&[], Some([40.0, 60.0, 110.0, 125.0])));
    s.changed("a box");
    s.click(75.0, 92.0, 0.0, false);
    s.host.pen(&Pen::down(150.0, h - 100.0).at(0.0)).unwrap();
    s.host.pen(&Pen::motion(152.0, h - 101.0).at(0.0)).unwrap();
    s.host.pen(&Pen::up(152.0, h - 101.0).at(0.0)).unwrap();
    s.assert_frame0(frame_doc(
        &[([75.0, 92.0], 1), ([150.0, 100.0], 1)],
        Some([40.0, 60.0, 110.0, 125.0]),
    ));
    s.changed("clicks after the box");
}

/// The selected object gets the clicks; other frames get their own prompts.
fn clicks_go_to_the_selected_object_and_the_current_frame(s: &mut PenSession) {
    s.host.set_param("selectedObject", 1).unwrap();
    s.click(260.0, 45.0, 0.0, false);
    assert_prompts(
        &prompts(&mut s.host, 2),
        &json!({"0": frame_doc(&[([260.0, 45.0], 1)], None)}),
    );
    s.changed("a second object");
    s.host.set_param("selectedObject", 0).unwrap();
    s.click(100.0, 100.0, 3.0, false);
    let p1 = prompts(&mut s.host, 1);
    assert_eq!(p1["frames"]["3"], frame_doc(&[([100.0, 100.0], 1)], None));
    assert_eq!(p1["frames"].as_object().unwrap().len(), 2);
}

/// Delete clears the selected object's frame; Clear Frame and Clear All do the same by button.
fn delete_and_the_clear_buttons_remove_prompts(s: &mut PenSession) {
    s.host.key("down", "delete").unwrap();
    s.host.key("up", "delete").unwrap();
    let p1 = prompts(&mut s.host, 1);
    assert!(
        p1["frames"].get("0").is_none() && p1["frames"].get("3").is_some(),
        "{p1}"
    );
    let only_two = s.changed("Delete");
    assert!(only_two.iter().any(|&a| a > 0), "object 2 is still there");
    press(&mut s.host, "clearFrame", 3.0);
    assert_eq!(prompts(&mut s.host, 1), Value::Null);
    assert!(prompts(&mut s.host, 2) != Value::Null);
    press(&mut s.host, "clearAll", 0.0);
    assert_eq!(prompts(&mut s.host, 2), Value::Null);
    let cleared = alpha(&mut s.host, 0.0);
    assert!(cleared.iter().all(|&a| a == 0), "Clear All leaves no matte");
}

#[test]
fn pen_events_edit_the_selected_objects_prompts() {
    let mut s = PenSession::start();
    a_click_adds_a_positive_point_drawn_where_it_was_clicked(&mut s);
    modifiers_choose_the_points_label(&mut s);
    a_click_on_a_point_removes_it(&mut s);
    a_drag_draws_a_box_that_replaces_the_clicks(&mut s);
    clicks_go_to_the_selected_object_and_the_current_frame(&mut s);
    delete_and_the_clear_buttons_remove_prompts(&mut s);
    assert_eq!(s.host.live_images().unwrap(), 0);
    s.host.quit().unwrap();
}

// ------------------------------------------------------------------------------------------------
// 6. A thousand random actions

/// splitmix64: a small seeded generator (no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.range(0.0, 1.0) < p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The fuzzer's state and its record of what it sent.
struct Fuzz {
    host: Host,
    rng: Rng,
    frames: Vec<Frame>,
    last: VecDeque<String>,
    done: usize,
    spent: std::collections::BTreeMap<&'static str, (usize, Duration)>,
    no_manifest: tempfile::TempDir,
}

impl Fuzz {
    /// Sends one command; a failure of the host (crash, hang, refusal) ends the test naming the
    /// last commands.
    fn send(&mut self, kind: &'static str, cmd: Value) -> Value {
        let line = cmd.to_string();
        self.last.push_back(if line.len() > 300 {
            format!("{}…", &line[..300])
        } else {
            line
        });
        if self.last.len() > 20 {
            self.last.pop_front();
        }
        let t = Instant::now();
        let r = self.host.request(cmd);
        let e = self.spent.entry(kind).or_default();
        e.0 += 1;
        e.1 += t.elapsed();
        match r {
            Ok(v) => v,
            Err(e) => self.fail(&format!("{e}")),
        }
    }

    fn fail(&self, why: &str) -> ! {
        let mut s = String::new();
        for l in &self.last {
            let _ = writeln!(s, "  {l}");
        }
        panic!(
            "after {} random actions: {why}\nlast commands:\n{s}",
            self.done
        );
    }

    fn time(&mut self) -> f64 {
        let n = self.frames.len() as u64;
        if self.rng.chance(0.04) {
            // Now and then outside the clip.
            *self.rng.pick(&[-1.0, n as f64, n as f64 + 3.0])
        } else {
            self.rng.below(n) as f64
        }
    }

    fn random_prompts(&mut self) -> String {
        let (w, h) = (self.frames[0].width as f64, self.frames[0].height as f64);
        match self.rng.below(20) {
            0 => String::new(),
            1 => "{not json".into(),
            2 => r#"{"format":"sam2-rotoscope-prompts","version":7,"frames":{}}"#.into(),
            _ => {
                let nframes = 1 + self.rng.below(2);
                let mut frames = Vec::new();
                let mut points_store = Vec::new();
                for _ in 0..nframes {
                    let frame = if self.rng.chance(0.05) {
                        -2
                    } else {
                        self.rng.below(self.frames.len() as u64) as i64
                    };
                    let bbox = self.rng.chance(0.3).then(|| {
                        let (x0, y0) = (self.rng.range(-5.0, w), self.rng.range(-5.0, h));
                        [
                            x0,
                            y0,
                            x0 + self.rng.range(2.0, 120.0),
                            y0 + self.rng.range(2.0, 90.0),
                        ]
                    });
                    let k = self.rng.below(4) as usize;
                    let pts: Vec<Click> = (0..k)
                        .map(|_| {
                            (
                                [self.rng.range(-3.0, w + 3.0), self.rng.range(-3.0, h + 3.0)],
                                u8::from(self.rng.chance(0.7)),
                            )
                        })
                        .collect();
                    points_store.push((frame, bbox, pts));
                }
                for (frame, bbox, pts) in &points_store {
                    frames.push((*frame, *bbox, pts.as_slice()));
                }
                support::prompts_doc(&frames)
            }
        }
    }

    fn set_random_param(&mut self) {
        let slot = 1 + self.rng.below(8);
        // Objects 1-3 get most of the prompts.
        let pslot = 1 + self.rng.below(3);
        let (name, value): (String, Value) = match self.rng.below(22) {
            0 | 1 => ("selectedObject".into(), json!(self.rng.below(4))),
            2 | 3 => ("outputMode".into(), json!(self.rng.below(5))),
            4 => ("premultiply".into(), json!(self.rng.chance(0.5))),
            5 => ("overlayOpacity".into(), json!(self.rng.range(0.0, 1.0))),
            6 => ("threshold".into(), json!(self.rng.range(-4.0, 4.0))),
            7 => ("softness".into(), json!(self.rng.range(0.0, 2.0))),
            8 => ("feather".into(), json!(self.rng.range(0.0, 4.0))),
            9 => ("chokeExpand".into(), json!(self.rng.below(7) as i64 - 3)),
            10 => ("fillHoles".into(), json!(self.rng.below(200))),
            11 => ("removeSpecks".into(), json!(self.rng.below(200))),
            12 => (format!("object{slot}Enabled"), json!(self.rng.chance(0.8))),
            13 => (
                format!("object{slot}Name"),
                json!(format!("Thing {}", self.rng.below(100))),
            ),
            14 => (
                format!("object{slot}Colour"),
                json!([
                    self.rng.range(0.0, 1.0),
                    self.rng.range(0.0, 1.0),
                    self.rng.range(0.0, 1.0)
                ]),
            ),
            15..=17 => (
                format!("object{pslot}Prompts"),
                json!(self.random_prompts()),
            ),
            18 => ("trackOnRender".into(), json!(self.rng.below(6))),
            19 => ("memoryBudget".into(), json!(64 + self.rng.below(2000))),
            20 => ("linearSource".into(), json!(self.rng.chance(0.3))),
            _ => {
                // The model: mostly the bundled one; sometimes none, a wrong folder, the CPU,
                // a GPU that is not there.
                match self.rng.below(10) {
                    0 => ("modelDirectory".into(), json!("/nonexistent/sam2/model")),
                    1 => (
                        "modelDirectory".into(),
                        json!(self.no_manifest.path().to_string_lossy()),
                    ),
                    2 => ("device".into(), json!(1)),
                    3 => ("device".into(), json!(2)),
                    4 => ("device".into(), json!(0)),
                    _ => ("modelDirectory".into(), json!("")),
                }
            }
        };
        let t = self.time();
        let r = self.send(
            "set_param",
            json!({"cmd": "set_param", "name": name, "value": value, "time": t}),
        );
        let status = r["status"].as_str().unwrap_or("");
        if !matches!(status, "kOfxStatOK" | "kOfxStatReplyDefault") {
            self.fail(&format!("set_param {name}: {r}"));
        }
    }

    fn pen(&mut self) {
        let (w, h) = (self.frames[0].width as f64, self.frames[0].height as f64);
        let t = self.rng.below(self.frames.len() as u64) as f64;
        let mods: Vec<&str> = match self.rng.below(8) {
            0 => vec!["ctrl"],
            1 => vec!["alt"],
            2 => vec!["shift"],
            _ => vec![],
        };
        // Sometimes on an existing point of the selected object.
        let mut at = [
            self.rng.range(-10.0, w + 10.0),
            self.rng.range(-10.0, h + 10.0),
        ];
        if self.rng.chance(0.25) {
            let sel = self.send(
                "get_param",
                json!({"cmd": "get_param", "name": "selectedObject"}),
            );
            let slot = sel["value"].as_i64().unwrap_or(0) + 1;
            let p = self.send(
                "get_param",
                json!({"cmd": "get_param", "name": format!("object{slot}Prompts")}),
            );
            let doc: Value =
                serde_json::from_str(p["value"].as_str().unwrap_or("")).unwrap_or(Value::Null);
            if let Some(pts) = doc["frames"][format!("{t}")]["points"].as_array()
                && let Some(q) = pts.first()
            {
                at = [q[0].as_f64().unwrap_or(0.0), q[1].as_f64().unwrap_or(0.0)];
            }
        }
        let canon = |p: [f64; 2]| (p[0], h - p[1]);
        let (x, y) = canon(at);
        let drag = self.rng.chance(0.3);
        let end = if drag {
            canon([
                at[0] + self.rng.range(-80.0, 80.0),
                at[1] + self.rng.range(-60.0, 60.0),
            ])
        } else {
            (x, y)
        };
        let mut events = vec![("down", x, y)];
        if drag {
            events.push(("motion", (x + end.0) / 2.0, (y + end.1) / 2.0));
        }
        events.push(("up", end.0, end.1));
        for (kind, px, py) in events {
            let r = self.send(
                "pen",
                json!({"cmd": "pen", "kind": kind, "x": px, "y": py, "time": t, "modifiers": mods}),
            );
            let status = r["status"].as_str().unwrap_or("");
            if !matches!(status, "kOfxStatOK" | "kOfxStatReplyDefault") {
                self.fail(&format!("pen {kind}: {r}"));
            }
        }
    }

    fn render(&mut self) {
        let threads = *self.rng.pick(&[1, 1, 1, 2, 2, 3]);
        let count = threads;
        let times: Vec<f64> = (0..count).map(|_| self.time()).collect();
        let mut cmd = json!({"cmd": "render", "times": times, "threads": threads});
        let scale = if self.rng.chance(0.15) { 0.5 } else { 1.0 };
        cmd["render_scale"] = json!([scale, scale]);
        if self.rng.chance(0.1) {
            let (w, h) = (
                (self.frames[0].width as f64 * scale) as u64,
                (self.frames[0].height as f64 * scale) as u64,
            );
            let x1 = self.rng.below(w - 1);
            let y1 = self.rng.below(h - 1);
            let x2 = x1 + 1 + self.rng.below(w - x1);
            let y2 = y1 + 1 + self.rng.below(h - y1);
            cmd["window"] = json!([x1, y1, x2, y2]);
        }
        if self.rng.chance(0.2) {
            cmd["sequential"] = json!(true);
        }
        let r = self.send("render", cmd);
        if r["status"] != "kOfxStatOK" {
            self.fail(&format!("a render failed: {r}"));
        }
    }

    fn step(&mut self) {
        let t = self.time();
        match self.rng.below(100) {
            0..=19 => self.render(),
            20..=59 => self.set_random_param(),
            60..=73 => self.pen(),
            74..=75 => {
                let key = *self.rng.pick(&["delete", "backspace", "ctrl", "x"]);
                for kind in ["down", "up"] {
                    self.send(
                        "key",
                        json!({"cmd": "key", "kind": kind, "key": key, "time": t}),
                    );
                }
            }
            76..=79 => {
                let button = *self
                    .rng
                    .pick(&["trackForward", "trackBackward", "trackBoth"]);
                let r = self.send(
                    "track",
                    json!({"cmd": "set_param", "name": button, "time": t}),
                );
                if r["status"] != "kOfxStatOK" {
                    self.fail(&format!("{button}: {r}"));
                }
            }
            80 => {
                // A Track cancelled half-way through its progress bar.
                self.send("abort", json!({"cmd": "abort", "at_progress": 0.5}));
                self.send(
                    "track",
                    json!({"cmd": "set_param", "name": "trackBoth", "time": t}),
                );
                self.send("abort", json!({"cmd": "abort", "reset": true}));
            }
            81..=83 => {
                let button =
                    *self
                        .rng
                        .pick(&["clearTrackAfter", "clearFrame", "clearFrame", "clearAll"]);
                let r = self.send(
                    "button",
                    json!({"cmd": "set_param", "name": button, "time": t}),
                );
                if r["status"] != "kOfxStatOK" {
                    self.fail(&format!("{button}: {r}"));
                }
            }
            84..=86 => {
                self.send("draw", json!({"cmd": "draw", "time": t}));
            }
            87..=88 => {
                self.send("set_time", json!({"cmd": "set_time", "time": t}));
            }
            89 => {
                let file = self.host.temp_dir().join("fuzz-project.json");
                self.send(
                    "save",
                    json!({"cmd": "save_params", "path": file.to_string_lossy()}),
                );
                let recreate = self.rng.chance(0.7);
                let r = self.send(
                    "load",
                    json!({"cmd": "load_params", "path": file.to_string_lossy(), "recreate": recreate}),
                );
                if r.get("created").is_some() && r["created"] != true {
                    self.fail(&format!("the project did not reopen: {r}"));
                }
            }
            90 => {
                // The same footage again (a new clip connection): the session starts over.
                let paths: Vec<String> = (0..self.frames.len())
                    .map(|i| {
                        self.host
                            .temp_dir()
                            .join(format!("fuzz-src-{i}.raw"))
                            .to_string_lossy()
                            .into_owned()
                    })
                    .collect();
                self.send("set_source", json!({"cmd": "set_source", "frames": paths}));
            }
            91..=92 => {
                self.send("messages", json!({"cmd": "messages", "clear": true}));
                self.send("progress", json!({"cmd": "progress", "clear": true}));
                self.send("fetches", json!({"cmd": "fetches", "clear": true}));
                self.send("events", json!({"cmd": "events", "clear": true}));
            }
            93 => {
                self.send("purge", json!({"cmd": "action", "name": "purge_caches"}));
            }
            _ => {
                let r = self.send("images", json!({"cmd": "images"}));
                if r["live_images"] != 0 {
                    self.fail(&format!("images not released between actions: {r}"));
                }
            }
        }
        self.done += 1;
    }
}

/// Back to a known state: the project saved and reopened (a new instance: the frames the random
/// proxy renders encoded at half size would otherwise stay in the session, see
/// `a_proxy_render_leaves_the_full_resolution_mattes_alone`), every parameter at its default,
/// the one_click script's prompt on object 1, tracked forward; every frame must be the CLI's
/// matte on the same frames.
fn known_state(host: &mut Host, frames: &[Frame], what: &str) {
    let file = host.temp_dir().join("known-state.json");
    host.save_params(&file).unwrap();
    let created = host.load_params(&file).unwrap();
    assert_eq!(created["created"], true, "{what}: reopening: {created}");
    for (name, value) in [
        ("outputMode", json!(MATTE_ONLY)),
        ("premultiply", json!(false)),
        ("overlayOpacity", json!(0.5)),
        ("threshold", json!(0.0)),
        ("softness", json!(0.0)),
        ("feather", json!(0.0)),
        ("chokeExpand", json!(0)),
        ("fillHoles", json!(0)),
        ("removeSpecks", json!(0)),
        ("linearSource", json!(false)),
        ("modelDirectory", json!("")),
        ("device", json!(0)),
        ("memoryBudget", json!(1024)),
        ("trackOnRender", json!(8)),
        ("selectedObject", json!(0)),
    ] {
        host.set_param(name, value).unwrap();
    }
    for slot in 1..=8 {
        host.set_param(&format!("object{slot}Enabled"), true)
            .unwrap();
    }
    press(host, "clearAll", 0.0);
    for (slot, doc) in support::script_prompt_params("one_click") {
        host.set_param(&format!("object{slot}Prompts"), doc.as_str())
            .unwrap();
    }
    press(host, "trackForward", 0.0);
    let cli = support::cli_mattes_on("one_click", Some(frames.len()));
    for f in 0..frames.len() {
        assert_matte(
            &alpha(host, f as f64),
            &cli.union(f),
            cli.width,
            &format!("{what}, frame {f}"),
        );
    }
    let m = host.messages().unwrap();
    assert!(m.persistent.is_none(), "{what}: {:?}", m.persistent);
    assert_eq!(
        host.live_images().unwrap(),
        0,
        "{what}: images not released"
    );
}

#[test]
fn a_thousand_random_host_actions_leave_a_working_plugin() {
    const SEED: u64 = 0x5a3_2024;
    // The warm-up must reach the host's peak: ONNX Runtime's arena keeps the most its runs held at
    // once, and that peak comes with the first render of one frame on two threads at a time (action
    // 339 under this seed: +29 MiB). Measured in that state every 250 actions: 149 MiB after 250,
    // then 186–190 MiB from 500 to 3000; with the CPU arena off, 140 after 250, then 153–157.
    const WARM_UP: usize = 500;
    const ACTIONS: usize = 1000;
    let started = Instant::now();
    // The first frames of the shapes clip: short enough that a render tracks a few frames at most.
    let frames: Vec<Frame> = support::clip("shapes").into_iter().take(5).collect();
    // One malloc arena: freed memory is reused by every thread, so RSS measures what is held and
    // not how glibc spread it over per-thread arenas (every render thread of the host is new).
    let mut host = Host::spawn_with(
        driver::HostOptions::new(&support::setup().bundle_dir)
            .timeout(Duration::from_secs(30))
            .env("MALLOC_ARENA_MAX", "1")
            .env(
                "SAM2_ROTOSCOPE_LOG_FILE",
                &support::test_log_file().to_string_lossy(),
            ),
    )
    .unwrap();
    host.load().unwrap();
    host.set_source(&support::images(&frames)).unwrap();
    // The footage as files, for the fuzzer's "connect the same clip again".
    for (i, img) in support::images(&frames).iter().enumerate() {
        img.write(&host.temp_dir().join(format!("fuzz-src-{i}.raw")))
            .unwrap();
    }
    host.create_instance(SAM2_PLUGIN_ID, FILTER).unwrap();
    let pid = support::host_pid(&host);
    known_state(&mut host, &frames, "before the random actions");
    let mut fuzz = Fuzz {
        host,
        rng: Rng(SEED),
        frames,
        last: VecDeque::new(),
        done: 0,
        spent: Default::default(),
        no_manifest: tempfile::tempdir().unwrap(),
    };
    let mut rss = Vec::new();
    for i in 0..ACTIONS {
        fuzz.step();
        if i + 1 == WARM_UP || i + 1 == ACTIONS {
            let r = fuzz.send("images", json!({"cmd": "images"}));
            if r["live_images"] != 0 {
                fuzz.fail(&format!("images not released: {r}"));
            }
            // The same state as before, measured in the same state.
            let frames = fuzz.frames.clone();
            known_state(
                &mut fuzz.host,
                &frames,
                &format!("after {} random actions", i + 1),
            );
            rss.push(support::rss_kib(pid));
        }
    }
    let mut spent = String::new();
    for (k, (n, d)) in &fuzz.spent {
        let _ = write!(spent, "{k} {n}× {:.1} s, ", d.as_secs_f64());
    }
    eprintln!(
        "{ACTIONS} random actions and checks in {:.1} s ({spent}); RSS {} MiB after {WARM_UP}, {} MiB after {ACTIONS}",
        started.elapsed().as_secs_f64(),
        rss[0] >> 10,
        rss[1] >> 10
    );
    // No growing memory: the state after the warm-up held all the host needs.
    let slack_kib = 48 << 10;
    assert!(
        rss[1] <= rss[0] + slack_kib,
        "the host's memory grew from {} MiB after {WARM_UP} actions to {} MiB after {ACTIONS}, both measured in the same state",
        rss[0] >> 10,
        rss[1] >> 10
    );
    fuzz.host.quit().unwrap();
}

// ------------------------------------------------------------------------------------------------
// Proxy renders

/// A viewer at proxy resolution must not change what the full-resolution render gives. Today it
/// does: the frames a proxy render encodes (from the half-size image, resampled) stay in the
/// session's frame cache, and later full-resolution renders and Track use those features: the
/// fingerprint that detects a changed source is dropped for proxy-encoded frames
/// (plugin/src/host_source.rs), Clear All keeps the cache (Tracker::reset), so nothing
/// re-encodes them at full size. Here one proxy render of frame 1 changes the mattes of every
/// frame of the clip (hundreds to thousands of pixels each), before and after Clear All.
#[test]
fn a_proxy_render_leaves_the_full_resolution_mattes_alone() {
    let (mut host, frames) = instance_over("shapes");
    let cli = support::cli_mattes("one_click");
    for (slot, doc) in support::script_prompt_params("one_click") {
        host.set_param(&format!("object{slot}Prompts"), doc.as_str())
            .unwrap();
    }
    // The artist looks at frame 1 in a half-resolution viewer (the track reaches it on render).
    let proxy = host.render(&Render::at(1.0).scale(0.5)).unwrap().image;
    assert_eq!(
        (proxy.width, proxy.height),
        (frames[0].width / 2, frames[0].height / 2)
    );
    assert!(
        support::channel_top_down(&proxy, 3).contains(&255),
        "the proxy render shows a matte"
    );
    // Then renders the clip at full resolution, after Clear All and the same click again.
    for attempt in ["Track", "Clear All, the click again, Track"] {
        if attempt != "Track" {
            press(&mut host, "clearAll", 0.0);
            for (slot, doc) in support::script_prompt_params("one_click") {
                host.set_param(&format!("object{slot}Prompts"), doc.as_str())
                    .unwrap();
            }
        }
        press(&mut host, "trackForward", 0.0);
        let mut report = String::new();
        for f in 0..frames.len() {
            let (n, first) =
                support::differences(&alpha(&mut host, f as f64), &cli.union(f), cli.width);
            if n > 0 {
                let _ = writeln!(report, "  frame {f}: {n} pixels differ, e.g. {first:?}");
            }
        }
        assert!(
            report.is_empty(),
            "after a proxy render of frame 1 ({attempt}), the full-resolution mattes are not the CLI's:\n{report}"
        );
    }
    host.quit().unwrap();
}

/// The soft matte of `frame` ("Matte only", Softness 1, a float clip): the alpha channel, top
/// row first.
fn soft_matte(host: &mut Host, frame: usize) -> Vec<f32> {
    let out = render(host, frame as f64);
    assert_eq!(out.depth, Depth::Float);
    support::raw_top_down(&out, 3)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// The largest difference between two mattes, and where (x, y).
fn largest_difference(a: &[f32], b: &[f32], width: usize) -> (f32, (usize, usize)) {
    assert_eq!(a.len(), b.len(), "matte sizes differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .enumerate()
        .fold((0.0, (0, 0)), |best, (i, d)| {
            if d > best.0 {
                (d, (i % width, i / width))
            } else {
                best
            }
        })
}

#[test]
fn refine_edges_is_the_engines_guided_filter_of_the_matte_with_the_source_as_guide() {
    use sam2_engine::matte::{
        DEFAULT_EPSILON, EdgeRefinement, Guide, GuideChannels, LOGIT_LIMIT, refine_alpha,
    };
    // A float clip, so that Softness 1 hands back the model's probability unquantised; its
    // values are the 8-bit frames' (/255), so the guide the plug-in reads is the frames' bytes.
    let frames = support::clip("shapes");
    let mut host = support::host();
    host.set_source_with(&Source::new(support::images(&frames)).depth(Depth::Float))
        .unwrap();
    host.create_instance(SAM2_PLUGIN_ID, FILTER).unwrap();
    host.set_param("outputMode", MATTE_ONLY).unwrap();
    for (slot, doc) in support::script_prompt_params("one_click") {
        host.set_param(&format!("object{slot}Prompts"), doc.as_str())
            .unwrap();
    }
    press(&mut host, "trackForward", 0.0);
    host.set_param("softness", 1.0).unwrap();
    let f = 3;
    let (w, h) = (frames[f].width, frames[f].height);
    let guide = Guide {
        rgb: &frames[f].rgb,
        width: w,
        height: h,
    };
    let off = soft_matte(&mut host, f);
    // The upsampled logits the plug-in finished, from its probability (exact to f32 rounding;
    // beyond ±16 the probability is 0 or 1 to within what the filter can tell).
    let logits: Vec<f32> = off
        .iter()
        .map(|&p| (p / (1.0 - p)).ln().clamp(-LOGIT_LIMIT, LOGIT_LIMIT))
        .collect();
    let engine = |settings: EdgeRefinement| refine_alpha(&logits, guide, &settings, 0).unwrap();
    let auto_colour = EdgeRefinement {
        guide: GuideChannels::Colour,
        radius: None,
        epsilon: DEFAULT_EPSILON,
    };
    let cases = [
        ("Colour", 1, 0.0, auto_colour),
        (
            "Luminance",
            2,
            0.0,
            EdgeRefinement {
                guide: GuideChannels::Luminance,
                ..auto_colour
            },
        ),
        (
            "Colour, radius 8",
            1,
            8.0,
            EdgeRefinement {
                radius: Some(8.0),
                ..auto_colour
            },
        ),
    ];
    let mut refined = Vec::new();
    for (what, choice, edge_radius, settings) in cases {
        host.set_param("refineEdges", choice).unwrap();
        host.set_param("edgeRadius", edge_radius).unwrap();
        let got = soft_matte(&mut host, f);
        assert!(
            got.iter().all(|v| (0.0..=1.0).contains(v)),
            "{what}: a refined matte is an alpha in [0, 1]"
        );
        // The same as the engine's guided filter on the same logits and guide (its GPU path, which
        // the plug-in may take, agrees with the CPU within 1e-4).
        let (d, at) = largest_difference(&got, &engine(settings), w);
        assert!(
            d < 2e-3,
            "{what}: the plug-in's refined matte differs from the engine's by {d} at {at:?}"
        );
        // Different from the unrefined matte. (The test model's probabilities stay near ½ and the
        // clip is grainy, so there is no settled part of the matte or flat part of the frame
        // where the filter would leave it alone; that the difference is the guided filter's is
        // what the comparison with the engine above shows.)
        let (d, at) = largest_difference(&got, &off, w);
        assert!(
            d > 0.1,
            "{what}: refining moved the matte by at most {d} (at {at:?})"
        );
        refined.push(got);
    }
    assert_ne!(refined[0], refined[1], "Luminance is not Colour");
    assert_ne!(
        refined[0], refined[2],
        "a set radius is not the automatic one"
    );
    // Off again: today's matte, bit for bit (the cached refined matte is not reused).
    host.set_param("refineEdges", 0).unwrap();
    assert_eq!(
        soft_matte(&mut host, f),
        off,
        "Off gives the unrefined matte"
    );
    // On again: made anew (the cache holds the unrefined matte), the same.
    host.set_param("refineEdges", 1).unwrap();
    host.set_param("edgeRadius", 0.0).unwrap();
    assert_eq!(
        soft_matte(&mut host, f),
        refined[0],
        "Refine Edges is deterministic"
    );
    // The hard matte (Softness 0) of the refined alpha cuts it at ½.
    host.set_param("softness", 0.0).unwrap();
    let hard = soft_matte(&mut host, f);
    for (i, (h, q)) in hard.iter().zip(&refined[0]).enumerate() {
        if (q - 0.5).abs() > 1e-3 {
            assert_eq!(
                *h,
                if *q > 0.5 { 1.0 } else { 0.0 },
                "the hard refined matte at ({}, {}): {h}, the soft one {q}",
                i % w,
                i / w
            );
        }
    }
    // A half-resolution proxy: a set radius is halved, as the feather is; the guide is the proxy
    // source the host hands over (its RGB, shown unpremultiplied by "Source + matte").
    host.set_param("softness", 1.0).unwrap();
    host.set_param("edgeRadius", 8.0).unwrap();
    let proxy = |host: &mut Host, mode: i64, channel: usize| -> (Vec<f32>, usize, usize) {
        host.set_param("outputMode", mode).unwrap();
        let out = host.render(&Render::at(f as f64).scale(0.5)).unwrap().image;
        let v = support::raw_top_down(&out, channel);
        (
            v.into_iter().map(|v| v as f32).collect(),
            out.width,
            out.height,
        )
    };
    let refined_proxy = proxy(&mut host, MATTE_ONLY, 3).0;
    host.set_param("refineEdges", 0).unwrap();
    let (off_proxy, pw, ph) = proxy(&mut host, MATTE_ONLY, 3);
    assert_eq!((pw, ph), (w / 2, h / 2));
    let rgb: Vec<u8> = {
        let channels: Vec<Vec<f32>> = (0..3)
            .map(|c| proxy(&mut host, SOURCE_WITH_MATTE, c).0)
            .collect();
        (0..pw * ph)
            .flat_map(|i| {
                channels
                    .iter()
                    .map(move |c| (c[i].clamp(0.0, 1.0) * 255.0).round() as u8)
            })
            .collect()
    };
    let proxy_logits: Vec<f32> = off_proxy
        .iter()
        .map(|&p| (p / (1.0 - p)).ln().clamp(-LOGIT_LIMIT, LOGIT_LIMIT))
        .collect();
    let engine_proxy = |radius: f32| {
        let guide = Guide {
            rgb: &rgb,
            width: pw,
            height: ph,
        };
        let settings = EdgeRefinement {
            radius: Some(radius),
            ..auto_colour
        };
        refine_alpha(&proxy_logits, guide, &settings, 0).unwrap()
    };
    let (d, at) = largest_difference(&refined_proxy, &engine_proxy(4.0), pw);
    assert!(
        d < 2e-3,
        "proxy: the refined matte differs from the engine's with radius 4 by {d} at {at:?}"
    );
    let (d, _) = largest_difference(&refined_proxy, &engine_proxy(8.0), pw);
    assert!(d > 1e-2, "proxy: the radius was not scaled ({d})");
    let (d, _) = largest_difference(&refined_proxy, &off_proxy, pw);
    assert!(d > 0.1, "proxy: refining moved the matte by at most {d}");
    let m = host.messages().unwrap();
    assert!(m.persistent.is_none(), "{:?}", m.persistent);
    host.quit().unwrap();
}

#[test]
fn a_host_without_temporal_access_tracks_by_rendering_in_order() {
    // The host property says "no temporal clip access" and a clip hands over only the frame being
    // rendered: Track cannot run (a sentence says what to do instead), and rendering the clip in
    // order tracks it, frame by frame, to the CLI's mattes.
    let frames = support::clip("crossing");
    let mut host = support::spawn(&support::setup().bundle_dir);
    host.configure(json!({"temporal_clip_access": false}))
        .unwrap();
    let report = host.load().unwrap();
    assert!(report.plugin(SAM2_PLUGIN_ID).is_some_and(|p| p.ok));
    host.set_source(&support::images(&frames)).unwrap();
    host.create_instance(SAM2_PLUGIN_ID, FILTER).unwrap();
    host.set_param("outputMode", MATTE_ONLY).unwrap();
    for (slot, doc) in support::script_prompt_params("two_objects") {
        host.set_param(&format!("object{slot}Prompts"), doc.as_str())
            .unwrap();
    }
    host.set_time(0.0).unwrap();
    host.press_button("trackForward").unwrap();
    let message = host
        .messages()
        .unwrap()
        .persistent
        .expect("Track explains why it cannot run");
    assert!(
        message
            .text
            .contains("hands over only the frame being rendered"),
        "{}",
        message.text
    );

    let cli = support::cli_mattes("two_objects");
    for f in 0..frames.len() {
        let out = render(&mut host, f as f64);
        assert_matte(
            &support::channel_u8(&out, 3),
            &cli.union(f),
            cli.width,
            &format!("two_objects without temporal access, frame {f}"),
        );
    }
    // The effect read the host's property: it never asked for a frame the host would refuse.
    let fetches = host.fetches().unwrap();
    assert!(!fetches.is_empty());
    let refused: Vec<_> = fetches.iter().filter(|e| e["ok"] == json!(false)).collect();
    assert!(refused.is_empty(), "fetches the host refused: {refused:?}");
    host.quit().unwrap();
}

// ------------------------------------------------------------------------------------------------
// Other hosts' behaviours (tests/host/PROTOCOL.md, "Behaving like other hosts"): rendering a
// fixture clip in order gives the CLI's mattes, or the source with a message — never a wrong
// matte.

/// A host behaving as `settings` say, with `clip` as its footage and an instance in "Matte only"
/// whose prompts are `script`'s clicks set as parameter values (as a batch host or a script
/// sets them), plus `params`.
fn host_behaving(
    settings: Value,
    clip: &str,
    script: &str,
    params: &[(&str, Value)],
) -> (Host, Vec<Frame>) {
    let frames = support::clip(clip);
    let mut host = support::spawn(&support::setup().bundle_dir);
    host.configure(settings).unwrap();
    let report = host.load().unwrap();
    assert!(report.plugin(SAM2_PLUGIN_ID).is_some_and(|p| p.ok));
    host.set_source(&support::images(&frames)).unwrap();
    host.create_instance(SAM2_PLUGIN_ID, FILTER).unwrap();
    host.set_param("outputMode", MATTE_ONLY).unwrap();
    for (slot, doc) in support::script_prompt_params(script) {
        let name = format!("object{slot}Prompts");
        let answer = host.set_param(&name, doc.as_str()).unwrap();
        assert_ne!(answer["ok"], json!(false), "{name} refused: {answer}");
    }
    for (name, value) in params {
        host.set_param(name, value.clone()).unwrap();
    }
    (host, frames)
}

/// Renders every frame in order from `threads` threads at once and checks each against the
/// CLI's matte for `script`; returns the renders' answers.
fn in_order_gives_the_cli_mattes(
    host: &mut Host,
    n: usize,
    script: &str,
    threads: usize,
    what: &str,
) -> Vec<Value> {
    let times: Vec<f64> = (0..n).map(|f| f as f64).collect();
    let rendered = host
        .render_many(&Render::times(&times, threads).with("sequential", true))
        .unwrap();
    let cli = support::cli_mattes(script);
    assert_eq!(rendered.len(), n);
    for (f, r) in rendered.iter().enumerate() {
        assert_matte(
            &support::channel_top_down(&r.image, 3),
            &cli.union(f),
            cli.width,
            &format!("{what}, frame {f}"),
        );
    }
    rendered.into_iter().map(|r| r.response).collect()
}

/// Every source fetch asked for the time being rendered (never another time).
fn only_the_rendered_frame_was_asked_for(host: &mut Host, what: &str) {
    let fetches = host.fetches().unwrap();
    assert!(!fetches.is_empty(), "{what}: no fetches logged");
    for e in fetches.iter().filter(|e| e["clip"] == "Source") {
        assert_eq!(
            e["in_render"],
            json!(true),
            "{what}: a fetch outside a render: {e}"
        );
        assert_eq!(
            e["time"], e["frame"],
            "{what}: the effect asked for another time than the rendered frame: {e}"
        );
    }
}

#[test]
fn a_frame_threaded_host_renders_the_cli_mattes_with_an_instance_per_frame() {
    // A fresh instance per frame (MLT's way with instance-safe effects): the session outlives
    // them, one frame at a time and from three render threads at once.
    for threads in [1, 3] {
        let what = format!("frame-threaded, {threads} thread(s)");
        let (mut host, frames) = host_behaving(
            json!({"frame_threaded": true}),
            "crossing",
            "two_objects",
            &[],
        );
        let answers =
            in_order_gives_the_cli_mattes(&mut host, frames.len(), "two_objects", threads, &what);
        let instances: std::collections::BTreeSet<&str> = answers
            .iter()
            .filter_map(|a| a["frame_instance"].as_str())
            .collect();
        assert_eq!(
            instances.len(),
            frames.len(),
            "{what}: an instance per frame"
        );
        for a in &answers {
            assert!(a["persistent"].is_null(), "{what}: {a}");
        }
        host.quit().unwrap();
    }
}

#[test]
fn without_temporal_access_only_the_rendered_frame_is_read() {
    // MLT's clipGetImage hands over the frame being rendered whatever time is asked: the effect
    // must never ask for another time, and rendering in order still tracks to the CLI's mattes.
    let (mut host, frames) = host_behaving(
        json!({"clip_fetch": "current_frame"}),
        "crossing",
        "two_objects",
        &[],
    );
    host.request(json!({"cmd": "fetches", "clear": true}))
        .unwrap();
    in_order_gives_the_cli_mattes(&mut host, frames.len(), "two_objects", 1, "current frame");
    only_the_rendered_frame_was_asked_for(&mut host, "current frame");
    // Out of order: a frame far from the tracked ones shows the source, with a sentence.
    let (mut host, frames) = host_behaving(
        json!({"clip_fetch": "current_frame"}),
        "crossing",
        "two_objects",
        &[],
    );
    let last = frames.len() - 1;
    let out = render(&mut host, last as f64);
    support::shows_source(&out, &frames[last]).unwrap();
    let p = host.messages().unwrap().persistent.expect("a message");
    assert_eq!(p.kind, "OfxMessageWarning", "{p:?}");
    only_the_rendered_frame_was_asked_for(&mut host, "current frame, out of order");
    host.quit().unwrap();
}

#[test]
fn a_clip_without_frame_range_or_project_takes_the_clip_length_parameter() {
    let no_range = json!({"clip_frame_range": false, "project_props": false});
    // Clip Length set (a batch host's property): the CLI's mattes.
    let (mut host, frames) = host_behaving(
        no_range.clone(),
        "crossing",
        "two_objects",
        &[("clipLength", json!(12))],
    );
    assert_eq!(frames.len(), 12);
    in_order_gives_the_cli_mattes(&mut host, frames.len(), "two_objects", 1, "Clip Length 12");
    assert!(host.messages().unwrap().persistent.is_none());
    host.quit().unwrap();
    // A clip without a frame range takes the effect's duration when the host gives one.
    let (mut host, frames) = host_behaving(
        json!({"clip_frame_range": false}),
        "crossing",
        "two_objects",
        &[],
    );
    in_order_gives_the_cli_mattes(&mut host, frames.len(), "two_objects", 1, "effect duration");
    host.quit().unwrap();
    // Neither: open-ended, never one frame; a warning says how to make it exact.
    let (mut host, frames) = host_behaving(no_range, "crossing", "two_objects", &[]);
    for f in 0..frames.len() {
        let a = alpha(&mut host, f as f64);
        assert!(a.contains(&255), "open-ended, frame {f}: no matte");
        let p = host.messages().unwrap().persistent.expect("a warning");
        assert!(p.text.contains("Clip Length"), "{p:?}");
    }
    host.quit().unwrap();
}

#[test]
fn hosts_that_hide_secret_parameters_can_set_the_prompts() {
    let (mut host, frames) = host_behaving(
        json!({"secret_params": "hidden"}),
        "crossing",
        "two_objects",
        &[],
    );
    let p = host
        .request(json!({"cmd": "get_param", "name": "object1Prompts"}))
        .unwrap();
    assert_eq!(p["ok"], json!(true), "{p}");
    assert_eq!(p["secret"], json!(false), "{p}");
    assert!(
        p["value"]
            .as_str()
            .unwrap()
            .contains("sam2-rotoscope-prompts"),
        "{p}"
    );
    in_order_gives_the_cli_mattes(&mut host, frames.len(), "two_objects", 1, "secrets hidden");
    host.quit().unwrap();
}

#[test]
fn mlt_renders_the_cli_mattes_in_order() {
    // Everything MLT 7.42 does at once; Clip Length given as a property (MLT says nothing of
    // the clip's length). Rendering in order, one and three threads: the CLI's mattes.
    for threads in [1, 3] {
        let what = format!("mlt, {threads} thread(s)");
        let (mut host, frames) = host_behaving(
            json!({"mlt": true}),
            "crossing",
            "two_objects",
            &[("clipLength", json!(12))],
        );
        host.request(json!({"cmd": "fetches", "clear": true}))
            .unwrap();
        let answers =
            in_order_gives_the_cli_mattes(&mut host, frames.len(), "two_objects", threads, &what);
        for a in &answers {
            assert!(a["persistent"].is_null(), "{what}: {a}");
        }
        only_the_rendered_frame_was_asked_for(&mut host, &what);
        host.quit().unwrap();
    }
}

#[test]
fn two_instances_with_the_same_prompts_share_one_session() {
    // Instance A tracks the clip with Track Forward; instance B, made later with the same
    // prompts (a second viewer, a reopened project), renders the last frame at once: beyond
    // B's own reach (8 frames), so only A's session can have tracked it, and B fetched nothing
    // but the frame it renders.
    let (mut host, frames) = instance_over("crossing");
    let n = frames.len();
    let prompts: serde_json::Map<String, Value> = support::script_prompt_params("two_objects")
        .into_iter()
        .map(|(slot, doc)| (format!("object{slot}Prompts"), json!(doc)))
        .collect();
    for (name, doc) in &prompts {
        host.set_param(name, doc.clone()).unwrap();
    }
    host.set_time(0.0).unwrap();
    press(&mut host, "trackForward", 0.0);
    let mut params = prompts.clone();
    params.insert("outputMode".into(), json!(MATTE_ONLY));
    host.create_instance_raw(json!({
        "plugin": SAM2_PLUGIN_ID, "context": FILTER, "name": "second", "params": params
    }))
    .unwrap();
    host.request(json!({"cmd": "fetches", "clear": true}))
        .unwrap();
    let cli = support::cli_mattes("two_objects");
    let last = n - 1;
    assert_matte(
        &alpha(&mut host, last as f64),
        &cli.union(last),
        cli.width,
        "the second instance, last frame",
    );
    let fetched: Vec<Value> = host
        .fetches()
        .unwrap()
        .into_iter()
        .filter(|e| e["clip"] == "Source")
        .collect();
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert_eq!(fetched[0]["time"].as_f64(), Some(last as f64));
    assert!(host.messages().unwrap().persistent.is_none());
    host.quit().unwrap();
}
