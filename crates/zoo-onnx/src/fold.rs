//! Import-time evaluation, so that the executor only ever sees data ops:
//! - settings that later opsets moved from attributes to inputs (Clip bounds, axes, pads, split
//!   sizes, slice ranges) are read from their constant inputs and baked into the op;
//! - shape arithmetic (`Shape`, then `Gather`, `Unsqueeze`, `Concat`, `Slice`, `Cast`, `Div`,
//!   ... on constants) is computed on the host. The batch dim of a `Shape` is the declared one;
//!   values derived from it are remembered as batch-dependent, so a `Reshape` target built from
//!   `Shape(x)[0]` still keeps the batch axis at any batch size (see `shapes.rs`).
//!
//! Folded shape values stay as nodes in exported files (their result depends on the batch);
//! an `Identity` of an initializer becomes a copy of it (written back as an initializer).

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{bad_node, Result};
use crate::graph::Node;
use crate::ops::{Op, PadKind, Unary};
use crate::shapes::{normalize_axis, resolve_reshape, slice_range};
use crate::tensor::{checked_dims, ConstData, Constant};

/// What the fold pass learned about the constants it made. Batch dependence is found by
/// folding twice: at the declared batch and at a probe batch one larger; values that differ
/// depend on the batch size.
#[derive(Clone, Debug, Default)]
pub struct Folded {
    /// Values computed from nodes that stay in an exported file (not written as initializers).
    pub computed: BTreeSet<String>,
    /// Computed values that depend on the batch size (derived from a batched `Shape`).
    pub batch_dependent: BTreeSet<String>,
}

/// Reads settings given as constant inputs into the op. Inputs that are present but not
/// constants are an error naming the node: zoo runs graphs whose structure is static.
pub(crate) fn bake_settings(node: &mut Node, constants: &BTreeMap<String, Constant>) -> Result<()> {
    let label = node.label.clone();
    let op_type = node.op.onnx_type();
    let err = |reason: String| bad_node(&label, op_type, reason);
    let ints = |i: usize, what: &str| -> Result<Option<Vec<i64>>> {
        let Some(name) = node.input(i) else {
            return Ok(None);
        };
        match constants.get(name) {
            Some(Constant {
                data: ConstData::I64(v),
                ..
            }) => Ok(Some(v.clone())),
            _ => Err(err(format!(
                "its {what} `{name}` must be a constant integer tensor (computed settings are not supported)"
            ))),
        }
    };
    let scalar = |i: usize, what: &str| -> Result<Option<f32>> {
        let Some(name) = node.input(i) else {
            return Ok(None);
        };
        match constants.get(name) {
            Some(Constant {
                data: ConstData::F32(v),
                ..
            }) if v.len() == 1 => Ok(Some(v[0])),
            _ => Err(err(format!(
                "its {what} `{name}` must be a constant float scalar"
            ))),
        }
    };
    let baked = match &node.op {
        Op::Unary(Unary::Clip { min, max }) => Op::Unary(Unary::Clip {
            min: scalar(1, "minimum")?.unwrap_or(*min),
            max: scalar(2, "maximum")?.unwrap_or(*max),
        }),
        Op::Squeeze { axes } => Op::Squeeze {
            axes: ints(1, "axes")?.or_else(|| axes.clone()),
        },
        Op::Unsqueeze { axes } => Op::Unsqueeze {
            axes: ints(1, "axes")?.or_else(|| axes.clone()),
        },
        Op::Reduce {
            kind,
            axes,
            keepdims,
            noop_with_empty_axes,
        } => Op::Reduce {
            kind: *kind,
            axes: ints(1, "axes")?.or_else(|| axes.clone()),
            keepdims: *keepdims,
            noop_with_empty_axes: *noop_with_empty_axes,
        },
        Op::Split { axis, sizes } => Op::Split {
            axis: *axis,
            sizes: ints(1, "split sizes")?.or_else(|| sizes.clone()),
        },
        Op::Slice { axes: Some(a) } => Op::Slice {
            axes: Some(a.clone()),
        },
        Op::Slice { axes: None } => {
            let starts = ints(1, "starts")?.ok_or_else(|| err("missing `starts`".into()))?;
            let ends = ints(2, "ends")?.ok_or_else(|| err("missing `ends`".into()))?;
            let axes = ints(3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
            let steps = ints(4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
            if [ends.len(), axes.len(), steps.len()]
                .iter()
                .any(|&l| l != starts.len())
            {
                return Err(err(
                    "`starts`, `ends`, `axes` and `steps` differ in length".into()
                ));
            }
            Op::Slice {
                axes: Some(
                    (0..starts.len())
                        .map(|k| (axes[k], starts[k], ends[k], steps[k]))
                        .collect(),
                ),
            }
        }
        Op::Pad { kind, pads } => {
            let pads = match pads {
                Some(p) => p.clone(),
                None => ints(1, "pads")?.ok_or_else(|| err("missing `pads`".into()))?,
            };
            let kind = match kind {
                PadKind::Constant(v) => PadKind::Constant(scalar(2, "fill value")?.unwrap_or(*v)),
                other => *other,
            };
            if node.input(3).is_some() {
                return Err(err("Pad with an `axes` input is not supported".into()));
            }
            Op::Pad {
                kind,
                pads: Some(pads),
            }
        }
        _ => return Ok(()),
    };
    node.op = baked;
    Ok(())
}

/// Whether the node is computed at import: `Shape` always (dims are static), `Identity` of a
/// constant, and shape arithmetic whose data inputs are integer or already computed values.
/// Float ops on weights (a weight's Reshape) are left to run, so parameters keep their names.
pub(crate) fn is_foldable(
    node: &Node,
    constants: &BTreeMap<String, Constant>,
    folded: &Folded,
) -> bool {
    let data_inputs = || {
        node.inputs
            .iter()
            .enumerate()
            .filter(|(i, n)| !n.is_empty() && !node.op.is_setting_input(*i))
            .map(|(_, n)| n)
    };
    match &node.op {
        Op::Shape { .. } => true,
        Op::Identity => node.input(0).is_some_and(|i| constants.contains_key(i)),
        op if op.is_shape_arithmetic() => {
            node.inputs
                .iter()
                .filter(|n| !n.is_empty())
                .all(|n| constants.contains_key(n))
                && data_inputs().all(|n| {
                    folded.computed.contains(n) || constants.get(n).is_some_and(|c| !c.is_float())
                })
        }
        _ => false,
    }
}

/// Computes a foldable node's outputs. `dims` holds the shapes inferred so far (for `Shape`).
pub(crate) fn evaluate<'a>(
    node: &Node,
    constant: &dyn Fn(&str) -> Option<&'a Constant>,
    dims: &dyn Fn(&str) -> Option<Vec<usize>>,
) -> Result<Constant> {
    let err = |reason: String| bad_node(&node.label, node.op.onnx_type(), reason);
    let input = |i: usize| -> Result<&Constant> {
        node.input(i)
            .and_then(constant)
            .ok_or_else(|| err(format!("input {i} is not a constant")))
    };
    let out = match &node.op {
        Op::Shape { start, end } => {
            let name = node.input(0).ok_or_else(|| err("missing input".into()))?;
            let d = dims(name).ok_or_else(|| err(format!("the shape of `{name}` is unknown")))?;
            let r = d.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (s, e) = (clamp(*start), clamp(end.unwrap_or(r)));
            let v: Vec<i64> = d[s..e.max(s)].iter().map(|&x| x as i64).collect();
            Constant::i64(vec![v.len()], v)
        }
        Op::Identity => input(0)?.clone(),
        Op::Cast { to } => cast(input(0)?, *to).map_err(err)?,
        Op::Add | Op::Sub | Op::Mul | Op::Div => {
            arithmetic(&node.op, input(0)?, input(1)?).map_err(err)?
        }
        Op::Unsqueeze { axes } | Op::Squeeze { axes } => {
            let x = input(0)?;
            let out = if matches!(node.op, Op::Unsqueeze { .. }) {
                unsqueeze_dims(&x.dims, axes.as_deref().unwrap_or(&[]))
            } else {
                squeeze_dims(&x.dims, axes.as_deref())
            }
            .map_err(err)?;
            Constant {
                dims: out,
                data: x.data.clone(),
            }
        }
        Op::Reshape { shape, allow_zero } => {
            let x = input(0)?;
            let target = match (shape, node.input(1)) {
                (_, Some(_)) => input(1)?.as_i64().map(<[i64]>::to_vec),
                (Some(s), None) => Some(s.clone()),
                (None, None) => None,
            }
            .ok_or_else(|| err("missing an integer target shape".into()))?;
            let out = resolve_reshape(&x.dims, &target, *allow_zero).map_err(err)?;
            Constant {
                dims: out,
                data: x.data.clone(),
            }
        }
        Op::Concat { axis } => {
            let parts: Vec<&Constant> = (0..node.inputs.len()).map(input).collect::<Result<_>>()?;
            concat(&parts, *axis).map_err(err)?
        }
        Op::Gather { axis } => gather(input(0)?, input(1)?, *axis).map_err(err)?,
        Op::Transpose { perm } => transpose(input(0)?, perm.as_deref()).map_err(err)?,
        Op::Slice { axes: Some(ranges) } => slice(input(0)?, ranges).map_err(err)?,
        Op::ConstantOfShape | Op::Constant => {
            unreachable!("constant nodes are read from their attributes in graph.rs")
        }
        other => return Err(err(format!("{} cannot be folded", other.onnx_type()))),
    };
    checked_dims(
        &node.label,
        &out.dims.iter().map(|&d| d as i64).collect::<Vec<_>>(),
    )?;
    Ok(out)
}

fn cast(x: &Constant, to: i32) -> std::result::Result<Constant, String> {
    use tract_onnx::pb::tensor_proto::DataType as T;
    let to = T::try_from(to).unwrap_or(T::Undefined);
    let float = matches!(to, T::Float | T::Double | T::Float16 | T::Bfloat16);
    let integer = matches!(
        to,
        T::Int64
            | T::Int32
            | T::Int16
            | T::Int8
            | T::Uint8
            | T::Uint16
            | T::Uint32
            | T::Uint64
            | T::Bool
    );
    let data = match (float, integer, &x.data) {
        (true, _, ConstData::F32(v)) => ConstData::F32(v.clone()),
        (true, _, ConstData::I64(v)) => ConstData::F32(v.iter().map(|&x| x as f32).collect()),
        (_, true, ConstData::I64(v)) => ConstData::I64(v.clone()),
        (_, true, ConstData::F32(v)) => {
            ConstData::I64(v.iter().map(|&x| x.trunc() as i64).collect())
        }
        _ => return Err(format!("Cast to {to:?} is not supported")),
    };
    Ok(Constant {
        dims: x.dims.clone(),
        data,
    })
}

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// For each element of the broadcast output, the flat index into an input of `dims`.
fn broadcast_indices(dims: &[usize], out: &[usize]) -> Vec<usize> {
    let offset = out.len() - dims.len();
    let in_strides = strides(dims);
    let total: usize = out.iter().product();
    let out_strides = strides(out);
    (0..total)
        .map(|flat| {
            (0..dims.len())
                .map(|k| {
                    let coord = flat / out_strides[k + offset] % out[k + offset];
                    if dims[k] == 1 {
                        0
                    } else {
                        coord * in_strides[k]
                    }
                })
                .sum()
        })
        .collect()
}

fn arithmetic(op: &Op, a: &Constant, b: &Constant) -> std::result::Result<Constant, String> {
    let out = crate::shapes::broadcast(&a.dims, &b.dims)
        .ok_or_else(|| format!("{:?} and {:?} do not broadcast", a.dims, b.dims))?;
    let (ia, ib) = (
        broadcast_indices(&a.dims, &out),
        broadcast_indices(&b.dims, &out),
    );
    let data = match (&a.data, &b.data) {
        (ConstData::I64(x), ConstData::I64(y)) => {
            let f = |p: i64, q: i64| -> std::result::Result<i64, String> {
                match op {
                    Op::Add => p.checked_add(q),
                    Op::Sub => p.checked_sub(q),
                    Op::Mul => p.checked_mul(q),
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
                    Op::Add => x[i] + y[j],
                    Op::Sub => x[i] - y[j],
                    Op::Mul => x[i] * y[j],
                    _ => x[i] / y[j],
                })
                .collect(),
        ),
        _ => return Err("operands have different element types".into()),
    };
    Ok(Constant { dims: out, data })
}

/// Output dims of `Unsqueeze`: axes count in the output's rank.
pub fn unsqueeze_dims(dims: &[usize], axes: &[i64]) -> std::result::Result<Vec<usize>, String> {
    let rank = dims.len() + axes.len();
    let mut at: Vec<usize> = axes
        .iter()
        .map(|&a| normalize_axis(a, rank).ok_or_else(|| format!("axis {a} is out of range")))
        .collect::<std::result::Result<_, _>>()?;
    at.sort_unstable();
    if at.windows(2).any(|w| w[0] == w[1]) || axes.is_empty() {
        return Err(format!("axes {axes:?} must be distinct and not empty"));
    }
    let mut rest = dims.iter();
    Ok((0..rank)
        .map(|i| {
            if at.contains(&i) {
                1
            } else {
                *rest.next().unwrap_or(&1)
            }
        })
        .collect())
}

/// Output dims of `Squeeze`; without axes every size-1 axis goes.
pub fn squeeze_dims(
    dims: &[usize],
    axes: Option<&[i64]>,
) -> std::result::Result<Vec<usize>, String> {
    let drop: Vec<usize> = match axes {
        None => (0..dims.len()).filter(|&i| dims[i] == 1).collect(),
        Some(a) => a
            .iter()
            .map(|&x| {
                normalize_axis(x, dims.len())
                    .filter(|&i| dims[i] == 1)
                    .ok_or_else(|| format!("axis {x} of {dims:?} is out of range or not of size 1"))
            })
            .collect::<std::result::Result<_, _>>()?,
    };
    Ok((0..dims.len())
        .filter(|i| !drop.contains(i))
        .map(|i| dims[i])
        .collect())
}

fn concat(parts: &[&Constant], axis: i64) -> std::result::Result<Constant, String> {
    let first = parts.first().ok_or("no inputs")?;
    let a = normalize_axis(axis, first.dims.len()).ok_or("axis out of range")?;
    let outer: usize = first.dims[..a].iter().product();
    let mut dims = first.dims.clone();
    dims[a] = parts
        .iter()
        .map(|p| p.dims.get(a).copied().unwrap_or(0))
        .sum();
    for p in parts {
        let same = p.dims.len() == first.dims.len()
            && p.dims
                .iter()
                .zip(&first.dims)
                .enumerate()
                .all(|(k, (x, y))| k == a || x == y);
        if !same || p.is_float() != first.is_float() {
            return Err(format!(
                "{:?} does not concatenate with {:?}",
                p.dims, first.dims
            ));
        }
    }
    let chunks: Vec<usize> = parts.iter().map(|p| p.dims[a..].iter().product()).collect();
    // Interleaves the parts' slices of each outer index.
    fn join<T: Copy>(slices: &[&[T]], chunks: &[usize], outer: usize) -> Vec<T> {
        (0..outer)
            .flat_map(|o| {
                slices
                    .iter()
                    .zip(chunks)
                    .flat_map(move |(v, &c)| v[o * c..(o + 1) * c].iter().copied())
            })
            .collect()
    }
    let data = match first.data {
        ConstData::I64(_) => {
            let v: Vec<&[i64]> = parts
                .iter()
                .map(|p| p.as_i64().unwrap_or_default())
                .collect();
            ConstData::I64(join(&v, &chunks, outer))
        }
        ConstData::F32(_) => {
            let v: Vec<&[f32]> = parts
                .iter()
                .map(|p| p.as_f32().unwrap_or_default())
                .collect();
            ConstData::F32(join(&v, &chunks, outer))
        }
    };
    Ok(Constant { dims, data })
}

/// Picks flat element indices and builds a constant of `dims` from them.
fn pick(x: &Constant, dims: Vec<usize>, flat: &[usize]) -> Constant {
    let data = match &x.data {
        ConstData::I64(v) => ConstData::I64(flat.iter().map(|&i| v[i]).collect()),
        ConstData::F32(v) => ConstData::F32(flat.iter().map(|&i| v[i]).collect()),
    };
    Constant { dims, data }
}

fn gather(x: &Constant, indices: &Constant, axis: i64) -> std::result::Result<Constant, String> {
    let a = normalize_axis(axis, x.dims.len()).ok_or("axis out of range")?;
    let idx = indices.as_i64().ok_or("indices must be integers")?;
    let size = x.dims[a] as i64;
    let idx: Vec<usize> = idx
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + size } else { i };
            (0..size)
                .contains(&j)
                .then_some(j as usize)
                .ok_or_else(|| format!("index {i} is out of range for size {size}"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let outer: usize = x.dims[..a].iter().product();
    let inner: usize = x.dims[a + 1..].iter().product();
    let flat: Vec<usize> = (0..outer)
        .flat_map(|o| {
            idx.iter()
                .flat_map(move |&i| (0..inner).map(move |k| (o * x.dims[a] + i) * inner + k))
        })
        .collect();
    let mut dims = x.dims[..a].to_vec();
    dims.extend(&indices.dims);
    dims.extend(&x.dims[a + 1..]);
    Ok(pick(x, dims, &flat))
}

fn transpose(x: &Constant, perm: Option<&[i64]>) -> std::result::Result<Constant, String> {
    let perm = crate::shapes::transpose_perm(x.dims.len(), perm)?;
    let dims: Vec<usize> = perm.iter().map(|&p| x.dims[p]).collect();
    let st = strides(&x.dims);
    let mut flat = vec![0usize];
    for &p in &perm {
        flat = flat
            .iter()
            .flat_map(|&base| {
                let step = st[p];
                (0..x.dims[p]).map(move |i| base + i * step)
            })
            .collect();
    }
    Ok(pick(x, dims, &flat))
}

fn slice(x: &Constant, ranges: &[(i64, i64, i64, i64)]) -> std::result::Result<Constant, String> {
    let mut per_axis: Vec<Vec<usize>> = x.dims.iter().map(|&d| (0..d).collect()).collect();
    for &(axis, start, end, step) in ranges {
        let a = normalize_axis(axis, x.dims.len()).ok_or("axis out of range")?;
        per_axis[a] = slice_range(x.dims[a], start, end, step)?;
    }
    let dims: Vec<usize> = per_axis.iter().map(Vec::len).collect();
    let st = strides(&x.dims);
    let mut flat = vec![0usize];
    for (k, picks) in per_axis.iter().enumerate() {
        flat = flat
            .iter()
            .flat_map(|&base| {
                let step = st[k];
                picks.iter().map(move |&i| base + i * step)
            })
            .collect();
    }
    Ok(pick(x, dims, &flat))
}
