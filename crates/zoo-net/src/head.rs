//! Replacing the classifier head: the head layer's weights and bias get `classes` outputs,
//! freshly initialised (seeded), and every shape downstream is re-inferred.

use zoo_onnx::ops::{Activation, Array, Nn};
use zoo_onnx::{Constant, Node, OnnxModel, Op};

use crate::error::NetError;
use crate::plan::{assign_layers, Assignment, ParamRole};

/// What changed.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HeadChange {
    pub layer: String,
    pub old_outputs: usize,
    pub new_outputs: usize,
    /// `(param name, old dims, new dims)`.
    pub params: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// A ReLU (or ReLU6) after the head, made a LeakyReLU so no class can die behind it:
    /// `(node, op it was)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unblocked: Option<(String, String)>,
}

impl HeadChange {
    /// What a user should know about the change beyond the counts: a 1001-output head (the
    /// TensorFlow/TFLite ImageNet layout, output 0 = "background") has no background class
    /// after the change; outputs are the dataset's classes alone.
    pub fn note(&self) -> Option<String> {
        let background = (self.old_outputs == 1001).then(|| {
            format!(
                "the 1001-output head (ImageNet with a background class at output 0) becomes {} outputs, one per dataset class, with no background class",
                self.new_outputs
            )
        });
        let unblocked = self.unblocked.as_ref().map(|(node, op)| {
            format!(
                "the {op} after the new head (`{node}`) becomes a LeakyRelu (slope {HEAD_LEAK} below zero): behind a {op}, a class whose outputs all fell below zero would get no gradient and could never be learned (a dead class)"
            )
        });
        let notes: Vec<String> = background.into_iter().chain(unblocked).collect();
        (!notes.is_empty()).then(|| notes.join("; "))
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
    let unblocked = {
        let assignments = assign_layers(&model.graph);
        let (_, node) = head_node(&model.graph, &assignments, layer)?;
        unblock_gradient(model, &node.outputs[0])
    };
    let graph = &mut model.graph;
    let assignments = assign_layers(graph);
    let (mine, node) = head_node(graph, &assignments, layer)?;
    let out_dims = graph
        .shapes
        .of(&node.outputs[0])
        .map(<[usize]>::to_vec)
        .unwrap_or_default();
    let (_, old) = class_axis(&node, &out_dims, layer)?;
    let twins = twin_heads(graph, &assignments, layer, &node, old);
    let mut change = HeadChange {
        layer: layer.to_string(),
        old_outputs: old,
        new_outputs: classes,
        params: Vec::new(),
        unblocked,
    };
    for (k, (name, mine, node)) in std::iter::once((layer.to_string(), mine, node))
        .chain(twins)
        .enumerate()
    {
        let resizer = Resizer {
            layer: &name,
            old,
            classes,
            seed: seed.wrapping_add(k as u64),
        };
        change
            .params
            .extend(resize_layer(graph, &mine, &node, &resizer)?);
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

/// The slope below zero of the LeakyReLU that replaces a ReLU after a new head. Measured
/// (README, "No dead classes"): 0.01 still let SqueezeNet's classes collapse at a high rate,
/// an Identity cost 2 points at the default rate; 0.2 kept the ReLU's accuracy and never
/// collapsed.
pub const HEAD_LEAK: f32 = 0.2;

/// Makes a ReLU (or ReLU6, `Clip(0, max)`) between the head and the logits a LeakyReLU with
/// slope [`HEAD_LEAK`], looking through pooling, Flatten, Reshape, Squeeze and Dropout
/// (SqueezeNet's `conv10` is followed by a ReLU). With the ReLU, a class whose output fell below
/// zero for every image got no gradient and stopped learning for good (a "dead" class, seen on
/// SqueezeNet at 0 % recall after training). Returns the node and the op it was.
fn unblock_gradient(model: &mut OnnxModel, head_output: &str) -> Option<(String, String)> {
    let graph = &mut model.graph;
    let logits = graph.logits_value().to_string();
    let mut value = head_output.to_string();
    for _ in 0..graph.nodes.len() {
        if value == logits {
            return None;
        }
        let consumers: Vec<&Node> = graph.consumers(&value).collect();
        let [next] = consumers.as_slice() else {
            return None;
        };
        let (label, output) = (next.label.clone(), next.outputs[0].clone());
        match &next.op {
            Op::Activation(a @ (Activation::Relu | Activation::Clip { min: 0.0, .. })) => {
                let was = Op::Activation(*a).onnx_type().to_string();
                // The file's node too: exports are written from it.
                let graph_proto = model.proto.graph.as_mut()?;
                let written =
                    (graph_proto.node.iter_mut()).find(|n| n.output.first() == Some(&output))?;
                written.op_type = "LeakyRelu".into();
                written.input.truncate(1);
                let alpha = zoo_onnx::builder::Attr::Float(HEAD_LEAK);
                written.attribute = vec![zoo_onnx::builder::attr("alpha", alpha)];
                let node = model.graph.nodes.iter_mut().find(|n| n.label == label)?;
                node.op = Op::Activation(Activation::LeakyRelu { alpha: HEAD_LEAK });
                node.inputs.truncate(1);
                return Some((label, was));
            }
            Op::Nn(Nn::GlobalAveragePool | Nn::AveragePool { .. } | Nn::Dropout { .. })
            | Op::Array(
                Array::Flatten { .. }
                | Array::Reshape { .. }
                | Array::Squeeze { .. }
                | Array::Identity,
            ) => value = output,
            _ => return None,
        }
    }
    None
}

/// One head layer's weight and biases, resized.
fn resize_layer(
    graph: &mut zoo_onnx::Graph,
    mine: &[Assignment],
    node: &Node,
    resizer: &Resizer,
) -> Result<Vec<Resized>, NetError> {
    let out_dims = graph
        .shapes
        .of(&node.outputs[0])
        .map(<[usize]>::to_vec)
        .unwrap_or_default();
    let (axis_from_end, _) = class_axis(node, &out_dims, resizer.layer)?;
    let mut params = resize_weight(graph, node, resizer)?;
    // Biases: the Gemm/Conv bias input, or the bias Add merged into the layer.
    let done: Vec<String> = params.iter().map(|(n, _, _)| n.clone()).collect();
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
        params.push(resizer.resize(graph, &a.param, axis, 1, false, 2)?);
    }
    Ok(params)
}

/// Other Gemm/MatMul layers with the head's classes whose output meets the head's at the
/// graph output through element-wise ops only (LeViT's distillation head, averaged with
/// `head`): they are replaced with it, or the two would no longer add up.
fn twin_heads(
    graph: &zoo_onnx::Graph,
    assignments: &[Assignment],
    head: &str,
    node: &Node,
    classes: usize,
) -> Vec<(String, Vec<Assignment>, Node)> {
    if !reaches_output_elementwise(graph, &node.outputs[0]) {
        return Vec::new();
    }
    let mut twins: Vec<(String, Vec<Assignment>, Node)> = Vec::new();
    for a in assignments {
        if a.layer == head || twins.iter().any(|(l, _, _)| *l == a.layer) {
            continue;
        }
        let Some(other) = graph.node(&a.node) else {
            continue;
        };
        let dense = matches!(other.op, Op::Nn(Nn::Gemm { .. }) | Op::Nn(Nn::MatMul));
        let dims = graph.shapes.of(&other.outputs[0]).unwrap_or_default();
        if dense
            && dims.last() == Some(&classes)
            && reaches_output_elementwise(graph, &other.outputs[0])
        {
            let mine = assignments
                .iter()
                .filter(|b| b.layer == a.layer)
                .cloned()
                .collect();
            twins.push((a.layer.clone(), mine, other.clone()));
        }
    }
    twins
}

/// Whether `value` flows to the graph output through element-wise ops alone.
fn reaches_output_elementwise(graph: &zoo_onnx::Graph, value: &str) -> bool {
    let mut v = value.to_string();
    for _ in 0..=graph.nodes.len() {
        if v == graph.output.name {
            return true;
        }
        let consumers: Vec<&Node> = graph.consumers(&v).collect();
        let [next] = consumers.as_slice() else {
            return false;
        };
        let elementwise = next.op.is_row_wise();
        if !elementwise {
            return false;
        }
        v = next.outputs[0].clone();
    }
    false
}

/// The head layer's parameter assignments and the node that owns them.
fn head_node(
    graph: &zoo_onnx::Graph,
    assignments: &[Assignment],
    layer: &str,
) -> Result<(Vec<Assignment>, Node), NetError> {
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
    Ok((mine, node))
}

/// The output axis that counts classes (from the end: last for Gemm/MatMul, channels for
/// Conv) and its size.
fn class_axis(node: &Node, out_dims: &[usize], layer: &str) -> Result<(usize, usize), NetError> {
    Ok(match &node.op {
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
    })
}

/// A parameter's name, its dims before and after.
type Resized = (String, Vec<usize>, Vec<usize>);

/// Gives parameters of the head a class axis of the new size, freshly initialised.
struct Resizer<'a> {
    layer: &'a str,
    old: usize,
    classes: usize,
    seed: u64,
}

impl Resizer<'_> {
    fn resize(
        &self,
        graph: &mut zoo_onnx::Graph,
        name: &str,
        axis: usize,
        fan_in: usize,
        weight: bool,
        salt: u64,
    ) -> Result<Resized, NetError> {
        let (layer, old) = (self.layer, self.old);
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
        dims[axis] = self.classes;
        let n = dims.iter().product();
        let values = if weight {
            // PyTorch's nn.Linear/Conv default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
            uniform(n, 1.0 / (fan_in.max(1) as f32).sqrt(), self.seed ^ salt)
        } else {
            vec![0.0; n]
        };
        graph
            .constants
            .insert(name.to_string(), Constant::f32(dims.clone(), values));
        Ok((name.to_string(), before, dims))
    }
}

/// The head's weight, resized (for a MatMul whose weight is a reshaped parameter, that
/// parameter and the reshape's target).
fn resize_weight(
    graph: &mut zoo_onnx::Graph,
    node: &Node,
    resizer: &Resizer,
) -> Result<Vec<Resized>, NetError> {
    let layer = resizer.layer;
    let weight = node
        .input(1)
        .ok_or_else(|| head_error(layer, "no weight"))?
        .to_string();
    let weight_dims = graph
        .constants
        .get(&weight)
        .map(|c| c.dims.clone())
        .unwrap_or_default();
    let resized = match &node.op {
        Op::Nn(Nn::Gemm { trans_b, .. }) => {
            let (axis, fan_in) = if *trans_b {
                (0, weight_dims.get(1).copied().unwrap_or(1))
            } else {
                (1, weight_dims.first().copied().unwrap_or(1))
            };
            resizer.resize(graph, &weight, axis, fan_in, true, 1)?
        }
        Op::Nn(Nn::MatMul) if graph.constants.contains_key(&weight) => {
            let (axis, fan_in) = (weight_dims.len() - 1, weight_dims[weight_dims.len() - 2]);
            resizer.resize(graph, &weight, axis, fan_in, true, 1)?
        }
        Op::Nn(Nn::MatMul) => resize_reshaped_weight(graph, &weight, resizer)?,
        _ => {
            let fan_in = weight_dims.iter().skip(1).product();
            resizer.resize(graph, &weight, 0, fan_in, true, 1)?
        }
    };
    Ok(vec![resized])
}

/// The zoo's MNIST CNN: the MatMul weight is a Reshape of a parameter by a constant shape.
fn resize_reshaped_weight(
    graph: &mut zoo_onnx::Graph,
    weight: &str,
    resizer: &Resizer,
) -> Result<Resized, NetError> {
    let layer = resizer.layer;
    let reshape = graph
        .nodes
        .iter()
        .find(|n| n.outputs[0] == weight && matches!(n.op, Op::Array(Array::Reshape { .. })))
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
    let axis = pd.len().saturating_sub(1);
    let resized = resizer.resize(graph, &param, axis, fan_in, true, 1)?;
    let shape = graph
        .constants
        .get_mut(&shape_name)
        .and_then(|c| match &mut c.data {
            zoo_onnx::ConstData::I64(v) => Some(v),
            _ => None,
        });
    match shape.and_then(|v| v.last_mut()) {
        Some(last) if *last == resizer.old as i64 => *last = resizer.classes as i64,
        _ => {
            return Err(head_error(
                layer,
                "cannot adapt the weight's reshape target",
            ))
        }
    }
    Ok(resized)
}
