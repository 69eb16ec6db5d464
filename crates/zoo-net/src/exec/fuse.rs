//! Fusions the walker applies where the plan found them (`Plan::relu_follows`, `bias_follows`,
//! `concat_parts`): a convolution or batch norm with the ReLU after it as one op, a MatMul by
//! a weight with its bias Add (and at inference the residual Add after it) as one
//! Linear op, a convolution with the bias Add (and ReLU) after it as one convolution, and
//! convolutions written straight into the channel concatenation they feed.

use std::collections::HashMap;

use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};
use zoo_onnx::ops::Nn;
use zoo_onnx::Op;

use super::Value;
use crate::concat::ChannelConcat;
use crate::conv::conv2d_into;
use crate::flex_autodiff::{cast, contiguous};
use crate::network::Network;
use crate::ops::nn::{batch_norm_train, batch_statistics, conv_inputs, conv_settings, fast_conv};
use crate::ops::Cx;

/// Runs convolution node `i` straight into the output of the concatenation it feeds
/// (`Plan::concat_parts`), with its ReLU when one follows: on flex at inference, when neither
/// its output nor the ReLU's is wanted or tapped (`looked_at`). `false` leaves it to run as usual.
pub(super) fn into_concat<B: Backend>(
    net: &Network<B>,
    i: usize,
    values: &HashMap<&str, Value<B>>,
    looked_at: [Option<&str>; 2],
    concats: &mut HashMap<usize, ChannelConcat>,
) -> bool {
    let (plan, node) = (&net.plan, &net.plan.graph.nodes[i]);
    let (Some(part), Op::Nn(Nn::Conv(spec))) = (plan.concat_parts[i], &node.op) else {
        return false;
    };
    let relu = plan.relu_follows[i];
    let looked_at = |o: &String| looked_at.contains(&Some(o.as_str()));
    let relu_output = relu.then(|| &plan.graph.nodes[i + 1].outputs[0]);
    if looked_at(&node.outputs[0]) || relu_output.is_some_and(looked_at) {
        return false;
    }
    let cx = Cx::for_conv(net, node, values);
    let c = conv_inputs(&cx, spec);
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
pub(super) fn finish_concat<B: Backend>(
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

/// Node `i` and the node or two after it as one op, where the plan found them (a ReLU after a
/// convolution or batch norm, `Plan::relu_follows`; a bias Add after a MatMul by a weight or a
/// convolution, `Plan::bias_follows`, the ReLU after a convolution's Add, the residual Add
/// after a MatMul's at inference, `Plan::residual_follows`) and no output but
/// the last one's is wanted or tapped. The value to store as node `i`'s output, already
/// through the nodes fused (which then pass it on), and how many nodes that is; `None` leaves
/// the nodes to run on their own.
pub(super) fn with_next<B: Backend>(
    net: &Network<B>,
    i: usize,
    values: &HashMap<&str, Value<B>>,
    want: &str,
    tapped: Option<&str>,
) -> Option<(Value<B>, usize)> {
    let plan = &net.plan;
    let looked_at = |k: usize| {
        let out = plan.graph.nodes[k].outputs[0].as_str();
        want == out || tapped == Some(out)
    };
    if looked_at(i) {
        None
    } else if plan.relu_follows[i] {
        Some((with_relu(net, i, values)?, 2))
    } else if !plan.bias_follows[i] {
        None
    } else if matches!(plan.graph.nodes[i].op, Op::Nn(Nn::Conv(_))) {
        // The ReLU after the bias Add joins too, unless the Add's output is looked at.
        let relu = plan.relu_follows[i + 1] && !looked_at(i + 1);
        let y = conv_with_bias(net, i, values, relu)?;
        Some((y, if relu { 3 } else { 2 }))
    } else {
        let product = linear_operands(net, i, values)?;
        if plan.residual_follows[i + 1] && !looked_at(i + 1) {
            // The residual Add after the bias joins too, where the backend serves it
            // (inference).
            let residual = residual_of(net, i, values);
            if let Some(y) = residual.and_then(|r| product.plus_residual(r)) {
                return Some((y, 3));
            }
        }
        Some((product.linear()?, 2))
    }
}

/// Convolution `i` (without bias of its own) on flex with the bias the Add after it adds, one
/// value per channel, then the ReLU if `relu`.
fn conv_with_bias<B: Backend>(
    net: &Network<B>,
    i: usize,
    values: &HashMap<&str, Value<B>>,
    relu: bool,
) -> Option<Value<B>> {
    let (plan, node) = (&net.plan, &net.plan.graph.nodes[i]);
    let Op::Nn(Nn::Conv(ref spec)) = node.op else {
        return None;
    };
    let out = node.outputs[0].as_str();
    let bias_name = plan.graph.nodes[i + 1].inputs.iter().find(|v| *v != out)?;
    let p = *plan.param_index.get(bias_name.as_str())?;
    let cx = Cx::for_conv(net, node, values);
    let mut inputs = conv_inputs(&cx, spec);
    inputs.bias = Some(net.params[p].val().reshape([plan.params[p].numel()]));
    fast_conv(spec, &inputs, relu)
}

/// A convolution on flex (ReLU in the bias pass, and in its own backward), or a batch norm
/// with batch statistics, with the ReLU after it.
fn with_relu<B: Backend>(
    net: &Network<B>,
    i: usize,
    values: &HashMap<&str, Value<B>>,
) -> Option<Value<B>> {
    let node = &net.plan.graph.nodes[i];
    match node.op {
        Op::Nn(Nn::Conv(ref spec)) => {
            let cx = Cx::for_conv(net, node, values);
            fast_conv(spec, &conv_inputs(&cx, spec), true)
        }
        Op::Nn(Nn::BatchNorm { epsilon, momentum }) => {
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

/// The value the residual Add after MatMul node `i`'s bias Add adds (`Plan::residual_follows`).
fn residual_of<'v, B: Backend>(
    net: &Network<B>,
    i: usize,
    values: &'v HashMap<&str, Value<B>>,
) -> Option<&'v Value<B>> {
    let graph = &net.plan.graph;
    let bias_out = graph.nodes[i + 1].outputs[0].as_str();
    let name = graph.nodes[i + 2].inputs.iter().find(|v| *v != bias_out)?;
    values.get(name.as_str())
}

/// The operands of MatMul node `i` by a weight and its bias Add, as rows.
struct LinearOperands<B: Backend> {
    /// The input as `[rows, k]`.
    x: Tensor<B, 2>,
    /// `[k, c]`.
    w: Tensor<B, 2>,
    bias: Tensor<B, 1>,
    /// The input's dims.
    dims: Vec<usize>,
}

impl<B: Backend> LinearOperands<B> {
    /// The output's dims: the input's with `c` last.
    fn dims_out(&self) -> Vec<usize> {
        let mut dims = self.dims.clone();
        *dims.last_mut().expect("checked non-empty") = self.w.dims()[1];
        dims
    }

    /// `y` (`[rows, c]`) in the output's dims.
    fn output(&self, y: Tensor<B, 2>) -> Value<B> {
        Value::reshaped(y.unsqueeze(), &self.dims_out())
    }

    /// The MatMul and its bias Add as one Linear op over all rows (`crate::kernels::linear`).
    fn linear(&self) -> Option<Value<B>> {
        let y = crate::kernels::linear::linear(&self.x, &self.w, &self.bias)?;
        Some(self.output(y))
    }

    /// [`linear`](Self::linear) plus `residual` (of the output's dims), on flex.
    fn plus_residual(&self, residual: &Value<B>) -> Option<Value<B>> {
        if residual.dims() != self.dims_out() {
            return None;
        }
        let rows = residual
            .t
            .clone()
            .reshape([self.x.dims()[0], self.w.dims()[1]]);
        let y = crate::kernels::linear::linear_residual(&self.x, &self.w, &self.bias, &rows)?;
        Some(self.output(y))
    }
}

fn linear_operands<B: Backend>(
    net: &Network<B>,
    i: usize,
    values: &HashMap<&str, Value<B>>,
) -> Option<LinearOperands<B>> {
    let (plan, node) = (&net.plan, &net.plan.graph.nodes[i]);
    let out = node.outputs[0].as_str();
    let x = values.get(node.input(0)?)?;
    let add = &plan.graph.nodes[i + 1];
    let bias_name = add.inputs.iter().find(|v| v.as_str() != out)?;
    let param = |name: &str| {
        let p = *plan.param_index.get(name)?;
        Some((net.params[p].val(), &plan.params[p].dims))
    };
    let (w, w_dims) = param(node.input(1)?)?;
    let (bias, _) = param(bias_name)?;
    let dims = x.dims();
    let (k, c) = (w_dims[0], w_dims[1]);
    if dims.last() != Some(&k) {
        return None;
    }
    let rows = dims.iter().product::<usize>() / k.max(1);
    Some(LinearOperands {
        x: x.t.clone().reshape([rows, k]),
        w: w.reshape([k, c]),
        bias: bias.reshape([c]),
        dims,
    })
}
