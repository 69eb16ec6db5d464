//! Scaled dot-product attention, `softmax(Q K^T * scale) V` per (image, head), as one op on
//! flex and on `Autodiff<Flex>` with its own backward. Each (image, head) is one task on one
//! core: two gemms around a softmax of its `[T, S]` scores, which never leave that task at
//! inference (one scratch block per task) and are kept only when training needs them for
//! the backward. burn's composition ran a strided batched matmul, a scale pass, a softmax of
//! several passes and another matmul, each over the whole batch, each kept for its backward.

use std::any::TypeId;
use std::mem::MaybeUninit;

use ::gemm::Parallelism;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::flex_autodiff::{assume_written, cast, contiguous, flex, uninit, values, Trained};
use crate::image_parallel::inside_image_task;
use crate::kernels::fast_math::{exp_nonpositive, lanes_max, lanes_sum, lanes_sum_pairs};
use crate::kernels::matrix::{gemm_into, gemm_write, View};

/// Sizes of one attention: `b` images of `h` heads, `t` queries, `s` keys, `d` the query/key
/// size, `dv` the value size.
#[derive(Clone, Copy, Debug)]
struct Dims {
    b: usize,
    h: usize,
    t: usize,
    s: usize,
    d: usize,
    dv: usize,
    scale: f32,
}

/// `softmax(q k^T * scale) v` for `q` `[B, H, T, D]`, `k` `[B, H, S, D]`, `v` `[B, H, S, Dv]`
/// (f32, flex or `Autodiff<Flex>`); `None` sends the caller to burn's ops.
pub fn attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    scale: f32,
) -> Option<Tensor<B, 4>> {
    let all_f32 = [q.dtype(), k.dtype(), v.dtype()]
        .iter()
        .all(|&d| d == DType::F32);
    let ([b, h, t, d], [kb, kh, s, kd], [vb, vh, vs, dv]) = (q.dims(), k.dims(), v.dims());
    let same_pairs = [kb, vb] == [b, b] && [kh, vh] == [h, h];
    let empty = [t, s, d, dv].contains(&0);
    if !all_f32 || !same_pairs || kd != d || vs != s || empty || !scale.is_finite() {
        return None;
    }
    let dims = Dims {
        b,
        h,
        t,
        s,
        d,
        dv,
        scale,
    };
    let out_dims = vec![b, h, t, dv];
    if TypeId::of::<B>() == TypeId::of::<Flex>() {
        let host =
            |x: &Tensor<B, 4>| contiguous(cast::<B, Flex, 4>(x.clone()).into_primitive().tensor());
        let (qv, kv, vv) = (host(q), host(k), host(v));
        let (y, _) = forward(values(&qv), values(&kv), values(&vv), dims, false);
        let y = Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(flex(y, out_dims)));
        return Some(cast::<Flex, B, 4>(y));
    }
    if TypeId::of::<B>() != TypeId::of::<Trained>() {
        return None;
    }
    let take = |x: &Tensor<B, 4>| cast::<B, Trained, 4>(x.clone()).into_primitive().tensor();
    let (qt, kt, vt) = (take(q), take(k), take(v));
    let [qv, kv, vv] = [&qt, &kt, &vt].map(|x| contiguous(x.primitive.clone()));
    let nodes = [qt.node.clone(), kt.node.clone(), vt.node.clone()];
    let prepared = AttentionBackward
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful();
    let out = match prepared {
        OpsKind::Tracked(prep) => {
            let (y, probs) = forward(values(&qv), values(&kv), values(&vv), dims, true);
            let probs = probs.expect("kept when asked");
            prep.finish((qv, kv, vv, probs, dims), flex(y, out_dims))
        }
        OpsKind::UnTracked(prep) => {
            let (y, _) = forward(values(&qv), values(&kv), values(&vv), dims, false);
            prep.finish(flex(y, out_dims))
        }
    };
    let y = Tensor::<Trained, 4>::from_primitive(TensorPrimitive::Float(out));
    Some(cast::<Trained, B, 4>(y))
}

/// The output `[pairs, T, Dv]` and, when `keep`, the probabilities `[pairs, T, S]`.
fn forward(q: &[f32], k: &[f32], v: &[f32], n: Dims, keep: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let Dims { t, s, d, dv, .. } = n;
    let pairs = n.b * n.h;
    // Inside one image's task the other cores have images of their own: whole pairs.
    let rows = match inside_image_task() {
        true => t,
        false => rows_per_task(pairs, t, rayon::current_num_threads()),
    };
    let mut y = uninit(pairs * t * dv);
    let mut probs = keep.then(|| uninit(pairs * t * s));
    let tasks = row_blocks(pairs, t, rows);
    let one_block = |&(p, r0, r1): &(usize, usize, usize),
                     probs: &mut [MaybeUninit<f32>],
                     out: &mut [MaybeUninit<f32>]| {
        let (q, k, v) = (
            &q[(p * t + r0) * d..(p * t + r1) * d],
            &k[p * s * d..][..s * d],
            &v[p * s * dv..][..s * dv],
        );
        let probs = scores_softmax(q, k, n, &mut probs[..(r1 - r0) * s]);
        let (lhs, rhs) = (View::rows(probs, s), View::rows(v, dv));
        gemm_write(out, [r1 - r0, dv, s], lhs, rhs, dv, Parallelism::None);
    };
    let outs = split_rows(&mut y, &tasks, dv);
    match probs.as_mut() {
        Some(probs) => {
            let kept = split_rows(probs, &tasks, s);
            tasks
                .par_iter()
                .zip(outs)
                .zip(kept)
                .for_each(|((task, out), probs)| one_block(task, probs, out));
        }
        None => tasks.par_iter().zip(outs).for_each_init(
            || uninit(rows * s),
            |scratch, (task, out)| one_block(task, scratch, out),
        ),
    }
    // SAFETY: the blocks cover every pair's rows: each wrote its `rows x Dv` outputs and,
    // when kept, its `rows x S` probabilities.
    unsafe { (assume_written(y), probs.map(|p| assume_written(p))) }
}

/// Query rows per task: a whole pair each when the pairs alone keep every core busy; else
/// pairs cut in row blocks (batch 1 has as few pairs as heads: 3 for ViT-tiny, which on
/// two cores left one idle for a third of the op), of at least 32 rows.
fn rows_per_task(pairs: usize, t: usize, threads: usize) -> usize {
    let wanted = 2 * threads.max(1);
    if pairs >= wanted {
        return t;
    }
    let blocks = wanted.div_ceil(pairs.max(1));
    t.div_ceil(blocks).max(32).min(t)
}

/// `(pair, first row, end row)` of every task, in the order of the values.
fn row_blocks(pairs: usize, t: usize, rows: usize) -> Vec<(usize, usize, usize)> {
    (0..pairs)
        .flat_map(|p| {
            (0..t)
                .step_by(rows.max(1))
                .map(move |r0| (p, r0, (r0 + rows).min(t)))
        })
        .collect()
}

/// `values` (`[pairs, T, width]`) cut into the tasks' row blocks, in order.
fn split_rows<'a>(
    mut values: &'a mut [MaybeUninit<f32>],
    tasks: &[(usize, usize, usize)],
    width: usize,
) -> Vec<&'a mut [MaybeUninit<f32>]> {
    tasks
        .iter()
        .map(|&(_, r0, r1)| {
            let (block, rest) = std::mem::take(&mut values).split_at_mut((r1 - r0) * width);
            values = rest;
            block
        })
        .collect()
}

/// The softmax of `q k^T * scale` for one pair's query rows `q` (`[rows, D]`), row by row,
/// written into `dst` `[rows, S]`.
fn scores_softmax<'a>(
    q: &[f32],
    k: &[f32],
    n: Dims,
    dst: &'a mut [MaybeUninit<f32>],
) -> &'a mut [f32] {
    let Dims { s, d, scale, .. } = n;
    let t = q.len() / d;
    let (lhs, rhs) = (View::rows(q, d), View::transposed(k, d));
    gemm_write(dst, [t, s, d], lhs, rhs, s, Parallelism::None);
    // SAFETY: gemm wrote all `T x S` scores.
    let scores = unsafe { crate::flex_autodiff::written(dst) };
    for row in scores.chunks_mut(s) {
        softmax_row(row, scale);
    }
    scores
}

crate::simd::wide_kernel! {
    /// `row` becomes `softmax(row * scale)`: passes without a running sum or maximum, so each
    /// vectorises.
    fn softmax_row(row: &mut [f32], scale: f32) {
        // The top of `row * scale` is `scale` times the top or the bottom of `row`.
        let top = if scale >= 0.0 {
            lanes_max(row) * scale
        } else {
            smallest(row) * scale
        };
        for v in row.iter_mut() {
            *v = exp_nonpositive((*v * scale - top).min(0.0));
        }
        let inv = 1.0 / lanes_sum(row, |v| v);
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// The smallest of `values` (a negative scale is rare: one plain pass).
#[inline(always)]
fn smallest(values: &[f32]) -> f32 {
    values.iter().fold(f32::INFINITY, |m, &v| m.min(v))
}

crate::simd::wide_kernel! {
    /// The scores' gradient from the probabilities' (in `dp`, overwritten):
    /// `p * (dp - sum(dp * p)) * scale`, row by row.
    fn softmax_gradient(dp: &mut [f32], p: &[f32], s: usize, scale: f32) {
        for (g, p) in dp.chunks_mut(s).zip(p.chunks(s)) {
            let dot = lanes_sum_pairs(g, p, |a, b| a * b);
            for (g, &p) in g.iter_mut().zip(p) {
                *g = p * (*g - dot) * scale;
            }
        }
    }
}

#[derive(Debug)]
struct AttentionBackward;

/// One pair's gradient blocks: `dq` `[T, D]`, `dk` `[S, D]`, `dv` `[S, Dv]`.
type PairGrads<'a> = (&'a mut [f32], &'a mut [f32], &'a mut [f32]);

impl Backward<Flex, 3> for AttentionBackward {
    /// Q, K, V, the probabilities and the sizes.
    type State = (FlexTensor, FlexTensor, FlexTensor, Vec<f32>, Dims);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [q_node, k_node, v_node] = ops.parents.map(|p| p.map(|node| node.id));
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let (q, k, v, probs, n) = ops.state;
        let (dy, q, k, v) = (values(&grad), values(&q), values(&k), values(&v));
        let Dims {
            b,
            h,
            t,
            s,
            d,
            dv,
            scale,
        } = n;
        let pairs = b * h;
        let (mut dq, mut dk, mut dvs) = (
            vec![0.0f32; pairs * t * d],
            vec![0.0f32; pairs * s * d],
            vec![0.0f32; pairs * s * dv],
        );
        let one_pair = |p: usize, dp: &mut Vec<f32>, (dq, dk, dvs): PairGrads| {
            let (q, k, v) = (
                &q[p * t * d..][..t * d],
                &k[p * s * d..][..s * d],
                &v[p * s * dv..][..s * dv],
            );
            let (probs, dy) = (&probs[p * t * s..][..t * s], &dy[p * t * dv..][..t * dv]);
            let none = Parallelism::None;
            // dV = P^T dY; dP = dY V^T; dS = softmax's backward; dQ = dS K; dK = dS^T Q.
            gemm_into(
                dvs,
                [s, dv, t],
                View::transposed(probs, s),
                View::rows(dy, dv),
                false,
                none,
            );
            gemm_into(
                dp,
                [t, s, dv],
                View::rows(dy, dv),
                View::transposed(v, dv),
                false,
                none,
            );
            softmax_gradient(dp, probs, s, scale);
            gemm_into(
                dq,
                [t, d, s],
                View::rows(dp, s),
                View::rows(k, d),
                false,
                none,
            );
            gemm_into(
                dk,
                [s, d, t],
                View::transposed(dp, s),
                View::rows(q, d),
                false,
                none,
            );
        };
        dq.par_chunks_mut(t * d)
            .zip(dk.par_chunks_mut(s * d))
            .zip(dvs.par_chunks_mut(s * dv))
            .enumerate()
            .for_each_init(
                || vec![0.0f32; t * s],
                |dp, (p, ((dq, dk), dvs))| one_pair(p, dp, (dq, dk, dvs)),
            );
        for (node, values, rows, cols) in
            [(q_node, dq, t, d), (k_node, dk, s, d), (v_node, dvs, s, dv)]
        {
            if let Some(id) = node {
                grads.register::<Flex>(id, flex(values, vec![b, h, rows, cols]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{row_blocks, rows_per_task};

    #[test]
    fn few_pairs_are_cut_in_row_blocks_that_cover_every_row_once() {
        // Batch 32 of 3 heads: whole pairs.
        assert_eq!(rows_per_task(96, 197, 2), 197);
        // Batch 1 of 3 heads on 2 cores: two blocks a pair; never under 32 rows.
        assert_eq!(rows_per_task(3, 197, 2), 99);
        assert_eq!(rows_per_task(1, 40, 16), 32);
        assert_eq!(rows_per_task(1, 10, 16), 10);
        let tasks = row_blocks(2, 197, 99);
        assert_eq!(tasks, [(0, 0, 99), (0, 99, 197), (1, 0, 99), (1, 99, 197)]);
    }
}
