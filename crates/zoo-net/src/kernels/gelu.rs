//! Exact GELU, `x * Phi(x)`, on all cores: on flex, and on `Autodiff<Flex>` with its backward
//! (`g * (Phi(x) + x * phi(x))` from the saved input). burn's flex GELU is one pass on one
//! core calling libm's scalar `erff` (then 6 % of a ViT-tiny training run, perf); a ViT's MLP
//! applies it to four times the width of its tokens in every block. Here `Phi` comes from one
//! exponential that the backward's `phi` shares, in branch-free arithmetic the compiler
//! vectorises (Abramowitz and Stegun 7.1.26: `Phi` within 3e-7 of f64's, a few f32 steps near
//! 1; written so the lower tail has no cancellation).

use std::any::TypeId;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_flex::FlexTensor;

use crate::flex_autodiff::{cast, contiguous, flex, par_fill, values, Trained};
use crate::kernels::fast_math::{exp_nonpositive, mul_add};

/// Values per task.
const CHUNK: usize = 1 << 14;

/// `Phi(x)` (the standard normal distribution function) and `phi(x)` (its density).
#[inline(always)]
fn cdf_pdf<const FUSED: bool>(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let e = exp_nonpositive::<FUSED>(-z * z);
    let fma = mul_add::<FUSED>;
    let t = 1.0 / fma(P, z, 1.0);
    let poly = t * [A[3], A[2], A[1], A[0]]
        .iter()
        .fold(A[4], |acc, &a| fma(acc, t, a));
    // 1 - erf(|z|), halved: Phi of the lower tail, without taking it from 1.
    let tail = 0.5 * poly * e;
    let cdf = if x < 0.0 { tail } else { 1.0 - tail };
    (cdf, e * INV_SQRT_2PI)
}

const INV_SQRT_2PI: f32 = 0.398_942_3;

crate::simd::wide_kernel! {
    /// `x * Phi(x)` of every value of `x` into `out`.
    fn gelu_values(x: &[f32], out: &mut [std::mem::MaybeUninit<f32>]) {
        for (o, &v) in out.iter_mut().zip(x) {
            o.write(v * cdf_pdf::<FUSED_MULTIPLY_ADD>(v).0);
        }
    }
}

crate::simd::wide_kernel! {
    /// The gradient before GELU from the one after it, `g * (Phi(x) + x * phi(x))`.
    fn gelu_gradient(g: &[f32], x: &[f32], out: &mut [std::mem::MaybeUninit<f32>]) {
        for ((o, &g), &v) in out.iter_mut().zip(g).zip(x) {
            let (cdf, pdf) = cdf_pdf::<FUSED_MULTIPLY_ADD>(v);
            o.write(g * mul_add::<FUSED_MULTIPLY_ADD>(v, pdf, cdf));
        }
    }
}

/// GELU of every value of `x`, on flex and `Autodiff<Flex>` with f32 values; `None` elsewhere.
pub fn gelu<B: Backend, const D: usize>(x: &Tensor<B, D>) -> Option<Tensor<B, D>> {
    if x.dtype() != DType::F32 {
        return None;
    }
    if TypeId::of::<B>() == TypeId::of::<Flex>() {
        let xv = contiguous(cast::<B, Flex, D>(x.clone()).into_primitive().tensor());
        let y = gelu_all(values(&xv));
        let y = flex(y, xv.layout().shape().to_vec());
        let y = Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(y));
        return Some(cast::<Flex, B, D>(y));
    }
    if TypeId::of::<B>() != TypeId::of::<Trained>() {
        return None;
    }
    let xt = cast::<B, Trained, D>(x.clone()).into_primitive().tensor();
    let xv = contiguous(xt.primitive.clone());
    let y = flex(gelu_all(values(&xv)), xv.layout().shape().to_vec());
    let out = match GeluBackward
        .prepare::<NoCheckpointing>([xt.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(xv, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    let y = Tensor::<Trained, D>::from_primitive(TensorPrimitive::Float(out));
    Some(cast::<Trained, B, D>(y))
}

/// GELU of every value, on all cores.
fn gelu_all(x: &[f32]) -> Vec<f32> {
    // SAFETY: `gelu_values` writes every value of every chunk.
    unsafe {
        par_fill(
            x.len(),
            CHUNK,
            || (),
            |i, _, dst| gelu_values(&x[i * CHUNK..], dst),
        )
    }
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    /// The input.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents.map(|p| p.map(|node| node.id));
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let Some(id) = parent else { return };
        let (g, x) = (values(&grad), values(&ops.state));
        // SAFETY: `gelu_gradient` writes every value of every chunk.
        let dx = unsafe {
            par_fill(
                x.len(),
                CHUNK,
                || (),
                |i, _, dst| gelu_gradient(&g[i * CHUNK..], &x[i * CHUNK..], dst),
            )
        };
        grads.register::<Flex>(id, flex(dx, ops.state.layout().shape().to_vec()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_flex::ops::unary::erf_f64;

    /// `Phi` and `phi` with and without fused multiply-adds (the wide kernels' two kinds).
    fn within_rounding_of_f64<const FUSED: bool>() {
        let (mut worst_cdf, mut worst_pdf) = (0.0f64, 0.0f64);
        for i in -12_000..=12_000 {
            let x = i as f32 * 1e-3;
            let (cdf, pdf) = cdf_pdf::<FUSED>(x);
            let xd = x as f64;
            let exact_cdf = 0.5 * (1.0 + erf_f64(xd / std::f64::consts::SQRT_2));
            let exact_pdf = (-0.5 * xd * xd).exp() / (2.0 * std::f64::consts::PI).sqrt();
            worst_cdf = worst_cdf.max((cdf as f64 - exact_cdf).abs());
            worst_pdf = worst_pdf.max((pdf as f64 - exact_pdf).abs());
        }
        assert!(worst_cdf < 4e-7, "Phi off by {worst_cdf} (fused {FUSED})");
        assert!(worst_pdf < 1e-7, "phi off by {worst_pdf} (fused {FUSED})");
        let far_left = cdf_pdf::<FUSED>(-200.0).0;
        assert!((0.0..1e-30).contains(&far_left), "{far_left}");
        assert_eq!(cdf_pdf::<FUSED>(200.0).0, 1.0);
        assert!(cdf_pdf::<FUSED>(f32::NAN).0.is_nan(), "NaN stays NaN");
        assert_eq!(cdf_pdf::<FUSED>(f32::INFINITY).0, 1.0);
    }

    #[test]
    fn phi_and_its_density_are_within_f32_rounding_of_f64() {
        within_rounding_of_f64::<false>();
        within_rounding_of_f64::<true>();
    }
}
