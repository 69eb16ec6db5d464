//! Copies along axes: Expand (numpy broadcasting to a shape) and Tile (repeats). Exporters
//! write them for `cls_token.expand(B, -1, -1)` and `x.repeat(B, 1, 1)`, whose target carries
//! the batch size: such a node's axis 0 is the batch at run time
//! ([`crate::ShapeInfo::batch_sized`]).

use std::sync::Arc;

use super::{node_err, InputOf, Op, OpDef, Parsed, Settings};
use crate::error::Result;
use crate::graph::Node;
use crate::host::broadcast_indices;
use crate::shapes::{broadcast, ShapeCx};
use crate::tensor::{ConstData, Constant};

#[derive(Clone, Debug, PartialEq)]
pub enum Repeat {
    /// Broadcast to `shape` (both ways, as numpy: the output is the broadcast of the two).
    Expand { shape: Vec<i64> },
    /// Each axis repeated `repeats[i]` times.
    Tile { repeats: Vec<i64> },
}

pub(crate) const OPS: &[OpDef] = &[
    OpDef::new("Expand", |_, _| {
        bake(|s| {
            Ok(Repeat::Expand {
                shape: s.ints(1, "shape")?.ok_or_else(|| s.err("missing shape"))?,
            })
        })
    })
    .since(8),
    OpDef::new("Tile", |_, _| {
        bake(|s| {
            Ok(Repeat::Tile {
                repeats: s
                    .ints(1, "repeats")?
                    .ok_or_else(|| s.err("missing repeats"))?,
            })
        })
    })
    .since(6),
];

fn bake(f: impl Fn(&Settings) -> Result<Repeat> + Send + Sync + 'static) -> Result<Parsed> {
    Ok(Parsed::Bake(Arc::new(move |s| f(s).map(Op::Repeat))))
}

/// Numbers of a shape or repeat list, which must not be negative.
fn sizes(v: &[i64]) -> std::result::Result<Vec<usize>, String> {
    v.iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative size in {v:?}")))
        .collect()
}

impl Repeat {
    pub fn onnx_type(&self) -> &'static str {
        match self {
            Repeat::Expand { .. } => "Expand",
            Repeat::Tile { .. } => "Tile",
        }
    }

    pub(crate) fn is_setting_input(&self, index: usize) -> bool {
        index == 1
    }

    /// The output dims for an input of `x`.
    pub fn output_dims(&self, x: &[usize]) -> std::result::Result<Vec<usize>, String> {
        match self {
            Repeat::Expand { shape } => {
                let shape = sizes(shape)?;
                broadcast(x, &shape).ok_or(format!("{x:?} does not expand to {shape:?}"))
            }
            Repeat::Tile { repeats } => {
                let r = sizes(repeats)?;
                if r.len() != x.len() {
                    return Err(format!("{} repeats for a rank-{} tensor", r.len(), x.len()));
                }
                Ok(x.iter().zip(&r).map(|(d, k)| d * k).collect())
            }
        }
    }

    pub(crate) fn infer(&self, cx: &mut ShapeCx) -> Result<Vec<usize>> {
        let x = cx.dims(0)?;
        let out = self.output_dims(&x).map_err(|e| cx.err(e))?;
        let batch_sized = cx.is_batch_dependent(1)
            && x[0] == 1
            && out.len() == x.len()
            && out[0] == cx.info.declared_batch;
        if batch_sized {
            // The target's axis 0 is the batch size: it follows the run-time batch.
            cx.batched = true;
            let label = cx.node.label.clone();
            cx.info.batch_sized.insert(label);
        } else if cx.batched && (out.len() != x.len() || out[0] != x[0]) {
            cx.drop_batch("the copy changes the batch axis");
        }
        Ok(out)
    }

    /// Expand folds through shape arithmetic.
    pub(crate) fn evaluate(&self, node: &Node, input: InputOf) -> Option<Result<Constant>> {
        let Repeat::Expand { .. } = self else {
            return None;
        };
        let apply = || -> Result<Constant> {
            let x = input(0)?;
            let out = self.output_dims(&x.dims).map_err(node_err(node))?;
            let picks = broadcast_indices(&x.dims, &out);
            let data = match &x.data {
                ConstData::I64(v) => ConstData::I64(picks.iter().map(|&i| v[i]).collect()),
                ConstData::F32(v) => ConstData::F32(picks.iter().map(|&i| v[i]).collect()),
            };
            Ok(Constant { dims: out, data })
        };
        Some(apply())
    }

    pub(crate) fn is_shape_arithmetic(&self) -> bool {
        matches!(self, Repeat::Expand { .. })
    }
}
