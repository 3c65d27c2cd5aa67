//! The OpenFX test host (tests/host/): it builds, loads bundles through OFX_PLUGIN_PATH, and drives
//! them as a compositing host would. Checked against the SDK's own examples (Invert, Basic gain)
//! and the tester plug-in (tests/host/plugins/tester.cpp), which uses every host feature the
//! SAM 2 plug-in's tests will need: all param kinds, overlay pen/key/draw, temporal clip access,
//! render scale and windows, every bit depth, multi-threaded renders, progress, abort, messages,
//! project save/reopen, and plug-ins that fail, throw or crash.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "host/driver.rs"]
mod driver;

use std::time::{Duration, Instant};

use driver::{
    BASIC_GAIN_ID, Components, Depth, FILTER, GENERAL, Host, HostError, HostOptions, INVERT_ID,
    Image, Pen, Render, Source, TESTER_ID, assert_json,
};
use serde_json::json;

/// A deterministic test pattern: every sample different, in 0..1.
fn pattern(
    width: usize,
    height: usize,
    components: Components,
    depth: Depth,
    seed: usize,
) -> Image {
    Image::from_fn(width, height, components, depth, |x, y, c| {
        ((x * 37 + y * 101 + c * 53 + seed * 17) % 251) as f32 / 251.0
    })
}

fn tester_host(frames: &[Image]) -> Host {
    let mut host = Host::spawn_test_plugins().unwrap();
    host.load().unwrap();
    host.set_source(frames).unwrap();
    host.create_instance(TESTER_ID, FILTER).unwrap();
    host
}

fn host_with_env(vars: &[(&str, &str)]) -> Host {
    let built = driver::build().unwrap();
    let mut opts = HostOptions::new(&built.test_plugins);
    for (k, v) in vars {
        opts = opts.env(k, v);
    }
    Host::spawn_with(opts).unwrap()
}

#[test]
fn host_builds_and_loads_every_test_bundle() {
    let built = driver::build().unwrap();
    assert!(built.host.is_file(), "{}", built.host.display());
    let mut host = Host::spawn(&built.test_plugins).unwrap();
    let report = host.load().unwrap();

    let invert = report
        .plugin(INVERT_ID)
        .expect("the SDK Invert example loads");
    assert!(invert.ok, "{invert:?}");
    assert_eq!(invert.contexts, ["OfxImageEffectContextFilter"]);
    assert_eq!(invert.pixel_depths, ["OfxBitDepthByte"]);

    let basic = report
        .plugin(BASIC_GAIN_ID)
        .expect("the SDK Basic example loads");
    assert!(basic.ok);
    assert_eq!(
        basic.contexts,
        [
            "OfxImageEffectContextFilter",
            "OfxImageEffectContextGeneral"
        ]
    );
    assert_eq!(
        basic.pixel_depths,
        ["OfxBitDepthByte", "OfxBitDepthShort", "OfxBitDepthFloat"]
    );

    let tester = report.plugin(TESTER_ID).expect("the tester loads");
    assert!(tester.ok && tester.overlay, "{tester:?}");
    for b in report.raw["binaries"].as_array().unwrap() {
        assert_eq!(b["ok"], true, "{b}");
    }

    // Describing in a context lists clips and params.
    let d = host.describe(BASIC_GAIN_ID, Some(GENERAL)).unwrap();
    let clips: Vec<&str> = d["clips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(clips, ["Output", "Source", "Mask"]);
    let params: Vec<&str> = d["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        params.contains(&"scale") && params.contains(&"scaleComponents"),
        "{params:?}"
    );
    assert_eq!(d["clips"][2]["optional"], true);

    // Unknown plug-ins and contexts are errors, not crashes.
    assert!(matches!(
        host.describe("no.such.plugin", None),
        Err(HostError::Command { .. })
    ));
    assert!(matches!(
        host.describe(INVERT_ID, Some(GENERAL)),
        Err(HostError::Command { .. })
    ));

    // What the plug-ins asked for, and got.
    let suites = host.suites().unwrap();
    assert!(
        suites
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["suite"] == "OfxImageEffectSuite" && s["provided"] == true),
        "{suites}"
    );
    host.quit().unwrap();
}

#[test]
fn sdk_invert_example_inverts_8bit_and_float_frames() {
    let mut host = Host::spawn_test_plugins().unwrap();
    host.load().unwrap();

    // 8-bit RGBA in, 8-bit out: 255 - v on every channel, alpha included.
    let src = pattern(7, 5, Components::Rgba, Depth::Byte, 0);
    host.set_source(std::slice::from_ref(&src)).unwrap();
    let created = host.create_instance(INVERT_ID, FILTER).unwrap();
    assert_eq!(created["clips"]["Source"]["depth"], "byte");
    let out = host.render(&Render::at(0.0)).unwrap().image;
    assert_eq!(
        (out.width, out.height, out.depth, out.components),
        (7, 5, Depth::Byte, Components::Rgba)
    );
    for y in 0..5 {
        for x in 0..7 {
            for c in 0..4 {
                assert_eq!(
                    out.get_raw(x, y, c),
                    255.0 - src.get_raw(x, y, c),
                    "({x},{y},{c})"
                );
            }
        }
    }

    // A float source: Invert supports bytes only, so the host maps the clip to 8 bits (clip
    // preferences) and converts the pixels, as a host must.
    let fsrc = pattern(6, 4, Components::Rgba, Depth::Float, 3);
    let set = host.set_source(std::slice::from_ref(&fsrc)).unwrap();
    assert_eq!(
        set["instances"][0]["clips"]["Source"]["unmapped_depth"],
        "float"
    );
    assert_eq!(set["instances"][0]["clips"]["Source"]["depth"], "byte");
    let out = host.render(&Render::at(0.0)).unwrap().image;
    assert_eq!((out.width, out.height, out.depth), (6, 4, Depth::Byte));
    for y in 0..4 {
        for x in 0..6 {
            for c in 0..4 {
                let expected = 255.0 - (f64::from(fsrc.get(x, y, c)) * 255.0).round();
                assert_eq!(out.get_raw(x, y, c), expected, "({x},{y},{c})");
            }
        }
    }
    host.quit().unwrap();
}

#[test]
fn sdk_basic_gain_renders_byte_short_and_float_with_params_and_threads() {
    let mut host = Host::spawn_test_plugins().unwrap();
    host.load().unwrap();
    for depth in [Depth::Byte, Depth::Short, Depth::Float] {
        let src = pattern(9, 6, Components::Rgba, depth, 1);
        host.set_source(std::slice::from_ref(&src)).unwrap();
        host.create_instance(BASIC_GAIN_ID, GENERAL).unwrap();
        host.set_param("scale", 2.0).unwrap();
        assert_json(&host.get_param("scale").unwrap(), &json!(2.0));
        let r = host.render(&Render::at(0.0)).unwrap();
        assert_eq!(r.image.depth, depth);
        for y in 0..6 {
            for x in 0..9 {
                for c in 0..4 {
                    let v = src.get_raw(x, y, c);
                    let expected = match depth {
                        Depth::Byte => (v * 2.0).min(255.0).trunc(),
                        Depth::Short => (v * 2.0).min(65535.0).trunc(),
                        _ => f64::from(src.get(x, y, c) * 2.0),
                    };
                    assert_eq!(
                        r.image.get_raw(x, y, c),
                        expected,
                        "{depth:?} ({x},{y},{c})"
                    );
                }
            }
        }
        host.destroy_instance().unwrap();
    }
    // Basic splits its rows with the multi-thread suite.
    let suites = host.suites().unwrap();
    assert!(
        suites
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["suite"] == "OfxMultiThreadSuite"),
        "{suites}"
    );
    host.quit().unwrap();
}

#[test]
fn every_depth_and_component_layout_round_trips() {
    let mut host = Host::spawn_test_plugins().unwrap();
    host.load().unwrap();
    for depth in [Depth::Byte, Depth::Short, Depth::Half, Depth::Float] {
        for comps in [Components::Rgba, Components::Rgb, Components::Alpha] {
            let src = pattern(5, 4, comps, depth, 2);
            host.set_source(std::slice::from_ref(&src)).unwrap();
            host.create_instance(TESTER_ID, FILTER).unwrap();
            host.set_param("gain", 0.5).unwrap();
            let out = host.render(&Render::at(0.0)).unwrap().image;
            assert_eq!((out.depth, out.components), (depth, comps));
            let tol = match depth {
                Depth::Byte => 1.0 / 255.0,
                Depth::Short => 1.0 / 65535.0,
                Depth::Half => 1e-3,
                Depth::Float => 1e-7,
            };
            for y in 0..4 {
                for x in 0..5 {
                    for c in 0..comps.count() {
                        let is_alpha = comps == Components::Alpha || c == 3;
                        let v = src.get(x, y, c);
                        let expected = if is_alpha { v } else { v * 0.5 };
                        let got = out.get(x, y, c);
                        assert!(
                            (got - expected).abs() <= tol,
                            "{depth:?} {comps:?} ({x},{y},{c}): {got} vs {expected}"
                        );
                    }
                }
            }
            host.destroy_instance().unwrap();
        }
    }
    host.quit().unwrap();
}

#[test]
fn render_scale_window_and_pixel_aspect() {
    let src = pattern(16, 8, Components::Rgba, Depth::Float, 4);
    let mut host = Host::spawn_test_plugins().unwrap();
    host.load().unwrap();
    host.set_source_with(&Source::new(vec![src.clone()]).pixel_aspect(2.0))
        .unwrap();
    host.create_instance(TESTER_ID, FILTER).unwrap();
    // Canonical point (8, 4) is pixel (4, 4) at PAR 2; at scale 0.5 it is pixel (2, 2).
    host.set_param("point", json!([8.0, 4.0])).unwrap();
    host.set_param("size", json!([2, 2])).unwrap();
    host.set_param("show_point", true).unwrap();
    host.set_param("colour", json!([0.25, 0.5, 0.75, 1.0]))
        .unwrap();

    let full = host.render(&Render::at(0.0)).unwrap();
    // The canonical RoD is width x PAR.
    assert_json(&full.response["rod"], &json!([0, 0, 32, 8]));
    assert_json(&full.response["rod_pixels"], &json!([0, 0, 16, 8]));
    assert_eq!(full.image.get(4, 4, 1), 0.5, "the marker sits on the point");
    assert_eq!(full.image.get(0, 0, 1), src.get(0, 0, 1));

    let half = host.render(&Render::at(0.0).scale(0.5)).unwrap();
    assert_eq!((half.image.width, half.image.height), (8, 4));
    assert_json(&half.response["render_scale"], &json!([0.5, 0.5]));
    assert_eq!(half.image.get(2, 2, 1), 0.5);
    // The host downsamples inputs to the render scale (nearest neighbour): pixel (3,1) <- (6,2)/(7,3).
    let f = host.fetches().unwrap();
    assert!(
        f.iter().any(|e| e["render_scale"] == json!([0.5, 0.5])),
        "{f:?}"
    );

    // A render window: the output image covers the window only, at its place.
    let win = host.render(&Render::at(0.0).window([3, 2, 9, 5])).unwrap();
    assert_eq!(
        (
            win.image.x1,
            win.image.y1,
            win.image.width,
            win.image.height
        ),
        (3, 2, 6, 3)
    );
    assert_eq!(win.image.get(5, 3, 0), src.get(5, 3, 0));
    // The RoI is in canonical coordinates.
    assert_json(&win.response["rois"]["Source"], &json!([6, 2, 18, 5]));
    host.quit().unwrap();
}

#[test]
fn temporal_access_out_of_range_frames_and_persistent_messages() {
    let frames: Vec<Image> = (0..3)
        .map(|i| pattern(4, 3, Components::Rgba, Depth::Float, 10 * i))
        .collect();
    let mut host = Host::spawn_test_plugins().unwrap();
    host.load().unwrap();
    host.set_source_with(&Source::new(frames.clone()).first_frame(10))
        .unwrap();
    host.create_instance(TESTER_ID, FILTER).unwrap();
    host.set_param("offset_frames", 1).unwrap();

    let r = host.render(&Render::at(10.0)).unwrap();
    assert_json(&r.response["frames_needed"]["Source"], &json!([[11, 11]]));
    assert_eq!(
        r.image.get(1, 1, 0),
        frames[1].get(1, 1, 0),
        "frame 10 shows source frame 11"
    );
    let f = host.fetches().unwrap();
    assert!(
        f.iter()
            .any(|e| e["clip"] == "Source" && e["frame"] == 11 && e["in_render"] == true),
        "{f:?}"
    );

    // Frame 12 + 1 is past the clip: no image, the tester fails with a persistent error message.
    let raw = host.render_raw(&Render::at(12.0)).unwrap();
    assert_eq!(raw["status"], "kOfxStatFailed");
    let m = host.messages().unwrap();
    let p = m.persistent.expect("a persistent message");
    assert_eq!(
        (p.kind.as_str(), p.id.as_str()),
        ("OfxMessageError", "tester.source")
    );
    assert!(p.text.contains("13"), "{p:?}");

    // A host that clamps to the clip's ends serves frame 12 instead; the message clears.
    host.set_source_with(
        &Source::new(frames.clone())
            .first_frame(10)
            .out_of_range("clamp"),
    )
    .unwrap();
    let r = host.render(&Render::at(12.0)).unwrap();
    assert_eq!(r.image.get(0, 0, 2), frames[2].get(0, 0, 2));
    assert!(host.messages().unwrap().persistent.is_none());

    // A plug-in-reported error: status and message.
    host.set_param("message", "model missing").unwrap();
    assert!(matches!(
        host.render(&Render::at(10.0)),
        Err(HostError::Status { .. })
    ));
    let p = host.messages().unwrap().persistent.unwrap();
    assert_eq!(p.text, "model missing");
    host.set_param("message", "").unwrap();
    host.render(&Render::at(10.0)).unwrap();
    assert!(host.messages().unwrap().persistent.is_none());
    assert_eq!(
        host.live_images().unwrap(),
        0,
        "the tester releases every image"
    );
    host.quit().unwrap();
}

#[test]
fn every_param_kind_sets_gets_and_notifies() {
    let mut host = tester_host(&[pattern(4, 4, Components::Rgba, Depth::Float, 0)]);
    // Defaults, the normalised point default scaled to the project (4 x 4).
    let p = host.params().unwrap();
    assert_json(&p["values"]["gain"], &json!(1.0));
    assert_json(&p["values"]["point"], &json!([2.0, 2.0]));
    assert_eq!(p["values"]["label"], "hello");

    for (name, value) in [
        ("gain", json!(0.25)),
        ("offset_frames", json!(0)),
        ("invert", json!(true)),
        ("mode", json!(1)),
        ("colour", json!([0.1, 0.2, 0.3, 0.4])),
        ("tint", json!([0.5, 0.6, 0.7])),
        ("point", json!([1.5, 2.5])),
        ("size", json!([3, 5])),
        ("label", json!("über ✓")),
    ] {
        let r = host.set_param(name, value.clone()).unwrap();
        assert_eq!(
            r["status"], "kOfxStatReplyDefault",
            "{name}: instanceChanged was sent"
        );
        assert_eq!(host.get_param(name).unwrap(), value, "{name}");
    }
    // Choice by option label.
    host.set_param("mode", "Source").unwrap();
    assert_json(&host.get_param("mode").unwrap(), &json!(0));
    // Wrong shapes and unknown names are refused.
    assert!(matches!(
        host.set_param("colour", json!([1, 2])),
        Err(HostError::Command { .. })
    ));
    assert!(matches!(
        host.set_param("nope", 1),
        Err(HostError::Command { .. })
    ));

    // A push button: the plug-in reacts by setting params (reason plug-in edit).
    let r = host.press_button("reset").unwrap();
    assert_eq!(r["status"], "kOfxStatOK");
    assert_eq!(r["plugin_changed"], json!(["gain", "label"]));
    assert_json(&host.get_param("gain").unwrap(), &json!(1.0));
    let events = host.events().unwrap();
    assert!(
        events["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "OfxActionInstanceChanged"
                && e["name"] == "gain"
                && e["reason"] == "OfxChangePluginEdited"),
        "{events}"
    );

    // Questions get the configured reply.
    host.press_button("ask").unwrap();
    assert_eq!(host.get_param("last_event").unwrap(), "reply yes");
    host.configure(json!({"question_reply": "no"})).unwrap();
    host.press_button("ask").unwrap();
    assert_eq!(host.get_param("last_event").unwrap(), "reply no");
    let m = host.messages().unwrap();
    assert!(
        m.log
            .iter()
            .any(|m| m.kind == "OfxMessageQuestion" && m.text == "Proceed?"),
        "{m:?}"
    );
    host.quit().unwrap();
}

#[test]
fn overlay_pen_keys_and_draw() {
    let mut host = tester_host(&[pattern(64, 32, Components::Rgba, Depth::Byte, 0)]);
    let r = host
        .pen(&Pen::down(10.5, 20.0).shift().ctrl().at(0.0))
        .unwrap();
    assert_eq!(r["status"], "kOfxStatOK");
    assert_eq!(
        r["plugin_changed"],
        json!(["pen_downs", "point", "last_event"])
    );
    assert!(r["redraws"].as_f64().unwrap() >= 1.0);
    assert_eq!(
        host.get_param("last_event").unwrap(),
        "pen down 10.5 20 [shift,ctrl] t=0"
    );
    assert_json(&host.get_param("point").unwrap(), &json!([10.5, 20.0]));

    host.pen(&Pen::motion(12.0, 21.0).shift()).unwrap();
    assert_eq!(
        host.get_param("last_event").unwrap(),
        "pen motion 12 21 [shift] t=0"
    );
    host.pen(&Pen::up(12.0, 21.0)).unwrap();
    assert_eq!(host.get_param("last_event").unwrap(), "pen up 12 21 [] t=0");
    // Motion without a press is a hover: not handled.
    assert_eq!(
        host.pen(&Pen::motion(1.0, 1.0)).unwrap()["status"],
        "kOfxStatReplyDefault"
    );
    assert_json(&host.get_param("pen_downs").unwrap(), &json!(1));

    let k = host.key("down", "a").unwrap();
    assert_eq!(k["status"], "kOfxStatOK");
    assert_eq!(host.get_param("last_event").unwrap(), "key down 97 'a' []");

    let d = host.draw(0.0).unwrap();
    assert_eq!(d["status"], "kOfxStatOK");
    assert_eq!(
        d["overlay_entry"], "V2",
        "a Draw Suite host takes the V2 entry"
    );
    let ops = d["ops"].as_array().unwrap();
    assert!(
        ops.iter().any(|o| o["op"] == "draw"
            && o["primitive"] == "rectangle"
            && driver::json_same(&o["points"], &json!([[10, 19], [14, 23]]))),
        "{d}"
    );
    assert!(
        ops.iter()
            .any(|o| o["op"] == "text" && o["text"] == "hello"),
        "{d}"
    );
    host.quit().unwrap();
}

#[test]
fn threaded_renders_progress_and_abort() {
    let frames: Vec<Image> = (0..4)
        .map(|i| pattern(8, 8, Components::Rgba, Depth::Float, i))
        .collect();
    let mut host = tester_host(&frames);
    host.set_param("gain", 2.0).unwrap();
    host.set_param("render_delay_ms", 60).unwrap();

    // Four frames from four threads at once; each one right.
    let renders = host
        .render_many(&Render::times(&[3.0, 1.0, 2.0, 0.0], 4))
        .unwrap();
    for (r, t) in renders.iter().zip([3usize, 1, 2, 0]) {
        assert_json(&r.response["time"], &json!(t as f64));
        assert_eq!(r.image.get(2, 5, 1), frames[t].get(2, 5, 1) * 2.0);
    }
    let all = host
        .render_raw(&Render::times(&[0.0, 0.0, 0.0], 3))
        .unwrap();
    assert_eq!(all["thread_safety"], "OfxImageEffectRenderFullySafe");
    assert!(
        all["max_concurrent_renders"].as_i64().unwrap() >= 2,
        "{all}"
    );

    // Progress: start, ten updates, end per render.
    host.request(json!({"cmd": "progress", "clear": true}))
        .unwrap();
    host.render(&Render::at(0.0)).unwrap();
    let p = host.progress().unwrap();
    let kinds: Vec<&str> = p.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"start"));
    assert_eq!(kinds.last(), Some(&"end"));
    assert_eq!(kinds.iter().filter(|k| **k == "update").count(), 10);

    // The user cancels at 35 %: progressUpdate says stop, abort() answers 1.
    let r = host
        .render_raw(&Render::at(0.0).with("abort_at_progress", 0.35))
        .unwrap();
    assert_eq!(r["aborted"], true);
    assert_eq!(r["status"], "kOfxStatOK");

    // Long work outside a render (a push button) reports progress; an armed cancel stops it.
    host.press_button("work").unwrap();
    assert_eq!(host.get_param("last_event").unwrap(), "work done");
    host.cancel_at_progress(0.3).unwrap();
    host.press_button("work").unwrap();
    assert_eq!(
        host.get_param("last_event").unwrap(),
        "work cancelled after 3"
    );
    host.clear_abort().unwrap();

    // Cancel a render running in the background.
    host.set_param("render_delay_ms", 5000).unwrap();
    let started = Instant::now();
    let job = host.render_async(&Render::at(1.0)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    host.abort().unwrap();
    let r = host.wait(job).unwrap();
    assert_eq!(r["aborted"], true);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the abort was honoured: {:?}",
        started.elapsed()
    );
    host.quit().unwrap();
}

#[test]
fn identity_renders_copy_the_source() {
    let src = pattern(6, 6, Components::Rgba, Depth::Half, 5);
    let mut host = tester_host(std::slice::from_ref(&src));
    host.set_param("identity", true).unwrap();
    let r = host.render(&Render::at(0.0)).unwrap();
    assert_json(
        &r.response["identity"],
        &json!({"clip": "Source", "time": 0.0}),
    );
    assert_eq!(r.image, src);
    host.quit().unwrap();
}

#[test]
fn params_survive_a_project_save_and_reopen() {
    let mut host = tester_host(&[pattern(4, 4, Components::Rgba, Depth::Float, 0)]);
    host.set_param("gain", 0.75).unwrap();
    host.set_param("label", "clicks: 3").unwrap();
    host.pen(&Pen::down(1.0, 3.0)).unwrap();
    let path = host.temp_dir().join("project.json");
    let saved = host.save_params(&path).unwrap();
    assert_eq!(saved["sync_status"], "kOfxStatReplyDefault");
    assert_eq!(saved["document"]["plugin"], TESTER_ID);

    let reopened = host.load_params(&path).unwrap();
    assert_eq!(reopened["created"], true);
    let v = host.params().unwrap()["values"].clone();
    assert_json(&v["gain"], &json!(0.75));
    assert_eq!(v["label"], "clicks: 3");
    assert_json(&v["point"], &json!([1.0, 3.0]));
    assert_json(&v["pen_downs"], &json!(1));
    // The reopened instance got its values before kOfxActionCreateInstance and renders with them.
    let r = host.render(&Render::at(0.0)).unwrap();
    assert!(r.image.get(0, 0, 3) > 0.0);

    // Unload everything and load again.
    host.unload().unwrap();
    assert!(host.load().unwrap().plugin(TESTER_ID).unwrap().ok);
    host.quit().unwrap();
}

#[test]
fn host_survives_a_plugin_failing_every_action() {
    // Every action, kOfxActionLoad included: the load report says so, nothing else breaks.
    for mode in ["status", "throw"] {
        let mut host = host_with_env(&[("OFX_TESTER_FAIL", "all"), ("OFX_TESTER_FAIL_MODE", mode)]);
        let report = host.load().unwrap();
        let t = report.plugin(TESTER_ID).unwrap();
        assert!(!t.ok, "{t:?}");
        assert_eq!(t.error.as_deref(), Some("kOfxActionLoad failed"));
        assert!(report.plugin(INVERT_ID).unwrap().ok);
        assert!(matches!(
            host.create_instance(TESTER_ID, FILTER),
            Err(HostError::Command { .. })
        ));
        if mode == "throw" {
            assert!(
                host.messages()
                    .unwrap()
                    .host_log
                    .iter()
                    .any(|m| m.text.contains("injected failure"))
            );
        }
        host.request(json!({"cmd": "ping"})).unwrap();
        host.quit().unwrap();
    }

    // Every action on a live instance (and its overlay): each command answers.
    for mode in ["status", "throw"] {
        let mut host = host_with_env(&[
            ("OFX_TESTER_FAIL", "instance"),
            ("OFX_TESTER_FAIL_MODE", mode),
        ]);
        host.load().unwrap();
        host.set_source(&[pattern(4, 4, Components::Rgba, Depth::Byte, 0)])
            .unwrap();
        let c = host.create_instance(TESTER_ID, FILTER).unwrap();
        assert_eq!(c["clip_preferences_ok"], false);
        assert_eq!(
            host.set_param("gain", 2.0).unwrap()["status"],
            "kOfxStatFailed"
        );
        assert_eq!(
            host.press_button("reset").unwrap()["status"],
            "kOfxStatFailed"
        );
        let r = host.render_raw(&Render::at(0.0)).unwrap();
        assert_eq!(r["status"], "kOfxStatFailed");
        assert!(matches!(
            host.render(&Render::at(0.0)),
            Err(HostError::Status { .. })
        ));
        assert!(matches!(
            host.pen(&Pen::down(1.0, 1.0)),
            Err(HostError::Command { .. })
        ));
        assert!(matches!(host.draw(0.0), Err(HostError::Command { .. })));
        assert_eq!(
            host.save_params(&host.temp_dir().join("p.json")).unwrap()["sync_status"],
            "kOfxStatFailed"
        );
        host.request(json!({"cmd": "action", "name": "purge_caches"}))
            .unwrap();
        host.destroy_instance().unwrap();
        host.unload().unwrap();
        host.quit().unwrap();
    }

    // A crashing plug-in takes the host down, and the error names the action.
    let mut host = host_with_env(&[("OFX_TESTER_CRASH", "OfxImageEffectActionRender")]);
    host.load().unwrap();
    host.set_source(&[pattern(4, 4, Components::Rgba, Depth::Byte, 0)])
        .unwrap();
    host.create_instance(TESTER_ID, FILTER).unwrap();
    match host.render(&Render::at(0.0)) {
        Err(HostError::Died { error, .. }) => {
            assert!(
                error.contains("SIGSEGV") && error.contains("OfxImageEffectActionRender"),
                "{error}"
            );
        }
        other => panic!("expected a crash report, got {other:?}"),
    }
    assert!(matches!(
        host.request(json!({"cmd": "ping"})),
        Err(HostError::Died { .. })
    ));
}

#[test]
fn protocol_errors_are_answers() {
    let mut host = Host::spawn_test_plugins().unwrap();
    for (cmd, needle) in [
        (json!({"cmd": "bogus"}), "unknown command"),
        (json!({"cmd": "render"}), "no instance"),
        (
            json!({"cmd": "create_instance", "plugin": TESTER_ID}),
            "no plug-ins loaded",
        ),
        (
            json!({"cmd": "set_source", "frames": ["/nonexistent.raw"]}),
            "cannot open image",
        ),
    ] {
        let v = host.request_raw(cmd.clone()).unwrap();
        assert_eq!(v["ok"], false, "{cmd}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{cmd}: {v}");
    }
    host.quit().unwrap();
}

// --- Behaving like other hosts (issue 8: MLT, the engine of Kdenlive and Shotcut) -------------

/// Frames that tell themselves apart: frame i is the pattern with seed 10 i.
fn numbered_frames(n: usize) -> Vec<Image> {
    (0..n)
        .map(|i| pattern(8, 6, Components::Rgba, Depth::Float, 10 * i))
        .collect()
}

/// The tester's `report` lines ("render t=.. asked=.. got=.. range=.. duration=.. hidden_gain=..").
fn reports(host: &mut Host) -> Vec<String> {
    host.messages()
        .unwrap()
        .log
        .into_iter()
        .filter(|m| m.id == "tester.report")
        .map(|m| m.text)
        .collect()
}

fn tester_host_configured(settings: serde_json::Value, frames: &[Image]) -> Host {
    let mut host = Host::spawn_test_plugins().unwrap();
    host.configure(settings).unwrap();
    host.load().unwrap();
    host.set_source(frames).unwrap();
    host.create_instance(TESTER_ID, FILTER).unwrap();
    host
}

#[test]
fn current_frame_clip_fetch_serves_the_rendered_frame_for_any_time() {
    let frames = numbered_frames(4);
    // The exact host: frame 2 with offset -1 shows frame 1.
    let mut exact = tester_host(&frames);
    exact.set_param("offset_frames", -1).unwrap();
    let r = exact.render(&Render::at(2.0)).unwrap();
    assert_eq!(r.image.get(3, 2, 0), frames[1].get(3, 2, 0));
    exact.quit().unwrap();

    // MLT's clipGetImage ignores the time: asked for frame 1 while rendering 2, it hands over 2,
    // and says it grants no temporal access.
    let mut host = Host::spawn_test_plugins().unwrap();
    let c = host
        .configure(json!({"clip_fetch": "current_frame"}))
        .unwrap();
    assert_eq!(c["temporal_clip_access"], false);
    assert_eq!(c["clip_fetch"], "current_frame");
    host.load().unwrap();
    host.set_source(&frames).unwrap();
    host.create_instance(TESTER_ID, FILTER).unwrap();
    host.set_param("offset_frames", -1).unwrap();
    host.set_param("report", true).unwrap();
    let r = host.render(&Render::at(2.0)).unwrap();
    assert_eq!(r.image.get(3, 2, 0), frames[2].get(3, 2, 0));
    assert_ne!(frames[1].get(3, 2, 0), frames[2].get(3, 2, 0));
    let f = host.fetches().unwrap();
    assert!(
        f.iter()
            .any(|e| e["clip"] == "Source" && e["time"] == 1 && e["frame"] == 2 && e["ok"] == true),
        "{f:?}"
    );
    let rep = reports(&mut host);
    assert!(
        rep[0].starts_with("render t=2 asked=1 got=Source@2@"),
        "{rep:?}"
    );
    // Far outside the clip: still the frame being rendered, never a failure.
    host.set_param("offset_frames", 100).unwrap();
    let r = host.render(&Render::at(3.0)).unwrap();
    assert_eq!(r.image.get(1, 1, 2), frames[3].get(1, 1, 2));
    assert_eq!(host.live_images().unwrap(), 0);
    host.quit().unwrap();
}

#[test]
fn clips_without_a_frame_range_and_effects_without_a_project() {
    let frames = numbered_frames(5);
    let mut exact = tester_host(&frames);
    exact.set_param("report", true).unwrap();
    exact.render(&Render::at(4.0)).unwrap();
    let rep = reports(&mut exact);
    assert!(
        rep[0].ends_with(" range=0..4 duration=5 hidden_gain=1 project=8x6 fps=24 timeline=0..4"),
        "{rep:?}"
    );
    exact.quit().unwrap();

    let mut host = tester_host_configured(json!({"clip_frame_range": false}), &frames);
    let prefs = host.request(json!({"cmd": "clip_preferences"})).unwrap();
    assert!(prefs["clips"]["Source"]["frame_range"].is_null(), "{prefs}");
    assert!(prefs["clips"]["Output"]["frame_range"].is_null(), "{prefs}");
    host.set_param("report", true).unwrap();
    let r = host.render(&Render::at(4.0)).unwrap();
    assert_eq!(r.image.get(0, 0, 0), frames[4].get(0, 0, 0));
    let rep = reports(&mut host);
    assert!(rep[0].contains(" range=absent duration=5 "), "{rep:?}");
    host.quit().unwrap();

    // MLT 7.42 sets the project and the effect's duration on another property set than the one
    // its getPropertySet hands over, and its timeline suite answers kOfxStatErrUnsupported: the
    // effect knows the time it renders and nothing of the clip's length.
    let mut host = tester_host_configured(
        json!({"clip_frame_range": false, "project_props": false, "timeline_bounds": false}),
        &frames,
    );
    host.set_param("report", true).unwrap();
    let r = host.render(&Render::at(4.0)).unwrap();
    assert_eq!(r.image.get(0, 0, 0), frames[4].get(0, 0, 0));
    let rep = reports(&mut host);
    assert!(
        rep[0].ends_with(
            " range=absent duration=-1 hidden_gain=1 project=-1x-1 fps=-1 timeline=unsupported"
        ),
        "{rep:?}"
    );
    host.quit().unwrap();
}

#[test]
fn secret_params_are_hidden_like_mlt_hides_them() {
    let frames = numbered_frames(1);
    // A host that shows them: the secret param takes a value like any other.
    let mut shown = tester_host(&frames);
    shown.set_param("hidden_gain", 0.5).unwrap();
    let r = shown.render(&Render::at(0.0)).unwrap();
    assert!((r.image.get(2, 2, 1) - 0.5 * frames[0].get(2, 2, 1)).abs() < 1e-6);
    shown.quit().unwrap();

    let mut host = Host::spawn_test_plugins().unwrap();
    host.configure(json!({"secret_params": "hidden"})).unwrap();
    host.load().unwrap();
    host.set_source(&frames).unwrap();
    let c = host
        .create_instance_raw(json!({"plugin": TESTER_ID, "context": FILTER,
            "params": {"hidden_gain": 0.5, "gain": 0.25}}))
        .unwrap();
    assert_eq!(c["ignored_params"], json!(["hidden_gain"]), "{c}");
    let names = c["params"].as_array().unwrap();
    assert!(names.iter().all(|n| n != "hidden_gain") && names.iter().any(|n| n == "gain"));
    let listed = host.params().unwrap();
    assert!(listed["values"].get("hidden_gain").is_none(), "{listed}");
    assert!(host.set_param("hidden_gain", 0.5).is_err());
    assert!(host.get_param("hidden_gain").is_err());
    // Only the visible gain applies.
    let r = host.render(&Render::at(0.0)).unwrap();
    assert!((r.image.get(2, 2, 1) - 0.25 * frames[0].get(2, 2, 1)).abs() < 1e-6);
    host.quit().unwrap();
}

#[test]
fn frame_threaded_renders_make_an_instance_per_frame() {
    let frames = numbered_frames(6);
    let mut host = tester_host_configured(json!({"frame_threaded": true}), &frames);
    host.set_param("gain", 0.5).unwrap();
    host.set_param("report", true).unwrap();
    host.request(json!({"cmd": "events", "clear": true}))
        .unwrap();
    let times: Vec<f64> = (0..6).map(f64::from).collect();
    let out = host.render_many(&Render::times(&times, 3)).unwrap();
    let mut tags = std::collections::BTreeSet::new();
    for (i, r) in out.iter().enumerate() {
        // The project's values reached every fresh instance.
        assert!((r.image.get(1, 1, 0) - 0.5 * frames[i].get(1, 1, 0)).abs() < 1e-6);
        assert_eq!(r.response["begin_status"], "kOfxStatReplyDefault");
        tags.insert(r.response["frame_instance"].as_str().unwrap().to_owned());
    }
    assert_eq!(tags.len(), 6, "one instance per frame: {tags:?}");
    let ev = host.events().unwrap();
    let log = ev["log"].as_array().unwrap();
    let count = |action: &str| {
        log.iter()
            .filter(|e| e["action"] == action && e.get("frame_instance").is_some())
            .count()
    };
    assert_eq!(count("OfxActionCreateInstance"), 6, "{ev}");
    assert_eq!(count("OfxActionDestroyInstance"), 6, "{ev}");
    assert_eq!(count("OfxImageEffectActionRender"), 6, "{ev}");
    assert_eq!(count("OfxImageEffectActionBeginSequenceRender"), 6, "{ev}");
    assert_eq!(
        count("OfxActionInstanceChanged"),
        0,
        "values are set, not notified"
    );
    // Each begin sequence covers its one frame.
    let rep = reports(&mut host);
    assert_eq!(rep.len(), 6, "{rep:?}");
    assert!(host.messages().unwrap().persistent.is_none());
    assert_eq!(host.live_images().unwrap(), 0);
    host.quit().unwrap();
}

#[test]
fn mlt_preset_renders_in_order_like_melt() {
    let frames = numbered_frames(4);
    let mut host = Host::spawn_test_plugins().unwrap();
    let c = host.behave_like_mlt().unwrap();
    assert_json(
        &json!([
            c["temporal_clip_access"],
            c["clip_fetch"],
            c["clip_frame_range"],
            c["secret_params"],
            c["frame_threaded"],
            c["project_props"],
            c["timeline_bounds"]
        ]),
        &json!([false, "current_frame", false, "hidden", true, false, false]),
    );
    host.load().unwrap();
    host.set_source(&frames).unwrap();
    host.create_instance(TESTER_ID, FILTER).unwrap();
    host.set_param("report", true).unwrap();
    host.set_param("offset_frames", -1).unwrap();
    for (t, f) in frames.iter().enumerate() {
        let r = host.render(&Render::at(t as f64)).unwrap();
        assert_eq!(r.image.get(5, 3, 1), f.get(5, 3, 1), "frame {t}");
    }
    let rep = reports(&mut host);
    assert_eq!(rep.len(), 4);
    assert!(
        rep[3].starts_with("render t=3 asked=2 got=Source@3@")
            && rep[3].ends_with(
                " range=absent duration=-1 hidden_gain=1 project=-1x-1 fps=-1 timeline=unsupported"
            ),
        "{rep:?}"
    );
    host.quit().unwrap();
}

#[test]
fn opengl_overlay_without_a_draw_suite_draws_in_a_mesa_context() {
    let frames = vec![pattern(64, 48, Components::Rgba, Depth::Byte, 0)];
    let mut host = tester_host_configured(json!({"overlay_draw": "opengl"}), &frames);
    let suites = host.suites().unwrap();
    assert!(
        suites
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["suite"] == "OfxDrawSuite" && s["provided"] == false),
        "{suites}"
    );
    host.set_param("point", json!([20.0, 10.0])).unwrap();
    host.set_param("size", json!([6, 6])).unwrap();
    host.set_param("colour", json!([0.0, 1.0, 0.0, 1.0]))
        .unwrap();
    let (v, img) = host.draw_opengl(0.0).unwrap();
    assert_eq!(v["status"], "kOfxStatOK", "{v}");
    assert_json(&v["viewport_size"], &json!([64, 48]));
    assert_json(&v["stack_depths"], &json!([1, 1, 0]));
    assert_eq!(v["gl_error"], 0);
    assert_eq!((img.width, img.height), (64, 48));
    assert_eq!(v["overlay_entry"], "V1", "an OpenGL host knows only V1");
    // The filled square covers canonical 17..23 x 7..13.
    for (x, y) in [(20, 10), (18, 8), (22, 12)] {
        assert_eq!(
            [img.get(x, y, 0), img.get(x, y, 1), img.get(x, y, 3)],
            [0.0, 1.0, 1.0],
            "({x}, {y})"
        );
    }
    assert_eq!(img.get(40, 30, 3), 0.0, "nothing drawn elsewhere");
    let drawn = v["drawn_pixels"].as_f64().unwrap();
    assert!((36.0..=36.0 + 4.0 * 11.0).contains(&drawn), "{v}");

    // At pixel scale 2 (a viewer zoomed out) the same square is 3 pixels wide at (10, 5).
    host.request(json!({"cmd": "draw", "pixel_scale": [2.0, 2.0]}))
        .unwrap();
    let (v, img) = host.draw_opengl(0.0).unwrap();
    assert_json(&v["viewport_size"], &json!([32, 24]));
    assert_eq!(img.get(10, 5, 1), 1.0);
    assert_eq!(img.get(20, 15, 3), 0.0);
    host.quit().unwrap();
}
