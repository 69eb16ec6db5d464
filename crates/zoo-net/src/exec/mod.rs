//! Runs the graph. Every tensor is held as a rank-6 burn tensor plus its logical rank (leading
//! 1s pad lower ranks), which keeps numpy broadcasting exact and lets one code path serve all
//! ops. Shapes were validated at import, so nothing here can meet an inconsistent graph.

mod busy;
mod fuse;
pub(crate) mod image_parallel;

use std::any::TypeId;
use std::collections::HashMap;

use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use zoo_onnx::Node;

use crate::concat::ChannelConcat;
use crate::network::Network;
use crate::ops::Cx;
use fuse::{finish_concat, into_concat, with_next};

/// Rank every value is padded to.
pub(crate) const PADDED: usize = zoo_onnx::shapes::MAX_RANK;

/// A value flowing through the graph: the tensor padded to rank 6, and its ONNX rank.
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
        let [_, _, a, b, c, d] = self.t.dims();
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

    pub(crate) fn map(self, f: impl FnOnce(Tensor<B, PADDED>) -> Tensor<B, PADDED>) -> Self {
        Self::new(f(self.t), self.rank)
    }

    /// Applies a rank-4 op to an NCHW value.
    pub(crate) fn map4(self, f: impl FnOnce(Tensor<B, 4>) -> Tensor<B, 4>) -> Self {
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
    tap: Option<Tap<'_, B>>,
) -> Value<B> {
    let on_cpu = TypeId::of::<B>() == TypeId::of::<Flex>();
    if on_cpu && tap.is_none() && rayon::current_thread_index().is_none() {
        // An inference pass on the CPU runs whole on one of rayon's workers: each op's parallel
        // loop then starts there, where from this thread it was handed to the pool and waited
        // for (two thread switches per op: on one thread a batch-1 ViT-tiny forward took 41 ms
        // that way, 21 ms on a worker), and the other workers stay awake until it ends.
        return busy::with_workers_awake(|| walk(net, seed, start, want, None));
    }
    walk(net, seed, start, want, tap)
}

fn walk<B: Backend>(
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
    // The seed (the input, or a cut activation) carries the batch on axis 0.
    let batch = seed_value.dims()[0];
    values.insert(seed_name, seed_value);
    if let Some(v) = values.get(want) {
        return v.clone();
    }
    // Nodes up to this one (exclusive) were fused into an earlier node: each passes on the
    // output of the node before it, already their result.
    let mut fused_until = 0;
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
        } else if i < fused_until {
            vec![values[graph.nodes[i - 1].outputs[0].as_str()].clone()]
        } else if let Some((y, fused)) = with_next(net, i, &values, want, tapped) {
            fused_until = i + fused;
            vec![y]
        } else {
            crate::ops::run(&Cx {
                net,
                node,
                values: &values,
                batch,
            })
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

/// `[batch, features]` view of a value.
pub(crate) fn as_matrix<B: Backend>(v: Value<B>) -> Tensor<B, 2> {
    let dims = v.dims();
    let batch = dims[0];
    let rest: usize = dims[1..].iter().product();
    v.t.reshape([batch, rest])
}

/// Input `i` of `node`: a computed value, or a parameter or constant of the graph.
pub(crate) fn input<B: Backend>(
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
