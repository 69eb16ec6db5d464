//! Moves a classifier graph between opsets of the default domain, for the ops zoo imports.
//! Only attributes whose meaning changed are rewritten; anything that cannot be expressed in
//! the target opset is refused with the node named, never silently changed.
//!
//! Changes handled (ONNX operator changelog): BatchNormalization lost `spatial` (9) and
//! `is_test` (7); Dropout lost `is_test` (7) and took `ratio` as an input (12); Softmax's axis
//! changed meaning and default (13); MaxPool/AveragePool gained `ceil_mode` (10) and MaxPool
//! `dilations` (10).

use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto};

use crate::error::{bad_node, OnnxError, Result};
use crate::graph::{MAX_OPSET, MIN_OPSET};
use crate::tensor::f32_proto;

/// The highest opset zoo writes (tract 0.23 and ONNX Runtime 1.32 both run it).
pub const MAX_EXPORT_OPSET: i64 = 21;

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn remove_attr(node: &mut NodeProto, name: &str) -> Option<AttributeProto> {
    let pos = node.attribute.iter().position(|a| a.name == name)?;
    Some(node.attribute.remove(pos))
}

fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 2, // INT
        i: value,
        ..Default::default()
    }
}

fn float_attr(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 1, // FLOAT
        f: value,
        ..Default::default()
    }
}

fn scalar_f32(t: &TensorProto) -> Option<f32> {
    t.float_data.first().copied().or_else(|| {
        let b = t.raw_data.get(..4)?;
        Some(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    })
}

/// The smallest IR version that may carry `opset` (ONNX versioning table).
fn min_ir_version(opset: i64) -> i64 {
    match opset {
        ..=8 => 3,
        9 => 4,
        10 => 5,
        11 => 6,
        12..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

/// Rewrites `model` from opset `from` to opset `to`. `rank` gives the rank of a value when
/// known (Softmax's meaning across opset 13 depends on it).
pub fn convert(
    mut model: ModelProto,
    from: i64,
    to: i64,
    rank: &dyn Fn(&str) -> Option<usize>,
) -> Result<ModelProto> {
    if !(MIN_OPSET..=MAX_EXPORT_OPSET).contains(&to) {
        return Err(OnnxError::Opset {
            found: to,
            min: MIN_OPSET,
            max: MAX_EXPORT_OPSET.min(MAX_OPSET),
        });
    }
    let graph = model.graph.as_mut().ok_or(OnnxError::NoGraph)?;
    let mut new_initializers = Vec::new();
    let initializers = graph.initializer.clone();
    for node in graph.node.iter_mut() {
        let name = if node.name.is_empty() {
            node.output.first().cloned().unwrap_or_default()
        } else {
            node.name.clone()
        };
        let op = node.op_type.clone();
        let refuse = |why: String| Err(bad_node(&name, &op, why));
        match op.as_str() {
            "BatchNormalization" => {
                remove_attr(node, "is_test");
                if to >= 9 {
                    if attr(node, "spatial").is_some_and(|a| a.i != 1) {
                        return refuse(format!(
                            "spatial=0 batch norm has no equivalent in opset {to}"
                        ));
                    }
                    remove_attr(node, "spatial");
                }
            }
            "Dropout" => {
                remove_attr(node, "is_test");
                if to >= 12 {
                    if let Some(ratio) = remove_attr(node, "ratio") {
                        let input = format!("{}_ratio", node.output[0]);
                        new_initializers.push(f32_proto(&input, &[], &[ratio.f]));
                        node.input.truncate(1);
                        node.input.push(input);
                    }
                } else if node.input.len() > 1 {
                    if node.input.len() > 2 && !node.input[2].is_empty() {
                        return refuse(format!(
                            "a training_mode input cannot be written in opset {to}"
                        ));
                    }
                    let ratio_name = node.input[1].clone();
                    if !ratio_name.is_empty() {
                        let ratio = initializers
                            .iter()
                            .find(|t| t.name == ratio_name)
                            .and_then(scalar_f32);
                        let Some(ratio) = ratio else {
                            return refuse(format!(
                                "its ratio `{ratio_name}` is not a constant, so it cannot become an attribute in opset {to}"
                            ));
                        };
                        node.attribute.push(float_attr("ratio", ratio));
                    }
                    node.input.truncate(1);
                }
            }
            "Softmax" if (from < 13) != (to < 13) => {
                let old_default = if from < 13 { 1 } else { -1 };
                let axis = attr(node, "axis").map_or(old_default, |a| a.i);
                match node.input.first().and_then(|i| rank(i)) {
                    // On a matrix both meanings agree once the axis is explicit.
                    Some(2) => {
                        remove_attr(node, "axis");
                        node.attribute.push(int_attr("axis", if axis < 0 { axis + 2 } else { axis }));
                    }
                    Some(r) => {
                        return refuse(format!(
                            "Softmax on a rank-{r} tensor means something else below and above opset 13; export at opset {} instead",
                            from
                        ))
                    }
                    None => {
                        return refuse(format!(
                            "the rank of its input is unknown, so its meaning across opset 13 cannot be kept; export at opset {from}"
                        ))
                    }
                }
            }
            "MaxPool" | "AveragePool" if to < 10 => {
                if attr(node, "ceil_mode").is_some_and(|a| a.i != 0) {
                    return refuse(format!("ceil_mode=1 needs opset 10 or later, not {to}"));
                }
                remove_attr(node, "ceil_mode");
                if op == "MaxPool" {
                    if attr(node, "dilations").is_some_and(|a| a.ints.iter().any(|&d| d != 1)) {
                        return refuse(format!("dilations need opset 10 or later, not {to}"));
                    }
                    remove_attr(node, "dilations");
                }
            }
            _ => {}
        }
    }
    graph.initializer.extend(new_initializers);
    model
        .opset_import
        .retain(|o| !(o.domain.is_empty() || o.domain == "ai.onnx"));
    model.opset_import.push(OperatorSetIdProto {
        domain: String::new(),
        version: to,
    });
    model.ir_version = model.ir_version.max(min_ir_version(to));
    Ok(model)
}
