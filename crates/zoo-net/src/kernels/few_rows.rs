//! Fully connected layers at a batch of one to four images on flex: the weight streamed once,
//! each task a block of output channels, every image's dot product taken in the same pass.
//! gemm packs the whole weight before multiplying, which at one row costs more than the
//! product: AlexNet's fc6 alone is 151 MB (batch-1 inference, `zoo predict`, `zoo verify`).

use std::any::TypeId;

use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use rayon::prelude::*;

use crate::flex_autodiff::{cast, contiguous, flex, values};
use crate::simd::prefetch;

/// The most rows (images) this path takes; beyond, gemm's blocking wins.
pub const FEW_ROWS: usize = 4;

/// Output channels per task.
const CHANNELS_PER_TASK: usize = 64;

/// `x @ w^T + bias` for `x` `[rows, k]` (`rows <= FEW_ROWS`), `w` `[c, k]` (an ONNX `Gemm`
/// with `transB = 1`, PyTorch's `Linear` layout) and `bias` `[c]`, on flex with f32 values;
/// `None` elsewhere.
pub fn few_rows_linear<B: Backend>(
    x: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
) -> Option<Tensor<B, 2>> {
    let ([rows, k], [c, k_w]) = (x.dims(), w.dims());
    let all_f32 = [x.dtype(), w.dtype()].iter().all(|&d| d == DType::F32)
        && bias.is_none_or(|b| b.dtype() == DType::F32 && b.dims() == [c]);
    if TypeId::of::<B>() != TypeId::of::<Flex>() || !all_f32 || k != k_w || rows > FEW_ROWS {
        return None;
    }
    let host = |t: Tensor<B, 2>| contiguous(cast::<B, Flex, 2>(t).into_primitive().tensor());
    let (xv, wv) = (host(x.clone()), host(w.clone()));
    let bv = bias.map(|b| contiguous(cast::<B, Flex, 1>(b.clone()).into_primitive().tensor()));
    let (x, w) = (values(&xv), values(&wv));
    let bias = bv.as_ref().map(values);
    // Channel-major while computing: each task writes its channels for every row.
    let per_channel: Vec<[f32; FEW_ROWS]> = w
        .par_chunks(CHANNELS_PER_TASK * k)
        .enumerate()
        .flat_map_iter(|(task, block)| {
            let first = task * CHANNELS_PER_TASK;
            block.chunks(k).enumerate().map(move |(i, row)| {
                let mut sums = dots(row, x, rows);
                let b = bias.map_or(0.0, |b| b[first + i]);
                sums.iter_mut().for_each(|s| *s += b);
                sums
            })
        })
        .collect();
    let y: Vec<f32> = (0..rows)
        .flat_map(|r| per_channel.iter().map(move |s| s[r]))
        .collect();
    let y = Tensor::<Flex, 2>::from_primitive(TensorPrimitive::Float(flex(y, vec![rows, c])));
    Some(cast::<Flex, B, 2>(y))
}

/// Lanes of each row's running sums: one AVX-512 vector or two AVX2 vectors. With eight
/// lanes and no prefetch, AlexNet's fully connected weights streamed at 19 GB/s on the 2-core
/// AVX-512 VM whose cores read 27 GB/s in a plain loop (now about 25; fused multiply-adds
/// here left the loop scalar).
const LANES: usize = 16;
/// How far ahead of the weights being read (values) the next are asked for: the hardware
/// prefetcher alone kept too few reads in flight (AlexNet batch 1, its three layers a
/// forward: 11.2 ms without, 9.6 at 8 KB ahead, 9.2 at 16 KB, 9.7 at 32 KB).
const PREFETCH: usize = 4096;

crate::simd::wide_kernel! {
    /// `w . x[r]` for each of the `rows` rows of `x` (`rows x w.len()`), [`LANES`] lanes a row.
    fn dots(w: &[f32], x: &[f32], rows: usize) -> [f32; FEW_ROWS] {
        let k = w.len();
        let mut lanes = [[0.0f32; LANES]; FEW_ROWS];
        let whole = k / LANES * LANES;
        for (j, wc) in w[..whole].chunks_exact(LANES).enumerate() {
            prefetch(wc.as_ptr().wrapping_add(PREFETCH));
            for (r, lane) in lanes.iter_mut().enumerate().take(rows) {
                let xc = &x[r * k + j * LANES..][..LANES];
                for ((l, &a), &b) in lane.iter_mut().zip(wc).zip(xc) {
                    *l += a * b;
                }
            }
        }
        let mut sums = [0.0f32; FEW_ROWS];
        for (r, s) in sums.iter_mut().enumerate().take(rows) {
            let tail: f32 = (whole..k).map(|i| w[i] * x[r * k + i]).sum();
            *s = lanes[r].iter().sum::<f32>() + tail;
        }
        sums
    }
}
