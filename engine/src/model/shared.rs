//! A loaded model: the verified directory and its four sessions, shared by every clip session.
//!
//! ONNX Runtime sessions are created once per model and shared (`Arc<Model>`); `ort` runs a session
//! through `&mut`, so each graph sits behind its own mutex — two clip sessions can encode one frame
//! while decoding another.
//!
//! Each graph also has a clock ([`Model::graph_times`]): how many times it ran and for how long,
//! summed over every session of the model, so that a benchmark can tell the graphs' time from the
//! engine's own. It costs two clock reads and two atomic adds per graph run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::built_graphs::BuiltGraphs;
use super::device::{Provider, ProviderFailure};
use super::graph_tensor::{Traffic, TrafficCounter};
use super::manifest::{GraphName, Manifest};
use super::{
    FastSet, FastTarget, Graph, GraphSet, ModelDir, ModelSessions, ModelTensors, Precision, Runtime,
};
use crate::error::Result;

/// Sizes every per-frame array derives from, computed once from the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// S, the square model input.
    pub image_size: usize,
    /// C, the feature channels.
    pub hidden_dim: usize,
    /// Memory channels.
    pub mem_dim: usize,
    /// H = W of the feature map (S/16).
    pub feat: usize,
    /// Side of the low-resolution mask logits (S/4).
    pub low_res: usize,
}

impl Geometry {
    fn of(m: &Manifest) -> Geometry {
        let feat = m.feature_size() as usize;
        Geometry {
            image_size: m.image_size as usize,
            hidden_dim: m.hidden_dim as usize,
            mem_dim: m.mem_dim as usize,
            feat,
            low_res: feat * 4,
        }
    }

    /// Elements of one low-resolution mask.
    pub fn low_res_len(&self) -> usize {
        self.low_res * self.low_res
    }
}

/// The model every graph wrapper runs on.
#[derive(Debug)]
pub struct Model {
    dir: ModelDir,
    /// Which graph files the sessions were created from.
    graph_set: GraphSet,
    geometry: Geometry,
    pub(crate) image_encoder: Mutex<Graph>,
    pub(crate) mask_decoder: Mutex<Graph>,
    pub(crate) memory_encoder: Mutex<Graph>,
    pub(crate) memory_attention: Mutex<Graph>,
    pub(crate) clocks: GraphClocks,
    /// What crossed between host memory and the graphs; shared with the tensors the graphs made.
    pub(crate) traffic: Arc<TrafficCounter>,
    /// The graphs built in code that keep the memories where the graphs run.
    pub(crate) built: BuiltGraphs,
    /// Tests only: run graphs with kept outputs through an I/O binding on the CPU provider too,
    /// so that the path a card takes is checked against the plain one here.
    #[cfg(test)]
    pub(crate) bind_on_host: std::sync::atomic::AtomicBool,
    /// Where each graph runs, read once at load: the graphs sit behind locks while tracking.
    providers: Vec<(GraphName, Provider)>,
    /// GPU providers tried and not used, once each over the four graphs.
    skipped: Vec<ProviderFailure>,
}

impl Model {
    /// Creates the four sessions of an opened model directory from its exact graphs.
    pub fn load(dir: ModelDir, runtime: &Runtime) -> Result<Arc<Model>> {
        Model::load_at(dir, runtime, Precision::Exact)
    }

    /// Creates the four sessions of an opened model directory at `precision`: the exact graphs,
    /// or a fast set (refused with a sentence when the directory has none for where the graphs
    /// run — never the exact graphs in its place). Precision fast takes the GPU set when the
    /// runtime may place graphs on a GPU, the directory has that set and every graph of it got a
    /// GPU provider; otherwise the CPU set, since float16 on the CPU provider is slower than the
    /// exact graphs.
    pub fn load_at(dir: ModelDir, runtime: &Runtime, precision: Precision) -> Result<Arc<Model>> {
        match precision {
            Precision::Exact => Model::load_set(dir, runtime, GraphSet::Exact),
            Precision::Fast => {
                if runtime.may_use_gpu() && FastTarget::Gpu.is_in(&dir) {
                    let set = GraphSet::Fast(Box::new(FastSet::open(&dir, FastTarget::Gpu)?));
                    let sessions = dir.load_sessions_of(runtime, &set)?;
                    if sessions
                        .providers()
                        .iter()
                        .all(|(_, p)| *p != Provider::Cpu)
                    {
                        return Ok(Model::from_sessions(dir, set, sessions, runtime));
                    }
                    log::warn!(
                        "precision fast: no GPU provider took every graph, so the CPU fast set runs instead of the GPU one"
                    );
                }
                let set = GraphSet::Fast(Box::new(FastSet::open(&dir, FastTarget::Cpu)?));
                let model = Model::load_set(dir, runtime, set)?;
                // A directory made before the GPU set existed: its int8 graphs are what is fast on
                // a CPU, not on a card, where they may run slower than the exact ones.
                let path = model.dir().path();
                if let Some((_, gpu)) = model.providers().iter().find(|(_, p)| *p != Provider::Cpu)
                    && !FastTarget::Gpu.is_in(model.dir())
                {
                    log::warn!(
                        "precision fast: {} has no GPU fast set (fast-gpu/), so its CPU set (int8) runs on {gpu}; add the GPU set with `bundle/exporter/py fast --model {}`",
                        path.display(),
                        path.display()
                    );
                }
                Ok(model)
            }
        }
    }

    /// Creates the four sessions of `set`, which must belong to `dir` (a check, a bench or a test
    /// that runs one set wherever the runtime places it).
    pub fn load_set(dir: ModelDir, runtime: &Runtime, set: GraphSet) -> Result<Arc<Model>> {
        let sessions = dir.load_sessions_of(runtime, &set)?;
        Ok(Model::from_sessions(dir, set, sessions, runtime))
    }

    fn from_sessions(
        dir: ModelDir,
        graph_set: GraphSet,
        mut sessions: ModelSessions,
        runtime: &Runtime,
    ) -> Arc<Model> {
        if let Some(fast) = graph_set.fast() {
            log::info!(
                "precision fast: the {} set, {}",
                fast.target(),
                fast.summary()
            );
        }
        let mut skipped: Vec<ProviderFailure> = Vec::new();
        for name in GraphName::ALL {
            for failure in sessions.get_mut(name).skipped() {
                if !skipped.contains(failure) {
                    skipped.push(failure.clone());
                }
            }
        }
        Arc::new(Model {
            providers: sessions.providers(),
            skipped,
            graph_set,
            geometry: Geometry::of(dir.manifest()),
            image_encoder: Mutex::new(sessions.image_encoder),
            mask_decoder: Mutex::new(sessions.mask_decoder),
            memory_encoder: Mutex::new(sessions.memory_encoder),
            memory_attention: Mutex::new(sessions.memory_attention),
            clocks: GraphClocks::default(),
            traffic: Arc::default(),
            built: BuiltGraphs::new(runtime),
            #[cfg(test)]
            bind_on_host: Default::default(),
            dir,
        })
    }

    /// Opens, verifies and loads the model directory at `path`.
    pub fn open(path: impl AsRef<std::path::Path>, runtime: &Runtime) -> Result<Arc<Model>> {
        Model::load(ModelDir::open(path)?, runtime)
    }

    /// The provider each graph prefers ([`Graph::provider`]).
    pub fn providers(&self) -> &[(GraphName, Provider)] {
        &self.providers
    }

    /// The card whose memory keeps graph `name`'s outputs ([`Provider::output_card`]); `None`
    /// where they come back to host memory.
    pub fn card_of(&self, name: GraphName) -> Option<u32> {
        self.providers
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, p)| p.output_card())
    }

    /// Whether the image encoder's outputs stay on a card, where encoding a frame again is
    /// cheaper than keeping its features on disk.
    pub fn encodes_on_card(&self) -> bool {
        self.card_of(GraphName::ImageEncoder).is_some()
    }

    /// The GPU providers that were tried and could not be used, each once, with why: what a
    /// host shows when [`Device::Auto`](super::Device::Auto) fell back to the CPU. Empty for the
    /// device `cpu`, and when a GPU provider started.
    pub fn skipped_providers(&self) -> &[ProviderFailure] {
        &self.skipped
    }

    /// Whether any graph fell back to the CPU after a GPU provider was tried.
    pub fn fell_back_to_cpu(&self) -> bool {
        !self.skipped.is_empty() && self.providers.iter().any(|(_, p)| *p == Provider::Cpu)
    }

    pub fn dir(&self) -> &ModelDir {
        &self.dir
    }

    /// The precision the model was loaded at.
    pub fn precision(&self) -> Precision {
        self.graph_set.precision()
    }

    /// The graph files the sessions were created from.
    pub fn graph_set(&self) -> &GraphSet {
        &self.graph_set
    }

    /// One graph's session behind its lock.
    pub(crate) fn graph(&self, name: GraphName) -> &Mutex<Graph> {
        match name {
            GraphName::ImageEncoder => &self.image_encoder,
            GraphName::MaskDecoder => &self.mask_decoder,
            GraphName::MemoryEncoder => &self.memory_encoder,
            GraphName::MemoryAttention => &self.memory_attention,
        }
    }

    pub fn manifest(&self) -> &Manifest {
        self.dir.manifest()
    }

    pub fn tensors(&self) -> &ModelTensors {
        self.dir.tensors()
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The bytes that crossed between host memory and the graphs since the model was loaded (on a
    /// GPU provider, the bus traffic).
    pub fn traffic(&self) -> Traffic {
        self.traffic.read()
    }

    /// Where kept outputs go on a graph whose provider keeps them in host memory: nowhere special
    /// (a plain run), except in the tests that take the binding path on the CPU.
    pub(crate) fn binding_on_host(&self) -> Option<ort::memory::MemoryInfo<'static>> {
        #[cfg(test)]
        if self.bind_on_host.load(Ordering::Relaxed) {
            use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
            return MemoryInfo::new(
                AllocationDevice::CPU,
                0,
                AllocatorType::Device,
                MemoryType::Default,
            )
            .ok();
        }
        None
    }

    /// How often and how long each graph has run since the model was loaded.
    pub fn graph_times(&self) -> GraphTimes {
        GraphTimes {
            image_encoder: self.clocks.image_encoder.read(),
            mask_decoder: self.clocks.mask_decoder.read(),
            memory_encoder: self.clocks.memory_encoder.read(),
            memory_attention: self.clocks.memory_attention.read(),
        }
    }
}

/// Runs of one graph and the time spent inside ONNX Runtime for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphTime {
    pub runs: u64,
    pub total: Duration,
}

/// [`GraphTime`] of each of the four graphs, from [`Model::graph_times`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphTimes {
    pub image_encoder: GraphTime,
    pub mask_decoder: GraphTime,
    pub memory_encoder: GraphTime,
    pub memory_attention: GraphTime,
}

impl GraphTimes {
    /// Time spent in all four graphs.
    pub fn total(&self) -> Duration {
        self.image_encoder.total
            + self.mask_decoder.total
            + self.memory_encoder.total
            + self.memory_attention.total
    }

    /// What ran between `earlier` (an older reading of the same model) and `self`.
    pub fn since(&self, earlier: &GraphTimes) -> GraphTimes {
        let diff = |now: GraphTime, then: GraphTime| GraphTime {
            runs: now.runs.saturating_sub(then.runs),
            total: now.total.saturating_sub(then.total),
        };
        GraphTimes {
            image_encoder: diff(self.image_encoder, earlier.image_encoder),
            mask_decoder: diff(self.mask_decoder, earlier.mask_decoder),
            memory_encoder: diff(self.memory_encoder, earlier.memory_encoder),
            memory_attention: diff(self.memory_attention, earlier.memory_attention),
        }
    }
}

/// One graph's run counter and nanosecond total.
#[derive(Debug, Default)]
pub(crate) struct GraphClock {
    nanos: AtomicU64,
    runs: AtomicU64,
}

impl GraphClock {
    /// Counts one run that began at `started`.
    pub(crate) fn record(&self, started: Instant) {
        self.add_time(started);
        self.runs.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds the time since `started` without counting a run: a built graph's work for this
    /// graph ([`built_graphs`](super::built_graphs)), which is part of its cost but not a run of
    /// it.
    pub(crate) fn add_time(&self, started: Instant) {
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn read(&self) -> GraphTime {
        GraphTime {
            runs: self.runs.load(Ordering::Relaxed),
            total: Duration::from_nanos(self.nanos.load(Ordering::Relaxed)),
        }
    }
}

/// The clocks of the four graphs.
#[derive(Debug, Default)]
pub(crate) struct GraphClocks {
    pub(crate) image_encoder: GraphClock,
    pub(crate) mask_decoder: GraphClock,
    pub(crate) memory_encoder: GraphClock,
    pub(crate) memory_attention: GraphClock,
}

impl GraphClocks {
    /// The clock of one graph.
    pub(crate) fn get(&self, name: GraphName) -> &GraphClock {
        match name {
            GraphName::ImageEncoder => &self.image_encoder,
            GraphName::MaskDecoder => &self.mask_decoder,
            GraphName::MemoryEncoder => &self.memory_encoder,
            GraphName::MemoryAttention => &self.memory_attention,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_count_runs_and_differences_subtract() {
        let clocks = GraphClocks::default();
        let read = |c: &GraphClocks| GraphTimes {
            image_encoder: c.image_encoder.read(),
            mask_decoder: c.mask_decoder.read(),
            memory_encoder: c.memory_encoder.read(),
            memory_attention: c.memory_attention.read(),
        };
        let start = read(&clocks);
        clocks.mask_decoder.record(Instant::now());
        clocks.mask_decoder.record(Instant::now());
        clocks.image_encoder.record(Instant::now());
        let now = read(&clocks);
        let spent = now.since(&start);
        assert_eq!(spent.mask_decoder.runs, 2);
        assert_eq!(spent.image_encoder.runs, 1);
        assert_eq!(spent.memory_encoder, GraphTime::default());
        assert_eq!(spent.memory_attention, GraphTime::default());
        assert_eq!(spent.total(), now.total());
        // An older reading minus a newer one saturates at zero instead of wrapping.
        assert_eq!(start.since(&now), GraphTimes::default());
    }
}
