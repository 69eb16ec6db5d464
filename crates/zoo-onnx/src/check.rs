//! A full shape check of a written file, in the spirit of `onnx.checker.check_model(m,
//! full_check=True)`: every declared shape (graph output and `value_info`) must agree with the
//! shapes zoo infers for the graph. Symbolic dims (`N`) match any size.

use tract_onnx::pb::{type_proto, ModelProto, ValueInfoProto};

use crate::error::Result;
use crate::graph::OnnxModel;

/// Declared shapes that differ from the inferred ones, one message each (empty when all agree).
pub fn declared_shape_mismatches(model: &ModelProto) -> Result<Vec<String>> {
    let parsed = OnnxModel::from_proto(model.clone())?;
    let shapes = &parsed.graph.shapes;
    let Some(graph) = model.graph.as_ref() else {
        return Ok(Vec::new());
    };
    let mut problems = Vec::new();
    for v in graph.output.iter().chain(&graph.value_info) {
        let Some(declared) = declared_dims(v) else {
            continue;
        };
        let Some(inferred) = shapes.of(&v.name).or_else(|| {
            parsed
                .graph
                .constants
                .get(&v.name)
                .map(|c| c.dims.as_slice())
        }) else {
            continue;
        };
        let agrees = declared.len() == inferred.len()
            && declared
                .iter()
                .zip(inferred)
                .all(|(d, &i)| d.is_none_or(|d| d == i));
        if !agrees {
            problems.push(format!(
                "`{}`: declared {} but the graph computes {inferred:?}",
                v.name,
                crate::graph::format_dims(&declared)
            ));
        }
    }
    Ok(problems)
}

/// The declared dims (`None` for a symbolic or unknown dim), or `None` without a shape.
fn declared_dims(v: &ValueInfoProto) -> Option<Vec<Option<usize>>> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value;
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    let shape = t.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(Value::DimValue(x)) if x >= 0 => Some(x as usize),
                _ => None,
            })
            .collect(),
    )
}
