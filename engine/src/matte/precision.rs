//! The precision of the logits a matte is made from: a fixed step of 1/256 logit over ±128, and
//! −1024 (SAM 2's "no object" logit) for anything below that range.
//!
//! A track cache stores low-res logits at this precision (16-bit codes, see
//! `track_cache::codec`), because lossless f32 logits take about 200 KiB per frame and object at
//! 1024² and the cache must stay near 64 KiB. So that a matte rendered from the cache is
//! byte-identical to one rendered from the live session, every matte rounds its logits the same
//! way first ([`crate::matte::MatteUpsampler`] does it on entry). Rounding is idempotent: rounded
//! logits round to themselves. The model never sees rounded logits — the memory encoder, the
//! decoder's mask input and the traces keep full precision.
//!
//! What it costs: an error of at most 1/512 logit (0.002) inside ±128. With softness 1 that moves
//! a matte value by at most 0.0005 (≤ 1 level at 8 bits); a hard matte changes only where the
//! upsampled logit is within 0.002 of the threshold. Logits above 128 become 127.996, those
//! below −128 become −1024: a threshold beyond ±128 sees clamped logits.

/// Logits per code step.
pub const LOGIT_STEP: f32 = 1.0 / 256.0;
/// The code of −1024 and of every logit below −128.
pub const ABSENT_CODE: i16 = i16::MIN;
/// SAM 2's "no object" logit, which [`ABSENT_CODE`] stands for.
pub const ABSENT_LOGIT: f32 = -1024.0;
/// Logits below this are "absent" ([`ABSENT_CODE`]).
const LOWEST: f32 = -128.0;

/// The 16-bit code of a logit (NaN becomes 0, the undecided logit).
pub fn logit_code(logit: f32) -> i16 {
    if logit < LOWEST {
        return ABSENT_CODE;
    }
    if logit.is_nan() {
        return 0;
    }
    let scaled = (logit / LOGIT_STEP).round();
    scaled.clamp(-f32::from(i16::MAX), f32::from(i16::MAX)) as i16
}

/// The logit a code stands for.
pub fn code_logit(code: i16) -> f32 {
    if code == ABSENT_CODE {
        ABSENT_LOGIT
    } else {
        f32::from(code) * LOGIT_STEP
    }
}

/// `logit` at the matte precision: what a track cache gives back for it.
pub fn round_logit(logit: f32) -> f32 {
    code_logit(logit_code(logit))
}

/// [`round_logit`] of each value.
pub fn round_logits(logits: &[f32]) -> Vec<f32> {
    logits.iter().map(|&v| round_logit(v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_idempotent_and_within_half_a_step() {
        let mut v = -140.0f32;
        while v < 140.0 {
            let r = round_logit(v);
            assert_eq!(round_logit(r).to_bits(), r.to_bits(), "{v}");
            if (-127.99..=127.99).contains(&v) {
                assert!((r - v).abs() <= LOGIT_STEP / 2.0, "{v} → {r}");
            }
            v += 0.000_731;
        }
    }

    #[test]
    fn the_edges_of_the_range() {
        assert_eq!(round_logit(-1024.0), -1024.0);
        assert_eq!(round_logit(-128.5), -1024.0);
        assert_eq!(round_logit(f32::NEG_INFINITY), -1024.0);
        assert_eq!(round_logit(-128.0), -32767.0 / 256.0);
        assert_eq!(round_logit(500.0), 32767.0 / 256.0);
        assert_eq!(round_logit(f32::INFINITY), 32767.0 / 256.0);
        assert_eq!(round_logit(f32::NAN), 0.0);
        assert_eq!(round_logit(0.001), 0.0);
        assert_eq!(round_logit(0.003), LOGIT_STEP);
        assert_eq!(round_logit(-0.003), -LOGIT_STEP);
    }
}
