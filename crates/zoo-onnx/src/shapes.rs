//! Static shape inference at the declared batch size. It validates every node before any
//! tensor is computed (so bad files fail with an error, not a panic inside a tensor library),
//! gives `zoo inspect` its output shapes, and tracks which values carry the batch axis so that
//! graphs exported with batch 1 baked in run at any batch size.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::{bad_node, OnnxError, Result};
use crate::fold::Folded;
use crate::graph::{Graph, Node};
use crate::ops::PoolSpec;
use crate::tensor::Constant;

/// Tensors are executed as rank-6 arrays (leading 1s added), which keeps numpy broadcasting
/// exact; rank 5 is what channel shuffles reshape through, rank 6 Swin's window partition.
pub const MAX_RANK: usize = 6;

/// Where a Reshape sends its input, resolved at import.
#[derive(Clone, Debug, PartialEq)]
pub enum ReshapeTarget {
    /// These dims at the declared batch; at run time `axis` takes what the others leave
    /// (it holds the batch, possibly as a factor: `[L, B * heads, d]`).
    Batch { dims: Vec<usize>, axis: usize },
    /// Exactly these dims (constant data, or a graph that only runs at its declared batch).
    Fixed(Vec<usize>),
}

#[derive(Clone, Debug, Default)]
pub struct ShapeInfo {
    /// The batch size the shapes below were computed for (the input's dim 0, or 1 if symbolic).
    pub declared_batch: usize,
    /// Dims of every value: input, constants and node outputs.
    pub dims: HashMap<String, Vec<usize>>,
    /// Values that carry the batch: on axis 0, or on the axis `batch_axes` gives.
    pub batched: HashSet<String>,
    /// The batch axis of batched values where it is not 0 (attention's `qkv.permute(2, 0,
    /// ...)` moves it to 1 until `unbind(0)` takes it back).
    pub batch_axes: HashMap<String, usize>,
    /// Batched values whose batch axis holds the batch as an inner factor: the size of the
    /// factor before it (sequence-first attention's `[L * B, C]` has `L`); absent means 1.
    pub batch_outer: HashMap<String, usize>,
    /// Gather nodes (by label) whose indices, computed from the batch size, pick within each
    /// sample's block of this many values of the batch axis (the dynamo exporter's
    /// `as_strided` over a flattened tensor); they run with the first sample's indices.
    pub per_sample_gathers: HashMap<String, usize>,
    /// Resolved targets of Reshape nodes, by node label.
    pub reshape_targets: HashMap<String, ReshapeTarget>,
    /// Expand and Tile nodes (by label) whose target's axis 0 is the batch size: their
    /// output's axis 0 is the run-time batch.
    pub batch_sized: HashSet<String>,
    /// Nodes (by label) where following the batch took a rule that shapes alone cannot prove
    /// (a Reshape that scales axis 0 with the batch, a Concat that repeats a part along it);
    /// `zoo-net` proves them by running at two batch sizes before the graph runs at others.
    pub batch_rewrites: Vec<String>,
    /// Why the graph can only run at its declared batch size, if it mixes the batch axis.
    pub fixed_batch: Option<String>,
}

impl ShapeInfo {
    pub fn of(&self, value: &str) -> Option<&[usize]> {
        self.dims.get(value).map(Vec::as_slice)
    }

    /// The dims of a value at a probe batch one larger than the declared one.
    pub fn probe_dims(&self, value: &str) -> Option<Vec<usize>> {
        let mut d = self.dims.get(value).cloned()?;
        if self.batched.contains(value) {
            let axis = self.batch_axes.get(value).copied().unwrap_or(0);
            let per_sample = d.get(axis)? / self.declared_batch.max(1);
            d[axis] += per_sample;
        }
        Some(d)
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
    crate::shapes_search::infer_searching(graph)
}

/// Validates one node and records the dims (and batch tracking) of its outputs; the op's
/// family gives the rule ([`Op::infer`]).
pub(crate) fn infer_node(
    constants: &BTreeMap<String, Constant>,
    folded: &Folded,
    node: &Node,
    info: &mut ShapeInfo,
    choice: usize,
) -> Result<usize> {
    if let Some((_, name)) = node
        .inputs
        .iter()
        .enumerate()
        .find(|(i, n)| folded.batch_dependent.contains(*n) && !node.op.follows_batch_size(*i))
    {
        let why = format!("reads `{name}`, a value computed from the batch size");
        mark_fixed(info, node, &why);
    }
    let batched = node.input(0).is_some_and(|n| info.batched.contains(n));
    let batch_axis = node
        .input(0)
        .and_then(|n| info.batch_axes.get(n))
        .copied()
        .unwrap_or(0);
    let batch_outer = node
        .input(0)
        .and_then(|n| info.batch_outer.get(n))
        .copied()
        .unwrap_or(1);
    let moved = node.inputs.iter().find(|n| {
        info.batched.contains(*n)
            && (info.batch_axes.contains_key(*n) || info.batch_outer.contains_key(*n))
    });
    if let (Some(name), false) = (moved, node.op.follows_moved_batch()) {
        let why =
            format!("reads `{name}`, whose batch axis was moved, which this op does not follow");
        mark_fixed(info, node, &why);
    }
    let mut cx = ShapeCx {
        node,
        info,
        constants,
        folded,
        batched,
        batch_axis,
        batch_outer,
        choice,
        alternatives: 1,
    };
    let outs = node.op.infer(&mut cx)?;
    let (batched, batch_axis, batch_outer) = (cx.batched, cx.batch_axis, cx.batch_outer);
    let alternatives = cx.alternatives;
    if let [out] = outs.as_slice() {
        if out.len() > MAX_RANK || out.is_empty() {
            return Err(cx.err(format!(
                "produces a rank-{} tensor {out:?}; zoo supports ranks 1 to {MAX_RANK}",
                out.len()
            )));
        }
        if node.outputs.first().is_none_or(String::is_empty) {
            return Err(cx.err("has no output"));
        }
    }
    for (name, dims) in node.outputs.iter().zip(outs) {
        if name.is_empty() {
            continue;
        }
        if batched {
            info.batched.insert(name.clone());
            if batch_axis != 0 {
                info.batch_axes.insert(name.clone(), batch_axis);
            }
            if batch_outer != 1 {
                info.batch_outer.insert(name.clone(), batch_outer);
            }
        }
        info.dims.insert(name.clone(), dims);
    }
    Ok(alternatives)
}

/// What a family's shape rule sees of one node: its inputs' dims and batch tracking, the
/// graph's constants, and whether its outputs carry the batch (input 0's, until the rule says
/// otherwise).
pub struct ShapeCx<'a> {
    pub node: &'a Node,
    pub info: &'a mut ShapeInfo,
    pub constants: &'a BTreeMap<String, Constant>,
    /// Computed values, those that depend on the batch size, and their values at a probe
    /// batch.
    pub folded: &'a Folded,
    /// Whether the outputs carry the batch.
    pub batched: bool,
    /// The outputs' batch axis (input 0's, until the rule says otherwise).
    pub batch_axis: usize,
    /// The factor before the batch on that axis (see [`ShapeInfo::batch_outer`]).
    pub batch_outer: usize,
    /// Which of the rule's equally valid readings to take (a Reshape of a batch-1 file may
    /// put the batch on either side of an axis boundary); the search over readings sets it.
    pub choice: usize,
    /// How many readings the rule had (1 unless it is ambiguous).
    pub alternatives: usize,
}

impl ShapeCx<'_> {
    pub fn err(&self, reason: impl Into<String>) -> OnnxError {
        bad_node(&self.node.label, self.node.op.onnx_type(), reason)
    }

    /// The dims of input `i`.
    pub fn dims(&self, i: usize) -> Result<Vec<usize>> {
        let name = self
            .node
            .input(i)
            .ok_or_else(|| self.err(format!("input {i} is missing")))?;
        self.info
            .dims
            .get(name)
            .cloned()
            .ok_or_else(|| OnnxError::DanglingEdge {
                node: self.node.label.clone(),
                value: name.to_string(),
            })
    }

    /// Whether input `i` carries the batch on axis 0.
    pub fn is_batched(&self, i: usize) -> bool {
        self.node
            .input(i)
            .is_some_and(|n| self.info.batched.contains(n))
    }

    /// Whether input `i` was computed from the batch size.
    pub fn is_batch_dependent(&self, i: usize) -> bool {
        self.node
            .input(i)
            .is_some_and(|n| self.folded.batch_dependent.contains(n))
    }

    /// The factor before the batch on input `i`'s batch axis.
    pub fn outer_of(&self, i: usize) -> usize {
        self.node
            .input(i)
            .and_then(|n| self.info.batch_outer.get(n))
            .copied()
            .unwrap_or(1)
    }

    /// The batch axis of input `i` (0 unless an earlier op moved it).
    pub fn axis_of(&self, i: usize) -> usize {
        self.node
            .input(i)
            .and_then(|n| self.info.batch_axes.get(n))
            .copied()
            .unwrap_or(0)
    }

    /// Input `i` as a constant of the graph, when it is one.
    pub fn constant(&self, i: usize) -> Option<&Constant> {
        self.node.input(i).and_then(|n| self.constants.get(n))
    }

    pub fn rank4(&self, d: &[usize], what: &str) -> Result<()> {
        if d.len() == 4 {
            Ok(())
        } else {
            Err(self.err(format!("{what} must be NCHW (rank 4), got {d:?}")))
        }
    }

    /// A possibly negative axis of `dims`, normalised.
    pub fn axis(&self, axis: i64, dims: &[usize]) -> Result<usize> {
        normalize_axis(axis, dims.len())
            .ok_or_else(|| self.err(format!("axis {axis} is out of range for {dims:?}")))
    }

    /// Records why the graph only runs at its declared batch (the first reason wins).
    pub fn mark_fixed(&mut self, why: &str) {
        mark_fixed(self.info, self.node, why);
    }

    /// Records that the batch was followed by an unproven rule (see
    /// [`ShapeInfo::batch_rewrites`]).
    pub fn rewrote_batch(&mut self) {
        let label = self.node.label.clone();
        self.info.batch_rewrites.push(label);
    }

    /// The outputs lose the batch axis; when they had it, the graph runs at its declared batch.
    pub fn drop_batch(&mut self, why: &str) {
        if self.batched {
            self.mark_fixed(why);
        }
        self.batched = false;
    }

    /// Batch tracking of an element-wise result of `operands` (dims, batched) with dims `out`:
    /// every batched operand has the batch on input 0's batch axis.
    pub fn follow_broadcast(&mut self, operands: &[(&Vec<usize>, bool)], out: &[usize]) {
        let axis = (0..operands.len())
            .find(|&i| operands[i].1)
            .map_or(0, |i| self.axis_of(i));
        let first = (0..operands.len()).find(|&i| operands[i].1);
        let outer = first.map_or(1, |i| self.outer_of(i));
        let same_axis = (0..operands.len())
            .all(|i| !operands[i].1 || (self.axis_of(i) == axis && self.outer_of(i) == outer));
        self.batch_axis = axis;
        self.batch_outer = outer;
        self.batched = same_axis && batch_follows(operands, out, axis);
        if !self.batched && operands.iter().any(|(_, b)| *b) {
            self.mark_fixed("the broadcast does not keep the batch axis first");
        }
    }
}

/// The axes a reduction runs over, normalised; no axes means all (or none with the flag).
pub(crate) fn reduce_axes(
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

/// Whether an element-wise result carries the batch on `axis` at every batch size: every
/// batched operand has the output's rank, and the others are 1 there or do not reach it.
pub(crate) fn batch_follows(operands: &[(&Vec<usize>, bool)], out: &[usize], axis: usize) -> bool {
    operands.iter().any(|(_, b)| *b)
        && operands.iter().all(|(d, b)| {
            let offset = out.len() - d.len();
            if *b {
                d.len() == out.len()
            } else {
                axis < offset || d[axis - offset] == 1
            }
        })
}

fn mark_fixed(info: &mut ShapeInfo, node: &Node, why: &str) {
    info.fixed_batch
        .get_or_insert_with(|| format!("node `{}`: {why}", node.label));
}

pub(crate) fn window_dims(x: &[usize], pool: &PoolSpec) -> Option<[usize; 2]> {
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
