//! Moves a classifier graph between opsets of the default domain, for the ops zoo imports.
//! Only attributes whose meaning changed are rewritten; anything that cannot be expressed in
//! the target opset is refused with the node named, never silently changed.
//!
//! Changes handled (ONNX operator changelog): BatchNormalization lost `spatial` (9) and
//! `is_test` (7); Dropout lost `is_test` (7) and took `ratio` as an input (12); Softmax's axis
//! changed meaning and default (13); MaxPool/AveragePool gained `ceil_mode` (10) and MaxPool
//! `dilations` (10); settings moved from attributes to inputs for Slice (10), Clip and Pad (11),
//! Squeeze, Unsqueeze and Split (13), ReduceMean/ReduceMax (18); Split gained `num_outputs`
//! (18); HardSwish exists from 14.

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

/// How errors name a node: its name, or its first output when it has none.
fn node_label(node: &NodeProto) -> String {
    if node.name.is_empty() {
        node.output.first().cloned().unwrap_or_default()
    } else {
        node.name.clone()
    }
}

/// A setting's name and whether it is a float scalar (else an integer list).
type Setting = (&'static str, bool);

/// Ops whose settings an opset moved from attributes to inputs: the opset of the move and the
/// settings in input order.
const MOVED_SETTINGS: &[(&str, i64, &[Setting])] = &[
    ("Clip", 11, &[("min", true), ("max", true)]),
    (
        "Slice",
        10,
        &[("starts", false), ("ends", false), ("axes", false)],
    ),
    ("Pad", 11, &[("pads", false), ("value", true)]),
    ("Squeeze", 13, &[("axes", false)]),
    ("Unsqueeze", 13, &[("axes", false)]),
    ("Split", 13, &[("split", false)]),
    ("ReduceMean", 18, &[("axes", false)]),
    ("ReduceMax", 18, &[("axes", false)]),
];

/// Ops that do not exist below an opset.
const INTRODUCED: &[(&str, i64)] = &[("HardSwish", 14)];

/// Constant values the graph holds (initializers and `Constant` nodes), for reading settings.
fn constant_values(
    graph: &tract_onnx::pb::GraphProto,
) -> std::collections::HashMap<String, crate::Constant> {
    let mut out = std::collections::HashMap::new();
    for t in &graph.initializer {
        if let Ok(c) = crate::tensor::take_constant(&mut t.clone()) {
            out.insert(t.name.clone(), c);
        }
    }
    for n in graph.node.iter().filter(|n| n.op_type == "Constant") {
        let value = n
            .attribute
            .iter()
            .find(|a| a.name == "value")
            .and_then(|a| a.t.clone());
        if let (Some(mut t), Some(o)) = (value, n.output.first()) {
            if let Ok(c) = crate::tensor::take_constant(&mut t) {
                out.insert(o.clone(), c);
            }
        }
    }
    out
}

/// Moves settings between attributes and inputs when the conversion crosses the opset that
/// moved them; refuses settings that are computed (no constant to turn into an attribute) and
/// ops the target opset does not have.
fn move_settings(
    node: &mut NodeProto,
    from: i64,
    to: i64,
    constants: &std::collections::HashMap<String, crate::Constant>,
    new_initializers: &mut Vec<TensorProto>,
) -> Result<()> {
    let name = node_label(node);
    let op = node.op_type.clone();
    let refuse = |why: String| Err(bad_node(&name, &op, why));
    if let Some((_, since)) = INTRODUCED.iter().find(|(op, _)| *op == node.op_type) {
        if to < *since {
            return refuse(format!(
                "{} needs opset {since} or later, not {to}",
                node.op_type
            ));
        }
    }
    if node.op_type == "Split" {
        // Opset 18 wants the output count when no sizes are given.
        remove_attr(node, "num_outputs");
        if to >= 18
            && node.input.get(1).is_none_or(String::is_empty)
            && attr(node, "split").is_none()
        {
            node.attribute
                .push(int_attr("num_outputs", node.output.len() as i64));
        }
    }
    let Some((_, since, settings)) = MOVED_SETTINGS.iter().find(|(op, _, _)| *op == node.op_type)
    else {
        return Ok(());
    };
    if from < *since && to >= *since {
        let mut inputs = vec![node.input.first().cloned().unwrap_or_default()];
        for (setting, float) in settings.iter() {
            let input = match remove_attr(node, setting) {
                Some(a) => {
                    let value = format!("{}_{setting}", node.output[0]);
                    new_initializers.push(if *float {
                        f32_proto(&value, &[], &[a.f])
                    } else {
                        crate::tensor::i64_proto(&value, &[a.ints.len()], &a.ints)
                    });
                    value
                }
                None => String::new(),
            };
            inputs.push(input);
        }
        while inputs.last().is_some_and(String::is_empty) {
            inputs.pop();
        }
        node.input = inputs;
    } else if from >= *since && to < *since {
        for (k, (setting, float)) in settings.iter().enumerate() {
            let Some(input) = node.input.get(k + 1).filter(|i| !i.is_empty()) else {
                continue;
            };
            let Some(c) = constants.get(input) else {
                return refuse(format!(
                    "its {setting} `{input}` is computed, so it cannot become an attribute in opset {to}"
                ));
            };
            node.attribute.push(match (*float, &c.data) {
                (true, crate::ConstData::F32(v)) if v.len() == 1 => float_attr(setting, v[0]),
                (false, crate::ConstData::I64(v)) => AttributeProto {
                    name: setting.to_string(),
                    r#type: 7, // INTS
                    ints: v.clone(),
                    ..Default::default()
                },
                _ => return refuse(format!("its {setting} `{input}` has an unexpected type")),
            });
        }
        if node.op_type == "Slice" {
            let steps = node.input.get(4).filter(|i| !i.is_empty());
            if steps.is_some_and(|s| {
                constants
                    .get(s)
                    .and_then(|c| c.as_i64())
                    .is_none_or(|v| v.iter().any(|&x| x != 1))
            }) {
                return refuse(format!(
                    "slice steps other than 1 need opset 10 or later, not {to}"
                ));
            }
        }
        node.input.truncate(1);
    }
    Ok(())
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
    let constants = constant_values(graph);
    for node in graph.node.iter_mut() {
        move_settings(node, from, to, &constants, &mut new_initializers)?;
        let name = node_label(node);
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
