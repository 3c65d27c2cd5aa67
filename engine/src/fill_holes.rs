//! SAM 2's hole filling (`sam2.utils.misc.fill_holes_in_mask_scores`): small background regions of
//! low-resolution mask logits become foreground.
//!
//! The official predictor (`fill_hole_area = 8`) labels the background — pixels whose logit is
//! `<= 0` — with its CUDA connected-components kernel (`sam2/csrc/connected_components.cu`, a
//! block-based union–find over 2×2 blocks whose merge step tests all eight neighbours, so the
//! components are **8-connected**) and sets every background component of at most `max_area`
//! pixels to the logit `0.1`. Components touching the image border are not exempt: a small
//! background notch at the edge is filled too.
//!
//! On a CPU-only machine the official code cannot load that kernel and skips the step (with a
//! warning), which is why reference traces made on the CPU say `fill_hole_applied: false`; the
//! engine applies it only where the trace or the user asks for it.
//!
//! The CUDA kernel refuses images with an odd width or height (and the official code then skips
//! the step); SAM 2's low-resolution masks are always even-sized, and this function fills any size.

use ndarray::ArrayViewMut2;

use crate::matte::components::replace_small_islands;

/// The logit given to filled pixels, `torch.where(is_hole, 0.1, mask)` in float32.
pub const FILLED_LOGIT: f32 = 0.1;

/// Fills the holes of one mask of logits (`width × height`, rows top to bottom) in place: every
/// 8-connected component of pixels `<= 0` with at most `max_area` pixels is set to
/// [`FILLED_LOGIT`]. Returns how many pixels were filled.
///
/// `max_area = 0` fills nothing (the official code requires it to be positive and the predictor
/// skips the call at 0). A buffer whose length is not `width · height` is left as it is (0 is
/// returned): its rows cannot be told apart.
pub fn fill_holes_in_mask_scores(
    scores: &mut [f32],
    width: usize,
    height: usize,
    max_area: usize,
) -> usize {
    if max_area == 0 || width.checked_mul(height) != Some(scores.len()) || scores.is_empty() {
        return 0;
    }
    // The matte's island labelling (8-connected runs), with SAM 2's "at most max_area".
    replace_small_islands(
        scores,
        width,
        height,
        max_area.saturating_add(1),
        |v| v <= 0.0,
        FILLED_LOGIT,
    )
}

/// [`fill_holes_in_mask_scores`] on an `[H, W]` array view (any strides).
pub fn fill_holes_in_mask_array(mut scores: ArrayViewMut2<'_, f32>, max_area: usize) -> usize {
    let (height, width) = scores.dim();
    if let Some(slice) = scores.as_slice_mut() {
        return fill_holes_in_mask_scores(slice, width, height, max_area);
    }
    // Not in standard layout: work on a copy and write it back.
    let mut copy: Vec<f32> = scores.iter().copied().collect();
    let filled = fill_holes_in_mask_scores(&mut copy, width, height, max_area);
    for (s, c) in scores.iter_mut().zip(copy) {
        *s = c;
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(rows: &[&str]) -> (Vec<f32>, usize, usize) {
        let h = rows.len();
        let w = rows[0].len();
        let v = rows
            .iter()
            .flat_map(|r| r.chars().map(|c| if c == '#' { 5.0 } else { -5.0 }))
            .collect();
        (v, w, h)
    }

    fn render(v: &[f32], w: usize) -> Vec<String> {
        v.chunks(w)
            .map(|r| {
                r.iter()
                    .map(|&x| {
                        if x == FILLED_LOGIT {
                            'f'
                        } else if x > 0.0 {
                            '#'
                        } else {
                            '.'
                        }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn diagonal_neighbours_join_background() {
        // The two single holes touch diagonally: one component of 2 pixels.
        let (mut v, w, h) = parse(&["######", "#.####", "##.###", "######"]);
        assert_eq!(fill_holes_in_mask_scores(&mut v, w, h, 1), 0);
        assert_eq!(fill_holes_in_mask_scores(&mut v, w, h, 2), 2);
        assert_eq!(render(&v, w), ["######", "#f####", "##f###", "######"]);
    }

    #[test]
    fn border_components_are_filled_too() {
        let (mut v, w, h) = parse(&["..####", "######", "#####.", "......"]);
        // Top-left notch (2 px) is filled; the bottom region (7 px) is not at max_area 6.
        assert_eq!(fill_holes_in_mask_scores(&mut v, w, h, 6), 2);
        assert_eq!(render(&v, w), ["ff####", "######", "#####.", "......"]);
    }

    #[test]
    fn zero_counts_as_background_and_nan_as_foreground() {
        // 0.0 at (1, 0) and −0.0 at (2, 1) touch diagonally: one component of two pixels.
        let mut v = vec![1.0, 0.0, 1.0, f32::NAN, 1.0, -0.0, 1.0, 1.0, 1.0];
        assert_eq!(fill_holes_in_mask_scores(&mut v, 3, 3, 1), 0);
        assert_eq!(fill_holes_in_mask_scores(&mut v, 3, 3, 2), 2);
        assert_eq!(v[1], FILLED_LOGIT);
        assert_eq!(v[5], FILLED_LOGIT);
        assert!(v[3].is_nan());
    }

    #[test]
    fn bad_sizes_and_zero_area_fill_nothing() {
        let mut v = vec![-1.0; 6];
        assert_eq!(fill_holes_in_mask_scores(&mut v, 4, 2, 8), 0);
        assert_eq!(fill_holes_in_mask_scores(&mut v, 3, 2, 0), 0);
        assert!(v.iter().all(|&x| x == -1.0));
        assert_eq!(fill_holes_in_mask_scores(&mut v, 3, 2, 6), 6);
    }

    #[test]
    fn array_views_of_any_layout_work() {
        let mut a = ndarray::Array2::<f32>::from_elem((4, 5), 3.0);
        a[[1, 2]] = -1.0;
        let filled = fill_holes_in_mask_array(a.view_mut().reversed_axes(), 1);
        assert_eq!(filled, 1);
        assert_eq!(a[[1, 2]], FILLED_LOGIT);
    }
}
