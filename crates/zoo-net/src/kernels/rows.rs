//! The row-wise ops of transformers as single ops with their own backward on `Autodiff<Flex>`
//! (and the same forward on flex): LayerNorm over the last axis (the forward keeps each row's
//! mean and reciprocal deviation; the backward is one pass over the rows) and Softmax over the
//! last axis (the backward from the output alone). burn composes both from a dozen
//! element-wise passes and reductions, each allocating and each kept for its own backward.

use std::any::TypeId;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::flex_autodiff::{cast, contiguous, flex, par_fill, values, Trained};
use crate::kernels::fast_math::{lanes_sum, lanes_sum_pairs};

/// Values per task when a pass is spread over rows (small inputs stay on one core).
const VALUES_PER_TASK: usize = 1 << 14;

/// Rows per task for rows of `len` values.
fn rows_per_task(len: usize) -> usize {
    (VALUES_PER_TASK / len.max(1)).max(1)
}

/// `(x - mean) / sqrt(var + epsilon) * scale + bias` over each row of `x` `[rows, len]`
/// (biased variance), on flex and `Autodiff<Flex>` with f32 values; `None` elsewhere.
pub fn layer_norm<B: Backend>(
    x: &Tensor<B, 2>,
    scale: &Tensor<B, 1>,
    bias: &Tensor<B, 1>,
    epsilon: f32,
) -> Option<Tensor<B, 2>> {
    let [rows, len] = x.dims();
    let all_f32 = [x.dtype(), scale.dtype(), bias.dtype()]
        .iter()
        .all(|&d| d == DType::F32);
    if !all_f32 || scale.dims() != [len] || bias.dims() != [len] || len == 0 {
        return None;
    }
    if TypeId::of::<B>() == TypeId::of::<Flex>() {
        let host = |t: Tensor<B, 1>| contiguous(cast::<B, Flex, 1>(t).into_primitive().tensor());
        let xv = contiguous(cast::<B, Flex, 2>(x.clone()).into_primitive().tensor());
        let (g, b) = (host(scale.clone()), host(bias.clone()));
        let (y, _) = norm_forward(values(&xv), values(&g), values(&b), len, epsilon);
        let y = Tensor::<Flex, 2>::from_primitive(TensorPrimitive::Float(flex(y, vec![rows, len])));
        return Some(cast::<Flex, B, 2>(y));
    }
    if TypeId::of::<B>() != TypeId::of::<Trained>() {
        return None;
    }
    let take = |t: Tensor<B, 1>| cast::<B, Trained, 1>(t).into_primitive().tensor();
    let xt = cast::<B, Trained, 2>(x.clone()).into_primitive().tensor();
    let (g, b) = (take(scale.clone()), take(bias.clone()));
    let xv = contiguous(xt.primitive.clone());
    let gv = contiguous(g.primitive.clone());
    let bv = contiguous(b.primitive.clone());
    let (y, stats) = norm_forward(values(&xv), values(&gv), values(&bv), len, epsilon);
    let y = flex(y, vec![rows, len]);
    let nodes = [xt.node.clone(), g.node.clone(), b.node.clone()];
    let out = match LayerNormBackward
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((xv, gv, stats, len), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    let y = Tensor::<Trained, 2>::from_primitive(TensorPrimitive::Float(out));
    Some(cast::<Trained, B, 2>(y))
}

/// Each row's mean and reciprocal standard deviation, interleaved.
type RowStats = Vec<[f32; 2]>;

crate::simd::wide_kernel! {
    /// Mean and reciprocal deviation of one row: two passes, in f32 lanes the compiler
    /// vectorises.
    fn row_stats(row: &[f32], epsilon: f32) -> [f32; 2] {
        let n = row.len() as f32;
        let mean = lanes_sum(row, |v| v) / n;
        let var = lanes_sum(row, |v| (v - mean) * (v - mean)) / n;
        [mean, 1.0 / (var + epsilon).sqrt()]
    }
}

crate::simd::wide_kernel! {
    /// `(x - mean) * rstd * scale + bias` of each row of `x` into `out`, with `stats` the
    /// rows' `[mean, rstd]` and `scale_bias` the scale then the bias.
    fn normalize_rows(
        x: &[f32],
        stats: &[[f32; 2]],
        scale_bias: [&[f32]; 2],
        out: &mut [std::mem::MaybeUninit<f32>],
    ) {
        let [scale, bias] = scale_bias;
        let len = scale.len();
        for ((out, row), &[mean, rstd]) in out.chunks_mut(len).zip(x.chunks(len)).zip(stats) {
            for (((o, &v), &g), &b) in out.iter_mut().zip(row).zip(scale).zip(bias) {
                o.write((v - mean) * rstd * g + b);
            }
        }
    }
}

/// One block of rows' backward: what it reads, and the scale.
struct RowsGrad<'a> {
    dy: &'a [f32],
    x: &'a [f32],
    stats: &'a [[f32; 2]],
    gamma: &'a [f32],
}

crate::simd::wide_kernel! {
    /// The input gradient of a block of rows into `dx`, its parts of the scale's and the
    /// bias's gradients added to `dgamma` and `dbeta`; `gg` a row of scratch.
    fn rows_backward(rows: &RowsGrad, dx: &mut [f32], sums: [&mut [f32]; 2], gg: &mut [f32]) {
        let [dgamma, dbeta] = sums;
        let len = rows.gamma.len();
        for (r, &[mean, rstd]) in rows.stats.iter().enumerate() {
            let (g, v) = (&rows.dy[r * len..][..len], &rows.x[r * len..][..len]);
            for ((o, &a), &b) in gg.iter_mut().zip(g).zip(rows.gamma) {
                *o = a * b;
            }
            let mean_gg = lanes_sum(gg, |v| v) / len as f32;
            let mean_dot = lanes_sum_pairs(gg, v, |a, b| a * (b - mean)) * rstd / len as f32;
            let sums = dgamma.iter_mut().zip(dbeta.iter_mut());
            let read = g.iter().zip(v).zip(gg.iter());
            for ((d, (dgamma, dbeta)), ((&g, &v), &gg)) in
                dx[r * len..][..len].iter_mut().zip(sums).zip(read)
            {
                let x_hat = (v - mean) * rstd;
                *dgamma += g * x_hat;
                *dbeta += g;
                *d = rstd * (gg - mean_gg - x_hat * mean_dot);
            }
        }
    }
}

fn norm_forward(
    x: &[f32],
    scale: &[f32],
    bias: &[f32],
    len: usize,
    epsilon: f32,
) -> (Vec<f32>, RowStats) {
    let per_task = rows_per_task(len);
    let stats: RowStats = x
        .par_chunks(len)
        .with_min_len(per_task)
        .map(|row| row_stats(row, epsilon))
        .collect();
    // SAFETY: every value of every row is written.
    let y = unsafe {
        par_fill(
            x.len(),
            per_task * len,
            || (),
            |task, _, dst| {
                let first = task * per_task;
                let rows = dst.len() / len;
                let (x, stats) = (&x[first * len..], &stats[first..first + rows]);
                normalize_rows(x, stats, [scale, bias], dst);
            },
        )
    };
    (y, stats)
}

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    /// The input, the scale, each row's statistics, and the row length.
    type State = (FlexTensor, FlexTensor, RowStats, usize);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, scale_node, bias_node] = ops.parents.map(|p| p.map(|node| node.id));
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let (x, scale, stats, len) = ops.state;
        let (dy, x, gamma) = (values(&grad), values(&x), values(&scale));
        let per_task = rows_per_task(len);
        // Per block of rows: the input gradient, and partial sums of dy * x_hat and dy.
        let blocks: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = dy
            .par_chunks(per_task * len)
            .zip(x.par_chunks(per_task * len))
            .zip(stats.par_chunks(per_task))
            .map(|((dy, x), stats)| {
                let mut dx = vec![0.0f32; dy.len()];
                let (mut dgamma, mut dbeta) = (vec![0.0f32; len], vec![0.0f32; len]);
                let rows = RowsGrad {
                    dy,
                    x,
                    stats,
                    gamma,
                };
                let mut gg = vec![0.0f32; len];
                rows_backward(&rows, &mut dx, [&mut dgamma, &mut dbeta], &mut gg);
                (dx, dgamma, dbeta)
            })
            .collect();
        let mut dgamma = vec![0.0f32; len];
        let mut dbeta = vec![0.0f32; len];
        for (_, g, b) in &blocks {
            dgamma.iter_mut().zip(g).for_each(|(a, v)| *a += v);
            dbeta.iter_mut().zip(b).for_each(|(a, v)| *a += v);
        }
        if let Some(id) = x_node {
            let dx: Vec<f32> = blocks.into_iter().flat_map(|(dx, _, _)| dx).collect();
            grads.register::<Flex>(id, flex(dx, vec![x.len() / len, len]));
        }
        if let Some(id) = scale_node {
            grads.register::<Flex>(id, flex(dgamma, vec![len]));
        }
        if let Some(id) = bias_node {
            grads.register::<Flex>(id, flex(dbeta, vec![len]));
        }
    }
}

/// Softmax over each row of `x` `[rows, len]` on `Autodiff<Flex>` with f32 values (its
/// backward from the output: `y * (g - sum(g * y))`); `None` elsewhere (flex itself runs
/// burn's fused softmax).
pub fn softmax<B: Backend>(x: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    let [_, len] = x.dims();
    if x.dtype() != DType::F32 || TypeId::of::<B>() != TypeId::of::<Trained>() || len == 0 {
        return None;
    }
    let xt = cast::<B, Trained, 2>(x.clone()).into_primitive().tensor();
    let y = burn_flex::ops::activation::softmax(xt.primitive.clone(), 1);
    let y = contiguous(y);
    let out = match SoftmaxBackward
        .prepare::<NoCheckpointing>([xt.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((y.clone(), len), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    let y = Tensor::<Trained, 2>::from_primitive(TensorPrimitive::Float(out));
    Some(cast::<Trained, B, 2>(y))
}

#[derive(Debug)]
struct SoftmaxBackward;

impl Backward<Flex, 1> for SoftmaxBackward {
    /// The output and the row length.
    type State = (FlexTensor, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents.map(|p| p.map(|node| node.id));
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let (y, len) = ops.state;
        let Some(id) = parent else { return };
        let (g, y) = (values(&grad), values(&y));
        let per_task = rows_per_task(len);
        // SAFETY: every value of every row is written.
        let dx = unsafe {
            par_fill(
                g.len(),
                per_task * len,
                || (),
                |task, _, dst| {
                    let first = task * per_task * len;
                    for (r, out) in dst.chunks_mut(len).enumerate() {
                        let at = first + r * len;
                        let (g, y) = (&g[at..][..len], &y[at..][..len]);
                        let dot: f32 = g.iter().zip(y).map(|(a, b)| a * b).sum();
                        for ((o, &g), &y) in out.iter_mut().zip(g).zip(y) {
                            o.write(y * (g - dot));
                        }
                    }
                },
            )
        };
        grads.register::<Flex>(id, flex(dx, vec![g.len() / len, len]));
    }
}
