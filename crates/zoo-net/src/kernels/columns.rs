//! One value per channel of a row-major `[outer, c, inner]` tensor, added or multiplied in (a
//! bias, or a layer scale such as ConvNeXt's and CaiT's `gamma`: per column of `[rows, c]`
//! token rows, `inner = 1`, or per plane of NCHW maps), on all cores: on flex, and on
//! `Autodiff<Flex>` with its own backward (the input's gradient in one pass, the vector's as a
//! sum per channel). flex broadcasts the vector through a strided iterator one element at a
//! time, forward and backward.

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

use crate::flex_autodiff::{cast, contiguous, flex, par_fill, values, Trained};
use crate::kernels::fast_math::lanes_sum_pairs;

/// How the column's value combines with each of its elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnOp {
    Add,
    Mul,
}

/// Rows per task.
const ROWS_PER_TASK: usize = 64;

/// `x (+ or *) v[column]` for `x` `[rows, c]` and `v` `[c]`, on flex and `Autodiff<Flex>` with
/// f32 values; `None` elsewhere.
pub fn per_column<B: Backend>(
    x: &Tensor<B, 2>,
    v: &Tensor<B, 1>,
    op: ColumnOp,
) -> Option<Tensor<B, 2>> {
    let [rows, c] = x.dims();
    let y = per_channel(&x.clone().reshape([rows, c, 1]), v, op)?;
    Some(y.reshape([rows, c]))
}

/// `x (+ or *) v[channel]` for `x` `[outer, c, inner]` and `v` `[c]`, on flex and
/// `Autodiff<Flex>` with f32 values; `None` elsewhere.
pub fn per_channel<B: Backend>(
    x: &Tensor<B, 3>,
    v: &Tensor<B, 1>,
    op: ColumnOp,
) -> Option<Tensor<B, 3>> {
    let [outer, c, inner] = x.dims();
    if x.dtype() != DType::F32 || v.dtype() != DType::F32 || v.dims() != [c] || c * inner == 0 {
        return None;
    }
    let dims = vec![outer, c, inner];
    if TypeId::of::<B>() == TypeId::of::<Flex>() {
        let xv = contiguous(cast::<B, Flex, 3>(x.clone()).into_primitive().tensor());
        let vv = contiguous(cast::<B, Flex, 1>(v.clone()).into_primitive().tensor());
        let y = flex(apply(values(&xv), values(&vv), inner, op), dims);
        let y = Tensor::<Flex, 3>::from_primitive(TensorPrimitive::Float(y));
        return Some(cast::<Flex, B, 3>(y));
    }
    if TypeId::of::<B>() != TypeId::of::<Trained>() {
        return None;
    }
    let xt = cast::<B, Trained, 3>(x.clone()).into_primitive().tensor();
    let vt = cast::<B, Trained, 1>(v.clone()).into_primitive().tensor();
    let (xv, vv) = (
        contiguous(xt.primitive.clone()),
        contiguous(vt.primitive.clone()),
    );
    let y = flex(apply(values(&xv), values(&vv), inner, op), dims);
    let out = match PerChannelBackward
        .prepare::<NoCheckpointing>([xt.node.clone(), vt.node.clone()])
        .compute_bound()
        .stateful()
    {
        // The input is kept only where the vector's gradient needs it (a scale).
        OpsKind::Tracked(prep) => prep.finish((xv, vv, inner, op), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    let y = Tensor::<Trained, 3>::from_primitive(TensorPrimitive::Float(out));
    Some(cast::<Trained, B, 3>(y))
}

/// `f(x, v[channel])` over every plane of `inner` values, on all cores.
fn map_planes(x: &[f32], v: &[f32], inner: usize, f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let c = v.len();
    let per_task = (VALUES_PER_TASK / inner).max(1);
    // SAFETY: every value of every chunk is written.
    unsafe {
        par_fill(
            x.len(),
            per_task * inner,
            || (),
            |i, _, dst| {
                let first = i * per_task;
                let x = &x[first * inner..];
                for (p, (out, plane)) in dst.chunks_mut(inner).zip(x.chunks(inner)).enumerate() {
                    let b = v[(first + p) % c];
                    for (o, &a) in out.iter_mut().zip(plane) {
                        o.write(f(a, b));
                    }
                }
            },
        )
    }
}

/// Values per task when planes are mapped or summed.
const VALUES_PER_TASK: usize = 1 << 14;

/// `f(x, v[column])` over every row, on all cores.
fn map_rows(x: &[f32], v: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let c = v.len();
    // SAFETY: every value of every chunk is written.
    unsafe {
        par_fill(
            x.len(),
            ROWS_PER_TASK * c,
            || (),
            |i, _, dst| {
                let x = &x[i * ROWS_PER_TASK * c..];
                for (out, row) in dst.chunks_mut(c).zip(x.chunks(c)) {
                    for ((o, &a), &b) in out.iter_mut().zip(row).zip(v) {
                        o.write(f(a, b));
                    }
                }
            },
        )
    }
}

fn apply(x: &[f32], v: &[f32], inner: usize, op: ColumnOp) -> Vec<f32> {
    let f = |a: f32, b: f32| match op {
        ColumnOp::Add => a + b,
        ColumnOp::Mul => a * b,
    };
    match inner {
        1 => map_rows(x, v, f),
        _ => map_planes(x, v, inner, f),
    }
}

/// `sum of f(a, b)` over each channel's values: [`column_sums`] for rows; for planes, each
/// plane's sum on all cores, then the planes' sums added in order (the same bits whatever the
/// threads did).
fn channel_sums(
    a: &[f32],
    b: &[f32],
    c: usize,
    inner: usize,
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Vec<f32> {
    if inner == 1 {
        return column_sums(a, b, c, f);
    }
    let planes: Vec<f32> = a
        .par_chunks(inner)
        .zip(b.par_chunks(inner))
        .map(|(a, b)| lanes_sum_pairs(a, b, &f))
        .collect();
    let mut sums = vec![0.0f32; c];
    for (p, s) in planes.iter().enumerate() {
        sums[p % c] += s;
    }
    sums
}

/// `sum over rows of f(a[r, c], b[r, c])` per column: blocks of rows summed on all cores, then
/// the blocks' sums added in order (the same bits whatever the threads did).
pub(crate) fn column_sums(
    a: &[f32],
    b: &[f32],
    c: usize,
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Vec<f32> {
    let blocks: Vec<Vec<f32>> = a
        .par_chunks(ROWS_PER_TASK * c)
        .zip(b.par_chunks(ROWS_PER_TASK * c))
        .map(|(a, b)| {
            let mut sums = vec![0.0f32; c];
            for (ra, rb) in a.chunks(c).zip(b.chunks(c)) {
                for ((s, &x), &y) in sums.iter_mut().zip(ra).zip(rb) {
                    *s += f(x, y);
                }
            }
            sums
        })
        .collect();
    let mut sums = vec![0.0f32; c];
    for block in &blocks {
        sums.iter_mut().zip(block).for_each(|(s, t)| *s += t);
    }
    sums
}

#[derive(Debug)]
struct PerChannelBackward;

impl Backward<Flex, 2> for PerChannelBackward {
    /// The input, the vector, the values per plane, and the op.
    type State = (FlexTensor, FlexTensor, usize, ColumnOp);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, v_node] = ops.parents.map(|p| p.map(|node| node.id));
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let (x, v, inner, op) = ops.state;
        let (g, x, v) = (values(&grad), values(&x), values(&v));
        let c = v.len();
        if let Some(id) = v_node {
            let dv = match op {
                ColumnOp::Add => channel_sums(g, g, c, inner, |g, _| g),
                ColumnOp::Mul => channel_sums(g, x, c, inner, |g, x| g * x),
            };
            grads.register::<Flex>(id, flex(dv, vec![c]));
        }
        if let Some(id) = x_node {
            let dx = match op {
                ColumnOp::Add => g.to_vec(),
                ColumnOp::Mul => apply(g, v, inner, ColumnOp::Mul),
            };
            grads.register::<Flex>(id, flex(dx, vec![g.len() / (c * inner), c, inner]));
        }
    }
}
