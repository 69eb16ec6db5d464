//! Faithful stand-ins for zoo models whose weights cannot be downloaded here: the ONNX zoo's
//! `light_*` files keep the exact graph but replace every weight with a `ConstantOfShape` node.
//! This fills those weights with seeded random values (scaled by fan-in, so activations stay in
//! a realistic range) and can move the file to a newer opset.

use std::collections::HashMap;

use tract_onnx::pb::ModelProto;

use crate::builder::SeededRng;
use crate::error::{OnnxError, Result};
use crate::graph::MIN_OPSET;
use crate::tensor::{checked_dims, f32_proto, take_constant, ConstData};

/// Replaces every `ConstantOfShape` that produces a weight with a seeded random initializer of
/// the same name and shape, and drops the shape initializers and inputs it no longer needs.
pub fn materialize_weights(mut model: ModelProto, seed: u64) -> Result<ModelProto> {
    let graph = model.graph.as_mut().ok_or(OnnxError::NoGraph)?;
    let mut shapes: HashMap<String, Vec<i64>> = HashMap::new();
    for init in &graph.initializer {
        if let Ok(c) = take_constant(&mut init.clone()) {
            if let ConstData::I64(v) = c.data {
                shapes.insert(init.name.clone(), v);
            }
        }
    }
    let mut rng = SeededRng::new(seed);
    let mut used_shapes = Vec::new();
    let mut kept = Vec::new();
    for node in std::mem::take(&mut graph.node) {
        let shape = node.input.first().and_then(|i| shapes.get(i));
        match (node.op_type.as_str(), shape, node.output.first()) {
            ("ConstantOfShape", Some(shape), Some(out)) => {
                let (dims, count) = checked_dims(out, shape)?;
                // Weights [out, in, kh, kw] / [out, in]: uniform with variance 1/fan_in, which
                // keeps AlexNet's logits in the tens for inputs in the Caffe range, as the real
                // weights do; biases small.
                let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
                let scale = if dims.len() >= 2 {
                    (3.0 / fan_in as f32).sqrt()
                } else {
                    0.05
                };
                graph
                    .initializer
                    .push(f32_proto(out, &dims, &rng.values(count, scale)));
                used_shapes.push(node.input[0].clone());
            }
            _ => kept.push(node),
        }
    }
    graph.node = kept;
    let still_read: std::collections::HashSet<&String> =
        graph.node.iter().flat_map(|n| n.input.iter()).collect();
    let dropped: Vec<String> = used_shapes
        .into_iter()
        .filter(|s| !still_read.contains(s))
        .collect();
    graph.initializer.retain(|t| !dropped.contains(&t.name));
    graph.input.retain(|i| !dropped.contains(&i.name));
    Ok(model)
}

/// Moves a model to `opset` (see [`crate::opset::convert`]).
pub fn upgrade_opset(model: ModelProto, opset: i64) -> Result<ModelProto> {
    let from = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(MIN_OPSET, |o| o.version);
    crate::opset::convert(model, from, opset, &|_| None)
}
