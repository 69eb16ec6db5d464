//! Concatenation on flex: the values copied as blocks on all cores (flex's own `cat` copies
//! on one, 5 % of a SqueezeNet evaluate), and on `Autodiff<Flex>` a backward that hands each
//! input a contiguous gradient.
//! burn's backward gives each input a strided slice of the output gradient (along the channel
//! axis: one gap per image), and flex then walks every op behind it (the ReLUs of SqueezeNet's
//! fire modules, the convolutions' own copies) element by element through a strided iterator:
//! a quarter of a SqueezeNet training step. Here the slices are copied out as blocks once.
//! Other backends and more than four inputs keep `Tensor::cat`; `tests/fused_ops.rs` holds the
//! two to the same values and gradients.

use std::any::TypeId;
use std::mem::MaybeUninit;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::flex_autodiff::{cast, contiguous, flex, par_fill, values, Trained};

/// `Tensor::cat(parts, axis)`: zoo's block copy on `Flex`, with the contiguous-gradient
/// backward on `Autodiff<Flex>`.
pub fn concat<B: Backend, const D: usize>(parts: Vec<Tensor<B, D>>, axis: usize) -> Tensor<B, D> {
    let all_f32 = parts.iter().all(|p| p.dtype() == DType::F32);
    if TypeId::of::<B>() == TypeId::of::<Flex>() && all_f32 {
        let primitives: Vec<FlexTensor> = parts
            .into_iter()
            .map(|p| contiguous(cast::<B, Flex, D>(p).into_primitive().tensor()))
            .collect();
        let y = join(&primitives, axis);
        return cast::<Flex, B, D>(Tensor::from_primitive(TensorPrimitive::Float(y)));
    }
    if TypeId::of::<B>() != TypeId::of::<Trained>() || !all_f32 {
        return Tensor::cat(parts, axis);
    }
    let primitives: Vec<FloatTensor<Trained>> = parts
        .into_iter()
        .map(|p| cast::<B, Trained, D>(p).into_primitive().tensor())
        .collect();
    let out = match primitives.len() {
        2 => tracked::<2>(primitives, axis),
        3 => tracked::<3>(primitives, axis),
        4 => tracked::<4>(primitives, axis),
        _ => {
            let parts = primitives
                .into_iter()
                .map(|p| Tensor::<Trained, D>::from_primitive(TensorPrimitive::Float(p)))
                .collect();
            return cast::<Trained, B, D>(Tensor::cat(parts, axis));
        }
    };
    cast::<Trained, B, D>(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

fn tracked<const N: usize>(parts: Vec<FloatTensor<Trained>>, axis: usize) -> FloatTensor<Trained> {
    let Ok(parts) = <[FloatTensor<Trained>; N]>::try_from(parts) else {
        unreachable!("the caller matched the count")
    };
    let primitives: Vec<FlexTensor> = parts
        .iter()
        .map(|p| contiguous(p.primitive.clone()))
        .collect();
    let layout = Layout::of(&primitives, axis);
    let nodes = parts.each_ref().map(|p| p.node.clone());
    let forward = join(&primitives, axis);
    match ConcatBackward
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(layout, forward),
        OpsKind::UnTracked(prep) => prep.finish(forward),
    }
}

/// Where each input sits in the output: `outer` blocks (the dims before `axis`), each holding
/// every input's `sizes[i] * inner` values in turn.
#[derive(Clone, Debug)]
struct Layout {
    outer: usize,
    inner: usize,
    sizes: Vec<usize>,
    /// The first input's dims (the others differ only along `axis`).
    dims: Vec<usize>,
    axis: usize,
}

impl Layout {
    fn of(parts: &[FlexTensor], axis: usize) -> Self {
        let dims: Vec<usize> = parts[0].layout().shape().iter().copied().collect();
        Self {
            outer: dims[..axis].iter().product(),
            inner: dims[axis + 1..].iter().product(),
            sizes: parts.iter().map(|p| p.layout().shape()[axis]).collect(),
            dims,
            axis,
        }
    }

    fn output_dims(&self) -> Vec<usize> {
        let mut dims = self.dims.clone();
        dims[self.axis] = self.sizes.iter().sum();
        dims
    }
}

/// The concatenation of contiguous parts: each output block (one per index before `axis`)
/// filled from every part in turn, blocks spread over the cores.
fn join(parts: &[FlexTensor], axis: usize) -> FlexTensor {
    let l = Layout::of(parts, axis);
    let block: usize = l.sizes.iter().sum::<usize>() * l.inner;
    let fill_block = |o: usize, _: &mut (), out: &mut [MaybeUninit<f32>]| {
        let mut offset = 0;
        for (part, &size) in parts.iter().zip(&l.sizes) {
            let len = size * l.inner;
            out[offset..offset + len].write_copy_of_slice(&values(part)[o * len..][..len]);
            offset += len;
        }
    };
    // SAFETY: the parts' sizes add up to the block, so `fill_block` writes all of it.
    let y = unsafe { par_fill(l.outer * block, block, || (), fill_block) };
    flex(y, l.output_dims())
}

#[derive(Debug)]
struct ConcatBackward;

impl<const N: usize> Backward<Flex, N> for ConcatBackward {
    type State = Layout;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let parents = ops.parents.map(|p| p.map(|node| node.id));
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let (grad, l) = (values(&grad), ops.state);
        let block: usize = l.sizes.iter().sum::<usize>() * l.inner;
        let mut offset = 0;
        for (id, &size) in parents.iter().zip(&l.sizes) {
            let part = size * l.inner;
            if let Some(id) = id {
                let mut dx = vec![0.0f32; l.outer * part];
                dx.par_chunks_mut(part.max(1))
                    .enumerate()
                    .for_each(|(o, out)| {
                        out.copy_from_slice(&grad[o * block + offset..][..part]);
                    });
                let mut dims = l.dims.clone();
                dims[l.axis] = size;
                grads.register::<Flex>(*id, flex(dx, dims));
            }
            offset += part;
        }
    }
}

/// The output of a concatenation along channels (`[batch, channels, h, w]`, flex) written by
/// the convolutions that make its parts, at inference, instead of copied from their outputs:
/// SqueezeNet's fire modules copied some 11 MB per image into their concatenations (3.5 % of
/// an evaluate). Parts computed elsewhere are copied in; every channel is written once.
pub(crate) struct ChannelConcat {
    values: Vec<MaybeUninit<f32>>,
    dims: [usize; 4],
    written: Vec<bool>,
}

impl ChannelConcat {
    pub(crate) fn new(dims: [usize; 4]) -> Self {
        let len = dims.iter().product();
        let mut values = Vec::with_capacity(len);
        // SAFETY: `MaybeUninit` values need no initialisation; `finish` reads them only once
        // every channel has been written.
        unsafe { values.set_len(len) };
        Self {
            values,
            dims,
            written: vec![false; dims[1]],
        }
    }

    pub(crate) fn dims(&self) -> [usize; 4] {
        self.dims
    }

    /// Channels `first..first + count` of every image, `fill(image, cells)` writing each
    /// image's cells (`count * h * w`), images on all cores.
    ///
    /// # Safety
    /// `fill` must write every cell it is handed.
    pub(crate) unsafe fn write_channels(
        &mut self,
        first: usize,
        count: usize,
        fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
    ) {
        let [_, channels, h, w] = self.dims;
        assert!(first + count <= channels, "the part lies inside the output");
        let (plane, image) = (h * w, channels * h * w);
        self.values
            .par_chunks_mut(image.max(1))
            .enumerate()
            .for_each(|(n, cells)| fill(n, &mut cells[first * plane..][..count * plane]));
        self.written[first..first + count].fill(true);
    }

    /// Copies a part computed on its own (`[batch, count, h, w]` values) into channels `first..`.
    pub(crate) fn copy_part(&mut self, first: usize, part: &[f32]) {
        let [batch, _, h, w] = self.dims;
        let per_image = part.len() / batch.max(1);
        let copy = |n: usize, cells: &mut [MaybeUninit<f32>]| {
            cells.write_copy_of_slice(&part[n * per_image..][..per_image]);
        };
        // SAFETY: `copy` writes all `per_image` cells of each image.
        unsafe { self.write_channels(first, per_image / (h * w).max(1), copy) };
    }

    /// The finished output.
    pub(crate) fn finish(self) -> FlexTensor {
        assert!(
            self.written.iter().all(|&w| w),
            "every channel of the concatenation was written"
        );
        let mut values = std::mem::ManuallyDrop::new(self.values);
        // SAFETY: every channel of every image was written (checked above); `MaybeUninit<f32>`
        // has the layout of `f32`, and the allocation moves over whole.
        let values = unsafe {
            Vec::from_raw_parts(
                values.as_mut_ptr().cast::<f32>(),
                values.len(),
                values.capacity(),
            )
        };
        flex(values, self.dims.to_vec())
    }
}
