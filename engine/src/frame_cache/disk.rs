//! The frame cache's disk tier: encoder features that left memory, one file per frame in a
//! folder of the session's own, under a byte budget, least recently used first out.
//!
//! Why a disk tier: a correction click and Track Forward over frames already seen would
//! otherwise run the image encoder again on each (1.5 s per frame at 1024 on a CPU), while
//! reading a frame's 16 MiB of features back costs milliseconds, mostly from the OS page cache.
//! Memory then stays flat in the clip's length: only the frames an artist works on and the last
//! few streamed frames stay in the process.
//!
//! Features come back bit for bit (raw little-endian `f32`, shapes in a header, a CRC-32 over
//! the whole file) or not at all: anything that goes wrong here — a full disk, a folder that
//! cannot be written, a file that reads back damaged — is logged once and the frame is encoded
//! again, never used wrong.
//!
//! The folder (`PARENT/sam2-rotoscope-frames/PID-N`) goes when the session drops its cache; a
//! process that died leaves its folder behind, so each new folder's creation first removes the
//! folders whose owner is gone. Ownership is an advisory lock held on `owner.lock` inside the
//! folder for the folder's life: the kernel releases it however the process ends.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use indexmap::IndexMap;
use ndarray::Array4;

use crate::model::GraphTensor;

use crate::image_encoder::FrameFeatures;

/// Default disk budget: 4 GiB, about 250 frames of the 1024 models (16 MiB each), 4000 at 256.
pub const DEFAULT_DISK_CACHE_BYTES: u64 = 4 << 30;

/// The folder under the parent that holds every session's folder.
const ROOT_NAME: &str = "sam2-rotoscope-frames";
const LOCK_NAME: &str = "owner.lock";
const MAGIC: &[u8; 8] = b"SAM2FEAT";
const VERSION: u32 = 1;
/// A folder younger than this is never taken for a dead session's: its owner may be between
/// creating it and locking it.
const GRACE: Duration = Duration::from_secs(60);

/// Where a session's disk tier lives and how much it may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskCacheSettings {
    /// Bytes of feature files at most; the least recently used go first.
    pub budget_bytes: u64,
    /// The folder under which the session's own folder is made (default:
    /// [`default_parent`]).
    pub parent: PathBuf,
}

impl Default for DiskCacheSettings {
    fn default() -> DiskCacheSettings {
        DiskCacheSettings {
            budget_bytes: DEFAULT_DISK_CACHE_BYTES,
            parent: default_parent(|name| std::env::var_os(name)),
        }
    }
}

/// The user's cache folder (`$XDG_CACHE_HOME/sam2-rotoscope`, else `~/.cache/sam2-rotoscope` on
/// Linux, `~/Library/Caches/SAM2Rotoscope` on macOS, `%LOCALAPPDATA%\SAM2Rotoscope` on Windows),
/// and the system's temporary folder only where none is known: on many Linux systems `/tmp` is a
/// tmpfs, so features "moved to disk" there would stay in RAM — the very memory the tier frees.
pub fn default_parent(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    crate::user_cache::user_cache_dir(var).unwrap_or_else(std::env::temp_dir)
}

/// The session's folder, made on first use; its lock is held while it exists.
#[derive(Debug)]
struct Folder {
    path: PathBuf,
    /// Held locked for the folder's life (closing the file releases the lock).
    lock: Option<File>,
}

impl Drop for Folder {
    fn drop(&mut self) {
        // Unlocked first: some systems refuse to remove an open file.
        drop(self.lock.take());
        if let Err(e) = fs::remove_dir_all(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            log::warn!(
                "The frame cache's folder {} could not be removed ({e}); remove it yourself.",
                self.path.display()
            );
        }
    }
}

/// Where the tier stands.
#[derive(Debug)]
enum State {
    /// No frame left memory yet: no folder.
    Unused,
    Open(Folder),
    /// The folder could not be made or written: the tier is off for this session (said once).
    Off,
}

/// Feature files by frame, oldest use first, under a byte budget.
#[derive(Debug)]
pub struct DiskTier {
    settings: DiskCacheSettings,
    state: State,
    /// Frame → bytes of its file; oldest use first.
    files: IndexMap<usize, u64>,
    bytes: u64,
}

impl DiskTier {
    pub fn new(settings: DiskCacheSettings) -> DiskTier {
        DiskTier {
            settings,
            state: State::Unused,
            files: IndexMap::new(),
            bytes: 0,
        }
    }

    /// Bytes of feature files on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn contains(&self, frame: usize) -> bool {
        self.files.contains_key(&frame)
    }

    /// The session's folder, once made.
    pub fn folder(&self) -> Option<&Path> {
        match &self.state {
            State::Open(folder) => Some(&folder.path),
            _ => None,
        }
    }

    /// Whether the tier gave up after a failure.
    pub fn is_off(&self) -> bool {
        matches!(self.state, State::Off)
    }

    fn file(folder: &Path, frame: usize) -> PathBuf {
        folder.join(format!("{frame}.features"))
    }

    /// Keeps `features` of `frame` on disk (nothing when they are there already, or when they
    /// alone exceed the budget). A failure turns the tier off with a log line.
    pub fn store(&mut self, frame: usize, features: &FrameFeatures) {
        if let Some(index) = self.files.get_index_of(&frame) {
            let last = self.files.len() - 1;
            self.files.move_index(index, last);
            return;
        }
        let bytes = encoded_len(features);
        if bytes > self.settings.budget_bytes {
            return;
        }
        if matches!(self.state, State::Unused) {
            self.state = match open_folder(&self.settings.parent) {
                Ok(folder) => State::Open(folder),
                Err(e) => {
                    log::warn!(
                        "The frame cache cannot keep encoder features on disk under {} ({e}); frames that leave memory will be encoded again.",
                        self.settings.parent.display()
                    );
                    State::Off
                }
            };
        }
        let State::Open(folder) = &self.state else {
            return;
        };
        while self.bytes + bytes > self.settings.budget_bytes {
            let Some((old, old_bytes)) = self.files.shift_remove_index(0) else {
                break;
            };
            self.bytes -= old_bytes;
            // A file that cannot be removed only wastes disk until the folder goes.
            let _ = fs::remove_file(Self::file(&folder.path, old));
        }
        let path = Self::file(&folder.path, frame);
        match write(&path, features) {
            Ok(()) => {
                self.files.insert(frame, bytes);
                self.bytes += bytes;
            }
            Err(e) => {
                let _ = fs::remove_file(&path);
                log::warn!(
                    "The frame cache could not write frame {frame}'s encoder features to {} ({e}); it stops using the disk for this session, and frames that leave memory will be encoded again.",
                    path.display()
                );
                self.turn_off();
            }
        }
    }

    /// The features of `frame` read back exactly, with the session's shared position encoding;
    /// `None` when they are not on disk or do not read back whole (then logged and forgotten).
    pub fn load(&mut self, frame: usize, pos_enc: &Arc<GraphTensor>) -> Option<FrameFeatures> {
        let index = self.files.get_index_of(&frame)?;
        let State::Open(folder) = &self.state else {
            return None;
        };
        let path = Self::file(&folder.path, frame);
        match read(&path, pos_enc) {
            Ok(features) => {
                let last = self.files.len() - 1;
                self.files.move_index(index, last);
                Some(features)
            }
            Err(e) => {
                log::warn!(
                    "The frame cache could not read frame {frame}'s encoder features back from {} ({e}); the frame is encoded again.",
                    path.display()
                );
                if let Some(bytes) = self.files.shift_remove(&frame) {
                    self.bytes -= bytes;
                }
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Forgets every file (and the folder with them).
    pub fn clear(&mut self) {
        self.files.clear();
        self.bytes = 0;
        if matches!(self.state, State::Open(_)) {
            self.state = State::Unused;
        }
    }

    fn turn_off(&mut self) {
        self.files.clear();
        self.bytes = 0;
        self.state = State::Off;
    }

    pub fn budget(&self) -> u64 {
        self.settings.budget_bytes
    }
}

/// Makes `PARENT/sam2-rotoscope-frames/PID-N`, locked, after removing dead sessions' folders.
fn open_folder(parent: &Path) -> io::Result<Folder> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let root = parent.join(ROOT_NAME);
    fs::create_dir_all(&root)?;
    remove_dead(&root);
    let pid = std::process::id();
    loop {
        let path = root.join(format!("{pid}-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        match fs::create_dir(&path) {
            Ok(()) => {
                let mut folder = Folder { path, lock: None };
                let lock = File::create(folder.path.join(LOCK_NAME))?;
                lock.try_lock().map_err(|e| match e {
                    TryLockError::Error(e) => e,
                    TryLockError::WouldBlock => io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "its lock is held by another process",
                    ),
                })?;
                folder.lock = Some(lock);
                return Ok(folder);
            }
            // Left by an earlier process with the same id: not ours to reuse.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Removes the session folders under `root` whose owner is gone: their lock is free and they
/// are older than [`GRACE`]. Best effort: what cannot be removed stays.
fn remove_dead(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let path = entry.path();
        let young = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_none_or(|age| age < GRACE);
        if young || !path.is_dir() {
            continue;
        }
        let free = match OpenOptions::new().write(true).open(path.join(LOCK_NAME)) {
            Ok(lock) => lock.try_lock().is_ok(),
            // No lock file: its owner died before making one.
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        };
        if free {
            match fs::remove_dir_all(&path) {
                Ok(()) => log::info!(
                    "removed {}, the frame cache of a session that ended without cleaning up",
                    path.display()
                ),
                Err(e) => log::debug!("could not remove {} ({e})", path.display()),
            }
        }
    }
}

fn arrays(features: &FrameFeatures) -> [&GraphTensor; 3] {
    [
        &features.vision_features,
        &features.high_res_0,
        &features.high_res_1,
    ]
}

const HEADER: usize = MAGIC.len() + 4 + 3 * 4 * 4;

fn encoded_len(features: &FrameFeatures) -> u64 {
    let values: usize = arrays(features).iter().map(|a| a.len()).sum();
    (HEADER + 4 * values + 4) as u64
}

/// Magic, version, three shapes (`u32` little-endian), the values (`f32` little-endian, in
/// logical order), CRC-32 of all before it.
fn write(path: &Path, features: &FrameFeatures) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(encoded_len(features) as usize);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    for a in arrays(features) {
        for &d in a.shape() {
            let d = u32::try_from(d).map_err(|_| io::Error::other("a dimension over 2³²"))?;
            bytes.extend_from_slice(&d.to_le_bytes());
        }
    }
    for a in arrays(features) {
        // A frame encoded on a card comes down once, when it leaves the card's memory.
        let a = a.to_host().map_err(io::Error::other)?;
        match a.as_slice() {
            Some(values) if cfg!(target_endian = "little") => {
                bytes.extend_from_slice(bytemuck::cast_slice(values));
            }
            _ => a
                .iter()
                .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes())),
        }
    }
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let mut file = File::create(path)?;
    file.write_all(&bytes)?;
    Ok(())
}

fn damaged(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn read(path: &Path, pos_enc: &Arc<GraphTensor>) -> io::Result<FrameFeatures> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let (body, crc) = bytes
        .split_last_chunk::<4>()
        .ok_or_else(|| damaged("the file is truncated"))?;
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return Err(damaged("its checksum does not match"));
    }
    let (magic, rest) = body
        .split_first_chunk::<8>()
        .ok_or_else(|| damaged("the file is truncated"))?;
    let (version, mut rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| damaged("the file is truncated"))?;
    if magic != MAGIC || u32::from_le_bytes(*version) != VERSION {
        return Err(damaged("it is not a feature file of this version"));
    }
    let mut shapes = [[0usize; 4]; 3];
    for shape in &mut shapes {
        for d in shape.iter_mut() {
            let (value, tail) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| damaged("the file is truncated"))?;
            *d = u32::from_le_bytes(*value) as usize;
            rest = tail;
        }
    }
    let mut decoded = Vec::with_capacity(3);
    for shape in shapes {
        let n = shape.iter().product::<usize>();
        if rest.len() < 4 * n {
            return Err(damaged("the file is truncated"));
        }
        let (values, tail) = rest.split_at(4 * n);
        rest = tail;
        let mut values: Vec<f32> = bytemuck::pod_collect_to_vec(values);
        if cfg!(target_endian = "big") {
            for v in &mut values {
                *v = f32::from_bits(u32::from_le(v.to_bits()));
            }
        }
        let array = Array4::from_shape_vec(shape, values).map_err(|e| damaged(&format!("{e}")))?;
        decoded.push(GraphTensor::from_host(array).map_err(io::Error::other)?);
    }
    if !rest.is_empty() {
        return Err(damaged("the file is longer than its header says"));
    }
    let mut decoded = decoded.into_iter();
    match (decoded.next(), decoded.next(), decoded.next()) {
        (Some(vision_features), Some(high_res_0), Some(high_res_1)) => Ok(FrameFeatures {
            vision_features,
            vision_pos_enc: Arc::clone(pos_enc),
            high_res_0,
            high_res_1,
        }),
        _ => Err(damaged("the file is truncated")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(seed: f32) -> FrameFeatures {
        let fill = |shape: [usize; 4], k: f32| {
            Array4::from_shape_fn(shape, |(a, b, c, d)| {
                // Values with every kind of bit pattern a float can have, subnormals and NaN
                // payloads included, to show that nothing is rounded on the way.
                let i = (a + b * 7 + c * 131 + d * 1031) as u32;
                match i % 5 {
                    0 => f32::from_bits(i.wrapping_mul(2_654_435_761)),
                    1 => f32::from_bits(i & 0x007f_ffff),
                    _ => (i as f32 * 0.37 + k).sin() * 1e3,
                }
            })
        };
        FrameFeatures {
            vision_features: tensor(fill([1, 8, 4, 4], seed)),
            vision_pos_enc: Arc::new(tensor(Array4::zeros((1, 8, 4, 4)))),
            high_res_0: tensor(fill([1, 2, 16, 16], seed + 1.0)),
            high_res_1: tensor(fill([1, 4, 8, 8], seed + 2.0)),
        }
    }

    fn tensor(a: Array4<f32>) -> GraphTensor {
        crate::model::graph_tensor::test_tensor(a)
    }

    fn bits(a: &GraphTensor) -> Vec<u32> {
        a.to_host().unwrap().iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn the_default_folder_is_the_users_cache_not_tmp() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        if cfg!(target_os = "linux") {
            assert_eq!(
                default_parent(env(&[("XDG_CACHE_HOME", "/c"), ("HOME", "/h")])),
                PathBuf::from("/c/sam2-rotoscope")
            );
            assert_eq!(
                default_parent(env(&[("XDG_CACHE_HOME", ""), ("HOME", "/h")])),
                PathBuf::from("/h/.cache/sam2-rotoscope")
            );
            assert_eq!(default_parent(env(&[])), std::env::temp_dir());
        }
    }

    fn settings(parent: &Path, budget_bytes: u64) -> DiskCacheSettings {
        DiskCacheSettings {
            budget_bytes,
            parent: parent.to_path_buf(),
        }
    }

    #[test]
    fn features_read_back_bit_for_bit_and_the_folder_goes_with_the_tier() {
        let parent = tempfile::tempdir().unwrap();
        let mut tier = DiskTier::new(settings(parent.path(), 1 << 20));
        assert!(
            tier.folder().is_none(),
            "no folder before anything is stored"
        );
        let original = features(0.5);
        tier.store(3, &original);
        let folder = tier.folder().unwrap().to_path_buf();
        assert!(folder.starts_with(parent.path().join(ROOT_NAME)));
        let pos = Arc::new(tensor(Array4::ones((1, 8, 4, 4))));
        let back = tier.load(3, &pos).unwrap();
        assert_eq!(bits(&back.vision_features), bits(&original.vision_features));
        assert_eq!(bits(&back.high_res_0), bits(&original.high_res_0));
        assert_eq!(bits(&back.high_res_1), bits(&original.high_res_1));
        assert!(Arc::ptr_eq(&back.vision_pos_enc, &pos));
        assert_eq!(
            tier.bytes(),
            fs::metadata(DiskTier::file(&folder, 3)).unwrap().len()
        );
        drop(tier);
        assert!(!folder.exists(), "the session's folder is removed");
    }

    #[test]
    fn the_budget_evicts_the_least_recently_used_file() {
        let parent = tempfile::tempdir().unwrap();
        let one = encoded_len(&features(0.0));
        let mut tier = DiskTier::new(settings(parent.path(), 2 * one));
        let pos = Arc::new(tensor(Array4::zeros((1, 8, 4, 4))));
        tier.store(0, &features(0.0));
        tier.store(1, &features(1.0));
        assert!(tier.load(0, &pos).is_some()); // 1 becomes the oldest
        tier.store(2, &features(2.0));
        assert!(tier.contains(0) && tier.contains(2) && !tier.contains(1));
        assert_eq!(tier.bytes(), 2 * one);
        let folder = tier.folder().unwrap();
        assert!(!DiskTier::file(folder, 1).exists());
        assert_eq!(
            fs::read_dir(folder).unwrap().count(),
            3,
            "two files and the lock"
        );
    }

    #[test]
    fn a_damaged_file_is_not_used() {
        let parent = tempfile::tempdir().unwrap();
        let mut tier = DiskTier::new(settings(parent.path(), 1 << 20));
        tier.store(5, &features(5.0));
        let path = DiskTier::file(tier.folder().unwrap(), 5);
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER + 10] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let pos = Arc::new(tensor(Array4::zeros((1, 8, 4, 4))));
        assert!(tier.load(5, &pos).is_none());
        assert!(!tier.contains(5) && tier.bytes() == 0);
    }

    #[test]
    fn a_folder_that_cannot_be_made_turns_the_tier_off() {
        let parent = tempfile::tempdir().unwrap();
        // A file where the parent folder should be.
        let blocked = parent.path().join("not-a-folder");
        fs::write(&blocked, b"x").unwrap();
        let mut tier = DiskTier::new(settings(&blocked, 1 << 20));
        tier.store(0, &features(0.0));
        assert!(tier.is_off() && !tier.contains(0) && tier.folder().is_none());
    }

    #[test]
    fn dead_sessions_folders_are_removed_and_live_ones_kept() {
        let parent = tempfile::tempdir().unwrap();
        let root = parent.path().join(ROOT_NAME);
        let live = DiskTier::new(settings(parent.path(), 1 << 20));
        let mut live = live;
        live.store(0, &features(0.0));
        let live_folder = live.folder().unwrap().to_path_buf();
        // A dead session's folder: unlocked lock file, old enough.
        let dead = root.join("999999-0");
        fs::create_dir_all(&dead).unwrap();
        fs::write(dead.join(LOCK_NAME), b"").unwrap();
        fs::write(dead.join("0.features"), b"old").unwrap();
        let old = SystemTime::now() - 2 * GRACE;
        File::open(&dead).unwrap().set_modified(old).unwrap();
        // The live one looks old too: only its lock keeps it.
        File::open(&live_folder).unwrap().set_modified(old).unwrap();
        // A young unlocked folder: maybe a session between making it and locking it.
        let young = root.join("999999-1");
        fs::create_dir_all(&young).unwrap();

        let mut next = DiskTier::new(settings(parent.path(), 1 << 20));
        next.store(0, &features(0.0));
        assert!(!dead.exists(), "the dead session's folder is removed");
        assert!(young.exists() && live_folder.exists());
        let pos = Arc::new(tensor(Array4::zeros((1, 8, 4, 4))));
        assert!(live.load(0, &pos).is_some());
    }
}
