//! Scaled dot-product attention, `softmax(Q K^T * scale) V` per (image, head), as one op on
//! flex and on `Autodiff<Flex>` with its own backward. Each (image, head) is one task on one
//! core (or a block of its query rows, when the pairs are fewer than the cores): two gemms
//! around a softmax of its `[T, S]` scores, which never leave that task at inference (one
//! scratch block per task) and are kept only when training needs them for the backward.
//! burn's composition ran a strided batched matmul, a scale pass, a softmax of several passes
//! and another matmul, each over the whole batch, each kept for its backward.
//!
//! Q, K, V and the output are read and written where they lie: heads first
//! (`[B, H, T, D]`), tokens first (`[B, T, H * D]`, ONNX's 3-D form), or side by side on the
//! last axis of one projection's output (`[B, T, 3 * H * D]`, packed), so the head split and
//! merge that transformer graphs write around attention move no values, forward or backward.

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
use crate::kernels::fast_math::{exp_nonpositive, lanes_max, lanes_sum, lanes_sum_pairs, mul_add};
use crate::kernels::matrix::{gemm_into, gemm_to, gemm_write, Destination, View};

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

/// Where each (image, head) pair's rows of one operand lie in its buffer: the pair of image
/// `i` and head `j` starts at `offset + i * image_step + j * head_step`, its rows `row_step`
/// apart, each row's values adjacent.
#[derive(Clone, Copy, Debug)]
struct Layout {
    offset: usize,
    image_step: usize,
    head_step: usize,
    row_step: usize,
}

impl Layout {
    /// `[B, H, rows, width]`.
    fn heads_first(heads: usize, rows: usize, width: usize) -> Self {
        Self {
            offset: 0,
            image_step: heads * rows * width,
            head_step: rows * width,
            row_step: width,
        }
    }

    /// Part `part` of `parts` side by side on the last axis of `[B, rows, parts * H * width]`,
    /// each part its heads one after another.
    fn tokens_first(heads: usize, rows: usize, width: usize, [part, parts]: [usize; 2]) -> Self {
        let row_step = parts * heads * width;
        Self {
            offset: part * heads * width,
            image_step: rows * row_step,
            head_step: width,
            row_step,
        }
    }

    /// Where pair `pair` (of `heads` a image) starts.
    fn start(&self, pair: usize, heads: usize) -> usize {
        self.offset + (pair / heads) * self.image_step + (pair % heads) * self.head_step
    }

    /// `rows x width` values of pair `pair` from row `row` on, read from `values`.
    fn view(&self, values: &[f32], pair: usize, heads: usize, row: usize) -> View {
        View {
            ptr: values[self.start(pair, heads) + row * self.row_step..].as_ptr(),
            row_step: self.row_step as isize,
            col_step: 1,
        }
    }

    /// The transpose of pair `pair`'s rows in `values`.
    fn transposed(&self, values: &[f32], pair: usize, heads: usize) -> View {
        View {
            ptr: values[self.start(pair, heads)..].as_ptr(),
            row_step: 1,
            col_step: self.row_step as isize,
        }
    }

    /// The values past the last one of the last pair's `rows x width` block.
    fn end(&self, pairs: usize, heads: usize, rows: usize, width: usize) -> usize {
        self.start(pairs - 1, heads) + (rows - 1) * self.row_step + width
    }
}

/// The layouts of Q, K, V and the output, and which input holds each of Q, K and V.
#[derive(Clone, Copy, Debug)]
struct Plan {
    q: Layout,
    k: Layout,
    v: Layout,
    out: Layout,
    sources: [usize; 3],
}

impl Plan {
    fn heads_first(n: &Dims) -> Self {
        let Dims { h, t, s, d, dv, .. } = *n;
        Self {
            q: Layout::heads_first(h, t, d),
            k: Layout::heads_first(h, s, d),
            v: Layout::heads_first(h, s, dv),
            out: Layout::heads_first(h, t, dv),
            sources: [0, 1, 2],
        }
    }

    /// Tokens first: Q, K and V each their own input, or, when `packed`, side by side in one.
    fn tokens_first(n: &Dims, packed: bool) -> Self {
        let Dims { h, t, s, d, dv, .. } = *n;
        let part = |i: usize| if packed { [i, 3] } else { [0, 1] };
        Self {
            q: Layout::tokens_first(h, t, d, part(0)),
            k: Layout::tokens_first(h, s, d, part(1)),
            v: Layout::tokens_first(h, s, dv, part(2)),
            out: Layout::tokens_first(h, t, dv, [0, 1]),
            sources: if packed { [0, 0, 0] } else { [0, 1, 2] },
        }
    }

    /// Whether the operands taken from each input stay inside its `lens` values and account
    /// for every one of them: with the layouts built here, which never overlap, the gradients
    /// written through them then leave none unwritten.
    fn tiles(&self, n: &Dims, lens: &[usize]) -> bool {
        let Dims {
            b, h, t, s, d, dv, ..
        } = *n;
        let pairs = b * h;
        let operands = [(self.q, t, d), (self.k, s, d), (self.v, s, dv)];
        lens.iter().enumerate().all(|(input, &len)| {
            let mine = || {
                (0..3)
                    .filter(|&o| self.sources[o] == input)
                    .map(|o| operands[o])
            };
            let covered: usize = mine().map(|(_, rows, width)| pairs * rows * width).sum();
            let inside = mine().all(|(l, rows, width)| l.end(pairs, h, rows, width) <= len);
            covered == len && inside
        })
    }
}

/// A destination many tasks write through, each its own rows or columns.
#[derive(Clone, Copy)]
struct Shared(*mut f32);

// SAFETY: the tasks given a `Shared` write disjoint values of its buffer (by their layouts).
unsafe impl Send for Shared {}
// SAFETY: as for `Send`.
unsafe impl Sync for Shared {}

impl Shared {
    /// Where pair `pair`'s `rows x width` block from row `row` lies, as a gemm destination.
    ///
    /// # Safety
    /// The block lies inside the buffer (`Plan::tiles`), and only this task writes it.
    unsafe fn block(
        self,
        l: &Layout,
        pair: usize,
        heads: usize,
        [row, rows, width]: [usize; 3],
    ) -> Destination {
        Destination {
            // SAFETY: inside the buffer, the caller's promise.
            ptr: unsafe { self.0.add(l.start(pair, heads) + row * l.row_step) },
            len: (rows - 1) * l.row_step + width,
            row_step: l.row_step,
        }
    }
}

/// `softmax(q k^T * scale) v` for `q` `[B, H, T, D]`, `k` `[B, H, S, D]`, `v` `[B, H, S, Dv]`
/// (f32, flex or `Autodiff<Flex>`); `None` sends the caller to burn's ops.
pub fn attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    scale: f32,
) -> Option<Tensor<B, 4>> {
    let ([b, h, t, d], [kb, kh, s, kd], [vb, vh, vs, dv]) = (q.dims(), k.dims(), v.dims());
    let same_pairs = [kb, vb] == [b, b] && [kh, vh] == [h, h];
    if !same_pairs || kd != d || vs != s {
        return None;
    }
    let n = dims([b, h, t, s, d, dv], scale)?;
    served([q, k, v], n, Plan::heads_first(&n), [b, h, t, dv])
}

/// [`attention`] for 3-D `q` `[B, T, H*D]`, `k` `[B, S, H*D]`, `v` `[B, S, H*Dv]` (each
/// token's heads one after another, ONNX's 3-D form), giving `[B, T, H*Dv]`.
pub fn attention_tokens<B: Backend>(
    q: &Tensor<B, 3>,
    k: &Tensor<B, 3>,
    v: &Tensor<B, 3>,
    heads: usize,
    scale: f32,
) -> Option<Tensor<B, 3>> {
    let ([b, t, qc], [kb, s, kc], [vb, vs, vc]) = (q.dims(), k.dims(), v.dims());
    let fits = [kb, vb] == [b, b] && vs == s && kc == qc && heads > 0;
    if !fits || !qc.is_multiple_of(heads) || !vc.is_multiple_of(heads) {
        return None;
    }
    let n = dims([b, heads, t, s, qc / heads, vc / heads], scale)?;
    served([q, k, v], n, Plan::tokens_first(&n, false), [b, t, vc])
}

/// [`attention_tokens`] with Q, K and V side by side on the last axis of `x`
/// (`[B, T, 3 * H*D]`, as one projection writes them), giving `[B, T, H*D]`.
pub fn attention_packed<B: Backend>(
    x: &Tensor<B, 3>,
    heads: usize,
    scale: f32,
) -> Option<Tensor<B, 3>> {
    let [b, t, c3] = x.dims();
    if heads == 0 || !c3.is_multiple_of(3 * heads) {
        return None;
    }
    let d = c3 / 3 / heads;
    let n = dims([b, heads, t, t, d, d], scale)?;
    served([x], n, Plan::tokens_first(&n, true), [b, t, heads * d])
}

/// The sizes, when the kernel serves them (something to attend over, a finite scale).
fn dims([b, h, t, s, d, dv]: [usize; 6], scale: f32) -> Option<Dims> {
    let empty = [b, h, t, s, d, dv].contains(&0);
    (!empty && scale.is_finite()).then_some(Dims {
        b,
        h,
        t,
        s,
        d,
        dv,
        scale,
    })
}

/// The attention of `inputs` (flex or `Autodiff<Flex>`, f32) through `plan`, as a tensor of
/// `out_dims`; `None` for other backends or types.
fn served<B: Backend, const D: usize, const N: usize>(
    inputs: [&Tensor<B, D>; N],
    n: Dims,
    plan: Plan,
    out_dims: [usize; D],
) -> Option<Tensor<B, D>> {
    if inputs.iter().any(|x| x.dtype() != DType::F32) {
        return None;
    }
    let lens = inputs.map(|x| x.shape().num_elements());
    assert!(plan.tiles(&n, &lens), "attention layouts tile their inputs");
    let out_dims = out_dims.to_vec();
    if TypeId::of::<B>() == TypeId::of::<Flex>() {
        let host =
            inputs.map(|x| contiguous(cast::<B, Flex, D>(x.clone()).into_primitive().tensor()));
        let (y, _) = forward(operands(&host, &plan), n, &plan, false);
        let y = Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(flex(y, out_dims)));
        return Some(cast::<Flex, B, D>(y));
    }
    if TypeId::of::<B>() != TypeId::of::<Trained>() {
        return None;
    }
    let tracked = inputs.map(|x| cast::<B, Trained, D>(x.clone()).into_primitive().tensor());
    let host = tracked.each_ref().map(|x| contiguous(x.primitive.clone()));
    let nodes = tracked.each_ref().map(|x| x.node.clone());
    let prepared = AttentionBackward::<N>
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful();
    let out = match prepared {
        OpsKind::Tracked(prep) => {
            let (y, probs) = forward(operands(&host, &plan), n, &plan, true);
            let probs = probs.expect("kept when asked");
            let saved = Saved {
                inputs: host.to_vec(),
                probs,
                n,
                plan,
            };
            prep.finish(saved, flex(y, out_dims))
        }
        OpsKind::UnTracked(prep) => {
            let (y, _) = forward(operands(&host, &plan), n, &plan, false);
            prep.finish(flex(y, out_dims))
        }
    };
    let y = Tensor::<Trained, D>::from_primitive(TensorPrimitive::Float(out));
    Some(cast::<Trained, B, D>(y))
}

/// The values Q, K and V are read from.
fn operands<'a>(inputs: &'a [FlexTensor], plan: &Plan) -> [&'a [f32]; 3] {
    plan.sources.map(|i| values(&inputs[i]))
}

/// The output (laid out as `plan.out`) and, when `keep`, the probabilities `[pairs, T, S]`.
fn forward(qkv: [&[f32]; 3], n: Dims, plan: &Plan, keep: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let Dims { h, t, s, dv, .. } = n;
    let pairs = n.b * h;
    // Inside one image's task the other cores have images of their own: whole pairs.
    let rows = match inside_image_task() {
        true => t,
        false => rows_per_task(pairs, t, rayon::current_num_threads()),
    };
    let mut y = uninit(pairs * t * dv);
    let out = Shared(y.as_mut_ptr().cast::<f32>());
    let mut probs = keep.then(|| uninit(pairs * t * s));
    let tasks = row_blocks(pairs, t, rows);
    let one_block = |&(p, r0, r1): &(usize, usize, usize), probs: &mut [MaybeUninit<f32>]| {
        let rows = r1 - r0;
        let q = plan.q.view(qkv[0], p, h, r0);
        let k_t = plan.k.transposed(qkv[1], p, h);
        let probs = scores_softmax(q, k_t, rows, n, &mut probs[..rows * s]);
        let v = plan.v.view(qkv[2], p, h, 0);
        // SAFETY: `plan.out` tiles the output (checked by the caller's `Plan::tiles` for the
        // inputs, and by construction for `[B, H, T, Dv]` or `[B, T, H*Dv]`); this task alone
        // writes pair `p`'s rows `r0..r1`.
        unsafe {
            let dst = out.block(&plan.out, p, h, [r0, rows, dv]);
            gemm_to(
                dst,
                [rows, dv, s],
                View::rows(probs, s),
                v,
                Parallelism::None,
            );
        }
    };
    match probs.as_mut() {
        Some(probs) => {
            let kept = split_rows(probs, &tasks, s);
            tasks
                .par_iter()
                .zip(kept)
                .for_each(|(task, probs)| one_block(task, probs));
        }
        None => tasks.par_iter().for_each_init(
            || uninit(rows * s),
            |scratch, task| one_block(task, scratch),
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

/// The softmax of `q k^T * scale` for `rows` query rows of one pair (`q` `[rows, D]`, `k_t`
/// `[D, S]`), row by row, written into `dst` `[rows, S]`.
fn scores_softmax(
    q: View,
    k_t: View,
    rows: usize,
    n: Dims,
    dst: &mut [MaybeUninit<f32>],
) -> &mut [f32] {
    let Dims { s, d, scale, .. } = n;
    gemm_write(dst, [rows, s, d], q, k_t, s, Parallelism::None);
    // SAFETY: gemm wrote all `rows x S` scores.
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
            *v = exp_nonpositive::<FUSED_MULTIPLY_ADD>(mul_add::<FUSED_MULTIPLY_ADD>(*v, scale, -top).min(0.0));
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

/// What the backward keeps: the inputs, the probabilities, the sizes and the layouts.
#[derive(Clone, Debug)]
struct Saved {
    inputs: Vec<FlexTensor>,
    probs: Vec<f32>,
    n: Dims,
    plan: Plan,
}

#[derive(Debug)]
struct AttentionBackward<const N: usize>;

impl<const N: usize> Backward<Flex, N> for AttentionBackward<N> {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let parents = ops.parents.map(|p| p.map(|node| node.id));
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let Saved {
            inputs,
            probs,
            n,
            plan,
        } = ops.state;
        let qkv = operands(&inputs, &plan);
        let mut outs: Vec<Vec<MaybeUninit<f32>>> = inputs
            .iter()
            .map(|x| uninit(x.layout().num_elements()))
            .collect();
        let targets: Vec<Shared> = outs
            .iter_mut()
            .map(|o| Shared(o.as_mut_ptr().cast::<f32>()))
            .collect();
        let into = plan.sources.map(|i| targets[i]);
        let (dy, probs) = (values(&grad), &probs[..]);
        let Dims { h, t, s, .. } = n;
        (0..n.b * h).into_par_iter().for_each_init(
            || vec![0.0f32; t * s],
            |dp, p| {
                // SAFETY: `Plan::tiles` held for these inputs when the forward ran: each
                // pair's blocks lie inside them, and no two pairs share a value.
                let read = Read { qkv, dy, probs };
                unsafe { pair_gradients(p, &read, &plan, n, into, dp) }
            },
        );
        for ((input, out), parent) in inputs.iter().zip(outs).zip(parents) {
            if let Some(id) = parent {
                // SAFETY: the operands tile every input (`Plan::tiles`): every value of
                // each gradient was written by one pair.
                let values = unsafe { assume_written(out) };
                grads.register::<Flex>(id, flex(values, input.layout().shape().to_vec()));
            }
        }
    }
}

/// What the backward reads: Q, K and V, the output's gradient and the probabilities.
struct Read<'a> {
    qkv: [&'a [f32]; 3],
    dy: &'a [f32],
    probs: &'a [f32],
}

/// One pair's gradients of Q, K and V, written through `into` at the plan's layouts:
/// `dV = P^T dY; dP = dY V^T; dS = softmax's backward; dQ = dS K; dK = dS^T Q`.
///
/// # Safety
/// The pair's blocks lie inside `into`'s buffers, and no other task writes them.
unsafe fn pair_gradients(
    p: usize,
    read: &Read,
    plan: &Plan,
    n: Dims,
    into: [Shared; 3],
    dp: &mut [f32],
) {
    let Dims {
        h,
        t,
        s,
        d,
        dv,
        scale,
        ..
    } = n;
    let (qkv, probs) = (read.qkv, &read.probs[p * t * s..][..t * s]);
    let dy = plan.out.view(read.dy, p, h, 0);
    let (q, k) = (plan.q.view(qkv[0], p, h, 0), plan.k.view(qkv[1], p, h, 0));
    let v_t = plan.v.transposed(qkv[2], p, h);
    // SAFETY (all three writes): the caller's promise.
    unsafe {
        let dv_block = into[2].block(&plan.v, p, h, [0, s, dv]);
        gemm_to(
            dv_block,
            [s, dv, t],
            View::transposed(probs, s),
            dy,
            Parallelism::None,
        );
    }
    gemm_into(dp, [t, s, dv], dy, v_t, false, Parallelism::None);
    softmax_gradient(dp, probs, s, scale);
    unsafe {
        let dq_block = into[0].block(&plan.q, p, h, [0, t, d]);
        gemm_to(dq_block, [t, d, s], View::rows(dp, s), k, Parallelism::None);
        let dk_block = into[1].block(&plan.k, p, h, [0, s, d]);
        gemm_to(
            dk_block,
            [s, d, t],
            View::transposed(dp, s),
            q,
            Parallelism::None,
        );
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
