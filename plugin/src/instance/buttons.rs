//! The buttons and what follows a parameter change: Track (with the host's progress bar), Clear
//! Track After, Clear Frame, Clear All, prompt edits as undoable steps, and the status line.

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
use crate::params::{self, Id, Values};
use crate::prompts::{ObjectPrompts, PromptEdit};
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
        let (mut info, mut failures) = self.prepare(tracker, values, objects)?;
        if tracker.has_proxy_frames()? {
            // Track at full quality: frames a proxy render encoded are not reused.
            tracker.drop_session()?;
            (info, failures) = self.prepare(tracker, values, objects)?;
        }
        let frame = time.round() as i64;
        let index = info.index(frame).ok_or(PluginError::OutsideClip {
            frame,
            first: info.first_frame,
            last: info.last_frame(),
        })?;
        let progress = Progress::start(self.effect, "SAM 2 Rotoscope: tracking");
        let outcome = tracker.track(index, direction, &mut |done, total| {
            if progress.update(done as f64 / total.max(1) as f64) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })?;
        if outcome.cancelled {
            log::info!("tracking cancelled after {} frames", outcome.frames);
        }
        Ok(failures)
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
