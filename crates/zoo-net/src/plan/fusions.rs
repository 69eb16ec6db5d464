//! The fusions the plan finds for the walker (`crate::exec::fuse`): a ReLU after a
//! convolution or batch norm, a bias Add after a MatMul by a weight or a convolution (then
//! the ReLU after that Add, or the residual Add after a MatMul's), and convolutions that may
//! write straight into the channel concatenation they feed.

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
            fits && read_by_one_node(graph, out)
        })
        .collect()
}

/// Per node: an Add after a MatMul's fused bias Add (`bias_follows` of the MatMul) whose
/// output only the next node reads, an Add of it and another value of the same dims (a
/// transformer block's residual connection), so the three may run as one op.
pub(super) fn residual_follows(graph: &Graph, bias_follows: &[bool]) -> Vec<bool> {
    let nodes = &graph.nodes;
    (0..nodes.len())
        .map(|i| {
            let after_product =
                i > 0 && bias_follows[i - 1] && matches!(nodes[i - 1].op, Op::Nn(Nn::MatMul));
            let (Some(next), [out]) = (nodes.get(i + 1), nodes[i].outputs.as_slice()) else {
                return false;
            };
            let [a, b] = next.inputs.as_slice() else {
                return false;
            };
            let other = match (a == out, b == out) {
                (true, false) => b,
                (false, true) => a,
                _ => return false,
            };
            let same_dims = graph
                .shapes
                .of(out)
                .is_some_and(|d| graph.shapes.of(other) == Some(d));
            after_product
                && matches!(next.op, Op::Math(Math::Add))
                && same_dims
                && read_by_one_node(graph, out)
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
            next_is_relu && read_by_one_node(graph, out)
        })
        .collect()
}

/// Whether value `out` is read by exactly one node and is not the graph's output, so a fusion
/// may leave it unwritten.
fn read_by_one_node(graph: &Graph, out: &str) -> bool {
    out != graph.output.name && graph.consumers(out).count() == 1
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

#[cfg(test)]
mod tests {
    use prost::Message;
    use zoo_onnx::builder::{GraphBuilder, SeededRng};
    use zoo_onnx::OnnxModel;

    use super::*;

    /// `x @ W + bias` then `+ other` (`other` named by `residual`), or nothing after.
    fn graph(residual: Option<&str>, also_read: bool) -> Graph {
        let mut rng = SeededRng::new(1);
        let mut b = GraphBuilder::new("x", &[Some(1), Some(3), Some(4), Some(5)]);
        b.init_f32("W", &[5, 5], rng.values(25, 0.5));
        b.init_f32("bias", &[5], rng.values(5, 0.5));
        b.init_f32("row", &[1, 5], rng.values(5, 0.5));
        b.node("mm", "MatMul", &["x", "W"], &["m"], vec![]);
        b.node("add", "Add", &["m", "bias"], &["l"], vec![]);
        let last = match residual {
            Some(other) => {
                b.node("res", "Add", &["l", other], &["r"], vec![]);
                if also_read {
                    b.node("again", "Mul", &["r", "l"], &["y"], vec![]);
                    "y"
                } else {
                    "r"
                }
            }
            None => "l",
        };
        b.output(last, &[None, None, None, None]);
        let bytes = b.build(13).encode_to_vec();
        OnnxModel::from_bytes(bytes).unwrap().graph
    }

    #[test]
    fn a_residual_add_of_the_same_dims_follows_a_linear_bias() {
        let after_linear = [true, false, false, false];
        let residual = |g: &Graph| residual_follows(g, &after_linear[..g.nodes.len()]);
        assert_eq!(residual(&graph(Some("x"), false)), [false, true, false]);
        // The bias Add's output read again, a broadcast row, or the Add the graph's output.
        assert_eq!(residual(&graph(Some("x"), true)), [false; 4]);
        assert_eq!(residual(&graph(Some("row"), false)), [false; 3]);
        assert_eq!(residual(&graph(None, false)), [false; 2]);
    }
}
