//! Host access to tensors without copies on burn's `flex` CPU backend, and fused CPU kernels for
//! ops that flex runs as chains of single-threaded element-wise passes. The kernels are used
//! only when the backend is `Flex` itself (inference: feature caching, validation, parity
//! runs); autodiff and GPU backends take the generic tensor path, and tests hold the two paths
//! to the same results.

use std::any::{Any, TypeId};

use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use burn_flex::FlexTensor;
use rayon::prelude::*;

/// The flex tensor behind `x` (shared, not copied) when the backend is `Flex` and `x` is f32;
/// `None` sends the caller to the generic path. Its `as_slice` is `None` unless contiguous.
fn host_tensor<B: Backend, const D: usize>(x: &Tensor<B, D>) -> Option<FlexTensor> {
    if TypeId::of::<B>() != TypeId::of::<Flex>() || x.dtype() != DType::F32 {
        return None;
    }
    let primitive: Box<dyn Any> = Box::new(x.clone().into_primitive().tensor());
    primitive.downcast::<FlexTensor>().ok().map(|t| *t)
}

/// Calls `f` with the f32 values of `x`: borrowed on flex, read back to the host elsewhere.
pub fn with_values<B: Backend, const D: usize, R>(
    x: &Tensor<B, D>,
    f: impl FnOnce(&[f32]) -> R,
) -> R {
    if let Some(flex) = host_tensor(x) {
        if let Some(values) = flex.as_slice::<f32>() {
            return f(values);
        }
    }
    let data = x.to_data().convert::<f32>();
    f(data.as_slice::<f32>().expect("converted to f32"))
}

/// Updates the f32 values of `x` with `f` and returns the tensor. On flex this happens in place
/// when nothing else shares the tensor (a copy is made first when something does); elsewhere
/// the values make a round trip through the host.
pub fn update_values<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    f: impl FnOnce(&mut [f32]),
) -> Tensor<B, D> {
    let device = x.device();
    let shape = x.shape();
    if TypeId::of::<B>() == TypeId::of::<Flex>() && x.dtype() == DType::F32 {
        let boxed: Box<dyn Any> = Box::new(x.into_primitive().tensor());
        let mut flex = *boxed
            .downcast::<FlexTensor>()
            .expect("B is Flex, so its float primitive is FlexTensor");
        if flex.layout().contiguous_offsets() != Some((0, shape.num_elements())) {
            flex = flex.to_contiguous();
        }
        f(&mut flex.storage_mut::<f32>()[..shape.num_elements()]);
        let boxed: Box<dyn Any> = Box::new(flex);
        let primitive = *boxed
            .downcast::<B::FloatTensorPrimitive>()
            .expect("B is Flex");
        return Tensor::from_primitive(TensorPrimitive::Float(primitive));
    }
    let mut values = x
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("converted to f32");
    f(&mut values);
    Tensor::from_data(TensorData::new(values, shape), &device)
}

/// `d^-beta`, with beta = 0.75 (every Caffe-era LRN) as two square roots instead of `powf`.
#[inline(always)]
fn inverse_power(d: f32, beta: f32) -> f32 {
    if beta == 0.75 {
        let root = d.sqrt();
        1.0 / (root * root.sqrt())
    } else {
        d.powf(-beta)
    }
}

/// An LRN's settings as its planes use them.
struct Lrn {
    channels: usize,
    plane: usize,
    /// Channels of the window before and after the output's own.
    before: usize,
    after: usize,
    /// `alpha / size`.
    scale: f32,
    beta: f32,
    bias: f32,
}

/// Local response normalisation across channels, one output plane per task, nothing zeroed
/// or allocated per plane (a fresh sum buffer per plane and the baseline-only loops made
/// AlexNet's two LRNs 0.9 ms of a 21 ms batch-1 forward).
pub(crate) fn lrn<B: Backend>(
    x: &Tensor<B, 4>,
    size: usize,
    alpha: f32,
    beta: f32,
    bias: f32,
) -> Option<Tensor<B, 4>> {
    let input = host_tensor(x)?;
    let values = input.as_slice::<f32>()?;
    let [_, c, h, w] = x.dims();
    let settings = Lrn {
        channels: c,
        plane: h * w,
        before: (size - 1) / 2,
        after: size / 2,
        scale: alpha / size as f32,
        beta,
        bias,
    };
    // SAFETY: `lrn_plane` writes every value of its plane.
    let out = unsafe {
        crate::flex_autodiff::par_fill(
            values.len(),
            settings.plane,
            Vec::new,
            |index, sums, out| lrn_plane(&settings, values, index, sums, out),
        )
    };
    let y = crate::flex_autodiff::flex(out, x.dims().to_vec());
    let y = Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(y));
    Some(crate::flex_autodiff::cast::<Flex, B, 4>(y))
}

crate::simd::wide_kernel! {
    /// Output plane `index` (image `index / channels`, channel `index % channels`): each value
    /// times `(bias + scale * sum of squares over the channel window)^-beta`.
    fn lrn_plane(
        lrn: &Lrn,
        values: &[f32],
        index: usize,
        sums: &mut Vec<f32>,
        out: &mut [std::mem::MaybeUninit<f32>],
    ) {
        let (image, channel, plane) = (index / lrn.channels, index % lrn.channels, lrn.plane);
        let first = channel.saturating_sub(lrn.before);
        let last = (channel + lrn.after).min(lrn.channels - 1);
        let at = |ch: usize| &values[(image * lrn.channels + ch) * plane..][..plane];
        sums.clear();
        sums.resize(plane, 0.0);
        for ch in first..=last {
            for (sum, v) in sums.iter_mut().zip(at(ch)) {
                *sum += v * v;
            }
        }
        for ((o, v), sum) in out.iter_mut().zip(at(channel)).zip(sums.iter()) {
            o.write(v * inverse_power(lrn.bias + lrn.scale * sum, lrn.beta));
        }
    }
}

/// `x + b` where `b` holds one value per channel (`[1, C, 1, 1]`, the bias that CNTK-style
/// exports add after a bias-free Conv); flex broadcasts this element by element on one core.
pub(crate) fn add_per_channel<B: Backend>(
    x: &Tensor<B, 4>,
    bias: &Tensor<B, 4>,
) -> Option<Tensor<B, 4>> {
    let [_, c, h, w] = x.dims();
    if bias.dims() != [1, c, 1, 1] {
        return None;
    }
    let input = host_tensor(x)?;
    let values = input.as_slice::<f32>()?;
    let bias = host_tensor(bias)?;
    let bias = bias.as_slice::<f32>()?;
    let mut out = vec![0.0f32; values.len()];
    out.par_chunks_mut(h * w)
        .zip(values.par_chunks(h * w))
        .enumerate()
        .for_each(|(plane, (out, input))| {
            let b = bias[plane % c];
            for (o, v) in out.iter_mut().zip(input) {
                *o = v + b;
            }
        });
    Some(Tensor::from_data(
        TensorData::new(out, x.dims()),
        &x.device(),
    ))
}

/// Batch normalisation with running statistics (inference), fused: one pass computing
/// `x * scale[c] + shift[c]` per plane on all cores, where flex would broadcast a multiply and
/// an add through strided iterators (62 % of a LeNet-5 validation pass).
pub(crate) fn batch_norm_inference<B: Backend>(
    x: &Tensor<B, 4>,
    [scale, bias, mean, var]: [&Tensor<B, 1>; 4],
    epsilon: f32,
) -> Option<Tensor<B, 4>> {
    let [_, c, h, w] = x.dims();
    let input = host_tensor(x)?;
    let values = input.as_slice::<f32>()?;
    let read = |t: &Tensor<B, 1>| with_values(t, |v| v.to_vec());
    let (scale, bias, mean, var) = (read(scale), read(bias), read(mean), read(var));
    if [scale.len(), bias.len(), mean.len(), var.len()] != [c; 4] {
        return None;
    }
    let inv_std: Vec<f32> = (0..c)
        .map(|k| scale[k] / (var[k] + epsilon).sqrt())
        .collect();
    let shift: Vec<f32> = (0..c).map(|k| bias[k] - mean[k] * inv_std[k]).collect();
    let mut out = vec![0.0f32; values.len()];
    out.par_chunks_mut((h * w).max(1))
        .zip(values.par_chunks((h * w).max(1)))
        .enumerate()
        .for_each(|(plane, (out, input))| {
            let (a, b) = (inv_std[plane % c], shift[plane % c]);
            for (o, v) in out.iter_mut().zip(input) {
                *o = v * a + b;
            }
        });
    Some(Tensor::from_data(
        TensorData::new(out, x.dims()),
        &x.device(),
    ))
}
