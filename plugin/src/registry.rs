//! One memory bank per clip, not per instance: a process-wide registry of tracking sessions,
//! shared by every instance of the effect and every render thread.
//!
//! **Why.** Hosts do not keep one effect instance per clip. MLT (Kdenlive, Shotcut) renders an
//! instance-safe effect frame-threaded: it creates an instance for a frame, renders it and
//! destroys it, so a memory bank held by the instance never sees two frames. Other hosts make
//! several instances of one node for their render threads, or recreate instances on project
//! load. What decides a matte is not the instance but the [`SessionKey`]: the model's files,
//! device and precision, the predictor settings, the source clip, and the prompts. Instances
//! that agree on it share one session; instances come and go without losing tracked frames.
//!
//! **Policy.** A session is reference counted by its users (a [`Lease`] each, held by an
//! instance). A session nobody uses is *not* released at once: the next frame's instance (MLT)
//! must find the memory bank its predecessor filled. It stays, as the first candidate for
//! eviction, until
//! - the sessions' bytes together exceed the budget (the Memory Budget): idle sessions go, least
//!   recently used first; sessions in use are never dropped from under their users, but are asked
//!   to [`Budgeted::trim`] (least recently used first) when idle ones were not enough;
//! - [`Registry::release_idle`] (kOfxActionPurgeCaches, kOfxActionUnload): every idle session goes.
//!
//! Each session reports its own bytes ([`Budgeted::bytes`]); the registry reads them after each use
//! ([`Lease::with`]) and when a lease ends. The budget is the whole process's; the last
//! [`Registry::set_budget`] wins (the instance that renders sets its Memory Budget).
//!
//! Locks: the registry's own lock is held only for bookkeeping and for creating a session (so two
//! instances never create the same session twice); a session's lock only while a user works with
//! it ([`Lease::with`]). The registry never waits for a session's lock (it `try_lock`s to trim), so
//! a long propagation never blocks another clip's instance. Evicted sessions are dropped after the
//! registry's lock is released.
//!
//! # Integration (as planned, done: tracker.rs holds the lease, `SESSIONS` is there)
//!
//! 1. `tracker.rs`: the session state (`Live`: `ClipSession`, applied prompts, cleared frames) becomes
//!    the registry's `T` (`TrackedClip`), implementing [`Budgeted`] with the frame cache's bytes plus
//!    the memory bank's (`ClipSession::frame_cache().bytes()` and the masklets), `trim` shrinking the
//!    frame cache. `Tracker` keeps a `Lease<SessionKey, TrackedClip>` instead of `Option<Live>`.
//! 2. A process-wide `static SESSIONS: Lazy<Registry<SessionKey, TrackedClip>>` (next to `MODELS` in
//!    `models.rs`, which already shares models the same way).
//! 3. `Tracker::ensure_session` builds the [`SessionKey`]: `ModelIdentity::of(model dir)`, the
//!    runtime's device, the manifest's precision, `PredictorKey` from the `SessionSettings`,
//!    `SourceKey` from the `ClipInfo` (a clip without a frame range takes the effect's duration; in
//!    MLT 7.42 the effect sees neither, and not the project size either: the length is `None`),
//!    `PromptsKey::of(&objects)` from the prompts in the params; then `SESSIONS.acquire(key, ||
//!    create)`, or `lease.rekey(key, ..)` when only the prompts changed: a sole user carries its
//!    session over and `sync` applies the difference, as today; a shared one starts its own.
//! 4. Source frames as fetched: the session records a fingerprint of each frame it encoded; a
//!    render whose fetched pixels differ from the recorded ones for that frame (a host that hands
//!    over another frame's pixels, MLT without temporal access) must not use the session's result
//!    for it: it says so (persistent message) and renders no matte. Without temporal access the
//!    tracker only moves forward from the frames the host renders, in order.
//! 5. kOfxActionPurgeCaches and kOfxActionUnload call `SESSIONS.release_idle()`; the Memory Budget
//!    param feeds `SESSIONS.set_budget` on each render.
//! 6. Tests: `tests/plugin.rs` in the test host's `frame_threaded` and `mlt` modes (PROTOCOL.md):
//!    rendering a fixture clip in order gives the CLI's mattes.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use sam2_engine::Model;
use sam2_engine::model::Device;
use sam2_engine::model::Precision as GraphSetPrecision;
use sam2_engine::model::manifest::Precision as ManifestPrecision;

/// What a session's memory is worth to the registry.
pub trait Budgeted {
    /// Bytes the session holds now (encoded frames, memory bank, masks).
    fn bytes(&self) -> usize;

    /// Gives memory back, down to about `target` bytes, while the session stays in use (e.g. drops
    /// encoded frames it can recompute). The default has nothing to give.
    fn trim(&mut self, target: usize) {
        let _ = target;
    }
}

/// The model's numeric precision, hashable for the key: the exact graphs at the manifest's
/// precision, or the fast set (the Precision parameter), whose results differ from exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    Fp32,
    Fp16,
    Fast,
}

impl Precision {
    /// The precision `model` was loaded at.
    pub fn of(model: &Model) -> Precision {
        match model.precision() {
            GraphSetPrecision::Exact => Precision::from(model.manifest().precision),
            GraphSetPrecision::Fast => Precision::Fast,
        }
    }
}

impl From<ManifestPrecision> for Precision {
    fn from(p: ManifestPrecision) -> Self {
        match p {
            ManifestPrecision::Fp32 => Precision::Fp32,
            ManifestPrecision::Fp16 => Precision::Fp16,
        }
    }
}

/// Which model files: the directory and a fingerprint of what is in it, so that a model replaced
/// on disk under the same name is another model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelIdentity {
    pub dir: PathBuf,
    pub files: u64,
}

impl ModelIdentity {
    /// The identity of the model in `dir`: names, sizes and modification times of its files (not
    /// their bytes: hashing gigabytes of weights per instance would cost seconds).
    pub fn of(dir: &Path) -> std::io::Result<ModelIdentity> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_file() {
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos());
                entries.push((entry.file_name(), meta.len(), modified));
            }
        }
        entries.sort();
        let mut h = DefaultHasher::new();
        entries.hash(&mut h);
        Ok(ModelIdentity {
            dir: dir.to_path_buf(),
            files: h.finish(),
        })
    }
}

/// The predictor settings that change results (`sam2_engine::SessionSettings` minus the cache
/// budget, which changes only speed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PredictorKey {
    pub add_all_frames_to_correct_as_cond: bool,
    pub fill_hole_area: u32,
    pub keep_all_memories: bool,
}

/// The source clip as the session sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceKey {
    /// Host frame number of clip index 0.
    pub first_frame: i64,
    /// Frames in the clip: its frame range, else the effect's duration, else unknown (`None`): MLT
    /// 7.42 shows an effect neither (see tests/host/PROTOCOL.md, `project_props`), so the session
    /// tracks forward, open-ended, from the frames the host renders.
    pub num_frames: Option<usize>,
    pub width: u32,
    pub height: u32,
    /// Frames are encoded from linear light to sRGB before the model sees them.
    pub linear_light: bool,
    /// A hash of the pixel depth and components the host hands the frames over in (the same
    /// clip at another depth is read into other pixels).
    pub format: u64,
}

/// A hash of the prompts (every object's clicks and boxes on every frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PromptsKey(pub u64);

impl PromptsKey {
    /// The key of `prompts`. The hash is stable within a process, all a process-wide registry needs.
    pub fn of(prompts: &impl Hash) -> PromptsKey {
        let mut h = DefaultHasher::new();
        prompts.hash(&mut h);
        PromptsKey(h.finish())
    }
}

/// What decides a session's results: instances that agree on it share one session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub model: ModelIdentity,
    pub device: Device,
    pub precision: Precision,
    pub predictor: PredictorKey,
    pub source: SourceKey,
    pub prompts: PromptsKey,
}

struct Entry<T> {
    session: Arc<Mutex<T>>,
    users: usize,
    last_used: u64,
    bytes: usize,
}

struct Inner<K, T> {
    entries: HashMap<K, Entry<T>>,
    budget: usize,
    tick: u64,
}

impl<K: Hash + Eq + Clone, T: Budgeted> Inner<K, T> {
    fn touch(&mut self) -> u64 {
        self.tick = self.tick.wrapping_add(1);
        self.tick
    }

    fn total(&self) -> usize {
        self.entries
            .values()
            .fold(0usize, |sum, e| sum.saturating_add(e.bytes))
    }

    /// Brings the total under the budget; returns the evicted sessions, to drop outside the lock.
    fn enforce(&mut self) -> Vec<Arc<Mutex<T>>> {
        let mut evicted = Vec::new();
        let mut total = self.total();
        while total > self.budget {
            let oldest_idle = self
                .entries
                .iter()
                .filter(|(_, e)| e.users == 0)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            let Some(key) = oldest_idle else { break };
            if let Some(e) = self.entries.remove(&key) {
                total = total.saturating_sub(e.bytes);
                evicted.push(e.session);
            }
        }
        if total > self.budget {
            // Only sessions in use are left: ask them to give memory back, oldest first; one a
            // user is working with right now is skipped (never wait for a session's lock here).
            let mut in_use: Vec<(&K, &mut Entry<T>)> = self.entries.iter_mut().collect();
            in_use.sort_by_key(|(_, e)| e.last_used);
            for (_, e) in in_use {
                if total <= self.budget {
                    break;
                }
                let excess = total - self.budget;
                if let Some(mut session) = e.session.try_lock() {
                    session.trim(e.bytes.saturating_sub(excess));
                    let now = session.bytes();
                    total = total.saturating_sub(e.bytes).saturating_add(now);
                    e.bytes = now;
                }
            }
        }
        evicted
    }
}

/// Sessions by key, shared, bounded as a whole by a byte budget.
pub struct Registry<K, T> {
    inner: Arc<Mutex<Inner<K, T>>>,
}

impl<K, T> fmt::Debug for Registry<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

/// The registry at a glance (status line, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryStats {
    pub sessions: usize,
    pub in_use: usize,
    pub bytes: usize,
    pub budget: usize,
}

impl<K: Hash + Eq + Clone, T: Budgeted> Registry<K, T> {
    pub fn new(budget: usize) -> Self {
        Registry {
            inner: Arc::new(Mutex::new(Inner {
                entries: HashMap::new(),
                budget,
                tick: 0,
            })),
        }
    }

    /// Changes the budget (the Memory Budget of the instance rendering now) and applies it.
    pub fn set_budget(&self, bytes: usize) {
        let evicted = {
            let mut inner = self.inner.lock();
            inner.budget = bytes;
            inner.enforce()
        };
        drop(evicted);
    }

    /// The session for `key`, shared with every other user of that key; `create` makes it when
    /// there is none (under the registry's lock: `create` must not use the registry). An error
    /// from `create` leaves nothing behind.
    pub fn acquire<E>(
        &self,
        key: K,
        create: impl FnOnce() -> Result<T, E>,
    ) -> Result<Lease<K, T>, E> {
        let (lease, evicted) = {
            let mut inner = self.inner.lock();
            let tick = inner.touch();
            let session = if let Some(e) = inner.entries.get_mut(&key) {
                e.users += 1;
                e.last_used = tick;
                Arc::clone(&e.session)
            } else {
                let made = create()?;
                let bytes = made.bytes();
                let session = Arc::new(Mutex::new(made));
                inner.entries.insert(
                    key.clone(),
                    Entry {
                        session: Arc::clone(&session),
                        users: 1,
                        last_used: tick,
                        bytes,
                    },
                );
                session
            };
            let evicted = inner.enforce();
            (
                Lease {
                    registry: Arc::clone(&self.inner),
                    key,
                    session,
                },
                evicted,
            )
        };
        drop(evicted);
        Ok(lease)
    }

    /// Releases every session nobody uses (kOfxActionPurgeCaches, unload); how many went.
    pub fn release_idle(&self) -> usize {
        let idle: Vec<Entry<T>> = {
            let mut inner = self.inner.lock();
            let keys: Vec<K> = inner
                .entries
                .iter()
                .filter(|(_, e)| e.users == 0)
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter()
                .filter_map(|k| inner.entries.remove(k))
                .collect()
        };
        idle.len()
    }

    pub fn stats(&self) -> RegistryStats {
        let inner = self.inner.lock();
        RegistryStats {
            sessions: inner.entries.len(),
            in_use: inner.entries.values().filter(|e| e.users > 0).count(),
            bytes: inner.total(),
            budget: inner.budget,
        }
    }

    /// Whether a session for `key` is kept (in use or idle).
    pub fn contains(&self, key: &K) -> bool {
        self.inner.lock().entries.contains_key(key)
    }
}

/// One user's hold on a shared session (an effect instance's). Dropping it leaves the session in
/// the registry, idle, for the next user of the same key.
pub struct Lease<K: Hash + Eq + Clone, T: Budgeted> {
    registry: Arc<Mutex<Inner<K, T>>>,
    key: K,
    session: Arc<Mutex<T>>,
}

impl<K: Hash + Eq + Clone, T: Budgeted> fmt::Debug for Lease<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease").finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, T: Budgeted> Lease<K, T> {
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Whether `other` holds the same session.
    pub fn shares_with(&self, other: &Lease<K, T>) -> bool {
        Arc::ptr_eq(&self.session, &other.session)
    }

    /// Works with the session (other users wait meanwhile), then tells the registry its new size
    /// and applies the budget.
    pub fn with<R>(&self, work: impl FnOnce(&mut T) -> R) -> R {
        let (result, bytes) = {
            let mut session = self.session.lock();
            let result = work(&mut session);
            (result, session.bytes())
        };
        self.used(bytes);
        result
    }

    /// Records a use: the session's new size and recency, then the budget. Evicted sessions are
    /// dropped after the registry's lock is released.
    fn used(&self, bytes: usize) {
        let evicted = {
            let mut inner = self.registry.lock();
            let tick = inner.touch();
            if let Some(e) = inner.entries.get_mut(&self.key) {
                e.bytes = bytes;
                e.last_used = tick;
            }
            inner.enforce()
        };
        drop(evicted);
    }

    /// Whether a user is working with the session right now.
    pub fn is_busy(&self) -> bool {
        self.session.is_locked()
    }

    /// [`Lease::with`], waiting for another user at most `wait`: `None` when the session stayed
    /// busy (a host may run another instance's action on the thread that works with it).
    pub fn try_with<R>(
        &self,
        wait: std::time::Duration,
        work: impl FnOnce(&mut T) -> R,
    ) -> Option<R> {
        let (result, bytes) = {
            let mut session = self.session.try_lock_for(wait)?;
            let result = work(&mut session);
            (result, session.bytes())
        };
        self.used(bytes);
        Some(result)
    }

    /// Moves this lease to `key` (the prompts changed). When this lease is the session's only user
    /// and nothing is kept under `key`, the session itself moves, with everything it tracked (the
    /// caller then brings it in step with the new prompts); when `key` has a session, this lease
    /// joins it; otherwise `create` makes one. The old session stays for its other users or idles.
    pub fn rekey<E>(&mut self, key: K, create: impl FnOnce() -> Result<T, E>) -> Result<(), E> {
        if key == self.key {
            return Ok(());
        }
        let evicted = {
            let mut inner = self.registry.lock();
            let tick = inner.touch();
            let sole = inner.entries.get(&self.key).is_some_and(|e| e.users == 1);
            if let Some(target) = inner.entries.get_mut(&key) {
                target.users += 1;
                target.last_used = tick;
                let session = Arc::clone(&target.session);
                if let Some(old) = inner.entries.get_mut(&self.key) {
                    old.users = old.users.saturating_sub(1);
                    old.last_used = tick;
                }
                self.session = session;
            } else if sole {
                if let Some(mut e) = inner.entries.remove(&self.key) {
                    e.last_used = tick;
                    inner.entries.insert(key.clone(), e);
                }
            } else {
                let made = create()?;
                let bytes = made.bytes();
                let session = Arc::new(Mutex::new(made));
                inner.entries.insert(
                    key.clone(),
                    Entry {
                        session: Arc::clone(&session),
                        users: 1,
                        last_used: tick,
                        bytes,
                    },
                );
                if let Some(old) = inner.entries.get_mut(&self.key) {
                    old.users = old.users.saturating_sub(1);
                    old.last_used = tick;
                }
                self.session = session;
            }
            self.key = key;
            inner.enforce()
        };
        drop(evicted);
        Ok(())
    }
}

impl<K: Hash + Eq + Clone, T: Budgeted> Drop for Lease<K, T> {
    fn drop(&mut self) {
        let evicted = {
            let mut inner = self.registry.lock();
            let tick = inner.touch();
            if let Some(e) = inner.entries.get_mut(&self.key) {
                e.users = e.users.saturating_sub(1);
                e.last_used = tick;
            }
            inner.enforce()
        };
        drop(evicted);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A stand-in session: tracked frames of `bytes_per_frame` each; trimming drops the oldest.
    #[derive(Debug, Default)]
    struct Fake {
        frames: Vec<u32>,
        bytes_per_frame: usize,
        trims: usize,
    }

    impl Budgeted for Fake {
        fn bytes(&self) -> usize {
            self.frames.len() * self.bytes_per_frame
        }
        fn trim(&mut self, target: usize) {
            self.trims += 1;
            while self.bytes() > target && !self.frames.is_empty() {
                self.frames.remove(0);
            }
        }
    }

    fn fake(bytes_per_frame: usize) -> impl FnOnce() -> Result<Fake, Infallible> {
        move || {
            Ok(Fake {
                bytes_per_frame,
                ..Fake::default()
            })
        }
    }

    fn track(lease: &Lease<&'static str, Fake>, frames: std::ops::Range<u32>) {
        lease.with(|s| s.frames.extend(frames));
    }

    #[test]
    fn instances_that_agree_share_one_session_and_frames_outlive_them() {
        let reg: Registry<&str, Fake> = Registry::new(1 << 20);
        // MLT: an instance per frame. Each finds what the previous one tracked.
        for frame in 0..5 {
            let lease = reg.acquire("clip", fake(10)).unwrap();
            lease.with(|s| {
                assert_eq!(s.frames, (0..frame).collect::<Vec<_>>());
                s.frames.push(frame);
            });
        }
        assert_eq!(
            reg.stats(),
            RegistryStats {
                sessions: 1,
                in_use: 0,
                bytes: 50,
                budget: 1 << 20
            }
        );
        let a = reg.acquire("clip", fake(10)).unwrap();
        let b = reg.acquire("clip", fake(10)).unwrap();
        let other = reg.acquire("other clip", fake(10)).unwrap();
        assert!(a.shares_with(&b) && !a.shares_with(&other));
        assert_eq!(reg.stats().in_use, 2);
    }

    #[test]
    fn render_threads_share_the_session_and_it_is_created_once() {
        let reg: Registry<&str, Fake> = Registry::new(1 << 20);
        let created = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for i in 0..50 {
                        let lease = reg
                            .acquire("clip", || {
                                created.fetch_add(1, Ordering::SeqCst);
                                fake(1)()
                            })
                            .unwrap();
                        lease.with(|s| s.frames.push(i));
                    }
                });
            }
        });
        assert_eq!(created.load(Ordering::SeqCst), 1);
        let lease = reg.acquire("clip", fake(1)).unwrap();
        assert_eq!(lease.with(|s| s.frames.len()), 400);
    }

    #[test]
    fn over_budget_the_least_recently_used_idle_session_goes_first() {
        let reg: Registry<&str, Fake> = Registry::new(100);
        for key in ["a", "b"] {
            let lease = reg.acquire(key, fake(10)).unwrap();
            track(&lease, 0..4);
        }
        // "a" used again: "b" is now the least recently used.
        drop(reg.acquire("a", fake(10)).unwrap());
        let c = reg.acquire("c", fake(10)).unwrap();
        track(&c, 0..4);
        assert!(reg.contains(&"a") && !reg.contains(&"b") && reg.contains(&"c"));
        assert_eq!(reg.stats().bytes, 80);
        // A smaller budget takes the idle one before anything in use.
        reg.set_budget(40);
        assert!(!reg.contains(&"a") && reg.contains(&"c"));
        assert_eq!(reg.stats().sessions, 1);
    }

    #[test]
    fn sessions_in_use_are_trimmed_never_dropped() {
        let reg: Registry<&str, Fake> = Registry::new(50);
        let a = reg.acquire("a", fake(10)).unwrap();
        track(&a, 0..8);
        // 80 bytes over a budget of 50, nothing idle: the session gives back its oldest frames.
        assert!(reg.contains(&"a"));
        a.with(|s| {
            assert_eq!(s.frames, vec![3, 4, 5, 6, 7]);
            assert!(s.trims >= 1);
        });
        assert_eq!(reg.stats().bytes, 50);
        // Once nobody uses it, it idles and stays within budget.
        drop(a);
        assert_eq!(reg.stats().sessions, 1);
        reg.set_budget(10);
        assert_eq!(reg.stats().sessions, 0);
    }

    #[test]
    fn purge_releases_idle_sessions_only() {
        let reg: Registry<&str, Fake> = Registry::new(1 << 20);
        let kept = reg.acquire("kept", fake(1)).unwrap();
        drop(reg.acquire("idle 1", fake(1)).unwrap());
        drop(reg.acquire("idle 2", fake(1)).unwrap());
        assert_eq!(reg.release_idle(), 2);
        assert!(reg.contains(kept.key()));
        assert_eq!(reg.stats().sessions, 1);
    }

    #[test]
    fn a_user_waits_for_a_busy_session_only_so_long() {
        let reg: Registry<&str, Fake> = Registry::new(1 << 20);
        let a = reg.acquire("clip", fake(1)).unwrap();
        let b = reg.acquire("clip", fake(1)).unwrap();
        let wait = std::time::Duration::from_millis(20);
        assert!(!a.is_busy());
        a.with(|s| {
            s.frames.push(0);
            // `a` works with the session: `b` sees it busy and gives up after the wait.
            assert!(b.is_busy());
            assert_eq!(b.try_with(wait, |s| s.frames.len()), None);
        });
        assert_eq!(b.try_with(wait, |s| s.frames.len()), Some(1));
    }

    #[test]
    fn a_failed_creation_leaves_nothing_behind() {
        let reg: Registry<&str, Fake> = Registry::new(1 << 20);
        let err = reg
            .acquire("clip", || Err::<Fake, _>("no model"))
            .unwrap_err();
        assert_eq!(err, "no model");
        assert_eq!(reg.stats().sessions, 0);
    }

    #[test]
    fn new_prompts_carry_a_sole_session_over_and_split_a_shared_one() {
        let reg: Registry<&str, Fake> = Registry::new(1 << 20);
        let mut a = reg.acquire("prompts 1", fake(1)).unwrap();
        track(&a, 0..3);
        // Sole user: the session moves with what it tracked.
        a.rekey("prompts 2", fake(1)).unwrap();
        assert!(!reg.contains(&"prompts 1"));
        assert_eq!(a.with(|s| s.frames.len()), 3);
        // Shared: the other user keeps the old session, this one starts its own.
        let b = reg.acquire("prompts 2", fake(1)).unwrap();
        a.rekey("prompts 3", fake(1)).unwrap();
        assert!(!a.shares_with(&b));
        assert_eq!(a.with(|s| s.frames.len()), 0);
        assert_eq!(b.with(|s| s.frames.len()), 3);
        // A key that has a session: join it.
        a.rekey("prompts 2", fake(1)).unwrap();
        assert!(a.shares_with(&b));
        assert_eq!(reg.stats().in_use, 1);
        assert_eq!(reg.stats().sessions, 2, "prompts 3 idles");
    }

    #[test]
    fn keys_tell_apart_what_decides_a_result() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.json"), b"{}").unwrap();
        let model = ModelIdentity::of(dir.path()).unwrap();
        let key = |prompts: &[(i64, f32, f32)], device: Device| SessionKey {
            model: model.clone(),
            device,
            precision: Precision::from(ManifestPrecision::Fp32),
            predictor: PredictorKey {
                add_all_frames_to_correct_as_cond: true,
                fill_hole_area: 8,
                keep_all_memories: false,
            },
            source: SourceKey {
                first_frame: 0,
                num_frames: Some(10),
                width: 64,
                height: 48,
                linear_light: false,
                format: 0,
            },
            prompts: PromptsKey::of(
                &prompts
                    .iter()
                    .map(|&(f, x, y)| (f, x.to_bits(), y.to_bits()))
                    .collect::<Vec<_>>(),
            ),
        };
        let one = key(&[(0, 10.0, 20.0)], Device::Cpu);
        assert_eq!(one, key(&[(0, 10.0, 20.0)], Device::Cpu));
        assert_ne!(one, key(&[(0, 10.0, 21.0)], Device::Cpu));
        assert_ne!(one, key(&[(0, 10.0, 20.0)], Device::Gpu));
        // The fast set gives other results than the exact graphs: another session.
        let fast = SessionKey {
            precision: Precision::Fast,
            ..one.clone()
        };
        assert_ne!(one, fast);
        // Other model files under the same directory are another model.
        std::fs::write(dir.path().join("image_encoder.onnx"), b"weights").unwrap();
        assert_ne!(ModelIdentity::of(dir.path()).unwrap(), model);
    }
}
