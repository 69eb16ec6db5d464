//! Attention: each head's `softmax(Q K^T * scale + bias) V` as two batched matrix products
//! on `[batch, heads, sequence, head size]`. The bias (a constant mask and the causal
//! triangle) is known at import; it is built on the host each run, which is small beside
//! the products. Without bias or soft-capping, flex and `Autodiff<Flex>` run zoo's own
//! kernel (`kernels::attention`: one task per image and head, its own backward), which reads
//! 3-D and packed inputs where they lie.

use burn::tensor::backend::Backend;
use burn::tensor::{activation, Bool, Tensor, TensorData};
use zoo_onnx::ops::{Attention, AttentionDims};
use zoo_onnx::Constant;

use super::Cx;
use crate::exec::Value;

pub(crate) fn run<B: Backend>(op: &Attention, cx: &Cx<B>) -> Value<B> {
    if op.packed {
        return packed(op, cx.get(0));
    }
    let (q, k, v) = (cx.get(0), cx.get(1), cx.get(2));
    let d = op
        .dims(&q.dims(), &k.dims(), &v.dims())
        .expect("validated at import");
    let three_d = q.rank == 3;
    let plain = op.softcap == 0.0 && cx.node.input(3).is_none() && !op.causal;
    if three_d && plain && d.q_heads == d.kv_heads {
        let scale = op.scale.unwrap_or(1.0 / (d.head as f32).sqrt());
        let [q3, k3, v3] = [&q, &k, &v].map(|x| three(x));
        let fast = crate::kernels::attention::attention_tokens(&q3, &k3, &v3, d.q_heads, scale);
        if let Some(y) = fast {
            return from3(y);
        }
    }
    let q4 = heads_first(q, d.q_heads, three_d);
    let k4 = shared(heads_first(k, d.kv_heads, three_d), d.q_heads);
    let v4 = shared(heads_first(v, d.kv_heads, three_d), d.q_heads);
    let scale = op.scale.unwrap_or(1.0 / (d.head as f32).sqrt());
    let bias = Bias::of(op, cx.constant(3), &d);
    let fused = (bias.is_none() && op.softcap == 0.0)
        .then(|| crate::kernels::attention::attention(&q4, &k4, &v4, scale))
        .flatten();
    let y = match fused {
        Some(y) => y,
        None => composed(op, q4, k4, v4, scale, bias),
    };
    if three_d {
        let [b, h, s, dv] = y.dims();
        let dims = [b, s, h * dv];
        Value::reshaped(
            y.swap_dims(1, 2).reshape(crate::exec::pad_dims(&dims)),
            &dims,
        )
    } else {
        Value::from4(y, 4)
    }
}

/// Attention over Q, K and V packed side by side on the last axis of `x` (`[B, T, 3*H*D]`):
/// zoo's kernel reads them in place; elsewhere burn's ops take the heads apart.
fn packed<B: Backend>(op: &Attention, x: Value<B>) -> Value<B> {
    let x = three(&x);
    let [b, t, c3] = x.dims();
    let (h, d) = (op.q_heads, c3 / 3 / op.q_heads);
    let scale = op.scale.unwrap_or(1.0 / (d as f32).sqrt());
    if let Some(y) = crate::kernels::attention::attention_packed(&x, h, scale) {
        return from3(y);
    }
    let heads = x.reshape([b, t, 3, h, d]);
    let part = |i: usize| {
        let p: Tensor<B, 5> = heads.clone().narrow(2, i, 1);
        p.reshape([b, t, h, d]).swap_dims(1, 2)
    };
    let y = composed(op, part(0), part(1), part(2), scale, None);
    from3(y.swap_dims(1, 2).reshape([b, t, h * d]))
}

/// A 3-D value as a rank-3 tensor.
fn three<B: Backend>(x: &Value<B>) -> Tensor<B, 3> {
    let dims = x.dims();
    x.t.clone().reshape([dims[0], dims[1], dims[2]])
}

fn from3<B: Backend>(y: Tensor<B, 3>) -> Value<B> {
    let dims = y.dims();
    Value::reshaped(y.reshape(crate::exec::pad_dims(&dims)), &dims)
}

/// burn's ops: the scores, soft cap, bias, softmax (rows that attend nothing become zeros)
/// and the product with V.
fn composed<B: Backend>(
    op: &Attention,
    q4: Tensor<B, 4>,
    k4: Tensor<B, 4>,
    v4: Tensor<B, 4>,
    scale: f32,
    bias: Option<Bias>,
) -> Tensor<B, 4> {
    let mut scores = q4.matmul(k4.swap_dims(2, 3)).mul_scalar(scale);
    if op.softcap > 0.0 {
        scores = scores.div_scalar(op.softcap).tanh().mul_scalar(op.softcap);
    }
    let device = scores.device();
    if let Some(bias) = &bias {
        let [b, h, s, t] = scores.dims();
        let added =
            Tensor::<B, 4>::from_data(TensorData::new(bias.values.clone(), bias.dims), &device);
        scores = scores + added.expand([b, h, s, t]);
    }
    let mut probs = activation::softmax(scores, 3);
    // A query that may attend nothing gets zeros (ONNX's rule), not the NaN of exp(-inf).
    if let Some(rows) = bias.as_ref().and_then(|b| b.empty_rows.as_ref()) {
        let [b, h, s, t] = probs.dims();
        let [mb, mh, ms, _] = bias.as_ref().expect("present").dims;
        let empty = Tensor::<B, 4, Bool>::from_data(
            TensorData::new(rows.clone(), [mb, mh, ms, 1]),
            &device,
        );
        probs = probs.mask_fill(empty.expand([b, h, s, t]), 0.0);
    }
    probs.matmul(v4)
}

/// `[batch, heads, sequence, head size]` from a 4-D input, or from a 3-D one whose last axis
/// holds the heads one after another.
fn heads_first<B: Backend>(x: Value<B>, heads: usize, three_d: bool) -> Tensor<B, 4> {
    if !three_d {
        return x.t4();
    }
    let dims = x.dims();
    let (b, s, c) = (dims[0], dims[1], dims[2]);
    x.t.reshape([b, s, heads, c / heads]).swap_dims(1, 2)
}

/// K or V with each of its heads repeated for the group of query heads that shares it.
fn shared<B: Backend>(x: Tensor<B, 4>, q_heads: usize) -> Tensor<B, 4> {
    let [b, h, s, d] = x.dims();
    if h == q_heads {
        return x;
    }
    let group = q_heads / h;
    x.unsqueeze_dim::<5>(2)
        .expand([b, h, group, s, d])
        .reshape([b, q_heads, s, d])
}

/// What is added to the scores: the mask (booleans become 0 or -inf) and the causal
/// triangle, over the mask's own batch and head dims; rows that attend nothing.
struct Bias {
    dims: [usize; 4],
    values: Vec<f32>,
    empty_rows: Option<Vec<bool>>,
}

impl Bias {
    fn of(op: &Attention, mask: Option<&Constant>, d: &AttentionDims) -> Option<Self> {
        if mask.is_none() && !op.causal {
            return None;
        }
        let (s, t) = (d.q_len, d.kv_len);
        let mask_dims: Vec<usize> = mask.map_or(vec![1, 1], |m| m.dims.clone());
        let mut m4 = [1usize; 4];
        m4[4 - mask_dims.len()..].copy_from_slice(&mask_dims);
        let dims = [m4[0], m4[1], s, t];
        let mask_value = |b: usize, h: usize, i: usize, j: usize| -> f32 {
            let Some(m) = mask else { return 0.0 };
            let at = |idx: usize, size: usize| if size == 1 { 0 } else { idx };
            let flat = ((at(b, m4[0]) * m4[1] + at(h, m4[1])) * m4[2] + at(i, m4[2])) * m4[3]
                + at(j, m4[3]);
            match (m.as_f32(), m.as_i64()) {
                (Some(f), _) => f[flat],
                (_, Some(bits)) if bits[flat] != 0 => 0.0,
                _ => f32::NEG_INFINITY,
            }
        };
        let mut values = Vec::with_capacity(dims.iter().product());
        for b in 0..dims[0] {
            for h in 0..dims[1] {
                for i in 0..s {
                    for j in 0..t {
                        let causal = if op.causal && j > i {
                            f32::NEG_INFINITY
                        } else {
                            0.0
                        };
                        values.push(mask_value(b, h, i, j) + causal);
                    }
                }
            }
        }
        let rows: Vec<bool> = values
            .chunks(t)
            .map(|row| row.iter().all(|v| *v == f32::NEG_INFINITY))
            .collect();
        let empty_rows = rows.iter().any(|&r| r).then_some(rows);
        Some(Self {
            dims,
            values,
            empty_rows,
        })
    }
}
