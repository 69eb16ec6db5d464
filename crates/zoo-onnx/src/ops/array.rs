//! Layout and selection: Reshape, Flatten, Identity, Concat, Transpose, Squeeze, Unsqueeze,
//! Slice, Split, Gather, Cast, Pad. Most of them also fold shape arithmetic at import.

use std::sync::Arc;

use tract_onnx::pb::NodeProto;

mod reshape;

use super::{node_err, Attrs, InputOf, Op, OpDef, Parsed, Settings};
use crate::error::Result;
use crate::graph::Node;
use crate::host;
use crate::opset::{attr, int_attr, remove_attr, ConvertCx};
use crate::shapes::{normalize_axis, resolve_reshape, slice_range, transpose_perm, ShapeCx};
use crate::tensor::Constant;
use reshape::{infer_concat, infer_flatten, infer_reshape};

/// Pad modes (ONNX `Pad`'s `mode`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadKind {
    Constant(f32),
    Reflect,
    Edge,
}

/// Slice ranges per axis: `(axis, start, end, step)`, clamped as ONNX does when applied
/// (see [`crate::shapes::slice_range`]).
pub type SliceAxes = Vec<(i64, i64, i64, i64)>;

#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    /// Target shape from the attribute (opset < 5) or `None` when it is input 1; resolved at
    /// import into [`crate::ShapeInfo::reshape_targets`].
    Reshape {
        shape: Option<Vec<i64>>,
        allow_zero: bool,
    },
    Flatten {
        axis: i64,
    },
    Identity,
    Concat {
        axis: i64,
    },
    /// `perm: None` reverses the axes.
    Transpose {
        perm: Option<Vec<i64>>,
    },
    /// `axes: None` removes every axis of size 1.
    Squeeze {
        axes: Option<Vec<i64>>,
    },
    Unsqueeze {
        axes: Vec<i64>,
    },
    Slice {
        ranges: SliceAxes,
    },
    /// Output sizes along `axis`; `None` splits evenly into as many parts as outputs.
    Split {
        axis: i64,
        sizes: Option<Vec<i64>>,
    },
    Gather {
        axis: i64,
    },
    /// Index tuples into the leading axes of input 0 (a constant table of them, input 1):
    /// the dynamo exporter's form of `table[:, idx]` (LeViT's attention biases).
    GatherNd,
    /// Target element type (`TensorProto` data type code); `like`: CastLike, whose type is
    /// input 1's (a setting input).
    Cast {
        to: i32,
        like: bool,
    },
    /// `pads` in ONNX order (all begins, then all ends).
    Pad {
        kind: PadKind,
        pads: Vec<i64>,
    },
    /// Writes `updates` at index tuples of `data` (torchvision's Swin builds its shift mask so);
    /// computed at import only.
    ScatterNd,
}

pub(crate) const OPS: &[OpDef] = &[
    OpDef::new("Reshape", |a, _| {
        run(Array::Reshape {
            shape: a.ints("shape")?,
            allow_zero: a.int("allowzero", 0)? != 0,
        })
    }),
    OpDef::new("Flatten", |a, _| {
        run(Array::Flatten {
            axis: a.int("axis", 1)?,
        })
    }),
    OpDef::new("Identity", |_, _| run(Array::Identity)),
    OpDef::new("Concat", |a, _| {
        run(Array::Concat {
            axis: a.int("axis", 1)?,
        })
    }),
    OpDef::new("Transpose", |a, _| {
        run(Array::Transpose {
            perm: a.ints("perm")?,
        })
    }),
    OpDef::new("Squeeze", |a, _| axes_op(a, false)).moved(13, &[("axes", false)]),
    OpDef::new("Unsqueeze", |a, _| axes_op(a, true)).moved(13, &[("axes", false)]),
    OpDef::new("Slice", slice)
        .moved(10, &[("starts", false), ("ends", false), ("axes", false)])
        .convert(slice_to_opset),
    OpDef::new("Split", split)
        .moved(13, &[("split", false)])
        .convert(split_to_opset),
    OpDef::new("Gather", |a, _| {
        run(Array::Gather {
            axis: a.int("axis", 0)?,
        })
    }),
    OpDef::new("GatherND", |a, _| {
        if a.int("batch_dims", 0)? != 0 {
            return Err(a.err("GatherND with `batch_dims` is not supported"));
        }
        run(Array::GatherNd)
    })
    .since(11),
    OpDef::new("Cast", |a, _| {
        run(Array::Cast {
            to: a.int("to", 0)? as i32,
            like: false,
        })
    }),
    OpDef::new("CastLike", |_, _| {
        bake(|s| {
            use tract_onnx::pb::tensor_proto::DataType as T;
            // A computed tensor is float32 (all zoo computes in); a constant tells its type.
            let to = match s.input(1).and_then(|n| s.constants.get(n)) {
                Some(c) if !c.is_float() => T::Int64,
                _ => T::Float,
            };
            Ok(Array::Cast {
                to: to as i32,
                like: true,
            })
        })
    })
    .since(15),
    OpDef::new("Pad", pad).moved(11, &[("pads", false), ("value", true)]),
    OpDef::new("ScatterND", |a, _| {
        match a.string("reduction")?.as_deref() {
            None | Some("none") => run(Array::ScatterNd),
            Some(other) => Err(a.err(format!("reduction `{other}` is not supported"))),
        }
    })
    .since(11),
];

fn run(op: Array) -> Result<Parsed> {
    Ok(Parsed::Run(Op::Array(op)))
}

fn bake(f: impl Fn(&Settings) -> Result<Array> + Send + Sync + 'static) -> Result<Parsed> {
    Ok(Parsed::Bake(Arc::new(move |s| f(s).map(Op::Array))))
}

/// Squeeze and Unsqueeze: `axes` is an attribute before opset 13 and input 1 from it.
fn axes_op(a: &Attrs, unsqueeze: bool) -> Result<Parsed> {
    let attribute = a.ints("axes")?;
    bake(move |s| {
        let axes = s.ints(1, "axes")?.or_else(|| attribute.clone());
        Ok(match unsqueeze {
            true => Array::Unsqueeze {
                axes: axes.unwrap_or_default(),
            },
            false => Array::Squeeze { axes },
        })
    })
}

/// Ranges are attributes before opset 10 and inputs 1-4 (starts, ends, axes, steps) from it.
fn slice(a: &Attrs, opset: i64) -> Result<Parsed> {
    if let (Some(starts), Some(ends), true) = (a.ints("starts")?, a.ints("ends")?, opset < 10) {
        let axes = a
            .ints("axes")?
            .unwrap_or_else(|| (0..starts.len() as i64).collect());
        if starts.len() != ends.len() || axes.len() != starts.len() {
            return Err(a.err("`starts`, `ends` and `axes` differ in length"));
        }
        let ranges = (axes.iter().zip(starts.iter().zip(&ends)))
            .map(|(&ax, (&s, &e))| (ax, s, e, 1))
            .collect();
        return run(Array::Slice { ranges });
    }
    bake(|s| {
        let starts = s
            .ints(1, "starts")?
            .ok_or_else(|| s.err("missing `starts`"))?;
        let ends = s.ints(2, "ends")?.ok_or_else(|| s.err("missing `ends`"))?;
        let n = starts.len();
        let axes = s
            .ints(3, "axes")?
            .unwrap_or_else(|| (0..n as i64).collect());
        let steps = s.ints(4, "steps")?.unwrap_or_else(|| vec![1; n]);
        if [ends.len(), axes.len(), steps.len()]
            .iter()
            .any(|&l| l != n)
        {
            return Err(s.err("`starts`, `ends`, `axes` and `steps` differ in length"));
        }
        let ranges = (0..n)
            .map(|k| (axes[k], starts[k], ends[k], steps[k]))
            .collect();
        Ok(Array::Slice { ranges })
    })
}

/// Sizes are an attribute before opset 13 and input 1 from it.
fn split(a: &Attrs, _: i64) -> Result<Parsed> {
    let (axis, attribute) = (a.int("axis", 0)?, a.ints("split")?);
    bake(move |s| {
        Ok(Array::Split {
            axis,
            sizes: s.ints(1, "split sizes")?.or_else(|| attribute.clone()),
        })
    })
}

/// `pads` and the fill value are attributes before opset 11 and inputs 1 and 2 from it.
fn pad(a: &Attrs, opset: i64) -> Result<Parsed> {
    let mode = a.string("mode")?.unwrap_or_else(|| "constant".into());
    let kind = match mode.as_str() {
        "constant" => PadKind::Constant(a.float("value", 0.0)?),
        "reflect" => PadKind::Reflect,
        "edge" => PadKind::Edge,
        other => return Err(a.err(format!("pad mode `{other}` is not supported"))),
    };
    let attribute = if opset < 11 { a.ints("pads")? } else { None };
    bake(move |s| {
        let pads = match &attribute {
            Some(p) => p.clone(),
            None => s.ints(1, "pads")?.ok_or_else(|| s.err("missing `pads`"))?,
        };
        let kind = match kind {
            PadKind::Constant(v) => PadKind::Constant(s.scalar(2, "fill value")?.unwrap_or(v)),
            other => other,
        };
        if s.input(3).is_some() {
            return Err(s.err("Pad with an `axes` input is not supported"));
        }
        Ok(Array::Pad { kind, pads })
    })
}

impl Array {
    pub fn onnx_type(&self) -> &'static str {
        match self {
            Array::Reshape { .. } => "Reshape",
            Array::Flatten { .. } => "Flatten",
            Array::Identity => "Identity",
            Array::Concat { .. } => "Concat",
            Array::Transpose { .. } => "Transpose",
            Array::Squeeze { .. } => "Squeeze",
            Array::Unsqueeze { .. } => "Unsqueeze",
            Array::Slice { .. } => "Slice",
            Array::Split { .. } => "Split",
            Array::Gather { .. } => "Gather",
            Array::GatherNd => "GatherND",
            Array::Cast { like: false, .. } => "Cast",
            Array::Cast { like: true, .. } => "CastLike",
            Array::Pad { .. } => "Pad",
            Array::ScatterNd => "ScatterND",
        }
    }

    pub(crate) fn is_setting_input(&self, index: usize) -> bool {
        let settings_from_1 = matches!(
            self,
            Array::Reshape { .. }
                | Array::Squeeze { .. }
                | Array::Unsqueeze { .. }
                | Array::Split { .. }
                | Array::Gather { .. }
                | Array::GatherNd
                | Array::Slice { .. }
                | Array::Pad { .. }
                | Array::Cast { like: true, .. }
        );
        settings_from_1 && index >= 1
    }

    /// Ops whose shape rule follows a batch axis moved off axis 0.
    pub(crate) fn follows_moved_batch(&self) -> bool {
        matches!(
            self,
            Array::Transpose { .. }
                | Array::Reshape { .. }
                | Array::Gather { .. }
                | Array::Split { .. }
                | Array::Squeeze { .. }
                | Array::Unsqueeze { .. }
                | Array::Slice { .. }
                | Array::Identity
                | Array::Cast { .. }
        )
    }

    pub(crate) fn is_shape_arithmetic(&self) -> bool {
        !matches!(
            self,
            Array::Flatten { .. } | Array::Split { .. } | Array::Pad { .. } | Array::GatherNd
        )
    }

    /// Folds shape arithmetic at import.
    pub(crate) fn evaluate(&self, node: &Node, input: InputOf) -> Option<Result<Constant>> {
        let err = node_err(node);
        let with_dims = |x: &Constant, dims: std::result::Result<Vec<usize>, String>| {
            dims.map(|dims| Constant {
                dims,
                data: x.data.clone(),
            })
        };
        let out = (|| -> Result<Constant> {
            Ok(match self {
                Array::Identity => input(0)?.clone(),
                Array::Cast { to, .. } => host::cast(input(0)?, *to).map_err(&err)?,
                Array::Unsqueeze { axes } => {
                    let x = input(0)?;
                    with_dims(x, host::unsqueeze_dims(&x.dims, axes)).map_err(&err)?
                }
                Array::Squeeze { axes } => {
                    let x = input(0)?;
                    with_dims(x, host::squeeze_dims(&x.dims, axes.as_deref())).map_err(&err)?
                }
                Array::Reshape { shape, allow_zero } => {
                    let x = input(0)?;
                    let target = match (shape, node.input(1)) {
                        (_, Some(_)) => input(1)?.as_i64().map(<[i64]>::to_vec),
                        (Some(s), None) => Some(s.clone()),
                        (None, None) => None,
                    }
                    .ok_or_else(|| err("missing an integer target shape".into()))?;
                    with_dims(x, resolve_reshape(&x.dims, &target, *allow_zero)).map_err(&err)?
                }
                Array::Concat { axis } => {
                    let parts: Vec<&Constant> =
                        (0..node.inputs.len()).map(input).collect::<Result<_>>()?;
                    host::concat(&parts, *axis).map_err(&err)?
                }
                Array::Gather { axis } => {
                    host::gather(input(0)?, input(1)?, *axis).map_err(&err)?
                }
                Array::Transpose { perm } => {
                    host::transpose(input(0)?, perm.as_deref()).map_err(&err)?
                }
                Array::Slice { ranges } => host::slice(input(0)?, ranges).map_err(&err)?,
                Array::ScatterNd => {
                    host::scatter_nd(input(0)?, input(1)?, input(2)?).map_err(&err)?
                }
                Array::Flatten { .. }
                | Array::Split { .. }
                | Array::Pad { .. }
                | Array::GatherNd => {
                    return Err(err(format!("{} cannot be folded", self.onnx_type())))
                }
            })
        })();
        Some(out)
    }

    /// The dims of each output (several for Split).
    pub(crate) fn infer(&self, cx: &mut ShapeCx) -> Result<Vec<Vec<usize>>> {
        if let Array::Split { axis, sizes } = self {
            return infer_split(cx, *axis, sizes.as_deref());
        }
        self.infer_one(cx).map(|dims| vec![dims])
    }

    fn infer_one(&self, cx: &mut ShapeCx) -> Result<Vec<usize>> {
        let x = cx.dims(0)?;
        match self {
            Array::Identity | Array::Cast { .. } => {
                if let Array::Cast { to, .. } = self {
                    check_cast(cx, *to)?;
                }
                Ok(x)
            }
            Array::Transpose { perm } => {
                let perm = transpose_perm(x.len(), perm.as_deref()).map_err(|e| cx.err(e))?;
                // The batch goes where the permutation sends its axis.
                let from = cx.batch_axis;
                cx.batch_axis = perm.iter().position(|&p| p == from).unwrap_or(0);
                Ok(perm.iter().map(|&p| x[p]).collect())
            }
            Array::Squeeze { axes } => infer_squeeze(cx, &x, axes.as_deref()),
            Array::Unsqueeze { axes } => infer_unsqueeze(cx, &x, axes),
            Array::Slice { ranges } => infer_slice(cx, &x, ranges),
            Array::Gather { axis } => infer_gather(cx, &x, *axis),
            Array::GatherNd => reshape::infer_gather_nd(cx, &x),
            Array::Pad { kind, pads } => infer_pad(cx, &x, *kind, pads),
            Array::Flatten { axis } => infer_flatten(cx, &x, *axis),
            Array::Reshape { shape, allow_zero } => {
                infer_reshape(cx, &x, shape.as_deref(), *allow_zero)
            }
            Array::Concat { axis } => infer_concat(cx, &x, *axis),
            Array::ScatterNd => Err(cx.err(
                "ScatterND is supported only where its inputs are known at import (it is computed there)",
            )),
            // Several outputs: `infer` gives them.
            Array::Split { .. } => Err(cx.err("Split has several outputs")),
        }
    }
}

fn check_cast(cx: &ShapeCx, to: i32) -> Result<()> {
    use tract_onnx::pb::tensor_proto::DataType as T;
    if [T::Float as i32, T::Double as i32].contains(&to) {
        return Ok(());
    }
    Err(cx.err(format!(
        "Cast of a computed tensor to type {to} is not supported (zoo computes in float32)"
    )))
}

fn infer_squeeze(cx: &mut ShapeCx, x: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>> {
    let out = host::squeeze_dims(x, axes).map_err(|e| cx.err(e))?;
    let b = cx.batch_axis;
    let removed: Vec<usize> = match axes {
        None => (0..x.len()).filter(|&i| x[i] == 1).collect(),
        Some(a) => a
            .iter()
            .filter_map(|&v| normalize_axis(v, x.len()))
            .collect(),
    };
    if removed.contains(&b) {
        cx.drop_batch("Squeeze removes the batch axis");
    } else {
        cx.batch_axis = b - removed.iter().filter(|&&r| r < b).count();
    }
    Ok(out)
}

fn infer_unsqueeze(cx: &mut ShapeCx, x: &[usize], axes: &[i64]) -> Result<Vec<usize>> {
    let out = host::unsqueeze_dims(x, axes).map_err(|e| cx.err(e))?;
    // The input's axes fill the output's positions that are not inserted, in order.
    let inserted: Vec<usize> = axes
        .iter()
        .filter_map(|&a| normalize_axis(a, out.len()))
        .collect();
    let kept: Vec<usize> = (0..out.len()).filter(|i| !inserted.contains(i)).collect();
    match kept.get(cx.batch_axis) {
        Some(&0) => cx.batch_axis = 0,
        // A batch axis that is no longer first stays tracked only within ops that follow it.
        Some(&position) => cx.batch_axis = position,
        None => cx.drop_batch("Unsqueeze moves the batch axis"),
    }
    Ok(out)
}

fn infer_slice(cx: &mut ShapeCx, x: &[usize], ranges: &SliceAxes) -> Result<Vec<usize>> {
    let mut out = x.to_vec();
    for &(axis, start, end, step) in ranges {
        let a = cx.axis(axis, x)?;
        let picked = slice_range(x[a], start, end, step).map_err(|e| cx.err(e))?;
        if a == cx.batch_axis && picked.len() != x[a] {
            cx.drop_batch("Slice selects from the batch axis");
        }
        if picked.is_empty() {
            return Err(cx.err(format!("the slice of axis {a} of {x:?} is empty")));
        }
        out[a] = picked.len();
    }
    Ok(out)
}

fn infer_gather(cx: &mut ShapeCx, x: &[usize], axis: i64) -> Result<Vec<usize>> {
    let a = cx.axis(axis, x)?;
    let idx = cx
        .constant(1)
        .filter(|c| !c.is_float())
        .ok_or_else(|| cx.err("indices must be a constant integer tensor"))?;
    let size = x[a] as i64;
    let values = idx.as_i64().unwrap_or_default();
    if values.iter().any(|&i| i < -size || i >= size) {
        return Err(cx.err(format!("indices are out of range for axis {a} of {x:?}")));
    }
    let mut out = x[..a].to_vec();
    out.extend(&idx.dims);
    out.extend(&x[a + 1..]);
    let b = cx.batch_axis;
    if cx.is_batch_dependent(1) {
        reshape::follow_per_sample_gather(cx, x, a, idx.dims.len());
    } else if a == b {
        cx.drop_batch("Gather selects from the batch axis");
    } else if a < b {
        // `unbind(0)` of attention's [3, B, ...]: the batch moves back by the taken axis.
        cx.batch_axis = b - 1 + idx.dims.len();
    }
    Ok(out)
}

fn infer_pad(cx: &mut ShapeCx, x: &[usize], kind: PadKind, pads: &[i64]) -> Result<Vec<usize>> {
    let r = x.len();
    if pads.len() != 2 * r || pads.iter().any(|&p| !(0..=1 << 16).contains(&p)) {
        return Err(cx.err(format!(
            "pads {pads:?} must be {} non-negative values for {x:?}",
            2 * r
        )));
    }
    // Reflection mirrors inside the tensor: it needs more values than it adds.
    let too_wide = (0..r).find(|&i| {
        (pads[i] > 0 || pads[i + r] > 0)
            && (pads[i] as usize >= x[i] || pads[i + r] as usize >= x[i])
    });
    if let (PadKind::Reflect, Some(i)) = (kind, too_wide) {
        return Err(cx.err(format!(
            "reflect pads {pads:?} must be smaller than the padded axes of {x:?} (axis {i})"
        )));
    }
    if pads[0] != 0 || pads[r] != 0 {
        cx.drop_batch("Pad pads the batch axis");
    }
    Ok((0..r)
        .map(|i| x[i] + (pads[i] + pads[i + r]) as usize)
        .collect())
}

/// `Split`: several outputs along one axis, each batched when the cut is not the batch axis.
fn infer_split(cx: &mut ShapeCx, axis: i64, sizes: Option<&[i64]>) -> Result<Vec<Vec<usize>>> {
    let x = cx.dims(0)?;
    let a = cx.axis(axis, &x)?;
    let parts = cx.node.outputs.len();
    let sizes: Vec<usize> = match sizes {
        Some(s) if s.len() == parts && s.iter().all(|&v| v > 0) => {
            s.iter().map(|&v| v as usize).collect()
        }
        Some(s) => return Err(cx.err(format!("split sizes {s:?} do not fit {parts} outputs"))),
        None if parts > 0 && x[a].is_multiple_of(parts) => vec![x[a] / parts; parts],
        None => {
            return Err(cx.err(format!(
                "axis {a} of {x:?} does not split evenly into {parts} outputs"
            )))
        }
    };
    if sizes.iter().sum::<usize>() != x[a] {
        return Err(cx.err(format!("split sizes {sizes:?} do not add up to {}", x[a])));
    }
    if a == cx.batch_axis {
        cx.drop_batch("Split cuts the batch axis");
    }
    Ok(sizes
        .into_iter()
        .map(|size| {
            let mut d = x.clone();
            d[a] = size;
            d
        })
        .collect())
}

/// Slice steps other than 1 exist from opset 10, where the ranges became inputs.
fn slice_to_opset(node: &mut NodeProto, cx: &mut ConvertCx) -> Result<()> {
    if cx.from < 10 || cx.to >= 10 {
        return Ok(());
    }
    let steps = node.input.get(4).filter(|i| !i.is_empty());
    let not_one = |s: &String| {
        let values = cx.constants.get(s).and_then(|c| c.as_i64());
        values.is_none_or(|v| v.iter().any(|&x| x != 1))
    };
    if steps.is_some_and(not_one) {
        let why = format!(
            "slice steps other than 1 need opset 10 or later, not {}",
            cx.to
        );
        return Err(cx.refuse(node, why));
    }
    Ok(())
}

/// Opset 18 wants Split's output count when no sizes are given.
fn split_to_opset(node: &mut NodeProto, cx: &mut ConvertCx) -> Result<()> {
    remove_attr(node, "num_outputs");
    let no_sizes = node.input.get(1).is_none_or(String::is_empty) && attr(node, "split").is_none();
    if cx.to >= 18 && no_sizes {
        let count = node.output.len() as i64;
        node.attribute.push(int_attr("num_outputs", count));
    }
    Ok(())
}
