//! The host's progress bar with its cancel button, for the Track buttons.

use openfx::sys::generic::core::{kOfxStatOK, kOfxStatReplyNo};

use super::host::{self, ProgressSuite};
use super::images::Effect;
use super::props::c_string;

/// A running progress bar; ended when dropped.
#[derive(Debug)]
pub struct Progress {
    effect: Effect,
    suite: Option<ProgressSuite>,
}

impl Progress {
    /// Opens the host's progress bar labelled `label` (nothing happens on hosts without one).
    pub fn start(effect: Effect, label: &str) -> Progress {
        let label = c_string(label);
        let suite = host::suites().and_then(|s| s.progress).filter(|suite| {
            // SAFETY: a live effect handle and NUL-terminated strings (label, and V2's message id).
            let status = unsafe {
                match suite {
                    ProgressSuite::V2(s) => s.progressStart.map(|start| {
                        start(
                            effect.raw(),
                            label.as_ptr(),
                            c"com.sam2rotoscope.track".as_ptr(),
                        )
                    }),
                    ProgressSuite::V1(s) => s
                        .progressStart
                        .map(|start| start(effect.raw(), label.as_ptr())),
                }
            };
            status == Some(kOfxStatOK)
        });
        Progress { effect, suite }
    }

    /// Moves the bar to `fraction` (0–1); false when the artist pressed cancel.
    pub fn update(&self, fraction: f64) -> bool {
        let update = match self.suite {
            Some(ProgressSuite::V2(s)) => s.progressUpdate,
            Some(ProgressSuite::V1(s)) => s.progressUpdate,
            None => None,
        };
        let Some(update) = update else {
            return true;
        };
        // SAFETY: a live effect handle with a started progress bar.
        let status = unsafe { update(self.effect.raw(), fraction.clamp(0.0, 1.0)) };
        // kOfxStatReplyNo is the documented cancel; hosts that fail otherwise do not cancel.
        status != kOfxStatReplyNo
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        let end = match self.suite {
            Some(ProgressSuite::V2(s)) => s.progressEnd,
            Some(ProgressSuite::V1(s)) => s.progressEnd,
            None => None,
        };
        if let Some(end) = end {
            // SAFETY: a live effect handle whose progress bar was started by `start`.
            unsafe {
                end(self.effect.raw());
            }
        }
    }
}
