//! The import plan: which constants become parameters, which layer owns each parameter, and
//! the graph the executor runs. Independent of any backend.

use std::collections::{BTreeMap, HashMap, HashSet};
use zoo_onnx::ops::{Array, Math, Nn};

use zoo_onnx::{Constant, Graph, Node, OnnxModel, Op};

mod fusions;
use fusions::{bias_follows, concat_parts, relu_follows, residual_follows};
pub(crate) use fusions::{channel_offsets, ConcatPart};

/// What a parameter is for. Buffers (batch-norm running statistics) are never trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamRole {
    Learnable,
    Buffer,
}

/// One parameter tensor, named exactly as its ONNX initializer.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub dims: Vec<usize>,
    pub role: ParamRole,
    /// Name of the layer that owns it (see [`Layer`]).
    pub layer: String,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }
}

/// A named group of parameters: a node with weights, plus a bias Add that directly follows it
/// (the ONNX zoo's CNTK models keep biases in separate Add nodes). Freeze plans name layers.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    pub name: String,
    /// ONNX op type of the owning node.
    pub op: String,
    /// Label of the owning node in the graph.
    pub node: String,
    /// Indices into [`Plan::params`].
    pub params: Vec<usize>,
}

/// Everything about an imported network except the parameter values.
#[derive(Debug)]
pub struct Plan {
    /// The graph; constants that became parameters are removed from `graph.constants`.
    pub graph: Graph,
    /// The original protobuf (weights moved out), for export.
    pub proto: zoo_onnx::pb::ModelProto,
    pub metadata: BTreeMap<String, String>,
    pub params: Vec<ParamSpec>,
    pub param_index: HashMap<String, usize>,
    pub layers: Vec<Layer>,
    /// Per node: values whose last reader is this node (freed after it runs).
    pub(crate) release_after: Vec<Vec<String>>,
    /// Per node: whether it depends on the image input (others only transform parameters).
    pub data_dependent: Vec<bool>,
    /// Per node: whether the next node is a ReLU and the only reader of this node's output,
    /// so the two may run as one op.
    pub(crate) relu_follows: Vec<bool>,
    /// Per node: whether it is a MatMul by a weight matrix (or a convolution without bias)
    /// whose output only the next node reads, an Add of one bias value per output column (per
    /// channel), so the two (with a ReLU after the Add, `relu_follows` of the Add) may run as
    /// one op.
    pub(crate) bias_follows: Vec<bool>,
    /// Per node: whether it is the bias Add of such a MatMul and the next node, the only
    /// reader of its output, adds a value of the same dims to it (a residual connection), so
    /// the three may run as one op at inference.
    pub(crate) residual_follows: Vec<bool>,
    /// Per node: the channel concatenation this convolution's output (through its fused ReLU,
    /// if any) is a part of and nothing else reads, so it may write its channels there.
    pub(crate) concat_parts: Vec<Option<ConcatPart>>,
    /// Values of the largest weight a Gemm or MatMul multiplies by.
    pub(crate) largest_matmul_weight: usize,
}

impl Plan {
    pub fn layer(&self, name: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// Whether `value` is computed from the image (the input itself, or the output of a node
    /// that depends on it), not only from weights and constants.
    pub fn depends_on_input(&self, value: &str) -> bool {
        if value == self.graph.input.name {
            return true;
        }
        (self.graph.nodes.iter().enumerate())
            .find(|(_, n)| n.outputs.iter().any(|o| o == value))
            .is_some_and(|(i, _)| self.data_dependent[i])
    }

    pub fn total_params(&self) -> usize {
        self.params.iter().map(ParamSpec::numel).sum()
    }
}

/// Which layer owns a parameter, decided from the graph alone (nothing is consumed).
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    pub param: String,
    pub role: ParamRole,
    pub layer: String,
    /// Label of the node that owns the layer.
    pub node: String,
}

/// Constants read as data by a computing op become parameters; batch-norm statistics become
/// buffers. Everything else (shapes, dropout ratios) stays a plain constant.
pub fn assign_layers(graph: &Graph) -> Vec<Assignment> {
    let mut roles: Vec<(String, ParamRole)> = Vec::new();
    let mut seen = HashSet::new();
    for node in &graph.nodes {
        for (i, input) in node.inputs.iter().enumerate() {
            let Some(c) = graph.constants.get(input) else {
                continue;
            };
            if !c.is_float() || seen.contains(input) || graph.folded.computed.contains(input) {
                continue;
            }
            let role = match (&node.op, i) {
                (Op::Nn(Nn::BatchNorm { .. }), 3 | 4) => Some(ParamRole::Buffer),
                (Op::Nn(Nn::Dropout { .. }), _) => None,
                (op, i) if op.is_setting_input(i) => None,
                // Scalars of arithmetic are constants of a formula written out (epsilons, GELU's
                // 0.5 and sqrt(2), attention's scale), not weights.
                (Op::Math(_) | Op::Logic(_), _) if c.len() == 1 => None,
                _ => Some(ParamRole::Learnable),
            };
            if let Some(role) = role {
                seen.insert(input.clone());
                roles.push((input.clone(), role));
            }
        }
    }
    let owners = owner_nodes(graph, &seen);
    let mut layer_names: HashMap<String, String> = HashMap::new();
    let mut used_names: HashSet<String> = HashSet::new();
    roles
        .into_iter()
        .map(|(param, role)| {
            let node = owners.get(&param).cloned().unwrap_or_default();
            let layer = layer_names
                .entry(node.clone())
                .or_insert_with(|| {
                    let owner = graph.node(&node).expect("owner nodes exist");
                    let base = layer_name(owner, graph, &seen);
                    let mut unique = base.clone();
                    let mut k = 2;
                    while !used_names.insert(unique.clone()) {
                        unique = format!("{base}_{k}");
                        k += 1;
                    }
                    unique
                })
                .clone();
            Assignment {
                param,
                role,
                layer,
                node,
            }
        })
        .collect()
}

fn node_positions(graph: &Graph) -> HashMap<&str, usize> {
    graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.label.as_str(), i))
        .collect()
}

/// Layer names in execution order, from the graph alone (no tensors are built).
pub fn layer_names(graph: &Graph) -> Vec<String> {
    let position = node_positions(graph);
    let mut layers: Vec<(usize, String)> = Vec::new();
    for a in assign_layers(graph) {
        if !layers.iter().any(|(_, n)| *n == a.layer) {
            layers.push((
                position.get(a.node.as_str()).copied().unwrap_or(usize::MAX),
                a.layer,
            ));
        }
    }
    layers.sort();
    layers.into_iter().map(|(_, n)| n).collect()
}

/// Splits a model into a plan and the initial parameter values (in `plan.params` order).
pub fn build_plan(model: OnnxModel) -> (Plan, Vec<Vec<f32>>) {
    let OnnxModel {
        proto,
        mut graph,
        metadata,
    } = model;
    let assignments = assign_layers(&graph);
    let mut layers: Vec<Layer> = Vec::new();
    let mut params = Vec::with_capacity(assignments.len());
    let mut values = Vec::with_capacity(assignments.len());
    let mut param_index = HashMap::new();
    for a in assignments {
        let index = params.len();
        match layers.iter_mut().find(|l| l.name == a.layer) {
            Some(l) => l.params.push(index),
            None => layers.push(Layer {
                name: a.layer.clone(),
                op: graph
                    .node(&a.node)
                    .map(|n| n.op.onnx_type().to_string())
                    .unwrap_or_default(),
                node: a.node.clone(),
                params: vec![index],
            }),
        }
        let Constant { dims, data } = graph
            .constants
            .remove(&a.param)
            .expect("param constants exist");
        param_index.insert(a.param.clone(), index);
        params.push(ParamSpec {
            name: a.param,
            dims,
            role: a.role,
            layer: a.layer,
        });
        values.push(match data {
            zoo_onnx::ConstData::F32(v) => v,
            zoo_onnx::ConstData::I64(_) => unreachable!("only float constants become params"),
        });
    }

    // List layers in execution order (a weight may be reshaped before the first layer runs).
    let position = node_positions(&graph);
    layers.sort_by_key(|l| position.get(l.node.as_str()).copied().unwrap_or(usize::MAX));
    let release_after = release_schedule(&graph);
    let data_dependent = data_dependence(&graph);
    let relu_follows = relu_follows(&graph);
    let concat_parts = concat_parts(&graph, &relu_follows);
    let bias_follows = bias_follows(&graph, &params, &param_index);
    let residual_follows = residual_follows(&graph, &bias_follows);
    let largest_matmul_weight = graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Nn(Nn::Gemm { .. }) | Op::Nn(Nn::MatMul)))
        .flat_map(|n| &n.inputs)
        .filter_map(|i| param_index.get(i))
        .map(|&p| params[p].numel())
        .max()
        .unwrap_or(0);
    (
        Plan {
            graph,
            proto,
            metadata,
            params,
            param_index,
            layers,
            release_after,
            data_dependent,
            relu_follows,
            bias_follows,
            residual_follows,
            concat_parts,
            largest_matmul_weight,
        },
        values,
    )
}

/// The node owning each parameter: its first reader, looking through Reshape/Identity of
/// constants, then merged into the Conv/Gemm/MatMul that feeds a bias Add or scale Mul.
fn owner_nodes(graph: &Graph, params: &HashSet<String>) -> HashMap<String, String> {
    let producer: HashMap<&str, &Node> = graph
        .nodes
        .iter()
        .flat_map(|n| n.outputs.iter().map(move |o| (o.as_str(), n)))
        .collect();
    let mut owners = HashMap::new();
    for name in params {
        let mut value = name.clone();
        let mut owner = None;
        for _ in 0..graph.nodes.len() {
            let Some(reader) = graph.first_consumer(&value) else {
                break;
            };
            owner = Some(reader);
            let passthrough =
                is_passthrough(&reader.op) && !graph.shapes.batched.contains(&reader.outputs[0]);
            if !passthrough {
                break;
            }
            value = reader.outputs[0].clone();
        }
        let Some(mut owner) = owner else { continue };
        if matches!(
            owner.op,
            Op::Math(Math::Add) | Op::Math(Math::Mul) | Op::Math(Math::Sub)
        ) {
            let computed = owner
                .inputs
                .iter()
                .find(|i| *i != &value && !params.contains(*i))
                .and_then(|i| producer.get(i.as_str()));
            if let Some(prev) = computed {
                let single_reader = graph.consumers(&prev.outputs[0]).count() == 1;
                // A scale then its bias (a layer norm written out, a layer scale) is one layer.
                let scales = matches!(prev.op, Op::Math(Math::Mul))
                    && prev.inputs.iter().any(|i| params.contains(i));
                if single_reader
                    && (scales
                        || matches!(
                            prev.op,
                            Op::Nn(Nn::Conv(_)) | Op::Nn(Nn::Gemm { .. }) | Op::Nn(Nn::MatMul)
                        ))
                {
                    owner = prev;
                }
            }
        }
        owners.insert(name.clone(), owner.label.clone());
    }
    owners
}

/// Suffixes that mark a weight initializer: `conv1_w_0` names layer `conv1`.
const WEIGHT_SUFFIXES: &[&str] = &[
    "_w_0", "_W_0", "_w", "_W", ".weight", "_weight", "/weight", "/weights", "_weights", "/kernel",
    "_kernel", "_gamma", "_scale_0", "_s_0",
];

/// Ops that only change a parameter's shape on its way to the node that uses it.
fn is_passthrough(op: &Op) -> bool {
    matches!(
        op,
        Op::Array(Array::Reshape { .. })
            | Op::Array(Array::Identity)
            | Op::Array(Array::Squeeze { .. })
            | Op::Array(Array::Unsqueeze { .. })
            | Op::Array(Array::Transpose { .. })
    )
}

fn layer_name(node: &Node, graph: &Graph, params: &HashSet<String>) -> String {
    // The node's parameters, each seen through a Reshape of a parameter (Caffe2 heads and
    // the CNTK MNIST MatMul reshape their weight); the first that reads as a weight names
    // the layer (a bias listed first, as `loss3/classifier_b_0`, does not).
    let reshaped_source = |value: &String| {
        graph
            .nodes
            .iter()
            .find(|n| n.outputs.first() == Some(value) && is_passthrough(&n.op))
            .and_then(|n| n.inputs.first())
            .filter(|p| params.contains(*p))
    };
    let candidates = node.inputs.iter().filter_map(|i| {
        if params.contains(i) {
            Some(i)
        } else {
            reshaped_source(i)
        }
    });
    let candidates: Vec<&String> = candidates.collect();
    for w in &candidates {
        for suffix in WEIGHT_SUFFIXES {
            if let Some(prefix) = w.strip_suffix(suffix).filter(|p| !p.is_empty()) {
                return prefix.to_string();
            }
        }
    }
    // PyTorch exports: the module scope of the node (`/blocks/blocks.10/attn/qkv/MatMul`),
    // then a parameter's own module name (`cls_token`, `pos_embed`), since constant folding
    // renames weights (`onnx::MatMul_123`).
    if node.name.starts_with('/') || node.name.starts_with("node_") {
        if let Some(scope) = module_scope(&node.name) {
            return scope;
        }
        let torch_named = candidates
            .iter()
            .find(|w| !w.contains("::") && !w.starts_with('/') && !w.starts_with("onnx"));
        if let Some(w) = torch_named {
            return w.to_string();
        }
    }
    if node.name.is_empty() {
        node.label.clone()
    } else {
        node.name.clone()
    }
}

fn data_dependence(graph: &Graph) -> Vec<bool> {
    let mut reached: HashSet<&str> = HashSet::from([graph.input.name.as_str()]);
    graph
        .nodes
        .iter()
        .map(|n| {
            let dep = n.inputs.iter().any(|i| reached.contains(i.as_str()));
            if dep {
                reached.extend(n.outputs.iter().map(String::as_str));
            }
            dep
        })
        .collect()
}

fn release_schedule(graph: &Graph) -> Vec<Vec<String>> {
    let mut last_reader: HashMap<&str, usize> = HashMap::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        for input in &node.inputs {
            last_reader.insert(input, i);
        }
    }
    let mut release = vec![Vec::new(); graph.nodes.len()];
    for (value, i) in last_reader {
        if value != graph.output.name {
            release[i].push(value.to_string());
        }
    }
    release
}

/// The torch module path of a TorchScript node name: `/stages/stages.0/blocks/blocks.1/attn/
/// qkv/MatMul` is `stages.0.blocks.1.attn.qkv` (a child of a Sequential or ModuleList is
/// scoped `<parent>.<i>`; the last part names the op). `None` outside any module.
pub fn module_scope(node_name: &str) -> Option<String> {
    let parts: Vec<&str> = node_name.trim_start_matches('/').split('/').collect();
    let (_, modules) = parts.split_last()?;
    let mut path: Vec<String> = Vec::new();
    for part in modules.iter().filter(|p| !p.is_empty()) {
        let full = path.join(".");
        match path.last() {
            // `stages.0` under `stages`: the same module, indexed.
            Some(last) if part.split_once('.').is_some_and(|(head, _)| head == last) => {
                *path.last_mut().expect("non-empty") = part.to_string();
            }
            // A scope that already spells the full path (`blocks.0` under nothing).
            _ if !full.is_empty() && part.starts_with(&format!("{full}.")) => {
                path = vec![part.to_string()];
            }
            _ => path.push(part.to_string()),
        }
    }
    (!path.is_empty()).then(|| path.join("."))
}
