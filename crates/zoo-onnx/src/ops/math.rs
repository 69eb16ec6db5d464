//! Arithmetic: the element-wise binary ops (Add, Sub, Mul, Div, Pow, Mod), the element-wise
//! functions of one tensor (Neg, Abs, Exp, Log, Sqrt, Reciprocal, Ceil, Floor, Erf), the
//! variadic reductions (Sum, Mean, Max, Min) and reductions over axes (ReduceMean, ReduceMax,
//! ReduceMin, ReduceSum).

use std::sync::Arc;

use super::{node_err, Attrs, InputOf, Op, OpDef, Parsed, Settings};
use crate::error::Result;
use crate::graph::Node;
use crate::host::{elementwise, Num};
use crate::shapes::{broadcast, reduce_axes, ShapeCx};
use crate::tensor::Constant;

/// Element-wise reductions over any number of broadcast inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variadic {
    Sum,
    Mean,
    Max,
    Min,
}

/// Reductions over axes of one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    Mean,
    Max,
    Min,
    Sum,
}

/// Element-wise functions of one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    Neg,
    Abs,
    Exp,
    Log,
    Sqrt,
    Reciprocal,
    Ceil,
    Floor,
    Erf,
}

impl Unary {
    const ALL: [(Unary, &'static str); 9] = [
        (Unary::Neg, "Neg"),
        (Unary::Abs, "Abs"),
        (Unary::Exp, "Exp"),
        (Unary::Log, "Log"),
        (Unary::Sqrt, "Sqrt"),
        (Unary::Reciprocal, "Reciprocal"),
        (Unary::Ceil, "Ceil"),
        (Unary::Floor, "Floor"),
        (Unary::Erf, "Erf"),
    ];

    pub fn onnx_type(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(u, _)| *u == self)
            .map(|(_, n)| *n)
            .expect("every function is listed")
    }

    /// Whether shape arithmetic folds through it (timm's TF-style padding computes
    /// `ceil(size / stride)` from the input's shape).
    fn folds(self) -> bool {
        !matches!(self, Unary::Exp | Unary::Log | Unary::Erf)
    }

    /// The function on one element at import.
    fn host(self, x: Num) -> std::result::Result<Num, String> {
        Ok(match (self, x) {
            (Unary::Neg, Num::I(v)) => Num::I(v.checked_neg().ok_or("integer overflow")?),
            (Unary::Abs, Num::I(v)) => Num::I(v.checked_abs().ok_or("integer overflow")?),
            (Unary::Ceil | Unary::Floor, Num::I(v)) => Num::I(v),
            (_, Num::I(_)) => return Err(format!("{} of an integer", self.onnx_type())),
            (_, Num::F(v)) => Num::F(match self {
                Unary::Neg => -v,
                Unary::Abs => v.abs(),
                Unary::Sqrt => v.sqrt(),
                Unary::Reciprocal => 1.0 / v,
                Unary::Ceil => v.ceil(),
                Unary::Floor => v.floor(),
                Unary::Exp | Unary::Log | Unary::Erf => {
                    return Err(format!("{} is not folded", self.onnx_type()))
                }
            }),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Math {
    Add,
    Sub,
    Mul,
    Div,
    /// `x ^ y`, the exponent broadcast (and often a constant 2 or 0.5).
    Pow,
    /// The remainder: with the divisor's sign, or the dividend's when `fmod` (C `fmod`).
    Mod {
        fmod: bool,
    },
    Unary(Unary),
    Variadic(Variadic),
    /// `axes: None` reduces every axis (or none, with `noop_with_empty_axes`).
    Reduce {
        kind: Reduction,
        axes: Option<Vec<i64>>,
        keepdims: bool,
        noop_with_empty_axes: bool,
    },
}

pub(crate) const OPS: &[OpDef] = &[
    OpDef::new("Add", |a, _| binary(a, Math::Add)),
    OpDef::new("Sub", |a, _| binary(a, Math::Sub)),
    OpDef::new("Mul", |a, _| binary(a, Math::Mul)),
    OpDef::new("Div", |a, _| binary(a, Math::Div)),
    OpDef::new("Pow", |a, _| binary(a, Math::Pow)),
    OpDef::new("Mod", |a, _| {
        run(Math::Mod {
            fmod: a.int("fmod", 0)? != 0,
        })
    })
    .since(10),
    OpDef::new("Neg", |_, _| unary(Unary::Neg)),
    OpDef::new("Abs", |_, _| unary(Unary::Abs)),
    OpDef::new("Exp", |_, _| unary(Unary::Exp)),
    OpDef::new("Log", |_, _| unary(Unary::Log)),
    OpDef::new("Sqrt", |_, _| unary(Unary::Sqrt)),
    OpDef::new("Reciprocal", |_, _| unary(Unary::Reciprocal)),
    OpDef::new("Ceil", |_, _| unary(Unary::Ceil)),
    OpDef::new("Floor", |_, _| unary(Unary::Floor)),
    OpDef::new("Erf", |_, _| unary(Unary::Erf)).since(9),
    OpDef::new("Sum", |_, _| run(Math::Variadic(Variadic::Sum))),
    OpDef::new("Mean", |_, _| run(Math::Variadic(Variadic::Mean))),
    OpDef::new("Max", |_, _| run(Math::Variadic(Variadic::Max))),
    OpDef::new("Min", |_, _| run(Math::Variadic(Variadic::Min))),
    OpDef::new("ReduceMean", |a, _| reduce(a, Reduction::Mean)).moved(18, &[("axes", false)]),
    OpDef::new("ReduceMax", |a, _| reduce(a, Reduction::Max)).moved(18, &[("axes", false)]),
    OpDef::new("ReduceMin", |a, _| reduce(a, Reduction::Min)).moved(18, &[("axes", false)]),
    OpDef::new("ReduceSum", |a, _| reduce(a, Reduction::Sum)).moved(13, &[("axes", false)]),
];

fn unary(f: Unary) -> Result<Parsed> {
    run(Math::Unary(f))
}

fn run(op: Math) -> Result<Parsed> {
    Ok(Parsed::Run(Op::Math(op)))
}

fn binary(a: &Attrs, op: Math) -> Result<Parsed> {
    // Opsets before 7 needed `broadcast=1` + `axis`; from 7 on broadcasting is numpy-style.
    if a.has("axis") || a.has("broadcast") {
        return Err(a.err("legacy `axis` broadcasting (opset < 7) is not supported"));
    }
    run(op)
}

/// Opset 18 moved `axes` to input 1 (ReduceSum: opset 13).
fn reduce(a: &Attrs, kind: Reduction) -> Result<Parsed> {
    let (axes, keepdims) = (a.ints("axes")?, a.int("keepdims", 1)? != 0);
    let noop_with_empty_axes = a.int("noop_with_empty_axes", 0)? != 0;
    Ok(Parsed::Bake(Arc::new(move |s: &Settings| {
        Ok(Op::Math(Math::Reduce {
            kind,
            axes: s.ints(1, "axes")?.or_else(|| axes.clone()),
            keepdims,
            noop_with_empty_axes,
        }))
    })))
}

impl Math {
    pub fn onnx_type(&self) -> &'static str {
        match self {
            Math::Add => "Add",
            Math::Sub => "Sub",
            Math::Mul => "Mul",
            Math::Div => "Div",
            Math::Pow => "Pow",
            Math::Mod { .. } => "Mod",
            Math::Unary(f) => f.onnx_type(),
            Math::Variadic(Variadic::Sum) => "Sum",
            Math::Variadic(Variadic::Mean) => "Mean",
            Math::Variadic(Variadic::Max) => "Max",
            Math::Variadic(Variadic::Min) => "Min",
            Math::Reduce { kind, .. } => match kind {
                Reduction::Mean => "ReduceMean",
                Reduction::Max => "ReduceMax",
                Reduction::Min => "ReduceMin",
                Reduction::Sum => "ReduceSum",
            },
        }
    }

    /// The binary and variadic ops.
    pub(crate) fn is_element_wise(&self) -> bool {
        matches!(
            self,
            Math::Add | Math::Sub | Math::Mul | Math::Div | Math::Variadic(_)
        )
    }

    /// Reduce's axes, and Pow's exponent (a constant 2 or 0.5 in exported LayerNorms, never
    /// a parameter).
    pub(crate) fn is_setting_input(&self, index: usize) -> bool {
        matches!(self, Math::Reduce { .. } | Math::Pow) && index >= 1
    }

    pub(crate) fn is_shape_arithmetic(&self) -> bool {
        match self {
            Math::Add | Math::Sub | Math::Mul | Math::Div | Math::Pow | Math::Mod { .. } => true,
            Math::Unary(f) => f.folds(),
            Math::Variadic(_) | Math::Reduce { .. } => false,
        }
    }

    pub(crate) fn infer(&self, cx: &mut ShapeCx) -> Result<Vec<usize>> {
        match self {
            Math::Reduce {
                axes,
                keepdims,
                noop_with_empty_axes,
                ..
            } => {
                let x = cx.dims(0)?;
                let axes = reduce_axes(&x, axes.as_deref(), *noop_with_empty_axes)
                    .map_err(|e| cx.err(e))?;
                if axes.contains(&0) {
                    cx.drop_batch("reduces over the batch axis");
                }
                let kept = (0..x.len()).filter(|i| *keepdims || !axes.contains(i));
                Ok(kept
                    .map(|i| if axes.contains(&i) { 1 } else { x[i] })
                    .collect())
            }
            Math::Unary(_) => cx.dims(0),
            // The binary ops (two inputs) and the variadic ones (at least one): numpy
            // broadcasting of every input.
            _ => {
                let inputs = match self {
                    Math::Variadic(_) => cx.node.inputs.len().max(1),
                    _ => 2,
                };
                let all: Vec<(Vec<usize>, bool)> = (0..inputs)
                    .map(|i| Ok((cx.dims(i)?, cx.is_batched(i))))
                    .collect::<Result<_>>()?;
                let mut out = all[0].0.clone();
                for (d, _) in &all[1..] {
                    out = broadcast(&out, d)
                        .ok_or_else(|| cx.err(format!("{out:?} and {d:?} do not broadcast")))?;
                }
                let refs: Vec<(&Vec<usize>, bool)> = all.iter().map(|(d, b)| (d, *b)).collect();
                cx.follow_broadcast(&refs, &out);
                Ok(out)
            }
        }
    }

    /// Shape arithmetic at import.
    pub(crate) fn evaluate(&self, node: &Node, input: InputOf) -> Option<Result<Constant>> {
        if !self.is_shape_arithmetic() {
            return None;
        }
        let apply = || -> Result<Constant> {
            let out = match self {
                Math::Unary(f) => elementwise(&[input(0)?], |x| f.host(x[0])),
                _ => elementwise(&[input(0)?, input(1)?], |x| binary_host(self, x[0], x[1])),
            };
            out.map_err(node_err(node))
        };
        Some(apply())
    }
}

/// A binary op on two elements at import: integers exactly (overflow and division by zero are
/// errors), floats in f32. Pow's exponent may have the other type.
fn binary_host(op: &Math, a: Num, b: Num) -> std::result::Result<Num, String> {
    let fail = || format!("integer overflow or division by zero ({a:?}, {b:?})");
    Ok(match (op, a, b) {
        (Math::Pow, Num::I(p), Num::I(q)) => Num::I(
            u32::try_from(q)
                .ok()
                .and_then(|q| p.checked_pow(q))
                .ok_or_else(fail)?,
        ),
        (Math::Pow, Num::I(p), Num::F(q)) => Num::I((p as f32).powf(q) as i64),
        (Math::Pow, Num::F(p), q) => Num::F(p.powf(q.as_f32())),
        (_, Num::I(p), Num::I(q)) => Num::I(
            match op {
                Math::Add => p.checked_add(q),
                Math::Sub => p.checked_sub(q),
                Math::Mul => p.checked_mul(q),
                Math::Mod { fmod: false } => p.checked_rem_euclid(q).map(|r| {
                    // The divisor's sign, as Python's `%`.
                    if r != 0 && q < 0 {
                        r + q
                    } else {
                        r
                    }
                }),
                Math::Mod { fmod: true } => p.checked_rem(q),
                _ => p.checked_div(q),
            }
            .ok_or_else(fail)?,
        ),
        (_, Num::F(p), Num::F(q)) => Num::F(match op {
            Math::Add => p + q,
            Math::Sub => p - q,
            Math::Mul => p * q,
            Math::Mod { fmod: false } => p - (p / q).floor() * q,
            Math::Mod { fmod: true } => p % q,
            _ => p / q,
        }),
        _ => return Err("operands have different element types".into()),
    })
}
