// Bilinear upsampling of one object's mask logits, as PyTorch's
// F.interpolate(mode="bilinear", align_corners=False).
//
// The source coordinates and weights are not computed here: the engine computes them once per
// output column and row (engine/src/matte/bilinear.rs, `taps`) and uploads them, so that the GPU
// picks exactly the same source pixels and weights as the CPU path. What is left per pixel is
// PyTorch's blend as its CPU build compiles it: the two horizontal blends first, then the vertical
// one, each `x0 * w0 + x1 * w1` with the first product fused into the addition. Where the driver
// implements `fma` as a true fused multiply-add, the result is bit for bit the CPU path's; lavapipe
// (Mesa 22.3) evaluates it as a multiply and an add, and then differs by up to 2 ulps.

struct Params {
    in_w: u32,
    in_h: u32,
    out_w: u32,
    out_h: u32,
    // 1 when out_w + out_h <= 128: PyTorch then uses its channels-last kernel, which weights the
    // four pixels with products of the two axes' weights (the taps were made for it too).
    small: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// One output coordinate along one axis: lower and upper source index and their weights.
struct Tap {
    i0: u32,
    i1: u32,
    w0: f32,
    w1: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
// Row-major in_w × in_h logits.
@group(0) @binding(1) var<storage, read> src: array<f32>;
// out_w column taps, then out_h row taps.
@group(0) @binding(2) var<storage, read> taps: array<Tap>;
// Row-major out_w × out_h logits.
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

// 8×8 invocations: neighbouring invocations along x write neighbouring floats.
@compute @workgroup_size(8, 8, 1)
fn upsample(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= params.out_w || id.y >= params.out_h) {
        return;
    }
    let tx = taps[id.x];
    let ty = taps[params.out_w + id.y];
    let top = ty.i0 * params.in_w;
    let bottom = ty.i1 * params.in_w;
    let a00 = src[top + tx.i0];
    let a01 = src[top + tx.i1];
    let a10 = src[bottom + tx.i0];
    let a11 = src[bottom + tx.i1];
    var value: f32;
    if (params.small != 0u) {
        var acc = fma(a00, ty.w0 * tx.w0, a01 * (ty.w0 * tx.w1));
        acc = fma(a10, ty.w1 * tx.w0, acc);
        value = fma(a11, ty.w1 * tx.w1, acc);
    } else {
        let t = fma(a00, tx.w0, a01 * tx.w1);
        let b = fma(a10, tx.w0, a11 * tx.w1);
        value = fma(t, ty.w0, b * ty.w1);
    }
    dst[id.y * params.out_w + id.x] = value;
}
