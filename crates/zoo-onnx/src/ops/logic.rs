//! Comparisons and selection: Equal, Less, Greater, Not, Where. Exporters write them for shape
//! arithmetic (`x.expand(B, -1, -1)` becomes `Where(Equal(shape, -1), 1, shape)`), which folds
//! at import; on data they run with masks held as 0/1 floats.

use super::{node_err, InputOf, Op, OpDef, Parsed};
use crate::error::Result;
use crate::graph::Node;
use crate::host::{elementwise, Num};
use crate::shapes::{broadcast, ShapeCx};
use crate::tensor::Constant;

/// Element-wise comparisons; the result is a mask (1 where true).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Equal,
    Less,
    Greater,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Logic {
    Compare(Comparison),
    /// 1 where the mask is 0.
    Not,
    /// `condition ? x : y`, all three broadcast.
    Where,
}

pub(crate) const OPS: &[OpDef] = &[
    OpDef::new("Equal", |_, _| run(Logic::Compare(Comparison::Equal))),
    OpDef::new("Less", |_, _| run(Logic::Compare(Comparison::Less))),
    OpDef::new("Greater", |_, _| run(Logic::Compare(Comparison::Greater))),
    OpDef::new("Not", |_, _| run(Logic::Not)),
    OpDef::new("Where", |_, _| run(Logic::Where)).since(9),
];

fn run(op: Logic) -> Result<Parsed> {
    Ok(Parsed::Run(Op::Logic(op)))
}

impl Comparison {
    /// The comparison of two numbers (integers exactly, else as floats).
    pub(crate) fn holds(self, a: Num, b: Num) -> bool {
        let ordering = match (a, b) {
            (Num::I(p), Num::I(q)) => p.partial_cmp(&q),
            _ => a.as_f32().partial_cmp(&b.as_f32()),
        };
        let want = match self {
            Comparison::Equal => std::cmp::Ordering::Equal,
            Comparison::Less => std::cmp::Ordering::Less,
            Comparison::Greater => std::cmp::Ordering::Greater,
        };
        ordering == Some(want)
    }
}

impl Logic {
    pub fn onnx_type(&self) -> &'static str {
        match self {
            Logic::Compare(Comparison::Equal) => "Equal",
            Logic::Compare(Comparison::Less) => "Less",
            Logic::Compare(Comparison::Greater) => "Greater",
            Logic::Not => "Not",
            Logic::Where => "Where",
        }
    }

    /// Masks depend on values, so none of these has a setting input.
    pub(crate) fn is_setting_input(&self, _index: usize) -> bool {
        false
    }

    pub(crate) fn infer(&self, cx: &mut ShapeCx) -> Result<Vec<usize>> {
        let inputs = match self {
            Logic::Not => 1,
            Logic::Compare(_) => 2,
            Logic::Where => 3,
        };
        let all: Vec<(Vec<usize>, bool)> = (0..inputs)
            .map(|i| Ok((cx.dims(i)?, cx.is_batched(i))))
            .collect::<Result<_>>()?;
        let mut out: Vec<usize> = Vec::new();
        for (d, _) in &all {
            out = broadcast(&out, d)
                .ok_or_else(|| cx.err(format!("{out:?} and {d:?} do not broadcast")))?;
        }
        let refs: Vec<(&Vec<usize>, bool)> = all.iter().map(|(d, b)| (d, *b)).collect();
        if refs.iter().any(|(_, b)| *b) {
            cx.follow_broadcast(&refs, &out);
        } else {
            cx.batched = false;
        }
        Ok(out)
    }

    /// Folds shape arithmetic at import (masks are integer 0/1).
    pub(crate) fn evaluate(&self, node: &Node, input: InputOf) -> Option<Result<Constant>> {
        let apply = || -> Result<Constant> {
            let mask = |b: bool| Num::I(b as i64);
            let out = match self {
                Logic::Compare(c) => {
                    elementwise(&[input(0)?, input(1)?], |v| Ok(mask(c.holds(v[0], v[1]))))
                }
                Logic::Not => elementwise(&[input(0)?], |v| Ok(mask(v[0].as_f32() == 0.0))),
                Logic::Where => elementwise(&[input(0)?, input(1)?, input(2)?], |v| {
                    Ok(if v[0].as_f32() != 0.0 { v[1] } else { v[2] })
                }),
            };
            out.map_err(node_err(node))
        };
        Some(apply())
    }
}
