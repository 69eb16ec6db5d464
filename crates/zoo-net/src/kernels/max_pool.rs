//! Max pooling on flex: one pass per plane on all cores, for inference (`Flex`) and for training
//! (`Autodiff<Flex>`, where the forward keeps each output's argmax and the backward adds the
//! gradient straight to it). flex's pooling with indices took 5 ms of a 30 ms LeNet-5 training
//! step for the first 2x2 pool alone. Window cells outside the input (the pads, and the extra
//! end cells of ceil mode) are skipped, which equals padding with -inf. Other backends keep
//! burn's `max_pool2d`; `tests/fused_ops.rs` holds the two to the same values and gradients.

use std::any::TypeId;
use std::ops::Range;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use rayon::prelude::*;
use zoo_onnx::PoolSpec;

use crate::flex_autodiff::{cast, contiguous, flex, par_zeroed, values, Trained};
use crate::simd::{every_second, wide_kernel};

/// An output cell whose window lies wholly in the padding: no input cell to send gradient to.
const NO_INPUT: u32 = u32::MAX;

/// The input cells one output index reads along an axis: `count` cells from `first`, `step`
/// apart (the dilation), padding cells left out.
#[derive(Clone, Copy)]
struct Span {
    first: usize,
    count: usize,
}

/// The spans of every output row and column: the same for every plane, so computed once.
struct Windows {
    rows: Vec<Span>,
    cols: Vec<Span>,
    kernel: [usize; 2],
    steps: [usize; 2],
    width: usize,
    /// 2x2 windows at stride 2 wholly inside the input.
    pairs: bool,
    /// The output columns whose windows lie wholly inside the input, and the column stride.
    full_cols: Range<usize>,
    col_stride: usize,
}

impl Windows {
    /// `pads` is `[top, left, bottom, right]`, plus `extra` at the bottom and right.
    fn new(pool: &PoolSpec, pads: [usize; 4], extra: [usize; 2], h: usize, w: usize) -> Self {
        let axis = |i: usize, size: usize| -> Vec<Span> {
            let span = (pool.kernel[i] - 1) * pool.dilations[i] + 1;
            let outputs = (size + pads[i] + pads[i + 2] + extra[i] - span) / pool.strides[i] + 1;
            (0..outputs)
                .map(|o| {
                    let cells: Vec<usize> = (0..pool.kernel[i])
                        .map(|k| {
                            (o * pool.strides[i] + k * pool.dilations[i]).wrapping_sub(pads[i])
                        })
                        .filter(|&cell| cell < size)
                        .collect();
                    Span {
                        first: cells.first().copied().unwrap_or(0),
                        count: cells.len(),
                    }
                })
                .collect()
        };
        let (rows, cols) = (axis(0, h), axis(1, w));
        let pairs = pool.kernel == [2, 2]
            && pool.strides == [2, 2]
            && pool.dilations == [1, 1]
            && rows.iter().chain(&cols).all(|span| span.count == 2);
        let full = |c: &Span| c.count == pool.kernel[1];
        let full_cols = cols.iter().position(full).map_or(0..0, |first| {
            first..cols.len() - cols.iter().rev().position(full).unwrap_or(0)
        });
        Self {
            rows,
            cols,
            kernel: pool.kernel,
            steps: pool.dilations,
            width: w,
            pairs,
            full_cols,
            col_stride: pool.strides[1],
        }
    }

    fn output_plane(&self) -> usize {
        self.rows.len() * self.cols.len()
    }

    /// Pools one plane into `out`, and the flat index of each maximum into `argmax` (for the
    /// backward). The first maximum of a window wins.
    #[inline(always)]
    fn pool_plane_argmax(&self, plane: &[f32], out: &mut [f32], argmax: &mut [u32]) {
        if self.pairs {
            self.pool_pairs(plane, out, argmax)
        } else {
            self.pool_windows(plane, out, argmax)
        }
    }

    /// Values only (inference): the window maximum as the maximum over its columns of the
    /// column maxima over its rows, so a 3x3 window costs 3 + 3 comparisons instead of 9, and
    /// the row pass runs along contiguous rows the compiler vectorises, before the stride
    /// thins them out (SqueezeNet's 3x3 pools were 18 % of an evaluate). Values only, so
    /// `f32::max` (no index to keep; of a `0.0` and a `-0.0` either may win).
    #[inline(always)]
    fn pool_separable(&self, plane: &[f32], out: &mut [f32], scratch: &mut RowScratch) {
        let (w, ow) = (self.width, self.cols.len());
        scratch.column_max.resize(w, 0.0);
        scratch.runs.resize(w, 0.0);
        let (column_max, runs) = (&mut scratch.column_max[..w], &mut scratch.runs[..w]);
        for (out_row, r) in out.chunks_mut(ow.max(1)).zip(&self.rows) {
            if r.count == 0 {
                out_row.fill(f32::NEG_INFINITY);
                continue;
            }
            let row = |i: usize| &plane[(r.first + i * self.steps[0]) * w..][..w];
            column_max.copy_from_slice(row(0));
            for i in 1..r.count {
                for (m, &v) in column_max.iter_mut().zip(row(i)) {
                    // `max`, not a select on `v > m`: that one compiles to a masked store,
                    // which stalls the next pass's loads.
                    *m = m.max(v);
                }
            }
            self.row_maxima(column_max, runs, out_row);
        }
    }

    /// The maximum of each column window of one row. Undilated full windows read `runs`, the
    /// maximum of every `kernel`-long run of the row; windows cut by the padding fold their span.
    #[inline(always)]
    fn row_maxima(&self, row: &[f32], runs: &mut [f32], maxima: &mut [f32]) {
        let (k, step) = (self.kernel[1], self.steps[1]);
        let fold = |c: &Span| {
            (1..c.count)
                .map(|j| row[c.first + j * step])
                .fold(row[c.first], |best, v| if v > best { v } else { best })
        };
        if step != 1 || k > row.len() {
            for (m, c) in maxima.iter_mut().zip(&self.cols) {
                if c.count > 0 {
                    *m = fold(c);
                }
            }
            return;
        }
        let starts = row.len() - k + 1;
        let runs = &mut runs[..starts];
        runs.copy_from_slice(&row[..starts]);
        for j in 1..k {
            for (m, &v) in runs.iter_mut().zip(&row[j..j + starts]) {
                *m = m.max(v);
            }
        }
        // The full windows read every `col_stride`-th run (a strided copy, not a lookup each).
        let full = self.full_cols.clone();
        if let Some(first) = self.cols.get(full.start).map(|c| c.first) {
            let dst = &mut maxima[full.clone()];
            match self.col_stride {
                1 => dst.copy_from_slice(&runs[first..][..dst.len()]),
                2 => every_second(&runs[first..], dst),
                stride => {
                    for (i, m) in dst.iter_mut().enumerate() {
                        *m = runs[first + i * stride];
                    }
                }
            }
        }
        for i in (0..full.start).chain(full.end..self.cols.len()) {
            let c = &self.cols[i];
            maxima[i] = if c.count == 0 {
                f32::NEG_INFINITY
            } else {
                fold(c)
            };
        }
    }

    /// The common 2x2, stride 2, unpadded case: two input rows per output row, no spans.
    #[inline(always)]
    fn pool_pairs(&self, plane: &[f32], out: &mut [f32], argmax: &mut [u32]) {
        let (w, ow) = (self.width, self.cols.len());
        for oy in 0..self.rows.len() {
            let (top, bottom) = (2 * oy * w, (2 * oy + 1) * w);
            for ox in 0..ow {
                let cells = [
                    top + 2 * ox,
                    top + 2 * ox + 1,
                    bottom + 2 * ox,
                    bottom + 2 * ox + 1,
                ];
                let (mut best, mut index) = (plane[cells[0]], cells[0]);
                for &cell in &cells[1..] {
                    let greater = plane[cell] > best;
                    best = if greater { plane[cell] } else { best };
                    index = if greater { cell } else { index };
                }
                out[oy * ow + ox] = best;
                argmax[oy * ow + ox] = index as u32;
            }
        }
    }

    #[inline(always)]
    fn pool_windows(&self, plane: &[f32], out: &mut [f32], argmax: &mut [u32]) {
        let [row_step, col_step] = self.steps;
        let mut at = 0;
        for r in &self.rows {
            for c in &self.cols {
                let (mut best, mut index) = (f32::NEG_INFINITY, NO_INPUT);
                if r.count > 0 && c.count > 0 {
                    index = (r.first * self.width + c.first) as u32;
                    best = plane[index as usize];
                }
                for i in 0..r.count {
                    let row = (r.first + i * row_step) * self.width;
                    for j in 0..c.count {
                        let cell = row + c.first + j * col_step;
                        let v = plane[cell];
                        // Selects, not a branch: random activations mispredict half the time.
                        let greater = v > best;
                        best = if greater { v } else { best };
                        index = if greater { cell as u32 } else { index };
                    }
                }
                out[at] = best;
                argmax[at] = index;
                at += 1;
            }
        }
    }
}

/// A row's column maxima and runs, kept from plane to plane (two allocations a plane were a
/// tenth of the MNIST CNN's pooling).
#[derive(Default)]
struct RowScratch {
    column_max: Vec<f32>,
    runs: Vec<f32>,
}

wide_kernel! {
    /// [`Windows::pool_plane_argmax`], widened.
    fn pool_plane_argmax(windows: &Windows, plane: &[f32], out: &mut [f32], argmax: &mut [u32]) {
        windows.pool_plane_argmax(plane, out, argmax)
    }
}

wide_kernel! {
    /// The values of consecutive input planes of `plane` values each into their pooled
    /// planes (`out`), widened.
    fn pool_values(
        windows: &Windows,
        planes: &[f32],
        plane: usize,
        out: &mut [f32],
        scratch: &mut RowScratch,
    ) {
        let out_plane = windows.output_plane().max(1);
        for (input, out) in planes.chunks_exact(plane.max(1)).zip(out.chunks_exact_mut(out_plane)) {
            windows.pool_separable(input, out, scratch);
        }
    }
}

/// Input values per pooling task: small planes (the MNIST CNN's 14x14) go several to a task.
const VALUES_PER_TASK: usize = 1 << 13;

/// Max pooling of an f32 batch on `Flex` (values) or `Autodiff<Flex>` (values and argmax for
/// the backward); `None` for other backends or dtypes. `pads` is `[top, left, bottom, right]`,
/// `extra` the cells ceil mode adds at the bottom and right (`pool.padding` is not read).
pub fn max_pool<B: Backend>(
    x: &Tensor<B, 4>,
    pool: &PoolSpec,
    pads: [usize; 4],
    extra: [usize; 2],
) -> Option<Tensor<B, 4>> {
    if x.dtype() != DType::F32 {
        return None;
    }
    let [n, c, h, w] = x.dims();
    let windows = Windows::new(pool, pads, extra, h, w);
    let dims = vec![n, c, windows.rows.len(), windows.cols.len()];
    if TypeId::of::<B>() == TypeId::of::<Flex>() {
        let input = contiguous(cast::<B, Flex, 4>(x.clone()).into_primitive().tensor());
        let (y, _) = pool_batch(values(&input), h * w, &windows, false);
        let y = Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(flex(y, dims)));
        return Some(cast::<Flex, B, 4>(y));
    }
    if TypeId::of::<B>() != TypeId::of::<Trained>() {
        return None;
    }
    let x = cast::<B, Trained, 4>(x.clone()).into_primitive().tensor();
    let input = contiguous(x.primitive.clone());
    let track = MaxPoolBackward
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful();
    let out = match track {
        OpsKind::Tracked(prep) => {
            let (y, argmax) = pool_batch(values(&input), h * w, &windows, true);
            prep.finish((argmax, [n, c, h, w]), flex(y, dims))
        }
        OpsKind::UnTracked(prep) => {
            let (y, _) = pool_batch(values(&input), h * w, &windows, false);
            prep.finish(flex(y, dims))
        }
    };
    let y = Tensor::<Trained, 4>::from_primitive(TensorPrimitive::Float(out));
    Some(cast::<Trained, B, 4>(y))
}

/// Pools every plane (values: several small planes a task; with argmax: one task a plane);
/// the argmax indices too when asked.
fn pool_batch(
    x: &[f32],
    plane: usize,
    windows: &Windows,
    with_argmax: bool,
) -> (Vec<f32>, Vec<u32>) {
    let out_plane = windows.output_plane();
    let planes = x.len() / plane.max(1);
    if !with_argmax {
        let per_task = (VALUES_PER_TASK / plane.max(1)).clamp(1, planes.max(1));
        let y = par_zeroed(
            planes * out_plane,
            per_task * out_plane,
            RowScratch::default,
            |i, scratch, out| {
                let first = i * per_task * plane;
                let count = out.len() / out_plane.max(1);
                pool_values(windows, &x[first..][..count * plane], plane, out, scratch)
            },
        );
        return (y, Vec::new());
    }
    let mut y = vec![0.0f32; planes * out_plane];
    let mut argmax = vec![0u32; planes * out_plane];
    y.par_chunks_mut(out_plane)
        .zip(argmax.par_chunks_mut(out_plane))
        .zip(x.par_chunks(plane))
        .for_each(|((out, arg), input)| pool_plane_argmax(windows, input, out, arg));
    (y, argmax)
}

#[derive(Debug)]
struct MaxPoolBackward;

impl Backward<Flex, 1> for MaxPoolBackward {
    /// The argmax of every output cell (an index within its plane), and the input's dims.
    type State = (Vec<u32>, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node] = ops.parents.map(|p| p.map(|node| node.id));
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let Some(id) = x_node else {
            return;
        };
        let (argmax, dims @ [_, _, h, w]) = ops.state;
        let grad = values(&grad);
        let out_plane = grad.len() / (dims[0] * dims[1]).max(1);
        let mut dx = vec![0.0f32; dims.iter().product()];
        dx.par_chunks_mut((h * w).max(1))
            .zip(grad.par_chunks(out_plane.max(1)))
            .zip(argmax.par_chunks(out_plane.max(1)))
            .for_each(|((plane, g), arg)| {
                for (&i, &v) in arg.iter().zip(g) {
                    if i != NO_INPUT {
                        plane[i as usize] += v;
                    }
                }
            });
        grads.register::<Flex>(id, flex(dx, dims.to_vec()));
    }
}
