//! The plug-in's track cache in the OpenFX test host (tests/host/): Track Whole Clip Into Cache
//! in one host process, then other host processes — render nodes — render frame ranges from the
//! cache alone (no ONNX Runtime in them), byte for byte what one process renders and what the CLI
//! tracks; the exported script tracked by the CLI gives a cache the effect renders from; a cache
//! that goes stale, is damaged, truncated or replaced between the frames of a render is a
//! persistent message, never a crash and never a matte of other prompts or pixels.
//!
//! Mattes are 8-bit "Matte only" renders of the fixture clips (hard mattes: 0 or 255), top row
//! first, as in tests/plugin.rs.

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

use std::path::{Path, PathBuf};
use std::process::Command;

use driver::{FILTER, Host, Image, Render, SAM2_PLUGIN_ID};
use serde_json::{Value, json};
use support::{Click, Frame};

const MATTE_ONLY: i64 = 1;

/// ONNX Runtime where there is none: a render node that needed the model would say so.
const NO_RUNTIME: &str = "/nonexistent/libonnxruntime.so";

/// A host (this environment; the test log file) with a "Matte only" instance over `frames`,
/// given `script`'s prompts and `cache` as its Track Cache File.
fn effect(frames: &[Frame], script: &str, cache: &Path, env: &[(&str, &str)]) -> Host {
    effect_in_host(Value::Null, frames, script, cache, env)
}

/// [`effect`] in a host configured as `config` says (the driver's `configure`; null: as it
/// starts) before it loads the plug-in.
fn effect_in_host(
    config: Value,
    frames: &[Frame],
    script: &str,
    cache: &Path,
    env: &[(&str, &str)],
) -> Host {
    let log = support::test_log_file();
    let mut vars = vec![("SAM2_ROTOSCOPE_LOG_FILE", log.to_str().unwrap())];
    vars.extend_from_slice(env);
    let mut host = support::spawn_with_env(&support::setup().bundle_dir, &vars);
    if !config.is_null() {
        host.configure(config).unwrap();
    }
    let report = host.load().unwrap();
    assert!(
        report.plugin(SAM2_PLUGIN_ID).is_some_and(|p| p.ok),
        "{}",
        report.raw
    );
    host.set_source(&support::images(frames)).unwrap();
    host.create_instance(SAM2_PLUGIN_ID, FILTER).unwrap();
    host.set_param("outputMode", MATTE_ONLY).unwrap();
    for (slot, doc) in support::script_prompt_params(script) {
        host.set_param(&format!("object{slot}Prompts"), doc.as_str())
            .unwrap();
    }
    host.set_param("trackCacheFile", cache.to_str().unwrap())
        .unwrap();
    host
}

/// A render node: [`effect`] with no ONNX Runtime to be found.
fn render_node(frames: &[Frame], script: &str, cache: &Path) -> Host {
    effect(frames, script, cache, &[("SAM2_ORT_DYLIB", NO_RUNTIME)])
}

fn press(host: &mut Host, button: &str, time: f64) -> Value {
    let r = host
        .request(json!({"cmd": "set_param", "name": button, "time": time}))
        .unwrap();
    assert_eq!(r["status"], "kOfxStatOK", "{button}: {r}");
    r
}

fn render(host: &mut Host, frame: usize) -> Image {
    host.render(&Render::at(frame as f64)).unwrap().image
}

fn alpha(host: &mut Host, frame: usize) -> Vec<u8> {
    support::channel_top_down(&render(host, frame), 3)
}

/// The persistent message's kind and text (`None`: no message).
fn message(host: &mut Host) -> Option<(String, String)> {
    host.messages()
        .unwrap()
        .persistent
        .map(|p| (p.kind.clone(), p.text.clone()))
}

/// Whether the host process has ONNX Runtime mapped.
fn has_onnx_runtime(host: &Host) -> bool {
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", support::host_pid(host))).unwrap();
    maps.contains("onnxruntime")
}

/// Tracks the clip into `cache` with the effect (Track Whole Clip Into Cache); the host after.
fn track_into_cache(frames: &[Frame], script: &str, cache: &Path) -> Host {
    let mut host = effect(frames, script, cache, &[]);
    press(&mut host, "trackIntoCache", 0.0);
    assert_eq!(
        message(&mut host),
        None,
        "tracking into {}",
        cache.display()
    );
    assert!(cache.is_file(), "{} was not written", cache.display());
    host
}

/// A clip tracked into a cache file by an effect: what the tests below render it against.
struct Tracked {
    frames: Vec<Frame>,
    /// Holds the cache file (removed when the test ends).
    dir: tempfile::TempDir,
    cache: PathBuf,
    /// Every frame's alpha as the effect that tracked the clip renders it.
    reference: Vec<Vec<u8>>,
    /// That effect's host, still open.
    artist: Host,
}

/// `clip` tracked with `script` into `<tmp>/file` ([`track_into_cache`]), every frame rendered.
fn tracked(clip: &str, script: &str, file: &str) -> Tracked {
    let frames = support::clip(clip);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join(file);
    let mut artist = track_into_cache(&frames, script, &cache);
    let reference = (0..frames.len()).map(|f| alpha(&mut artist, f)).collect();
    Tracked {
        frames,
        dir,
        cache,
        reference,
        artist,
    }
}

#[test]
fn four_processes_render_disjoint_ranges_from_one_cache_byte_for_byte_without_onnx_runtime() {
    let frames = support::clip("crossing");
    let n = frames.len();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("crossing.sam2track");
    let mut tracker = track_into_cache(&frames, "two_objects", &cache);
    let script = PathBuf::from(format!("{}.script.json", cache.display()));
    assert!(script.is_file(), "the script is written beside the cache");
    let status = tracker.get_param("status").unwrap();
    assert!(
        status
            .as_str()
            .unwrap()
            .contains("track cache crossing.sam2track"),
        "{status}"
    );

    // One process renders every frame from the cache: the CLI's mattes of the same script.
    let cli = support::cli_mattes("two_objects");
    let single: Vec<Vec<u8>> = (0..n).map(|f| alpha(&mut tracker, f)).collect();
    for (f, matte) in single.iter().enumerate() {
        let (k, first) = support::differences(matte, &cli.union(f), cli.width);
        assert_eq!(
            k, 0,
            "frame {f}: the cache's matte differs from the CLI's: {first:?}"
        );
        assert!(matte.contains(&255), "frame {f} has an empty matte");
    }
    assert_eq!(message(&mut tracker), None);
    tracker.quit().unwrap();

    // Four render nodes at once, each its own host process with its own range.
    let ranges: Vec<std::ops::Range<usize>> = (0..4).map(|i| i * n / 4..(i + 1) * n / 4).collect();
    let nodes: Vec<_> = ranges
        .iter()
        .cloned()
        .map(|range| {
            let frames = frames.clone();
            let cache = cache.clone();
            std::thread::spawn(move || {
                let mut node = render_node(&frames, "two_objects", &cache);
                let mattes: Vec<(usize, Vec<u8>)> =
                    range.map(|f| (f, alpha(&mut node, f))).collect();
                let shown = message(&mut node);
                let runtime = has_onnx_runtime(&node);
                node.quit().unwrap();
                (mattes, shown, runtime)
            })
        })
        .collect();
    let mut rendered = 0;
    for (i, node) in nodes.into_iter().enumerate() {
        let (mattes, shown, runtime) = node.join().unwrap();
        assert_eq!(shown, None, "render node {i}");
        assert!(!runtime, "render node {i} loaded ONNX Runtime");
        for (f, matte) in mattes {
            assert!(
                matte == single[f],
                "render node {i}, frame {f}: not the single process's matte"
            );
            rendered += 1;
        }
    }
    assert_eq!(rendered, n);
}

#[test]
fn the_exported_script_tracked_by_the_cli_gives_a_cache_the_effect_renders_from() {
    let frames = support::clip("shapes");
    let n = frames.len();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("shot.sam2track");
    // The artist's machine: the effect exports its prompts; no tracking there.
    let mut artist = effect(&frames, "one_click", &cache, &[]);
    press(&mut artist, "exportScript", 0.0);
    assert_eq!(message(&mut artist), None);
    assert!(!cache.exists(), "exporting does not track");
    artist.quit().unwrap();
    let script = dir.path().join("shot.sam2track.script.json");
    // The farm's tracking task: the CLI on the clip's files.
    let out = Command::new(&support::setup().cli)
        .arg("track")
        .arg("--model")
        .arg(support::fixtures().join("models/test"))
        .arg("--script")
        .arg(&script)
        .arg("--clip")
        .arg(support::fixtures().join("clips/shapes"))
        .arg("--cache")
        .arg(&cache)
        .arg("--out")
        .arg(dir.path().join("cli-mattes"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A render task: the effect, from the CLI's cache alone, the CLI's mattes.
    let cli = support::cli_mattes("one_click");
    let mut node = render_node(&frames, "one_click", &cache);
    for f in 0..n {
        let matte = alpha(&mut node, f);
        let (k, first) = support::differences(&matte, &cli.union(f), cli.width);
        assert_eq!(k, 0, "frame {f}: {first:?}");
    }
    assert_eq!(message(&mut node), None);
    assert!(!has_onnx_runtime(&node));
    node.quit().unwrap();
}

/// Asserts that the last render showed the source (no matte) with a message of `kind` saying
/// `says`.
#[track_caller]
fn refused(host: &mut Host, frame: usize, frames: &[Frame], kind: &str, says: &str) {
    let out = render(host, frame);
    support::shows_source(&out, &frames[frame])
        .unwrap_or_else(|e| panic!("frame {frame} should show the source after \"{says}\": {e}"));
    let (k, text) = message(host).unwrap_or_else(|| panic!("no message about \"{says}\""));
    assert_eq!(k, kind, "{text}");
    assert!(text.contains(says), "\"{says}\" not in: {text}");
}

/// (payload offset, payload length) of every block record (docs/formats.md, "Track cache":
/// signature and version, then records of tag, length, checksum and payload; tag 2 a block).
fn blocks(cache: &[u8]) -> Vec<(usize, usize)> {
    let u32_at = |at: usize| u32::from_le_bytes(cache[at..at + 4].try_into().unwrap()) as usize;
    let mut found = Vec::new();
    let mut at = 12;
    while at + 12 <= cache.len() {
        let (tag, len) = (u32_at(at), u32_at(at + 4));
        if tag == 2 {
            found.push((at + 12, len));
        }
        at += 12 + len;
    }
    assert!(!found.is_empty(), "no blocks in the cache");
    found
}

#[test]
fn a_cache_gone_stale_damaged_truncated_or_replaced_between_frames_is_a_message_never_a_crash() {
    let Tracked {
        frames,
        dir,
        cache,
        reference,
        mut artist,
    } = tracked("shapes", "one_click", "shot.sam2track");
    let n = frames.len();
    let original = std::fs::read(&cache).unwrap();

    // A render node that tracks nothing on its own (Track On Render 0): a frame the cache does
    // not give shows the source, so nothing but the cache could put a matte there.
    let mut node = effect(&frames, "one_click", &cache, &[]);
    node.set_param("trackOnRender", 0).unwrap();
    let late = n - 2;
    for f in [late, 1] {
        assert_eq!(alpha(&mut node, f), reference[f], "frame {f}, intact");
    }
    assert_eq!(message(&mut node), None);

    // Damaged in place, between two frames of the node's render: a byte of every block's data.
    let mut bytes = original.clone();
    for (offset, len) in blocks(&original) {
        bytes[offset + len / 2] ^= 0x5a;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cache)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
        .unwrap();
    refused(&mut node, late, &frames, "OfxMessageError", "is damaged");
    refused(
        &mut node,
        late - 1,
        &frames,
        "OfxMessageError",
        "is damaged",
    );

    // Repaired (the same bytes again): the cache's mattes again, no message.
    std::fs::write(&cache, &original).unwrap();
    assert_eq!(alpha(&mut node, late), reference[late]);
    assert_eq!(message(&mut node), None);

    // Truncated under the open reader.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cache)
        .unwrap()
        .set_len(original.len() as u64 / 2)
        .unwrap();
    refused(&mut node, late, &frames, "OfxMessageError", "truncated");
    // Reopened, a half cache has a torn tail and no commit: nothing finished to render.
    refused(
        &mut node,
        late,
        &frames,
        "OfxMessageError",
        "no finished tracking",
    );

    // Replaced by something that is not a cache.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not a track cache at all").unwrap();
    std::fs::rename(&junk, &cache).unwrap();
    refused(
        &mut node,
        late,
        &frames,
        "OfxMessageError",
        "is not a track cache",
    );

    // Replaced by the cache again (a new file): used again.
    let copy = dir.path().join("copy");
    std::fs::write(&copy, &original).unwrap();
    std::fs::rename(&copy, &cache).unwrap();
    for f in [late, 2] {
        assert_eq!(
            alpha(&mut node, f),
            reference[f],
            "frame {f}, replaced by the cache"
        );
    }
    assert_eq!(message(&mut node), None);

    // The artist adds a click: the cache is stale for everyone with the new prompts. The artist
    // sees the live session (the click is on frame 0; later frames track on render), the warning
    // says why the cache is not used.
    let clicked: Vec<Click> = vec![([70.0, 90.0], 1), ([20.0, 20.0], 0)];
    let doc = support::prompts_doc(&[(0, None, clicked.as_slice())]);
    artist.set_param("object1Prompts", doc.as_str()).unwrap();
    node.set_param("object1Prompts", doc.as_str()).unwrap();
    refused(
        &mut node,
        late,
        &frames,
        "OfxMessageWarning",
        "the prompts changed",
    );
    render(&mut artist, 1);
    let (kind, text) = message(&mut artist).expect("a warning");
    assert_eq!(kind, "OfxMessageWarning", "{text}");
    assert!(
        text.contains("is out of date: the prompts changed"),
        "{text}"
    );
    // Tracking again replaces the cache; the node's open reader notices and uses the new one.
    press(&mut artist, "trackIntoCache", 0.0);
    assert_eq!(message(&mut artist), None);
    let updated: Vec<Vec<u8>> = (0..n).map(|f| alpha(&mut artist, f)).collect();
    assert_eq!(message(&mut artist), None);
    for f in [late, 1] {
        assert_eq!(alpha(&mut node, f), updated[f], "frame {f}, tracked again");
    }
    assert_eq!(message(&mut node), None);
    // A source frame that changed is not matted from the cache.
    let mut edited = frames.clone();
    for v in &mut edited[late].rgb[..300] {
        *v = 255 - *v;
    }
    node.set_source(&support::images(&edited)).unwrap();
    refused(
        &mut node,
        late,
        &edited,
        "OfxMessageWarning",
        "the source frames changed",
    );
    assert_eq!(
        alpha(&mut node, 1),
        updated[1],
        "the other frames still are"
    );

    // Nothing crashed, nothing leaked.
    assert_eq!(node.live_images().unwrap(), 0);
    assert_eq!(artist.live_images().unwrap(), 0);
    node.quit().unwrap();
    artist.quit().unwrap();
}

#[test]
fn an_mlt_host_renders_any_frame_from_the_cache_with_an_instance_per_frame() {
    // MLT: a fresh instance per frame, no temporal clip access, no clip length. Live, it can
    // only track in order from the first prompted frame (and needs Clip Length for a clip under
    // 16 frames); from the cache any frame renders, in any order and on several threads at once,
    // with no ONNX Runtime.
    let Tracked {
        frames,
        dir: _dir,
        cache,
        reference,
        artist,
    } = tracked("crossing", "two_objects", "crossing.sam2track");
    let n = frames.len();
    artist.quit().unwrap();

    let mut host = effect_in_host(
        json!({"mlt": true}),
        &frames,
        "two_objects",
        &cache,
        &[("SAM2_ORT_DYLIB", NO_RUNTIME)],
    );
    // No Clip Length needed: the cache knows the clip's length.
    let times: Vec<f64> = (0..n).rev().map(|f| f as f64).collect();
    let rendered = host.render_many(&Render::times(&times, 3)).unwrap();
    assert_eq!(rendered.len(), n);
    for (r, &t) in rendered.iter().zip(&times) {
        let f = t as usize;
        assert_eq!(
            support::channel_top_down(&r.image, 3),
            reference[f],
            "frame {f}, rendered by a fresh instance"
        );
        assert!(
            r.response["persistent"].is_null(),
            "frame {f}: {}",
            r.response
        );
    }
    assert!(!has_onnx_runtime(&host));
    host.quit().unwrap();
}

#[test]
fn a_cache_damaged_truncated_and_replaced_while_frames_render_on_two_threads_never_crashes() {
    // The file changes under a running render of many frames (the test host renders them in
    // the background on two threads): every frame is the cache's matte or the source (Track On
    // Render 0: nothing else could matte it), every render answers OK, and once the cache is
    // back the frames are the cache's again with no message.
    let Tracked {
        frames,
        dir,
        cache,
        reference,
        artist,
    } = tracked("shapes", "one_click", "shot.sam2track");
    let n = frames.len();
    artist.quit().unwrap();
    let original = std::fs::read(&cache).unwrap();
    let mut damaged = original.clone();
    for (offset, len) in blocks(&original) {
        damaged[offset + len / 2] ^= 0x5a;
    }

    let mut node = effect(&frames, "one_click", &cache, &[]);
    node.set_param("trackOnRender", 0).unwrap();
    let times: Vec<f64> = (0..8 * n).map(|i| (i % n) as f64).collect();
    let outs: Vec<PathBuf> = (0..times.len())
        .map(|i| dir.path().join(format!("out-{i}.ofxr")))
        .collect();
    let job = node
        .request(json!({
            "cmd": "render", "times": times, "threads": 2, "async": true,
            "outs": outs.iter().map(|p| p.to_string_lossy().into_owned()).collect::<Vec<_>>(),
        }))
        .unwrap()["job"]
        .as_i64()
        .unwrap();
    let replace = |bytes: &[u8], name: &str| {
        let staged = dir.path().join(name);
        std::fs::write(&staged, bytes).unwrap();
        std::fs::rename(&staged, &cache).unwrap();
    };
    let pause = || std::thread::sleep(std::time::Duration::from_millis(40));
    for round in 0..6 {
        pause();
        std::fs::write(&cache, &damaged).unwrap();
        pause();
        std::fs::write(&cache, &original).unwrap();
        pause();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&cache)
            .unwrap()
            .set_len(original.len() as u64 / 3)
            .unwrap();
        pause();
        replace(b"junk", &format!("junk-{round}"));
        pause();
        replace(&original, &format!("cache-{round}"));
    }
    let answer = node.wait(job).unwrap();
    let renders = answer["renders"].as_array().unwrap();
    assert_eq!(renders.len(), times.len(), "{answer}");
    let (mut matted, mut passed) = (0, 0);
    for ((r, out), &t) in renders.iter().zip(&outs).zip(&times) {
        let f = t as usize;
        assert_eq!(r["status"], "kOfxStatOK", "frame {f}: {r}");
        let image = Image::read(out).unwrap();
        if support::channel_top_down(&image, 3) == reference[f] {
            matted += 1;
        } else {
            support::shows_source(&image, &frames[f]).unwrap_or_else(|e| {
                panic!("frame {f}: neither the cache's matte nor the source: {e}")
            });
            passed += 1;
        }
    }
    eprintln!("while the cache changed: {matted} frames matted, {passed} passed through");
    for f in [n - 1, 1] {
        assert_eq!(alpha(&mut node, f), reference[f], "frame {f} after");
    }
    assert_eq!(message(&mut node), None);
    assert_eq!(node.live_images().unwrap(), 0);
    node.quit().unwrap();
}
