//! Layer, instance and group normalisation: statistics of each sample, then a learnable scale
//! and bias. Each runs as `[groups, values]` rows normalised along their values.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use zoo_onnx::ops::Norm;
use zoo_onnx::shapes::normalize_axis;

use super::Cx;
use crate::exec::Value;

pub(crate) fn run<B: Backend>(op: &Norm, cx: &Cx<B>) -> Value<B> {
    let x = cx.get(0);
    let dims = x.dims();
    match *op {
        Norm::Layer { axis, epsilon } => {
            let a = normalize_axis(axis, dims.len()).expect("validated");
            let inner: usize = dims[a..].iter().product();
            let rows = dims.iter().product::<usize>() / inner;
            if let Some(y) = fused_layer_norm(cx, &x, rows, inner, epsilon) {
                return Value::reshaped(y.unsqueeze(), &dims);
            }
            let y = normalize(x.t.reshape([rows, inner]), epsilon);
            // Scale and bias broadcast over the normalised axes: flattened to one row.
            let row = |i: usize| {
                cx.node.input(i)?;
                let v = cx.get(i);
                let target = crate::exec::pad_dims(&broadcast_tail(&v.dims(), &dims[a..]));
                Some(v.t.expand(target).reshape([1, inner]))
            };
            let mut y = y * row(1).expect("scale is required");
            if let Some(bias) = row(2) {
                y = y + bias;
            }
            Value::reshaped(y.unsqueeze(), &dims)
        }
        Norm::Instance { epsilon } => channel_norm(cx, x, dims[1], epsilon),
        Norm::OverChannels { epsilon } => over_channels(cx, x, epsilon),
        Norm::Group { groups, epsilon } => channel_norm(cx, x, groups, epsilon),
    }
}

/// Layer norm as zoo's one op (`crate::kernels::rows`) when the scale and bias hold one value
/// per normalised value; `None` where it does not serve.
fn fused_layer_norm<B: Backend>(
    cx: &Cx<B>,
    x: &Value<B>,
    rows: usize,
    inner: usize,
    epsilon: f32,
) -> Option<Tensor<B, 2>> {
    cx.node.input(2)?;
    let (scale, bias) = (cx.param_1d(1)?, cx.param_1d(2)?);
    if scale.dims() != [inner] || bias.dims() != [inner] {
        return None;
    }
    crate::kernels::rows::layer_norm(&x.t.clone().reshape([rows, inner]), &scale, &bias, epsilon)
}

/// LayerNorm over the channels of each position of `[N, C, spatial...]`: zoo's one op
/// (`crate::kernels::over_channels`), else burn's statistics over axis 1.
fn over_channels<B: Backend>(cx: &Cx<B>, x: Value<B>, epsilon: f32) -> Value<B> {
    let dims = x.dims();
    let (n, c) = (dims[0], dims[1]);
    let positions: usize = dims[2..].iter().product();
    let map = x.t.reshape([n, c, positions]);
    let (scale, bias) = (cx.param_1d(1), cx.param_1d(2));
    let (scale, bias) = (scale.expect("validated"), bias.expect("validated"));
    let fused = crate::kernels::rows::layer_norm_over_channels(&map, &scale, &bias, epsilon);
    let y = fused.unwrap_or_else(|| {
        let centred = map.clone() - map.mean_dim(1);
        let variance = centred.clone().powi_scalar(2).mean_dim(1);
        let normal = centred / (variance + epsilon as f64).sqrt();
        normal * scale.reshape([1, c, 1]) + bias.reshape([1, c, 1])
    });
    Value::reshaped(y.reshape(crate::exec::pad_dims(&dims)), &dims)
}

/// The dims `p` broadcasts to when it scales the trailing axes `tail`.
fn broadcast_tail(p: &[usize], tail: &[usize]) -> Vec<usize> {
    zoo_onnx::shapes::broadcast(p, tail).expect("validated")
}

/// Each row minus its mean, over its standard deviation (biased variance, as ONNX).
fn normalize<B: Backend>(rows: Tensor<B, 2>, epsilon: f32) -> Tensor<B, 2> {
    let centred = rows.clone() - rows.mean_dim(1);
    let variance = centred.clone().powi_scalar(2).mean_dim(1);
    centred / (variance + epsilon as f64).sqrt()
}

/// Instance norm (`groups` = channels) and group norm: statistics per sample and group, then
/// a scale and bias per channel (or per group, GroupNormalization-18).
fn channel_norm<B: Backend>(cx: &Cx<B>, x: Value<B>, groups: usize, epsilon: f32) -> Value<B> {
    let dims = x.dims();
    let (n, c) = (dims[0], dims[1]);
    let spatial: usize = dims[2..].iter().product();
    let y = normalize(x.t.reshape([n * groups, c / groups * spatial]), epsilon);
    let per_channel = |i: usize| -> Tensor<B, 3> {
        let v = cx.param_1d(i).expect("validated");
        let v = match v.dims()[0] {
            len if len == c => v,
            // One value per group: repeated over its channels.
            _ => v.reshape([groups, 1]).repeat(&[1, c / groups]).reshape([c]),
        };
        v.reshape([1, c, 1])
    };
    let y = y.reshape([n, c, spatial]) * per_channel(1) + per_channel(2);
    Value::reshaped(y.unsqueeze(), &dims)
}
