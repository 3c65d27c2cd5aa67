//! The buttons and what follows a parameter change: Track (with the host's progress bar), Clear
//! Track After, Clear Frame, Clear All, Track Whole Clip Into Cache and Export Tracking Script,
//! prompt edits as undoable steps, and the status line.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use openfx::sys::generic::core::{
    OfxStatus, kOfxPropName, kOfxPropType, kOfxStatFailed, kOfxStatOK, kOfxStatReplyDefault,
};
use openfx::sys::image_effect_v1::param::kOfxTypeParameter;
use parking_lot::MutexGuard;

use super::{Instance, required_time};
use crate::error::{PluginError, Result};
use crate::ffi::messages::Severity;
use crate::ffi::progress::Progress;
use crate::ffi::props::PropSet;
use crate::host_source::{Access, CheckedSource, HostSource};
use crate::params::{self, Id, Values};
use crate::prompts::{ObjectPrompts, PromptEdit};
use crate::track_cache;
use crate::tracker::{TrackDirection, Tracker};

/// How long a button waits for a render of this instance to finish.
const BUTTON_WAIT: Duration = Duration::from_secs(20);

/// Holds a flag raised for as long as it lives.
struct Flag<'a>(&'a AtomicBool);

impl<'a> Flag<'a> {
    /// Raises the flag, unless it is up already (then `None`: someone else holds it).
    fn raise(flag: &'a AtomicBool) -> Option<Flag<'a>> {
        (!flag.swap(true, Ordering::SeqCst)).then_some(Flag(flag))
    }
}

impl Drop for Flag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Instance {
    /// The tracker for a button: waits for a render to end, but never for a running Track
    /// (which may be what called us, through its progress bar).
    fn lock_for_button(&self) -> Option<MutexGuard<'_, Tracker>> {
        if self.tracking.load(Ordering::SeqCst) {
            self.tracker.try_lock()
        } else {
            self.tracker.try_lock_for(BUTTON_WAIT)
        }
    }

    /// The Track buttons.
    fn track(&self, time: f64, values: &Values, direction: TrackDirection) -> Result<()> {
        let (objects, mut warnings) = self.read_prompts(values)?;
        let result = if !crate::ffi::host::temporal_clip_access() {
            Err(PluginError::NoTemporalAccess)
        } else if let Some(_tracking) = Flag::raise(&self.tracking) {
            match self.tracker.try_lock_for(BUTTON_WAIT) {
                Some(mut tracker) => {
                    self.run_track(&mut tracker, values, &objects, time, direction)
                }
                None => Err(PluginError::RenderRunning),
            }
        } else {
            // Pressed again while the progress bar of a running Track let the host call us.
            return Ok(());
        };
        match result {
            Ok(mut failures) => {
                warnings.append(&mut failures);
                self.show((!warnings.is_empty()).then(|| (Severity::Warning, warnings.join(" "))));
            }
            Err(e) => self.show_error(&e),
        }
        self.bump_revision()?;
        self.refresh_status(values);
        Ok(())
    }

    /// Tracks with the host's progress bar (and its cancel button); returns sentences about
    /// objects left out.
    fn run_track(
        &self,
        tracker: &mut Tracker,
        values: &Values,
        objects: &BTreeMap<u32, ObjectPrompts>,
        time: f64,
        direction: TrackDirection,
    ) -> Result<Vec<String>> {
        let mut info = self.bind_session(tracker, values, objects)?;
        if tracker.has_proxy_frames()? {
            // Track at full quality: frames a proxy render encoded are not reused.
            tracker.drop_session()?;
            info = self.bind_session(tracker, values, objects)?;
        }
        let frame = time.round() as i64;
        let index = info.index(frame).ok_or(PluginError::OutsideClip {
            frame,
            first: info.first_frame,
            last: info.last_frame(),
        })?;
        let progress = Progress::start(self.effect, "SAM 2 Rotoscope: tracking");
        let (failed, outcome) =
            tracker.sync_and_track(objects, index, direction, &mut |done, total| {
                if progress.update(done as f64 / total.max(1) as f64) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            })?;
        if outcome.cancelled {
            log::info!("tracking cancelled after {} frames", outcome.frames);
        }
        Ok(super::left_out(values, failed))
    }

    /// The Track Cache File to write: the parameter's, else a new file in the user's cache folder,
    /// which then goes into the parameter (one per effect instance; saved with the project).
    fn cache_file_for_writing(&self, values: &Values) -> Result<std::path::PathBuf> {
        if let Some(path) = &values.track_cache {
            if path.is_relative() {
                return Err(PluginError::RelativeCachePath { path: path.clone() });
            }
            return Ok(path.clone());
        }
        let dir = track_cache::default_dir(|name| std::env::var_os(name))
            .ok_or(PluginError::NoCacheFolder)?;
        std::fs::create_dir_all(&dir).map_err(|e| PluginError::WriteFile {
            path: dir.clone(),
            message: e.to_string(),
        })?;
        let path = dir.join(track_cache::new_file_name());
        self.params.set.edit_begin("SAM 2: track cache file");
        self.params
            .get(Id::TrackCacheFile)?
            .set_string(&path.to_string_lossy());
        self.params.set.edit_end();
        Ok(path)
    }

    /// The prompts as the script that tracks the whole clip, and the clip; refuses a clip
    /// without prompts.
    fn whole_clip_script(
        &self,
        values: &Values,
    ) -> Result<(sam2_engine::Script, crate::tracker::ClipInfo)> {
        let (objects, _) = self.read_prompts(values)?;
        let clip = self.connected_source()?;
        let info = self.clip_info(clip, values)?;
        if info.length != crate::tracker::ClipLength::Known {
            return Err(PluginError::UnknownClipLength);
        }
        let script = track_cache::script(&objects, &info);
        if !track_cache::has_prompts(&script) {
            return Err(PluginError::NothingToTrack);
        }
        Ok((script, info))
    }

    /// Writes `script` beside the cache at `cache`; returns where.
    fn write_script(
        &self,
        script: &sam2_engine::Script,
        cache: &std::path::Path,
    ) -> Result<std::path::PathBuf> {
        let path = track_cache::script_path(cache);
        let text = track_cache::script_json(script)?;
        // Whole or not at all: a tracking task may read it at any moment.
        let staging = path.with_extension(format!("json.{}.tmp", std::process::id()));
        std::fs::write(&staging, text)
            .and_then(|()| std::fs::rename(&staging, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&staging);
                PluginError::WriteFile {
                    path: path.clone(),
                    message: e.to_string(),
                }
            })?;
        Ok(path)
    }

    /// Export Tracking Script.
    fn export_script(&self, values: &Values) -> Result<()> {
        let (script, _) = self.whole_clip_script(values)?;
        let cache = self.cache_file_for_writing(values)?;
        let path = self.write_script(&script, &cache)?;
        log::info!("exported the tracking script {}", path.display());
        Ok(())
    }

    /// Track Whole Clip Into Cache: the whole clip read once for its digests, then tracked from
    /// the prompts' script in a session of its own (what the CLI's `track` runs: the same
    /// results), its results written into the cache as they go (memory flat in the clip's
    /// length) and committed at the end — also when cancelled: the frames tracked so far render
    /// from the cache, the others from the live session.
    fn track_into_cache(&self, values: &Values) -> Result<()> {
        use sam2_engine::track_cache::{SourcePrint, is_track_cache, prompts_hash};
        if !crate::ffi::host::temporal_clip_access() {
            return Err(PluginError::NoTemporalAccess);
        }
        let (script, info) = self.whole_clip_script(values)?;
        let path = self.cache_file_for_writing(values)?;
        if path.exists() && !is_track_cache(&path) {
            return Err(PluginError::NotATrackCache { path });
        }
        let (model, _) = self.model(values)?;
        self.write_script(&script, &path)?;
        let clip = self.connected_source()?;
        let host = HostSource::new(clip, info, self.lent.clone(), Access::AnyFrame);
        let source = {
            let progress = Progress::start(self.effect, "SAM 2 Rotoscope: reading the clip");
            CheckedSource::read(host, &mut |done, total| {
                progress.update(done as f64 / total.max(1) as f64)
            })?
        };
        let Some(source) = source else {
            log::info!("tracking into the cache cancelled while reading the clip");
            return Ok(());
        };
        let print = SourcePrint {
            frames: source.digests().to_vec(),
            files: None,
        };
        let settings = sam2_engine::SessionSettings {
            frame_cache_bytes: values.cache_bytes,
            ..sam2_engine::SessionSettings::for_model(&model)
        };
        let mut session = sam2_engine::ClipSession::new(model, Box::new(source), settings)?;
        session.create_cache(&path, print.to_string(), prompts_hash(&script)?)?;
        let total = info.num_frames;
        let mut done = 0usize;
        let mut cancelled = false;
        {
            let progress = Progress::start(self.effect, "SAM 2 Rotoscope: tracking into the cache");
            sam2_engine::replay::run_script(
                &mut session,
                &script,
                |_, _| {
                    done += 1;
                    if progress.update(done as f64 / total.max(1) as f64) {
                        ControlFlow::Continue(())
                    } else {
                        cancelled = true;
                        ControlFlow::Break(())
                    }
                },
                // A cancelled propagation ends the script (run_script returns).
                |_| ControlFlow::Continue(()),
            )?;
        }
        session.commit_cache()?;
        log::info!(
            "tracked {done} frames into the track cache {}{}",
            path.display(),
            if cancelled { " (cancelled)" } else { "" }
        );
        Ok(())
    }

    /// A cache button: its work under the tracking flag (so that renders meanwhile do not wait),
    /// then its message, a revision bump and the status line.
    fn cache_button(
        &self,
        values: &Values,
        work: impl FnOnce(&Values) -> Result<()>,
    ) -> Result<()> {
        let Some(_tracking) = Flag::raise(&self.tracking) else {
            // Pressed again while a running button's progress bar let the host call us.
            return Ok(());
        };
        match work(values) {
            Ok(()) => self.show(None),
            Err(e) => self.show_error(&e),
        }
        self.bump_revision()?;
        self.refresh_status(values);
        Ok(())
    }

    /// Applies an edit to object `slot`'s prompts, as one undoable step.
    pub(crate) fn apply_edit(&self, slot: u32, edit: PromptEdit, values: &Values) -> Result<bool> {
        let Some(param) = self.params.object(slot).map(|o| o.prompts) else {
            return Ok(false);
        };
        let text = self.params.prompts_text(slot)?;
        let mut prompts = ObjectPrompts::parse(&text, &values.object_name(slot))?;
        if !prompts.apply(edit) {
            return Ok(false);
        }
        let label = match edit {
            PromptEdit::AddPoint { .. } => "SAM 2: add point",
            PromptEdit::RemovePoint { .. } => "SAM 2: remove point",
            PromptEdit::SetBox { .. } => "SAM 2: box",
            PromptEdit::ClearFrame { .. } => "SAM 2: clear frame",
        };
        self.params.set.edit_begin(label);
        let written = param.set_string(&prompts.to_json());
        self.params.set.edit_end();
        Ok(written)
    }

    /// Makes the host drop the frames it cached (their look changed without a visible parameter
    /// changing).
    fn bump_revision(&self) -> Result<()> {
        let revision = self.params.get(Id::Revision)?;
        let value = revision
            .int_at(0.0)
            .ok_or_else(|| PluginError::UnreadableParameter {
                name: "revision".into(),
            })?;
        revision.set_int(if value >= i32::MAX - 1 { 0 } else { value + 1 });
        Ok(())
    }

    /// The status line: model, frames tracked, cache. Skipped while the tracker is busy.
    fn refresh_status(&self, values: &Values) {
        let text = {
            let Some(mut tracker) = self.tracker.try_lock() else {
                return;
            };
            match tracker.status() {
                Ok(Some(s)) => {
                    let frames = match s.num_frames {
                        Some(n) => format!("{}/{n} frames tracked", s.ready_frames),
                        None => format!(
                            "{} frames tracked (clip length unknown: exact for clips of 16 frames or more; set Clip Length)",
                            s.ready_frames
                        ),
                    };
                    format!(
                        "{} ({}) · {} object{} · {frames} · cache {} of {} MiB · {} session{} in memory",
                        s.model,
                        values.device,
                        s.objects,
                        if s.objects == 1 { "" } else { "s" },
                        s.cache_bytes >> 20,
                        s.cache_budget >> 20,
                        s.sessions,
                        if s.sessions == 1 { "" } else { "s" },
                    )
                }
                Err(_) => return,
                _ => "No model loaded yet: it loads at the first render.".to_string(),
            }
        };
        let text = match &values.track_cache {
            Some(path) => format!(
                "{text} · {}",
                track_cache::status(&self.track_cache.lock(), path)
            ),
            None => text,
        };
        let Ok(status) = self.params.get(Id::Status) else {
            return;
        };
        if status.string().as_deref() != Some(text.as_str()) {
            status.set_string(&text);
        }
    }

    /// kOfxActionInstanceChanged: the buttons; a new source.
    pub fn instance_changed(&self, args: PropSet) -> OfxStatus {
        match self.changed(args) {
            Ok(status) => status,
            Err(e) => {
                self.show_error(&e);
                kOfxStatFailed
            }
        }
    }

    fn changed(&self, args: PropSet) -> Result<OfxStatus> {
        let missing = |property: &str| PluginError::MissingProperty {
            action: "instance changed",
            property: property.into(),
        };
        let kind = args
            .string(kOfxPropType, 0)
            .ok_or_else(|| missing("type"))?;
        // A clip change (hosts send it for reconnections, and some for much less) keeps the
        // session: a clip of another size or range gets a new one at the next render, and a
        // render finds changed pixels under an encoded frame by their fingerprint.
        if kind.as_bytes() != kOfxTypeParameter.to_bytes() {
            return Ok(kOfxStatReplyDefault);
        }
        let name = args
            .string(kOfxPropName, 0)
            .ok_or_else(|| missing("name"))?;
        let time = required_time(args, "instance changed")?;
        let Some(id) = params::find(&name) else {
            // An object's parameter: the status line follows (enabled, prompts).
            self.refresh_status(&self.params.values(time)?);
            return Ok(kOfxStatOK);
        };
        if matches!(id, Id::Status | Id::Revision) {
            return Ok(kOfxStatReplyDefault);
        }
        let values = self.params.values(time)?;
        match id {
            Id::TrackForward => self.track(time, &values, TrackDirection::Forward)?,
            Id::TrackBackward => self.track(time, &values, TrackDirection::Backward)?,
            Id::TrackBoth => self.track(time, &values, TrackDirection::Both)?,
            Id::TrackIntoCache => self.cache_button(&values, |v| self.track_into_cache(v))?,
            Id::ExportScript => self.cache_button(&values, |v| self.export_script(v))?,
            Id::ClearAfter => {
                match self.lock_for_button() {
                    Some(mut tracker) => {
                        if let Some(index) =
                            tracker.clip().and_then(|c| c.index(time.round() as i64))
                        {
                            tracker.clear_after(index)?;
                        }
                    }
                    None => self.show(Some((
                        Severity::Warning,
                        PluginError::RenderRunning.to_string(),
                    ))),
                }
                self.bump_revision()?;
                self.refresh_status(&values);
            }
            Id::ClearFrame => {
                let edit = PromptEdit::ClearFrame {
                    frame: time.round() as i64,
                };
                if let Err(e) = self.apply_edit(values.selected(), edit, &values) {
                    self.show_error(&e);
                }
            }
            Id::ClearAll => {
                self.params.set.edit_begin("SAM 2: clear all");
                for object in &self.params.objects {
                    object.prompts.set_string("");
                }
                self.params.set.edit_end();
                if let Some(mut tracker) = self.lock_for_button() {
                    tracker.reset()?;
                }
                self.bump_revision()?;
                self.refresh_status(&values);
            }
            _ => self.refresh_status(&values),
        }
        Ok(kOfxStatOK)
    }
}
