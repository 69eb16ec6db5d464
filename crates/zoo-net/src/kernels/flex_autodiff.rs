//! Plumbing shared by zoo's own training ops on `Autodiff<Flex>` (`conv`, `batch_norm`): the
//! backend check by type, and flex tensors to and from host values.

use std::any::Any;
use std::mem::MaybeUninit;

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;

/// The training backend zoo's own ops serve.
pub(crate) type Trained = Autodiff<Flex>;

/// The same tensor seen as a tensor of backend `To` (the caller checked `From` is `To`).
pub(crate) fn cast<From: Backend, To: Backend, const D: usize>(
    t: Tensor<From, D>,
) -> Tensor<To, D> {
    let boxed: Box<dyn Any> = Box::new(t);
    *boxed
        .downcast::<Tensor<To, D>>()
        .expect("checked: the two backends are one type")
}

/// The f32 values of a flex tensor, contiguous (copied only when it is a strided view).
pub(crate) fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The values of a tensor made `contiguous`.
pub(crate) fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("made contiguous")
}

pub(crate) fn flex(values: Vec<f32>, dims: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, dims))
}

/// `len` values made in chunks of `chunk` on all cores: `fill(index, scratch, dst)` writes
/// chunk `index`, with `scratch` from `init` once per task. Nothing is zeroed first: that
/// serial `memset` of each fresh output was 8 % of a SqueezeNet evaluate.
///
/// # Safety
/// `fill` must write every value of every `dst` it is given.
pub(crate) unsafe fn par_fill<S>(
    len: usize,
    chunk: usize,
    init: impl Fn() -> S + Sync + Send,
    fill: impl Fn(usize, &mut S, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    let mut out = uninit(len);
    out.par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each_init(init, |scratch, (i, dst)| fill(i, scratch, dst));
    // SAFETY: every value was written (the caller's promise).
    unsafe { assume_written(out) }
}

/// `len` values not yet written (nothing is zeroed: see [`par_fill`]).
pub(crate) fn uninit(len: usize) -> Vec<MaybeUninit<f32>> {
    let mut out: Vec<MaybeUninit<f32>> = Vec::with_capacity(len);
    // SAFETY: `MaybeUninit` values need no initialisation.
    unsafe { out.set_len(len) };
    out
}

/// The values of `out` once every one is written.
///
/// # Safety
/// Every value of `out` must have been written.
pub(crate) unsafe fn assume_written(out: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut out = std::mem::ManuallyDrop::new(out);
    // SAFETY: the caller's promise; `MaybeUninit<f32>` has the layout of `f32`, and the
    // allocation moves over whole.
    unsafe { Vec::from_raw_parts(out.as_mut_ptr().cast::<f32>(), out.len(), out.capacity()) }
}

/// A chunk `par_fill` handed out, once its every value is written.
///
/// # Safety
/// Every value of `dst` must have been written.
pub(crate) unsafe fn written(dst: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: the caller's promise; `MaybeUninit<f32>` has the layout of `f32`.
    unsafe { &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// [`par_fill`] with each chunk zeroed by its own task just before `fill` (in cache, on every
/// core: a fresh `vec![0.0; len]` is one core's `memset` while the others wait, 5 % of a
/// LeNet-5 step), so `fill` may leave values as zero.
pub(crate) fn par_zeroed<S>(
    len: usize,
    chunk: usize,
    init: impl Fn() -> S + Sync + Send,
    fill: impl Fn(usize, &mut S, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let zero_then_fill = |i: usize, scratch: &mut S, dst: &mut [MaybeUninit<f32>]| {
        dst.fill(MaybeUninit::new(0.0));
        // SAFETY: every value was just written.
        fill(i, scratch, unsafe { written(dst) });
    };
    // SAFETY: `zero_then_fill` writes every value of its chunk first.
    unsafe { par_fill(len, chunk, init, zero_then_fill) }
}

/// The gradient before a fused ReLU, from the one after it and the ReLU's output: it passes
/// where the output is positive (the ReLU's own rule).
pub(crate) fn relu_backward(grad: &[f32], output: &[f32]) -> Vec<f32> {
    const CHUNK: usize = 1 << 14;
    par_zeroed(
        grad.len(),
        CHUNK,
        || (),
        |i, _, masked| {
            let (g, y) = (&grad[i * CHUNK..], &output[i * CHUNK..]);
            for ((m, &g), &y) in masked.iter_mut().zip(g).zip(y) {
                *m = if y > 0.0 { g } else { 0.0 };
            }
        },
    )
}
