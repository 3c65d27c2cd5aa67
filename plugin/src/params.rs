//! The parameters, declared once each in two tables — [`TABLE`] (the instance's own) and
//! [`OBJECT_TABLE`] (what each of the eight objects has) — from which describe defines them, an
//! instance fetches their handles, and [`Params::values`] reads them at a time.
//!
//! Pages: **Prompts** (the selected object, the Track and Clear buttons, the status line, and a
//! group per object: name, colour, enabled, and its prompts — a hidden string holding JSON, see
//! [`crate::prompts`]), **Matte** (output mode and finishing), **Model** (directory, device,
//! linear-light source) and **Cache** (memory budget, how far a render tracks on its own, the
//! track cache file and its buttons).
//!
//! Names are what projects save: they, the defaults and the pages never change.

use std::ffi::{CStr, CString};

use openfx::sys::generic::core::kOfxPropLabel;
use openfx::sys::image_effect_v1::image_effect::kOfxImageEffectPropClipPreferencesSlaveParam;
use openfx::sys::image_effect_v1::param::{
    kOfxParamDoubleTypePlain, kOfxParamPropAnimates, kOfxParamPropCanUndo,
    kOfxParamPropChoiceOption, kOfxParamPropDefault, kOfxParamPropDigits, kOfxParamPropDisplayMax,
    kOfxParamPropDisplayMin, kOfxParamPropDoubleType, kOfxParamPropEnabled,
    kOfxParamPropEvaluateOnChange, kOfxParamPropGroupOpen, kOfxParamPropHint,
    kOfxParamPropIncrement, kOfxParamPropMax, kOfxParamPropMin, kOfxParamPropPageChild,
    kOfxParamPropParent, kOfxParamPropPersistant, kOfxParamPropScriptName, kOfxParamPropSecret,
    kOfxParamPropStringFilePathExists, kOfxParamPropStringMode, kOfxParamStringIsDirectoryPath,
    kOfxParamStringIsFilePath, kOfxParamStringIsSingleLine, kOfxParamTypeBoolean,
    kOfxParamTypeChoice, kOfxParamTypeDouble, kOfxParamTypeGroup, kOfxParamTypeInteger,
    kOfxParamTypePage, kOfxParamTypePushButton, kOfxParamTypeRGB, kOfxParamTypeString,
    kOfxPluginPropParamPageOrder,
};
use sam2_engine::matte::{DEFAULT_EPSILON, EdgeRefinement, GuideChannels, MatteSettings};
use sam2_engine::model::Precision;
use sam2_engine::model::device::Device;

use crate::error::{PluginError, Result};
use crate::ffi::params::{Param, ParamSet};
use crate::ffi::props::PropSet;
use crate::render::{Look, OutputMode};
use crate::tracker::{DEFAULT_RENDER_REACH, MAX_OBJECTS};

/// Default frame-cache budget (MiB): about 50 frames of the 1024 models.
pub const DEFAULT_MEMORY_BUDGET_MIB: i32 = 1024;

/// The smallest frame-cache budget (MiB) the parameter allows.
const MIN_MEMORY_BUDGET_MIB: i32 = 64;

/// The device choice, in the order of its options.
pub const DEVICES: [(Device, &str); 3] = [
    (Device::Auto, "Auto (GPU when available)"),
    (Device::Cpu, "CPU"),
    (Device::Gpu, "GPU"),
];

/// The precision choice, in the order of its options. Exact is the default: the fast set's bound
/// is proved per model by ./bench.sh, and a model directory may have no fast set at all.
pub const PRECISIONS: [(Precision, &str); 2] = [
    (Precision::Exact, "Exact"),
    (Precision::Fast, "Fast (quantized)"),
];

/// The Refine Edges choice, in the order of its options: off, or the guide's channels.
pub const REFINE_EDGES: [(Option<GuideChannels>, &str); 3] = [
    (None, "Off"),
    (Some(GuideChannels::Colour), "Colour"),
    (Some(GuideChannels::Luminance), "Luminance"),
];

/// The smallest ε the Edge Epsilon parameter allows.
const MIN_EDGE_EPSILON: f64 = 1e-6;

/// Default object colours (overlay, outlines).
const PALETTE: [[f64; 3]; MAX_OBJECTS as usize] = [
    [0.95, 0.26, 0.21],
    [0.13, 0.59, 0.95],
    [0.30, 0.69, 0.31],
    [1.00, 0.76, 0.03],
    [0.61, 0.15, 0.69],
    [0.00, 0.74, 0.83],
    [1.00, 0.34, 0.13],
    [0.91, 0.12, 0.39],
];

// ---------------------------------------------------------------------------------------------
// The tables.

/// The pages, in the order hosts show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Prompts,
    Matte,
    Model,
    Cache,
}

impl Page {
    pub const ALL: [Page; 4] = [Page::Prompts, Page::Matte, Page::Model, Page::Cache];

    pub fn name(self) -> &'static CStr {
        match self {
            Page::Prompts => c"promptsPage",
            Page::Matte => c"mattePage",
            Page::Model => c"modelPage",
            Page::Cache => c"cachePage",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Page::Prompts => "Prompts",
            Page::Matte => "Matte",
            Page::Model => "Model",
            Page::Cache => "Cache",
        }
    }
}

/// The options of a choice parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choices {
    /// "Object 1" … "Object 8".
    Objects,
    /// [`OutputMode::ALL`].
    OutputModes,
    /// [`DEVICES`].
    Devices,
    /// [`PRECISIONS`].
    Precisions,
    /// [`REFINE_EDGES`].
    RefineEdges,
}

impl Choices {
    fn labels(self) -> Vec<String> {
        match self {
            Choices::Objects => (1..=MAX_OBJECTS).map(default_object_name).collect(),
            Choices::OutputModes => OutputMode::ALL
                .iter()
                .map(|m| m.label().to_string())
                .collect(),
            Choices::Devices => DEVICES.iter().map(|(_, l)| (*l).to_string()).collect(),
            Choices::Precisions => PRECISIONS.iter().map(|(_, l)| (*l).to_string()).collect(),
            Choices::RefineEdges => REFINE_EDGES.iter().map(|(_, l)| (*l).to_string()).collect(),
        }
    }
}

/// How a string parameter is edited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMode {
    SingleLine,
    Directory,
    /// A file the effect writes (it need not exist yet).
    OutputFile,
}

/// A parameter's type, with its default and range. Object parameters' defaults depend on the
/// object ([`ObjectField`]): a group is labelled with the object's default name and the first is
/// open, a name defaults to that name, a colour to the object's palette colour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Pressing a button changes no value and must not re-render by itself.
    Button,
    Choice {
        choices: Choices,
        default: i32,
    },
    Bool {
        default: bool,
    },
    Int {
        default: i32,
        range: [i32; 2],
        display: [i32; 2],
    },
    Double {
        default: f64,
        range: [f64; 2],
        display: [f64; 2],
        /// The host's slider step and the digits it shows.
        increment: f64,
        digits: i32,
    },
    /// Default: empty, or the object's name.
    Text {
        mode: TextMode,
    },
    /// Default: the object's palette colour.
    Rgb,
    /// An object's group.
    Group,
}

/// OpenFX parameter properties beyond the kind; `None` leaves the host's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    pub animates: Option<bool>,
    pub secret: bool,
    pub persistent: Option<bool>,
    pub can_undo: Option<bool>,
    pub enabled: Option<bool>,
    pub evaluate_on_change: Option<bool>,
}

/// The host's defaults.
const HOST: Flags = Flags {
    animates: None,
    secret: false,
    persistent: None,
    can_undo: None,
    enabled: None,
    evaluate_on_change: None,
};

/// A setting that does not animate.
const STILL: Flags = Flags {
    animates: Some(false),
    ..HOST
};

/// The instance's own parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    SelectedObject,
    TrackForward,
    TrackBackward,
    TrackBoth,
    ClearAfter,
    ClearFrame,
    ClearAll,
    Status,
    /// Hidden: bumped after work that changes the output without changing a visible parameter
    /// (tracking, clearing a track), so the host drops the frames it cached.
    Revision,
    OutputMode,
    Premultiply,
    OverlayOpacity,
    RefineEdges,
    EdgeRadius,
    EdgeEpsilon,
    Threshold,
    Softness,
    Feather,
    Expand,
    FillHoles,
    RemoveSpecks,
    ModelDirectory,
    Device,
    Precision,
    LinearSource,
    MemoryBudget,
    TrackOnRender,
    /// Frames in the clip when the host does not say (MLT shows an effect no frame range).
    ClipLength,
    /// The track cache file (empty: none until Track Into Cache picks one).
    TrackCacheFile,
    TrackIntoCache,
    ExportScript,
}

/// One of the instance's parameters, declared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    pub id: Id,
    /// The name projects save.
    pub name: &'static CStr,
    /// The page it is a child of (none: hidden).
    pub page: Option<Page>,
    pub label: &'static str,
    pub hint: &'static str,
    pub kind: Kind,
    pub flags: Flags,
}

/// An entry of [`TABLE`], in the order parameters are defined (hosts without pages show them in
/// that order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Entry {
    One(Spec),
    /// Every object's group and parameters ([`OBJECT_TABLE`]), object by object.
    Objects,
}

const fn button(id: Id, name: &'static CStr, label: &'static str, hint: &'static str) -> Entry {
    Entry::One(Spec {
        id,
        name,
        page: Some(Page::Prompts),
        label,
        hint,
        kind: Kind::Button,
        flags: HOST,
    })
}

/// Every parameter of the instance, once.
pub const TABLE: [Entry; 32] = [
    // Prompts page.
    Entry::One(Spec {
        id: Id::SelectedObject,
        name: c"selectedObject",
        page: Some(Page::Prompts),
        label: "Selected Object",
        hint: "The object that clicks and boxes in the viewer go to, and that \"Selected object only\" outputs.",
        kind: Kind::Choice {
            choices: Choices::Objects,
            default: 0,
        },
        flags: STILL,
    }),
    button(
        Id::TrackForward,
        c"trackForward",
        "Track Forward",
        "Tracks every object from the current frame to the end of the clip.",
    ),
    button(
        Id::TrackBackward,
        c"trackBackward",
        "Track Backward",
        "Tracks every object from the current frame back to the start of the clip.",
    ),
    button(
        Id::TrackBoth,
        c"trackBoth",
        "Track Both Ways",
        "Tracks every object from the current frame to both ends of the clip.",
    ),
    button(
        Id::ClearAfter,
        c"clearTrackAfter",
        "Clear Track After",
        "Forgets the tracked mattes after the current frame (prompts stay).",
    ),
    button(
        Id::ClearFrame,
        c"clearFrame",
        "Clear Frame",
        "Removes the selected object's points and box on the current frame.",
    ),
    button(
        Id::ClearAll,
        c"clearAll",
        "Clear All",
        "Removes every prompt of every object, and their tracks.",
    ),
    Entry::One(Spec {
        id: Id::Status,
        name: c"status",
        page: Some(Page::Prompts),
        label: "Status",
        hint: "The model in use, the frames tracked and the frame cache.",
        kind: Kind::Text {
            mode: TextMode::SingleLine,
        },
        // Read-only, not saved, and no render or undo step when the effect updates it.
        flags: Flags {
            enabled: Some(false),
            persistent: Some(false),
            evaluate_on_change: Some(false),
            can_undo: Some(false),
            ..STILL
        },
    }),
    Entry::Objects,
    Entry::One(Spec {
        id: Id::Revision,
        name: c"revision",
        page: None,
        label: "Revision",
        hint: "",
        kind: Kind::Int {
            default: 0,
            range: [0, i32::MAX],
            display: [0, 100],
        },
        flags: Flags {
            secret: true,
            can_undo: Some(false),
            persistent: Some(false),
            ..STILL
        },
    }),
    // Matte page.
    Entry::One(Spec {
        id: Id::OutputMode,
        name: c"outputMode",
        page: Some(Page::Matte),
        label: "Output",
        hint: "What the effect outputs: the source with the matte as alpha, the matte alone, a tinted overlay, an ID matte (each pixel holds its object's number), or the selected object's matte.",
        kind: Kind::Choice {
            choices: Choices::OutputModes,
            default: 0,
        },
        flags: STILL,
    }),
    Entry::One(Spec {
        id: Id::Premultiply,
        name: c"premultiply",
        page: Some(Page::Matte),
        label: "Premultiply",
        hint: "Multiplies the source's colour by the matte in the source + matte outputs.",
        kind: Kind::Bool { default: false },
        flags: STILL,
    }),
    Entry::One(Spec {
        id: Id::OverlayOpacity,
        name: c"overlayOpacity",
        page: Some(Page::Matte),
        label: "Overlay Opacity",
        hint: "How strongly the overlay output tints each object.",
        kind: Kind::Double {
            default: 0.5,
            range: [0.0, 1.0],
            display: [0.0, 1.0],
            increment: 0.1,
            digits: 2,
        },
        flags: HOST,
    }),
    Entry::One(Spec {
        id: Id::RefineEdges,
        name: c"refineEdges",
        page: Some(Page::Matte),
        label: "Refine Edges",
        hint: "Makes the matte's edge follow the source's edges: SAM 2's mask is 256×256 for the whole frame, so its upsampled edge is blurred; a guided filter with the source as the guide sharpens it into a soft alpha (Softness 1 shows it as it is). Colour follows edges between colours of equal brightness; Luminance is faster. Off: SAM 2's upsampled mask.",
        kind: Kind::Choice {
            choices: Choices::RefineEdges,
            default: 0,
        },
        flags: STILL,
    }),
    Entry::One(Spec {
        id: Id::EdgeRadius,
        name: c"edgeRadius",
        page: Some(Page::Matte),
        label: "Edge Radius",
        hint: "How far, in pixels, Refine Edges looks for the source's edge around the mask's. 0: automatic, 8 pixels per 1024 of the frame's longer side (15 at 1080p, 30 at 4K).",
        kind: Kind::Double {
            default: 0.0,
            range: [0.0, 500.0],
            display: [0.0, 100.0],
            increment: 1.0,
            digits: 1,
        },
        flags: HOST,
    }),
    Entry::One(Spec {
        id: Id::EdgeEpsilon,
        name: c"edgeEpsilon",
        page: Some(Page::Matte),
        label: "Edge Epsilon",
        hint: "How strong an edge of the source must be for Refine Edges to follow it (a variance of the source's values in 0–1): larger values follow only stronger edges and ignore grain.",
        kind: Kind::Double {
            default: DEFAULT_EPSILON as f64,
            range: [MIN_EDGE_EPSILON, 0.1],
            display: [MIN_EDGE_EPSILON, 0.01],
            increment: 1e-5,
            digits: 6,
        },
        flags: HOST,
    }),
    Entry::One(Spec {
        id: Id::Threshold,
        name: c"threshold",
        page: Some(Page::Matte),
        label: "Threshold",
        hint: "The mask logit above which a pixel belongs to the object: 0 is SAM 2's own; higher tightens the matte, lower loosens it.",
        kind: Kind::Double {
            default: 0.0,
            range: [-100.0, 100.0],
            display: [-10.0, 10.0],
            increment: 0.1,
            digits: 2,
        },
        flags: HOST,
    }),
    Entry::One(Spec {
        id: Id::Softness,
        name: c"softness",
        page: Some(Page::Matte),
        label: "Softness",
        hint: "Edge softness in logits: 0 is a hard matte, 1 is the model's own probability.",
        kind: Kind::Double {
            default: 0.0,
            range: [0.0, 100.0],
            display: [0.0, 5.0],
            increment: 0.1,
            digits: 2,
        },
        flags: HOST,
    }),
    Entry::One(Spec {
        id: Id::Feather,
        name: c"feather",
        page: Some(Page::Matte),
        label: "Feather",
        hint: "Blurs the matte's edge over about this many pixels.",
        kind: Kind::Double {
            default: 0.0,
            range: [0.0, 500.0],
            display: [0.0, 50.0],
            increment: 0.1,
            digits: 2,
        },
        flags: HOST,
    }),
    Entry::One(Spec {
        id: Id::Expand,
        name: c"chokeExpand",
        page: Some(Page::Matte),
        label: "Choke / Expand",
        hint: "Grows the matte by this many pixels, or chokes it when negative.",
        kind: Kind::Int {
            default: 0,
            range: [-500, 500],
            display: [-50, 50],
        },
        flags: HOST,
    }),
    Entry::One(Spec {
        id: Id::FillHoles,
        name: c"fillHoles",
        page: Some(Page::Matte),
        label: "Fill Holes",
        hint: "Fills holes in the matte smaller than this many pixels (0: off).",
        kind: Kind::Int {
            default: 0,
            range: [0, i32::MAX],
            display: [0, 10_000],
        },
        flags: HOST,
    }),
    Entry::One(Spec {
        id: Id::RemoveSpecks,
        name: c"removeSpecks",
        page: Some(Page::Matte),
        label: "Remove Specks",
        hint: "Removes islands of matte smaller than this many pixels (0: off).",
        kind: Kind::Int {
            default: 0,
            range: [0, i32::MAX],
            display: [0, 10_000],
        },
        flags: HOST,
    }),
    // Model page.
    Entry::One(Spec {
        id: Id::ModelDirectory,
        name: c"modelDirectory",
        page: Some(Page::Model),
        label: "Model Directory",
        hint: "A SAM 2 model exported with bundle/exporter; empty: the model shipped in the plugin bundle (Contents/Resources/models).",
        kind: Kind::Text {
            mode: TextMode::Directory,
        },
        flags: Flags {
            can_undo: Some(true),
            ..STILL
        },
    }),
    Entry::One(Spec {
        id: Id::Device,
        name: c"device",
        page: Some(Page::Model),
        label: "Device",
        hint: "Where SAM 2 runs. Auto: a GPU when ONNX Runtime has one, else the CPU. GPU: a GPU or an error.",
        kind: Kind::Choice {
            choices: Choices::Devices,
            default: 0,
        },
        flags: STILL,
    }),
    Entry::One(Spec {
        id: Id::Precision,
        name: c"precision",
        page: Some(Page::Model),
        label: "Precision",
        hint: "Exact: the model's graphs as exported, at parity with the official SAM 2. Fast: the model's fast set for where it runs (made by bundle/exporter/py fast): on a CPU the int8 image encoder, about 1.3× faster; on a GPU the float16 graphs. Masks differ slightly from exact; a model without the set says so.",
        kind: Kind::Choice {
            choices: Choices::Precisions,
            default: 0,
        },
        flags: STILL,
    }),
    Entry::One(Spec {
        id: Id::LinearSource,
        name: c"linearSource",
        page: Some(Page::Model),
        label: "Source Is Linear",
        hint: "Encodes the source to sRGB before SAM 2 sees it; turn on for scene-linear sources (SAM 2 was trained on display images).",
        kind: Kind::Bool { default: false },
        flags: STILL,
    }),
    // Cache page.
    Entry::One(Spec {
        id: Id::MemoryBudget,
        name: c"memoryBudget",
        page: Some(Page::Cache),
        label: "Memory Budget (MiB)",
        hint: "Memory for encoded frames (about 20 MiB each at 1024). A change applies when the clip's session is next created (new model or source).",
        kind: Kind::Int {
            default: DEFAULT_MEMORY_BUDGET_MIB,
            range: [MIN_MEMORY_BUDGET_MIB, 1 << 20],
            display: [256, 16_384],
        },
        flags: STILL,
    }),
    Entry::One(Spec {
        id: Id::TrackOnRender,
        name: c"trackOnRender",
        page: Some(Page::Cache),
        label: "Track On Render (frames)",
        hint: "A render of an untracked frame tracks from the nearest tracked or prompted frame when it is at most this many frames away; farther frames need a Track button. 0: never.",
        kind: Kind::Int {
            default: DEFAULT_RENDER_REACH as i32,
            range: [0, 1000],
            display: [0, 50],
        },
        flags: STILL,
    }),
    Entry::One(Spec {
        id: Id::ClipLength,
        name: c"clipLength",
        page: Some(Page::Cache),
        label: "Clip Length (frames)",
        hint: "Frames in the source clip, for hosts that do not say (MLT: melt, Kdenlive, Shotcut). 0: the host's frame range or effect duration; without either, tracking goes on open-ended, exact for clips of 16 frames or more.",
        kind: Kind::Int {
            default: 0,
            range: [0, 10_000_000],
            display: [0, 10_000],
        },
        flags: STILL,
    }),
    Entry::One(Spec {
        id: Id::TrackCacheFile,
        name: c"trackCacheFile",
        page: Some(Page::Cache),
        label: "Track Cache File",
        hint: "A file holding the tracked mattes of the whole clip (Track Whole Clip Into Cache writes it; the CLI's track --cache can too). A frame it covers renders from it alone, with no model, in any process: batch renders and render farms. Used only while it matches the prompts, the model and the source; otherwise a message says why. Empty: Track Whole Clip Into Cache picks a file in your cache folder (docs/plugin.md).",
        kind: Kind::Text {
            mode: TextMode::OutputFile,
        },
        flags: Flags {
            can_undo: Some(true),
            ..STILL
        },
    }),
    Entry::One(Spec {
        id: Id::TrackIntoCache,
        name: c"trackIntoCache",
        page: Some(Page::Cache),
        label: "Track Whole Clip Into Cache",
        hint: "Tracks every object over the whole clip from its prompts (forward from the first prompted frame, then back) into the Track Cache File, replacing the cache there, and writes the prompts beside it as an interaction script (FILE.script.json) for the CLI.",
        kind: Kind::Button,
        flags: HOST,
    }),
    Entry::One(Spec {
        id: Id::ExportScript,
        name: c"exportScript",
        page: Some(Page::Cache),
        label: "Export Tracking Script",
        hint: "Writes the prompts as an interaction script beside the Track Cache File (FILE.script.json), for a headless tracking job: sam2-rotoscope track --script FILE.script.json --clip CLIP --cache FILE writes the cache this effect renders from.",
        kind: Kind::Button,
        flags: HOST,
    }),
];

/// The parameters every object has, named `object<n><suffix>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectField {
    Group,
    Name,
    Colour,
    Enabled,
    Prompts,
}

impl ObjectField {
    fn suffix(self) -> &'static str {
        match self {
            ObjectField::Group => "Group",
            ObjectField::Name => "Name",
            ObjectField::Colour => "Colour",
            ObjectField::Enabled => "Enabled",
            ObjectField::Prompts => "Prompts",
        }
    }
}

/// One of every object's parameters, declared (its group is its parent, the group is on the
/// Prompts page).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectSpec {
    pub field: ObjectField,
    /// Groups are labelled with the object's default name instead.
    pub label: &'static str,
    pub hint: &'static str,
    pub kind: Kind,
    pub flags: Flags,
}

/// Every object's parameters, once.
pub const OBJECT_TABLE: [ObjectSpec; 5] = [
    ObjectSpec {
        field: ObjectField::Group,
        label: "",
        hint: "",
        kind: Kind::Group,
        flags: HOST,
    },
    ObjectSpec {
        field: ObjectField::Name,
        label: "Name",
        hint: "The object's name, used in messages.",
        kind: Kind::Text {
            mode: TextMode::SingleLine,
        },
        flags: STILL,
    },
    ObjectSpec {
        field: ObjectField::Colour,
        label: "Colour",
        hint: "The object's colour in the overlay and the viewer.",
        kind: Kind::Rgb,
        flags: STILL,
    },
    ObjectSpec {
        field: ObjectField::Enabled,
        label: "Enabled",
        hint: "Tracks and outputs this object; when off its prompts are kept but it is not tracked.",
        kind: Kind::Bool { default: true },
        flags: STILL,
    },
    // The prompts: saved with the project, undoable, and *not* secret: batch and scripting hosts
    // (MLT XML and filter properties, Nuke Python, Resolve scripting) set them by name, and MLT
    // skips secret parameters altogether.
    ObjectSpec {
        field: ObjectField::Prompts,
        label: "Prompts (JSON)",
        hint: "The object's points and boxes by frame, as JSON (docs/plugin.md); the viewer's overlay edits it. Settable by scripts and batch hosts.",
        kind: Kind::Text {
            mode: TextMode::SingleLine,
        },
        flags: Flags {
            secret: false,
            persistent: Some(true),
            can_undo: Some(true),
            ..STILL
        },
    },
];

/// The instance's parameters as declared.
pub fn specs() -> impl Iterator<Item = &'static Spec> {
    TABLE.iter().filter_map(|e| match e {
        Entry::One(spec) => Some(spec),
        Entry::Objects => None,
    })
}

/// The declaration of parameter `id`.
pub fn spec(id: Id) -> Result<&'static Spec> {
    specs()
        .find(|s| s.id == id)
        .ok_or_else(|| PluginError::Internal(format!("the parameter {id:?} is not declared")))
}

/// The parameter of the instance named `name` (a button pressed, a value changed).
pub fn find(name: &str) -> Option<Id> {
    specs()
        .find(|s| s.name.to_bytes() == name.as_bytes())
        .map(|s| s.id)
}

/// The name of object `slot`'s parameter `field` (e.g. `object3Prompts`).
pub fn object_param(slot: u32, field: ObjectField) -> CString {
    // Digits and ASCII letters hold no NUL.
    CString::new(format!("object{slot}{}", field.suffix())).unwrap_or_default()
}

/// The default name of object `slot`.
pub fn default_object_name(slot: u32) -> String {
    format!("Object {slot}")
}

// ---------------------------------------------------------------------------------------------
// Definitions (describe in context), from the tables.

/// A parameter as the host gets it: a declaration made concrete for one object, or as it is.
struct Definition<'a> {
    name: &'a CStr,
    label: &'a str,
    hint: &'a str,
    parent: Option<&'a CStr>,
    kind: Kind,
    flags: Flags,
    /// String default (empty but for object names).
    text: &'a str,
    /// RGB default (object colours).
    colour: [f64; 3],
    /// Groups: open in the host's panel.
    open: bool,
}

fn set_bool(props: PropSet, name: &CStr, value: Option<bool>) {
    if let Some(v) = value {
        props.set_int(name, 0, i32::from(v));
    }
}

fn define(set: ParamSet, d: &Definition) -> Result<()> {
    let kind = match d.kind {
        Kind::Button => kOfxParamTypePushButton,
        Kind::Choice { .. } => kOfxParamTypeChoice,
        Kind::Bool { .. } => kOfxParamTypeBoolean,
        Kind::Int { .. } => kOfxParamTypeInteger,
        Kind::Double { .. } => kOfxParamTypeDouble,
        Kind::Text { .. } => kOfxParamTypeString,
        Kind::Rgb => kOfxParamTypeRGB,
        Kind::Group => kOfxParamTypeGroup,
    };
    let p = set
        .define(kind, d.name)
        .ok_or_else(|| PluginError::HostRefused {
            what: format!("define the parameter {}", d.name.to_string_lossy()),
        })?;
    p.set_string(kOfxPropLabel, 0, d.label);
    p.set_string(kOfxParamPropHint, 0, d.hint);
    p.set_string(kOfxParamPropScriptName, 0, &d.name.to_string_lossy());
    if let Some(parent) = d.parent {
        p.set_string(kOfxParamPropParent, 0, &parent.to_string_lossy());
    }
    match d.kind {
        Kind::Button => {
            p.set_int(kOfxParamPropEvaluateOnChange, 0, 0);
            p.set_int(kOfxParamPropCanUndo, 0, 0);
        }
        Kind::Choice { choices, default } => {
            let labels = choices.labels();
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            p.set_strings(kOfxParamPropChoiceOption, &labels);
            p.set_int(kOfxParamPropDefault, 0, default);
        }
        Kind::Bool { default } => {
            p.set_int(kOfxParamPropDefault, 0, i32::from(default));
        }
        Kind::Int {
            default,
            range,
            display,
        } => {
            p.set_int(kOfxParamPropDefault, 0, default);
            p.set_int(kOfxParamPropMin, 0, range[0]);
            p.set_int(kOfxParamPropMax, 0, range[1]);
            p.set_int(kOfxParamPropDisplayMin, 0, display[0]);
            p.set_int(kOfxParamPropDisplayMax, 0, display[1]);
        }
        Kind::Double {
            default,
            range,
            display,
            increment,
            digits,
        } => {
            p.set_string(
                kOfxParamPropDoubleType,
                0,
                &kOfxParamDoubleTypePlain.to_string_lossy(),
            );
            p.set_double(kOfxParamPropDefault, 0, default);
            p.set_double(kOfxParamPropMin, 0, range[0]);
            p.set_double(kOfxParamPropMax, 0, range[1]);
            p.set_double(kOfxParamPropDisplayMin, 0, display[0]);
            p.set_double(kOfxParamPropDisplayMax, 0, display[1]);
            p.set_double(kOfxParamPropIncrement, 0, increment);
            p.set_int(kOfxParamPropDigits, 0, digits);
        }
        Kind::Text { mode } => {
            let kind = match mode {
                TextMode::SingleLine => kOfxParamStringIsSingleLine,
                TextMode::Directory => kOfxParamStringIsDirectoryPath,
                TextMode::OutputFile => kOfxParamStringIsFilePath,
            };
            p.set_string(kOfxParamPropDefault, 0, d.text);
            p.set_string(kOfxParamPropStringMode, 0, &kind.to_string_lossy());
            if mode == TextMode::OutputFile {
                p.set_int(kOfxParamPropStringFilePathExists, 0, 0);
            }
        }
        Kind::Rgb => {
            p.set_doubles(kOfxParamPropDefault, &d.colour);
        }
        Kind::Group => {
            p.set_int(kOfxParamPropGroupOpen, 0, i32::from(d.open));
        }
    }
    let f = d.flags;
    set_bool(p, kOfxParamPropAnimates, f.animates);
    if f.secret {
        p.set_int(kOfxParamPropSecret, 0, 1);
    }
    set_bool(p, kOfxParamPropPersistant, f.persistent);
    set_bool(p, kOfxParamPropCanUndo, f.can_undo);
    set_bool(p, kOfxParamPropEnabled, f.enabled);
    set_bool(p, kOfxParamPropEvaluateOnChange, f.evaluate_on_change);
    Ok(())
}

/// Defines object `slot`'s group and parameters; returns the group's name.
fn define_object(set: ParamSet, slot: u32) -> Result<CString> {
    let group = object_param(slot, ObjectField::Group);
    let name = default_object_name(slot);
    let colour = PALETTE
        .get(slot as usize - 1)
        .copied()
        .ok_or_else(|| PluginError::Internal(format!("no palette colour for object {slot}")))?;
    for spec in &OBJECT_TABLE {
        let param = object_param(slot, spec.field);
        let is_group = spec.field == ObjectField::Group;
        define(
            set,
            &Definition {
                name: &param,
                label: if is_group { &name } else { spec.label },
                hint: spec.hint,
                parent: (!is_group).then_some(group.as_c_str()),
                kind: spec.kind,
                flags: spec.flags,
                text: if spec.field == ObjectField::Name {
                    &name
                } else {
                    ""
                },
                colour,
                open: slot == 1,
            },
        )?;
    }
    Ok(group)
}

/// Defines every parameter and the pages (describe in context).
pub fn describe(set: ParamSet, effect_props: PropSet) -> Result<()> {
    let mut children: Vec<(Page, CString)> = Vec::new();
    for entry in &TABLE {
        match entry {
            Entry::One(spec) => {
                define(
                    set,
                    &Definition {
                        name: spec.name,
                        label: spec.label,
                        hint: spec.hint,
                        parent: None,
                        kind: spec.kind,
                        flags: spec.flags,
                        text: "",
                        colour: [1.0; 3],
                        open: false,
                    },
                )?;
                if let Some(page) = spec.page {
                    children.push((page, spec.name.to_owned()));
                }
            }
            Entry::Objects => {
                for slot in 1..=MAX_OBJECTS {
                    children.push((Page::Prompts, define_object(set, slot)?));
                }
            }
        }
    }
    for page in Page::ALL {
        let p =
            set.define(kOfxParamTypePage, page.name())
                .ok_or_else(|| PluginError::HostRefused {
                    what: format!("define the page {}", page.name().to_string_lossy()),
                })?;
        p.set_string(kOfxPropLabel, 0, page.label());
        p.set_string(kOfxParamPropHint, 0, "");
        p.set_string(kOfxParamPropScriptName, 0, &page.name().to_string_lossy());
        let names: Vec<String> = children
            .iter()
            .filter(|(on, _)| *on == page)
            .map(|(_, c)| c.to_string_lossy().into_owned())
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        p.set_strings(kOfxParamPropPageChild, &names);
    }
    if let Some(props) = set.props() {
        let pages: Vec<String> = Page::ALL
            .iter()
            .map(|p| p.name().to_string_lossy().into_owned())
            .collect();
        let pages: Vec<&str> = pages.iter().map(String::as_str).collect();
        props.set_strings(kOfxPluginPropParamPageOrder, &pages);
    }
    // The output's premultiplication follows these.
    let slaves = [spec(Id::OutputMode)?.name, spec(Id::Premultiply)?.name]
        .map(|n| n.to_string_lossy().into_owned());
    effect_props.set_strings(
        kOfxImageEffectPropClipPreferencesSlaveParam,
        &[slaves[0].as_str(), slaves[1].as_str()],
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Instances: handles fetched once, values read at a time.

/// One object's parameters.
#[derive(Debug, Clone, Copy)]
pub struct ObjectParams {
    pub slot: u32,
    pub name: Param,
    pub colour: Param,
    pub enabled: Param,
    pub prompts: Param,
}

/// Every parameter of an instance.
#[derive(Debug, Clone)]
pub struct Params {
    pub set: ParamSet,
    handles: Vec<(Id, Param)>,
    pub objects: Vec<ObjectParams>,
}

/// One object's values.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectValues {
    pub slot: u32,
    pub name: String,
    pub colour: [f32; 3],
    pub enabled: bool,
}

/// The parameter values a render or a button needs, at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Values {
    pub look: Look,
    pub matte: MatteSettings,
    /// Refine Edges, at full resolution (`None`: off).
    pub refinement: Option<EdgeRefinement>,
    pub objects: Vec<ObjectValues>,
    pub model_directory: String,
    pub device: Device,
    pub precision: Precision,
    pub linear_source: bool,
    pub cache_bytes: usize,
    pub reach: usize,
    /// The Clip Length parameter: `None` when 0 (the host says).
    pub clip_length: Option<usize>,
    /// The Track Cache File (`None`: empty).
    pub track_cache: Option<std::path::PathBuf>,
}

impl Values {
    pub fn selected(&self) -> u32 {
        self.look.selected
    }

    pub fn object(&self, slot: u32) -> Option<&ObjectValues> {
        self.objects.iter().find(|o| o.slot == slot)
    }

    /// Object `slot`'s name (its default name when it has none).
    pub fn object_name(&self, slot: u32) -> String {
        self.object(slot)
            .map_or_else(|| default_object_name(slot), |o| o.name.clone())
    }
}

/// Refine Edges from its three parameters (`None`: off). An index beyond the options (a project
/// saved by a newer plugin) reads as off; a radius of 0 (or below the range) as automatic, one
/// under a pixel as the filter's smallest window; ε at least the parameter's minimum.
fn refinement(choice: i32, radius: f64, epsilon: f64) -> Option<EdgeRefinement> {
    let guide = usize::try_from(choice)
        .ok()
        .and_then(|i| REFINE_EDGES.get(i))
        .and_then(|(g, _)| *g)?;
    Some(EdgeRefinement {
        guide,
        radius: (radius > 0.0).then(|| radius.max(1.0) as f32),
        epsilon: epsilon.max(MIN_EDGE_EPSILON) as f32,
    })
}

/// The parameter `name` could not be read.
fn unreadable(name: &CStr) -> PluginError {
    PluginError::UnreadableParameter {
        name: name.to_string_lossy().into_owned(),
    }
}

impl Params {
    /// Fetches every handle the tables declare; names what is missing otherwise.
    pub fn fetch(set: ParamSet) -> Result<Params> {
        let get = |name: &CStr| {
            set.param(name)
                .ok_or_else(|| PluginError::MissingParameter {
                    name: name.to_string_lossy().into_owned(),
                })
        };
        let handles = specs()
            .map(|s| Ok((s.id, get(s.name)?)))
            .collect::<Result<Vec<_>>>()?;
        let objects = (1..=MAX_OBJECTS)
            .map(|slot| {
                Ok(ObjectParams {
                    slot,
                    name: get(&object_param(slot, ObjectField::Name))?,
                    colour: get(&object_param(slot, ObjectField::Colour))?,
                    enabled: get(&object_param(slot, ObjectField::Enabled))?,
                    prompts: get(&object_param(slot, ObjectField::Prompts))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Params {
            set,
            handles,
            objects,
        })
    }

    /// The handle of parameter `id`.
    pub fn get(&self, id: Id) -> Result<Param> {
        self.handles
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, p)| *p)
            .ok_or_else(|| PluginError::Internal(format!("the parameter {id:?} was not fetched")))
    }

    pub fn object(&self, slot: u32) -> Option<&ObjectParams> {
        self.objects.iter().find(|o| o.slot == slot)
    }

    fn int(&self, id: Id, time: f64) -> Result<i32> {
        self.get(id)?
            .int_at(time)
            .ok_or_else(|| unreadable(spec(id).map_or(c"", |s| s.name)))
    }

    fn double(&self, id: Id, time: f64) -> Result<f64> {
        let value = self
            .get(id)?
            .double_at(time)
            .ok_or_else(|| unreadable(spec(id).map_or(c"", |s| s.name)))?;
        if value.is_finite() {
            Ok(value)
        } else {
            Err(PluginError::Internal(format!(
                "the host gave {value} for {id:?}"
            )))
        }
    }

    fn string(&self, id: Id) -> Result<String> {
        self.get(id)?
            .string()
            .ok_or_else(|| unreadable(spec(id).map_or(c"", |s| s.name)))
    }

    /// The selected object's slot (1–8) at `time`.
    pub fn selected(&self, time: f64) -> Result<u32> {
        let index = self.int(Id::SelectedObject, time)?;
        // The choice has one option per object; the host keeps the index among them.
        Ok(u32::try_from(index).map_or(1, |i| (i + 1).clamp(1, MAX_OBJECTS)))
    }

    /// Object `slot`'s prompts parameter as it is now.
    pub fn prompts_text(&self, slot: u32) -> Result<String> {
        let param = self
            .object(slot)
            .ok_or_else(|| PluginError::Internal(format!("no object {slot}")))?;
        param
            .prompts
            .string()
            .ok_or_else(|| unreadable(&object_param(slot, ObjectField::Prompts)))
    }

    /// Reads the values at `time`.
    pub fn values(&self, time: f64) -> Result<Values> {
        let count = |id| self.int(id, time).map(|v| u32::try_from(v).unwrap_or(0));
        let look = Look {
            // An index beyond the options (a project saved by a newer plugin) shows the default.
            mode: OutputMode::from_index(self.int(Id::OutputMode, time)?),
            premultiply: self.int(Id::Premultiply, time)? != 0,
            selected: self.selected(time)?,
            overlay_opacity: self.double(Id::OverlayOpacity, time)?.clamp(0.0, 1.0) as f32,
        };
        // Negative counts and sizes are outside the parameters' ranges; they read as off.
        let matte = MatteSettings {
            threshold: self.double(Id::Threshold, time)? as f32,
            softness: self.double(Id::Softness, time)?.max(0.0) as f32,
            fill_holes_below: count(Id::FillHoles)?,
            remove_specks_below: count(Id::RemoveSpecks)?,
            expand: self.int(Id::Expand, time)?,
            feather: self.double(Id::Feather, time)?.max(0.0) as f32,
        };
        let refinement = match self.int(Id::RefineEdges, time)? {
            0 => None,
            choice => refinement(
                choice,
                self.double(Id::EdgeRadius, time)?,
                self.double(Id::EdgeEpsilon, time)?,
            ),
        };
        let objects =
            self.objects
                .iter()
                .map(|o| {
                    let colour = o
                        .colour
                        .rgb_at(time)
                        .ok_or_else(|| unreadable(&object_param(o.slot, ObjectField::Colour)))?
                        .map(|c| c as f32);
                    let name = o
                        .name
                        .string()
                        .ok_or_else(|| unreadable(&object_param(o.slot, ObjectField::Name)))?;
                    Ok(ObjectValues {
                        slot: o.slot,
                        // A cleared name: the object's default name, so messages still name it.
                        name: if name.trim().is_empty() {
                            default_object_name(o.slot)
                        } else {
                            name
                        },
                        colour,
                        enabled: o.enabled.bool_at(time).ok_or_else(|| {
                            unreadable(&object_param(o.slot, ObjectField::Enabled))
                        })?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
        // An index beyond the options (a project saved by a newer plugin): Auto.
        let device = usize::try_from(self.int(Id::Device, time)?)
            .ok()
            .and_then(|i| DEVICES.get(i))
            .map_or(Device::Auto, |(d, _)| *d);
        // Likewise: Exact.
        let precision = usize::try_from(self.int(Id::Precision, time)?)
            .ok()
            .and_then(|i| PRECISIONS.get(i))
            .map_or(Precision::Exact, |(p, _)| *p);
        let budget_mib = self
            .int(Id::MemoryBudget, time)?
            .max(MIN_MEMORY_BUDGET_MIB)
            .unsigned_abs() as usize;
        Ok(Values {
            look,
            matte,
            refinement,
            objects,
            model_directory: self.string(Id::ModelDirectory)?,
            device,
            precision,
            linear_source: self.int(Id::LinearSource, time)? != 0,
            cache_bytes: budget_mib.saturating_mul(1 << 20),
            // Below the parameter's range (0): never.
            reach: usize::try_from(self.int(Id::TrackOnRender, time)?).unwrap_or(0),
            clip_length: usize::try_from(self.int(Id::ClipLength, time)?)
                .ok()
                .filter(|&n| n > 0),
            track_cache: Some(self.string(Id::TrackCacheFile)?)
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .map(std::path::PathBuf::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: [ObjectField; 5] = [
        ObjectField::Group,
        ObjectField::Name,
        ObjectField::Colour,
        ObjectField::Enabled,
        ObjectField::Prompts,
    ];

    #[test]
    fn parameter_names_are_distinct_and_stable() {
        assert_eq!(
            object_param(3, ObjectField::Prompts).as_c_str(),
            c"object3Prompts"
        );
        let mut names: Vec<CString> = (1..=MAX_OBJECTS)
            .flat_map(|s| FIELDS.map(|f| object_param(s, f)))
            .chain(specs().map(|s| s.name.to_owned()))
            .chain(Page::ALL.map(|p| p.name().to_owned()))
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
        assert_eq!(PALETTE.len(), MAX_OBJECTS as usize);
        assert_eq!(
            OBJECT_TABLE.map(|s| s.field),
            FIELDS,
            "the object table declares each field once, in order"
        );
    }

    #[test]
    fn every_id_is_declared_once_and_found_by_its_name() {
        let ids: Vec<Id> = specs().map(|s| s.id).collect();
        for (i, id) in ids.iter().enumerate() {
            assert!(!ids[i + 1..].contains(id), "{id:?} twice");
            let s = spec(*id).unwrap();
            assert_eq!(find(&s.name.to_string_lossy()), Some(*id));
        }
        assert_eq!(ids.len(), 31);
        assert_eq!(find("object1Prompts"), None);
        assert_eq!(
            TABLE.iter().filter(|e| **e == Entry::Objects).count(),
            1,
            "the objects are defined in one place"
        );
    }

    #[test]
    fn refine_edges_reads_off_automatic_and_set_values() {
        assert_eq!(refinement(0, 5.0, 1e-3), None);
        assert_eq!(
            refinement(3, 5.0, 1e-3),
            None,
            "an option of a newer plugin"
        );
        assert_eq!(refinement(-1, 5.0, 1e-3), None);
        let auto = refinement(1, 0.0, f64::from(DEFAULT_EPSILON)).unwrap();
        assert_eq!(auto, EdgeRefinement::default());
        assert!(auto.validate().is_ok());
        let set = refinement(2, 0.25, 0.0).unwrap();
        assert_eq!(set.guide, GuideChannels::Luminance);
        assert_eq!(set.radius, Some(1.0));
        assert_eq!(set.epsilon, MIN_EDGE_EPSILON as f32);
        assert!(set.validate().is_ok());
        assert_eq!(refinement(1, 12.5, 0.01).unwrap().radius, Some(12.5));
    }

    #[test]
    fn the_saved_names_defaults_and_pages_are_the_released_ones() {
        // Projects save parameters by name: these must never change.
        let page_of = |p: Option<Page>| p.map(|p| p.name().to_string_lossy().into_owned());
        let got: Vec<(String, Option<String>)> = specs()
            .map(|s| (s.name.to_string_lossy().into_owned(), page_of(s.page)))
            .collect();
        let want = [
            ("selectedObject", Some("promptsPage")),
            ("trackForward", Some("promptsPage")),
            ("trackBackward", Some("promptsPage")),
            ("trackBoth", Some("promptsPage")),
            ("clearTrackAfter", Some("promptsPage")),
            ("clearFrame", Some("promptsPage")),
            ("clearAll", Some("promptsPage")),
            ("status", Some("promptsPage")),
            ("revision", None),
            ("outputMode", Some("mattePage")),
            ("premultiply", Some("mattePage")),
            ("overlayOpacity", Some("mattePage")),
            ("refineEdges", Some("mattePage")),
            ("edgeRadius", Some("mattePage")),
            ("edgeEpsilon", Some("mattePage")),
            ("threshold", Some("mattePage")),
            ("softness", Some("mattePage")),
            ("feather", Some("mattePage")),
            ("chokeExpand", Some("mattePage")),
            ("fillHoles", Some("mattePage")),
            ("removeSpecks", Some("mattePage")),
            ("modelDirectory", Some("modelPage")),
            ("device", Some("modelPage")),
            ("precision", Some("modelPage")),
            ("linearSource", Some("modelPage")),
            ("memoryBudget", Some("cachePage")),
            ("trackOnRender", Some("cachePage")),
            ("clipLength", Some("cachePage")),
            ("trackCacheFile", Some("cachePage")),
            ("trackIntoCache", Some("cachePage")),
            ("exportScript", Some("cachePage")),
        ]
        .map(|(n, p)| (n.to_string(), p.map(str::to_string)));
        assert_eq!(got, want);
        let default = |id| spec(id).unwrap().kind;
        // Exact unless a project chose fast: the fast set's bound is not proved for every model.
        assert_eq!(
            default(Id::Precision),
            Kind::Choice {
                choices: Choices::Precisions,
                default: 0
            }
        );
        assert_eq!(PRECISIONS[0].0, Precision::Exact);
        assert_eq!(
            default(Id::MemoryBudget),
            Kind::Int {
                default: 1024,
                range: [64, 1 << 20],
                display: [256, 16_384]
            }
        );
        assert!(matches!(
            default(Id::TrackOnRender),
            Kind::Int { default: 8, .. }
        ));
        assert!(matches!(
            default(Id::OverlayOpacity),
            Kind::Double { default: 0.5, .. }
        ));
        // Refine Edges is off unless asked for; its radius is automatic, its ε the engine's.
        assert_eq!(
            default(Id::RefineEdges),
            Kind::Choice {
                choices: Choices::RefineEdges,
                default: 0
            }
        );
        assert_eq!(REFINE_EDGES[0].0, None);
        assert!(matches!(
            default(Id::EdgeRadius),
            Kind::Double { default: 0.0, .. }
        ));
        assert!(matches!(
            default(Id::EdgeEpsilon),
            Kind::Double { default, .. } if default == f64::from(DEFAULT_EPSILON)
        ));
    }
}
