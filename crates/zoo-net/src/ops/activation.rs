//! The activations: element-wise functions of one value (PRelu's slope is a parameter).

use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use zoo_onnx::ops::Activation;

use super::{binary, Cx};
use crate::exec::{Value, PADDED};

pub(crate) fn run<B: Backend>(op: &Activation, cx: &Cx<B>) -> Value<B> {
    let Value { t, rank } = cx.get(0);
    let y = match *op {
        Activation::Relu => activation::relu(t),
        Activation::LeakyRelu { alpha } => activation::leaky_relu(t, alpha as f64),
        Activation::Sigmoid => activation::sigmoid(t),
        Activation::Tanh => activation::tanh(t),
        Activation::Clip { min, max } => match (min.is_finite(), max.is_finite()) {
            // Not `clamp`: ONNX sets everything to `max` when min > max; clamp would panic.
            (true, true) => t.clamp_min(min).clamp_max(max),
            (true, false) => t.clamp_min(min),
            (false, true) => t.clamp_max(max),
            (false, false) => t,
        },
        Activation::HardSigmoid { alpha, beta } => (t * alpha as f64 + beta as f64).clamp(0.0, 1.0),
        Activation::HardSwish => t.clone() * (t / 6.0 + 0.5).clamp(0.0, 1.0),
        Activation::Elu { alpha } => elu(t, alpha as f64),
        Activation::Selu { alpha, gamma } => elu(t, alpha as f64) * gamma as f64,
        Activation::Softplus => activation::softplus(t, 1.0),
        Activation::Gelu { tanh: false } => {
            crate::kernels::gelu::gelu(&t).unwrap_or_else(|| activation::gelu(t))
        }
        Activation::Gelu { tanh: true } => {
            // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
            let inner = (t.clone() + t.clone().powi_scalar(3) * 0.044_715)
                * (2.0 / std::f64::consts::PI).sqrt();
            t * (activation::tanh(inner) + 1.0) * 0.5
        }
        Activation::PRelu => {
            let x = Value::new(t, rank);
            return binary(x, cx.get(1), |x, s| {
                x.clone().clamp_min(0.0) + x.clamp_max(0.0) * s
            });
        }
    };
    Value::new(y, rank)
}

/// `x` where positive, `alpha (e^x - 1)` elsewhere (`min(x, 0)` keeps `exp` finite).
fn elu<B: Backend>(t: Tensor<B, PADDED>, alpha: f64) -> Tensor<B, PADDED> {
    t.clone().clamp_min(0.0) + (t.clamp_max(0.0).exp() - 1.0) * alpha
}
