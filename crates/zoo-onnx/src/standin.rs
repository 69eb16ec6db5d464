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
pub fn materialize_weights(model: ModelProto, seed: u64) -> Result<ModelProto> {
    materialize_with_gain(model, seed, 1.0)
}

/// [`materialize_weights`] with weight variance `gain / fan_in`: 1 keeps AlexNet's logits in
/// the tens for inputs in the Caffe range, as the real weights do (and trains at the default
/// learning rate); 2 (He) keeps activations from vanishing through deep ReLU stacks
/// (DenseNet-121, Inception v2), which parity checks of those graphs want.
pub fn materialize_with_gain(mut model: ModelProto, seed: u64, gain: f32) -> Result<ModelProto> {
    let graph = model.graph.as_mut().ok_or(OnnxError::NoGraph)?;
    let mut shapes: HashMap<String, Vec<i64>> = HashMap::new();
    for init in &graph.initializer {
        if let Ok(c) = take_constant(&mut init.clone()) {
            if let ConstData::I64(v) = c.data {
                shapes.insert(init.name.clone(), v);
            }
        }
    }
    // Batch-norm inputs need statistics a trained network could have (a variance must be
    // positive): which BN input each value feeds, if any.
    let mut bn_role: HashMap<String, usize> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "BatchNormalization")
        .flat_map(|n| {
            n.input
                .iter()
                .enumerate()
                .skip(1)
                .map(|(i, v)| (v.clone(), i))
        })
        .collect();
    // A vector that reaches a Mul (through Unsqueeze/Reshape: Caffe2's affine after a batch
    // norm) is a per-channel scale, like a batch norm's.
    for node in &graph.node {
        if node.op_type != "ConstantOfShape" {
            continue;
        }
        let Some(mut value) = node.output.first().cloned() else {
            continue;
        };
        for _ in 0..4 {
            let Some(reader) = graph.node.iter().find(|n| n.input.contains(&value)) else {
                break;
            };
            match reader.op_type.as_str() {
                "Unsqueeze" | "Reshape" => value = reader.output[0].clone(),
                "Mul" => {
                    bn_role.entry(node.output[0].clone()).or_insert(1);
                    break;
                }
                _ => break,
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
                let values =
                    standin_values(&dims, count, bn_role.get(out).copied(), gain, &mut rng);
                graph.initializer.push(f32_proto(out, &dims, &values));
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

/// Seeded values for one stand-in weight. Weights `[out, in, ...]`: uniform with variance
/// `gain / fan_in`; batch-norm scale (and a per-channel Mul scale) near 1, shift and mean near
/// 0, variance in [1, 1.2] (it must be positive); other vectors (biases) small.
fn standin_values(
    dims: &[usize],
    count: usize,
    bn_input: Option<usize>,
    gain: f32,
    rng: &mut SeededRng,
) -> Vec<f32> {
    let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
    match bn_input {
        Some(1) => rng
            .values(count, 0.1)
            .into_iter()
            .map(|v| 1.0 + v)
            .collect(),
        Some(4) => rng
            .values(count, 0.1)
            .into_iter()
            .map(|v| 1.1 + v)
            .collect(),
        Some(_) => rng.values(count, 0.05),
        None if dims.len() >= 2 => rng.values(count, (3.0 * gain / fan_in as f32).sqrt()),
        None => rng.values(count, 0.05),
    }
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
