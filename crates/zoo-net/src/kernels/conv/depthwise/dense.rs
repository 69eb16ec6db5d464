//! The depthwise path at stride 1 without dilation (ConvNeXt's 7x7, most of MobileNet's and
//! EfficientNet's 3x3 and 5x5): each plane copied once into a zero-padded scratch, then every
//! output computed in registers, blocks of `ROWS x BLOCK` outputs accumulating all the
//! filter's taps before one store. The tap-by-tap path loads and stores each output row once
//! per tap and runs short clipped loops (14 or 7 values in ConvNeXt's later stages). The
//! input's gradient is the same correlation of the zero-padded output gradient with the
//! filter turned by 180 degrees.

use super::super::padded::{Padded, BLOCK, ROWS};
use super::super::Geometry;

/// One output plane (holding its bias): `x` padded into `scratch`, then the correlation.
pub(super) fn forward_plane(
    out: &mut [f32],
    x: &[f32],
    weights: &[f32],
    g: &Geometry,
    scratch: &mut [f32],
) {
    let padded = Padded::forward(g);
    padded.fill(scratch, x, [g.h, g.w]);
    correlate(out, scratch, padded.cols, weights, [g.kh, g.kw], g.ow);
    if g.relu {
        out.iter_mut().for_each(|v| *v = v.max(0.0));
    }
}

/// One input plane's gradient (`dx` zeroed): `dy` padded into `scratch`, correlated with the
/// turned filter.
pub(super) fn input_grad_plane(
    dx: &mut [f32],
    dy: &[f32],
    weights: &[f32],
    g: &Geometry,
    scratch: &mut [f32],
) {
    let padded = Padded::input_grad(g);
    padded.fill(scratch, dy, [g.oh, g.ow]);
    let turned: Vec<f32> = weights.iter().rev().copied().collect();
    correlate(dx, scratch, padded.cols, &turned, [g.kh, g.kw], g.w);
}

crate::simd::wide_kernel! {
    /// `out[r][j] += sum w[ki][kj] * padded[r + ki][j + kj]` over a plane of rows `ow` long.
    fn correlate(out: &mut [f32], padded: &[f32], cols: usize, w: &[f32], k: [usize; 2], ow: usize) {
        let [kh, kw] = k;
        let oh = out.len() / ow.max(1);
        for r0 in (0..oh).step_by(ROWS) {
            for j0 in (0..ow).step_by(BLOCK) {
                let mut acc = [[0.0f32; BLOCK]; ROWS];
                for ki in 0..kh {
                    for (dr, acc) in acc.iter_mut().enumerate() {
                        let row = &padded[(r0 + dr + ki) * cols + j0..][..kw - 1 + BLOCK];
                        for kj in 0..kw {
                            let (wv, x) = (w[ki * kw + kj], &row[kj..kj + BLOCK]);
                            for (a, &v) in acc.iter_mut().zip(x) {
                                *a += wv * v;
                            }
                        }
                    }
                }
                let n = BLOCK.min(ow - j0);
                for (dr, acc) in acc.iter().enumerate().take(oh - r0) {
                    let dst = &mut out[(r0 + dr) * ow + j0..][..n];
                    for (d, &a) in dst.iter_mut().zip(acc) {
                        *d += a;
                    }
                }
            }
        }
    }
}
