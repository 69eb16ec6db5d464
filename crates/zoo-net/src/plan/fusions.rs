//! The fusions the plan finds for the walker (`crate::exec::fuse`): a ReLU after a
//! convolution or batch norm, a bias Add after a MatMul by a weight or a convolution (then
//! the ReLU after that Add), and convolutions that may write straight into the channel
//! concatenation they feed.

use std::collections::{HashMap, HashSet};

use zoo_onnx::ops::{Activation, Array, Math, Nn};
use zoo_onnx::{Graph, Op};

use super::ParamSpec;

/// Where a convolution's channels go in a concatenation it feeds (see `Plan::concat_parts`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ConcatPart {
    /// The Concat node.
    pub(crate) concat: usize,
    pub(crate) first_channel: usize,
    /// Channels of the concatenation's output.
    pub(crate) channels: usize,
}

/// Per node: a MatMul by a `[k, c]` weight followed by an Add of a `[c]` (or `[1, .., c]`)
/// bias, or a convolution without bias followed by an Add of a `[c, 1, 1]` (or `[1, c, 1, 1]`)
/// one (the MNIST CNN's and CNTK's exports), both parameters, the Add the only reader of the
/// product (see `Plan::bias_follows`).
pub(super) fn bias_follows(
    graph: &Graph,
    params: &[ParamSpec],
    param_index: &HashMap<String, usize>,
) -> Vec<bool> {
    let nodes = &graph.nodes;
    let param = |name: &str| param_index.get(name).map(|&p| &params[p].dims);
    (0..nodes.len())
        .map(|i| {
            let (node, Some(next)) = (&nodes[i], nodes.get(i + 1)) else {
                return false;
            };
            let [out] = node.outputs.as_slice() else {
                return false;
            };
            if !matches!(next.op, Op::Math(Math::Add)) || next.inputs.len() != 2 {
                return false;
            }
            let bias = match next.inputs.iter().position(|v| v == out) {
                Some(at) => param(&next.inputs[1 - at]),
                None => None,
            };
            let Some(bias) = bias else {
                return false;
            };
            let fits = match (&node.op, node.input(1).and_then(param)) {
                (Op::Nn(Nn::MatMul), Some(w)) if w.len() == 2 => {
                    bias.last() == Some(&w[1]) && bias.iter().rev().skip(1).all(|&d| d == 1)
                }
                (Op::Nn(Nn::Conv(_)), Some(w)) if w.len() == 4 && node.inputs.len() == 2 => {
                    per_channel_of_nchw(bias, w[0])
                }
                _ => false,
            };
            fits && *out != graph.output.name && graph.consumers(out).count() == 1
        })
        .collect()
}

/// Whether a value of `dims` added to an NCHW map adds one value per channel of `channels`:
/// `[c, 1, 1]` or `[1, c, 1, 1]` (a `[c]` would broadcast along the width).
fn per_channel_of_nchw(dims: &[usize], channels: usize) -> bool {
    match dims {
        [c, 1, 1] | [1, c, 1, 1] => *c == channels,
        _ => false,
    }
}

pub(super) fn relu_follows(graph: &Graph) -> Vec<bool> {
    let nodes = &graph.nodes;
    (0..nodes.len())
        .map(|i| {
            let [out] = nodes[i].outputs.as_slice() else {
                return false;
            };
            let next_is_relu = nodes.get(i + 1).is_some_and(|next| {
                matches!(next.op, Op::Activation(Activation::Relu))
                    && next.input(0) == Some(out.as_str())
            });
            next_is_relu && *out != graph.output.name && graph.consumers(out).count() == 1
        })
        .collect()
}

/// The first channel of each input of Concat node `concat` in its output, and the output's
/// channel count last, when it joins rank-4 values along channels (shapes as inferred).
pub(crate) fn channel_offsets(graph: &Graph, concat: usize) -> Option<Vec<usize>> {
    let node = &graph.nodes[concat];
    let Op::Array(Array::Concat { axis }) = node.op else {
        return None;
    };
    let dims: Vec<&[usize]> = node
        .inputs
        .iter()
        .map(|v| graph.shapes.of(v))
        .collect::<Option<_>>()?;
    let along_channels = dims.iter().all(|d| d.len() == 4 && d[2..] == dims[0][2..])
        && zoo_onnx::shapes::normalize_axis(axis, 4) == Some(1);
    along_channels.then(|| {
        std::iter::once(0)
            .chain(dims.iter().scan(0, |total, d| {
                *total += d[1];
                Some(*total)
            }))
            .collect()
    })
}

/// The convolutions whose output, or the output of the ReLU fused into them, is an input of a
/// channel concatenation and read by nothing else (SqueezeNet's expand layers, Inception's
/// branches): each may write its channels straight into the concatenation's output.
pub(super) fn concat_parts(graph: &Graph, relu_follows: &[bool]) -> Vec<Option<ConcatPart>> {
    let mut parts = vec![None; graph.nodes.len()];
    let producer: HashMap<&str, usize> = graph
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.as_str(), i)))
        .collect();
    for (j, node) in graph.nodes.iter().enumerate() {
        let Some(offsets) = channel_offsets(graph, j) else {
            continue;
        };
        let distinct: HashSet<&String> = node.inputs.iter().collect();
        if distinct.len() != node.inputs.len() || node.outputs[0] == graph.output.name {
            continue;
        }
        for (t, value) in node.inputs.iter().enumerate() {
            let Some(&p) = producer.get(value.as_str()) else {
                continue;
            };
            let conv = match graph.nodes[p].op {
                Op::Nn(Nn::Conv(_)) if !relu_follows[p] => Some(p),
                Op::Activation(Activation::Relu) if p > 0 && relu_follows[p - 1] => Some(p - 1),
                _ => None,
            };
            let conv = conv.filter(|&k| matches!(graph.nodes[k].op, Op::Nn(Nn::Conv(_))));
            if let Some(k) = conv.filter(|_| graph.consumers(value).count() == 1) {
                parts[k] = Some(ConcatPart {
                    concat: j,
                    first_channel: offsets[t],
                    channels: offsets[node.inputs.len()],
                });
            }
        }
    }
    parts
}
