//! Layout and selection ops. Their settings were validated and baked at import
//! (`zoo_onnx::ops::array`), so nothing here meets an inconsistent node.

use burn::tensor::backend::Backend;
use burn::tensor::ops::PadMode;
use burn::tensor::{Int, Tensor, TensorData};
use zoo_onnx::ops::{Array, PadKind};
use zoo_onnx::shapes::{normalize_axis, slice_range, transpose_perm, ReshapeTarget};
use zoo_onnx::Constant;

use super::Cx;
use crate::exec::{Value, PADDED};

/// Runs one node; its outputs in order (several only for Split).
pub(crate) fn run<B: Backend>(op: &Array, cx: &Cx<B>) -> Vec<Value<B>> {
    let one = match op {
        Array::Split { axis, sizes } => {
            return split(cx.get(0), *axis, sizes.as_deref(), cx.node.outputs.len())
        }
        Array::Identity | Array::Cast { .. } => cx.get(0),
        Array::Flatten { axis } => {
            let x = cx.get(0);
            let dims = x.dims();
            let a = if *axis < 0 {
                *axis + dims.len() as i64
            } else {
                *axis
            } as usize;
            let out = [dims[..a].iter().product(), dims[a..].iter().product()];
            Value::reshaped(x.t, &out)
        }
        Array::Reshape { .. } => reshape(cx),
        Array::Squeeze { .. } | Array::Unsqueeze { .. } => to_inferred_shape(cx),
        Array::Concat { axis } => concat(cx.all(), *axis),
        Array::Transpose { perm } => transpose(cx.get(0), perm.as_deref()),
        Array::Slice { ranges } => slice(cx.get(0), ranges),
        Array::Gather { axis } => {
            let indices = cx.constant(1).expect("validated");
            match cx
                .net
                .plan
                .graph
                .shapes
                .per_sample_gathers
                .get(&cx.node.label)
            {
                Some(&block) => per_sample_gather(cx.get(0), *axis, indices, block),
                None => gather(cx.get(0), *axis, indices),
            }
        }
        Array::GatherNd => gather_nd(cx.get(0), cx.constant(1).expect("validated")),
        Array::Pad { kind, pads } => pad(cx.get(0), *kind, pads),
        // Shape inference refuses a ScatterND that was not computed at import.
        Array::ScatterNd => unreachable!("ScatterND is folded at import"),
    };
    vec![one]
}

/// Parts joined along `axis`; parts with a leading 1 where others carry the batch (a class
/// token of a fixed-batch export) are repeated along it first.
fn concat<B: Backend>(parts: Vec<Value<B>>, axis: i64) -> Value<B> {
    let rank = parts[0].rank;
    let a = normalize_axis(axis, rank).expect("validated");
    let batch = parts.iter().map(|v| v.dims()[0]).max().unwrap_or(1);
    let tensors = parts
        .into_iter()
        .map(|v| {
            let mut dims = v.t.dims();
            if a != 0 && dims[PADDED - rank] != batch {
                dims[PADDED - rank] = batch;
                return v.t.expand(dims);
            }
            v.t
        })
        .collect();
    Value::new(crate::concat::concat(tensors, a + PADDED - rank), rank)
}

/// Reshape to the target resolved at import, its batch axis scaled with the run-time batch.
fn reshape<B: Backend>(cx: &Cx<B>) -> Value<B> {
    let x = cx.get(0);
    let targets = &cx.net.plan.graph.shapes.reshape_targets;
    let target = match targets.get(&cx.node.label).expect("resolved at import") {
        ReshapeTarget::Batch { dims, axis } => {
            let total: usize = x.dims().iter().product();
            let others: usize = (0..dims.len())
                .filter(|&j| j != *axis)
                .map(|j| dims[j])
                .product();
            let mut run = dims.clone();
            run[*axis] = total / others.max(1);
            run
        }
        ReshapeTarget::Fixed(d) => d.clone(),
    };
    Value::reshaped(x.t, &target)
}

/// The output dims inferred at import; the batch axis keeps its run-time size.
fn to_inferred_shape<B: Backend>(cx: &Cx<B>) -> Value<B> {
    let shapes = &cx.net.plan.graph.shapes;
    let output = &cx.node.outputs[0];
    let mut out = shapes.of(output).expect("shapes were inferred").to_vec();
    let x = cx.get(0);
    if shapes.batched.contains(output) {
        // The batch axis scales with the run-time batch (and stays where it was inferred).
        let axis = shapes.batch_axes.get(output).copied().unwrap_or(0);
        let declared: usize = out.iter().product();
        let running: usize = x.dims().iter().product();
        out[axis] = out[axis] * running / declared.max(1);
    }
    Value::reshaped(x.t, &out)
}

fn transpose<B: Backend>(x: Value<B>, perm: Option<&[i64]>) -> Value<B> {
    let perm = transpose_perm(x.rank, perm).expect("validated");
    let lead = PADDED - x.rank;
    let axes: [usize; PADDED] =
        std::array::from_fn(|i| if i < lead { i } else { perm[i - lead] + lead });
    let fast = crate::kernels::permute::permute(&x.t, axes);
    Value::new(fast.unwrap_or_else(|| x.t.permute(axes)), x.rank)
}

fn slice<B: Backend>(x: Value<B>, ranges: &[(i64, i64, i64, i64)]) -> Value<B> {
    let dims = x.dims();
    let mut t = x.t.clone();
    for &(axis, start, end, step) in ranges {
        let a = normalize_axis(axis, dims.len()).expect("validated");
        let picked = slice_range(dims[a], start, end, step).expect("validated");
        t = match step {
            1 => t.narrow(x.axis(a), picked[0], picked.len()),
            // Every n-th element (LeViT's subsampling `x[:, ::2, ::2]`), or reversed.
            _ => {
                let count = picked.len();
                let index: Vec<i64> = picked.into_iter().map(|i| i as i64).collect();
                let index =
                    Tensor::<B, 1, Int>::from_data(TensorData::new(index, [count]), &t.device());
                t.select(x.axis(a), index)
            }
        };
    }
    Value::new(t, x.rank)
}

fn gather<B: Backend>(x: Value<B>, axis: i64, indices: &Constant) -> Value<B> {
    let dims = x.dims();
    let a = normalize_axis(axis, dims.len()).expect("validated");
    let size = dims[a] as i64;
    let idx: Vec<i64> = indices
        .as_i64()
        .expect("validated")
        .iter()
        .map(|&i| if i < 0 { i + size } else { i })
        .collect();
    let device = x.t.device();
    let count = idx.len();
    let index = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [count]), &device);
    let picked = x.t.clone().select(x.axis(a), index);
    let mut out = dims[..a].to_vec();
    out.extend(&indices.dims);
    out.extend(&dims[a + 1..]);
    Value::reshaped(picked, &out)
}

/// A Gather whose indices (the first sample's, `[1, ...]`) pick within each sample's
/// `block` values of the batch axis: that axis seen as `[N, block]`, gathered along `block`.
fn per_sample_gather<B: Backend>(
    x: Value<B>,
    axis: i64,
    indices: &Constant,
    block: usize,
) -> Value<B> {
    let dims = x.dims();
    let a = normalize_axis(axis, dims.len()).expect("validated");
    let samples = dims[a] / block.max(1);
    let first: Vec<i64> = indices.as_i64().expect("validated").to_vec();
    let count = first.len() / indices.dims[0].max(1);
    let mut split = dims[..a].to_vec();
    split.extend([samples, block]);
    split.extend(&dims[a + 1..]);
    let one = Constant {
        dims: indices.dims[1..].to_vec(),
        data: zoo_onnx::tensor::ConstData::I64(first[..count].to_vec()),
    };
    let picked = gather(Value::reshaped(x.t, &split), (a + 1) as i64, &one);
    let mut out = dims[..a].to_vec();
    out.push(samples);
    out.extend(&indices.dims[1..]);
    out.extend(&dims[a + 1..]);
    Value::reshaped(picked.t, &out)
}

/// GatherND as one Gather: the first `k` axes flattened, each index tuple turned into its
/// row of the flattened table.
fn gather_nd<B: Backend>(x: Value<B>, indices: &Constant) -> Value<B> {
    let dims = x.dims();
    let k = *indices.dims.last().expect("validated");
    let rows: usize = dims[..k].iter().product();
    let flat: Vec<i64> = indices
        .as_i64()
        .expect("validated")
        .chunks(k)
        .map(|tuple| {
            tuple.iter().zip(&dims).fold(0, |row, (&i, &size)| {
                row * size as i64 + if i < 0 { i + size as i64 } else { i }
            })
        })
        .collect();
    let mut table = vec![rows];
    table.extend(&dims[k..]);
    let table = Value::reshaped(x.t, &table);
    let flat = Constant {
        dims: indices.dims[..indices.dims.len() - 1].to_vec(),
        data: zoo_onnx::tensor::ConstData::I64(flat),
    };
    gather(table, 0, &flat)
}

fn pad<B: Backend>(x: Value<B>, kind: PadKind, pads: &[i64]) -> Value<B> {
    let rank = x.rank;
    let pairs: Vec<(usize, usize)> = (0..rank)
        .map(|i| (pads[i] as usize, pads[i + rank] as usize))
        .collect();
    let mode = match kind {
        PadKind::Constant(v) => PadMode::Constant(v),
        PadKind::Reflect => PadMode::Reflect,
        PadKind::Edge => PadMode::Edge,
    };
    Value::new(x.t.pad(pairs, mode), rank)
}

fn split<B: Backend>(x: Value<B>, axis: i64, sizes: Option<&[i64]>, parts: usize) -> Vec<Value<B>> {
    let a = normalize_axis(axis, x.rank).expect("validated");
    let total = x.dims()[a];
    let sizes: Vec<usize> = match sizes {
        Some(s) => s.iter().map(|&v| v as usize).collect(),
        None => vec![total / parts; parts],
    };
    let mut start = 0;
    sizes
        .into_iter()
        .map(|size| {
            let part = x.t.clone().narrow(x.axis(a), start, size);
            start += size;
            Value::new(part, x.rank)
        })
        .collect()
}
