//! Speck removal and hole filling: islands of a matte smaller than N pixels.
//!
//! An island is an 8-connected set of pixels, as in SAM 2's own clean-up
//! (`fill_holes_in_mask_scores`). A **speck** is an island of *visible* matte — above
//! [`VISIBLE`], half an 8-bit step, so anything that would show in an 8-bit matte — and removing
//! it sets it to 0. A **hole** is an island of matte that is *not fully opaque* (below
//! 1 − [`VISIBLE`]) and filling it sets it to 1. On a hard matte these are exactly SAM 2's
//! foreground and background components; on a soft matte a speck goes together with its soft
//! fringe, so nothing of it is left to see.
//!
//! Islands are found on runs (horizontal spans) joined by union-find, which costs one pass over
//! the pixels plus work in proportion to the number of runs, whatever the island sizes.

use super::error::{MatteError, check_buffer};

/// Matte values at or below this round to 0 in 8 bits.
pub(crate) const VISIBLE: f32 = 0.5 / 255.0;

/// Removes specks (islands of visible matte) smaller than `below` pixels; see the module
/// documentation. `below` 0 or 1 changes nothing.
pub fn remove_specks(
    matte: &[f32],
    width: usize,
    height: usize,
    below: usize,
) -> Result<Vec<f32>, MatteError> {
    check_buffer("matte", matte.len(), width, height)?;
    let mut out = matte.to_vec();
    remove_specks_in_place(&mut out, width, height, below);
    Ok(out)
}

/// Fills holes (islands of not fully opaque matte) smaller than `below` pixels; see the module
/// documentation. An island touching the frame's edge is a hole too, as in SAM 2.
pub fn fill_holes(
    matte: &[f32],
    width: usize,
    height: usize,
    below: usize,
) -> Result<Vec<f32>, MatteError> {
    check_buffer("matte", matte.len(), width, height)?;
    let mut out = matte.to_vec();
    fill_holes_in_place(&mut out, width, height, below);
    Ok(out)
}

/// [`remove_specks`] on a buffer whose size the caller has checked.
pub(crate) fn remove_specks_in_place(matte: &mut [f32], width: usize, height: usize, below: usize) {
    replace_small_islands(matte, width, height, below, |a| a > VISIBLE, 0.0);
}

/// [`fill_holes`] on a buffer whose size the caller has checked.
pub(crate) fn fill_holes_in_place(matte: &mut [f32], width: usize, height: usize, below: usize) {
    replace_small_islands(matte, width, height, below, |a| a < 1.0 - VISIBLE, 1.0);
}

/// A horizontal span `[x0, x1)` of island pixels in row `y`.
#[derive(Debug, Clone, Copy)]
struct Run {
    y: usize,
    x0: usize,
    x1: usize,
}

/// Sets every 8-connected island of `inside` pixels with fewer than `below` pixels to `value`;
/// returns how many pixels it set. Also SAM 2's own hole filling ([`crate::fill_holes`]).
pub(crate) fn replace_small_islands(
    matte: &mut [f32],
    width: usize,
    height: usize,
    below: usize,
    inside: impl Fn(f32) -> bool,
    value: f32,
) -> usize {
    if below <= 1 || width == 0 {
        return 0;
    }
    let mut runs: Vec<Run> = Vec::new();
    let mut parent: Vec<usize> = Vec::new();
    // Runs of the previous row are runs[prev_start..row_start].
    let mut prev_start = 0;
    for (y, row) in matte.chunks_exact(width).take(height).enumerate() {
        let row_start = runs.len();
        let mut x = 0;
        while x < width {
            // Find the next run [x0, x1) of inside pixels.
            let Some(x0) = row
                .iter()
                .skip(x)
                .position(|&a| inside(a))
                .map(|offset| x + offset)
            else {
                break;
            };
            let x1 = row
                .iter()
                .skip(x0)
                .position(|&a| !inside(a))
                .map_or(width, |offset| x0 + offset);
            let id = runs.len();
            runs.push(Run { y, x0, x1 });
            parent.push(id);
            x = x1;
        }
        // Join each run with the runs above it that touch it, diagonals included: [x0, x1) and
        // [p0, p1) touch when p0 <= x1 and x0 <= p1. Both lists are sorted, so one sweep does.
        let mut first_above = prev_start;
        for id in row_start..runs.len() {
            let Some(run) = runs.get(id).copied() else {
                continue;
            };
            while runs
                .get(first_above)
                .is_some_and(|above| first_above < row_start && above.x1 < run.x0)
            {
                first_above += 1;
            }
            let mut above_id = first_above;
            while above_id < row_start && runs.get(above_id).is_some_and(|above| above.x0 <= run.x1)
            {
                union(&mut parent, id, above_id);
                above_id += 1;
            }
        }
        prev_start = row_start;
    }

    let mut area = vec![0_usize; runs.len()];
    for (id, run) in runs.iter().enumerate() {
        let root = find(&mut parent, id);
        if let Some(total) = area.get_mut(root) {
            *total += run.x1 - run.x0;
        }
    }
    let mut replaced = 0;
    for (id, run) in runs.iter().enumerate() {
        let root = find(&mut parent, id);
        if area.get(root).is_some_and(|&total| total < below) {
            let start = run.y * width;
            if let Some(span) = matte.get_mut(start + run.x0..start + run.x1) {
                span.fill(value);
                replaced += span.len();
            }
        }
    }
    replaced
}

/// The root of `i`'s set, halving the path on the way.
fn find(parent: &mut [usize], mut i: usize) -> usize {
    loop {
        let Some(&p) = parent.get(i) else {
            return i;
        };
        if p == i {
            return i;
        }
        let grandparent = parent.get(p).copied().unwrap_or(p);
        if let Some(slot) = parent.get_mut(i) {
            *slot = grandparent;
        }
        i = grandparent;
    }
}

/// Joins the sets of `a` and `b`, keeping the smaller root so that roots stay the earliest run.
fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        let (low, high) = (ra.min(rb), ra.max(rb));
        if let Some(slot) = parent.get_mut(high) {
            *slot = low;
        }
    }
}
