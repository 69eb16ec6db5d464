//! Element-wise activations of one tensor (PRelu's slope is a learnable second input).

use std::sync::Arc;

use super::{Attrs, Op, OpDef, Parsed, Settings};
use crate::error::Result;
use crate::shapes::{broadcast, ShapeCx};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Sigmoid,
    Tanh,
    /// `min(max(x, min), max)`; ReLU6 is `Clip(0, 6)`. Opset 11 moved the bounds to inputs.
    Clip {
        min: f32,
        max: f32,
    },
    /// `max(0, min(1, alpha x + beta))`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x * HardSigmoid(x)` with alpha 1/6, beta 0.5.
    HardSwish,
    Elu {
        alpha: f32,
    },
    Selu {
        alpha: f32,
        gamma: f32,
    },
    /// `ln(1 + e^x)`.
    Softplus,
    /// `x` where positive, `slope * x` elsewhere; the slope (input 1) is a learnable parameter.
    PRelu,
}

pub(crate) const OPS: &[OpDef] = &[
    OpDef::new("Relu", |_, _| run(Activation::Relu)),
    OpDef::new("LeakyRelu", |a, _| {
        run(Activation::LeakyRelu {
            alpha: a.float("alpha", 0.01)?,
        })
    }),
    OpDef::new("Sigmoid", |_, _| run(Activation::Sigmoid)),
    OpDef::new("Tanh", |_, _| run(Activation::Tanh)),
    OpDef::new("Clip", clip).moved(11, &[("min", true), ("max", true)]),
    OpDef::new("HardSigmoid", |a, _| {
        run(Activation::HardSigmoid {
            alpha: a.float("alpha", 0.2)?,
            beta: a.float("beta", 0.5)?,
        })
    }),
    OpDef::new("HardSwish", |_, _| run(Activation::HardSwish)).since(14),
    OpDef::new("Elu", |a, _| {
        run(Activation::Elu {
            alpha: a.float("alpha", 1.0)?,
        })
    }),
    OpDef::new("Selu", |a, _| {
        run(Activation::Selu {
            alpha: a.float("alpha", 1.673_263_2)?,
            gamma: a.float("gamma", 1.050_701)?,
        })
    }),
    OpDef::new("Softplus", |_, _| run(Activation::Softplus)),
    OpDef::new("PRelu", |_, _| run(Activation::PRelu)),
];

fn run(op: Activation) -> Result<Parsed> {
    Ok(Parsed::Run(Op::Activation(op)))
}

/// The bounds are attributes before opset 11 and inputs 1 and 2 from it.
fn clip(a: &Attrs, _: i64) -> Result<Parsed> {
    let min = a.float("min", f32::NEG_INFINITY)?;
    let max = a.float("max", f32::INFINITY)?;
    Ok(Parsed::Bake(Arc::new(move |s: &Settings| {
        Ok(Op::Activation(Activation::Clip {
            min: s.scalar(1, "minimum")?.unwrap_or(min),
            max: s.scalar(2, "maximum")?.unwrap_or(max),
        }))
    })))
}

impl Activation {
    pub fn onnx_type(&self) -> &'static str {
        match self {
            Activation::Relu => "Relu",
            Activation::LeakyRelu { .. } => "LeakyRelu",
            Activation::Sigmoid => "Sigmoid",
            Activation::Tanh => "Tanh",
            Activation::Clip { .. } => "Clip",
            Activation::HardSigmoid { .. } => "HardSigmoid",
            Activation::HardSwish => "HardSwish",
            Activation::Elu { .. } => "Elu",
            Activation::Selu { .. } => "Selu",
            Activation::Softplus => "Softplus",
            Activation::PRelu => "PRelu",
        }
    }

    pub(crate) fn is_setting_input(&self, index: usize) -> bool {
        matches!(self, Activation::Clip { .. }) && index >= 1
    }

    pub(crate) fn infer(&self, cx: &mut ShapeCx) -> Result<Vec<usize>> {
        let x = cx.dims(0)?;
        if *self == Activation::PRelu {
            let slope = cx.dims(1)?;
            if broadcast(&x, &slope).as_deref() != Some(&x[..]) {
                return Err(cx.err(format!("slope {slope:?} does not broadcast to {x:?}")));
            }
        }
        Ok(x)
    }
}
