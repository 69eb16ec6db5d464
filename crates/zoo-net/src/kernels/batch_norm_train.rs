//! Batch normalisation with batch statistics (training) on `Autodiff<Flex>` as one op with its
//! own backward: one pass for the statistics and one for the output, forward and backward, on
//! all cores. Composed of burn ops it is about twenty element-wise passes and reductions, each
//! allocating. Other backends keep the composed form (`exec::batch_norm_train`), and
//! `tests/fused_ops.rs` holds the two to the same values and gradients.

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

use crate::flex_autodiff::{cast, contiguous, flex, par_zeroed, relu_backward, values, Trained};

/// The normalised batch and the statistics it was normalised with (the variance biased, over
/// the `N * H * W` values of each channel).
pub struct BatchNormTrained<B: Backend> {
    pub y: Tensor<B, 4>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
}

/// `(x - mean) / sqrt(var + epsilon) * scale + bias` per channel of an NCHW batch, with the
/// batch's own statistics, followed by a ReLU when `relu` (fused: the ReLU that follows batch
/// norm in most CNNs costs no pass of its own), when `B` is `Autodiff<Flex>` and all values are
/// f32; `None` sends the caller to the composed form.
pub fn batch_norm_train<B: Backend>(
    x: &Tensor<B, 4>,
    scale: &Tensor<B, 1>,
    bias: &Tensor<B, 1>,
    epsilon: f32,
    relu: bool,
) -> Option<BatchNormTrained<B>> {
    let all_f32 = [x.dtype(), scale.dtype(), bias.dtype()]
        .iter()
        .all(|&d| d == DType::F32);
    if TypeId::of::<B>() != TypeId::of::<Trained>() || !all_f32 {
        return None;
    }
    let [n, c, h, w] = x.dims();
    let shape = Shape {
        dims: [n, c, h, w],
        channels: c,
        plane: h * w,
        count: n * h * w,
    };
    let x = cast::<B, Trained, 4>(x.clone()).into_primitive().tensor();
    let scale = cast::<B, Trained, 1>(scale.clone())
        .into_primitive()
        .tensor();
    let bias = cast::<B, Trained, 1>(bias.clone())
        .into_primitive()
        .tensor();
    let input = contiguous(x.primitive.clone());
    let stats = statistics(values(&input), shape, epsilon);
    let gamma = values(&contiguous(scale.primitive.clone())).to_vec();
    let beta = values(&contiguous(bias.primitive.clone())).to_vec();
    let y = normalize(values(&input), &stats, &gamma, &beta, shape, relu);
    let y = flex(y, vec![n, c, h, w]);
    let relu_output = relu.then(|| y.clone());
    let (mean, var) = (stats.mean.clone(), stats.var.clone());
    let nodes = [x.node.clone(), scale.node.clone(), bias.node.clone()];
    let out = match BatchNormBackward
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((input, stats, gamma, shape, relu_output), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    let y = Tensor::<Trained, 4>::from_primitive(TensorPrimitive::Float(out));
    Some(BatchNormTrained {
        y: cast::<Trained, B, 4>(y),
        mean,
        var,
    })
}

#[derive(Clone, Copy, Debug)]
struct Shape {
    dims: [usize; 4],
    channels: usize,
    /// Values per image and channel.
    plane: usize,
    /// Values per channel in the batch.
    count: usize,
}

#[derive(Clone, Debug)]
struct Statistics {
    mean: Vec<f32>,
    var: Vec<f32>,
    inv_std: Vec<f32>,
}

/// The planes of channel `c` across the batch.
fn channel_planes(values: &[f32], s: Shape, c: usize) -> impl Iterator<Item = &[f32]> {
    values.chunks(s.plane).skip(c).step_by(s.channels)
}

/// `f` summed over `values` in eight independent lanes (so the compiler vectorises it).
fn lane_sum(values: &[f32], f: impl Fn(usize, f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; 8];
    let whole = values.len() / 8 * 8;
    for (k, chunk) in values[..whole].chunks_exact(8).enumerate() {
        for (lane, (i, &v)) in lanes.iter_mut().zip(chunk.iter().enumerate()) {
            *lane += f(k * 8 + i, v);
        }
    }
    let tail: f32 = (whole..values.len()).map(|i| f(i, values[i])).sum();
    lanes.iter().sum::<f32>() + tail
}

/// Mean and biased variance per channel: two passes, each plane summed in f32 lanes and the
/// planes in f64; one task a channel.
fn statistics(x: &[f32], s: Shape, epsilon: f32) -> Statistics {
    let per_channel: Vec<(f32, f32)> = (0..s.channels)
        .into_par_iter()
        .map(|c| {
            let planes = || channel_planes(x, s, c);
            let sum: f64 = planes().map(|p| lane_sum(p, |_, v| v) as f64).sum();
            let mean = (sum / s.count as f64) as f32;
            let squares: f64 = planes()
                .map(|p| lane_sum(p, |_, v| (v - mean) * (v - mean)) as f64)
                .sum();
            (mean, (squares / s.count as f64) as f32)
        })
        .collect();
    let (mean, var): (Vec<f32>, Vec<f32>) = per_channel.into_iter().unzip();
    let inv_std = var.iter().map(|v| 1.0 / (v + epsilon).sqrt()).collect();
    Statistics { mean, var, inv_std }
}

fn normalize(
    x: &[f32],
    stats: &Statistics,
    gamma: &[f32],
    beta: &[f32],
    s: Shape,
    relu: bool,
) -> Vec<f32> {
    let plane = s.plane.max(1);
    par_zeroed(
        x.len(),
        plane,
        || (),
        |i, _, out| {
            let c = i % s.channels;
            let a = gamma[c] * stats.inv_std[c];
            let b = beta[c] - stats.mean[c] * a;
            for (o, v) in out.iter_mut().zip(&x[i * plane..]) {
                let y = v * a + b;
                // `y < 0` rather than `max`: a NaN stays NaN, so divergence shows in the loss.
                *o = if relu && y < 0.0 { 0.0 } else { y };
            }
        },
    )
}

#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    /// The input, its statistics, the scale, the shape, and the output when a ReLU is fused.
    type State = (FlexTensor, Statistics, Vec<f32>, Shape, Option<FlexTensor>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, scale_node, bias_node] = ops.parents.map(|p| p.map(|node| node.id));
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let (input, stats, gamma, s, relu_output) = ops.state;
        // Through the fused ReLU first: the gradient passes where the output is positive.
        let masked = relu_output.map(|y| relu_backward(values(&grad), values(&y)));
        let dy = masked.as_deref().unwrap_or(values(&grad));
        let x = values(&input);
        // Per channel: sum of dy (the bias gradient) and of dy * x_hat (the scale gradient).
        let sums: Vec<(f32, f32)> = (0..s.channels)
            .into_par_iter()
            .map(|c| {
                let pairs = channel_planes(dy, s, c).zip(channel_planes(x, s, c));
                let (mut sum, mut dot) = (0.0f64, 0.0f64);
                for (g, v) in pairs {
                    let mean = stats.mean[c];
                    sum += lane_sum(g, |_, g| g) as f64;
                    dot += lane_sum(g, |i, g| g * (v[i] - mean)) as f64;
                }
                (sum as f32, (dot * stats.inv_std[c] as f64) as f32)
            })
            .collect();
        let (dbias, dscale): (Vec<f32>, Vec<f32>) = sums.iter().copied().unzip();
        if let Some(id) = x_node {
            let (count, plane) = (s.count as f32, s.plane.max(1));
            let dx = par_zeroed(
                x.len(),
                plane,
                || (),
                |i, _, out| {
                    let c = i % s.channels;
                    let (mean, inv_std) = (stats.mean[c], stats.inv_std[c]);
                    let k = gamma[c] * inv_std;
                    let (mean_dy, mean_dot) = (dbias[c] / count, dscale[c] / count);
                    let (g, v) = (&dy[i * plane..], &x[i * plane..]);
                    for ((o, g), v) in out.iter_mut().zip(g).zip(v) {
                        let x_hat = (v - mean) * inv_std;
                        *o = k * (g - mean_dy - x_hat * mean_dot);
                    }
                },
            );
            grads.register::<Flex>(id, flex(dx, s.dims.to_vec()));
        }
        if let Some(id) = scale_node {
            grads.register::<Flex>(id, flex(dscale, vec![s.channels]));
        }
        if let Some(id) = bias_node {
            grads.register::<Flex>(id, flex(dbias, vec![s.channels]));
        }
    }
}
