//! The row-wise ops of transformers as single ops with their own backward on `Autodiff<Flex>`
//! (and the same forward on flex): LayerNorm over the last axis (the forward keeps each row's
//! mean and reciprocal deviation; the backward is one pass over the rows) and Softmax over the
//! last axis (the backward from the output alone), and LayerNorm over the channels of each
//! position of a map (ConvNeXt's `LayerNorm2d`). burn composes them from a dozen
//! element-wise passes and reductions, each allocating and each kept for its own backward.

use std::any::TypeId;
use std::mem::MaybeUninit;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::flex_autodiff::{
    assume_written, cast, contiguous, flex, par_fill, uninit, values, Trained,
};
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
        out: &mut [MaybeUninit<f32>],
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

/// Rows per task of [`norm_forward`]: about [`VALUES_PER_TASK`] values, but at least four
/// tasks per core when there are enough rows (a batch-1 ViT's 197 rows of 192 made three
/// tasks for two cores).
fn forward_rows_per_task(rows: usize, len: usize) -> usize {
    let spread = rows.div_ceil(4 * rayon::current_num_threads().max(1));
    rows_per_task(len).min(spread.max(8))
}

/// The rows' normalised values and their statistics, each block of rows in one task: its
/// statistics, then its values while the rows are in cache (statistics and values as two
/// parallel passes cost a third of a batch-1 ViT's LayerNorm time in dispatch).
fn norm_forward(
    x: &[f32],
    scale: &[f32],
    bias: &[f32],
    len: usize,
    epsilon: f32,
) -> (Vec<f32>, RowStats) {
    let rows = x.len() / len;
    let per_task = forward_rows_per_task(rows, len);
    let mut stats: RowStats = vec![[0.0; 2]; rows];
    let mut y = uninit(x.len());
    y.par_chunks_mut(per_task * len)
        .zip(stats.par_chunks_mut(per_task))
        .zip(x.par_chunks(per_task * len))
        .for_each(|((dst, stats), x)| {
            for (row, s) in x.chunks_exact(len).zip(stats.iter_mut()) {
                *s = row_stats(row, epsilon);
            }
            normalize_rows(x, stats, [scale, bias], dst);
        });
    // SAFETY: each task wrote every value of its rows.
    (unsafe { assume_written(y) }, stats)
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

// LayerNorm over the channels of each position.
// LayerNorm over the channels of each position of a `[N, C, positions]` map (ConvNeXt's
// `LayerNorm2d`) as one op on flex and on `Autodiff<Flex>` with its own backward. Exported
// graphs write it as a transpose to channels last, a LayerNorm over the last axis and a
// transpose back: two passes that move the whole map, forward and backward. Here the
// statistics are taken across channels for a block of positions at a time (each channel's
// run of positions is contiguous, so every loop runs along the positions in vector lanes),
// and the map is then written plane by plane.

/// Positions whose statistics one task takes (its rows of every channel stay in cache).
const BLOCK: usize = 256;

/// The map's sizes: `n` images of `c` channels of `p` positions.
#[derive(Clone, Copy, Debug)]
struct Map {
    n: usize,
    c: usize,
    p: usize,
}

impl Map {
    /// Planes (one image's channel) per task when writing plane by plane.
    fn planes_per_task(&self) -> usize {
        (VALUES_PER_TASK / self.p.max(1)).max(1)
    }

    /// `(image, first position, positions)` of every block of positions.
    fn blocks(&self) -> Vec<(usize, usize, usize)> {
        (0..self.n)
            .flat_map(|i| {
                (0..self.p)
                    .step_by(BLOCK)
                    .map(move |p0| (i, p0, BLOCK.min(self.p - p0)))
            })
            .collect()
    }
}

/// `(x - mean) / sqrt(var + epsilon) * scale[c] + bias[c]`, the mean and (biased) variance
/// taken over the channels of each position of `x` `[N, C, positions]`, on flex and
/// `Autodiff<Flex>` with f32 values; `None` elsewhere.
pub fn layer_norm_over_channels<B: Backend>(
    x: &Tensor<B, 3>,
    scale: &Tensor<B, 1>,
    bias: &Tensor<B, 1>,
    epsilon: f32,
) -> Option<Tensor<B, 3>> {
    let [n, c, p] = x.dims();
    let all_f32 = [x.dtype(), scale.dtype(), bias.dtype()]
        .iter()
        .all(|&d| d == DType::F32);
    if !all_f32 || scale.dims() != [c] || bias.dims() != [c] || n * c * p == 0 {
        return None;
    }
    let map = Map { n, c, p };
    if TypeId::of::<B>() == TypeId::of::<Flex>() {
        let host = |t: Tensor<B, 1>| contiguous(cast::<B, Flex, 1>(t).into_primitive().tensor());
        let xv = contiguous(cast::<B, Flex, 3>(x.clone()).into_primitive().tensor());
        let (g, b) = (host(scale.clone()), host(bias.clone()));
        let (y, _) = forward(values(&xv), [values(&g), values(&b)], map, epsilon);
        let y = Tensor::<Flex, 3>::from_primitive(TensorPrimitive::Float(flex(y, vec![n, c, p])));
        return Some(cast::<Flex, B, 3>(y));
    }
    if TypeId::of::<B>() != TypeId::of::<Trained>() {
        return None;
    }
    let take = |t: Tensor<B, 1>| cast::<B, Trained, 1>(t).into_primitive().tensor();
    let xt = cast::<B, Trained, 3>(x.clone()).into_primitive().tensor();
    let (g, b) = (take(scale.clone()), take(bias.clone()));
    let [xv, gv, bv] = [&xt, &g, &b].map(|t| contiguous(t.primitive.clone()));
    let (y, stats) = forward(values(&xv), [values(&gv), values(&bv)], map, epsilon);
    let y = flex(y, vec![n, c, p]);
    let nodes = [xt.node.clone(), g.node.clone(), b.node.clone()];
    let out = match OverChannelsBackward
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((xv, gv, stats, map), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    let y = Tensor::<Trained, 3>::from_primitive(TensorPrimitive::Float(out));
    Some(cast::<Trained, B, 3>(y))
}

/// Each position's mean and reciprocal deviation (`[N * positions]` each).
#[derive(Clone, Debug)]
struct Stats {
    mean: Vec<f32>,
    rstd: Vec<f32>,
}

fn forward(x: &[f32], [scale, bias]: [&[f32]; 2], m: Map, epsilon: f32) -> (Vec<f32>, Stats) {
    let blocks = m.blocks();
    let per_block: Vec<(Vec<f32>, Vec<f32>)> = blocks
        .par_iter()
        .map(|&(i, p0, width)| {
            let (mut mean, mut rstd) = (vec![0.0f32; width], vec![0.0f32; width]);
            let image = &x[i * m.c * m.p..][..m.c * m.p];
            block_stats(image, [p0, m.p], epsilon, [&mut mean, &mut rstd]);
            (mean, rstd)
        })
        .collect();
    let mean = per_block.iter().flat_map(|b| b.0.iter().copied()).collect();
    let rstd = per_block.into_iter().flat_map(|b| b.1).collect();
    let stats = Stats { mean, rstd };
    let planes = m.planes_per_task();
    // SAFETY: each task writes every value of its planes.
    let y = unsafe {
        par_fill(
            x.len(),
            planes * m.p,
            || (),
            |task, _, dst| {
                for (k, out) in dst.chunks_mut(m.p).enumerate() {
                    let plane = task * planes + k;
                    let (i, ch) = (plane / m.c, plane % m.c);
                    let at = i * m.p;
                    let stats = [&stats.mean[at..at + m.p], &stats.rstd[at..at + m.p]];
                    let affine = [scale[ch], bias[ch]];
                    normalize_plane(&x[plane * m.p..][..m.p], stats, affine, out);
                }
            },
        )
    };
    (y, stats)
}

crate::simd::wide_kernel! {
    /// The mean and reciprocal deviation over the channels of positions `p0..p0 + width` of
    /// one image (`image` `[C, positions]`, `at` = `[p0, positions]`): two passes.
    fn block_stats(image: &[f32], at: [usize; 2], epsilon: f32, out: [&mut [f32]; 2]) {
        let [p0, positions] = at;
        let [mean, rstd] = out;
        let channels = image.len() / positions;
        let width = mean.len();
        let rows = || image.chunks(positions).map(move |row| &row[p0..p0 + width]);
        for row in rows() {
            for (s, &v) in mean.iter_mut().zip(row) {
                *s += v;
            }
        }
        let inv = 1.0 / channels as f32;
        mean.iter_mut().for_each(|s| *s *= inv);
        for row in rows() {
            for ((s, &v), &mu) in rstd.iter_mut().zip(row).zip(mean.iter()) {
                *s += (v - mu) * (v - mu);
            }
        }
        rstd.iter_mut().for_each(|s| *s = 1.0 / (*s * inv + epsilon).sqrt());
    }
}

crate::simd::wide_kernel! {
    /// One channel's plane normalised: `(x - mean) * rstd * scale + bias`.
    fn normalize_plane(
        x: &[f32],
        stats: [&[f32]; 2],
        affine: [f32; 2],
        out: &mut [MaybeUninit<f32>],
    ) {
        let ([mean, rstd], [g, b]) = (stats, affine);
        for (((o, &v), &mu), &r) in out.iter_mut().zip(x).zip(mean).zip(rstd) {
            o.write((v - mu) * r * g + b);
        }
    }
}

#[derive(Debug)]
struct OverChannelsBackward;

impl Backward<Flex, 3> for OverChannelsBackward {
    /// The input, the scale, each position's statistics and the sizes.
    type State = (FlexTensor, FlexTensor, Stats, Map);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, scale_node, bias_node] = ops.parents.map(|p| p.map(|node| node.id));
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let (x, scale, stats, m) = ops.state;
        let (dy, x, gamma) = (values(&grad), values(&x), values(&scale));
        let sums = position_sums(dy, x, gamma, &stats, m);
        let (dx, dgamma, dbeta) = planes_backward(&[dy, x, gamma], &stats, &sums, m);
        if let Some(id) = x_node {
            grads.register::<Flex>(id, flex(dx, vec![m.n, m.c, m.p]));
        }
        if let Some(id) = scale_node {
            grads.register::<Flex>(id, flex(dgamma, vec![m.c]));
        }
        if let Some(id) = bias_node {
            grads.register::<Flex>(id, flex(dbeta, vec![m.c]));
        }
    }
}

/// Per position, the means over channels of `dy * scale` and of `dy * scale * x_hat`.
fn position_sums(dy: &[f32], x: &[f32], gamma: &[f32], stats: &Stats, m: Map) -> Stats {
    let per_block: Vec<(Vec<f32>, Vec<f32>)> = m
        .blocks()
        .par_iter()
        .map(|&(i, p0, width)| {
            let (mut a, mut b) = (vec![0.0f32; width], vec![0.0f32; width]);
            let image = i * m.c * m.p;
            let at = i * m.p + p0;
            let read = [&dy[image..][..m.c * m.p], &x[image..][..m.c * m.p], gamma];
            let position = [&stats.mean[at..at + width], &stats.rstd[at..at + width]];
            block_sums(read, position, [p0, m.p], [&mut a, &mut b]);
            (a, b)
        })
        .collect();
    Stats {
        mean: per_block.iter().flat_map(|b| b.0.iter().copied()).collect(),
        rstd: per_block.into_iter().flat_map(|b| b.1).collect(),
    }
}

crate::simd::wide_kernel! {
    /// For positions `p0..p0 + width` of one image (`read` = its `dy` and `x` `[C, positions]`
    /// and the scale; `stats` their means and reciprocal deviations): the means over channels
    /// of `dy * scale` into `out[0]` and of `dy * scale * x_hat` into `out[1]`.
    fn block_sums(read: [&[f32]; 3], stats: [&[f32]; 2], at: [usize; 2], out: [&mut [f32]; 2]) {
        let ([dy, x, gamma], [mean, rstd], [p0, positions]) = (read, stats, at);
        let [a, b] = out;
        let width = a.len();
        for (ch, &g) in gamma.iter().enumerate() {
            let (dy, x) = (&dy[ch * positions + p0..][..width], &x[ch * positions + p0..][..width]);
            let terms = dy.iter().zip(x).zip(mean.iter().zip(rstd));
            for ((a, b), ((&d, &v), (&mu, &r))) in a.iter_mut().zip(b.iter_mut()).zip(terms) {
                let gg = d * g;
                *a += gg;
                *b += gg * (v - mu) * r;
            }
        }
        let inv = 1.0 / gamma.len() as f32;
        a.iter_mut().chain(b.iter_mut()).for_each(|s| *s *= inv);
    }
}

/// The input gradient, plane by plane, and the scale's and bias's gradients:
/// `dx = rstd * (dy * scale - mean(dy * scale) - x_hat * mean(dy * scale * x_hat))`.
fn planes_backward(
    [dy, x, gamma]: &[&[f32]; 3],
    stats: &Stats,
    sums: &Stats,
    m: Map,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let planes = m.planes_per_task();
    let mut dx = vec![0.0f32; dy.len()];
    let partial: Vec<Vec<[f32; 2]>> = dx
        .par_chunks_mut(planes * m.p)
        .enumerate()
        .map(|(task, dst)| {
            let mut x_hat = vec![0.0f32; m.p];
            dst.chunks_mut(m.p)
                .enumerate()
                .map(|(k, out)| {
                    let plane = task * planes + k;
                    let (i, ch) = (plane / m.c, plane % m.c);
                    let (at, from) = (i * m.p, plane * m.p);
                    let read = [&dy[from..from + m.p], &x[from..from + m.p]];
                    let mean_rstd = [&stats.mean[at..at + m.p], &stats.rstd[at..at + m.p]];
                    let a_b = [&sums.mean[at..at + m.p], &sums.rstd[at..at + m.p]];
                    plane_backward(read, [mean_rstd, a_b], gamma[ch], [out, &mut x_hat])
                })
                .collect()
        })
        .collect();
    let (mut dgamma, mut dbeta) = (vec![0.0f32; m.c], vec![0.0f32; m.c]);
    for (plane, [dg, db]) in partial.into_iter().flatten().enumerate() {
        dgamma[plane % m.c] += dg;
        dbeta[plane % m.c] += db;
    }
    (dx, dgamma, dbeta)
}

crate::simd::wide_kernel! {
    /// One channel's plane of the input gradient into `out` (`x_hat` scratch of its length);
    /// returns its parts of the scale's and the bias's gradients (`sum(dy * x_hat)`,
    /// `sum(dy)`).
    fn plane_backward(
        read: [&[f32]; 2],
        position: [[&[f32]; 2]; 2],
        gamma: f32,
        out: [&mut [f32]; 2],
    ) -> [f32; 2] {
        let ([dy, x], [[mean, rstd], [a, b]], [out, x_hat]) = (read, position, out);
        for ((h, &v), (&mu, &r)) in x_hat.iter_mut().zip(x).zip(mean.iter().zip(rstd)) {
            *h = (v - mu) * r;
        }
        let terms = dy.iter().zip(x_hat.iter()).zip(rstd.iter().zip(a.iter().zip(b)));
        for (o, ((&d, &h), (&r, (&a, &b)))) in out.iter_mut().zip(terms) {
            *o = r * (d * gamma - a - h * b);
        }
        [lanes_sum_pairs(dy, x_hat, |d, h| d * h), lanes_sum(dy, |d| d)]
    }
}
