//! Execution of each op, one module per family (mirroring `zoo_onnx::ops`). Each op runs its
//! fast path first where one exists (zoo's own flex kernels, `crate::kernels`, returning
//! `None` where they do not serve the backend), then the generic burn form.

mod activation;
mod array;
mod attention;
mod einsum;
mod logic;
mod math;
pub(crate) mod nn;
mod norm;
mod repeat;
mod resize;

use std::collections::HashMap;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use zoo_onnx::{Constant, Node, Op};

use crate::exec::{input, Value, PADDED};
use crate::network::Network;

/// What an op sees of the run: the network (parameters, plan, graph) and its node's inputs.
pub(crate) struct Cx<'a, B: Backend> {
    pub(crate) net: &'a Network<B>,
    pub(crate) node: &'a Node,
    pub(crate) values: &'a HashMap<&'a str, Value<B>>,
    /// The run-time batch size (for targets whose axis 0 is the batch).
    pub(crate) batch: usize,
}

impl<'a, B: Backend> Cx<'a, B> {
    /// A convolution's context in the fused paths (its input 0 carries the batch).
    pub(crate) fn for_conv(
        net: &'a Network<B>,
        node: &'a Node,
        values: &'a HashMap<&'a str, Value<B>>,
    ) -> Self {
        let batch = node
            .input(0)
            .and_then(|x| values.get(x))
            .map_or(1, |v| v.dims()[0]);
        Self {
            net,
            node,
            values,
            batch,
        }
    }

    /// Input `i`: a computed value, or a parameter or constant of the graph.
    pub(crate) fn get(&self, i: usize) -> Value<B> {
        input(self.net, self.node, self.values, i)
    }

    /// All inputs in order.
    pub(crate) fn all(&self) -> Vec<Value<B>> {
        (0..self.node.inputs.len()).map(|i| self.get(i)).collect()
    }

    /// Input `i` as a vector: the parameter itself when it is one (so it trains).
    pub(crate) fn param_1d(&self, i: usize) -> Option<Tensor<B, 1>> {
        let name = self.node.input(i)?;
        match self.net.plan.param_index.get(name) {
            Some(&p) => Some(self.net.params[p].val()),
            None => Some(self.get(i).t.flatten(0, PADDED - 1)),
        }
    }

    /// Whether input `i` is a parameter that trains in this (autodiff) run.
    pub(crate) fn trains_input(&self, i: usize) -> bool {
        let net = self.net;
        self.node
            .input(i)
            .and_then(|v| net.plan.param_index.get(v))
            .is_some_and(|&p| net.trainable[p] && B::ad_enabled(&net.params[p].val().device()))
    }

    /// Input `i` as a plain constant of the graph (indices, settings).
    pub(crate) fn constant(&self, i: usize) -> Option<&Constant> {
        self.node
            .input(i)
            .and_then(|n| self.net.plan.graph.constants.get(n))
    }
}

/// Runs one node; its outputs in order (one value for every op but Split).
pub(crate) fn run<B: Backend>(cx: &Cx<B>) -> Vec<Value<B>> {
    match &cx.node.op {
        Op::Nn(op) => vec![nn::run(op, cx)],
        Op::Math(op) => vec![math::run(op, cx)],
        Op::Activation(op) => vec![activation::run(op, cx)],
        Op::Array(op) => array::run(op, cx),
        Op::Logic(op) => vec![logic::run(op, cx)],
        Op::Norm(op) => vec![norm::run(op, cx)],
        Op::Repeat(op) => vec![repeat::run(op, cx)],
        Op::Einsum(op) => vec![einsum::run(op, cx)],
        Op::Resize(op) => vec![resize::run(op, cx)],
        Op::Attention(op) => vec![attention::run(op, cx)],
    }
}

/// The dims two padded tensors broadcast to.
pub(crate) fn broadcast_shape<B: Backend>(
    a: &Tensor<B, PADDED>,
    b: &Tensor<B, PADDED>,
) -> [usize; PADDED] {
    let (x, y) = (a.dims(), b.dims());
    std::array::from_fn(|i| x[i].max(y[i]))
}

/// An element-wise op of two broadcast values.
pub(crate) fn binary<B: Backend>(
    a: Value<B>,
    b: Value<B>,
    f: impl FnOnce(Tensor<B, PADDED>, Tensor<B, PADDED>) -> Tensor<B, PADDED>,
) -> Value<B> {
    let rank = a.rank.max(b.rank);
    Value::new(f(a.t, b.t), rank)
}
