//! LayerNorm over the channels of each position of a `[N, C, positions]` map (ConvNeXt's
//! `LayerNorm2d`) as one op on flex and on `Autodiff<Flex>` with its own backward. Exported
//! graphs write it as a transpose to channels last, a LayerNorm over the last axis and a
//! transpose back: two passes that move the whole map, forward and backward. Here the
//! statistics are taken across channels for a block of positions at a time (each channel's
//! run of positions is contiguous, so every loop runs along the positions in vector lanes),
//! and the map is then written plane by plane.

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

use crate::flex_autodiff::{cast, contiguous, flex, par_fill, values, Trained};
use crate::kernels::fast_math::{lanes_sum, lanes_sum_pairs};

/// Positions whose statistics one task takes (its rows of every channel stay in cache).
const BLOCK: usize = 256;

/// Values per task when the map is written plane by plane.
const VALUES_PER_TASK: usize = 1 << 14;

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
