// Refine Edges on the GPU: the fast guided filter of engine/src/matte/refine.rs (CPU passes in
// refine_cpu.rs), pass for pass and in the same arithmetic order, so that the two paths agree within
// 1e-4 (engine/tests/matte_refine.rs).
//
// The upsampled logits are the upsampling shader's output buffer, still on the card; the frame (the
// guide) is uploaded as its RGB bytes, four to a word. Passes, each a dispatch:
//   subsample     full-resolution logits and guide → block means on the grid, and their products
//   box_h, box_v  the mean over the window of radius `radius` (cut at the borders), per plane
//   coefficients  a (per guide channel) and b per grid cell
//   box_h, box_v  ā and b̄
//   apply         q = ā·I + b̄ at full resolution (bilinear ā, b̄), clamped, optionally as logits
// The CPU's box filter uses running sums in f64 (and it sums the guide's bytes as integers); here
// each output sums its window directly in f32.
// What the two paths round differently is mostly the f32 means themselves: a variance is a small
// difference of them and ε (1e-4) magnifies it, so at 1080p the paths differ by up to 8e-5 on
// lavapipe on the test's frame (Kahan-compensated sums here changed nothing). On the real photographs
// of tests/fixtures/edges with the colour guide they differ by up to about 1e-3 near some edges.

struct Params {
    width: u32,
    height: u32,
    low_w: u32,
    low_h: u32,
    subsample: u32,
    radius: u32,
    // 1: red, green and blue guide (13 planes); 0: luminance (4 planes).
    colour: u32,
    // 1: write logits; 0: write the probability.
    logits: u32,
    // Planes a box pass filters.
    channels: u32,
    epsilon: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
// The frame's RGB bytes, row-major, four to a word (little-endian).
@group(0) @binding(2) var<storage, read> guide: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

const LOGIT_LIMIT: f32 = 16.0;

fn guide_byte(i: u32) -> f32 {
    let word = guide[i / 4u];
    return f32((word >> (8u * (i % 4u))) & 0xffu);
}

fn guide_value(pixel: u32) -> vec3<f32> {
    let inv = 1.0 / 255.0;
    let r = guide_byte(pixel * 3u) * inv;
    let g = guide_byte(pixel * 3u + 1u) * inv;
    let b = guide_byte(pixel * 3u + 2u) * inv;
    if (params.colour != 0u) {
        return vec3<f32>(r, g, b);
    }
    return vec3<f32>(0.2126 * r + 0.7152 * g + 0.0722 * b, 0.0, 0.0);
}

@compute @workgroup_size(8, 8, 1)
fn subsample(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= params.low_w || id.y >= params.low_h) {
        return;
    }
    let s = params.subsample;
    let x0 = id.x * s;
    let x1 = min(x0 + s, params.width);
    let y0 = id.y * s;
    let y1 = min(y0 + s, params.height);
    var sum = vec4<f32>(0.0);
    for (var y = y0; y < y1; y++) {
        var acc = vec4<f32>(0.0);
        for (var x = x0; x < x1; x++) {
            let i = y * params.width + x;
            acc.x += src[i];
            let g = guide_value(i);
            acc.y += g.x;
            acc.z += g.y;
            acc.w += g.z;
        }
        sum += acc;
    }
    let inv = 1.0 / f32((x1 - x0) * (y1 - y0));
    let p = 1.0 / (1.0 + exp(-(sum.x * inv)));
    let n = params.low_w * params.low_h;
    let k = id.y * params.low_w + id.x;
    if (params.colour != 0u) {
        let r = sum.y * inv;
        let g = sum.z * inv;
        let b = sum.w * inv;
        dst[k] = p;
        dst[n + k] = r;
        dst[2u * n + k] = g;
        dst[3u * n + k] = b;
        dst[4u * n + k] = r * r;
        dst[5u * n + k] = r * g;
        dst[6u * n + k] = r * b;
        dst[7u * n + k] = g * g;
        dst[8u * n + k] = g * b;
        dst[9u * n + k] = b * b;
        dst[10u * n + k] = r * p;
        dst[11u * n + k] = g * p;
        dst[12u * n + k] = b * p;
    } else {
        let i = sum.y * inv;
        dst[k] = p;
        dst[n + k] = i;
        dst[2u * n + k] = i * i;
        dst[3u * n + k] = i * p;
    }
}

@compute @workgroup_size(8, 8, 1)
fn box_h(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= params.low_w || id.y >= params.low_h || id.z >= params.channels) {
        return;
    }
    let r = params.radius;
    let lo = select(0u, id.x - r, id.x >= r);
    let hi = min(id.x + r + 1u, params.low_w);
    let base = id.z * params.low_w * params.low_h + id.y * params.low_w;
    var acc = 0.0;
    for (var x = lo; x < hi; x++) {
        acc += src[base + x];
    }
    dst[base + id.x] = acc / f32(hi - lo);
}

@compute @workgroup_size(8, 8, 1)
fn box_v(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= params.low_w || id.y >= params.low_h || id.z >= params.channels) {
        return;
    }
    let r = params.radius;
    let lo = select(0u, id.y - r, id.y >= r);
    let hi = min(id.y + r + 1u, params.low_h);
    let base = id.z * params.low_w * params.low_h + id.x;
    var acc = 0.0;
    for (var y = lo; y < hi; y++) {
        acc += src[base + y * params.low_w];
    }
    dst[base + id.y * params.low_w] = acc / f32(hi - lo);
}

// Solves (Σ + εU)·a = cov by the adjugate, as refine.rs's solve_symmetric3.
@compute @workgroup_size(8, 8, 1)
fn coefficients(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= params.low_w || id.y >= params.low_h) {
        return;
    }
    let n = params.low_w * params.low_h;
    let k = id.y * params.low_w + id.x;
    let eps = params.epsilon;
    let mean_p = src[k];
    if (params.colour == 0u) {
        let mean_i = src[n + k];
        let variance = src[2u * n + k] - mean_i * mean_i;
        let cov = src[3u * n + k] - mean_i * mean_p;
        let a = cov / (variance + eps);
        dst[k] = a;
        dst[n + k] = 0.0;
        dst[2u * n + k] = 0.0;
        dst[3u * n + k] = mean_p - a * mean_i;
        return;
    }
    let m = vec3<f32>(src[n + k], src[2u * n + k], src[3u * n + k]);
    let rr = src[4u * n + k] - m.x * m.x + eps;
    let rg = src[5u * n + k] - m.x * m.y;
    let rb = src[6u * n + k] - m.x * m.z;
    let gg = src[7u * n + k] - m.y * m.y + eps;
    let gb = src[8u * n + k] - m.y * m.z;
    let bb = src[9u * n + k] - m.z * m.z + eps;
    let v = vec3<f32>(
        src[10u * n + k] - m.x * mean_p,
        src[11u * n + k] - m.y * mean_p,
        src[12u * n + k] - m.z * mean_p,
    );
    let i_rr = gg * bb - gb * gb;
    let i_rg = gb * rb - rg * bb;
    let i_rb = rg * gb - gg * rb;
    let i_gg = rr * bb - rb * rb;
    let i_gb = rb * rg - rr * gb;
    let i_bb = rr * gg - rg * rg;
    let det = i_rr * rr + i_rg * rg + i_rb * rb;
    let inv = 1.0 / det;
    let a0 = (i_rr * v.x + i_rg * v.y + i_rb * v.z) * inv;
    let a1 = (i_rg * v.x + i_gg * v.y + i_gb * v.z) * inv;
    let a2 = (i_rb * v.x + i_gb * v.y + i_bb * v.z) * inv;
    dst[k] = a0;
    dst[n + k] = a1;
    dst[2u * n + k] = a2;
    dst[3u * n + k] = mean_p - a0 * m.x - a1 * m.y - a2 * m.z;
}

struct Tap {
    i0: u32,
    i1: u32,
    w1: f32,
}

fn grid_tap(x: u32, low: u32) -> Tap {
    let last = low - 1u;
    let u = max((f32(x) + 0.5) / f32(params.subsample) - 0.5, 0.0);
    let i0 = min(u32(u), last);
    let i1 = min(i0 + 1u, last);
    let w1 = select(u - f32(i0), 0.0, i0 == last);
    return Tap(i0, i1, w1);
}

// ln x for a positive normal x, as refine.rs's fast_ln.
fn fast_ln(x: f32) -> f32 {
    let bits = bitcast<u32>(x);
    let exponent = i32((bits >> 23u) & 0xffu) - 127;
    let m = bitcast<f32>((bits & 0x007fffffu) | 0x3f800000u);
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let series = 1.0 + t2 * (1.0 / 3.0 + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0 + t2 * (1.0 / 9.0))));
    return f32(exponent) * 0.6931472 + 2.0 * t * series;
}

fn alpha_to_logit(q_in: f32) -> f32 {
    let q = select(1e-7, min(q_in, 1.0 - 5.9604645e-8), q_in >= 1e-7);
    let ratio = q / (1.0 - q);
    let l = clamp(fast_ln(ratio), -LOGIT_LIMIT, LOGIT_LIMIT);
    if (ratio > 1.0) {
        return max(l, 1.1754944e-38);
    }
    return min(l, 0.0);
}

@compute @workgroup_size(8, 8, 1)
fn apply(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= params.width || id.y >= params.height) {
        return;
    }
    let n = params.low_w * params.low_h;
    let tx = grid_tap(id.x, params.low_w);
    let ty = grid_tap(id.y, params.low_h);
    let top = ty.i0 * params.low_w;
    let bottom = ty.i1 * params.low_w;
    let pixel = id.y * params.width + id.x;
    let g = guide_value(pixel);
    var coefficient: array<f32, 4>;
    for (var c = 0u; c < 4u; c++) {
        let t0 = src[c * n + top + tx.i0];
        let b0 = src[c * n + bottom + tx.i0];
        let t1 = src[c * n + top + tx.i1];
        let b1 = src[c * n + bottom + tx.i1];
        let c0 = t0 + ty.w1 * (b0 - t0);
        let c1 = t1 + ty.w1 * (b1 - t1);
        coefficient[c] = c0 + tx.w1 * (c1 - c0);
    }
    var value = coefficient[3];
    value += coefficient[0] * g.x;
    value += coefficient[1] * g.y;
    value += coefficient[2] * g.z;
    let q = clamp(value, 0.0, 1.0);
    if (params.logits != 0u) {
        dst[pixel] = alpha_to_logit(q);
    } else {
        dst[pixel] = q;
    }
}
