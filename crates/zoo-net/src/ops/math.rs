//! Arithmetic: the binary ops, functions of one tensor, the variadic reductions and
//! reductions over axes.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use zoo_onnx::ops::{Math, Reduction, Unary, Variadic};
use zoo_onnx::shapes::reduced_axes;

use super::{binary, broadcast_shape, Cx};
use crate::exec::{Value, PADDED};
use crate::kernels::columns::ColumnOp;

pub(crate) fn run<B: Backend>(op: &Math, cx: &Cx<B>) -> Value<B> {
    match op {
        Math::Add => add(cx.get(0), cx.get(1)),
        Math::Sub => binary(cx.get(0), cx.get(1), |a, b| a - b),
        Math::Mul => {
            let (a, b) = (cx.get(0), cx.get(1));
            per_column(&a, &b, ColumnOp::Mul).unwrap_or_else(|| binary(a, b, |a, b| a * b))
        }
        Math::Div => binary(cx.get(0), cx.get(1), |a, b| a / b),
        Math::Pow => pow(cx),
        Math::Mod { fmod } => {
            let fmod = *fmod;
            binary(cx.get(0), cx.get(1), |a, b| {
                let q = a.clone() / b.clone();
                // Truncated (C fmod) or floored (the divisor's sign) quotient.
                let q = match fmod {
                    true => q.clone().sign() * q.abs().floor(),
                    false => q.floor(),
                };
                a - q * b
            })
        }
        Math::Unary(f) => cx.get(0).map(|t| unary(*f, t)),
        Math::Variadic(kind) => variadic(cx.all(), *kind),
        Math::Reduce {
            kind,
            axes,
            keepdims,
            noop_with_empty_axes,
        } => reduce(cx.get(0), *kind, axes, *keepdims, *noop_with_empty_axes),
    }
}

/// A bias per channel (either side) takes flex's fused kernel; anything else broadcasts.
fn add<B: Backend>(a: Value<B>, b: Value<B>) -> Value<B> {
    let fused = (a.rank <= 4 && b.rank <= 4)
        .then(|| {
            let (a4, b4) = (a.t4(), b.t4());
            crate::host::add_per_channel(&a4, &b4)
                .or_else(|| crate::host::add_per_channel(&b4, &a4))
        })
        .flatten();
    match fused {
        Some(sum) => Value::from4(sum, a.rank.max(b.rank)),
        None => per_column(&a, &b, ColumnOp::Add).unwrap_or_else(|| binary(a, b, |a, b| a + b)),
    }
}

/// `a (op) b` where one side, leading 1s aside, is one axis run of the other followed by 1s
/// (a bias or scale per channel: `[c]` on token rows, `[c, 1, 1]` on NCHW maps; a position
/// embedding `[1, t, c]`): zoo's per-channel kernel; `None` for other shapes and backends.
fn per_column<B: Backend>(a: &Value<B>, b: &Value<B>, op: ColumnOp) -> Option<Value<B>> {
    let side = |big: &Value<B>, small: &Value<B>| {
        let dims = big.dims();
        let per = small.dims();
        let tail = &per[per.iter().position(|&d| d != 1).unwrap_or(per.len())..];
        let core = &tail[..tail.iter().rposition(|&d| d != 1).map_or(0, |i| i + 1)];
        if core.is_empty() || dims.len() < tail.len() {
            return None;
        }
        let start = dims.len() - tail.len();
        let c: usize = core.iter().product();
        let outer: usize = dims[..start].iter().product();
        let inner: usize = dims[start + core.len()..].iter().product();
        if dims[start..start + core.len()] != *core || outer * inner < 2 {
            return None;
        }
        let x: Tensor<B, 3> = big.t.clone().reshape([outer, c, inner]);
        let y = crate::kernels::columns::per_channel(&x, &small.t.clone().reshape([c]), op)?;
        Some(Value::reshaped(y.unsqueeze(), &dims))
    };
    side(a, b).or_else(|| side(b, a))
}

fn variadic<B: Backend>(parts: Vec<Value<B>>, kind: Variadic) -> Value<B> {
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

fn reduce<B: Backend>(
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
            Reduction::Min => t.min_dim(physical),
            Reduction::Sum => t.sum_dim(physical),
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

fn unary<B: Backend>(f: Unary, t: Tensor<B, PADDED>) -> Tensor<B, PADDED> {
    match f {
        Unary::Neg => t.neg(),
        Unary::Abs => t.abs(),
        Unary::Exp => t.exp(),
        Unary::Log => t.log(),
        Unary::Sqrt => t.sqrt(),
        Unary::Reciprocal => t.recip(),
        Unary::Ceil => t.ceil(),
        Unary::Floor => t.floor(),
        Unary::Erf => t.erf(),
    }
}

/// `x ^ y`. A constant scalar exponent (a layer norm written out squares with `Pow(x, 2)`) takes
/// the scalar power, which is exact for negative bases; other exponents broadcast.
fn pow<B: Backend>(cx: &Cx<B>) -> Value<B> {
    let scalar = cx
        .constant(1)
        .filter(|c| c.len() == 1)
        .map(|c| match &c.data {
            zoo_onnx::ConstData::F32(v) => v[0],
            zoo_onnx::ConstData::I64(v) => v[0] as f32,
        });
    match scalar {
        Some(2.0) => cx.get(0).map(|t| t.clone() * t),
        Some(e) if e.fract() == 0.0 => cx.get(0).map(|t| t.powi_scalar(e as i32)),
        Some(e) => cx.get(0).map(|t| t.powf_scalar(e)),
        None => binary(cx.get(0), cx.get(1), |a, b| {
            let shape = broadcast_shape(&a, &b);
            a.expand(shape).powf(b.expand(shape))
        }),
    }
}
