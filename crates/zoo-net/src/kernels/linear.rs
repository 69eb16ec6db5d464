//! Token-wise Linear layers as one op: `x @ W + b` over every row of `x` (an ONNX `MatMul` by a
//! weight matrix and the `Add` of its bias: a transformer's projections and MLP, ConvNeXt's
//! pointwise layers). One gemm over all `N * T` rows with the bias written first and
//! accumulated into, on flex and on `Autodiff<Flex>` with its own backward (two gemms and a
//! column sum). Composed of burn ops, the bias is a broadcast add walked one element at a time
//! through a strided iterator, forward and backward: the largest cost after the gemms in a
//! ViT training step (perf, ViT-tiny at 224).

use std::any::TypeId;

use ::gemm::Parallelism;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_flex::FlexTensor;

use crate::flex_autodiff::{cast, contiguous, flex, par_fill, values, Trained};
use crate::image_parallel::inside_image_task;
use crate::kernels::columns::column_sums;
use crate::kernels::matrix::{gemm_into, gemm_write, View};

/// `x @ w + bias` for `x` `[rows, k]`, `w` `[k, c]`, `bias` `[c]`, when the backend is flex or
/// `Autodiff<Flex>` and every value is f32; `None` sends the caller to burn's ops.
pub fn linear<B: Backend>(
    x: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
    bias: &Tensor<B, 1>,
) -> Option<Tensor<B, 2>> {
    let shape = Shape::of(x, w, bias)?;
    if TypeId::of::<B>() == TypeId::of::<Flex>() {
        return Some(on_flex(x, w, bias, None, shape));
    }
    if TypeId::of::<B>() != TypeId::of::<Trained>() {
        return None;
    }
    let x = cast::<B, Trained, 2>(x.clone()).into_primitive().tensor();
    let w = cast::<B, Trained, 2>(w.clone()).into_primitive().tensor();
    let b = cast::<B, Trained, 1>(bias.clone())
        .into_primitive()
        .tensor();
    let (xv, wv) = (
        contiguous(x.primitive.clone()),
        contiguous(w.primitive.clone()),
    );
    let bv = contiguous(b.primitive.clone());
    let y = flex(
        forward(values(&xv), values(&wv), values(&bv), None, shape),
        vec![shape.rows, shape.c],
    );
    let nodes = [x.node.clone(), w.node.clone(), b.node.clone()];
    let out = match LinearBackward
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((xv, wv, shape), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    let y = Tensor::<Trained, 2>::from_primitive(TensorPrimitive::Float(out));
    Some(cast::<Trained, B, 2>(y))
}

/// `x @ w + bias + residual` (`residual` `[rows, c]`, a transformer block's skip connection)
/// on flex, the sum written before the gemm accumulates into it, so the residual Add is no
/// pass of its own (25 of them were 3 % of a batch-1 ViT-tiny forward); `None` on other
/// backends (training keeps the Add), for other dtypes or shapes.
pub fn linear_residual<B: Backend>(
    x: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
    bias: &Tensor<B, 1>,
    residual: &Tensor<B, 2>,
) -> Option<Tensor<B, 2>> {
    let shape = Shape::of(x, w, bias)?;
    let fits = residual.dtype() == DType::F32 && residual.dims() == [shape.rows, shape.c];
    if TypeId::of::<B>() != TypeId::of::<Flex>() || !fits {
        return None;
    }
    Some(on_flex(x, w, bias, Some(residual), shape))
}

/// The inference forward of [`linear`] and [`linear_residual`] (`B` is `Flex`).
fn on_flex<B: Backend>(
    x: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
    bias: &Tensor<B, 1>,
    residual: Option<&Tensor<B, 2>>,
    shape: Shape,
) -> Tensor<B, 2> {
    let host =
        |t: &Tensor<B, 2>| contiguous(cast::<B, Flex, 2>(t.clone()).into_primitive().tensor());
    let (x, w, r) = (host(x), host(w), residual.map(host));
    let b = contiguous(cast::<B, Flex, 1>(bias.clone()).into_primitive().tensor());
    let y = forward(
        values(&x),
        values(&w),
        values(&b),
        r.as_ref().map(values),
        shape,
    );
    let dims = vec![shape.rows, shape.c];
    let y = Tensor::<Flex, 2>::from_primitive(TensorPrimitive::Float(flex(y, dims)));
    cast::<Flex, B, 2>(y)
}

#[derive(Clone, Copy, Debug)]
struct Shape {
    rows: usize,
    k: usize,
    c: usize,
}

impl Shape {
    /// The sizes of `x @ w + bias` when every value is f32 and the shapes fit.
    fn of<B: Backend>(x: &Tensor<B, 2>, w: &Tensor<B, 2>, bias: &Tensor<B, 1>) -> Option<Self> {
        let all_f32 = [x.dtype(), w.dtype(), bias.dtype()]
            .iter()
            .all(|&d| d == DType::F32);
        let ([rows, k], [k_w, c]) = (x.dims(), w.dims());
        (all_f32 && k == k_w && bias.dims() == [c]).then_some(Self { rows, k, c })
    }
}

/// gemm's own threads, unless this runs inside one image's task already spread over the cores.
fn parallelism() -> Parallelism {
    if inside_image_task() {
        Parallelism::None
    } else {
        Parallelism::Rayon(0)
    }
}

/// Rows per task when filling or summing rows.
const ROWS_PER_TASK: usize = 64;

/// `x @ w + bias (+ residual)`: the bias (plus the residual's row) written first, the product
/// accumulated onto it.
fn forward(x: &[f32], w: &[f32], bias: &[f32], residual: Option<&[f32]>, s: Shape) -> Vec<f32> {
    let Shape { rows, k, c } = s;
    let chunk = ROWS_PER_TASK * c;
    // SAFETY: every row of every chunk is written with the bias.
    let mut y = unsafe {
        par_fill(
            rows * c,
            chunk,
            || (),
            |task, _, dst| match residual {
                Some(r) => {
                    let r = &r[task * chunk..][..dst.len()];
                    for (row, r) in dst.chunks_mut(c).zip(r.chunks(c)) {
                        for ((d, &b), &r) in row.iter_mut().zip(bias).zip(r) {
                            d.write(b + r);
                        }
                    }
                }
                None => {
                    for row in dst.chunks_mut(c) {
                        for (d, &b) in row.iter_mut().zip(bias) {
                            d.write(b);
                        }
                    }
                }
            },
        )
    };
    gemm_into(
        &mut y,
        [rows, c, k],
        View::rows(x, k),
        View::rows(w, c),
        true,
        parallelism(),
    );
    y
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    /// The input rows, the weight, and the sizes.
    type State = (FlexTensor, FlexTensor, Shape);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, w_node, b_node] = ops.parents.map(|p| p.map(|node| node.id));
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let (x, w, s) = ops.state;
        let (dy, x, w) = (values(&grad), values(&x), values(&w));
        let Shape { rows, k, c } = s;
        if let Some(id) = x_node {
            // dx = dy @ w^T
            let mut dx = Vec::with_capacity(rows * k);
            let (lhs, rhs) = (View::rows(dy, c), View::transposed(w, c));
            gemm_write(
                dx.spare_capacity_mut(),
                [rows, k, c],
                lhs,
                rhs,
                k,
                parallelism(),
            );
            // SAFETY: gemm wrote all `rows x k` values.
            unsafe { dx.set_len(rows * k) };
            grads.register::<Flex>(id, flex(dx, vec![rows, k]));
        }
        if let Some(id) = w_node {
            // dw = x^T @ dy
            let mut dw = vec![0.0f32; k * c];
            let (lhs, rhs) = (View::transposed(x, k), View::rows(dy, c));
            gemm_into(&mut dw, [k, c, rows], lhs, rhs, false, parallelism());
            grads.register::<Flex>(id, flex(dw, vec![k, c]));
        }
        if let Some(id) = b_node {
            let db = column_sums(dy, dy, c, |g, _| g);
            grads.register::<Flex>(id, flex(db, vec![c]));
        }
    }
}
