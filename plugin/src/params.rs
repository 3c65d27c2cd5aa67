//! The parameters: their identifiers (below, once), their definitions on four pages (describe),
//! their handles (fetched once per instance) and their values at a time (render, buttons).
//!
//! Pages: **Prompts** (the selected object, the Track and Clear buttons, the status line, and a
//! group per object: name, colour, enabled, and its prompts — a hidden string holding JSON, see
//! [`crate::prompts`]), **Matte** (output mode and finishing), **Model** (directory, device,
//! linear-light source) and **Cache** (memory budget, how far a render tracks on its own).

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
    kOfxParamPropStringMode, kOfxParamStringIsDirectoryPath, kOfxParamStringIsSingleLine,
    kOfxParamTypeBoolean, kOfxParamTypeChoice, kOfxParamTypeDouble, kOfxParamTypeGroup,
    kOfxParamTypeInteger, kOfxParamTypePage, kOfxParamTypePushButton, kOfxParamTypeRGB,
    kOfxParamTypeString, kOfxPluginPropParamPageOrder,
};
use sam2_engine::matte::MatteSettings;
use sam2_engine::model::device::Device;

use crate::ffi::params::{Param, ParamSet};
use crate::ffi::props::PropSet;
use crate::render::{Look, OutputMode};
use crate::tracker::{DEFAULT_RENDER_REACH, MAX_OBJECTS};

// Pages.
pub const PAGE_PROMPTS: &CStr = c"promptsPage";
pub const PAGE_MATTE: &CStr = c"mattePage";
pub const PAGE_MODEL: &CStr = c"modelPage";
pub const PAGE_CACHE: &CStr = c"cachePage";

// Prompts page.
pub const SELECTED_OBJECT: &CStr = c"selectedObject";
pub const TRACK_FORWARD: &CStr = c"trackForward";
pub const TRACK_BACKWARD: &CStr = c"trackBackward";
pub const TRACK_BOTH: &CStr = c"trackBoth";
pub const CLEAR_AFTER: &CStr = c"clearTrackAfter";
pub const CLEAR_FRAME: &CStr = c"clearFrame";
pub const CLEAR_ALL: &CStr = c"clearAll";
pub const STATUS: &CStr = c"status";

// Matte page.
pub const OUTPUT_MODE: &CStr = c"outputMode";
pub const PREMULTIPLY: &CStr = c"premultiply";
pub const OVERLAY_OPACITY: &CStr = c"overlayOpacity";
pub const THRESHOLD: &CStr = c"threshold";
pub const SOFTNESS: &CStr = c"softness";
pub const FEATHER: &CStr = c"feather";
pub const EXPAND: &CStr = c"chokeExpand";
pub const FILL_HOLES: &CStr = c"fillHoles";
pub const REMOVE_SPECKS: &CStr = c"removeSpecks";

// Model page.
pub const MODEL_DIRECTORY: &CStr = c"modelDirectory";
pub const DEVICE: &CStr = c"device";
pub const LINEAR_SOURCE: &CStr = c"linearSource";

// Cache page.
pub const MEMORY_BUDGET: &CStr = c"memoryBudget";
pub const TRACK_ON_RENDER: &CStr = c"trackOnRender";

/// Hidden: bumped after work that changes the output without changing a visible parameter
/// (tracking, clearing a track), so the host drops the frames it cached.
pub const REVISION: &CStr = c"revision";

/// Default frame-cache budget (MiB): about 50 frames of the 1024 models.
pub const DEFAULT_MEMORY_BUDGET_MIB: i32 = 1024;

/// The device choice, in the order of its options.
pub const DEVICES: [(Device, &str); 3] = [
    (Device::Auto, "Auto (GPU when available)"),
    (Device::Cpu, "CPU"),
    (Device::Gpu, "GPU"),
];

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

/// The name of object `slot`'s parameter `field` (e.g. `object3Prompts`).
pub fn object_param(slot: u32, field: ObjectField) -> CString {
    CString::new(format!("object{slot}{}", field.suffix())).unwrap_or_default()
}

/// The default name of object `slot`.
pub fn default_object_name(slot: u32) -> String {
    format!("Object {slot}")
}

// ---------------------------------------------------------------------------------------------
// Definitions (describe in context): one helper per kind.

/// What every parameter has.
struct Common<'a> {
    name: &'a CStr,
    label: &'a str,
    hint: &'a str,
    parent: Option<&'a CStr>,
}

fn common<'a>(name: &'a CStr, label: &'a str, hint: &'a str) -> Common<'a> {
    Common {
        name,
        label,
        hint,
        parent: None,
    }
}

/// `c` as a child of the group `parent`.
fn within<'a>(c: Common<'a>, parent: &'a CStr) -> Common<'a> {
    Common {
        parent: Some(parent),
        ..c
    }
}

/// Defines a parameter and sets what every kind shares.
fn define(set: ParamSet, kind: &CStr, c: &Common) -> Result<PropSet, String> {
    let props = set.define(kind, c.name).ok_or_else(|| {
        format!(
            "the host refused to define the parameter {}",
            c.name.to_string_lossy()
        )
    })?;
    props.set_string(kOfxPropLabel, 0, c.label);
    props.set_string(kOfxParamPropHint, 0, c.hint);
    props.set_string(kOfxParamPropScriptName, 0, &c.name.to_string_lossy());
    if let Some(parent) = c.parent {
        props.set_string(kOfxParamPropParent, 0, &parent.to_string_lossy());
    }
    Ok(props)
}

fn define_double(
    set: ParamSet,
    c: &Common,
    default: f64,
    range: [f64; 2],
    display: [f64; 2],
) -> Result<(), String> {
    let p = define(set, kOfxParamTypeDouble, c)?;
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
    p.set_double(kOfxParamPropIncrement, 0, 0.1);
    p.set_int(kOfxParamPropDigits, 0, 2);
    Ok(())
}

fn define_int(
    set: ParamSet,
    c: &Common,
    default: i32,
    range: [i32; 2],
    display: [i32; 2],
) -> Result<PropSet, String> {
    let p = define(set, kOfxParamTypeInteger, c)?;
    p.set_int(kOfxParamPropDefault, 0, default);
    p.set_int(kOfxParamPropMin, 0, range[0]);
    p.set_int(kOfxParamPropMax, 0, range[1]);
    p.set_int(kOfxParamPropDisplayMin, 0, display[0]);
    p.set_int(kOfxParamPropDisplayMax, 0, display[1]);
    Ok(p)
}

fn define_bool(set: ParamSet, c: &Common, default: bool) -> Result<PropSet, String> {
    let p = define(set, kOfxParamTypeBoolean, c)?;
    p.set_int(kOfxParamPropDefault, 0, i32::from(default));
    Ok(p)
}

fn define_choice(
    set: ParamSet,
    c: &Common,
    options: &[&str],
    default: i32,
) -> Result<PropSet, String> {
    let p = define(set, kOfxParamTypeChoice, c)?;
    p.set_strings(kOfxParamPropChoiceOption, options);
    p.set_int(kOfxParamPropDefault, 0, default);
    p.set_int(kOfxParamPropAnimates, 0, 0);
    Ok(p)
}

fn define_string(set: ParamSet, c: &Common, default: &str, mode: &CStr) -> Result<PropSet, String> {
    let p = define(set, kOfxParamTypeString, c)?;
    p.set_string(kOfxParamPropDefault, 0, default);
    p.set_string(kOfxParamPropStringMode, 0, &mode.to_string_lossy());
    p.set_int(kOfxParamPropAnimates, 0, 0);
    Ok(p)
}

fn define_rgb(set: ParamSet, c: &Common, default: [f64; 3]) -> Result<(), String> {
    let p = define(set, kOfxParamTypeRGB, c)?;
    p.set_doubles(kOfxParamPropDefault, &default);
    p.set_int(kOfxParamPropAnimates, 0, 0);
    Ok(())
}

fn define_button(set: ParamSet, c: &Common) -> Result<(), String> {
    let p = define(set, kOfxParamTypePushButton, c)?;
    // Pressing a button changes no value and must not re-render by itself.
    p.set_int(kOfxParamPropEvaluateOnChange, 0, 0);
    p.set_int(kOfxParamPropCanUndo, 0, 0);
    Ok(())
}

fn define_group(set: ParamSet, c: &Common, open: bool) -> Result<(), String> {
    let p = define(set, kOfxParamTypeGroup, c)?;
    p.set_int(kOfxParamPropGroupOpen, 0, i32::from(open));
    Ok(())
}

fn define_page(set: ParamSet, name: &CStr, label: &str, children: &[&CStr]) -> Result<(), String> {
    let p = define(set, kOfxParamTypePage, &common(name, label, ""))?;
    let names: Vec<String> = children
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    p.set_strings(kOfxParamPropPageChild, &names);
    Ok(())
}

/// Defines every parameter and the pages (describe in context).
pub fn describe(set: ParamSet, effect_props: PropSet) -> Result<(), String> {
    // Prompts page.
    let options: Vec<String> = (1..=MAX_OBJECTS).map(default_object_name).collect();
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    define_choice(
        set,
        &common(
            SELECTED_OBJECT,
            "Selected Object",
            "The object that clicks and boxes in the viewer go to, and that \"Selected object only\" outputs.",
        ),
        &options,
        0,
    )?;
    for (name, label, hint) in [
        (
            TRACK_FORWARD,
            "Track Forward",
            "Tracks every object from the current frame to the end of the clip.",
        ),
        (
            TRACK_BACKWARD,
            "Track Backward",
            "Tracks every object from the current frame back to the start of the clip.",
        ),
        (
            TRACK_BOTH,
            "Track Both Ways",
            "Tracks every object from the current frame to both ends of the clip.",
        ),
        (
            CLEAR_AFTER,
            "Clear Track After",
            "Forgets the tracked mattes after the current frame (prompts stay).",
        ),
        (
            CLEAR_FRAME,
            "Clear Frame",
            "Removes the selected object's points and box on the current frame.",
        ),
        (
            CLEAR_ALL,
            "Clear All",
            "Removes every prompt of every object, and their tracks.",
        ),
    ] {
        define_button(set, &common(name, label, hint))?;
    }
    let status = define_string(
        set,
        &common(
            STATUS,
            "Status",
            "The model in use, the frames tracked and the frame cache.",
        ),
        "",
        kOfxParamStringIsSingleLine,
    )?;
    status.set_int(kOfxParamPropEnabled, 0, 0);
    status.set_int(kOfxParamPropPersistant, 0, 0);
    status.set_int(kOfxParamPropEvaluateOnChange, 0, 0);
    status.set_int(kOfxParamPropCanUndo, 0, 0);
    let mut prompts_page: Vec<CString> = [
        SELECTED_OBJECT,
        TRACK_FORWARD,
        TRACK_BACKWARD,
        TRACK_BOTH,
        CLEAR_AFTER,
        CLEAR_FRAME,
        CLEAR_ALL,
        STATUS,
    ]
    .iter()
    .map(|c| (*c).to_owned())
    .collect();
    for slot in 1..=MAX_OBJECTS {
        let group = object_param(slot, ObjectField::Group);
        let label = default_object_name(slot);
        define_group(set, &common(&group, &label, ""), slot == 1)?;
        let name = object_param(slot, ObjectField::Name);
        let colour = object_param(slot, ObjectField::Colour);
        let enabled = object_param(slot, ObjectField::Enabled);
        let prompts = object_param(slot, ObjectField::Prompts);
        define_string(
            set,
            &within(
                common(&name, "Name", "The object's name, used in messages."),
                &group,
            ),
            &label,
            kOfxParamStringIsSingleLine,
        )?;
        define_rgb(
            set,
            &within(
                common(
                    &colour,
                    "Colour",
                    "The object's colour in the overlay and the viewer.",
                ),
                &group,
            ),
            PALETTE.get(slot as usize - 1).copied().unwrap_or([1.0; 3]),
        )?;
        let enabled_props = define_bool(
            set,
            &within(
                common(
                    &enabled,
                    "Enabled",
                    "Tracks and outputs this object; when off its prompts are kept but it is not tracked.",
                ),
                &group,
            ),
            true,
        )?;
        enabled_props.set_int(kOfxParamPropAnimates, 0, 0);
        // The prompts: hidden, saved with the project, undoable.
        let p = define_string(
            set,
            &within(
                common(
                    &prompts,
                    "Prompts",
                    "The object's points and boxes by frame (JSON).",
                ),
                &group,
            ),
            "",
            kOfxParamStringIsSingleLine,
        )?;
        p.set_int(kOfxParamPropSecret, 0, 1);
        p.set_int(kOfxParamPropPersistant, 0, 1);
        p.set_int(kOfxParamPropCanUndo, 0, 1);
        prompts_page.push(group);
    }
    let revision = define_int(
        set,
        &common(REVISION, "Revision", ""),
        0,
        [0, i32::MAX],
        [0, 100],
    )?;
    revision.set_int(kOfxParamPropSecret, 0, 1);
    revision.set_int(kOfxParamPropAnimates, 0, 0);
    revision.set_int(kOfxParamPropCanUndo, 0, 0);
    revision.set_int(kOfxParamPropPersistant, 0, 0);

    // Matte page.
    let modes: Vec<&str> = OutputMode::ALL.iter().map(|m| m.label()).collect();
    define_choice(
        set,
        &common(
            OUTPUT_MODE,
            "Output",
            "What the effect outputs: the source with the matte as alpha, the matte alone, a tinted overlay, an ID matte (each pixel holds its object's number), or the selected object's matte.",
        ),
        &modes,
        0,
    )?;
    define_bool(
        set,
        &common(
            PREMULTIPLY,
            "Premultiply",
            "Multiplies the source's colour by the matte in the source + matte outputs.",
        ),
        false,
    )?
    .set_int(kOfxParamPropAnimates, 0, 0);
    define_double(
        set,
        &common(
            OVERLAY_OPACITY,
            "Overlay Opacity",
            "How strongly the overlay output tints each object.",
        ),
        0.5,
        [0.0, 1.0],
        [0.0, 1.0],
    )?;
    define_double(
        set,
        &common(
            THRESHOLD,
            "Threshold",
            "The mask logit above which a pixel belongs to the object: 0 is SAM 2's own; higher tightens the matte, lower loosens it.",
        ),
        0.0,
        [-100.0, 100.0],
        [-10.0, 10.0],
    )?;
    define_double(
        set,
        &common(
            SOFTNESS,
            "Softness",
            "Edge softness in logits: 0 is a hard matte, 1 is the model's own probability.",
        ),
        0.0,
        [0.0, 100.0],
        [0.0, 5.0],
    )?;
    define_double(
        set,
        &common(
            FEATHER,
            "Feather",
            "Blurs the matte's edge over about this many pixels.",
        ),
        0.0,
        [0.0, 500.0],
        [0.0, 50.0],
    )?;
    define_int(
        set,
        &common(
            EXPAND,
            "Choke / Expand",
            "Grows the matte by this many pixels, or chokes it when negative.",
        ),
        0,
        [-500, 500],
        [-50, 50],
    )?;
    define_int(
        set,
        &common(
            FILL_HOLES,
            "Fill Holes",
            "Fills holes in the matte smaller than this many pixels (0: off).",
        ),
        0,
        [0, i32::MAX],
        [0, 10_000],
    )?;
    define_int(
        set,
        &common(
            REMOVE_SPECKS,
            "Remove Specks",
            "Removes islands of matte smaller than this many pixels (0: off).",
        ),
        0,
        [0, i32::MAX],
        [0, 10_000],
    )?;

    // Model page.
    let dir = define_string(
        set,
        &common(
            MODEL_DIRECTORY,
            "Model Directory",
            "A SAM 2 model exported with bundle/exporter; empty: the model shipped in the plugin bundle (Contents/Resources/models).",
        ),
        "",
        kOfxParamStringIsDirectoryPath,
    )?;
    dir.set_int(kOfxParamPropCanUndo, 0, 1);
    let device_labels: Vec<&str> = DEVICES.iter().map(|(_, l)| *l).collect();
    define_choice(
        set,
        &common(
            DEVICE,
            "Device",
            "Where SAM 2 runs. Auto: a GPU when ONNX Runtime has one, else the CPU. GPU: a GPU or an error.",
        ),
        &device_labels,
        0,
    )?;
    define_bool(
        set,
        &common(LINEAR_SOURCE, "Source Is Linear", "Encodes the source to sRGB before SAM 2 sees it; turn on for scene-linear sources (SAM 2 was trained on display images)."),
        false,
    )?
    .set_int(kOfxParamPropAnimates, 0, 0);

    // Cache page.
    define_int(
        set,
        &common(MEMORY_BUDGET, "Memory Budget (MiB)", "Memory for encoded frames (about 20 MiB each at 1024). A change applies when the clip's session is next created (new model or source)."),
        DEFAULT_MEMORY_BUDGET_MIB,
        [64, 1 << 20],
        [256, 16_384],
    )?
    .set_int(kOfxParamPropAnimates, 0, 0);
    define_int(
        set,
        &common(TRACK_ON_RENDER, "Track On Render (frames)", "A render of an untracked frame tracks from the nearest tracked or prompted frame when it is at most this many frames away; farther frames need a Track button. 0: never."),
        DEFAULT_RENDER_REACH as i32,
        [0, 1000],
        [0, 50],
    )?
    .set_int(kOfxParamPropAnimates, 0, 0);

    let prompts_children: Vec<&CStr> = prompts_page.iter().map(CString::as_c_str).collect();
    define_page(set, PAGE_PROMPTS, "Prompts", &prompts_children)?;
    define_page(
        set,
        PAGE_MATTE,
        "Matte",
        &[
            OUTPUT_MODE,
            PREMULTIPLY,
            OVERLAY_OPACITY,
            THRESHOLD,
            SOFTNESS,
            FEATHER,
            EXPAND,
            FILL_HOLES,
            REMOVE_SPECKS,
        ],
    )?;
    define_page(
        set,
        PAGE_MODEL,
        "Model",
        &[MODEL_DIRECTORY, DEVICE, LINEAR_SOURCE],
    )?;
    define_page(set, PAGE_CACHE, "Cache", &[MEMORY_BUDGET, TRACK_ON_RENDER])?;
    if let Some(props) = set.props() {
        let pages: Vec<String> = [PAGE_PROMPTS, PAGE_MATTE, PAGE_MODEL, PAGE_CACHE]
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let pages: Vec<&str> = pages.iter().map(String::as_str).collect();
        props.set_strings(kOfxPluginPropParamPageOrder, &pages);
    }
    // The output's premultiplication follows these.
    effect_props.set_strings(
        kOfxImageEffectPropClipPreferencesSlaveParam,
        &[
            &OUTPUT_MODE.to_string_lossy(),
            &PREMULTIPLY.to_string_lossy(),
        ],
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
    pub selected_object: Param,
    pub status: Param,
    pub revision: Param,
    pub objects: Vec<ObjectParams>,
    pub output_mode: Param,
    pub premultiply: Param,
    pub overlay_opacity: Param,
    pub threshold: Param,
    pub softness: Param,
    pub feather: Param,
    pub expand: Param,
    pub fill_holes: Param,
    pub remove_specks: Param,
    pub model_directory: Param,
    pub device: Param,
    pub linear_source: Param,
    pub memory_budget: Param,
    pub track_on_render: Param,
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
    pub objects: Vec<ObjectValues>,
    pub model_directory: String,
    pub device: Device,
    pub linear_source: bool,
    pub cache_bytes: usize,
    pub reach: usize,
}

impl Values {
    pub fn selected(&self) -> u32 {
        self.look.selected
    }

    pub fn object(&self, slot: u32) -> Option<&ObjectValues> {
        self.objects.iter().find(|o| o.slot == slot)
    }
}

impl Params {
    /// Fetches every handle; names what is missing otherwise.
    pub fn fetch(set: ParamSet) -> Result<Params, String> {
        let get = |name: &CStr| {
            set.param(name)
                .ok_or_else(|| format!("the host lost the parameter {}", name.to_string_lossy()))
        };
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
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Params {
            set,
            selected_object: get(SELECTED_OBJECT)?,
            status: get(STATUS)?,
            revision: get(REVISION)?,
            objects,
            output_mode: get(OUTPUT_MODE)?,
            premultiply: get(PREMULTIPLY)?,
            overlay_opacity: get(OVERLAY_OPACITY)?,
            threshold: get(THRESHOLD)?,
            softness: get(SOFTNESS)?,
            feather: get(FEATHER)?,
            expand: get(EXPAND)?,
            fill_holes: get(FILL_HOLES)?,
            remove_specks: get(REMOVE_SPECKS)?,
            model_directory: get(MODEL_DIRECTORY)?,
            device: get(DEVICE)?,
            linear_source: get(LINEAR_SOURCE)?,
            memory_budget: get(MEMORY_BUDGET)?,
            track_on_render: get(TRACK_ON_RENDER)?,
        })
    }

    pub fn object(&self, slot: u32) -> Option<&ObjectParams> {
        self.objects.iter().find(|o| o.slot == slot)
    }

    /// The selected object's slot (1–8) at `time`.
    pub fn selected(&self, time: f64) -> u32 {
        let index = self.selected_object.int_at(time).unwrap_or(0);
        u32::try_from(index).map_or(1, |i| (i + 1).clamp(1, MAX_OBJECTS))
    }

    /// Reads the values at `time`; a value the host does not give keeps its default.
    pub fn values(&self, time: f64) -> Values {
        let double = |p: Param, default: f64| {
            p.double_at(time)
                .filter(|v| v.is_finite())
                .unwrap_or(default)
        };
        let int = |p: Param, default: i32| p.int_at(time).unwrap_or(default);
        let count = |p: Param| u32::try_from(int(p, 0)).unwrap_or(0);
        let look = Look {
            mode: OutputMode::from_index(int(self.output_mode, 0)),
            premultiply: self.premultiply.bool_at(time).unwrap_or(false),
            selected: self.selected(time),
            overlay_opacity: double(self.overlay_opacity, 0.5).clamp(0.0, 1.0) as f32,
        };
        let matte = MatteSettings {
            threshold: double(self.threshold, 0.0) as f32,
            softness: double(self.softness, 0.0).max(0.0) as f32,
            fill_holes_below: count(self.fill_holes),
            remove_specks_below: count(self.remove_specks),
            expand: int(self.expand, 0),
            feather: double(self.feather, 0.0).max(0.0) as f32,
        };
        let objects = self
            .objects
            .iter()
            .map(|o| {
                let colour = o.colour.rgb_at(time).unwrap_or([1.0; 3]).map(|c| c as f32);
                ObjectValues {
                    slot: o.slot,
                    name: o
                        .name
                        .string()
                        .filter(|n| !n.trim().is_empty())
                        .unwrap_or_else(|| default_object_name(o.slot)),
                    colour,
                    enabled: o.enabled.bool_at(time).unwrap_or(true),
                }
            })
            .collect();
        let device = usize::try_from(int(self.device, 0))
            .ok()
            .and_then(|i| DEVICES.get(i))
            .map_or(Device::Auto, |(d, _)| *d);
        let budget_mib =
            usize::try_from(int(self.memory_budget, DEFAULT_MEMORY_BUDGET_MIB).max(64))
                .unwrap_or(64);
        Values {
            look,
            matte,
            objects,
            model_directory: self.model_directory.string().unwrap_or_default(),
            device,
            linear_source: self.linear_source.bool_at(time).unwrap_or(false),
            cache_bytes: budget_mib.saturating_mul(1 << 20),
            reach: usize::try_from(int(self.track_on_render, DEFAULT_RENDER_REACH as i32))
                .unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_parameter_names_are_distinct_and_stable() {
        assert_eq!(
            object_param(3, ObjectField::Prompts).as_c_str(),
            c"object3Prompts"
        );
        let mut names: Vec<CString> = (1..=MAX_OBJECTS)
            .flat_map(|s| {
                [
                    ObjectField::Group,
                    ObjectField::Name,
                    ObjectField::Colour,
                    ObjectField::Enabled,
                    ObjectField::Prompts,
                ]
                .map(|f| object_param(s, f))
            })
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
        assert_eq!(PALETTE.len(), MAX_OBJECTS as usize);
    }
}
