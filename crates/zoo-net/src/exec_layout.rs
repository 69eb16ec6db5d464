//! Execution of the activations, reductions and layout ops on padded rank-5 values. Their
//! settings were validated and baked at import (`zoo_onnx::fold`), so nothing here meets an
//! inconsistent node.

use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::ops::PadMode;
use burn::tensor::{Int, Tensor, TensorData};
use zoo_onnx::ops::{PadKind, Reduction, Unary, Variadic};
use zoo_onnx::shapes::{normalize_axis, reduced_axes, slice_range, transpose_perm};
use zoo_onnx::Constant;

use crate::exec::{binary, Value, PADDED};

pub(crate) fn unary<B: Backend>(t: Tensor<B, PADDED>, f: &Unary) -> Tensor<B, PADDED> {
    match *f {
        Unary::Clip { min, max } => match (min.is_finite(), max.is_finite()) {
            // Not `clamp`: ONNX sets everything to `max` when min > max; clamp would panic.
            (true, true) => t.clamp_min(min).clamp_max(max),
            (true, false) => t.clamp_min(min),
            (false, true) => t.clamp_max(max),
            (false, false) => t,
        },
        Unary::HardSigmoid { alpha, beta } => (t * alpha as f64 + beta as f64).clamp(0.0, 1.0),
        Unary::HardSwish => t.clone() * (t / 6.0 + 0.5).clamp(0.0, 1.0),
        Unary::Elu { alpha } => elu(t, alpha as f64),
        Unary::Selu { alpha, gamma } => elu(t, alpha as f64) * gamma as f64,
        Unary::Softplus => activation::softplus(t, 1.0),
    }
}

/// `x` where positive, `alpha (e^x - 1)` elsewhere (`min(x, 0)` keeps `exp` finite).
fn elu<B: Backend>(t: Tensor<B, PADDED>, alpha: f64) -> Tensor<B, PADDED> {
    t.clone().clamp_min(0.0) + (t.clamp_max(0.0).exp() - 1.0) * alpha
}

pub(crate) fn variadic<B: Backend>(parts: Vec<Value<B>>, kind: Variadic) -> Value<B> {
    let count = parts.len();
    let mut iter = parts.into_iter();
    let first = iter.next().expect("at least one input");
    let out = iter.fold(first, |acc, v| match kind {
        Variadic::Sum | Variadic::Mean => binary(acc, v, |a, b| a + b),
        Variadic::Max => binary(acc, v, |a, b| {
            let shape = broadcast_shape(&a, &b);
            a.expand(shape).max_pair(b.expand(shape))
        }),
        Variadic::Min => binary(acc, v, |a, b| {
            let shape = broadcast_shape(&a, &b);
            a.expand(shape).min_pair(b.expand(shape))
        }),
    });
    match kind {
        Variadic::Mean if count > 1 => Value::new(out.t / count as f64, out.rank),
        _ => out,
    }
}

fn broadcast_shape<B: Backend>(a: &Tensor<B, PADDED>, b: &Tensor<B, PADDED>) -> [usize; PADDED] {
    let (x, y) = (a.dims(), b.dims());
    std::array::from_fn(|i| x[i].max(y[i]))
}

pub(crate) fn reduce<B: Backend>(
    x: Value<B>,
    kind: Reduction,
    axes: &Option<Vec<i64>>,
    keepdims: bool,
    noop_with_empty_axes: bool,
) -> Value<B> {
    let dims = x.dims();
    let axes = reduced_axes(&dims, axes.as_deref(), noop_with_empty_axes);
    let mut t = x.t.clone();
    for &a in &axes {
        let physical = x.axis(a);
        t = match kind {
            Reduction::Mean => t.mean_dim(physical),
            Reduction::Max => t.max_dim(physical),
        };
    }
    if keepdims {
        return Value::new(t, x.rank);
    }
    let out: Vec<usize> = (0..dims.len())
        .filter(|i| !axes.contains(i))
        .map(|i| dims[i])
        .collect();
    Value::reshaped(t, &out)
}

pub(crate) fn transpose<B: Backend>(x: Value<B>, perm: Option<&[i64]>) -> Value<B> {
    let perm = transpose_perm(x.rank, perm).expect("validated");
    let lead = PADDED - x.rank;
    let axes: [usize; PADDED] =
        std::array::from_fn(|i| if i < lead { i } else { perm[i - lead] + lead });
    Value::new(x.t.permute(axes), x.rank)
}

pub(crate) fn slice<B: Backend>(x: Value<B>, ranges: &[(i64, i64, i64, i64)]) -> Value<B> {
    let dims = x.dims();
    let mut t = x.t.clone();
    for &(axis, start, end, step) in ranges {
        let a = normalize_axis(axis, dims.len()).expect("validated");
        // Steps other than 1 are refused at import for computed tensors.
        let picked = slice_range(dims[a], start, end, step).expect("validated");
        t = t.narrow(x.axis(a), picked[0], picked.len());
    }
    Value::new(t, x.rank)
}

pub(crate) fn gather<B: Backend>(x: Value<B>, axis: i64, indices: &Constant) -> Value<B> {
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

pub(crate) fn pad<B: Backend>(x: Value<B>, kind: PadKind, pads: &[i64]) -> Value<B> {
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

pub(crate) fn split<B: Backend>(
    x: Value<B>,
    axis: i64,
    sizes: Option<&[i64]>,
    parts: usize,
) -> Vec<Value<B>> {
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
