//! Element-wise activations of one tensor (PRelu's slope is a learnable second input).

use std::sync::Arc;

use super::chain::Chain;
use super::{node_err, Attrs, InputOf, Math, Op, OpDef, Parsed, Settings, Unary};
use crate::error::Result;
use crate::graph::Node;
use crate::host::{elementwise, Num};
use crate::shapes::{broadcast, ShapeCx};
use crate::tensor::Constant;

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
    /// `x * Phi(x)` (opset 20), or its tanh approximation.
    Gelu {
        tanh: bool,
    },
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
    OpDef::new("Gelu", gelu).since(20),
];

fn gelu(a: &Attrs, _: i64) -> Result<Parsed> {
    let tanh = match a.string("approximate")?.as_deref() {
        None | Some("none") => false,
        Some("tanh") => true,
        Some(other) => {
            return Err(a.err(format!(
                "approximate `{other}` is not one of `none`, `tanh`"
            )))
        }
    };
    run(Activation::Gelu { tanh })
}

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
            Activation::Gelu { .. } => "Gelu",
        }
    }

    pub(crate) fn is_setting_input(&self, index: usize) -> bool {
        matches!(self, Activation::Clip { .. }) && index >= 1
    }

    /// Clip and Relu fold through shape arithmetic (TF-style padding is
    /// `max((ceil(size / stride) - 1) * stride + kernel - size, 0)`).
    pub(crate) fn is_shape_arithmetic(&self) -> bool {
        matches!(self, Activation::Clip { .. } | Activation::Relu)
    }

    pub(crate) fn evaluate(&self, node: &Node, input: InputOf) -> Option<Result<Constant>> {
        let (min, max) = match *self {
            Activation::Clip { min, max } => (min, max),
            Activation::Relu => (0.0, f32::INFINITY),
            _ => return None,
        };
        let clip = move |v: &[Num]| {
            Ok(match v[0] {
                Num::F(x) => Num::F(x.max(min).min(max)),
                // Integer bounds come as floats; they are whole numbers when given.
                Num::I(x) => Num::I((x as f64).max(min as f64).min(max as f64) as i64),
            })
        };
        Some(input(0).and_then(|x| elementwise(&[x], clip).map_err(node_err(node))))
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

/// Before opset 20 exporters write exact GELU as `x * 0.5 * (1 + Erf(x / sqrt(2)))` (or with
/// `Mul(x, 1/sqrt(2))`, and the half taken first): five element-wise nodes, each a pass over
/// the activations and a saved tensor in training. Each chain becomes one `Gelu` node: the
/// fused node and the nodes it replaces, when node `k` is the chain's `x / sqrt(2)`.
pub(super) fn match_erf_gelu(chain: &Chain, k: usize) -> Option<(Node, Vec<usize>)> {
    const SQRT_2: f32 = std::f32::consts::SQRT_2;
    let near = |v: Option<f32>, want: f32| v.is_some_and(|v| (v - want).abs() <= 1e-6 * want);
    let node = &chain.nodes[k];
    let x = node.input(0)?;
    let divisor = chain.scalar(node.input(1)?);
    let scaled = (chain.is(k, &Math::Div) && near(divisor, SQRT_2))
        || (chain.is(k, &Math::Mul) && near(divisor, 1.0 / SQRT_2));
    let erf = chain.only(chain.out(k)).filter(|_| scaled)?;
    let add = chain.only(chain.out(erf))?;
    let one = chain.scalar(&chain.other(add, chain.out(erf))?);
    if !chain.is(erf, &Math::Unary(Unary::Erf)) || !chain.is(add, &Math::Add) || one != Some(1.0) {
        return None;
    }
    let times = chain
        .only(chain.out(add))
        .filter(|&i| chain.is(i, &Math::Mul))?;
    let other = chain.other(times, chain.out(add))?;
    let half_of = |i: usize, value: &str| {
        chain.is(i, &Math::Mul) && chain.other(i, value).and_then(|v| chain.scalar(&v)) == Some(0.5)
    };
    let mut matched = vec![k, erf, add, times];
    if other == x {
        // (x * (1 + erf)) * 0.5
        let half = chain
            .only(chain.out(times))
            .filter(|&i| half_of(i, chain.out(times)))?;
        matched.push(half);
    } else {
        // (x * 0.5) * (1 + erf)
        let half = chain
            .nodes
            .iter()
            .position(|n| n.outputs.first() == Some(&other))?;
        let takes_x = chain.nodes[half].inputs.iter().any(|v| v == x);
        if !takes_x || !half_of(half, x) || chain.only(&other) != Some(times) {
            return None;
        }
        matched.push(half);
    }
    let last = *matched.iter().max().expect("matched nodes");
    let fused = Node {
        name: chain.nodes[last].name.clone(),
        label: chain.nodes[last].label.clone(),
        op: Op::Activation(Activation::Gelu { tanh: false }),
        inputs: vec![x.to_string()],
        outputs: vec![chain.out(last).to_string()],
    };
    Some((fused, matched))
}
