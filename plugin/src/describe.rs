//! The factory: what the plugin is (describe) and what it offers in each context (describe in
//! context), apart from any instance.

use std::ffi::{CStr, c_uint};

use openfx::sys::generic::core::{
    kOfxBitDepthByte, kOfxBitDepthFloat, kOfxBitDepthHalf, kOfxBitDepthShort, kOfxPropLabel,
    kOfxPropLongLabel, kOfxPropPluginDescription, kOfxPropShortLabel, kOfxPropVersion,
    kOfxPropVersionLabel,
};
use openfx::sys::image_effect_v1::image_effect::{
    kOfxImageClipPropFieldExtraction, kOfxImageClipPropOptional, kOfxImageComponentRGB,
    kOfxImageComponentRGBA, kOfxImageEffectContextFilter, kOfxImageEffectContextGeneral,
    kOfxImageEffectInstancePropSequentialRender, kOfxImageEffectOutputClipName,
    kOfxImageEffectPluginPropFieldRenderTwiceAlways, kOfxImageEffectPluginPropGrouping,
    kOfxImageEffectPluginPropHostFrameThreading, kOfxImageEffectPluginPropSingleInstance,
    kOfxImageEffectPluginRenderThreadSafety, kOfxImageEffectPropSupportedComponents,
    kOfxImageEffectPropSupportedContexts, kOfxImageEffectPropSupportedPixelDepths,
    kOfxImageEffectPropSupportsMultiResolution, kOfxImageEffectPropSupportsMultipleClipDepths,
    kOfxImageEffectPropSupportsMultipleClipPARs, kOfxImageEffectPropSupportsTiles,
    kOfxImageEffectPropTemporalClipAccess, kOfxImageEffectRenderInstanceSafe,
    kOfxImageEffectSimpleSourceClipName, kOfxImageFieldBoth,
};

use crate::error::{PluginError, Result};
use crate::ffi::entry::declare_overlay;
use crate::ffi::images::Effect;
use crate::ffi::props::PropSet;
use crate::params;

/// The reverse-DNS identifier hosts file the effect under (and name its icon after).
pub const PLUGIN_ID: &CStr = c"com.sam2rotoscope.SAM2Rotoscope";
pub const VERSION_MAJOR: c_uint = 1;
pub const VERSION_MINOR: c_uint = 0;
pub const LABEL: &str = "SAM 2 Rotoscope";
/// Where keyers live in hosts' menus.
pub const GROUPING: &str = "Keyer";
pub const DESCRIPTION: &str = "Segment Anything 2 for rotoscoping: click an object in the viewer, track it through the clip, correct drift with one more click. Click: positive point; Ctrl- or Alt-click: negative point; click a point: remove it; drag: box; Delete: clear the frame.";

/// The clips.
pub const SOURCE_CLIP: &CStr = kOfxImageEffectSimpleSourceClipName;
pub const OUTPUT_CLIP: &CStr = kOfxImageEffectOutputClipName;

fn refused(what: &str) -> PluginError {
    PluginError::HostRefused {
        what: what.to_string(),
    }
}

fn lossy(s: &CStr) -> String {
    s.to_string_lossy().into_owned()
}

fn set_strings(props: PropSet, name: &CStr, values: &[&CStr]) {
    let owned: Vec<String> = values.iter().map(|v| lossy(v)).collect();
    let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
    props.set_strings(name, &refs);
}

/// kOfxActionDescribe.
pub fn describe(effect: Effect) -> Result<()> {
    let props = effect
        .props()
        .ok_or_else(|| refused("give a property set to describe the effect"))?;
    props.set_string(kOfxPropLabel, 0, LABEL);
    props.set_string(kOfxPropShortLabel, 0, "SAM 2 Roto");
    props.set_string(kOfxPropLongLabel, 0, LABEL);
    props.set_string(kOfxPropPluginDescription, 0, DESCRIPTION);
    props.set_ints(
        kOfxPropVersion,
        &[VERSION_MAJOR as i32, VERSION_MINOR as i32, 0],
    );
    props.set_string(kOfxPropVersionLabel, 0, "1.0.0");
    props.set_string(kOfxImageEffectPluginPropGrouping, 0, GROUPING);
    set_strings(
        props,
        kOfxImageEffectPropSupportedContexts,
        &[kOfxImageEffectContextFilter, kOfxImageEffectContextGeneral],
    );
    set_strings(
        props,
        kOfxImageEffectPropSupportedPixelDepths,
        &[
            kOfxBitDepthByte,
            kOfxBitDepthShort,
            kOfxBitDepthHalf,
            kOfxBitDepthFloat,
        ],
    );
    props.set_int(kOfxImageEffectPluginPropSingleInstance, 0, 0);
    // Rendering locks the session it uses (shared by instances that agree on it, registry.rs).
    props.set_string(
        kOfxImageEffectPluginRenderThreadSafety,
        0,
        &lossy(kOfxImageEffectRenderInstanceSafe),
    );
    // The matte is computed for the whole frame; splitting it across threads gains nothing.
    props.set_int(kOfxImageEffectPluginPropHostFrameThreading, 0, 0);
    // Any render window can be rendered (the full-frame matte is cropped).
    props.set_int(kOfxImageEffectPropSupportsTiles, 0, 1);
    props.set_int(kOfxImageEffectPropSupportsMultiResolution, 0, 1);
    // Tracking reads the source at other times than the one rendered.
    props.set_int(kOfxImageEffectPropTemporalClipAccess, 0, 1);
    props.set_int(kOfxImageEffectPropSupportsMultipleClipDepths, 0, 0);
    props.set_int(kOfxImageEffectPropSupportsMultipleClipPARs, 0, 0);
    props.set_int(kOfxImageEffectPluginPropFieldRenderTwiceAlways, 0, 0);
    // Rendering in order advances the track frame by frame; any order works.
    props.set_int(kOfxImageEffectInstancePropSequentialRender, 0, 2);
    declare_overlay(props);
    Ok(())
}

/// kOfxImageEffectActionDescribeInContext.
pub fn describe_in_context(effect: Effect) -> Result<()> {
    let source = effect
        .define_clip(SOURCE_CLIP)
        .ok_or_else(|| refused("define the Source clip"))?;
    set_strings(
        source,
        kOfxImageEffectPropSupportedComponents,
        &[kOfxImageComponentRGBA, kOfxImageComponentRGB],
    );
    source.set_int(kOfxImageEffectPropTemporalClipAccess, 0, 1);
    source.set_int(kOfxImageEffectPropSupportsTiles, 0, 1);
    source.set_int(kOfxImageClipPropOptional, 0, 0);
    // The model sees whole frames, both fields of interlaced material.
    source.set_string(
        kOfxImageClipPropFieldExtraction,
        0,
        &lossy(kOfxImageFieldBoth),
    );
    let output = effect
        .define_clip(OUTPUT_CLIP)
        .ok_or_else(|| refused("define the Output clip"))?;
    set_strings(
        output,
        kOfxImageEffectPropSupportedComponents,
        &[kOfxImageComponentRGBA],
    );
    output.set_int(kOfxImageEffectPropSupportsTiles, 0, 1);
    let set = effect
        .params()
        .ok_or_else(|| refused("give a parameter set to describe"))?;
    let props = effect
        .props()
        .ok_or_else(|| refused("give a property set to describe the effect"))?;
    params::describe(set, props)
}
