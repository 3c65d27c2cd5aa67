//! The OpenFX plugin: host glue around `sam2-engine`.
//!
//! Nothing is exported yet. The effect — entry points (`OfxGetNumberOfPlugins`, `OfxGetPlugin`),
//! describe, instances, render and overlay — comes with the plugin issue. Until then this library
//! exports no OpenFX symbols at all, so a host scanning `OFX_PLUGIN_PATH` sees no half-made plugin;
//! it exists so that the workspace already builds the `openfx` 0.6 bindings and the engine into
//! the cdylib the bundle will ship.
