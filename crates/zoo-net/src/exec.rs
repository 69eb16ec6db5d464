//! Runs the graph. Every tensor is held as a rank-4 burn tensor plus its logical rank (leading
//! 1s pad lower ranks), which keeps numpy broadcasting exact and lets one code path serve all
//! ops. Shapes were validated at import, so nothing here can meet an inconsistent graph.

use std::collections::HashMap;

use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{PadMode, PaddedConvOptions};
use burn::tensor::{Distribution, Tensor};
use zoo_onnx::shapes::{normalize_axis, window_output, ReshapeTarget};
use zoo_onnx::{Node, Op, PoolSpec};

use burn::backend::Flex;
use burn::tensor::TensorPrimitive;

use crate::concat::ChannelConcat;
use crate::conv::conv2d_into;
use crate::flex_autodiff::{cast, contiguous};
use crate::network::Network;

/// Rank every value is padded to.
pub(crate) const PADDED: usize = zoo_onnx::shapes::MAX_RANK;

/// A value flowing through the graph: the tensor padded to rank 5, and its ONNX rank.
#[derive(Clone, Debug)]
pub(crate) struct Value<B: Backend> {
    pub(crate) t: Tensor<B, PADDED>,
    pub(crate) rank: usize,
}

impl<B: Backend> Value<B> {
    pub(crate) fn new(t: Tensor<B, PADDED>, rank: usize) -> Self {
        Self { t, rank }
    }

    /// An NCHW (or lower-rank, padded to 4) tensor as a value of ONNX rank `rank`.
    pub(crate) fn from4(t: Tensor<B, 4>, rank: usize) -> Self {
        Self::new(t.unsqueeze(), rank)
    }

    /// The value as a rank-4 tensor (its ONNX rank must be at most 4).
    pub(crate) fn t4(&self) -> Tensor<B, 4> {
        let [_, a, b, c, d] = self.t.dims();
        self.t.clone().reshape([a, b, c, d])
    }

    /// The ONNX dims (the last `rank` dims of the padded tensor).
    pub(crate) fn dims(&self) -> Vec<usize> {
        self.t.dims()[PADDED - self.rank..].to_vec()
    }

    /// Builds a value from ONNX dims.
    pub(crate) fn reshaped(t: Tensor<B, PADDED>, dims: &[usize]) -> Self {
        Self::new(t.reshape(pad_dims(dims)), dims.len())
    }

    /// Physical axis of a logical axis.
    pub(crate) fn axis(&self, logical: usize) -> usize {
        logical + PADDED - self.rank
    }

    fn map(self, f: impl FnOnce(Tensor<B, PADDED>) -> Tensor<B, PADDED>) -> Self {
        Self::new(f(self.t), self.rank)
    }

    /// Applies a rank-4 op to an NCHW value.
    fn map4(self, f: impl FnOnce(Tensor<B, 4>) -> Tensor<B, 4>) -> Self {
        Self::from4(f(self.t4()), 4)
    }
}

pub(crate) fn pad_dims(dims: &[usize]) -> [usize; PADDED] {
    let mut out = [1; PADDED];
    out[PADDED - dims.len()..].copy_from_slice(dims);
    out
}

/// Runs the graph from the input (or from a cut value, skipping the data nodes before
/// `start`) until `want` is computed. Nodes that only transform parameters always run.
pub(crate) fn run_nodes<B: Backend>(
    net: &Network<B>,
    seed: (&str, Value<B>),
    start: usize,
    want: &str,
) -> Value<B> {
    run_nodes_tapped(net, seed, start, want, None)
}

/// A change applied to one value as soon as it is computed (e.g. making it a gradient leaf).
pub(crate) type Tap<'a, B> = (&'a str, &'a mut dyn FnMut(Tensor<B, 4>) -> Tensor<B, 4>);

/// [`run_nodes`], with `tap` applied to its value when the graph computes it.
pub(crate) fn run_nodes_tapped<B: Backend>(
    net: &Network<B>,
    seed: (&str, Value<B>),
    start: usize,
    want: &str,
    mut tap: Option<Tap<'_, B>>,
) -> Value<B> {
    let plan = &net.plan;
    let graph = &plan.graph;
    let mut values: HashMap<&str, Value<B>> = HashMap::new();
    let (seed_name, seed_value) = seed;
    values.insert(seed_name, seed_value);
    if let Some(v) = values.get(want) {
        return v.clone();
    }
    // A ReLU whose input is already its output (fused into the node before it).
    let mut pass_through = None;
    // Concatenations being written by their parts, and the ReLU of a part written there.
    let mut concats: HashMap<usize, ChannelConcat> = HashMap::new();
    let mut written_part_relu = None;
    for (i, node) in graph.nodes.iter().enumerate() {
        if i < start && plan.data_dependent[i] {
            continue;
        }
        let tapped = tap.as_ref().map(|(name, _)| *name);
        let outs = if written_part_relu == Some(i) {
            Vec::new()
        } else if into_concat(net, i, &values, [Some(want), tapped], &mut concats) {
            written_part_relu = plan.relu_follows[i].then_some(i + 1);
            Vec::new()
        } else if let Some(y) = finish_concat(net, i, &values, &mut concats) {
            vec![y]
        } else if pass_through == Some(i) {
            vec![values[node.inputs[0].as_str()].clone()]
        } else if let Some(y) = with_relu(net, i, &values, want, tapped) {
            pass_through = Some(i + 1);
            vec![y]
        } else {
            run_node(net, node, &values)
        };
        for (name, out) in node.outputs.iter().zip(outs) {
            let out = match &mut tap {
                Some((tapped, f)) if *tapped == name.as_str() && out.rank == 4 => {
                    Value::from4(f(out.t4()), 4)
                }
                _ => out,
            };
            values.insert(name, out);
        }
        if node.outputs.iter().any(|o| o == want) {
            break;
        }
        for dead in &plan.release_after[i] {
            if dead != want {
                values.remove(dead.as_str());
            }
        }
    }
    match values.remove(want) {
        Some(v) => v,
        // A value computed at import (an output made only of constants).
        None => constant_value(net, want).expect("the wanted value is produced by the graph"),
    }
}

/// Runs convolution node `i` straight into the output of the concatenation it feeds
/// (`Plan::concat_parts`), with its ReLU when one follows: on flex at inference, when neither
/// its output nor the ReLU's is wanted or tapped (`looked_at`). `false` leaves it to run as usual.
fn into_concat<B: Backend>(
    net: &Network<B>,
    i: usize,
    values: &HashMap<&str, Value<B>>,
    looked_at: [Option<&str>; 2],
    concats: &mut HashMap<usize, ChannelConcat>,
) -> bool {
    let (plan, node) = (&net.plan, &net.plan.graph.nodes[i]);
    let (Some(part), Op::Conv(spec)) = (plan.concat_parts[i], &node.op) else {
        return false;
    };
    let relu = plan.relu_follows[i];
    let looked_at = |o: &String| looked_at.contains(&Some(o.as_str()));
    let relu_output = relu.then(|| &plan.graph.nodes[i + 1].outputs[0]);
    if looked_at(&node.outputs[0]) || relu_output.is_some_and(looked_at) {
        return false;
    }
    let get = |k: usize| input(net, node, values, k);
    let c = conv_inputs(net, node, spec, &get);
    let settings = conv_settings(spec, &c, relu);
    let mut target = concats.remove(&part.concat);
    let placed = [part.first_channel, part.channels];
    let written = conv2d_into(&c.x, &c.w, c.bias.as_ref(), &settings, &mut target, placed);
    if let Some(target) = target {
        concats.insert(part.concat, target);
    }
    written
}

/// The output of Concat node `i` when some of its parts were written into it
/// ([`into_concat`]): the other parts copied in. `None` for any other node.
fn finish_concat<B: Backend>(
    net: &Network<B>,
    i: usize,
    values: &HashMap<&str, Value<B>>,
    concats: &mut HashMap<usize, ChannelConcat>,
) -> Option<Value<B>> {
    let mut target = concats.remove(&i)?;
    let graph = &net.plan.graph;
    let offsets = crate::plan::channel_offsets(graph, i).expect("planned as a concatenation");
    for (name, &first) in graph.nodes[i].inputs.iter().zip(&offsets) {
        if let Some(v) = values.get(name.as_str()) {
            let part = contiguous(cast::<B, Flex, 4>(v.t4()).into_primitive().tensor());
            target.copy_part(first, crate::flex_autodiff::values(&part));
        }
    }
    let y = Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(target.finish()));
    Some(Value::from4(cast::<Flex, B, 4>(y), 4))
}

/// Node `i` and the ReLU right after it as one op, when the ReLU is all that reads node `i`'s
/// output (`Plan::relu_follows`) and that output is neither wanted nor tapped: a convolution
/// on flex (ReLU in the bias pass, and in its own backward), or a batch norm with batch
/// statistics. The value to store as node `i`'s output, already through the ReLU (which then
/// passes it on); `None` leaves both nodes to run on their own.
fn with_relu<B: Backend>(
    net: &Network<B>,
    i: usize,
    values: &HashMap<&str, Value<B>>,
    want: &str,
    tapped: Option<&str>,
) -> Option<Value<B>> {
    let node = &net.plan.graph.nodes[i];
    let out = node.outputs[0].as_str();
    if !net.plan.relu_follows[i] || want == out || tapped == Some(out) {
        return None;
    }
    match node.op {
        Op::Conv(ref spec) => {
            let get = |k: usize| input(net, node, values, k);
            fast_conv(spec, &conv_inputs(net, node, spec, &get), true)
        }
        Op::BatchNorm { epsilon, momentum } => {
            let recorder = batch_statistics(net, node)?;
            let x = values.get(node.input(0)?)?;
            let param = |k: usize| {
                let p = *net.plan.param_index.get(node.input(k)?)?;
                Some(net.params[p].val())
            };
            let (scale, bias) = (param(1)?, param(2)?);
            if x.rank != 4 {
                return None;
            }
            let y = batch_norm_train(x.t4(), [scale, bias], epsilon, momentum, &recorder, true);
            Some(Value::from4(y, 4))
        }
        _ => None,
    }
}

/// Whether input `i` of `node` is a parameter that trains in this (autodiff) run.
fn trains_input<B: Backend>(net: &Network<B>, node: &Node, i: usize) -> bool {
    let plan = &net.plan;
    node.input(i)
        .and_then(|v| plan.param_index.get(v))
        .is_some_and(|&p| net.trainable[p] && B::ad_enabled(&net.params[p].val().device()))
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
fn batch_norm_train<B: Backend>(
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

/// A constant of the graph (parameter or plain constant) as a value.
fn constant_value<B: Backend>(net: &Network<B>, name: &str) -> Option<Value<B>> {
    let plan = &net.plan;
    if let Some(&p) = plan.param_index.get(name) {
        return Some(Value::reshaped(
            net.params[p]
                .val()
                .reshape(pad_dims(&[plan.params[p].numel()])),
            &plan.params[p].dims,
        ));
    }
    let c = plan.graph.constants.get(name)?;
    let values: Vec<f32> = match &c.data {
        zoo_onnx::ConstData::F32(v) => v.clone(),
        zoo_onnx::ConstData::I64(v) => v.iter().map(|&x| x as f32).collect(),
    };
    let device = net
        .params
        .first()
        .map(|p| p.val().device())
        .unwrap_or_default();
    let t = Tensor::<B, PADDED>::from_data(
        burn::tensor::TensorData::new(values, pad_dims(&c.dims)),
        &device,
    );
    Some(Value::new(t, c.dims.len()))
}

/// Where a batch-norm node reports its batch statistics, when it trains with them: the
/// network is in batch-statistics mode, on an autodiff backend, and the layer's scale trains.
fn batch_statistics<'a, B: Backend>(
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

/// `[batch, features]` view of a value.
pub(crate) fn as_matrix<B: Backend>(v: Value<B>) -> Tensor<B, 2> {
    let dims = v.dims();
    let batch = dims[0];
    let rest: usize = dims[1..].iter().product();
    v.t.reshape([batch, rest])
}

/// Input `i` of `node`: a computed value, or a parameter or constant of the graph.
fn input<B: Backend>(
    net: &Network<B>,
    node: &Node,
    values: &HashMap<&str, Value<B>>,
    i: usize,
) -> Value<B> {
    let name = node.input(i).expect("inputs were validated");
    match values.get(name) {
        Some(v) => v.clone(),
        None => constant_value(net, name).expect("inputs were validated"),
    }
}

/// Runs one node; its outputs in order (one value for every op but Split).
fn run_node<B: Backend>(
    net: &Network<B>,
    node: &Node,
    values: &HashMap<&str, Value<B>>,
) -> Vec<Value<B>> {
    let get = |i: usize| input(net, node, values, i);
    match &node.op {
        Op::Split { axis, sizes } => {
            crate::exec_layout::split(get(0), *axis, sizes.as_deref(), node.outputs.len())
        }
        _ => vec![run_single(net, node, &get)],
    }
}

/// A convolution node's operands, read once for whichever kernel runs it.
struct ConvInputs<B: Backend> {
    x: Tensor<B, 4>,
    w: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    /// `[top, left, bottom, right]`, resolved for this input and kernel.
    pads: [usize; 4],
}

fn conv_inputs<B: Backend>(
    net: &Network<B>,
    node: &Node,
    spec: &zoo_onnx::ops::ConvSpec,
    get: &dyn Fn(usize) -> Value<B>,
) -> ConvInputs<B> {
    let (x, w) = (get(0).t4(), get(1).t4());
    let [_, _, h, wd] = x.dims();
    let [_, _, kh, kw] = w.dims();
    let p = spec
        .padding
        .resolve([h, wd], [kh, kw], spec.strides, spec.dilations);
    ConvInputs {
        x,
        w,
        bias: param_1d(net, node, get, 2),
        pads: [p[0], p[1], p[2], p[3]],
    }
}

/// A convolution (then a ReLU if `relu`) on zoo's own flex kernel; `None` where that kernel
/// does not serve the backend or dtype.
fn fast_conv<B: Backend>(
    spec: &zoo_onnx::ops::ConvSpec,
    c: &ConvInputs<B>,
    relu: bool,
) -> Option<Value<B>> {
    let settings = conv_settings(spec, c, relu);
    crate::conv::conv2d(&c.x, &c.w, c.bias.as_ref(), &settings).map(|y| Value::from4(y, 4))
}

/// zoo's convolution settings for a node's spec and resolved pads, the ReLU fused or not.
fn conv_settings<B: Backend>(
    spec: &zoo_onnx::ops::ConvSpec,
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

/// Input `i` of `node` as a vector: the parameter itself when it is one (so it trains).
fn param_1d<B: Backend>(
    net: &Network<B>,
    node: &Node,
    get: &dyn Fn(usize) -> Value<B>,
    i: usize,
) -> Option<Tensor<B, 1>> {
    let name = node.input(i)?;
    match net.plan.param_index.get(name) {
        Some(&p) => Some(net.params[p].val()),
        None => Some(get(i).t.flatten(0, PADDED - 1)),
    }
}

fn run_single<B: Backend>(
    net: &Network<B>,
    node: &Node,
    get: &dyn Fn(usize) -> Value<B>,
) -> Value<B> {
    let plan = &net.plan;
    let param_1d = |i: usize| param_1d(net, node, get, i);
    match &node.op {
        Op::Conv(spec) => {
            let inputs = conv_inputs(net, node, spec, get);
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
                // Training the bias: added apart, so its gradient is a row sum (the fused
                // conv's bias backward transposes the whole output gradient first).
                Some(bias) if trains_input(net, node, 2) => {
                    Value::from4(add_per_channel(conv2d(x, w, None, options), bias), 4)
                }
                bias => Value::from4(conv2d(x, w, bias, options), 4),
            }
        }
        Op::MaxPool(pool) => get(0).map4(|x| max_pool(x, pool)),
        Op::AveragePool {
            pool,
            count_include_pad,
        } => get(0).map4(|x| avg_pool(x, pool, *count_include_pad)),
        Op::GlobalAveragePool => get(0).map4(|t| t.mean_dim(3).mean_dim(2)),
        Op::GlobalMaxPool => get(0).map4(|t| t.max_dim(3).max_dim(2)),
        Op::BatchNorm { epsilon, momentum } => {
            let x = get(0);
            let recorder = batch_statistics(net, node);
            if recorder.is_none() && x.rank <= 4 {
                let params = [1, 2, 3, 4].map(|i| param_1d(i).expect("validated"));
                let [s, b, m, v] = &params;
                if let Some(y) = crate::host::batch_norm_inference(&x.t4(), [s, b, m, v], *epsilon)
                {
                    return Value::from4(y, x.rank);
                }
            }
            if let (Some(recorder), 4) = (&recorder, x.rank) {
                let params = [1, 2].map(|i| param_1d(i).expect("validated"));
                return Value::from4(
                    batch_norm_train(x.t4(), params, *epsilon, *momentum, recorder, false),
                    4,
                );
            }
            let channels = x.dims()[1];
            let channel_axis = x.axis(1);
            let mut shape = [1usize; PADDED];
            shape[channel_axis] = channels;
            let [scale, bias, mut mean, mut var] =
                [1, 2, 3, 4].map(|i| param_1d(i).expect("validated").reshape(shape));
            if let Some(recorder) = recorder {
                // Training a batch-norm layer: normalise with this batch's statistics (as
                // PyTorch and MATLAB do) and hand them to the trainer for the running ones.
                let per_channel = x.t.dims().iter().product::<usize>() / channels;
                let reduce = |t: Tensor<B, PADDED>| {
                    (0..PADDED)
                        .filter(|&a| a != channel_axis)
                        .fold(t, |t, a| t.mean_dim(a))
                };
                mean = reduce(x.t.clone());
                var = reduce((x.t.clone() - mean.clone()).powi_scalar(2));
                recorder.record(
                    &mean.clone().detach(),
                    &var.clone().detach(),
                    per_channel,
                    *momentum,
                );
            }
            let inv_std = scale * (var + *epsilon as f64).sqrt().recip();
            let shift = bias - mean * inv_std.clone();
            x.map(|t| t * inv_std + shift)
        }
        Op::Lrn {
            size,
            alpha,
            beta,
            bias,
        } => get(0).map4(|x| lrn(x, *size, *alpha, *beta, *bias)),
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => {
            let a = matrix(get(0));
            let b = matrix(get(1));
            let mut y = match (*trans_a, *trans_b) {
                // Fully connected layers (transB=1): computed as (W A^T)^T so that the weight
                // stays the contiguous operand; its gradient then comes out in its own layout
                // (measured on fc6: backward 0.25 s -> 0.10 s per step).
                (false, true) => b.matmul(a.transpose()).transpose(),
                (true, true) => b.matmul(a).transpose(),
                (true, false) => a.transpose().matmul(b),
                (false, false) => a.matmul(b),
            };
            if *alpha != 1.0 {
                y = y * *alpha as f64;
            }
            let y: Tensor<B, PADDED> = y.unsqueeze();
            let y = match node.input(2) {
                Some(_) if *beta != 0.0 => {
                    let c = get(2).t;
                    if *beta == 1.0 {
                        y + c
                    } else {
                        y + c * *beta as f64
                    }
                }
                _ => y,
            };
            Value::new(y, 2)
        }
        Op::MatMul => {
            let a = get(0);
            let b = get(1);
            let rank = a.rank.max(b.rank);
            if rank <= 2 {
                Value::new(matrix(a).matmul(matrix(b)).unsqueeze(), 2)
            } else {
                Value::new(a.t.matmul(b.t), rank)
            }
        }
        Op::Add => {
            let (a, b) = (get(0), get(1));
            let fused = (a.rank <= 4 && b.rank <= 4)
                .then(|| {
                    let (a4, b4) = (a.t4(), b.t4());
                    crate::host::add_per_channel(&a4, &b4)
                        .or_else(|| crate::host::add_per_channel(&b4, &a4))
                })
                .flatten();
            match fused {
                Some(sum) => Value::from4(sum, a.rank.max(b.rank)),
                None => binary(a, b, |a, b| a + b),
            }
        }
        Op::Sub => binary(get(0), get(1), |a, b| a - b),
        Op::Mul => binary(get(0), get(1), |a, b| a * b),
        Op::Div => binary(get(0), get(1), |a, b| a / b),
        Op::Relu => get(0).map(activation::relu),
        Op::LeakyRelu { alpha } => get(0).map(|t| activation::leaky_relu(t, *alpha as f64)),
        Op::Sigmoid => get(0).map(activation::sigmoid),
        Op::Tanh => get(0).map(activation::tanh),
        Op::Identity => get(0),
        Op::Dropout { ratio } => {
            let x = get(0);
            let ratio = node
                .input(1)
                .and_then(|r| plan.graph.constants.get(r))
                .and_then(|c| c.as_f32().and_then(|v| v.first().copied()))
                .unwrap_or(*ratio) as f64;
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
        Op::Softmax { axis, legacy } => {
            let x = get(0);
            let dims = x.dims();
            let a = normalize_axis(*axis, dims.len()).expect("validated");
            if *legacy && a + 1 < dims.len() {
                let outer: usize = dims[..a].iter().product();
                let inner: usize = dims[a..].iter().product();
                let flat: Tensor<B, 2> = x.t.reshape([outer, inner]);
                Value::reshaped(activation::softmax(flat, 1).unsqueeze(), &dims)
            } else {
                let axis = x.axis(a);
                x.map(|t| activation::softmax(t, axis))
            }
        }
        Op::Flatten { axis } => {
            let x = get(0);
            let dims = x.dims();
            let a = if *axis < 0 {
                *axis + dims.len() as i64
            } else {
                *axis
            } as usize;
            let out = [dims[..a].iter().product(), dims[a..].iter().product()];
            Value::reshaped(x.t, &out)
        }
        Op::Reshape { .. } => {
            let x = get(0);
            let batch = x.dims()[0];
            let target = match plan.graph.shapes.reshape_targets.get(&node.label) {
                Some(ReshapeTarget::KeepBatch(rest)) => {
                    std::iter::once(batch).chain(rest.iter().copied()).collect()
                }
                Some(ReshapeTarget::Fixed(d)) => d.clone(),
                None => unreachable!("reshape targets are resolved at import"),
            };
            Value::reshaped(x.t, &target)
        }
        Op::Concat { axis } => {
            let parts: Vec<Value<B>> = (0..node.inputs.len()).map(get).collect();
            let rank = parts[0].rank;
            let axis = normalize_axis(*axis, rank).expect("validated") + PADDED - rank;
            Value::new(
                crate::concat::concat(parts.into_iter().map(|v| v.t).collect(), axis),
                rank,
            )
        }
        Op::Unary(f) => get(0).map(|t| crate::exec_layout::unary(t, f)),
        Op::PRelu => {
            let (x, slope) = (get(0), get(1));
            binary(x, slope, |x, s| {
                x.clone().clamp_min(0.0) + x.clamp_max(0.0) * s
            })
        }
        Op::Variadic(kind) => {
            let parts: Vec<Value<B>> = (0..node.inputs.len()).map(get).collect();
            crate::exec_layout::variadic(parts, *kind)
        }
        Op::Reduce {
            kind,
            axes,
            keepdims,
            noop_with_empty_axes,
        } => crate::exec_layout::reduce(get(0), *kind, axes, *keepdims, *noop_with_empty_axes),
        Op::Transpose { perm } => crate::exec_layout::transpose(get(0), perm.as_deref()),
        Op::Squeeze { .. } | Op::Unsqueeze { .. } => {
            let dims = plan
                .graph
                .shapes
                .of(&node.outputs[0])
                .expect("shapes were inferred")
                .to_vec();
            let x = get(0);
            // The batch axis keeps its runtime size; the other dims are static.
            let mut out = dims;
            if plan.graph.shapes.batched.contains(&node.outputs[0]) {
                out[0] = x.dims()[0];
            }
            Value::reshaped(x.t, &out)
        }
        Op::Slice { axes } => crate::exec_layout::slice(get(0), axes.as_deref().unwrap_or(&[])),
        Op::Gather { axis } => {
            let indices = node
                .input(1)
                .and_then(|n| plan.graph.constants.get(n))
                .expect("validated");
            crate::exec_layout::gather(get(0), *axis, indices)
        }
        Op::Cast { .. } => get(0),
        Op::Pad { kind, pads } => {
            crate::exec_layout::pad(get(0), *kind, pads.as_deref().unwrap_or(&[]))
        }
        Op::Constant | Op::ConstantOfShape | Op::Shape { .. } | Op::Split { .. } => {
            unreachable!("folded at import, or run by run_node")
        }
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

pub(crate) fn binary<B: Backend>(
    a: Value<B>,
    b: Value<B>,
    f: impl FnOnce(Tensor<B, PADDED>, Tensor<B, PADDED>) -> Tensor<B, PADDED>,
) -> Value<B> {
    let rank = a.rank.max(b.rank);
    Value::new(f(a.t, b.t), rank)
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
