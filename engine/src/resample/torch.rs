//! PyTorch's CPU `F.interpolate(x, size, mode="bilinear", align_corners=False)` on one float32
//! channel, with and without `antialias=True`, reproduced to the bit.
//!
//! SAM 2 uses the antialiased kernel for mask prompts (mask → S×S, then `>= 0.5`; S×S logits →
//! S/4×S/4) and the plain one to bring low-resolution logits to the video size, where the sign of
//! the result is the matte. A logit close to zero flips a pixel when it moves by one ulp, so this
//! mirrors not only PyTorch's algorithm (`aten/src/ATen/native/cpu/UpSampleKernel.cpp`) but also
//! the arithmetic its compiled kernels perform. That arithmetic was measured against torch 2.15.0
//! on an x86-64 CPU with AVX-512 (torch dispatches its AVX2/AVX-512 builds there; both are built
//! with FMA), by extracting weights with one-hot inputs and testing every candidate evaluation
//! order on random data:
//!
//! - **antialiased** (`_upsample_bilinear2d_aa`, separable: width first, then height; a side that
//!   keeps its size is skipped, equal sizes copy). Taps are computed in `f32` as
//!   `HelperInterpBase::_compute_indices_min_size_weights_aa` does (mixed `f32`/`f64` expressions
//!   kept as written). The sum `out = v0·w0; out += vj·wj` is compiled as: the first
//!   `4·⌊(n−1)/4⌋` additions with the product rounded first, the remaining ones as fused
//!   multiply-adds (the loop is unrolled by four and the remainder contracted).
//! - **plain** (`upsample_bilinear2d`, generic kernel): per axis `real = scale·(i + 0.5) − 0.5`
//!   (in `f32`, clamped at 0), `i0 = min(⌊real⌋, n−1)`, `λ1 = clamp(real − i0, 0, 1)`,
//!   `λ0 = 1 − λ1`; then `t = fma(x[i0], λ0, x[i1]·λ1)` along the width and
//!   `out = fma(t0, λ0h, t1·λ1h)` along the height. When `out_h + out_w <= 128` PyTorch takes its
//!   channels-last kernel instead, which computes the source coordinate as one fused
//!   `fma(scale, i + 0.5, −0.5)` (so an index can move by an `f32` ulp, and a value by up to
//!   5e-5) and sums the four corners with the product weights `λh·λw` as
//!   `fma(x11, w11, fma(x10, w10, fma(x00, w00, x01·w01)))`.
//!
//! A fused multiply-add is computed exactly in `f64` (see [`fma32`]) so that the result does not
//! depend on this build having FMA instructions.

/// `fma(a, b, c)` for `f32`, correctly rounded without FMA instructions.
///
/// `a·b` is exact in `f64` (24 + 24 bits); `a·b + c` rounds once to `f64` and then to `f32`. That
/// double rounding can only go wrong when the `f64` sum lands exactly halfway between two `f32`
/// values while the exact sum does not; that case is detected and settled by the exact error of
/// the `f64` addition (TwoSum). Exact for results in the normal `f32` range.
#[inline]
pub(crate) fn fma32(a: f32, b: f32, c: f32) -> f32 {
    if cfg!(target_feature = "fma") {
        return a.mul_add(b, c);
    }
    let p = f64::from(a) * f64::from(b);
    let c = f64::from(c);
    let s = p + c;
    let r = s as f32;
    if !is_f32_midpoint(s) {
        return r;
    }
    let bb = s - p;
    let err = (p - (s - bb)) + (c - bb);
    if err > 0.0 && f64::from(r) < s {
        r.next_up()
    } else if err < 0.0 && f64::from(r) > s {
        r.next_down()
    } else {
        r
    }
}

/// Whether the `f64` `s` lies exactly halfway between two adjacent normal `f32` values: its 29
/// mantissa bits below `f32` precision are `1000…0`.
#[inline]
fn is_f32_midpoint(s: f64) -> bool {
    const LOW: u64 = (1 << 29) - 1;
    s.to_bits() & LOW == 1 << 28
}

/// `fma32` over whole rows: `out[i] = fma(a[i], wa, b[i]·wb)`. Branch-free so that it vectorizes;
/// a row in which any element hits the double-rounding case is redone with [`fma32`].
fn fma_rows(out: &mut [f32], a: &[f32], wa: f32, b: &[f32], wb: f32) {
    if cfg!(target_feature = "fma") {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = x.mul_add(wa, y * wb);
        }
        return;
    }
    let mut hazard = false;
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        let s = f64::from(x) * f64::from(wa) + f64::from(y * wb);
        // is_f32_midpoint on the low 32 bits alone (the 29 bits it tests all lie there), which
        // vectorizes with 32-bit lane compares.
        hazard |= (s.to_bits() as u32) & ((1 << 29) - 1) == 1 << 28;
        *o = s as f32;
    }
    if hazard {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = fma32(x, wa, y * wb);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Antialiased

/// The taps of one output pixel along one axis: source pixels `start .. start + weights.len()`.
#[derive(Debug, Clone, PartialEq)]
struct AaTaps {
    start: usize,
    weights: Vec<f32>,
}

/// `HelperInterpLinear::aa_filter`: the triangle `1 − |x|` (evaluated as `1.0 − x` in `f64`, then
/// rounded to `f32`, which equals the `f32` subtraction).
fn triangle(x: f32) -> f32 {
    let x = x.abs();
    if x < 1.0 {
        (1.0 - f64::from(x)) as f32
    } else {
        0.0
    }
}

/// `_compute_index_ranges_weights` with `antialias=true`, `align_corners=false`, no explicit scale.
/// Every cast and the `f32`/`f64` mix follow the C++ expressions.
fn aa_taps(in_size: usize, out_size: usize) -> Vec<AaTaps> {
    // area_pixel_compute_scale<float>: static_cast<float>(input_size) / output_size.
    let scale = in_size as f32 / out_size as f32;
    // support = (scale >= 1.0) ? (interp_size * 0.5) * scale : interp_size * 0.5, interp_size 2.
    let support: f32 = if scale >= 1.0 {
        (1.0 * f64::from(scale)) as f32
    } else {
        1.0
    };
    let max_interp_size = (support.ceil() as i64) * 2 + 1;
    let invscale: f32 = if scale >= 1.0 {
        (1.0 / f64::from(scale)) as f32
    } else {
        1.0
    };
    (0..out_size)
        .map(|i| {
            let center = (f64::from(scale) * (i as f64 + 0.5)) as f32;
            let xmin = ((f64::from(center - support) + 0.5) as i64).max(0);
            let xmax = ((f64::from(center + support) + 0.5) as i64).min(in_size as i64);
            let xsize = (xmax - xmin).clamp(0, max_interp_size);
            let mut weights: Vec<f32> = (0..xsize)
                .map(|j| {
                    let d = (j + xmin) as f32 - center;
                    triangle(((f64::from(d) + 0.5) * f64::from(invscale)) as f32)
                })
                .collect();
            let mut total = 0.0f32;
            for &w in &weights {
                total += w;
            }
            if total != 0.0 {
                for w in &mut weights {
                    *w /= total;
                }
            }
            AaTaps {
                start: xmin as usize,
                weights,
            }
        })
        .collect()
}

/// `output = v0·w0; output += vj·wj` as PyTorch's compiled loop evaluates it (module docs).
#[inline]
fn aa_dot(values: impl Iterator<Item = f32>, weights: &[f32]) -> f32 {
    let n = weights.len();
    let plain_until = 4 * (n.saturating_sub(1) / 4);
    let mut acc = 0.0f32;
    for (j, (v, &w)) in values.zip(weights).enumerate() {
        acc = if j == 0 {
            v * w
        } else if j <= plain_until {
            acc + v * w
        } else {
            fma32(v, w, acc)
        };
    }
    acc
}

/// Antialiased bilinear resize of one float32 channel (`width × height`, rows top to bottom) to
/// `out_w × out_h`, as PyTorch's
/// `F.interpolate(x, (out_h, out_w), mode="bilinear", align_corners=False, antialias=True)`.
///
/// Total: a buffer of the wrong length is read as far as it goes (missing values are 0); an empty
/// source gives zeros; an output too large to address gives an empty vector.
pub fn resize_bilinear_antialias(
    src: &[f32],
    width: usize,
    height: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<f32> {
    let (w, h, ow, oh) = (width, height, out_w, out_h);
    let Some(out_len) = super::buffer_len(ow, oh, 1) else {
        return Vec::new();
    };
    let Some(in_len) = super::buffer_len(w, h, 1).filter(|&n| n > 0) else {
        return vec![0.0; out_len];
    };
    if out_len == 0 {
        return Vec::new();
    }
    let mut cur = super::fit(src, in_len).into_owned();
    let mut cur_w = w;
    if ow != w {
        let taps = aa_taps(w, ow);
        let Some(len) = super::buffer_len(ow, h, 1) else {
            return Vec::new();
        };
        let mut next = vec![0.0f32; len];
        for (row, out_row) in cur.chunks_exact(w).zip(next.chunks_exact_mut(ow)) {
            for (t, o) in taps.iter().zip(out_row.iter_mut()) {
                let window = row.get(t.start..).unwrap_or_default();
                *o = aa_dot(window.iter().copied(), &t.weights);
            }
        }
        cur = next;
        cur_w = ow;
    }
    if oh != h {
        let taps = aa_taps(h, oh);
        let mut next = vec![0.0f32; out_len];
        for (t, out_row) in taps.iter().zip(next.chunks_exact_mut(cur_w)) {
            for (x, o) in out_row.iter_mut().enumerate() {
                let column = cur.iter().skip(t.start * cur_w + x).step_by(cur_w);
                *o = aa_dot(column.copied(), &t.weights);
            }
        }
        cur = next;
    }
    cur
}

// ---------------------------------------------------------------------------------------------
// Plain bilinear

/// One output coordinate of the plain kernel: the two source indices and their weights.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Lerp {
    i0: usize,
    i1: usize,
    l0: f32,
    l1: f32,
}

/// `compute_source_index_and_lambda` (align_corners=false, no explicit scale), all in `f32`.
/// `fused`: the source coordinate `scale·(i + 0.5) − 0.5` is one fused multiply-add, as compiled
/// into PyTorch's channels-last kernel (the generic kernel rounds the product first).
fn lerps(in_size: usize, out_size: usize, fused: bool) -> Vec<Lerp> {
    let scale = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|i| {
            if in_size == out_size {
                return Lerp {
                    i0: i,
                    i1: i,
                    l0: 1.0,
                    l1: 0.0,
                };
            }
            let x = i as f32 + 0.5;
            let real = if fused {
                fma32(scale, x, -0.5)
            } else {
                scale * x - 0.5
            };
            let real = real.max(0.0);
            let last = in_size.saturating_sub(1);
            let i0 = (real.floor() as usize).min(last);
            let l1 = (real - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < last { i0 + 1 } else { i0 };
            Lerp {
                i0,
                i1,
                l0: 1.0 - l1,
                l1,
            }
        })
        .collect()
}

/// A plain bilinear resize from one size to another, with its index and weight tables computed
/// once: the matte of every frame of a clip goes through the same sizes, and a 4K output is worth
/// not recomputing 6000 table entries for.
#[derive(Debug, Clone)]
pub struct BilinearResize {
    in_w: usize,
    in_h: usize,
    out_w: usize,
    out_h: usize,
    cols: Vec<Lerp>,
    rows: Vec<Lerp>,
    /// `out_w + out_h <= 128`: PyTorch's channels-last kernel, see [`Self::apply_small`].
    small: bool,
}

impl BilinearResize {
    /// Prepares the resize from `width × height` to `out_w × out_h`.
    pub fn new(width: usize, height: usize, out_w: usize, out_h: usize) -> Self {
        // PyTorch's choice of kernel (`_use_vectorized_kernel_cond_2d` for one channel).
        let small = out_w.saturating_add(out_h) <= 128;
        if super::buffer_len(out_w, out_h, 1).is_none() {
            // Unaddressable output: keep no tables; `apply` returns an empty vector.
            return BilinearResize {
                in_w: width,
                in_h: height,
                out_w,
                out_h,
                cols: Vec::new(),
                rows: Vec::new(),
                small,
            };
        }
        BilinearResize {
            in_w: width,
            in_h: height,
            out_w,
            out_h,
            cols: lerps(width, out_w, small),
            rows: lerps(height, out_h, small),
            small,
        }
    }

    /// The input size, `(width, height)`.
    pub fn input_size(&self) -> (usize, usize) {
        (self.in_w, self.in_h)
    }

    /// The output size, `(width, height)`.
    pub fn output_size(&self) -> (usize, usize) {
        (self.out_w, self.out_h)
    }

    /// Resizes `src` (the input size) into `out` (the output size).
    ///
    /// Total: a source of the wrong length is read as far as it goes (missing values are 0), an
    /// empty source gives zeros, and an `out` of the wrong length is filled as far as it goes.
    pub fn apply_into(&self, src: &[f32], out: &mut [f32]) {
        let Some(in_len) = super::buffer_len(self.in_w, self.in_h, 1).filter(|&n| n > 0) else {
            out.fill(0.0);
            return;
        };
        let src = super::fit(src, in_len);
        if self.out_w == 0 || self.out_h == 0 {
            return;
        }
        if self.small {
            self.apply_small(&src, out);
        } else {
            self.apply_separable(&src, out);
        }
    }

    /// Resizes `src` into a new buffer (empty if the output is too large to address).
    pub fn apply(&self, src: &[f32]) -> Vec<f32> {
        let Some(n) = super::buffer_len(self.out_w, self.out_h, 1) else {
            return Vec::new();
        };
        let mut out = vec![0.0f32; n];
        self.apply_into(src, &mut out);
        out
    }

    /// The generic kernel, evaluated separably: the width interpolation of a source row is the
    /// same number whichever output row uses it, so each needed source row is interpolated once.
    fn apply_separable(&self, src: &[f32], out: &mut [f32]) {
        let (w, ow) = (self.in_w, self.out_w);
        let mut needed = vec![false; self.in_h];
        for r in &self.rows {
            for i in [r.i0, r.i1] {
                if let Some(n) = needed.get_mut(i) {
                    *n = true;
                }
            }
        }
        let Some(len) = super::buffer_len(ow, self.in_h, 1) else {
            return;
        };
        let mut tmp = vec![0.0f32; len];
        let src_rows = src.chunks_exact(w);
        for ((row, t_row), &need) in src_rows.zip(tmp.chunks_exact_mut(ow)).zip(&needed) {
            if !need {
                continue;
            }
            for (t, c) in t_row.iter_mut().zip(&self.cols) {
                let x0 = row.get(c.i0).copied().unwrap_or_default();
                let x1 = row.get(c.i1).copied().unwrap_or_default();
                *t = fma32(x0, c.l0, x1 * c.l1);
            }
        }
        for (r, out_row) in self.rows.iter().zip(out.chunks_exact_mut(ow)) {
            let t0 = tmp.get(r.i0 * ow..(r.i0 + 1) * ow).unwrap_or_default();
            let t1 = tmp.get(r.i1 * ow..(r.i1 + 1) * ow).unwrap_or_default();
            fma_rows(out_row, t0, r.l0, t1, r.l1);
        }
    }

    /// PyTorch's channels-last kernel, which it uses when `out_h + out_w <= 128`.
    fn apply_small(&self, src: &[f32], out: &mut [f32]) {
        let w = self.in_w;
        let at = |y: usize, x: usize| src.get(y * w + x).copied().unwrap_or_default();
        for (r, out_row) in self.rows.iter().zip(out.chunks_exact_mut(self.out_w)) {
            for (c, o) in self.cols.iter().zip(out_row.iter_mut()) {
                let (w00, w01) = (r.l0 * c.l0, r.l0 * c.l1);
                let (w10, w11) = (r.l1 * c.l0, r.l1 * c.l1);
                let acc = fma32(at(r.i0, c.i0), w00, at(r.i0, c.i1) * w01);
                let acc = fma32(at(r.i1, c.i0), w10, acc);
                *o = fma32(at(r.i1, c.i1), w11, acc);
            }
        }
    }
}

/// Plain bilinear resize of one float32 channel (`width × height`, rows top to bottom) to
/// `out_w × out_h`, as PyTorch's
/// `F.interpolate(x, (out_h, out_w), mode="bilinear", align_corners=False)`: how SAM 2 brings
/// low-resolution mask logits to the video size. Use [`BilinearResize`] to reuse the tables
/// across frames.
pub fn resize_bilinear(
    src: &[f32],
    width: usize,
    height: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<f32> {
    BilinearResize::new(width, height, out_w, out_h).apply(src)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fma32_is_correctly_rounded_on_midpoint_cases() {
        // 1 + 2^-24 is halfway between 1 and the next f32; a tiny c decides the rounding.
        let a = 1.0f32 + f32::EPSILON; // 1 + 2^-23
        let b = 1.0f32 - f32::EPSILON / 2.0; // 1 - 2^-24
        // a·b = 1 + 2^-24 - 2^-47: just below the midpoint after adding c = 2^-47 it is exact.
        let exact = f64::from(a) * f64::from(b);
        assert_eq!(fma32(a, b, 0.0), exact as f32);
        let c = 2f32.powi(-47);
        // a·b + c = 1 + 2^-24 exactly: a tie, rounds to even (1.0).
        assert_eq!(fma32(a, b, c), 1.0);
        // Slightly above the tie (by 2^-70, less than half an f64 ulp): the f64 sum is the tie
        // itself, yet the exact sum rounds up.
        let c_up = 2f32.powi(-47) * (1.0 + f32::EPSILON);
        assert_eq!(fma32(a, b, c_up), 1.0 + f32::EPSILON);
        assert_eq!(fma32(-a, b, -c_up), -(1.0 + f32::EPSILON));
        assert_eq!(fma32(a, b, c_up), a.mul_add(b, c_up));
        // Ordinary values agree with f32::mul_add (a correctly rounded fma from libm).
        for (x, y, z) in [
            (1.1f32, 2.3f32, -0.7f32),
            (-31.5, 0.37, 12.0),
            (3e-3, 7e4, -1.0),
        ] {
            assert_eq!(fma32(x, y, z), x.mul_add(y, z));
        }
    }

    #[test]
    fn aa_taps_sum_to_one_and_stay_inside() {
        for (i, o) in [
            (320usize, 256usize),
            (180, 256),
            (256, 64),
            (1000, 37),
            (3, 7),
        ] {
            for t in aa_taps(i, o) {
                assert!(t.start + t.weights.len() <= i);
                let s: f32 = t.weights.iter().sum();
                assert!((s - 1.0).abs() < 1e-5, "{i}→{o}: {s}");
            }
        }
    }

    #[test]
    fn lerps_clamp_at_the_edges() {
        let l = lerps(64, 320, false);
        assert_eq!((l[0].i0, l[0].i1, l[0].l0, l[0].l1), (0, 1, 1.0, 0.0));
        let last = l[319];
        assert_eq!((last.i0, last.i1), (63, 63));
        let same = lerps(5, 5, true);
        assert!(
            same.iter()
                .enumerate()
                .all(|(i, l)| l.i0 == i && l.l1 == 0.0)
        );
    }

    #[test]
    fn constant_maps_stay_constant() {
        let src = vec![-3.25f32; 17 * 9];
        for (ow, oh) in [(40, 30), (5, 3), (300, 200), (17, 40)] {
            let a = resize_bilinear(&src, 17, 9, ow, oh);
            // λ0 + λ1 is 1 only up to rounding, so a constant comes back within an ulp or so.
            assert!(
                a.iter().all(|&v| (v + 3.25).abs() < 1e-6),
                "plain {ow}×{oh}"
            );
            let b = resize_bilinear_antialias(&src, 17, 9, ow, oh);
            assert!(b.iter().all(|&v| (v + 3.25).abs() < 1e-5), "aa {ow}×{oh}");
        }
    }
}
