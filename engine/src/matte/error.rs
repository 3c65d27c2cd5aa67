//! How producing a matte can fail.
//!
//! The matte stage has its own error type because its failures are of another kind than the
//! model's: a GPU that vanished or ran out of memory is something the caller recovers from (the
//! `Auto` device falls back to the CPU), not a broken file. Messages are sentences a host's error
//! dialog can show as they are.

/// A failure of the matte stage: bad sizes or settings from the caller, or a GPU that could not do
/// the work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MatteError {
    #[error(
        "The {what} is {width}×{height}, which is empty; a matte needs at least one pixel in each direction."
    )]
    EmptySize {
        what: &'static str,
        width: usize,
        height: usize,
    },

    #[error("The {what} is {width}×{height}, more pixels than this machine can address.")]
    TooManyPixels {
        what: &'static str,
        width: usize,
        height: usize,
    },

    #[error(
        "The {what} holds {found} values, but {width}×{height} needs {expected}; the buffer and its size disagree."
    )]
    LengthMismatch {
        what: &'static str,
        width: usize,
        height: usize,
        expected: usize,
        found: usize,
    },

    #[error("The matte setting {name} is {value}, but it must be {requirement}.")]
    InvalidSetting {
        name: &'static str,
        value: String,
        requirement: &'static str,
    },

    #[error(
        "Refine Edges works on frames up to {max_side} pixels on the longer side, but this frame is {width}×{height}; turn Refine Edges off for it."
    )]
    RefineTooLarge {
        width: usize,
        height: usize,
        max_side: usize,
    },

    #[error(
        "No GPU was found for the matte ({reason}); choose the CPU matte device, or install a Vulkan driver (on Debian: apt-get install mesa-vulkan-drivers libvulkan1)."
    )]
    NoAdapter { reason: String },

    #[error(
        "The GPU {adapter} is a software renderer, which is slower than the engine's own CPU path; the matte is made on the CPU. Choose the GPU matte device to use it anyway."
    )]
    SoftwareAdapter { adapter: String },

    #[error("The GPU {adapter} could not be opened for the matte: {message}.")]
    DeviceRequest { adapter: String, message: String },

    #[error(
        "A {width}×{height} matte needs a {bytes}-byte GPU buffer, but the GPU {adapter} allows at most {limit} bytes; the matte is made on the CPU instead when the device is Auto."
    )]
    TooLarge {
        adapter: String,
        width: usize,
        height: usize,
        bytes: u64,
        limit: u64,
    },

    #[error("The GPU {adapter} failed while {operation}: {message}.")]
    Gpu {
        adapter: String,
        operation: &'static str,
        message: String,
    },

    #[error(
        "The GPU {adapter} was lost ({message}); the matte device must be created again, or the CPU used."
    )]
    DeviceLost { adapter: String, message: String },
}

/// Checks that a buffer holds exactly `width × height` values; every entry point does this first,
/// so that the loops after it can rely on the sizes.
pub(crate) fn check_buffer(
    what: &'static str,
    len: usize,
    width: usize,
    height: usize,
) -> Result<(), MatteError> {
    let expected = check_size(what, width, height)?;
    if expected != len {
        return Err(MatteError::LengthMismatch {
            what,
            width,
            height,
            expected,
            found: len,
        });
    }
    Ok(())
}

/// Checks that an output size is non-empty and that its pixel count fits in memory arithmetic.
pub(crate) fn check_size(
    what: &'static str,
    width: usize,
    height: usize,
) -> Result<usize, MatteError> {
    if width == 0 || height == 0 {
        return Err(MatteError::EmptySize {
            what,
            width,
            height,
        });
    }
    width.checked_mul(height).ok_or(MatteError::TooManyPixels {
        what,
        width,
        height,
    })
}
