//! Transpose as a contiguous copy on flex (and `Autodiff<Flex>`, with the inverse copy as its
//! backward). burn's permute is a strided view; the next op that needs contiguous values
//! copies it one element at a time through a generic strided iterator, which was a fifth of a
//! ViT training step (perf, ViT-tiny at 224, every layer trained). Here the axes that stay
//! together are merged, runs that stay contiguous are copied whole, and the rest is copied
//! in cache-sized tiles of the two axes that swap, on all cores.

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

use crate::flex_autodiff::{cast, contiguous, flex, values, Trained};

/// `x` with its axes in the order `axes` (output axis i is input axis `axes[i]`), as a
/// contiguous tensor, on flex and `Autodiff<Flex>` with f32 values; `None` elsewhere.
pub fn permute<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    axes: [usize; D],
) -> Option<Tensor<B, D>> {
    if x.dtype() != DType::F32 {
        return None;
    }
    if TypeId::of::<B>() == TypeId::of::<Flex>() {
        let t = cast::<B, Flex, D>(x.clone()).into_primitive().tensor();
        let out = permuted(&contiguous(t), &axes);
        let y = Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(out));
        return Some(cast::<Flex, B, D>(y));
    }
    if TypeId::of::<B>() != TypeId::of::<Trained>() {
        return None;
    }
    let t = cast::<B, Trained, D>(x.clone()).into_primitive().tensor();
    let out = permuted(&contiguous(t.primitive.clone()), &axes);
    let inverse: Vec<usize> = (0..D)
        .map(|i| axes.iter().position(|&a| a == i).expect("a permutation"))
        .collect();
    let out = match PermuteBackward
        .prepare::<NoCheckpointing>([t.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(inverse, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    let y = Tensor::<Trained, D>::from_primitive(TensorPrimitive::Float(out));
    Some(cast::<Trained, B, D>(y))
}

#[derive(Debug)]
struct PermuteBackward;

impl Backward<Flex, 1> for PermuteBackward {
    /// The inverse permutation.
    type State = Vec<usize>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents.map(|p| p.map(|node| node.id));
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        if let Some(id) = parent {
            grads.register::<Flex>(id, permuted(&grad, &ops.state));
        }
    }
}

/// The permuted copy of a contiguous flex tensor.
fn permuted(x: &FlexTensor, axes: &[usize]) -> FlexTensor {
    let dims: Vec<usize> = x.layout().shape().iter().copied().collect();
    let out_dims: Vec<usize> = axes.iter().map(|&a| dims[a]).collect();
    flex(permute_values(values(x), &dims, axes), out_dims)
}

/// Output axes as (size, input stride, output stride), after merging output axes that are
/// also neighbours in the input and dropping axes of size 1.
fn merged_axes(dims: &[usize], axes: &[usize]) -> Vec<(usize, usize, usize)> {
    let mut in_strides = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * dims[i + 1];
    }
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for &a in axes.iter().filter(|&&a| dims[a] != 1) {
        match merged.last_mut() {
            Some((size, stride)) if *stride == in_strides[a] * dims[a] => {
                *size *= dims[a];
                *stride = in_strides[a];
            }
            _ => merged.push((dims[a], in_strides[a])),
        }
    }
    let mut out_stride = 1;
    let mut result: Vec<(usize, usize, usize)> = merged
        .iter()
        .rev()
        .map(|&(size, stride)| {
            let axis = (size, stride, out_stride);
            out_stride *= size;
            axis
        })
        .collect();
    result.reverse();
    result
}

/// Side of the square tiles the swapping axes are copied in (two 16 KiB tiles fit L1).
const TILE: usize = 64;

/// The values of a row-major tensor of `dims` with its axes in the order `axes`.
pub fn permute_values(x: &[f32], dims: &[usize], axes: &[usize]) -> Vec<f32> {
    let axes_m = merged_axes(dims, axes);
    let mut out = vec![0.0f32; x.len()];
    if axes_m.len() <= 1 {
        out.copy_from_slice(x);
        return out;
    }
    // The output's last axis, and the axis that is contiguous in the input.
    let last = axes_m.len() - 1;
    let inner = axes_m.iter().position(|a| a.1 == 1).unwrap_or(last);
    let outer: Vec<usize> = (0..axes_m.len())
        .filter(|&i| i != last && i != inner)
        .collect();
    let outer_count: usize = outer.iter().map(|&i| axes_m[i].0).product();
    let (rows, row_in, row_out) = axes_m[inner];
    let (cols, col_in, _) = axes_m[last];
    let base = |mut k: usize| {
        let (mut from, mut to) = (0, 0);
        for &i in outer.iter().rev() {
            let (size, s_in, s_out) = axes_m[i];
            from += (k % size) * s_in;
            to += (k % size) * s_out;
            k /= size;
        }
        (from, to)
    };
    let dst = SharedOut(out.as_mut_ptr());
    let tiles_r = if inner == last {
        1
    } else {
        rows.div_ceil(TILE)
    };
    // Jobs of about 16 K values at least, so small tensors stay on one core.
    let per_job = if inner == last { cols } else { TILE * cols };
    let min_jobs = (1 << 14) / per_job.max(1);
    (0..outer_count * tiles_r)
        .into_par_iter()
        .with_min_len(min_jobs.max(1))
        .for_each(|job| {
            let (from, to) = base(job / tiles_r);
            let dst = &dst;
            if inner == last {
                // The output's rows are runs of the input: copied whole.
                // SAFETY: each job writes its own run of `cols` values (a permutation is a bijection).
                unsafe { dst.copy(to, &x[from..from + cols]) };
                return;
            }
            let r0 = (job % tiles_r) * TILE;
            for c0 in (0..cols).step_by(TILE) {
                for r in r0..(r0 + TILE).min(rows) {
                    for c in c0..(c0 + TILE).min(cols) {
                        let v = x[from + r * row_in + c * col_in];
                        // SAFETY: every output index is written by exactly one (job, r, c).
                        unsafe { dst.write(to + r * row_out + c, v) };
                    }
                }
            }
        });
    out
}

/// The output buffer shared by the jobs, each writing its own indices.
struct SharedOut(*mut f32);

// SAFETY: jobs write disjoint indices of one live buffer (see `permute_values`).
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// # Safety
    /// `at` is in bounds and no other job writes it.
    unsafe fn write(&self, at: usize, v: f32) {
        unsafe { *self.0.add(at) = v };
    }

    /// # Safety
    /// `at..at + values.len()` is in bounds and no other job writes it.
    unsafe fn copy(&self, at: usize, values: &[f32]) {
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), self.0.add(at), values.len()) };
    }
}
