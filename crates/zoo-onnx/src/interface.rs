//! A classifier graph's interface: the one image input (NCHW, or NHWC when every reader
//! transposes it), the one output, and their dims.

use std::collections::{BTreeMap, HashSet};

use tract_onnx::pb::{tensor_proto::DataType, type_proto, NodeProto, ValueInfoProto};

use crate::error::{OnnxError, Result};
use crate::graph::{InputLayout, ValueSpec};
use crate::ops::{Array, Op, Parsed};
use crate::tensor::Constant;

/// The image input and the one output.
pub(crate) fn interface(
    graph: &tract_onnx::pb::GraphProto,
    constants: &BTreeMap<String, Constant>,
) -> Result<(ValueSpec, ValueSpec)> {
    // Inputs no node reads (Caffe2 exports list a data-queue blob) are not the image.
    let read: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    let inputs: Vec<ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| read.contains(i.name.as_str()) || graph.input.len() == 1)
        .cloned()
        .collect();
    let input = image_input(&inputs, constants)?;
    let outputs: Vec<&ValueInfoProto> = graph.output.iter().collect();
    let output = value_spec(exactly_one(&outputs, "output", "with one output")?)?;
    Ok((input, output))
}

pub(crate) fn value_spec(v: &ValueInfoProto) -> Result<ValueSpec> {
    let bad = |reason: &str| OnnxError::BadInterface(format!("`{}` {reason}", v.name));
    let tensor = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        _ => return Err(bad("is not a tensor")),
    };
    if tensor.elem_type != DataType::Float as i32 {
        return Err(bad("is not float32 (zoo imports float32 classifiers)"));
    }
    let dims = match &tensor.shape {
        None => Vec::new(),
        Some(shape) => shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(tract_onnx::pb::tensor_shape_proto::dimension::Value::DimValue(v))
                    if v > 0 =>
                {
                    usize::try_from(v).ok().filter(|&v| v <= 1 << 20)
                }
                _ => None,
            })
            .collect(),
    };
    Ok(ValueSpec {
        name: v.name.clone(),
        dims,
    })
}

/// The one graph input that is not an initializer: an NCHW image batch with known C, H, W.
pub(crate) fn image_input(
    inputs: &[ValueInfoProto],
    constants: &BTreeMap<String, Constant>,
) -> Result<ValueSpec> {
    let real: Vec<&ValueInfoProto> = inputs
        .iter()
        .filter(|i| !constants.contains_key(&i.name))
        .collect();
    let one = exactly_one(&real, "input", "with one image input")?;
    let spec = value_spec(one)?;
    if spec.dims.len() != 4 || spec.dims[1..].iter().any(Option::is_none) {
        return Err(OnnxError::BadInterface(format!(
            "input `{}` has shape {}; zoo needs an NCHW image input with fixed C, H and W",
            spec.name,
            format_dims(&spec.dims)
        )));
    }
    Ok(spec)
}

/// The one value of a graph's inputs or outputs; none or several is an error naming them.
fn exactly_one<'a>(
    values: &[&'a ValueInfoProto],
    what: &str,
    wanted: &str,
) -> Result<&'a ValueInfoProto> {
    match values {
        [one] => Ok(one),
        [] => Err(OnnxError::BadInterface(format!("the graph has no {what}"))),
        many => Err(OnnxError::BadInterface(format!(
            "the graph has {} {what}s ({}); zoo imports classifiers {wanted}",
            many.len(),
            many.iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

pub fn format_dims(dims: &[Option<usize>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// The layout of an `[N, A, B, C]` input: NHWC when every reader transposes it to NCHW.
pub(crate) fn input_layout(nodes: &[(&NodeProto, String, Parsed)], input: &str) -> InputLayout {
    let mut readers = nodes
        .iter()
        .filter(|(n, _, _)| n.input.iter().any(|i| i == input))
        .peekable();
    let to_nchw = |op: Option<&Op>| matches!(op, Some(Op::Array(Array::Transpose { perm: Some(p) })) if p == &[0, 3, 1, 2]);
    if readers.peek().is_some() && readers.all(|(_, _, parsed)| to_nchw(parsed.ready())) {
        InputLayout::Nhwc
    } else {
        InputLayout::Nchw
    }
}
