//! Replacing the classifier head: the head layer's weights and bias get `classes` outputs,
//! freshly initialised (seeded), and every shape downstream is re-inferred.

use zoo_onnx::ops::{Array, Nn};
use zoo_onnx::{Constant, OnnxModel, Op};

use crate::error::NetError;
use crate::plan::{assign_layers, ParamRole};

/// What changed.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HeadChange {
    pub layer: String,
    pub old_outputs: usize,
    pub new_outputs: usize,
    /// `(param name, old dims, new dims)`.
    pub params: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl HeadChange {
    /// What a user should know about the change beyond the counts: a 1001-output head (the
    /// TensorFlow/TFLite ImageNet layout, output 0 = "background") has no background class
    /// after the change; outputs are the dataset's classes alone.
    pub fn note(&self) -> Option<String> {
        (self.old_outputs == 1001).then(|| {
            format!(
                "the 1001-output head (ImageNet with a background class at output 0) becomes {} outputs, one per dataset class, with no background class",
                self.new_outputs
            )
        })
    }
}

fn head_error(layer: &str, reason: impl Into<String>) -> NetError {
    NetError::Head {
        layer: layer.to_string(),
        reason: reason.into(),
    }
}

/// Deterministic uniform values in [-scale, scale) (SplitMix64).
fn uniform(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut rng = zoo_onnx::builder::SeededRng::new(seed);
    rng.values(n, scale)
}

pub fn replace_head(
    model: &mut OnnxModel,
    layer: &str,
    classes: usize,
    seed: u64,
) -> Result<HeadChange, NetError> {
    if classes < 2 {
        return Err(head_error(
            layer,
            format!("a classifier needs at least 2 classes, got {classes}"),
        ));
    }
    let graph = &mut model.graph;
    let assignments = assign_layers(graph);
    let mine: Vec<_> = assignments
        .iter()
        .filter(|a| a.layer == layer)
        .cloned()
        .collect();
    let Some(first) = mine.first() else {
        let mut known: Vec<&str> = assignments.iter().map(|a| a.layer.as_str()).collect();
        known.dedup();
        return Err(NetError::UnknownLayer {
            name: layer.to_string(),
            known: known.join(", "),
        });
    };
    if mine.iter().any(|a| a.role != ParamRole::Learnable) {
        return Err(head_error(
            layer,
            "the head must be a Gemm, MatMul or Conv layer",
        ));
    }
    let node = graph
        .node(&first.node)
        .cloned()
        .ok_or_else(|| head_error(layer, "owner node vanished"))?;
    let out_value = node.outputs[0].clone();
    let out_dims = graph
        .shapes
        .of(&out_value)
        .map(<[usize]>::to_vec)
        .unwrap_or_default();
    // The axis of the output that counts classes: last for Gemm/MatMul, channels for Conv.
    let (axis_from_end, old) = match &node.op {
        Op::Nn(Nn::Gemm { .. }) | Op::Nn(Nn::MatMul) => (1, *out_dims.last().unwrap_or(&0)),
        Op::Nn(Nn::Conv(spec)) if spec.group == 1 => (3, out_dims.get(1).copied().unwrap_or(0)),
        Op::Nn(Nn::Conv(_)) => {
            return Err(head_error(layer, "a grouped convolution cannot be a head"))
        }
        other => {
            return Err(head_error(
                layer,
                format!("{} layers cannot be replaced as a head", other.onnx_type()),
            ))
        }
    };
    let mut change = HeadChange {
        layer: layer.to_string(),
        old_outputs: old,
        new_outputs: classes,
        params: Vec::new(),
    };
    type Resized = (String, Vec<usize>, Vec<usize>);
    let resize = |name: &str,
                  graph: &mut zoo_onnx::Graph,
                  axis: usize,
                  fan_in: usize,
                  weight: bool,
                  salt: u64|
     -> Result<Resized, NetError> {
        let c = graph
            .constants
            .get(name)
            .ok_or_else(|| head_error(layer, format!("`{name}` is not a constant")))?;
        let mut dims = c.dims.clone();
        if dims.get(axis) != Some(&old) {
            return Err(head_error(
                layer,
                format!("`{name}` {dims:?} has no axis of size {old} where expected"),
            ));
        }
        let before = dims.clone();
        dims[axis] = classes;
        let n = dims.iter().product();
        let values = if weight {
            // PyTorch's nn.Linear/Conv default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
            uniform(n, 1.0 / (fan_in.max(1) as f32).sqrt(), seed ^ salt)
        } else {
            vec![0.0; n]
        };
        graph
            .constants
            .insert(name.to_string(), Constant::f32(dims.clone(), values));
        Ok((name.to_string(), before, dims))
    };
    let weight = node
        .input(1)
        .ok_or_else(|| head_error(layer, "no weight"))?
        .to_string();
    let weight_dims = graph
        .constants
        .get(&weight)
        .map(|c| c.dims.clone())
        .unwrap_or_default();
    match &node.op {
        Op::Nn(Nn::Gemm { trans_b, .. }) => {
            let (axis, fan_in) = if *trans_b {
                (0, weight_dims.get(1).copied().unwrap_or(1))
            } else {
                (1, weight_dims.first().copied().unwrap_or(1))
            };
            change
                .params
                .push(resize(&weight, graph, axis, fan_in, true, 1)?);
        }
        Op::Nn(Nn::Conv(_)) => {
            let fan_in = weight_dims.iter().skip(1).product();
            change
                .params
                .push(resize(&weight, graph, 0, fan_in, true, 1)?);
        }
        Op::Nn(Nn::MatMul) => {
            let w = weight.clone();
            if graph.constants.contains_key(&w) {
                let wd = weight_dims.clone();
                change
                    .params
                    .push(resize(&w, graph, wd.len() - 1, wd[wd.len() - 2], true, 1)?);
            } else {
                // The zoo's MNIST CNN: the weight is a Reshape of a parameter by a constant shape.
                let reshape = graph
                    .nodes
                    .iter()
                    .find(|n| n.outputs[0] == w && matches!(n.op, Op::Array(Array::Reshape { .. })))
                    .cloned()
                    .ok_or_else(|| {
                        head_error(
                            layer,
                            "the MatMul weight is neither a constant nor a reshaped one",
                        )
                    })?;
                let param = reshape.input(0).unwrap_or_default().to_string();
                let shape_name = reshape.input(1).unwrap_or_default().to_string();
                let pd = graph
                    .constants
                    .get(&param)
                    .map(|c| c.dims.clone())
                    .unwrap_or_default();
                let fan_in = pd[..pd.len().saturating_sub(1)].iter().product();
                change.params.push(resize(
                    &param,
                    graph,
                    pd.len().saturating_sub(1),
                    fan_in,
                    true,
                    1,
                )?);
                let shape = graph
                    .constants
                    .get_mut(&shape_name)
                    .and_then(|c| match &mut c.data {
                        zoo_onnx::ConstData::I64(v) => Some(v),
                        _ => None,
                    });
                match shape.and_then(|v| v.last_mut()) {
                    Some(last) if *last == old as i64 => *last = classes as i64,
                    _ => {
                        return Err(head_error(
                            layer,
                            "cannot adapt the weight's reshape target",
                        ))
                    }
                }
            }
        }
        _ => unreachable!("checked above"),
    }
    // Biases: the Gemm/Conv bias input, or the bias Add merged into the layer.
    let done: Vec<String> = change.params.iter().map(|(n, _, _)| n.clone()).collect();
    for a in mine.iter().filter(|a| !done.contains(&a.param)) {
        let dims = graph
            .constants
            .get(&a.param)
            .map(|c| c.dims.clone())
            .unwrap_or_default();
        if dims.len() < axis_from_end.min(dims.len().max(1)) {
            continue;
        }
        let axis = if node.input(2) == Some(a.param.as_str()) || dims.len() == 1 {
            0
        } else {
            dims.len().saturating_sub(axis_from_end)
        };
        change
            .params
            .push(resize(&a.param, graph, axis, 1, false, 2)?);
    }
    graph.refresh_shapes()?;
    // The declared output shape follows the new head, whatever lies between them (a Conv head
    // reaches the output through pooling and Flatten); a symbolic batch stays symbolic.
    if let Some(inferred) = graph.shapes.of(&graph.output.name) {
        let symbolic_batch = graph.output.dims.first() == Some(&None);
        graph.output.dims = inferred.iter().map(|&d| Some(d)).collect();
        if symbolic_batch {
            graph.output.dims[0] = None;
        }
    }
    Ok(change)
}
