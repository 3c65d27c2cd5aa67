//! The GPU upsampler: the WGSL compute shader `shaders/upsample.wgsl` on wgpu's Vulkan backend.
//!
//! Opening a device and compiling the pipeline take tens of milliseconds, so a [`GpuUpsampler`] is
//! made once and reused; the per-size buffers are cached for the next call of the same size, which
//! is every frame of a clip.
//!
//! wgpu reports most failures not as return values but through error scopes, and by default
//! panics on an error no scope caught. Every piece of GPU work here runs inside scopes for
//! validation, out-of-memory and internal errors, an uncaptured-error handler logs instead of
//! panicking, and a lost device is remembered, so that every failure reaches the caller as a
//! [`MatteError`] and `Auto` can fall back to the CPU.

use std::sync::{Arc, Mutex, mpsc};

use super::bilinear::{Tap, is_small_output, taps};
use super::error::{MatteError, check_buffer, check_size};
use super::refine::{EdgeRefinement, Guide, Output, check_guide};
use super::refine_gpu::GpuRefiner;

/// Workgroup edge; must match `@workgroup_size` in the shader.
const WORKGROUP: u32 = 8;

/// Size of the shader's `Params`: eight u32 (sizes, kernel choice, padding to 16-byte alignment).
const PARAMS_BYTES: u64 = 32;

/// What a caller may want to know about the GPU in use, for logs and the plugin's about box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// The adapter's name, as the driver reports it.
    pub name: String,
    /// The driver's name and version.
    pub driver: String,
    /// True for a software renderer such as lavapipe, which runs on the CPU.
    pub software: bool,
}

/// The sizes one set of cached buffers was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    in_w: usize,
    in_h: usize,
    out_w: usize,
    out_h: usize,
}

/// The buffers and bind group of one [`Shape`].
#[derive(Debug)]
struct Buffers {
    shape: Shape,
    src: wgpu::Buffer,
    dst: wgpu::Buffer,
    readback: wgpu::Buffer,
    dst_bytes: u64,
    bind_group: wgpu::BindGroup,
    /// Kept with the bind group that reads them, though wgpu would keep them alive anyway.
    _params: wgpu::Buffer,
    _taps: wgpu::Buffer,
}

/// A wgpu device with the upsampling pipeline compiled, ready for any number of calls.
#[derive(Debug)]
pub struct GpuUpsampler {
    gpu: Gpu,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    buffers: Option<Buffers>,
    /// Refine Edges' passes, compiled on first use.
    refiner: Option<GpuRefiner>,
}

/// The device and what is needed to turn its failures into [`MatteError`]s.
#[derive(Debug)]
struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: GpuInfo,
    /// Set by the device-lost callback, which runs on whatever thread wgpu likes.
    lost: Arc<Mutex<Option<String>>>,
}

impl GpuUpsampler {
    /// Opens the first Vulkan adapter wgpu offers (a discrete GPU before an integrated one before
    /// a software renderer) and compiles the pipeline.
    ///
    /// With no Vulkan driver this fails within milliseconds with [`MatteError::NoAdapter`].
    pub fn new() -> Result<Self, MatteError> {
        let adapter = request_adapter()?;
        Self::with_adapter(adapter)
    }

    /// Like [`GpuUpsampler::new`], but refuses a software renderer with
    /// [`MatteError::SoftwareAdapter`]: on a machine without a real GPU, the CPU path is faster
    /// than a Vulkan driver that runs on the CPU (see the GPU rows of `./bench.sh`).
    pub fn new_hardware() -> Result<Self, MatteError> {
        let adapter = request_adapter()?;
        let info = adapter.get_info();
        if info.device_type == wgpu::DeviceType::Cpu {
            return Err(MatteError::SoftwareAdapter { adapter: info.name });
        }
        Self::with_adapter(adapter)
    }

    fn with_adapter(adapter: wgpu::Adapter) -> Result<Self, MatteError> {
        let gpu = Gpu::open(&adapter)?;
        let layout = gpu.scoped("creating the bind group layout", bind_group_layout)?;
        let pipeline = gpu.scoped("compiling the upsampling shader", |device| {
            compile_pipeline(device, &layout)
        })?;
        log::info!(
            "Matte upsampling on the GPU {} ({}).",
            gpu.info.name,
            gpu.info.driver
        );
        Ok(Self {
            gpu,
            pipeline,
            layout,
            buffers: None,
            refiner: None,
        })
    }

    /// The adapter in use.
    pub fn info(&self) -> &GpuInfo {
        &self.gpu.info
    }

    /// Buffers for `shape`, reallocated only when the shape changes. The old set is dropped first,
    /// so that two large sets never coexist on the GPU; the refiner's bind groups point at them.
    fn ensure_buffers(&mut self, shape: Shape) -> Result<(), MatteError> {
        if self.buffers.as_ref().map(|b| b.shape) == Some(shape) {
            return Ok(());
        }
        self.buffers = None;
        if let Some(refiner) = self.refiner.as_mut() {
            refiner.invalidate();
        }
        let buffers = self.gpu.scoped("allocating the matte buffers", |device| {
            make_buffers(device, &self.gpu.queue, &self.layout, &self.gpu.info, shape)
        })??;
        self.buffers = Some(buffers);
        Ok(())
    }

    /// Upsamples `in_w × in_h` logits to `out_w × out_h` (see [`super::upsample_bilinear`] for the
    /// exact definition); the result agrees with the CPU path to a few ulps.
    pub fn upsample(
        &mut self,
        src: &[f32],
        in_w: usize,
        in_h: usize,
        out_w: usize,
        out_h: usize,
    ) -> Result<Vec<f32>, MatteError> {
        check_buffer("low-resolution mask", src.len(), in_w, in_h)?;
        let len = check_size("upsampled matte", out_w, out_h)?;
        self.gpu.check_alive()?;
        let shape = Shape {
            in_w,
            in_h,
            out_w,
            out_h,
        };
        self.ensure_buffers(shape)?;
        let Some(buffers) = self.buffers.as_ref() else {
            return Err(self.gpu.error("allocating the matte buffers", "no buffers"));
        };

        let (gx, gy) = (workgroups(out_w), workgroups(out_h));
        let queue = &self.gpu.queue;
        let pipeline = &self.pipeline;
        self.gpu.scoped("running the upsampling shader", |device| {
            queue.write_buffer(&buffers.src, 0, bytemuck::cast_slice(src));
            let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("matte upsample"),
            });
            encode_upsample(&mut encoder, pipeline, buffers, (gx, gy));
            encoder.copy_buffer_to_buffer(&buffers.dst, 0, &buffers.readback, 0, buffers.dst_bytes);
            queue.submit([encoder.finish()]);
        })?;

        let out = self.gpu.read_back(buffers, len);
        // A failed map leaves the buffers in an unknown state; make fresh ones next time.
        if out.is_err() {
            self.buffers = None;
        }
        out
    }
}

impl GpuUpsampler {
    /// Refine Edges on the GPU: upsamples `in_w × in_h` logits to the guide's size and refines
    /// them with the frame as the guide in the same submission, the upsampled frame never leaving
    /// the card; returns logits, as [`super::refine_edges`] does, within 1e-4 of it in probability.
    pub fn upsample_refined(
        &mut self,
        src: &[f32],
        in_w: usize,
        in_h: usize,
        guide: Guide<'_>,
        settings: &EdgeRefinement,
    ) -> Result<Vec<f32>, MatteError> {
        self.refined(src, in_w, in_h, guide, settings, Output::Logits)
    }

    /// [`GpuUpsampler::upsample_refined`] without the conversion back to logits: the refined
    /// probability, as [`super::refine_alpha`].
    pub fn upsample_refined_alpha(
        &mut self,
        src: &[f32],
        in_w: usize,
        in_h: usize,
        guide: Guide<'_>,
        settings: &EdgeRefinement,
    ) -> Result<Vec<f32>, MatteError> {
        self.refined(src, in_w, in_h, guide, settings, Output::Alpha)
    }

    fn refined(
        &mut self,
        src: &[f32],
        in_w: usize,
        in_h: usize,
        guide: Guide<'_>,
        settings: &EdgeRefinement,
        output: Output,
    ) -> Result<Vec<f32>, MatteError> {
        let (out_w, out_h) = (guide.width, guide.height);
        check_buffer("low-resolution mask", src.len(), in_w, in_h)?;
        let len = check_size("upsampled matte", out_w, out_h)?;
        let plan = settings.plan(out_w, out_h)?;
        check_guide(guide, &plan)?;
        self.gpu.check_alive()?;
        let shape = Shape {
            in_w,
            in_h,
            out_w,
            out_h,
        };
        self.ensure_buffers(shape)?;
        if self.refiner.is_none() {
            let refiner = self
                .gpu
                .scoped("compiling the refine shader", GpuRefiner::new)?;
            self.refiner = Some(refiner);
        }
        let (Some(buffers), Some(refiner)) = (self.buffers.as_ref(), self.refiner.as_mut()) else {
            return Err(self.gpu.error("allocating the matte buffers", "no buffers"));
        };
        let (gx, gy) = (workgroups(out_w), workgroups(out_h));
        let queue = &self.gpu.queue;
        let pipeline = &self.pipeline;
        let encoded = self.gpu.scoped("running the refine shader", |device| {
            queue.write_buffer(&buffers.src, 0, bytemuck::cast_slice(src));
            let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("matte upsample and refine"),
            });
            encode_upsample(&mut encoder, pipeline, buffers, (gx, gy));
            let refined = refiner.encode(
                device,
                queue,
                &mut encoder,
                &buffers.dst,
                guide.rgb,
                &plan,
                output,
            )?;
            encoder.copy_buffer_to_buffer(refined, 0, &buffers.readback, 0, buffers.dst_bytes);
            queue.submit([encoder.finish()]);
            Ok::<(), MatteError>(())
        })?;
        encoded?;
        let out = self.gpu.read_back(buffers, len);
        if out.is_err() {
            self.buffers = None;
            if let Some(refiner) = self.refiner.as_mut() {
                refiner.invalidate();
            }
        }
        out
    }
}

impl Gpu {
    fn open(adapter: &wgpu::Adapter) -> Result<Self, MatteError> {
        let adapter_info = adapter.get_info();
        let info = GpuInfo {
            name: adapter_info.name.clone(),
            driver: format!("{} {}", adapter_info.driver, adapter_info.driver_info)
                .trim()
                .to_owned(),
            software: adapter_info.device_type == wgpu::DeviceType::Cpu,
        };
        // The adapter's own limits rather than WebGPU's defaults: an 8K matte is 133 MB, more than
        // the default 128 MiB storage-buffer binding.
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("sam2 matte"),
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| MatteError::DeviceRequest {
            adapter: info.name.clone(),
            message: e.to_string().trim_end_matches('.').to_owned(),
        })?;

        // wgpu's default handler panics; every call here is scoped, so this only catches what
        // escapes the scopes, and logs it.
        let adapter_name = info.name.clone();
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            log::error!(
                "The GPU {adapter_name} reported an error outside the matte's error scopes: {error}"
            );
        }));
        let lost = Arc::new(Mutex::new(None));
        let lost_slot = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut slot) = lost_slot.lock() {
                *slot = Some(format!("{reason:?}: {message}"));
            }
        });
        Ok(Self {
            device,
            queue,
            info,
            lost,
        })
    }

    /// Runs `work` inside error scopes and turns whatever wgpu reported into a [`MatteError`].
    fn scoped<T>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&wgpu::Device) -> T,
    ) -> Result<T, MatteError> {
        let out_of_memory = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let value = work(&self.device);
        // Scopes pop in reverse order of their pushing.
        let errors = [
            pollster::block_on(internal.pop()),
            pollster::block_on(validation.pop()),
            pollster::block_on(out_of_memory.pop()),
        ];
        self.check_alive()?;
        match errors.into_iter().flatten().next() {
            Some(error) => Err(self.error(operation, &error.to_string())),
            None => Ok(value),
        }
    }

    /// Maps the readback buffer, waits for the GPU, and copies the matte out.
    fn read_back(&self, buffers: &Buffers, len: usize) -> Result<Vec<f32>, MatteError> {
        let operation = "reading the matte back";
        let slice = buffers.readback.slice(0..buffers.dst_bytes);
        let (sender, receiver) = mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |result| {
            // The receiver outlives the poll below; a send can only fail if it was dropped.
            let _ = sender.send(result);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| self.error(operation, &e.to_string()))?;
        self.check_alive()?;
        match receiver.try_recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.error(operation, &e.to_string())),
            Err(_) => {
                return Err(self.error(operation, "the GPU did not finish mapping the buffer"));
            }
        }
        let out = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| self.error(operation, &e.to_string()))?;
            let bytes: &[u8] = &view;
            match bytemuck::try_cast_slice::<u8, f32>(bytes) {
                Ok(floats) => floats.to_vec(),
                // Mapped memory is page-aligned in practice; this path exists so that an odd
                // driver costs time, not a panic.
                Err(_) => bytes
                    .chunks_exact(4)
                    .map(|c| <[u8; 4]>::try_from(c).map_or(f32::NAN, f32::from_ne_bytes))
                    .collect(),
            }
        };
        buffers.readback.unmap();
        if out.len() != len {
            return Err(self.error(operation, "the buffer had the wrong size"));
        }
        Ok(out)
    }

    fn check_alive(&self) -> Result<(), MatteError> {
        let lost = match self.lost.lock() {
            Ok(slot) => slot.clone(),
            Err(_) => Some("the device-lost record was poisoned".to_owned()),
        };
        match lost {
            Some(message) => Err(MatteError::DeviceLost {
                adapter: self.info.name.clone(),
                message,
            }),
            None => Ok(()),
        }
    }

    fn error(&self, operation: &'static str, message: &str) -> MatteError {
        MatteError::Gpu {
            adapter: self.info.name.clone(),
            operation,
            message: message.trim().trim_end_matches('.').to_owned(),
        }
    }
}

fn request_adapter() -> Result<wgpu::Adapter, MatteError> {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
    descriptor.backends = wgpu::Backends::VULKAN;
    let instance = wgpu::Instance::new(descriptor);
    pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))
    .map_err(|e| MatteError::NoAdapter {
        reason: e.to_string().trim_end_matches('.').to_owned(),
    })
}

fn workgroups(pixels: usize) -> u32 {
    u32::try_from(pixels.div_ceil(WORKGROUP as usize)).unwrap_or(u32::MAX)
}

fn bind_group_layout(device: &wgpu::Device) -> wgpu::BindGroupLayout {
    let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("matte upsample"),
        entries: &[
            wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: wgpu::BufferSize::new(PARAMS_BYTES),
                },
                count: None,
            },
            storage(1, true),
            storage(2, true),
            storage(3, false),
        ],
    })
}

fn compile_pipeline(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
) -> wgpu::ComputePipeline {
    let module = device.create_shader_module(wgpu::include_wgsl!("../../../shaders/upsample.wgsl"));
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some("matte upsample"),
        bind_group_layouts: &[Some(layout)],
        immediate_size: 0,
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("matte upsample"),
        layout: Some(&pipeline_layout),
        module: &module,
        entry_point: Some("upsample"),
        compilation_options: Default::default(),
        cache: None,
    })
}

/// Makes the buffers for one shape and uploads what does not change between frames of that shape
/// (sizes and taps). Checks the device's limits first: wgpu would report an oversized buffer as a
/// validation error, but the caller deserves to know it was the size.
fn make_buffers(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    layout: &wgpu::BindGroupLayout,
    info: &GpuInfo,
    shape: Shape,
) -> Result<Buffers, MatteError> {
    let limits = device.limits();
    let limit = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    let bytes = |count: usize| (count as u64).saturating_mul(4);
    let too_large = |width: usize, height: usize, bytes: u64| MatteError::TooLarge {
        adapter: info.name.clone(),
        width,
        height,
        bytes,
        limit,
    };
    let src_bytes = bytes(shape.in_w.saturating_mul(shape.in_h));
    let dst_bytes = bytes(shape.out_w.saturating_mul(shape.out_h));
    let taps_bytes = bytes(4 * (shape.out_w + shape.out_h));
    if src_bytes > limit {
        return Err(too_large(shape.in_w, shape.in_h, src_bytes));
    }
    // The shader addresses pixels with u32 indices.
    let pixels = shape.out_w.saturating_mul(shape.out_h) as u64;
    if dst_bytes > limit || taps_bytes > limit || pixels > u64::from(u32::MAX) {
        return Err(too_large(shape.out_w, shape.out_h, dst_bytes));
    }
    let max_groups = u64::from(limits.max_compute_workgroups_per_dimension);
    if u64::from(workgroups(shape.out_w)) > max_groups
        || u64::from(workgroups(shape.out_h)) > max_groups
    {
        return Err(too_large(shape.out_w, shape.out_h, dst_bytes));
    }

    // Sizes were bounded by the buffer limit above, so they fit in u32.
    let as_u32 = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let small = is_small_output(shape.out_w, shape.out_h);
    let params = [
        as_u32(shape.in_w),
        as_u32(shape.in_h),
        as_u32(shape.out_w),
        as_u32(shape.out_h),
        u32::from(small),
        0,
        0,
        0,
    ];
    let tap_words: Vec<u32> = taps(shape.in_w, shape.out_w, small)
        .iter()
        .chain(&taps(shape.in_h, shape.out_h, small))
        .flat_map(|&Tap { i0, i1, w0, w1 }| [as_u32(i0), as_u32(i1), w0.to_bits(), w1.to_bits()])
        .collect();

    let buffer = |label, size, usage| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        })
    };
    use wgpu::BufferUsages as U;
    let params_buffer = buffer("matte params", PARAMS_BYTES, U::UNIFORM | U::COPY_DST);
    let src = buffer("matte logits in", src_bytes, U::STORAGE | U::COPY_DST);
    let taps_buffer = buffer("matte taps", taps_bytes, U::STORAGE | U::COPY_DST);
    let dst = buffer("matte logits out", dst_bytes, U::STORAGE | U::COPY_SRC);
    let readback = buffer("matte readback", dst_bytes, U::MAP_READ | U::COPY_DST);
    queue.write_buffer(&params_buffer, 0, bytemuck::cast_slice(&params));
    queue.write_buffer(&taps_buffer, 0, bytemuck::cast_slice(&tap_words));

    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("matte upsample"),
        layout,
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: params_buffer.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: src.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: taps_buffer.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 3,
                resource: dst.as_entire_binding(),
            },
        ],
    });
    Ok(Buffers {
        shape,
        src,
        dst,
        readback,
        dst_bytes,
        bind_group,
        _params: params_buffer,
        _taps: taps_buffer,
    })
}

/// The upsampling pass, encoded for the plain and the refined paths alike.
fn encode_upsample(
    encoder: &mut wgpu::CommandEncoder,
    pipeline: &wgpu::ComputePipeline,
    buffers: &Buffers,
    (gx, gy): (u32, u32),
) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("matte upsample"),
        timestamp_writes: None,
    });
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, &buffers.bind_group, &[]);
    pass.dispatch_workgroups(gx, gy, 1);
}
