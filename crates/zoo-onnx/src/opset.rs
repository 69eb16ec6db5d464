//! Moves a classifier graph between opsets of the default domain, for the ops zoo imports.
//! Only attributes whose meaning changed are rewritten; anything that cannot be expressed in
//! the target opset is refused with the node named, never silently changed.
//!
//! What changed when comes from the op registry ([`crate::ops::OpDef`]): `moved` (settings an
//! opset moved from attributes to inputs, moved here both ways), `since` (the first opset with
//! the op), and `convert` (an op's own rewrite, in its family module, for attributes that
//! changed meaning, e.g. Softmax's axis at 13 or Dropout's ratio at 12).

use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto};

use crate::error::{bad_node, OnnxError, Result};
use crate::graph::{MAX_OPSET, MIN_OPSET};
use crate::tensor::f32_proto;

/// The highest opset zoo writes (tract 0.23 and ONNX Runtime 1.32 both run it).
pub const MAX_EXPORT_OPSET: i64 = 21;

pub(crate) fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

pub(crate) fn remove_attr(node: &mut NodeProto, name: &str) -> Option<AttributeProto> {
    let pos = node.attribute.iter().position(|a| a.name == name)?;
    Some(node.attribute.remove(pos))
}

pub(crate) fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 2, // INT
        i: value,
        ..Default::default()
    }
}

pub(crate) fn float_attr(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 1, // FLOAT
        f: value,
        ..Default::default()
    }
}

/// How errors name a node: its name, or its first output when it has none.
pub(crate) fn node_label(node: &NodeProto) -> String {
    if node.name.is_empty() {
        node.output.first().cloned().unwrap_or_default()
    } else {
        node.name.clone()
    }
}

/// Constant values the graph holds (initializers and `Constant` nodes) that can be settings:
/// integer tensors (axes, pads, ranges) and scalars (bounds, fill values, ratios). Weights are
/// left out, so a conversion does not copy them.
fn constant_values(
    graph: &tract_onnx::pb::GraphProto,
) -> std::collections::HashMap<String, crate::Constant> {
    use tract_onnx::pb::tensor_proto::DataType;
    let may_be_setting = |t: &TensorProto| {
        let integer = [DataType::Int64 as i32, DataType::Int32 as i32].contains(&t.data_type);
        integer || t.dims.iter().product::<i64>() <= 1
    };
    let mut out = std::collections::HashMap::new();
    for t in graph.initializer.iter().filter(|t| may_be_setting(t)) {
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
fn move_settings(node: &mut NodeProto, cx: &mut ConvertCx) -> Result<()> {
    let (from, to) = (cx.from, cx.to);
    let def = crate::ops::find(&node.op_type);
    if let Some(since) = def.map(|d| d.since).filter(|&since| to < since) {
        let why = format!("{} needs opset {since} or later, not {to}", node.op_type);
        return Err(cx.refuse(node, why));
    }
    let Some((since, settings)) = def.and_then(|d| d.moved) else {
        return Ok(());
    };
    if from < since && to >= since {
        settings_to_inputs(node, settings, cx.new_initializers);
    } else if from >= since && to < since {
        settings_to_attributes(node, settings, cx)?;
    }
    Ok(())
}

/// Each setting's attribute becomes a new initializer read as an input.
fn settings_to_inputs(
    node: &mut NodeProto,
    settings: &[crate::ops::Setting],
    new_initializers: &mut Vec<TensorProto>,
) {
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
}

/// Each setting's constant input becomes an attribute; computed ones are refused.
fn settings_to_attributes(
    node: &mut NodeProto,
    settings: &[crate::ops::Setting],
    cx: &ConvertCx,
) -> Result<()> {
    let to = cx.to;
    for (k, (setting, float)) in settings.iter().enumerate() {
        let Some(input) = node.input.get(k + 1).filter(|i| !i.is_empty()).cloned() else {
            continue;
        };
        let Some(c) = cx.constants.get(&input) else {
            let why = format!(
                "its {setting} `{input}` is computed, so it cannot become an attribute in opset {to}"
            );
            return Err(cx.refuse(node, why));
        };
        node.attribute.push(match (*float, &c.data) {
            (true, crate::ConstData::F32(v)) if v.len() == 1 => float_attr(setting, v[0]),
            (false, crate::ConstData::I64(v)) => AttributeProto {
                name: setting.to_string(),
                r#type: 7, // INTS
                ints: v.clone(),
                ..Default::default()
            },
            _ => {
                let why = format!("its {setting} `{input}` has an unexpected type");
                return Err(cx.refuse(node, why));
            }
        });
    }
    node.input.truncate(1);
    Ok(())
}

/// What an op's own opset rewrite ([`crate::ops::OpDef::convert`]) sees besides its node.
pub struct ConvertCx<'a> {
    pub from: i64,
    pub to: i64,
    /// The rank of a value, when known.
    pub rank: &'a dyn Fn(&str) -> Option<usize>,
    /// Constant values (initializers and `Constant` nodes), for reading settings.
    pub constants: &'a std::collections::HashMap<String, crate::Constant>,
    /// Initializers the rewrite adds (settings that became inputs).
    pub new_initializers: &'a mut Vec<TensorProto>,
}

impl ConvertCx<'_> {
    /// An error naming the node, for what the target opset cannot express.
    pub fn refuse(&self, node: &NodeProto, why: String) -> OnnxError {
        bad_node(&node_label(node), &node.op_type, why)
    }
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
    let constants = constant_values(graph);
    for node in graph.node.iter_mut() {
        let mut cx = ConvertCx {
            from,
            to,
            rank,
            constants: &constants,
            new_initializers: &mut new_initializers,
        };
        // The op's own rewrite first: it sees the node as the source opset wrote it.
        if let Some(rewrite) = crate::ops::find(&node.op_type).and_then(|d| d.convert) {
            rewrite(node, &mut cx)?;
        }
        move_settings(node, &mut cx)?;
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
