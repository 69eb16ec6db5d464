//! Layers: convolution, pooling, batch norm, LRN, fully connected products, softmax and
//! dropout. Convolution and batch norm run zoo's flex kernels first (also fused with a
//! following ReLU, `crate::exec::fuse`), then burn's generic ops.

use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{PadMode, PaddedConvOptions};
use burn::tensor::{Distribution, Tensor};
use zoo_onnx::ops::{ConvSpec, Nn};
use zoo_onnx::shapes::{normalize_axis, window_output};
use zoo_onnx::{Node, PoolSpec};

use super::Cx;
use crate::exec::{Value, PADDED};
use crate::network::Network;

pub(crate) fn run<B: Backend>(op: &Nn, cx: &Cx<B>) -> Value<B> {
    match op {
        Nn::Conv(spec) => conv(spec, cx),
        Nn::MaxPool(pool) => cx.get(0).map4(|x| max_pool(x, pool)),
        Nn::AveragePool {
            pool,
            count_include_pad,
        } => cx.get(0).map4(|x| avg_pool(x, pool, *count_include_pad)),
        Nn::GlobalAveragePool => cx.get(0).map4(|t| t.mean_dim(3).mean_dim(2)),
        Nn::GlobalMaxPool => cx.get(0).map4(|t| t.max_dim(3).max_dim(2)),
        Nn::BatchNorm { epsilon, momentum } => batch_norm(cx, *epsilon, *momentum),
        Nn::Lrn {
            size,
            alpha,
            beta,
            bias,
        } => cx.get(0).map4(|x| lrn(x, *size, *alpha, *beta, *bias)),
        Nn::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => gemm(cx, *alpha, *beta, [*trans_a, *trans_b]),
        Nn::MatMul => {
            let (a, b) = (cx.get(0), cx.get(1));
            let rank = a.rank.max(b.rank);
            if rank <= 2 {
                Value::new(matrix(a).matmul(matrix(b)).unsqueeze(), 2)
            } else {
                Value::new(a.t.matmul(b.t), rank)
            }
        }
        Nn::Softmax { axis, legacy } => softmax(cx.get(0), *axis, *legacy, false),
        Nn::LogSoftmax { axis, legacy } => softmax(cx.get(0), *axis, *legacy, true),
        Nn::Dropout { ratio } => {
            let x = cx.get(0);
            let ratio = *ratio as f64;
            if B::ad_enabled(&x.t.device()) && ratio > 0.0 && ratio < 1.0 {
                let keep = 1.0 - ratio;
                x.map(|t| {
                    let mask = t.random_like(Distribution::Bernoulli(keep));
                    t * mask / keep
                })
            } else {
                x
            }
        }
    }
}

fn conv<B: Backend>(spec: &ConvSpec, cx: &Cx<B>) -> Value<B> {
    let inputs = conv_inputs(cx, spec);
    if let Some(y) = fast_conv(spec, &inputs, false) {
        return y;
    }
    let ConvInputs { x, w, bias, pads } = inputs;
    let options = PaddedConvOptions::asymmetric(
        spec.strides,
        [pads[0], pads[1]],
        [pads[2], pads[3]],
        spec.dilations,
        spec.group,
    );
    match bias {
        // Training the bias: added apart, so its gradient is a row sum (the fused conv's bias
        // backward transposes the whole output gradient first).
        Some(bias) if cx.trains_input(2) => {
            Value::from4(add_per_channel(conv2d(x, w, None, options), bias), 4)
        }
        bias => Value::from4(conv2d(x, w, bias, options), 4),
    }
}

fn batch_norm<B: Backend>(cx: &Cx<B>, epsilon: f32, momentum: f32) -> Value<B> {
    let x = cx.get(0);
    let recorder = batch_statistics(cx.net, cx.node);
    let param = |i: usize| cx.param_1d(i).expect("validated");
    if recorder.is_none() && x.rank <= 4 {
        let params = [1, 2, 3, 4].map(param);
        let [s, b, m, v] = &params;
        if let Some(y) = crate::host::batch_norm_inference(&x.t4(), [s, b, m, v], epsilon) {
            return Value::from4(y, x.rank);
        }
    }
    if let (Some(recorder), 4) = (&recorder, x.rank) {
        let y = batch_norm_train(
            x.t4(),
            [1, 2].map(param),
            epsilon,
            momentum,
            recorder,
            false,
        );
        return Value::from4(y, 4);
    }
    let channels = x.dims()[1];
    let channel_axis = x.axis(1);
    let mut shape = [1usize; PADDED];
    shape[channel_axis] = channels;
    let [scale, bias, mut mean, mut var] = [1, 2, 3, 4].map(|i| param(i).reshape(shape));
    if let Some(recorder) = recorder {
        // Training a batch-norm layer: normalise with this batch's statistics (as PyTorch and
        // MATLAB do) and hand them to the trainer for the running ones.
        let per_channel = x.t.dims().iter().product::<usize>() / channels;
        let reduce = |t: Tensor<B, PADDED>| {
            (0..PADDED)
                .filter(|&a| a != channel_axis)
                .fold(t, |t, a| t.mean_dim(a))
        };
        mean = reduce(x.t.clone());
        var = reduce((x.t.clone() - mean.clone()).powi_scalar(2));
        let (m, v) = (mean.clone().detach(), var.clone().detach());
        recorder.record(&m, &v, per_channel, momentum);
    }
    let inv_std = scale * (var + epsilon as f64).sqrt().recip();
    let shift = bias - mean * inv_std.clone();
    x.map(|t| t * inv_std + shift)
}

fn gemm<B: Backend>(cx: &Cx<B>, alpha: f32, beta: f32, [trans_a, trans_b]: [bool; 2]) -> Value<B> {
    let a = matrix(cx.get(0));
    let b = matrix(cx.get(1));
    if let Some(y) = few_rows_gemm(cx, &a, &b, alpha, beta, [trans_a, trans_b]) {
        return Value::new(y.unsqueeze(), 2);
    }
    let mut y = match (trans_a, trans_b) {
        // Fully connected layers (transB=1): computed as (W A^T)^T so that the weight stays the
        // contiguous operand; its gradient then comes out in its own layout (measured on fc6:
        // backward 0.25 s -> 0.10 s per step).
        (false, true) => b.matmul(a.transpose()).transpose(),
        (true, true) => b.matmul(a).transpose(),
        (true, false) => a.transpose().matmul(b),
        (false, false) => a.matmul(b),
    };
    if alpha != 1.0 {
        y = y * alpha as f64;
    }
    let y: Tensor<B, PADDED> = y.unsqueeze();
    let y = match cx.node.input(2) {
        Some(_) if beta == 1.0 => y + cx.get(2).t,
        Some(_) if beta != 0.0 => y + cx.get(2).t * beta as f64,
        _ => y,
    };
    Value::new(y, 2)
}

/// A fully connected layer (`transB = 1`, no scaling, a bias per output or none) at a batch
/// of a few images on flex: zoo's matrix-vector kernel.
fn few_rows_gemm<B: Backend>(
    cx: &Cx<B>,
    a: &Tensor<B, 2>,
    b: &Tensor<B, 2>,
    alpha: f32,
    beta: f32,
    [trans_a, trans_b]: [bool; 2],
) -> Option<Tensor<B, 2>> {
    let plain = !trans_a && trans_b && alpha == 1.0 && (beta == 1.0 || cx.node.input(2).is_none());
    if !plain || a.dims()[0] > crate::kernels::few_rows::FEW_ROWS {
        return None;
    }
    let c = b.dims()[0];
    let bias = match cx.node.input(2) {
        Some(_) => {
            let bias = cx.get(2);
            (bias.dims().iter().product::<usize>() == c && bias.dims().last() == Some(&c))
                .then(|| bias.t.reshape([c]))?
        }
        None => return crate::kernels::few_rows::few_rows_linear(a, b, None),
    };
    crate::kernels::few_rows::few_rows_linear(a, b, Some(&bias))
}

/// Softmax (or its logarithm) over `axis`; before opset 13 over every axis from `axis` on.
fn softmax<B: Backend>(x: Value<B>, axis: i64, legacy: bool, log: bool) -> Value<B> {
    let dims = x.dims();
    let a = normalize_axis(axis, dims.len()).expect("validated");
    if legacy && a + 1 < dims.len() {
        let outer: usize = dims[..a].iter().product();
        let inner: usize = dims[a..].iter().product();
        let flat: Tensor<B, 2> = x.t.reshape([outer, inner]);
        let y = match log {
            true => activation::log_softmax(flat, 1),
            false => activation::softmax(flat, 1),
        };
        Value::reshaped(y.unsqueeze(), &dims)
    } else {
        let len = dims[a];
        if a + 1 == dims.len() && !log && len > 0 {
            let rows: Tensor<B, 2> = x.t.clone().reshape([x.t.shape().num_elements() / len, len]);
            if let Some(y) = crate::kernels::rows::softmax(&rows) {
                return Value::reshaped(y.unsqueeze(), &dims);
            }
        }
        let axis = x.axis(a);
        x.map(|t| match log {
            true => activation::log_softmax(t, axis),
            false => activation::softmax(t, axis),
        })
    }
}

/// `y + bias` per channel of an NCHW batch, as `[N, C, H*W]` rows plus one scalar per row:
/// the backend's fast broadcast, and a contiguous row sum for the gradient.
fn add_per_channel<B: Backend>(y: Tensor<B, 4>, bias: Tensor<B, 1>) -> Tensor<B, 4> {
    let [n, c, h, w] = y.dims();
    (y.reshape([n, c, h * w]) + bias.reshape([1, c, 1]).repeat_dim(0, n)).reshape([n, c, h, w])
}

/// Batch norm of an NCHW batch with its own statistics (training). Laid out as `[N, C, H*W]`
/// with the per-channel vectors repeated over the batch to `[N, C, 1]`, every reduction runs
/// along contiguous rows and every broadcast is one scalar per row: the backend's fast paths,
/// forward and backward (a `[1, C, 1, 1]` broadcast against `[N, C, H, W]` walks strided
/// indices, measured at over half of a LeNet-5 training step).
pub(crate) fn batch_norm_train<B: Backend>(
    x: Tensor<B, 4>,
    [scale, bias]: [Tensor<B, 1>; 2],
    epsilon: f32,
    momentum: f32,
    recorder: &crate::batchnorm::Recorder<'_>,
    relu: bool,
) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    if let Some(fused) = crate::batch_norm_train::batch_norm_train(&x, &scale, &bias, epsilon, relu)
    {
        recorder.record_values(fused.mean, fused.var, n * h * w, momentum);
        return fused.y;
    }
    let rows = x.reshape([n, c, h * w]);
    let per_image = |t: Tensor<B, 3>| t.mean_dim(2).mean_dim(0);
    let mean = per_image(rows.clone());
    let centred = rows - mean.clone().repeat_dim(0, n);
    let var = per_image(centred.clone().powi_scalar(2));
    recorder.record(&mean.detach(), &var.clone().detach(), n * h * w, momentum);
    let inv_std = scale.reshape([1, c, 1]) * (var + epsilon as f64).sqrt().recip();
    let y = centred * inv_std.repeat_dim(0, n) + bias.reshape([1, c, 1]).repeat_dim(0, n);
    let y = y.reshape([n, c, h, w]);
    if relu {
        activation::relu(y)
    } else {
        y
    }
}

/// Where a batch-norm node reports its batch statistics, when it trains with them: the
/// network is in batch-statistics mode, on an autodiff backend, and the layer's scale trains.
pub(crate) fn batch_statistics<'a, B: Backend>(
    net: &'a Network<B>,
    node: &Node,
) -> Option<crate::batchnorm::Recorder<'a>> {
    let stats = net.batch_stats.as_ref()?;
    let plan = &net.plan;
    let index = |i: usize| node.input(i).and_then(|n| plan.param_index.get(n)).copied();
    let (scale, mean, var) = (index(1)?, index(3)?, index(4)?);
    let device = net.params[scale].val().device();
    (B::ad_enabled(&device) && net.trainable[scale]).then_some(crate::batchnorm::Recorder {
        sink: stats,
        mean_param: mean,
        var_param: var,
    })
}

/// A convolution node's operands, read once for whichever kernel runs it.
pub(crate) struct ConvInputs<B: Backend> {
    pub(crate) x: Tensor<B, 4>,
    pub(crate) w: Tensor<B, 4>,
    pub(crate) bias: Option<Tensor<B, 1>>,
    /// `[top, left, bottom, right]`, resolved for this input and kernel.
    pub(crate) pads: [usize; 4],
}

pub(crate) fn conv_inputs<B: Backend>(cx: &Cx<B>, spec: &ConvSpec) -> ConvInputs<B> {
    let (x, w) = (cx.get(0).t4(), cx.get(1).t4());
    let [_, _, h, wd] = x.dims();
    let [_, _, kh, kw] = w.dims();
    let p = spec
        .padding
        .resolve([h, wd], [kh, kw], spec.strides, spec.dilations);
    ConvInputs {
        x,
        w,
        bias: cx.param_1d(2),
        pads: [p[0], p[1], p[2], p[3]],
    }
}

/// A convolution (then a ReLU if `relu`) on zoo's own flex kernel; `None` where that kernel
/// does not serve the backend or dtype.
pub(crate) fn fast_conv<B: Backend>(
    spec: &ConvSpec,
    c: &ConvInputs<B>,
    relu: bool,
) -> Option<Value<B>> {
    let settings = conv_settings(spec, c, relu);
    crate::conv::conv2d(&c.x, &c.w, c.bias.as_ref(), &settings).map(|y| Value::from4(y, 4))
}

/// zoo's convolution settings for a node's spec and resolved pads, the ReLU fused or not.
pub(crate) fn conv_settings<B: Backend>(
    spec: &ConvSpec,
    c: &ConvInputs<B>,
    relu: bool,
) -> crate::conv::ConvSettings {
    crate::conv::ConvSettings {
        stride: spec.strides,
        pads: c.pads,
        dilation: spec.dilations,
        groups: spec.group,
        relu,
    }
}

fn matrix<B: Backend>(v: Value<B>) -> Tensor<B, 2> {
    let dims = v.dims();
    match dims.as_slice() {
        [n] => v.t.reshape([1, *n]),
        [m, n] => v.t.reshape([*m, *n]),
        _ => unreachable!("matrix operands were validated"),
    }
}

/// Extra end padding so that ceil-mode windows exist as real windows.
fn pool_pads(pool: &PoolSpec, h: usize, w: usize) -> ([usize; 4], [usize; 2]) {
    let p = pool
        .padding
        .resolve([h, w], pool.kernel, pool.strides, pool.dilations);
    let mut extra = [0; 2];
    for (i, size) in [h, w].into_iter().enumerate() {
        let out = window_output(
            size,
            p[i],
            p[i + 2],
            pool.kernel[i],
            pool.strides[i],
            pool.dilations[i],
            pool.ceil_mode,
        )
        .expect("validated");
        let span = (pool.kernel[i] - 1) * pool.dilations[i] + 1;
        let needed = (out - 1) * pool.strides[i] + span;
        extra[i] = needed.saturating_sub(size + p[i] + p[i + 2]);
    }
    (p, extra)
}

fn max_pool<B: Backend>(x: Tensor<B, 4>, pool: &PoolSpec) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    let (p, extra) = pool_pads(pool, h, w);
    if let Some(y) = crate::max_pool::max_pool(&x, pool, p, extra) {
        return y;
    }
    let padded = if p == [0; 4] && extra == [0; 2] {
        x
    } else {
        x.pad(
            [(p[0], p[2] + extra[0]), (p[1], p[3] + extra[1])],
            PadMode::Constant(f32::NEG_INFINITY),
        )
    };
    max_pool2d(
        padded,
        pool.kernel,
        pool.strides,
        [0, 0],
        pool.dilations,
        false,
    )
}

/// Average pooling as (window sum) / (count of counted cells), so asymmetric pads, ceil mode and
/// both `count_include_pad` settings follow ONNX exactly.
fn avg_pool<B: Backend>(x: Tensor<B, 4>, pool: &PoolSpec, count_include_pad: bool) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    let (p, extra) = pool_pads(pool, h, w);
    if p == [0; 4] && extra == [0; 2] {
        return avg_pool2d(x, pool.kernel, pool.strides, [0, 0], true, false);
    }
    let device = x.device();
    let pads = [(p[0], p[2] + extra[0]), (p[1], p[3] + extra[1])];
    let sums = avg_pool2d(
        x.pad(pads, PadMode::Constant(0.0)),
        pool.kernel,
        pool.strides,
        [0, 0],
        true,
        false,
    );
    let ones = Tensor::<B, 4>::ones([1, 1, h, w], &device);
    let counted = if count_include_pad {
        ones.pad([(p[0], p[2]), (p[1], p[3])], PadMode::Constant(1.0))
            .pad([(0, extra[0]), (0, extra[1])], PadMode::Constant(0.0))
    } else {
        ones.pad(pads, PadMode::Constant(0.0))
    };
    let fraction = avg_pool2d(counted, pool.kernel, pool.strides, [0, 0], true, false);
    sums / fraction
}

/// Local response normalisation across channels (Caffe/AlexNet):
/// `x / (bias + alpha / size * sum_{window} x^2) ^ beta`. On the flex backend a fused kernel
/// runs it (the generic form below was 60 % of an AlexNet forward there).
fn lrn<B: Backend>(x: Tensor<B, 4>, size: usize, alpha: f32, beta: f32, bias: f32) -> Tensor<B, 4> {
    if let Some(y) = crate::host::lrn(&x, size, alpha, beta, bias) {
        return y;
    }
    let [n, c, h, w] = x.dims();
    let squares = x.clone() * x.clone();
    let window_mean = if size % 2 == 1 {
        // The channel window as an average pool over a [n, 1, c, h*w] view: one op forward and
        // backward (AlexNet's first LRN at batch 32 on Autodiff<Flex>, forward + backward:
        // 0.59 s, against 0.95 s for pad + narrow + add).
        let view = squares.reshape([n, 1, c, h * w]);
        avg_pool2d(view, [size, 1], [1, 1], [size / 2, 0], true, false).reshape([n, c, h, w])
    } else {
        let before = (size - 1) / 2;
        let padded = squares.pad(
            [(before, size - 1 - before), (0, 0), (0, 0)],
            PadMode::Constant(0.0),
        );
        let sum = (1..size).fold(padded.clone().narrow(1, 0, c), |sum, offset| {
            sum + padded.clone().narrow(1, offset, c)
        });
        sum / size as f64
    };
    let d = window_mean * alpha as f64 + bias as f64;
    let inverse_power = if beta == 0.75 {
        let root = d.sqrt();
        (root.clone() * root.sqrt()).recip()
    } else {
        d.powf_scalar(-(beta as f64))
    };
    x * inverse_power
}
