// Refine Edges on the GPU: the fast guided filter of engine/src/matte/refine.rs (CPU passes in
// refine_cpu.rs), pass for pass and in the same arithmetic order, so that the two paths agree within
// 1e-4 (engine/tests/matte_refine.rs, on the real photographs of tests/fixtures/edges).
//
// The upsampled logits are the upsampling shader's output buffer, still on the card; the frame (the
// guide) is uploaded as its RGB bytes, four to a word. Passes, each a dispatch:
//   subsample     full-resolution logits and guide → the grid's levels (whole numbers: refine.rs's
//                 Levels) of the probability and the guide
//   stats_h,      the sums over the window of radius `radius` (cut at the borders) of the levels and
//   stats_v       their products, per statistic, in u32 (exact mod 2^32)
//   coefficients  a (per guide channel) and b per grid cell: refine.rs's window_coefficients
//   box_h, box_v  ā and b̄, means of f32
//   apply         q = ā·I + b̄ at full resolution (bilinear ā, b̄), clamped, optionally as logits
// The CPU's box filter uses running sums and this one sums each window directly; with integer levels
// both get the same bits, so the 3×3 solve, which ε = 1e-4 makes sensitive to any rounding of the
// covariance, sees the same numbers on both paths. The buffers are arrays of u32; the f32 values
// (logits, coefficients, the result) are stored as their bits.

struct Params {
    width: u32,
    height: u32,
    low_w: u32,
    low_h: u32,
    subsample: u32,
    radius: u32,
    // 1: red, green and blue guide (13 statistics); 0: luminance (4).
    colour: u32,
    // 1: write logits; 0: write the probability.
    logits: u32,
    // Planes a box pass filters.
    channels: u32,
    // ε in summed guide levels squared per cell (Levels::epsilon).
    epsilon: f32,
    // A block's guide sum → its level: shift right by this, rounded half up.
    guide_shift: u32,
    // The probability's levels.
    p_levels: u32,
    // Levels::a_scale and Levels::b_scale.
    a_scale: f32,
    b_scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
// The frame's RGB bytes, row-major, four to a word (little-endian).
@group(0) @binding(2) var<storage, read> guide: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<u32>;

const LOGIT_LIMIT: f32 = 16.0;

fn src_f32(i: u32) -> f32 {
    return bitcast<f32>(src[i]);
}

fn guide_byte_u32(i: u32) -> u32 {
    let word = guide[i / 4u];
    return (word >> (8u * (i % 4u))) & 0xffu;
}

fn guide_byte(i: u32) -> f32 {
    return f32(guide_byte_u32(i));
}

// The guide at full resolution in [0, 1]; luminance with refine.rs's LUMA_WEIGHTS (1024ths).
fn guide_value(pixel: u32) -> vec3<f32> {
    let inv = 1.0 / 255.0;
    let r = guide_byte(pixel * 3u) * inv;
    let g = guide_byte(pixel * 3u + 1u) * inv;
    let b = guide_byte(pixel * 3u + 2u) * inv;
    if (params.colour != 0u) {
        return vec3<f32>(r, g, b);
    }
    return vec3<f32>((218.0 / 1024.0) * r + (732.0 / 1024.0) * g + (74.0 / 1024.0) * b, 0.0, 0.0);
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
    var logit_sum = 0.0;
    var bytes = vec3<u32>(0u);
    for (var y = y0; y < y1; y++) {
        var acc = 0.0;
        for (var x = x0; x < x1; x++) {
            let i = y * params.width + x;
            acc += src_f32(i);
            bytes += vec3<u32>(guide_byte_u32(i * 3u), guide_byte_u32(i * 3u + 1u), guide_byte_u32(i * 3u + 2u));
        }
        logit_sum += acc;
    }
    let count = (x1 - x0) * (y1 - y0);
    let p = 1.0 / (1.0 + exp(-(logit_sum * (1.0 / f32(count)))));
    let q_p = u32(floor(p * f32(params.p_levels) + 0.5));
    // A block cut by the frame's edge is scaled up to a whole block's sum, rounded.
    let full = s * s;
    let whole = (2u * bytes * full + vec3<u32>(count)) / (2u * count);
    let shift = params.guide_shift;
    let half = (1u << shift) >> 1u;
    let n = params.low_w * params.low_h;
    let k = id.y * params.low_w + id.x;
    dst[k] = q_p;
    if (params.colour != 0u) {
        let q = (whole + vec3<u32>(half)) >> vec3<u32>(shift);
        dst[n + k] = q.x;
        dst[2u * n + k] = q.y;
        dst[3u * n + k] = q.z;
    } else {
        dst[n + k] = (218u * whole.x + 732u * whole.y + 74u * whole.z + half) >> shift;
    }
}

// Which two of a cell's levels (0: p; 1, 2, 3: the guide's channels; 4: the constant 1) statistic
// `z` multiplies: refine.rs's STAT_FACTORS, and [p, y, yy, yp] for luminance.
fn factors(z: u32) -> vec2<u32> {
    if (params.colour == 0u) {
        switch z {
            case 0u: { return vec2<u32>(0u, 4u); }
            case 1u: { return vec2<u32>(1u, 4u); }
            case 2u: { return vec2<u32>(1u, 1u); }
            default: { return vec2<u32>(1u, 0u); }
        }
    }
    switch z {
        case 0u: { return vec2<u32>(0u, 4u); }
        case 1u: { return vec2<u32>(1u, 4u); }
        case 2u: { return vec2<u32>(2u, 4u); }
        case 3u: { return vec2<u32>(3u, 4u); }
        case 4u: { return vec2<u32>(1u, 1u); }
        case 5u: { return vec2<u32>(1u, 2u); }
        case 6u: { return vec2<u32>(1u, 3u); }
        case 7u: { return vec2<u32>(2u, 2u); }
        case 8u: { return vec2<u32>(2u, 3u); }
        case 9u: { return vec2<u32>(3u, 3u); }
        case 10u: { return vec2<u32>(1u, 0u); }
        case 11u: { return vec2<u32>(2u, 0u); }
        default: { return vec2<u32>(3u, 0u); }
    }
}

fn level(plane: u32, cell: u32) -> u32 {
    if (plane == 4u) {
        return 1u;
    }
    return src[plane * params.low_w * params.low_h + cell];
}

// The box window around `i` along an axis of `len` samples, clipped to it: [lo, hi).
fn window(i: u32, len: u32) -> vec2<u32> {
    let r = params.radius;
    return vec2<u32>(select(0u, i - r, i >= r), min(i + r + 1u, len));
}

@compute @workgroup_size(8, 8, 1)
fn stats_h(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= params.low_w || id.y >= params.low_h || id.z >= params.channels) {
        return;
    }
    let span = window(id.x, params.low_w);
    let lo = span.x;
    let hi = span.y;
    let row = id.y * params.low_w;
    let f = factors(id.z);
    var acc = 0u;
    for (var x = lo; x < hi; x++) {
        acc += level(f.x, row + x) * level(f.y, row + x);
    }
    dst[id.z * params.low_w * params.low_h + row + id.x] = acc;
}

@compute @workgroup_size(8, 8, 1)
fn stats_v(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= params.low_w || id.y >= params.low_h || id.z >= params.channels) {
        return;
    }
    let span = window(id.y, params.low_h);
    let lo = span.x;
    let hi = span.y;
    let base = id.z * params.low_w * params.low_h + id.x;
    var acc = 0u;
    for (var y = lo; y < hi; y++) {
        acc += src[base + y * params.low_w];
    }
    dst[base + id.y * params.low_w] = acc;
}

@compute @workgroup_size(8, 8, 1)
fn box_h(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= params.low_w || id.y >= params.low_h || id.z >= params.channels) {
        return;
    }
    let span = window(id.x, params.low_w);
    let lo = span.x;
    let hi = span.y;
    let base = id.z * params.low_w * params.low_h + id.y * params.low_w;
    var acc = 0.0;
    for (var x = lo; x < hi; x++) {
        acc += src_f32(base + x);
    }
    dst[base + id.x] = bitcast<u32>(acc / f32(hi - lo));
}

@compute @workgroup_size(8, 8, 1)
fn box_v(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= params.low_w || id.y >= params.low_h || id.z >= params.channels) {
        return;
    }
    let span = window(id.y, params.low_h);
    let lo = span.x;
    let hi = span.y;
    let base = id.z * params.low_w * params.low_h + id.x;
    var acc = 0.0;
    for (var y = lo; y < hi; y++) {
        acc += src_f32(base + y * params.low_w);
    }
    dst[base + id.y * params.low_w] = bitcast<u32>(acc / f32(hi - lo));
}

// A channel's window sum, split into its integer mean and the remainder.
struct Channel {
    sum: u32,
    mean: u32,
    rest: f32,
}

fn channel(s: u32, n: u32) -> Channel {
    let m = s / max(n, 1u);
    return Channel(s, m, f32(s - m * n));
}

// n times the covariance of two channels from the sum of their products: exact mod 2^32, and
// small enough to be exact as an i32.
fn centred(s: u32, x: Channel, y: Channel, n: u32, inv_n: f32) -> f32 {
    let c = s - x.mean * y.sum - y.mean * x.sum + n * x.mean * y.mean;
    return f32(bitcast<i32>(c)) - x.rest * y.rest * inv_n;
}

fn channel_mean(x: Channel, inv_n: f32) -> f32 {
    return f32(x.mean) + x.rest * inv_n;
}

fn window_len(i: u32, len: u32) -> u32 {
    let w = window(i, len);
    return w.y - w.x;
}

// refine.rs's window_coefficients, line for line; (Σ + εU)·a = cov solved by the adjugate, as
// refine.rs's solve_symmetric3.
@compute @workgroup_size(8, 8, 1)
fn coefficients(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x >= params.low_w || id.y >= params.low_h) {
        return;
    }
    let cells = params.low_w * params.low_h;
    let k = id.y * params.low_w + id.x;
    let n = window_len(id.x, params.low_w) * window_len(id.y, params.low_h);
    let n_f = f32(n);
    let inv_n = 1.0 / n_f;
    let eps = params.epsilon * n_f;
    let p = channel(src[k], n);
    if (params.colour == 0u) {
        let y = channel(src[cells + k], n);
        let a = centred(src[3u * cells + k], y, p, n, inv_n) / (centred(src[2u * cells + k], y, y, n, inv_n) + eps);
        let offset = channel_mean(p, inv_n) - a * channel_mean(y, inv_n);
        dst[k] = bitcast<u32>(a * params.a_scale);
        dst[cells + k] = bitcast<u32>(0.0);
        dst[2u * cells + k] = bitcast<u32>(0.0);
        dst[3u * cells + k] = bitcast<u32>(offset * params.b_scale);
        return;
    }
    let r = channel(src[cells + k], n);
    let g = channel(src[2u * cells + k], n);
    let b = channel(src[3u * cells + k], n);
    let rr = centred(src[4u * cells + k], r, r, n, inv_n) + eps;
    let rg = centred(src[5u * cells + k], r, g, n, inv_n);
    let rb = centred(src[6u * cells + k], r, b, n, inv_n);
    let gg = centred(src[7u * cells + k], g, g, n, inv_n) + eps;
    let gb = centred(src[8u * cells + k], g, b, n, inv_n);
    let bb = centred(src[9u * cells + k], b, b, n, inv_n) + eps;
    let v = vec3<f32>(
        centred(src[10u * cells + k], r, p, n, inv_n),
        centred(src[11u * cells + k], g, p, n, inv_n),
        centred(src[12u * cells + k], b, p, n, inv_n),
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
    let offset = channel_mean(p, inv_n) - a0 * channel_mean(r, inv_n) - a1 * channel_mean(g, inv_n) - a2 * channel_mean(b, inv_n);
    dst[k] = bitcast<u32>(a0 * params.a_scale);
    dst[cells + k] = bitcast<u32>(a1 * params.a_scale);
    dst[2u * cells + k] = bitcast<u32>(a2 * params.a_scale);
    dst[3u * cells + k] = bitcast<u32>(offset * params.b_scale);
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
        let t0 = src_f32(c * n + top + tx.i0);
        let b0 = src_f32(c * n + bottom + tx.i0);
        let t1 = src_f32(c * n + top + tx.i1);
        let b1 = src_f32(c * n + bottom + tx.i1);
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
        dst[pixel] = bitcast<u32>(alpha_to_logit(q));
    } else {
        dst[pixel] = bitcast<u32>(q);
    }
}
