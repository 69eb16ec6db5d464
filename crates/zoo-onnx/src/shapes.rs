//! Static shape inference at the declared batch size. It validates every node before any
//! tensor is computed (so bad files fail with an error, not a panic inside a tensor library),
//! gives `zoo inspect` its output shapes, and tracks which values carry the batch axis so that
//! graphs exported with batch 1 baked in run at any batch size.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::error::{bad_node, OnnxError, Result};
use crate::fold::{squeeze_dims, unsqueeze_dims};
use crate::graph::{Graph, Node};
use crate::ops::{Op, Padding, PoolSpec, Reduction};
use crate::tensor::Constant;

/// Tensors are executed as rank-5 arrays (leading 1s added), which keeps numpy broadcasting
/// exact; rank 5 is what channel shuffles reshape through.
pub const MAX_RANK: usize = 5;

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

/// The elements `start..end` by `step` of an axis of `size`, clamped as ONNX Slice does.
pub fn slice_range(
    size: usize,
    start: i64,
    end: i64,
    step: i64,
) -> std::result::Result<Vec<usize>, String> {
    if step == 0 {
        return Err("a slice step of 0".into());
    }
    let n = size as i64;
    let resolve = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
    let (s, e) = (resolve(start), resolve(end));
    let out: Vec<usize> = if step > 0 {
        let (s, e) = (s.clamp(0, n), e.clamp(0, n));
        (s..e).step_by(step as usize).map(|i| i as usize).collect()
    } else {
        let (s, e) = (s.clamp(-1, n - 1), e.clamp(-1, n - 1));
        let mut v = Vec::new();
        let mut i = s;
        while i > e {
            v.push(i as usize);
            i += step;
        }
        v
    };
    Ok(out)
}

impl ShapeInfo {
    /// The shapes known before any node runs: the input (at its declared batch) and constants.
    pub(crate) fn start(graph: &Graph) -> Self {
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
        info
    }
}

pub(crate) fn infer_shapes(graph: &Graph) -> Result<ShapeInfo> {
    let mut info = ShapeInfo::start(graph);
    for node in &graph.nodes {
        infer_node(
            &graph.constants,
            &graph.folded.batch_dependent,
            node,
            &mut info,
        )?;
    }
    Ok(info)
}

/// Validates one node and records the dims (and batch tracking) of its outputs.
pub(crate) fn infer_node(
    constants: &BTreeMap<String, Constant>,
    batch_dependent: &BTreeSet<String>,
    node: &Node,
    info: &mut ShapeInfo,
) -> Result<()> {
    if let Some((i, name)) = node.inputs.iter().enumerate().find(|(i, n)| {
        batch_dependent.contains(*n) && !matches!((&node.op, i), (Op::Reshape { .. }, 1))
    }) {
        let _ = i;
        mark_fixed(
            info,
            node,
            &format!("reads `{name}`, a value computed from the batch size"),
        );
    }
    if let Op::Split { axis, sizes } = &node.op {
        return infer_split(node, *axis, sizes.as_deref(), info);
    }
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
    let constant = |i: usize| node.input(i).and_then(|n| constants.get(n));

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
            // The batch axis survives only where the other operand's leading dims broadcast
            // against it as 1 (a [10, 8, 1, 1] right side turns a batch of 1 into 10).
            let batch_kept = if ra == 2 && rb == 2 {
                is_batched(0)
            } else {
                batch_follows(&[(&a, is_batched(0)), (&b, is_batched(1))], &lead)
            };
            if !batch_kept {
                if is_batched(0) || is_batched(1) {
                    mark_fixed(
                        info,
                        node,
                        "the MatMul broadcast does not keep the batch axis first",
                    );
                }
                batched = false;
            }
            lead
        }
        Op::Add | Op::Sub | Op::Mul | Op::Div => {
            let a = dims_of(0)?;
            let b = dims_of(1)?;
            let out = broadcast(&a, &b)
                .ok_or_else(|| err(format!("{a:?} and {b:?} do not broadcast")))?;
            batched = batch_follows(&[(&a, is_batched(0)), (&b, is_batched(1))], &out);
            if !batched && (is_batched(0) || is_batched(1)) {
                mark_fixed(
                    info,
                    node,
                    "the broadcast does not keep the batch axis first",
                );
            }
            out
        }
        Op::Relu
        | Op::LeakyRelu { .. }
        | Op::Sigmoid
        | Op::Tanh
        | Op::Identity
        | Op::Unary(_)
        | Op::Dropout { .. } => dims_of(0)?,
        Op::PRelu => {
            let x = dims_of(0)?;
            let slope = dims_of(1)?;
            if broadcast(&x, &slope).as_deref() != Some(&x[..]) {
                return Err(err(format!("slope {slope:?} does not broadcast to {x:?}")));
            }
            x
        }
        Op::Variadic(_) => {
            let mut out = dims_of(0)?;
            for i in 1..node.inputs.len() {
                let d = dims_of(i)?;
                out = broadcast(&out, &d)
                    .ok_or_else(|| err(format!("{out:?} and {d:?} do not broadcast")))?;
            }
            let all: Vec<(Vec<usize>, bool)> = (0..node.inputs.len())
                .map(|i| Ok((dims_of(i)?, is_batched(i))))
                .collect::<Result<_>>()?;
            let refs: Vec<(&Vec<usize>, bool)> = all.iter().map(|(d, b)| (d, *b)).collect();
            batched = batch_follows(&refs, &out);
            if !batched && all.iter().any(|(_, b)| *b) {
                mark_fixed(
                    info,
                    node,
                    "the broadcast does not keep the batch axis first",
                );
            }
            out
        }
        Op::Reduce {
            kind,
            axes,
            keepdims,
            noop_with_empty_axes,
        } => {
            let x = dims_of(0)?;
            let _: &Reduction = kind;
            let axes = reduce_axes(&x, axes.as_deref(), *noop_with_empty_axes).map_err(err)?;
            if axes.contains(&0) && batched {
                mark_fixed(info, node, "reduces over the batch axis");
                batched = false;
            }
            if *keepdims {
                (0..x.len())
                    .map(|i| if axes.contains(&i) { 1 } else { x[i] })
                    .collect()
            } else {
                (0..x.len())
                    .filter(|i| !axes.contains(i))
                    .map(|i| x[i])
                    .collect()
            }
        }
        Op::Transpose { perm } => {
            let x = dims_of(0)?;
            let perm = transpose_perm(x.len(), perm.as_deref()).map_err(err)?;
            if perm[0] != 0 && batched {
                mark_fixed(info, node, "Transpose moves the batch axis");
                batched = false;
            }
            perm.iter().map(|&p| x[p]).collect()
        }
        Op::Squeeze { axes } => {
            let x = dims_of(0)?;
            let out = squeeze_dims(&x, axes.as_deref()).map_err(err)?;
            let drops_batch = match axes {
                None => x[0] == 1,
                Some(a) => a.iter().any(|&v| normalize_axis(v, x.len()) == Some(0)),
            };
            if drops_batch && batched {
                mark_fixed(info, node, "Squeeze removes the batch axis");
                batched = false;
            }
            out
        }
        Op::Unsqueeze { axes } => {
            let x = dims_of(0)?;
            let axes = axes.as_deref().unwrap_or(&[]);
            let out = unsqueeze_dims(&x, axes).map_err(err)?;
            if batched && out[0] != x[0]
                || axes
                    .iter()
                    .any(|&a| normalize_axis(a, out.len()) == Some(0))
            {
                if batched {
                    mark_fixed(info, node, "Unsqueeze moves the batch axis");
                }
                batched = false;
            }
            out
        }
        Op::Slice { axes } => {
            let x = dims_of(0)?;
            let ranges = axes
                .as_ref()
                .ok_or_else(|| err("slice ranges are unknown".into()))?;
            let mut out = x.clone();
            for &(axis, start, end, step) in ranges {
                let a = normalize_axis(axis, x.len())
                    .ok_or_else(|| err(format!("axis {axis} is out of range for {x:?}")))?;
                let picked = slice_range(x[a], start, end, step).map_err(err)?;
                if step != 1 {
                    return Err(err(format!(
                        "a step of {step} on a computed tensor is not supported (only 1)"
                    )));
                }
                if a == 0 && batched && picked.len() != x[0] {
                    mark_fixed(info, node, "Slice selects from the batch axis");
                    batched = false;
                }
                if picked.is_empty() {
                    return Err(err(format!("the slice of axis {a} of {x:?} is empty")));
                }
                out[a] = picked.len();
            }
            out
        }
        Op::Gather { axis } => {
            let x = dims_of(0)?;
            let a = normalize_axis(*axis, x.len())
                .ok_or_else(|| err(format!("axis {axis} is out of range for {x:?}")))?;
            let idx = constant(1)
                .filter(|c| !c.is_float() && c.dims.len() <= 1)
                .ok_or_else(|| err("indices must be a constant integer scalar or vector".into()))?;
            let size = x[a] as i64;
            if idx
                .as_i64()
                .unwrap_or_default()
                .iter()
                .any(|&i| i < -size || i >= size)
            {
                return Err(err(format!(
                    "indices are out of range for axis {a} of {x:?}"
                )));
            }
            if a == 0 && batched {
                mark_fixed(info, node, "Gather selects from the batch axis");
                batched = false;
            }
            let mut out = x[..a].to_vec();
            out.extend(&idx.dims);
            out.extend(&x[a + 1..]);
            out
        }
        Op::Cast { to } => {
            use tract_onnx::pb::tensor_proto::DataType as T;
            if ![T::Float as i32, T::Double as i32].contains(to) {
                return Err(err(format!(
                    "Cast of a computed tensor to type {to} is not supported (zoo computes in float32)"
                )));
            }
            dims_of(0)?
        }
        Op::Pad { kind, pads } => {
            let x = dims_of(0)?;
            let pads = pads
                .as_ref()
                .ok_or_else(|| err("pads are unknown".into()))?;
            if pads.len() != 2 * x.len() || pads.iter().any(|&p| !(0..=1 << 16).contains(&p)) {
                return Err(err(format!(
                    "pads {pads:?} must be {} non-negative values for {x:?}",
                    2 * x.len()
                )));
            }
            // Reflection mirrors inside the tensor: it needs more values than it adds.
            let too_wide = (0..x.len()).find(|&i| {
                (pads[i] > 0 || pads[i + x.len()] > 0)
                    && (pads[i] as usize >= x[i] || pads[i + x.len()] as usize >= x[i])
            });
            if let (crate::ops::PadKind::Reflect, Some(i)) = (kind, too_wide) {
                return Err(err(format!(
                    "reflect pads {pads:?} must be smaller than the padded axes of {x:?} (axis {i})"
                )));
            }
            if (pads[0] != 0 || pads[x.len()] != 0) && batched {
                mark_fixed(info, node, "Pad pads the batch axis");
                batched = false;
            }
            (0..x.len())
                .map(|i| x[i] + (pads[i] + pads[i + x.len()]) as usize)
                .collect()
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
                (_, Some(name)) => constants
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
        Op::Constant | Op::ConstantOfShape | Op::Shape { .. } | Op::Split { .. } => {
            unreachable!("folded at load, or handled above")
        }
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

/// `Split`: several outputs along one axis.
fn infer_split(node: &Node, axis: i64, sizes: Option<&[i64]>, info: &mut ShapeInfo) -> Result<()> {
    let err = |reason: String| bad_node(&node.label, "Split", reason);
    let name = node
        .input(0)
        .ok_or_else(|| err("input 0 is missing".into()))?;
    let x = info
        .dims
        .get(name)
        .cloned()
        .ok_or_else(|| OnnxError::DanglingEdge {
            node: node.label.clone(),
            value: name.to_string(),
        })?;
    let a = normalize_axis(axis, x.len())
        .ok_or_else(|| err(format!("axis {axis} is out of range for {x:?}")))?;
    let parts = node.outputs.len();
    let sizes: Vec<usize> = match sizes {
        Some(s) if s.len() == parts && s.iter().all(|&v| v > 0) => {
            s.iter().map(|&v| v as usize).collect()
        }
        Some(s) => return Err(err(format!("split sizes {s:?} do not fit {parts} outputs"))),
        None if parts > 0 && x[a].is_multiple_of(parts) => vec![x[a] / parts; parts],
        None => {
            return Err(err(format!(
                "axis {a} of {x:?} does not split evenly into {parts} outputs"
            )))
        }
    };
    if sizes.iter().sum::<usize>() != x[a] {
        return Err(err(format!(
            "split sizes {sizes:?} do not add up to {}",
            x[a]
        )));
    }
    let batched = info.batched.contains(name);
    if a == 0 && batched {
        mark_fixed(info, node, "Split cuts the batch axis");
    }
    for (out, size) in node.outputs.iter().zip(sizes) {
        if out.is_empty() {
            continue;
        }
        let mut d = x.clone();
        d[a] = size;
        if batched && a != 0 {
            info.batched.insert(out.clone());
        }
        info.dims.insert(out.clone(), d);
    }
    Ok(())
}

/// The axes a reduction runs over, normalised; no axes means all (or none with the flag).
fn reduce_axes(
    x: &[usize],
    axes: Option<&[i64]>,
    noop_with_empty_axes: bool,
) -> std::result::Result<Vec<usize>, String> {
    match axes {
        None | Some([]) if noop_with_empty_axes => Ok(Vec::new()),
        None | Some([]) => Ok((0..x.len()).collect()),
        Some(a) => a
            .iter()
            .map(|&v| {
                normalize_axis(v, x.len()).ok_or(format!("axis {v} is out of range for {x:?}"))
            })
            .collect(),
    }
}

/// A Transpose permutation, validated (`None` reverses the axes).
pub fn transpose_perm(
    rank: usize,
    perm: Option<&[i64]>,
) -> std::result::Result<Vec<usize>, String> {
    let p: Vec<usize> = match perm {
        None => (0..rank).rev().collect(),
        Some(v) => v
            .iter()
            .map(|&a| normalize_axis(a, rank).ok_or(format!("perm {v:?} is out of range")))
            .collect::<std::result::Result<_, _>>()?,
    };
    let mut sorted = p.clone();
    sorted.sort_unstable();
    if sorted != (0..rank).collect::<Vec<_>>() {
        return Err(format!("perm {perm:?} is not a permutation of {rank} axes"));
    }
    Ok(p)
}

/// Public for `zoo-net`: the reduced axes of a validated Reduce node.
pub fn reduced_axes(x: &[usize], axes: Option<&[i64]>, noop_with_empty_axes: bool) -> Vec<usize> {
    reduce_axes(x, axes, noop_with_empty_axes).unwrap_or_default()
}

/// Whether an element-wise result carries the batch on axis 0 at every batch size: every
/// batched operand has the output's rank, and no other operand has a non-1 leading dim there.
fn batch_follows(operands: &[(&Vec<usize>, bool)], out: &[usize]) -> bool {
    operands.iter().any(|(_, b)| *b)
        && operands.iter().all(|(d, b)| {
            if *b {
                d.len() == out.len()
            } else {
                d.len() < out.len() || d[0] == 1
            }
        })
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
