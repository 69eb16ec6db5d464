//! Static shape inference at the declared batch size. It validates every node before any
//! tensor is computed (so bad files fail with an error, not a panic inside a tensor library),
//! gives `zoo inspect` its output shapes, and tracks which values carry the batch axis so that
//! graphs exported with batch 1 baked in run at any batch size.

use std::collections::{HashMap, HashSet};

use crate::error::{bad_node, OnnxError, Result};
use crate::graph::{Graph, Node};
use crate::ops::{Op, Padding, PoolSpec};

/// Tensors are executed as rank-4 arrays (leading 1s added), which keeps numpy broadcasting exact.
pub const MAX_RANK: usize = 4;

/// Where a Reshape sends its input, resolved at import.
#[derive(Clone, Debug, PartialEq)]
pub enum ReshapeTarget {
    /// Keep the batch axis, then these fixed dims: `[N, rest...]`.
    KeepBatch(Vec<usize>),
    /// Exactly these dims (constant data, or a graph that only runs at its declared batch).
    Fixed(Vec<usize>),
}

#[derive(Clone, Debug, Default)]
pub struct ShapeInfo {
    /// The batch size the shapes below were computed for (the input's dim 0, or 1 if symbolic).
    pub declared_batch: usize,
    /// Dims of every value: input, constants and node outputs.
    pub dims: HashMap<String, Vec<usize>>,
    /// Values whose axis 0 is the batch axis.
    pub batched: HashSet<String>,
    /// Resolved targets of Reshape nodes, by node label.
    pub reshape_targets: HashMap<String, ReshapeTarget>,
    /// Why the graph can only run at its declared batch size, if it mixes the batch axis.
    pub fixed_batch: Option<String>,
}

impl ShapeInfo {
    pub fn of(&self, value: &str) -> Option<&[usize]> {
        self.dims.get(value).map(Vec::as_slice)
    }
}

/// Output size of a sliding window along one axis, ONNX/PyTorch rules (a ceil-mode window must
/// start inside the input or its begin padding). `None` when the window does not fit.
pub fn window_output(
    input: usize,
    pad_begin: usize,
    pad_end: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Option<usize> {
    let span = (kernel - 1) * dilation + 1;
    let padded = input + pad_begin + pad_end;
    if padded < span {
        return None;
    }
    let steps = padded - span;
    let mut out = if ceil_mode {
        steps.div_ceil(stride)
    } else {
        steps / stride
    } + 1;
    if ceil_mode && (out - 1) * stride >= input + pad_begin {
        out -= 1;
    }
    Some(out)
}

/// Numpy-style broadcast of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let get = |s: &[usize], i: usize| {
        let offset = rank - s.len();
        if i < offset {
            1
        } else {
            s[i - offset]
        }
    };
    (0..rank)
        .map(|i| match (get(a, i), get(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// Normalises a possibly negative axis for a tensor of `rank` dims.
pub fn normalize_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r.max(1)).contains(&a).then_some(a as usize)
}

pub(crate) fn infer_shapes(graph: &Graph) -> Result<ShapeInfo> {
    let declared_batch = graph.input.dims[0].unwrap_or(1);
    let mut info = ShapeInfo {
        declared_batch,
        ..Default::default()
    };
    let mut input_dims = vec![declared_batch];
    input_dims.extend(graph.input.dims[1..].iter().map(|d| d.unwrap_or(1)));
    info.dims.insert(graph.input.name.clone(), input_dims);
    info.batched.insert(graph.input.name.clone());
    for (name, c) in &graph.constants {
        info.dims.insert(name.clone(), c.dims.clone());
    }
    for node in &graph.nodes {
        infer_node(graph, node, &mut info)?;
    }
    Ok(info)
}

fn infer_node(graph: &Graph, node: &Node, info: &mut ShapeInfo) -> Result<()> {
    let err = |reason: String| bad_node(&node.label, node.op.onnx_type(), reason);
    let dims_of = |i: usize| -> Result<Vec<usize>> {
        let name = node
            .input(i)
            .ok_or_else(|| err(format!("input {i} is missing")))?;
        info.dims
            .get(name)
            .cloned()
            .ok_or_else(|| OnnxError::DanglingEdge {
                node: node.label.clone(),
                value: name.to_string(),
            })
    };
    let is_batched = |i: usize| node.input(i).is_some_and(|n| info.batched.contains(n));
    let rank4 = |d: &[usize], what: &str| -> Result<()> {
        if d.len() == 4 {
            Ok(())
        } else {
            Err(err(format!("{what} must be NCHW (rank 4), got {d:?}")))
        }
    };
    let constant = |i: usize| node.input(i).and_then(|n| graph.constants.get(n));

    let mut batched = is_batched(0);
    let out: Vec<usize> = match &node.op {
        Op::Conv(spec) => {
            let x = dims_of(0)?;
            let w = dims_of(1)?;
            rank4(&x, "input")?;
            rank4(&w, "weight")?;
            let g = spec.group;
            if x[1] % g != 0 || w[0] % g != 0 || w[1] * g != x[1] {
                return Err(err(format!(
                    "input {x:?} with {g} groups does not fit weight {w:?}"
                )));
            }
            let kernel = [w[2], w[3]];
            if spec.kernel.is_some_and(|k| k != kernel) {
                return Err(err(format!(
                    "kernel_shape {:?} disagrees with weight {w:?}",
                    spec.kernel.unwrap_or_default()
                )));
            }
            if node.input(2).is_some() {
                let b = dims_of(2)?;
                if b != [w[0]] {
                    return Err(err(format!("bias {b:?} must be [{}]", w[0])));
                }
            }
            let pool = PoolSpec {
                kernel,
                strides: spec.strides,
                dilations: spec.dilations,
                padding: spec.padding.clone(),
                ceil_mode: false,
            };
            let [h, wd] = window_dims(&x, &pool).ok_or_else(|| {
                err(format!(
                    "a {kernel:?} kernel does not fit the padded input {x:?}"
                ))
            })?;
            vec![x[0], w[0], h, wd]
        }
        Op::MaxPool(pool) | Op::AveragePool { pool, .. } => {
            let x = dims_of(0)?;
            rank4(&x, "input")?;
            if let Padding::Explicit(p) = pool.padding {
                let span = [
                    (pool.kernel[0] - 1) * pool.dilations[0] + 1,
                    (pool.kernel[1] - 1) * pool.dilations[1] + 1,
                ];
                if p[0].max(p[2]) >= span[0] || p[1].max(p[3]) >= span[1] {
                    return Err(err(format!(
                        "pads {p:?} must be smaller than the window {span:?}"
                    )));
                }
            }
            let [h, w] = window_dims(&x, pool).ok_or_else(|| {
                err(format!(
                    "a {:?} window does not fit the input {x:?}",
                    pool.kernel
                ))
            })?;
            vec![x[0], x[1], h, w]
        }
        Op::GlobalAveragePool | Op::GlobalMaxPool => {
            let x = dims_of(0)?;
            rank4(&x, "input")?;
            vec![x[0], x[1], 1, 1]
        }
        Op::Lrn { .. } => {
            let x = dims_of(0)?;
            rank4(&x, "input")?;
            x
        }
        Op::BatchNorm { .. } => {
            let x = dims_of(0)?;
            if x.len() < 2 {
                return Err(err(format!("input {x:?} has no channel axis")));
            }
            for (i, what) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")] {
                let c = constant(i)
                    .ok_or_else(|| err(format!("{what} must be a constant (initializer)")))?;
                if c.dims != [x[1]] || !c.is_float() {
                    return Err(err(format!("{what} {:?} must be float [{}]", c.dims, x[1])));
                }
            }
            if node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
                return Err(err(
                    "training-mode outputs (running mean/var) are not supported".into(),
                ));
            }
            x
        }
        Op::Gemm {
            trans_a, trans_b, ..
        } => {
            let a = dims_of(0)?;
            let b = dims_of(1)?;
            if a.len() != 2 || b.len() != 2 {
                return Err(err(format!(
                    "operands must be matrices, got {a:?} and {b:?}"
                )));
            }
            let (m, k) = if *trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
            let (k2, n) = if *trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
            if k != k2 {
                return Err(err(format!("inner sizes differ: A {a:?}, B {b:?}")));
            }
            if node.input(2).is_some() {
                let c = dims_of(2)?;
                if broadcast(&c, &[m, n]).as_deref() != Some(&[m, n][..]) {
                    return Err(err(format!("C {c:?} does not broadcast to [{m}, {n}]")));
                }
            }
            if *trans_a && batched {
                mark_fixed(info, node, "Gemm with transA=1 mixes the batch axis");
                batched = false;
            }
            vec![m, n]
        }
        Op::MatMul => {
            let a = dims_of(0)?;
            let b = dims_of(1)?;
            if a.len() < 2 || b.len() < 2 {
                return Err(err(format!(
                    "1-D MatMul operands are not supported, got {a:?} and {b:?}"
                )));
            }
            let (ra, rb) = (a.len(), b.len());
            if a[ra - 1] != b[rb - 2] {
                return Err(err(format!("inner sizes differ: {a:?} x {b:?}")));
            }
            let mut lead = broadcast(&a[..ra - 2], &b[..rb - 2])
                .ok_or_else(|| err(format!("batch dims of {a:?} and {b:?} do not broadcast")))?;
            lead.extend([a[ra - 2], b[rb - 1]]);
            if !is_batched(0) && is_batched(1) {
                batched = false;
            }
            lead
        }
        Op::Add | Op::Sub | Op::Mul | Op::Div => {
            let a = dims_of(0)?;
            let b = dims_of(1)?;
            let out = broadcast(&a, &b)
                .ok_or_else(|| err(format!("{a:?} and {b:?} do not broadcast")))?;
            batched =
                (is_batched(0) && out.len() == a.len()) || (is_batched(1) && out.len() == b.len());
            out
        }
        Op::Relu
        | Op::LeakyRelu { .. }
        | Op::Sigmoid
        | Op::Tanh
        | Op::Identity
        | Op::Dropout { .. } => {
            if matches!(node.op, Op::Dropout { .. }) {
                let mask = node.outputs.get(1).filter(|m| !m.is_empty());
                if let Some(mask) = mask {
                    if graph.consumers(mask).next().is_some() || graph.output.name == *mask {
                        return Err(err("the dropout mask output is used; zoo supports inference-style Dropout only".into()));
                    }
                }
            }
            dims_of(0)?
        }
        Op::Softmax { axis, legacy } => {
            let x = dims_of(0)?;
            let a = normalize_axis(*axis, x.len())
                .ok_or_else(|| err(format!("axis {axis} is out of range for {x:?}")))?;
            if a == 0 && batched {
                mark_fixed(info, node, "Softmax over axis 0 mixes the batch");
                batched = false;
            }
            let _ = legacy;
            x
        }
        Op::Flatten { axis } => {
            let x = dims_of(0)?;
            let a = if *axis < 0 {
                *axis + x.len() as i64
            } else {
                *axis
            };
            if !(0..=x.len() as i64).contains(&a) {
                return Err(err(format!("axis {axis} is out of range for {x:?}")));
            }
            let a = a as usize;
            if a != 1 && batched {
                mark_fixed(info, node, "Flatten with axis != 1 mixes the batch");
                batched = false;
            }
            vec![x[..a].iter().product(), x[a..].iter().product()]
        }
        Op::Reshape { shape, allow_zero } => {
            let x = dims_of(0)?;
            let target: Vec<i64> = match (shape, node.input(1)) {
                (Some(s), None) => s.clone(),
                (_, Some(name)) => graph
                    .constants
                    .get(name)
                    .and_then(|c| c.as_i64())
                    .map(<[i64]>::to_vec)
                    .ok_or_else(|| err(format!(
                        "the target shape `{name}` must be a constant int64 tensor (computed shapes are not supported)"
                    )))?,
                (None, None) => return Err(err("missing target shape".into())),
            };
            let out = resolve_reshape(&x, &target, *allow_zero).map_err(err)?;
            let keeps_batch = !out.is_empty()
                && !x.is_empty()
                && out[0] == x[0]
                && out[1..].iter().product::<usize>() == x[1..].iter().product::<usize>();
            let resolved = if batched && keeps_batch {
                ReshapeTarget::KeepBatch(out[1..].to_vec())
            } else {
                if batched {
                    mark_fixed(info, node, "Reshape moves the batch axis");
                    batched = false;
                }
                ReshapeTarget::Fixed(out.clone())
            };
            info.reshape_targets.insert(node.label.clone(), resolved);
            out
        }
        Op::Concat { axis } => {
            let first = dims_of(0)?;
            let a = normalize_axis(*axis, first.len())
                .ok_or_else(|| err(format!("axis {axis} is out of range for {first:?}")))?;
            let mut out = first.clone();
            out[a] = 0;
            for i in 0..node.inputs.len() {
                let d = dims_of(i)?;
                if d.len() != first.len()
                    || d.iter()
                        .zip(&first)
                        .enumerate()
                        .any(|(j, (p, q))| j != a && p != q)
                {
                    return Err(err(format!(
                        "{d:?} does not concatenate with {first:?} on axis {a}"
                    )));
                }
                out[a] += d[a];
            }
            batched = (0..node.inputs.len()).all(is_batched);
            if a == 0 && batched {
                mark_fixed(info, node, "Concat along axis 0 mixes the batch");
                batched = false;
            }
            out
        }
        Op::Constant | Op::ConstantOfShape => unreachable!("constant nodes are folded at load"),
    };
    if out.len() > MAX_RANK || out.is_empty() {
        return Err(err(format!(
            "produces a rank-{} tensor {out:?}; zoo supports ranks 1 to {MAX_RANK}",
            out.len()
        )));
    }
    let first = node
        .outputs
        .first()
        .filter(|o| !o.is_empty())
        .ok_or_else(|| err("has no output".into()))?;
    if batched {
        info.batched.insert(first.clone());
    }
    info.dims.insert(first.clone(), out);
    Ok(())
}

fn mark_fixed(info: &mut ShapeInfo, node: &Node, why: &str) {
    info.fixed_batch
        .get_or_insert_with(|| format!("node `{}`: {why}", node.label));
}

fn window_dims(x: &[usize], pool: &PoolSpec) -> Option<[usize; 2]> {
    let pads = pool
        .padding
        .resolve([x[2], x[3]], pool.kernel, pool.strides, pool.dilations);
    let h = window_output(
        x[2],
        pads[0],
        pads[2],
        pool.kernel[0],
        pool.strides[0],
        pool.dilations[0],
        pool.ceil_mode,
    )?;
    let w = window_output(
        x[3],
        pads[1],
        pads[3],
        pool.kernel[1],
        pool.strides[1],
        pool.dilations[1],
        pool.ceil_mode,
    )?;
    Some([h, w])
}

/// ONNX Reshape: 0 copies the input dim (unless `allow_zero`), one -1 is inferred.
pub fn resolve_reshape(
    input: &[usize],
    target: &[i64],
    allow_zero: bool,
) -> std::result::Result<Vec<usize>, String> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allow_zero => out.push(*input.get(i).ok_or_else(|| {
                format!("target {target:?}: 0 at axis {i} has no input dim to copy")
            })?),
            t if t >= 0 => out.push(t as usize),
            _ => return Err(format!("invalid target shape {target:?}")),
        }
    }
    let known = out
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("target {target:?} overflows"))?;
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape {input:?} to {target:?}"));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!(
            "cannot reshape {input:?} ({total} values) to {target:?}"
        ));
    }
    Ok(out)
}
