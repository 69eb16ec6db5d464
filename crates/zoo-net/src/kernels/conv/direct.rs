//! Convolutions with few output channels at stride 1 (the MNIST CNN's and LeNet's 5x5 layers,
//! stems of 8 to 16 channels). Through im2col + gemm such a layer fills half or less of gemm's
//! 16-row tile while copying each input value `kh * kw` times: on the MNIST CNN at batch 256,
//! gemm's thin kernels, im2col and its copies were 60 % of the forward. Here an image's input
//! planes are zero-padded once, and each block of four (AVX-512: eight) output channels by [`BLOCK`]
//! columns of one output row sums every input channel and tap in registers before one store,
//! with the bias and the fused ReLU, in fused multiply-adds where the CPU has them (one core of
//! the 2-core AVX2 VM, the MNIST CNN's second layer at batch 256: 11.0 ms against 16.3 ms for
//! im2col + gemm; 16.4 ms with separate products and sums).

use std::mem::MaybeUninit;

use super::padded::{Padded, BLOCK};
use super::Geometry;
use crate::kernels::fast_math::mul_add;

/// Output channels of a register block with [`BLOCK`] columns: eight vector sums in flight
/// either way (a fused multiply-add's latency times the two a core starts per cycle), as four
/// channels of two AVX2 vectors or eight of one AVX-512 vector. With four channels of one
/// AVX-512 vector each waited on its own sums: the MNIST CNN's two layers at batch 256 took
/// 2.84 ms a forward on the 2-core AVX-512 VM, 1.76 ms with eight.
const CHANNELS: usize = 4;
const WIDE_CHANNELS: usize = 8;

/// The register block's channels for the kernels this process runs.
fn channels_per_block() -> usize {
    match crate::simd::cpu_kernels() {
        crate::simd::CpuKernels::Avx512 => WIDE_CHANNELS,
        _ => CHANNELS,
    }
}

/// The most output channels this kernel takes: gemm's tiles have 16 rows, so from there on
/// they are full and its packed products pay off.
const MAX_CHANNELS: usize = 16;

/// The most values of an image's padded planes (256 KB), so they stay in a core's L2 cache
/// while every block reads them.
const MAX_SCRATCH: usize = 1 << 16;

/// A convolution's weights packed for the kernel: `[blocks][c_in][kh][kw][channels]`, the last
/// block's missing channels zero.
pub(super) struct Direct {
    packed: Vec<f32>,
    /// Output channels per register block ([`channels_per_block`]).
    channels: usize,
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
        let channels = channels_per_block();
        serves.then(|| Self {
            packed: pack(g, w, channels),
            channels,
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
        let per_block = g.c_in * g.kh * g.kw * self.channels;
        let positions = g.positions();
        for (block, weights) in self.packed.chunks_exact(per_block).enumerate() {
            let first = block * self.channels;
            let channels = self.channels.min(g.c_out - first);
            let mut lane_bias = [0.0; WIDE_CHANNELS];
            if let Some(bias) = bias {
                lane_bias[..channels].copy_from_slice(&bias[first..first + channels]);
            }
            let out = &mut out[first * positions..][..channels * positions];
            let operands = Operands {
                planes: scratch,
                padded: self.padded,
                taps: &self.taps,
                weights,
                bias: lane_bias,
            };
            #[cfg(target_arch = "x86_64")]
            if self.channels == WIDE_CHANNELS {
                // SAFETY: `channels_per_block` chose the wide block: the CPU has AVX-512.
                unsafe { avx512::channel_block(out, &operands, g) };
                continue;
            }
            channel_block(out, &operands, g);
        }
    }
}

/// What one register block of channels reads: the padded planes, the tap offsets, the
/// block's packed weights and its bias (zero past the block's channels).
struct Operands<'a> {
    planes: &'a [f32],
    padded: Padded,
    taps: &'a [usize],
    weights: &'a [f32],
    bias: [f32; WIDE_CHANNELS],
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

/// `w` (`[c_out, c_in, kh, kw]`) as `[blocks][c_in][kh][kw][channels]`.
fn pack(g: &Geometry, w: &[f32], channels: usize) -> Vec<f32> {
    let taps = g.kh * g.kw;
    let blocks = g.c_out.div_ceil(channels);
    let mut packed = vec![0.0; blocks * g.c_in * taps * channels];
    for co in 0..g.c_out {
        let (block, lane) = (co / channels, co % channels);
        for ci in 0..g.c_in {
            for t in 0..taps {
                let at = ((block * g.c_in + ci) * taps + t) * channels + lane;
                packed[at] = w[(co * g.c_in + ci) * taps + t];
            }
        }
    }
    packed
}

crate::simd::wide_kernel! {
    /// Up to [`CHANNELS`] output planes (`out`, plane after plane) from the padded input
    /// planes: `out[c][r][j] = relu?(bias[c] + sum w[c][ci][ki][kj] * x[ci][r + ki][j + kj])`.
    fn channel_block(out: &mut [MaybeUninit<f32>], operands: &Operands, g: &Geometry) {
        let (ow, positions, cols) = (g.ow, g.positions(), operands.padded.cols);
        let channels = out.len() / positions.max(1);
        for r in 0..g.oh {
            for j0 in (0..ow).step_by(BLOCK) {
                let window = &operands.planes[r * cols + j0..];
                let mut acc = [[0.0f32; BLOCK]; CHANNELS];
                // One flat loop over (input channel, tap): nested loops of five taps cost a
                // mispredicted exit every few products.
                for (&offset, w) in operands.taps.iter().zip(operands.weights.chunks_exact(CHANNELS)) {
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
                for (c, &b) in operands.bias[..CHANNELS].iter().enumerate() {
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

/// [`channel_block`] for [`WIDE_CHANNELS`] channels in AVX-512 intrinsics: written portably
/// for eight channels, LLVM vectorised across the channels and kept the sums in memory
/// (gathers and scatters, ten times slower), or left them scalar.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::{Geometry, Operands, BLOCK, WIDE_CHANNELS};

    /// Output planes from the padded planes, as [`super::channel_block`] computes them (the
    /// same fused multiply-adds in the same order).
    ///
    /// # Safety
    /// The CPU must have AVX-512F (the caller checked `cpu_kernels`).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn channel_block(
        out: &mut [MaybeUninit<f32>],
        operands: &Operands,
        g: &Geometry,
    ) {
        let (ow, positions, cols) = (g.ow, g.positions(), operands.padded.cols);
        let channels = (out.len() / positions.max(1)).min(WIDE_CHANNELS);
        let (taps, weights) = (operands.taps, operands.weights);
        assert_eq!(
            weights.len(),
            taps.len() * WIDE_CHANNELS,
            "weights of every tap"
        );
        assert_eq!(out.len(), channels * positions, "whole output planes");
        // The furthest vector the loops read: the last row block's last tap.
        let furthest = taps.iter().max().map_or(0, |&t| t + BLOCK)
            + (g.oh.max(1) - 1) * cols
            + (ow.div_ceil(BLOCK).max(1) - 1) * BLOCK;
        assert!(
            taps.is_empty() || furthest <= operands.planes.len(),
            "reads inside the planes"
        );
        let planes = operands.planes.as_ptr();
        let to = out.as_mut_ptr().cast::<f32>();
        for r in 0..g.oh {
            for j0 in (0..ow).step_by(BLOCK) {
                let mut acc = [_mm512_setzero_ps(); WIDE_CHANNELS];
                for (&offset, w) in taps.iter().zip(weights.chunks_exact(WIDE_CHANNELS)) {
                    // SAFETY: inside the planes (`furthest` above).
                    let x = unsafe { _mm512_loadu_ps(planes.add(r * cols + j0 + offset)) };
                    for (a, &wv) in acc.iter_mut().zip(w) {
                        *a = _mm512_fmadd_ps(_mm512_set1_ps(wv), x, *a);
                    }
                }
                let mask = ((1u32 << (ow - j0).min(BLOCK)) - 1) as __mmask16;
                for (c, (a, &b)) in acc.iter().zip(&operands.bias).enumerate().take(channels) {
                    let mut v = _mm512_add_ps(*a, _mm512_set1_ps(b));
                    if g.relu {
                        v = _mm512_max_ps(v, _mm512_setzero_ps());
                    }
                    // SAFETY: the masked lanes lie in channel `c`'s plane, row `r`.
                    unsafe { _mm512_mask_storeu_ps(to.add(c * positions + r * ow + j0), mask, v) };
                }
            }
        }
    }
}
