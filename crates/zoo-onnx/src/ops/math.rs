//! Arithmetic: the four element-wise binary ops, the variadic reductions (Sum, Mean, Max,
//! Min) and reductions over axes (ReduceMean, ReduceMax).

use std::sync::Arc;

use super::{node_err, Attrs, InputOf, Op, OpDef, Parsed, Settings};
use crate::error::Result;
use crate::graph::Node;
use crate::host::broadcast_indices;
use crate::shapes::{broadcast, reduce_axes, ShapeCx};
use crate::tensor::{ConstData, Constant};

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
}

#[derive(Clone, Debug, PartialEq)]
pub enum Math {
    Add,
    Sub,
    Mul,
    Div,
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
    OpDef::new("Sum", |_, _| run(Math::Variadic(Variadic::Sum))),
    OpDef::new("Mean", |_, _| run(Math::Variadic(Variadic::Mean))),
    OpDef::new("Max", |_, _| run(Math::Variadic(Variadic::Max))),
    OpDef::new("Min", |_, _| run(Math::Variadic(Variadic::Min))),
    OpDef::new("ReduceMean", |a, _| reduce(a, Reduction::Mean)).moved(18, &[("axes", false)]),
    OpDef::new("ReduceMax", |a, _| reduce(a, Reduction::Max)).moved(18, &[("axes", false)]),
];

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

/// Opset 18 moved `axes` to input 1.
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
            Math::Variadic(Variadic::Sum) => "Sum",
            Math::Variadic(Variadic::Mean) => "Mean",
            Math::Variadic(Variadic::Max) => "Max",
            Math::Variadic(Variadic::Min) => "Min",
            Math::Reduce {
                kind: Reduction::Mean,
                ..
            } => "ReduceMean",
            Math::Reduce {
                kind: Reduction::Max,
                ..
            } => "ReduceMax",
        }
    }

    pub(crate) fn is_setting_input(&self, index: usize) -> bool {
        matches!(self, Math::Reduce { .. }) && index >= 1
    }

    pub(crate) fn is_shape_arithmetic(&self) -> bool {
        matches!(self, Math::Add | Math::Sub | Math::Mul | Math::Div)
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

    /// Integer (shape) arithmetic at import.
    pub(crate) fn evaluate(&self, node: &Node, input: InputOf) -> Option<Result<Constant>> {
        if !self.is_shape_arithmetic() {
            return None;
        }
        let apply = || arithmetic(self, input(0)?, input(1)?).map_err(node_err(node));
        Some(apply())
    }
}

fn arithmetic(op: &Math, a: &Constant, b: &Constant) -> std::result::Result<Constant, String> {
    let out = broadcast(&a.dims, &b.dims)
        .ok_or_else(|| format!("{:?} and {:?} do not broadcast", a.dims, b.dims))?;
    let (ia, ib) = (
        broadcast_indices(&a.dims, &out),
        broadcast_indices(&b.dims, &out),
    );
    let data = match (&a.data, &b.data) {
        (ConstData::I64(x), ConstData::I64(y)) => {
            let f = |p: i64, q: i64| -> std::result::Result<i64, String> {
                match op {
                    Math::Add => p.checked_add(q),
                    Math::Sub => p.checked_sub(q),
                    Math::Mul => p.checked_mul(q),
                    _ => p.checked_div(q),
                }
                .ok_or_else(|| format!("integer overflow or division by zero ({p}, {q})"))
            };
            ConstData::I64(
                ia.iter()
                    .zip(&ib)
                    .map(|(&i, &j)| f(x[i], y[j]))
                    .collect::<std::result::Result<_, _>>()?,
            )
        }
        (ConstData::F32(x), ConstData::F32(y)) => ConstData::F32(
            ia.iter()
                .zip(&ib)
                .map(|(&i, &j)| match op {
                    Math::Add => x[i] + y[j],
                    Math::Sub => x[i] - y[j],
                    Math::Mul => x[i] * y[j],
                    _ => x[i] / y[j],
                })
                .collect(),
        ),
        _ => return Err("operands have different element types".into()),
    };
    Ok(Constant { dims: out, data })
}
