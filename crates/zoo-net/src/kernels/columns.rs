//! One value per column of a row-major `[rows, c]` tensor, added or multiplied in (a bias, or
//! a layer scale such as ConvNeXt's and CaiT's `gamma`), on all cores: on flex, and on
//! `Autodiff<Flex>` with its own backward (the input's gradient in one pass, the vector's as a
//! column sum). flex broadcasts the vector through a strided iterator one element at a time,
//! forward and backward.

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
    if x.dtype() != DType::F32 || v.dtype() != DType::F32 || v.dims() != [c] || c == 0 {
        return None;
    }
    if TypeId::of::<B>() == TypeId::of::<Flex>() {
        let xv = contiguous(cast::<B, Flex, 2>(x.clone()).into_primitive().tensor());
        let vv = contiguous(cast::<B, Flex, 1>(v.clone()).into_primitive().tensor());
        let y = flex(apply(values(&xv), values(&vv), op), vec![rows, c]);
        let y = Tensor::<Flex, 2>::from_primitive(TensorPrimitive::Float(y));
        return Some(cast::<Flex, B, 2>(y));
    }
    if TypeId::of::<B>() != TypeId::of::<Trained>() {
        return None;
    }
    let xt = cast::<B, Trained, 2>(x.clone()).into_primitive().tensor();
    let vt = cast::<B, Trained, 1>(v.clone()).into_primitive().tensor();
    let (xv, vv) = (
        contiguous(xt.primitive.clone()),
        contiguous(vt.primitive.clone()),
    );
    let y = flex(apply(values(&xv), values(&vv), op), vec![rows, c]);
    let out = match PerColumnBackward
        .prepare::<NoCheckpointing>([xt.node.clone(), vt.node.clone()])
        .compute_bound()
        .stateful()
    {
        // The input is kept only where the vector's gradient needs it (a scale).
        OpsKind::Tracked(prep) => prep.finish((xv, vv, op), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    let y = Tensor::<Trained, 2>::from_primitive(TensorPrimitive::Float(out));
    Some(cast::<Trained, B, 2>(y))
}

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

fn apply(x: &[f32], v: &[f32], op: ColumnOp) -> Vec<f32> {
    match op {
        ColumnOp::Add => map_rows(x, v, |a, b| a + b),
        ColumnOp::Mul => map_rows(x, v, |a, b| a * b),
    }
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
struct PerColumnBackward;

impl Backward<Flex, 2> for PerColumnBackward {
    /// The input, the vector, and the op.
    type State = (FlexTensor, FlexTensor, ColumnOp);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, v_node] = ops.parents.map(|p| p.map(|node| node.id));
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let (x, v, op) = ops.state;
        let (g, x, v) = (values(&grad), values(&x), values(&v));
        let c = v.len();
        if let Some(id) = v_node {
            let dv = match op {
                ColumnOp::Add => column_sums(g, g, c, |g, _| g),
                ColumnOp::Mul => column_sums(g, x, c, |g, x| g * x),
            };
            grads.register::<Flex>(id, flex(dv, vec![c]));
        }
        if let Some(id) = x_node {
            let dx = match op {
                ColumnOp::Add => g.to_vec(),
                ColumnOp::Mul => map_rows(g, v, |g, s| g * s),
            };
            grads.register::<Flex>(id, flex(dx, vec![g.len() / c, c]));
        }
    }
}
