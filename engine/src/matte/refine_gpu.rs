//! Refine Edges on the GPU: `shaders/guided_filter.wgsl`, encoded after the upsampling pass into
//! the same command buffer, reading the upsampled logits where the upsampling shader left them, so
//! the frame stays on the card from upsampling to the refined matte; only the result is read back.

use super::error::MatteError;
use super::refine::{COLOUR_STATS, GuideChannels, LUMINANCE_STATS, Output, RefinePlan};

/// Size of the shader's `Params`: sixteen 32-bit values.
const PARAMS_BYTES: u64 = 64;
/// Workgroup edge; must match `@workgroup_size` in the shader.
const WORKGROUP: u32 = 8;

/// The compiled passes of the guided filter.
#[derive(Debug)]
pub(super) struct GpuRefiner {
    layout: wgpu::BindGroupLayout,
    subsample: wgpu::ComputePipeline,
    stats_h: wgpu::ComputePipeline,
    stats_v: wgpu::ComputePipeline,
    box_h: wgpu::ComputePipeline,
    box_v: wgpu::ComputePipeline,
    coefficients: wgpu::ComputePipeline,
    apply: wgpu::ComputePipeline,
    buffers: Option<RefineBuffers>,
}

/// What one plan (frame size and settings) needs on the card.
#[derive(Debug)]
struct RefineBuffers {
    plan: RefinePlan,
    output: Output,
    guide: wgpu::Buffer,
    guide_bytes: u64,
    out: wgpu::Buffer,
    groups: [wgpu::BindGroup; 7],
    /// Kept with the bind groups that read them.
    _buffers: Vec<wgpu::Buffer>,
}

impl GpuRefiner {
    /// Compiles the passes; the layout is the upsampler's (uniform, two inputs, one output).
    pub(super) fn new(device: &wgpu::Device) -> Self {
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
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("matte refine"),
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
        });
        let module =
            device.create_shader_module(wgpu::include_wgsl!("../../../shaders/guided_filter.wgsl"));
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("matte refine"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = |entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("matte refine"),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        Self {
            subsample: pipeline("subsample"),
            stats_h: pipeline("stats_h"),
            stats_v: pipeline("stats_v"),
            box_h: pipeline("box_h"),
            box_v: pipeline("box_v"),
            coefficients: pipeline("coefficients"),
            apply: pipeline("apply"),
            layout,
            buffers: None,
        }
    }

    /// Forgets the buffers, whose bind groups read the upsampler's output buffer: called when
    /// that buffer is replaced.
    pub(super) fn invalidate(&mut self) {
        self.buffers = None;
    }

    /// Uploads the guide and encodes every pass into `encoder`, reading `logits` (the upsampled
    /// frame, on the card); returns the buffer the result will be in.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn encode<'a>(
        &'a mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        encoder: &mut wgpu::CommandEncoder,
        logits: &wgpu::Buffer,
        rgb: &[u8],
        plan: &RefinePlan,
        output: Output,
    ) -> Result<&'a wgpu::Buffer, MatteError> {
        if self
            .buffers
            .as_ref()
            .is_none_or(|b| b.plan != *plan || b.output != output)
        {
            self.buffers = None;
            self.buffers = Some(self.make_buffers(device, queue, logits, plan, output));
        }
        let Some(buffers) = self.buffers.as_ref() else {
            return Err(MatteError::Gpu {
                adapter: String::new(),
                operation: "allocating the refine buffers",
                message: "no buffers".into(),
            });
        };
        // Whole words of the RGB bytes; the last, partial word padded with zeros.
        if buffers.guide_bytes < rgb.len() as u64 {
            return Err(MatteError::Gpu {
                adapter: String::new(),
                operation: "uploading the guide frame",
                message: "the guide buffer is too small".into(),
            });
        }
        let (words, rest) = rgb.as_chunks::<4>();
        queue.write_buffer(&buffers.guide, 0, words.as_flattened());
        if !rest.is_empty() {
            let mut tail = [0u8; 4];
            for (t, &b) in tail.iter_mut().zip(rest) {
                *t = b;
            }
            queue.write_buffer(&buffers.guide, (words.len() * 4) as u64, &tail);
        }

        let groups = |n: usize| u32::try_from(n.div_ceil(WORKGROUP as usize)).unwrap_or(u32::MAX);
        let (lx, ly) = (groups(plan.low_w), groups(plan.low_h));
        let (fx, fy) = (groups(plan.width), groups(plan.height));
        let planes = statistics(plan.guide);
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("matte refine"),
            timestamp_writes: None,
        });
        let steps: [(&wgpu::ComputePipeline, (u32, u32, u32)); 7] = [
            (&self.subsample, (lx, ly, 1)),
            (&self.stats_h, (lx, ly, planes)),
            (&self.stats_v, (lx, ly, planes)),
            (&self.coefficients, (lx, ly, 1)),
            (&self.box_h, (lx, ly, 4)),
            (&self.box_v, (lx, ly, 4)),
            (&self.apply, (fx, fy, 1)),
        ];
        for ((pipeline, (x, y, z)), group) in steps.iter().zip(&buffers.groups) {
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, group, &[]);
            pass.dispatch_workgroups(*x, *y, *z);
        }
        drop(pass);
        Ok(&buffers.out)
    }

    fn make_buffers(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        logits: &wgpu::Buffer,
        plan: &RefinePlan,
        output: Output,
    ) -> RefineBuffers {
        use wgpu::BufferUsages as U;
        let buffer = |label, size: u64, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: size.max(4),
                usage,
                mapped_at_creation: false,
            })
        };
        let as_u32 = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        let colour = plan.guide == GuideChannels::Colour;
        let planes = u64::from(statistics(plan.guide));
        let level_planes: u64 = if colour { 4 } else { 2 };
        let cells = (plan.low_w * plan.low_h) as u64;
        let pixels = (plan.width * plan.height) as u64;
        let guide_bytes = (pixels * 3).div_ceil(4) * 4;
        let params = |channels: u32| {
            let levels = &plan.levels;
            let constants = plan.window_constants();
            let words: [u32; 16] = [
                as_u32(plan.width),
                as_u32(plan.height),
                as_u32(plan.low_w),
                as_u32(plan.low_h),
                as_u32(plan.subsample),
                as_u32(plan.low_radius),
                u32::from(colour),
                u32::from(output == Output::Logits),
                channels,
                constants.epsilon.to_bits(),
                levels.guide_shift,
                levels.probability,
                constants.a_scale.to_bits(),
                constants.b_scale.to_bits(),
                0,
                0,
            ];
            let b = buffer(
                "matte refine params",
                PARAMS_BYTES,
                U::UNIFORM | U::COPY_DST,
            );
            queue.write_buffer(&b, 0, bytemuck::cast_slice(&words));
            b
        };
        let main_params = params(1);
        let planes_params = params(planes as u32);
        let ab_params = params(4);
        let guide = buffer("matte refine guide", guide_bytes, U::STORAGE | U::COPY_DST);
        let levels = buffer("matte refine levels", level_planes * cells * 4, U::STORAGE);
        let stats_tmp = buffer("matte refine sums (rows)", planes * cells * 4, U::STORAGE);
        let sums = buffer("matte refine sums", planes * cells * 4, U::STORAGE);
        let ab = buffer("matte refine a, b", 4 * cells * 4, U::STORAGE);
        let ab_tmp = buffer("matte refine a, b (rows)", 4 * cells * 4, U::STORAGE);
        let ab_mean = buffer("matte refine mean a, b", 4 * cells * 4, U::STORAGE);
        let out = buffer("matte refined", pixels * 4, U::STORAGE | U::COPY_SRC);
        let group = |params: &wgpu::Buffer, src: &wgpu::Buffer, dst: &wgpu::Buffer| {
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("matte refine"),
                layout: &self.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: params.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: src.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: guide.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: dst.as_entire_binding(),
                    },
                ],
            })
        };
        let groups = [
            group(&main_params, logits, &levels),
            group(&planes_params, &levels, &stats_tmp),
            group(&planes_params, &stats_tmp, &sums),
            group(&main_params, &sums, &ab),
            group(&ab_params, &ab, &ab_tmp),
            group(&ab_params, &ab_tmp, &ab_mean),
            group(&main_params, &ab_mean, &out),
        ];
        RefineBuffers {
            plan: *plan,
            output,
            guide_bytes,
            groups,
            _buffers: vec![
                main_params,
                planes_params,
                ab_params,
                levels,
                stats_tmp,
                sums,
                ab,
                ab_tmp,
                ab_mean,
            ],
            guide,
            out,
        }
    }
}

/// The window statistics a guide needs (refine.rs's [`COLOUR_STATS`], [`LUMINANCE_STATS`]).
fn statistics(guide: GuideChannels) -> u32 {
    match guide {
        GuideChannels::Colour => COLOUR_STATS as u32,
        GuideChannels::Luminance => LUMINANCE_STATS as u32,
    }
}
