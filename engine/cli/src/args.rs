//! The command line's grammar (clap derive). Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sam2_engine::matte::{
    DEFAULT_EPSILON, EdgeRefinement, GuideChannels, MatteDevice, MatteError, MatteSettings,
};
use sam2_engine::model::{Device, Precision};

/// SAM 2 video object tracking: a matte per object and frame from a few clicks.
///
/// ONNX Runtime is loaded from $SAM2_ORT_DYLIB, else $ORT_DYLIB_PATH, else the checkout's
/// .local/onnxruntime/libonnxruntime.so (put there by bundle/fetch-onnxruntime.sh).
#[derive(Debug, Parser)]
#[command(name = "sam2-rotoscope", version)]
pub struct Cli {
    /// Also print what the engine decides on the way (devices, fallbacks) to stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verify a model directory: manifest, hashes, tensors, ONNX sessions, one run per graph.
    CheckModel(CheckModelArgs),
    /// Run an interaction script on a clip; write a matte sequence per object.
    ///
    /// Writes OUT_DIR/object_<id>/<frame>.png (grayscale, frame = 0-based index in the clip,
    /// five digits) for every object the session holds at the end of the script and for every
    /// frame of the clip: a frame the object has no result on gets an empty matte, so that a
    /// compositor reads a complete sequence. The folder appears complete or not at all (it is
    /// written under a hidden name next to OUT_DIR and renamed at the end; an error or a signal
    /// removes it).
    Track(TrackArgs),
    /// Render matte sequences from a track cache alone: no model, no ONNX Runtime, no GPU needed.
    ///
    /// Writes OUT_DIR/object_<id>/<frame>.png for every object of the cache's last finished step
    /// and every frame of --frames (all by default), byte for byte what `track` writes with the same
    /// matte flags. Several renders may write disjoint frame ranges into one OUT_DIR at once (a
    /// render farm's tasks); each file appears whole. A cache made for another clip, model or
    /// script (when --model or --script is given), a damaged, truncated or replaced cache is one
    /// sentence and exit code 1; mattes already written stay whole.
    Render(RenderArgs),
}

#[derive(Debug, Args)]
pub struct CheckModelArgs {
    /// The model directory (written by bundle/exporter; holds manifest.json).
    #[arg(value_name = "MODEL_DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct TrackArgs {
    /// The model directory (written by bundle/exporter; holds manifest.json).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,

    /// The clip: a folder of frames named by number (0.png, 00001.jpg, …). Default: the clip
    /// the script names.
    #[arg(long, value_name = "FRAMES_DIR")]
    pub clip: Option<PathBuf>,

    /// The interaction script (docs/formats.md).
    #[arg(long, value_name = "SCRIPT.json")]
    pub script: PathBuf,

    /// Where the mattes go; must not exist unless --force is given.
    #[arg(long, value_name = "OUT_DIR")]
    pub out: PathBuf,

    /// Also write every step's outputs as a reference trace (docs/formats.md), to compare with
    /// one made by `bundle/exporter/py reference`.
    #[arg(long, value_name = "TRACE_DIR")]
    pub trace: Option<PathBuf>,

    /// Also write every object's result on every frame into a track cache (docs/formats.md) as
    /// tracking proceeds, for `render` tasks. An earlier track cache there is replaced; any
    /// other file is refused.
    #[arg(long, value_name = "FILE")]
    pub cache: Option<PathBuf>,

    /// Replace OUT_DIR (and TRACE_DIR) if they exist and hold nothing but earlier output.
    #[arg(long)]
    pub force: bool,

    /// Bits per matte pixel.
    #[arg(long, value_enum, default_value_t = Bits::Eight)]
    pub bits: Bits,

    /// Where the model and the matte upsampling run. auto: a GPU where one works, else the CPU;
    /// gpu: a GPU or an error.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,

    /// Which graphs run. exact: the exported graphs, at parity with the official predictor. fast:
    /// the model's fast set for where it runs (on a CPU the int8 image encoder, about 1.3× faster;
    /// on a GPU the float16 graphs), with masks that differ slightly from exact — bench.sh measures
    /// how much. A model without a fast set refuses fast
    /// (add one with bundle/exporter/py fast).
    #[arg(long, value_enum, default_value_t = PrecisionArg::Exact)]
    pub precision: PrecisionArg,

    /// Drop correction clicks at the next propagation, as the official predictor does by default
    /// (add_all_frames_to_correct_as_cond = false); without it corrections stick. Wins over the
    /// script's own "predictor" setting.
    #[arg(long)]
    pub official_corrections: bool,

    /// Fill background holes of at most N low-resolution pixels in each mask (0: off). Default:
    /// the script's "predictor" setting, else the model's (8). Traces made on a CPU need 0.
    #[arg(long, value_name = "N")]
    pub fill_hole_area: Option<u32>,

    /// Threads per ONNX Runtime operator (default: ONNX Runtime's choice). 1 makes runs repeat
    /// bit for bit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// Memory for image-encoder features of frames already encoded, in MiB (about 16 MiB a
    /// frame at 1024, 1 MiB at 256): frames clicked on stay there, a correction on them costs
    /// only the decoder.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_FRAME_CACHE_MIB)]
    pub frame_cache_mib: usize,

    /// Disk for image-encoder features that leave memory, in MiB (0: none, they are encoded
    /// again when needed): re-tracking over frames already seen then costs no encoder run. Kept
    /// in a folder of this run's own under --frame-cache-dir, removed when the run ends.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_FRAME_CACHE_DISK_MIB)]
    pub frame_cache_disk_mib: u64,

    /// Where the disk part of the frame cache goes (its own folder `sam2-rotoscope-frames`
    /// inside). Default: the user's cache folder (`$XDG_CACHE_HOME/sam2-rotoscope`, else `~/.cache/sam2-rotoscope`), not `/tmp`, which is often a RAM-backed tmpfs.
    #[arg(long, value_name = "DIR")]
    pub frame_cache_dir: Option<PathBuf>,

    #[command(flatten)]
    pub matte: MatteArgs,
}

/// The engine's defaults, in MiB.
const DEFAULT_FRAME_CACHE_MIB: usize = sam2_engine::frame_cache::DEFAULT_FRAME_CACHE_BYTES >> 20;
const DEFAULT_FRAME_CACHE_DISK_MIB: u64 = sam2_engine::frame_cache::DEFAULT_DISK_CACHE_BYTES >> 20;

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The track cache (written by `track --cache` or the plug-in).
    #[arg(long, value_name = "FILE")]
    pub cache: PathBuf,

    /// The clip the cache was tracked on; its frames are fingerprinted and must be the same.
    #[arg(long, value_name = "FRAMES_DIR")]
    pub clip: PathBuf,

    /// Where the mattes go; created if missing. Only the mattes of the rendered frames are
    /// written (replaced if there).
    #[arg(long, value_name = "OUT_DIR")]
    pub out: PathBuf,

    /// The frames to render: A-B (inclusive) or one frame N, 0-based indices in the clip.
    /// Default: every frame.
    #[arg(long, value_name = "A-B", value_parser = parse_frames)]
    pub frames: Option<FrameRange>,

    /// Also check that the cache was tracked with this model (its manifest's hash; the model is
    /// not loaded).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,

    /// Also check that the cache was tracked from this interaction script's prompts.
    #[arg(long, value_name = "SCRIPT.json")]
    pub script: Option<PathBuf>,

    /// Bits per matte pixel.
    #[arg(long, value_enum, default_value_t = Bits::Eight)]
    pub bits: Bits,

    /// Where the mattes are upsampled (the model is not used). auto: a GPU where one works, else
    /// the CPU. Renders compared byte for byte must upsample on the same kind of device.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,

    #[command(flatten)]
    pub matte: MatteArgs,
}

/// An inclusive range of frame indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRange {
    pub first: usize,
    pub last: usize,
}

fn parse_frames(text: &str) -> Result<FrameRange, String> {
    let number = |t: &str| {
        t.trim()
            .parse::<usize>()
            .map_err(|_| format!("{t:?} is not a frame index (0, 1, 2, …)"))
    };
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => {
            let n = number(text)?;
            (n, n)
        }
    };
    if last < first {
        return Err(format!("the range {text} ends before it starts"));
    }
    Ok(FrameRange { first, last })
}

/// The finishing of each matte (the plugin's matte settings).
#[derive(Debug, Args)]
#[command(next_help_heading = "Matte")]
pub struct MatteArgs {
    /// The logit above which a pixel is foreground; 0 is SAM 2's own mask, positive tightens,
    /// negative loosens.
    #[arg(
        long,
        value_name = "LOGIT",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub threshold: f32,

    /// Edge softness in logits: 0 a hard matte, 1 the model's own probability.
    // Negative numbers parse, so that the matte's own check says what is allowed.
    #[arg(
        long,
        value_name = "LOGITS",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub softness: f32,

    /// Feather radius in pixels (a Gaussian blur of the edge).
    #[arg(
        long,
        value_name = "PIXELS",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub feather: f32,

    /// Grow the matte by this many pixels, or choke it when negative.
    #[arg(
        long,
        value_name = "PIXELS",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub expand: i32,

    /// Remove islands of matte smaller than this many pixels.
    #[arg(long, value_name = "PIXELS", default_value_t = 0)]
    pub remove_specks: u32,

    /// Fill holes in the matte smaller than this many pixels.
    #[arg(long, value_name = "PIXELS", default_value_t = 0)]
    pub fill_holes: u32,

    /// Refine Edges: a guided filter of the upsampled mask with the frame as the guide, before
    /// threshold and softness, so that edges follow the picture rather than the model's 4-pixel
    /// grid. off keeps the bilinear edges.
    #[arg(long, value_name = "GUIDE", value_enum, default_value_t = RefineEdges::Off)]
    pub refine_edges: RefineEdges,

    /// Refine Edges' window radius in pixels; by default it scales with the frame (8 per 1024
    /// pixels of the longer side).
    #[arg(long, value_name = "PIXELS", allow_negative_numbers = true)]
    pub edge_radius: Option<f32>,

    /// Refine Edges' ε: larger values follow only stronger edges.
    #[arg(long, value_name = "E", default_value_t = DEFAULT_EPSILON)]
    pub edge_epsilon: f32,
}

/// Which channels of the frame guide Refine Edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RefineEdges {
    Off,
    Colour,
    Luminance,
}

impl MatteArgs {
    pub fn settings(&self) -> MatteSettings {
        MatteSettings {
            threshold: self.threshold,
            softness: self.softness,
            fill_holes_below: self.fill_holes,
            remove_specks_below: self.remove_specks,
            expand: self.expand,
            feather: self.feather,
        }
    }

    /// The edge refinement asked for, checked; `None` when off.
    pub fn refinement(&self) -> Result<Option<EdgeRefinement>, MatteError> {
        let guide = match self.refine_edges {
            RefineEdges::Off => return Ok(None),
            RefineEdges::Colour => GuideChannels::Colour,
            RefineEdges::Luminance => GuideChannels::Luminance,
        };
        let refinement = EdgeRefinement {
            guide,
            radius: self.edge_radius,
            epsilon: self.edge_epsilon,
        };
        refinement.validate()?;
        Ok(Some(refinement))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Bits {
    #[value(name = "8")]
    Eight,
    #[value(name = "16")]
    Sixteen,
}

impl Bits {
    pub fn count(self) -> u32 {
        match self {
            Bits::Eight => 8,
            Bits::Sixteen => 16,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    Exact,
    Fast,
}

impl PrecisionArg {
    /// The engine's setting.
    pub fn engine(self) -> Precision {
        match self {
            PrecisionArg::Exact => Precision::Exact,
            PrecisionArg::Fast => Precision::Fast,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Gpu,
    Auto,
}

impl DeviceArg {
    /// Where ONNX Runtime runs the graphs.
    pub fn model(self) -> Device {
        match self {
            DeviceArg::Cpu => Device::Cpu,
            DeviceArg::Gpu => Device::Gpu,
            DeviceArg::Auto => Device::Auto,
        }
    }

    /// Where the mattes are upsampled.
    pub fn matte(self) -> MatteDevice {
        match self {
            DeviceArg::Cpu => MatteDevice::Cpu,
            DeviceArg::Gpu => MatteDevice::Gpu,
            DeviceArg::Auto => MatteDevice::Auto,
        }
    }
}
