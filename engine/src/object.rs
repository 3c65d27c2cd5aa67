//! The object a masklet follows, as every layer names it: a script, a trace, a session, a host's
//! object slot. Its own file because every one of those layers needs it and none of them owns it.

use serde::{Deserialize, Serialize};

/// An object id as the caller chooses it (any non-negative integer; the official `obj_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjectId(pub u64);

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
