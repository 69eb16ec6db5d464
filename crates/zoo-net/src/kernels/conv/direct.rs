//! Convolutions with few output channels at stride 1 (the MNIST CNN's and LeNet's 5x5 layers,
//! stems of 8 to 16 channels). Through im2col + gemm such a layer fills half or less of gemm's
//! 16-row tile while copying each input value `kh * kw` times: on the MNIST CNN at batch 256,
//! gemm's thin kernels, im2col and its copies were 60 % of the forward. Here an image's input
//! planes are zero-padded once, and each block of [`CHANNELS`] output channels by [`BLOCK`]
//! columns of one output row sums every input channel and tap in registers before one store,
//! with the bias and the fused ReLU, in fused multiply-adds where the CPU has them (one core of
//! the 2-core AVX2 VM, the MNIST CNN's second layer at batch 256: 11.0 ms against 16.3 ms for
//! im2col + gemm; 16.4 ms with separate products and sums).

use std::mem::MaybeUninit;

use super::padded::{Padded, BLOCK};
use super::Geometry;
use crate::kernels::fast_math::mul_add;

/// Output channels of a register block: with [`BLOCK`] columns, eight AVX2 sums in flight.
const CHANNELS: usize = 4;

/// The most output channels this kernel takes: gemm's tiles have 16 rows, so from there on
/// they are full and its packed products pay off.
const MAX_CHANNELS: usize = 16;

/// The most values of an image's padded planes (256 KB), so they stay in a core's L2 cache
/// while every block reads them.
const MAX_SCRATCH: usize = 1 << 16;

/// A convolution's weights packed for the kernel: `[blocks][c_in][kh][kw][CHANNELS]`, the last
/// block's missing channels zero.
pub(super) struct Direct {
    packed: Vec<f32>,
    padded: Padded,
    /// Per (input channel, tap), in the packed weights' order: its offset in the padded planes
    /// from the top-left input of an output block.
    taps: Vec<usize>,
}

impl Direct {
    /// `None` where the kernel does not serve `g`: grouped, strided, dilated, pointwise
    /// (gemm reads the image as it is), more than [`MAX_CHANNELS`] outputs, or planes too big.
    pub(super) fn plan(g: &Geometry, w: &[f32]) -> Option<Self> {
        let padded = Padded::forward(g);
        let serves = g.groups == 1
            && g.is_dense_stride_one()
            && !g.is_pointwise()
            && g.c_out <= MAX_CHANNELS
            && g.c_in * padded.len() <= MAX_SCRATCH;
        serves.then(|| Self {
            packed: pack(g, w),
            padded,
            taps: tap_offsets(g, padded),
        })
    }

    /// Scratch values an image needs (its padded input planes).
    pub(super) fn scratch_len(&self, g: &Geometry) -> usize {
        g.c_in * self.padded.len()
    }

    /// Image `image`'s output `[c_out, oh, ow]` into `out`, every value written.
    pub(super) fn image_output(
        &self,
        g: &Geometry,
        image: &[f32],
        bias: Option<&[f32]>,
        out: &mut [MaybeUninit<f32>],
        scratch: &mut [f32],
    ) {
        let plane_in = g.h * g.w;
        for (c, plane) in scratch.chunks_exact_mut(self.padded.len()).enumerate() {
            self.padded
                .fill(plane, &image[c * plane_in..][..plane_in], [g.h, g.w]);
        }
        let per_block = g.c_in * g.kh * g.kw * CHANNELS;
        let positions = g.positions();
        for (block, weights) in self.packed.chunks_exact(per_block).enumerate() {
            let first = block * CHANNELS;
            let channels = CHANNELS.min(g.c_out - first);
            let mut lane_bias = [0.0; CHANNELS];
            if let Some(bias) = bias {
                lane_bias[..channels].copy_from_slice(&bias[first..first + channels]);
            }
            let out = &mut out[first * positions..][..channels * positions];
            channel_block(out, scratch, self.padded, &self.taps, weights, g, lane_bias);
        }
    }
}

fn tap_offsets(g: &Geometry, padded: Padded) -> Vec<usize> {
    let mut taps = Vec::with_capacity(g.c_in * g.kh * g.kw);
    for ci in 0..g.c_in {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                taps.push(ci * padded.len() + ki * padded.cols + kj);
            }
        }
    }
    taps
}

/// `w` (`[c_out, c_in, kh, kw]`) as `[blocks][c_in][kh][kw][CHANNELS]`.
fn pack(g: &Geometry, w: &[f32]) -> Vec<f32> {
    let taps = g.kh * g.kw;
    let blocks = g.c_out.div_ceil(CHANNELS);
    let mut packed = vec![0.0; blocks * g.c_in * taps * CHANNELS];
    for co in 0..g.c_out {
        let (block, lane) = (co / CHANNELS, co % CHANNELS);
        for ci in 0..g.c_in {
            for t in 0..taps {
                let at = ((block * g.c_in + ci) * taps + t) * CHANNELS + lane;
                packed[at] = w[(co * g.c_in + ci) * taps + t];
            }
        }
    }
    packed
}

crate::simd::wide_kernel! {
    /// Up to [`CHANNELS`] output planes (`out`, plane after plane) from the padded input
    /// planes: `out[c][r][j] = relu?(bias[c] + sum w[c][ci][ki][kj] * x[ci][r + ki][j + kj])`.
    fn channel_block(
        out: &mut [MaybeUninit<f32>],
        planes: &[f32],
        padded: Padded,
        taps: &[usize],
        weights: &[f32],
        g: &Geometry,
        bias: [f32; CHANNELS],
    ) {
        let (ow, positions, cols) = (g.ow, g.positions(), padded.cols);
        let channels = out.len() / positions.max(1);
        for r in 0..g.oh {
            for j0 in (0..ow).step_by(BLOCK) {
                let window = &planes[r * cols + j0..];
                let mut acc = [[0.0f32; BLOCK]; CHANNELS];
                // One flat loop over (input channel, tap): nested loops of five taps cost a
                // mispredicted exit every few products.
                for (&offset, w) in taps.iter().zip(weights.chunks_exact(CHANNELS)) {
                    let x: &[f32; BLOCK] = window[offset..offset + BLOCK]
                        .try_into()
                        .expect("blocks read inside the padded planes");
                    for (acc, &wv) in acc.iter_mut().zip(w) {
                        for (a, &v) in acc.iter_mut().zip(x) {
                            *a = mul_add::<FUSED_MULTIPLY_ADD>(wv, v, *a);
                        }
                    }
                }
                let n = BLOCK.min(ow - j0);
                // Channel by channel, a fixed count the loop unrolls: indexing the sums by a
                // count known only at run time would keep them in memory through the products.
                for (c, b) in bias.into_iter().enumerate() {
                    if c == channels {
                        break;
                    }
                    let mut sums = acc[c];
                    for v in &mut sums {
                        *v += b;
                        if g.relu {
                            *v = v.max(0.0);
                        }
                    }
                    let dst = &mut out[c * positions + r * ow + j0..][..n];
                    if let Ok(whole) = <&mut [MaybeUninit<f32>; BLOCK]>::try_from(&mut *dst) {
                        // A whole block: vector stores (the loop below stays scalar).
                        for (d, v) in whole.iter_mut().zip(sums) {
                            d.write(v);
                        }
                    } else {
                        for (d, v) in dst.iter_mut().zip(sums) {
                            d.write(v);
                        }
                    }
                }
            }
        }
    }
}
