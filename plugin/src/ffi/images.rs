//! Effects, clips and images.

use std::ffi::{CStr, c_void};
use std::ptr;

use openfx::sys::generic::core::{
    OfxPropertySetHandle, OfxRectD, kOfxBitDepthByte, kOfxBitDepthFloat, kOfxBitDepthHalf,
    kOfxBitDepthShort, kOfxPropInstanceData, kOfxStatOK,
};
use openfx::sys::image_effect_v1::image_effect::{
    OfxImageClipHandle, OfxImageEffectHandle, OfxImageEffectSuiteV1, kOfxImageComponentAlpha,
    kOfxImageComponentRGB, kOfxImageComponentRGBA, kOfxImageEffectPropComponents,
    kOfxImageEffectPropPixelDepth, kOfxImagePropBounds, kOfxImagePropData,
    kOfxImagePropRegionOfDefinition, kOfxImagePropRowBytes,
};

use super::host;
use super::params::ParamSet;
use super::props::PropSet;
use crate::instance::Instance;
use crate::render::{BitDepth, Components, PixelLayout, RectD, RectI, Rows, RowsMut};

fn suite() -> Option<&'static OfxImageEffectSuiteV1> {
    host::suites().map(|s| s.effect)
}

/// An action's handle as the host passed it; what it names depends on the action.
#[derive(Debug, Clone, Copy)]
pub struct RawHandle(pub(crate) *const c_void);

impl RawHandle {
    /// The handle as an image effect (descriptor or instance).
    pub fn effect(self) -> Option<Effect> {
        (!self.0.is_null()).then_some(Effect(self.0.cast_mut().cast()))
    }
}

/// An image effect: the plugin's descriptor, a context descriptor, or an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effect(OfxImageEffectHandle);

/// A clip of an effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clip(OfxImageClipHandle);

// SAFETY: opaque host tokens, valid across threads for the life of the effect (module docs).
unsafe impl Send for Effect {}
// SAFETY: as above.
unsafe impl Sync for Effect {}
// SAFETY: as above.
unsafe impl Send for Clip {}
// SAFETY: as above.
unsafe impl Sync for Clip {}

impl Effect {
    pub(crate) fn from_raw(handle: *mut c_void) -> Option<Effect> {
        (!handle.is_null()).then_some(Effect(handle.cast()))
    }

    pub(crate) fn raw(self) -> *mut c_void {
        self.0.cast()
    }

    pub fn props(self) -> Option<PropSet> {
        let get = suite()?.getPropertySet?;
        // SAFETY: a live effect handle and a valid out-pointer.
        let props = super::out_handle(|out| unsafe { get(self.0, out) })?;
        PropSet::from_raw(props)
    }

    pub fn params(self) -> Option<ParamSet> {
        let get = suite()?.getParamSet?;
        // SAFETY: a live effect handle and a valid out-pointer.
        let params = super::out_handle(|out| unsafe { get(self.0, out) })?;
        ParamSet::from_raw(params)
    }

    /// Defines a clip (describe in context); returns its property set to describe.
    pub fn define_clip(self, name: &CStr) -> Option<PropSet> {
        let define = suite()?.clipDefine?;
        // SAFETY: a live descriptor, a NUL-terminated name and a valid out-pointer.
        let props = super::out_handle(|out| unsafe { define(self.0, name.as_ptr(), out) })?;
        PropSet::from_raw(props)
    }

    pub fn clip(self, name: &CStr) -> Option<Clip> {
        let get = suite()?.clipGetHandle?;
        // SAFETY: a live instance, a NUL-terminated name and a valid out-pointer; the property
        // set out-pointer may be null.
        super::out_handle(|out| unsafe { get(self.0, name.as_ptr(), out, ptr::null_mut()) })
            .map(Clip)
    }

    /// Whether the host wants the current render abandoned.
    pub fn aborted(self) -> bool {
        let Some(abort) = suite().and_then(|s| s.abort) else {
            return false;
        };
        // SAFETY: a live instance handle.
        unsafe { abort(self.0) != 0 }
    }

    /// Attaches the instance's state (createInstance); the effect owns it until
    /// [`Effect::take_instance`].
    pub fn attach_instance(self, instance: Box<Instance>) -> bool {
        let Some(props) = self.props() else {
            return false;
        };
        let raw = Box::into_raw(instance);
        if props.set_pointer(kOfxPropInstanceData, 0, raw.cast()) {
            return true;
        }
        // SAFETY: `raw` came from Box::into_raw just above and was not stored: take it back.
        drop(unsafe { Box::from_raw(raw) });
        false
    }

    /// Detaches and returns the instance's state (destroyInstance).
    pub fn take_instance(self) -> Option<Box<Instance>> {
        let props = self.props()?;
        let raw = props.pointer(kOfxPropInstanceData, 0)?;
        props.set_pointer(kOfxPropInstanceData, 0, ptr::null_mut());
        // SAFETY: the only pointer this plugin stores in kOfxPropInstanceData is a
        // Box<Instance> from attach_instance, and it was just cleared so it is taken once.
        Some(unsafe { Box::from_raw(raw.cast::<Instance>()) })
    }

    /// The instance's state, for the duration of an action.
    pub fn with_instance<R>(self, f: impl FnOnce(&Instance) -> R) -> Option<R> {
        let raw = self.props()?.pointer(kOfxPropInstanceData, 0)?;
        // SAFETY: as in take_instance, the pointer is a live Box<Instance>: the host sends no
        // action to an instance after destroyInstance, which is where it is freed. `Instance` is
        // Sync, so concurrent actions may share it.
        let instance = unsafe { &*raw.cast::<Instance>() };
        Some(f(instance))
    }
}

/// Why a clip's image could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageError {
    /// The host returned no image (status code).
    Unavailable(i32),
    /// A depth or layout this plugin does not read.
    Unsupported(String),
    /// Properties that contradict each other.
    Malformed(String),
}

impl Clip {
    pub fn props(self) -> Option<PropSet> {
        let get = suite()?.clipGetPropertySet?;
        // SAFETY: a live clip handle and a valid out-pointer.
        let props = super::out_handle(|out| unsafe { get(self.0, out) })?;
        PropSet::from_raw(props)
    }

    /// The clip's image at `time` (at the current action's render scale); released on drop.
    pub fn image(self, time: f64) -> Result<Image, ImageError> {
        let get = suite()
            .and_then(|s| s.clipGetImage)
            .ok_or(ImageError::Unavailable(-1))?;
        let mut props: OfxPropertySetHandle = ptr::null_mut();
        // SAFETY: a live clip handle, a null region (the whole image) and a valid out-pointer.
        let status = unsafe { get(self.0, time, ptr::null(), &mut props) };
        let props = match PropSet::from_raw(props) {
            Some(p) if status == kOfxStatOK => p,
            _ => return Err(ImageError::Unavailable(status)),
        };
        Image::new(props)
    }

    /// The clip's region of definition at `time`, in canonical coordinates.
    pub fn region_of_definition(self, time: f64) -> Option<RectD> {
        let get = suite()?.clipGetRegionOfDefinition?;
        let mut rect = OfxRectD {
            x1: 0.0,
            y1: 0.0,
            x2: 0.0,
            y2: 0.0,
        };
        // SAFETY: a live clip handle and a valid out-pointer.
        let status = unsafe { get(self.0, time, &mut rect) };
        (status == kOfxStatOK).then_some(RectD {
            x1: rect.x1,
            y1: rect.y1,
            x2: rect.x2,
            y2: rect.y2,
        })
    }
}

/// Reads the depth and layout properties of a clip or an image.
pub fn pixel_layout(props: PropSet) -> Result<PixelLayout, ImageError> {
    let depth = props
        .string(kOfxImageEffectPropPixelDepth, 0)
        .unwrap_or_default();
    let components = props
        .string(kOfxImageEffectPropComponents, 0)
        .unwrap_or_default();
    let depth = match depth.as_bytes() {
        d if d == kOfxBitDepthByte.to_bytes() => BitDepth::Byte,
        d if d == kOfxBitDepthShort.to_bytes() => BitDepth::Short,
        d if d == kOfxBitDepthHalf.to_bytes() => BitDepth::Half,
        d if d == kOfxBitDepthFloat.to_bytes() => BitDepth::Float,
        _ => return Err(ImageError::Unsupported(format!("\"{depth}\" bit depth"))),
    };
    let components = match components.as_bytes() {
        c if c == kOfxImageComponentRGBA.to_bytes() => Components::Rgba,
        c if c == kOfxImageComponentRGB.to_bytes() => Components::Rgb,
        c if c == kOfxImageComponentAlpha.to_bytes() => Components::Alpha,
        _ => {
            return Err(ImageError::Unsupported(format!(
                "\"{components}\" components"
            )));
        }
    };
    Ok(PixelLayout { depth, components })
}

/// An image fetched from a clip, held until dropped.
#[derive(Debug)]
pub struct Image {
    props: PropSet,
    data: *mut u8,
    bounds: RectI,
    row_bytes: isize,
    layout: PixelLayout,
}

// SAFETY: an image is the host's property set and pixel memory, valid on any thread until it is
// released (module docs: suite functions may be called from any thread during an action). The
// plugin moves one between threads only inside a mutex (the render's image lent to the session),
// and releases it exactly once, in Drop.
unsafe impl Send for Image {}

impl Image {
    fn new(props: PropSet) -> Result<Image, ImageError> {
        // Built first so that an early return releases the image.
        let mut image = Image {
            props,
            data: ptr::null_mut(),
            bounds: RectI::default(),
            row_bytes: 0,
            layout: PixelLayout {
                depth: BitDepth::Byte,
                components: Components::Rgba,
            },
        };
        image.layout = pixel_layout(props)?;
        let [x1, y1, x2, y2] = props
            .ints::<4>(kOfxImagePropBounds)
            .ok_or_else(|| ImageError::Malformed("no bounds".into()))?;
        image.bounds = RectI { x1, y1, x2, y2 };
        image.row_bytes = props
            .int(kOfxImagePropRowBytes, 0)
            .map(|r| r as isize)
            .ok_or_else(|| ImageError::Malformed("no row bytes".into()))?;
        image.data = props
            .pointer(kOfxImagePropData, 0)
            .unwrap_or(ptr::null_mut())
            .cast();
        let row = image.bounds.width() * image.layout.bytes_per_pixel();
        if !image.bounds.is_empty()
            && (image.data.is_null() || image.row_bytes.unsigned_abs() < row)
        {
            return Err(ImageError::Malformed(format!(
                "{} bytes per row for {} pixels of {} bytes, data {}",
                image.row_bytes,
                image.bounds.width(),
                image.layout.bytes_per_pixel(),
                if image.data.is_null() {
                    "missing"
                } else {
                    "present"
                }
            )));
        }
        Ok(image)
    }

    /// The image's region of definition in pixels at its render scale (OpenFX 1.4 hosts).
    pub fn region_of_definition(&self) -> Option<RectI> {
        let [x1, y1, x2, y2] = self.props.ints::<4>(kOfxImagePropRegionOfDefinition)?;
        let rod = RectI { x1, y1, x2, y2 };
        (!rod.is_empty()).then_some(rod)
    }

    fn row_ptr(&self, y: i32) -> Option<*mut u8> {
        if y < self.bounds.y1 || y >= self.bounds.y2 || self.data.is_null() {
            return None;
        }
        let offset = (y as isize - self.bounds.y1 as isize) * self.row_bytes;
        Some(self.data.wrapping_offset(offset))
    }

    fn row_len(&self) -> usize {
        self.bounds.width() * self.layout.bytes_per_pixel()
    }
}

impl Rows for Image {
    fn bounds(&self) -> RectI {
        self.bounds
    }

    fn layout(&self) -> PixelLayout {
        self.layout
    }

    fn row(&self, y: i32) -> Option<&[u8]> {
        let start = self.row_ptr(y)?;
        // SAFETY: the host guarantees that row y of a held image starts at data + (y − y1) ·
        // rowBytes and holds width · bytes-per-pixel bytes (checked not to exceed |rowBytes| at
        // construction), valid until the image is released in Drop.
        Some(unsafe { std::slice::from_raw_parts(start, self.row_len()) })
    }
}

impl RowsMut for Image {
    fn row_mut(&mut self, y: i32) -> Option<&mut [u8]> {
        let start = self.row_ptr(y)?;
        // SAFETY: as in `row`; rows do not overlap (|rowBytes| ≥ row length), and `&mut self`
        // makes this the only live slice into the image.
        Some(unsafe { std::slice::from_raw_parts_mut(start, self.row_len()) })
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        if let Some(release) = suite().and_then(|s| s.clipReleaseImage) {
            // SAFETY: the image handle came from clipGetImage and is released exactly once.
            unsafe {
                release(self.props.raw());
            }
        }
    }
}
