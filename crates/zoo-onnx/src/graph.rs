//! Loading an ONNX file into a validated, topologically sorted graph of typed ops.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use prost::Message;
use tract_onnx::pb::{ModelProto, NodeProto};

use crate::error::{bad_node, OnnxError, Result};
use crate::fold::{bake, checked, evaluate, is_foldable, Baked, Folded};
pub use crate::interface::format_dims;
use crate::interface::{input_layout, interface};
use crate::ops::{parse_op, Import, Nn, Op, Parsed};
use crate::shapes::{infer_node, infer_shapes, ShapeInfo};
use crate::tensor::{take_constant, Constant};

pub const MIN_OPSET: i64 = 7;
pub const MAX_OPSET: i64 = 25;

/// Largest model file read: protobuf messages cannot exceed 2 GiB.
pub const MAX_FILE_BYTES: u64 = 2 << 30;

/// One operator of the graph.
#[derive(Clone, Debug)]
pub struct Node {
    /// The node's name in the file (may be empty).
    pub name: String,
    /// A unique name for messages: the node name, or `#index Op` when it has none.
    pub label: String,
    pub op: Op,
    /// Input value names; an empty string marks an absent optional input.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

impl Node {
    pub fn input(&self, i: usize) -> Option<&str> {
        self.inputs
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// A graph input or output: its name and dims (`None` for a symbolic dim such as `N`).
#[derive(Clone, Debug, PartialEq)]
pub struct ValueSpec {
    pub name: String,
    pub dims: Vec<Option<usize>>,
}

/// Axis order of the image input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InputLayout {
    #[default]
    Nchw,
    /// Channels last, as TensorFlow exports (tf2onnx) take it: the graph's first op transposes
    /// the input to NCHW.
    Nhwc,
}

/// A classifier graph: one image input (NCHW or NHWC), one output, constants and ops.
#[derive(Clone, Debug)]
pub struct Graph {
    pub opset: i64,
    pub input: ValueSpec,
    pub layout: InputLayout,
    pub output: ValueSpec,
    /// Initializers and folded constant nodes, by value name.
    pub constants: BTreeMap<String, Constant>,
    /// Computation nodes in execution order (constant-producing nodes are folded away).
    pub nodes: Vec<Node>,
    /// Nodes of the file that fused ops replaced (they never run). The file keeps them, so a
    /// dynamic-batch export still rewrites what they read (their Reshape targets).
    pub fused_away: Vec<Node>,
    /// Shapes and batch tracking, computed at the declared batch size.
    pub shapes: ShapeInfo,
    /// Constants that import computed from nodes (shape arithmetic).
    pub folded: Folded,
}

impl Graph {
    /// The value holding the logits: the Softmax input when the graph ends in a Softmax, else
    /// the output.
    pub fn logits_value(&self) -> &str {
        self.nodes
            .iter()
            .find(|n| n.outputs[0] == self.output.name)
            .filter(|n| matches!(n.op, Op::Nn(Nn::Softmax { .. })))
            .and_then(|n| n.input(0))
            .unwrap_or(&self.output.name)
    }

    /// The input's `[C, H, W]`, whatever its layout.
    pub fn input_chw(&self) -> [usize; 3] {
        let d: Vec<usize> = self.input.dims.iter().map(|d| d.unwrap_or(0)).collect();
        match self.layout {
            InputLayout::Nchw => [d[1], d[2], d[3]],
            InputLayout::Nhwc => [d[3], d[1], d[2]],
        }
    }

    pub fn node(&self, label: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.label == label)
    }

    /// The first node reading a value.
    pub fn first_consumer(&self, value: &str) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|n| n.inputs.iter().any(|i| i == value))
    }

    /// Nodes reading a value.
    pub fn consumers<'a>(&'a self, value: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes
            .iter()
            .filter(move |n| n.inputs.iter().any(|i| i == value))
    }
}

impl Graph {
    /// One node in execution order: a constant node or foldable shape arithmetic becomes a
    /// constant; anything else is baked, validated, shaped and kept.
    fn fold_or_infer(
        &mut self,
        proto_node: &NodeProto,
        label: &str,
        parsed: Parsed,
        info: &mut ShapeInfo,
    ) -> Result<usize> {
        let import = match bake(
            parsed,
            label,
            &proto_node.op_type,
            &proto_node.input,
            &self.constants,
        )? {
            Baked::Run(op) => {
                let node = Node {
                    name: proto_node.name.clone(),
                    label: label.to_string(),
                    op,
                    inputs: proto_node.input.clone(),
                    outputs: proto_node.output.clone(),
                };
                if !is_foldable(&node, &self.constants, &self.folded) {
                    let readings = infer_node(&self.constants, &self.folded, &node, info, 0)?;
                    self.nodes.push(node);
                    return Ok(readings);
                }
                Folding::Node(node)
            }
            // A Constant node's value, decoded at parsing, is moved in as it is.
            Baked::Import(Import::Constant(value)) => {
                let out = single_output(proto_node, label)?.to_string();
                info.dims.insert(out.clone(), value.dims.clone());
                self.constants.insert(out, checked(value, label)?);
                return Ok(1);
            }
            Baked::Import(import) => Folding::Import(import, &proto_node.input),
        };
        let value = import.evaluate(label, &|n| self.constants.get(n), &|n| {
            info.dims.get(n).cloned()
        })?;
        let out = single_output(proto_node, label)?.to_string();
        let reads_computed = proto_node
            .input
            .iter()
            .any(|i| self.folded.computed.contains(i));
        // Computed from the graph (not just a constant node or a copied weight): the node
        // stays in exported files.
        // Shapes, and tensors the graph makes (ConstantOfShape's zeros that torchvision's Swin
        // writes its shift mask into, Range), are not weights even when float.
        let generated = matches!(
            import,
            Folding::Import(
                Import::Shape { .. } | Import::ConstantOfShape { .. } | Import::Range,
                _
            )
        );
        if generated || reads_computed || !value.is_float() {
            self.folded.computed.insert(out.clone());
            // The same node at a probe batch one larger: what differs follows the batch.
            let probe_dims = |n: &str| info.probe_dims(n);
            let probes = &self.folded.probes;
            let probe_constant = |n: &str| probes.get(n).or_else(|| self.constants.get(n));
            let probe = import.evaluate(label, &probe_constant, &probe_dims)?;
            if probe != value {
                self.folded.batch_dependent.insert(out.clone());
            }
            self.folded.probes.insert(out.clone(), probe);
        }
        info.dims.insert(out.clone(), value.dims.clone());
        self.constants.insert(out, value);
        Ok(1)
    }

    /// Re-validates and re-infers shapes after an edit (e.g. a replaced head). The Reshapes
    /// that fused ops replaced keep the targets import resolved (nothing infers them again).
    pub fn refresh_shapes(&mut self) -> Result<()> {
        let targets = &self.shapes.reshape_targets;
        let kept: Vec<_> = (self.fused_away.iter())
            .filter_map(|n| Some((n.label.clone(), targets.get(&n.label)?.clone())))
            .collect();
        self.shapes = infer_shapes(self)?;
        self.shapes.reshape_targets.extend(kept);
        Ok(())
    }

    /// The file's computation nodes: those that run, then those fused ops replaced.
    pub fn file_nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().chain(&self.fused_away)
    }
}

/// A node computed at import: an import-only op (with its inputs), or foldable arithmetic.
enum Folding<'p> {
    Import(Import, &'p [String]),
    Node(Node),
}

impl Folding<'_> {
    fn evaluate<'c>(
        &self,
        label: &str,
        constant: &dyn Fn(&str) -> Option<&'c Constant>,
        dims: &dyn Fn(&str) -> Option<Vec<usize>>,
    ) -> Result<Constant> {
        match self {
            Folding::Import(import, inputs) => {
                checked(import.evaluate(label, inputs, constant, dims)?, label)
            }
            Folding::Node(node) => evaluate(node, constant),
        }
    }
}

/// A parsed model: the validated graph plus the original protobuf (weights moved out), kept so
/// that an export can write back untouched nodes exactly as they were.
#[derive(Clone, Debug)]
pub struct OnnxModel {
    pub proto: ModelProto,
    pub graph: Graph,
    pub metadata: BTreeMap<String, String>,
}

impl OnnxModel {
    /// Reads a model file: a regular file (after following links) of at most
    /// [`MAX_FILE_BYTES`], checked before anything is read, with weights an exporter kept in
    /// a file beside it read in (see [`crate::external`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_proto(crate::external::read_model(path.as_ref())?)
    }

    /// Parses ONNX bytes. Takes ownership so the file buffer is freed before weights are
    /// decoded: peak memory stays near twice the file size.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        if bytes.is_empty() {
            return Err(OnnxError::Decode("the file is empty (0 bytes)".into()));
        }
        Self::from_proto(decode_proto(bytes)?)
    }

    pub fn from_proto(mut proto: ModelProto) -> Result<Self> {
        let opset = default_opset(&proto)?;
        let metadata = proto
            .metadata_props
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect();
        let graph_proto = proto.graph.as_mut().ok_or(OnnxError::NoGraph)?;
        let constants = take_initializers(graph_proto)?;
        let (input, output) = interface(graph_proto, &constants)?;
        let mut nodes = Vec::new();
        for (index, node) in graph_proto.node.iter().enumerate() {
            let label = if node.name.is_empty() {
                format!("#{index} {}", node.op_type)
            } else {
                node.name.clone()
            };
            let op = parse_op(node, &label, opset)?;
            nodes.push((node, label, op));
        }
        let sorted = topological_order(&nodes, &input.name, &constants)?;
        check_dropout_masks(&nodes, &output.name)?;
        let mut graph = Graph {
            opset,
            layout: input_layout(&nodes, &input.name),
            input,
            output,
            constants,
            nodes: Vec::with_capacity(sorted.len()),
            fused_away: Vec::new(),
            shapes: ShapeInfo::default(),
            folded: Folded::default(),
        };
        let mut info = ShapeInfo::start(&graph);
        let mut ambiguous = false;
        // Each node is taken out once, in execution order, so its parsed values move.
        let mut nodes: Vec<Option<_>> = nodes.into_iter().map(Some).collect();
        for index in sorted {
            let Some((proto_node, label, parsed)) = nodes[index].take() else {
                continue;
            };
            ambiguous |= graph.fold_or_infer(proto_node, &label, parsed, &mut info)? > 1;
        }
        let dims_of = |v: &str| info.dims.get(v).cloned();
        let lookups = (&graph.constants, &dims_of as _);
        crate::ops::chain::fuse_written_out(&mut graph.nodes, lookups, &mut graph.fused_away);
        check_outputs(&graph)?;
        crate::shapes_search::check_output_batched(&graph, &mut info);
        graph.shapes = info;
        if graph.shapes.fixed_batch.is_some() && ambiguous {
            // The first reading of some batch-1 Reshapes lost the batch: search the others.
            graph.shapes = infer_shapes(&graph)?;
        }
        let shapes = &graph.shapes;
        let dims_of = |v: &str| shapes.dims.get(v).cloned();
        let lookups = (&graph.constants, &dims_of as _);
        crate::ops::chain::fuse_packed_heads(&mut graph.nodes, lookups, &mut graph.fused_away);
        Ok(Self {
            proto,
            graph,
            metadata,
        })
    }
}

/// The initializers as constants (their payloads moved out of the proto).
fn take_initializers(graph: &mut tract_onnx::pb::GraphProto) -> Result<BTreeMap<String, Constant>> {
    let mut constants = BTreeMap::new();
    for init in &mut graph.initializer {
        if init.name.is_empty() {
            return Err(OnnxError::BadTensor {
                name: String::new(),
                reason: "an initializer has no name".into(),
            });
        }
        let c = take_constant(init)?;
        constants.insert(init.name.clone(), c);
    }
    Ok(constants)
}

/// Unique node names, an output that some node produces from the image, and layer weights
/// that are constants.
fn check_outputs(graph: &Graph) -> Result<()> {
    let (nodes, output) = (&graph.nodes, &graph.output.name);
    let labels: HashSet<&str> = nodes.iter().map(|n| n.label.as_str()).collect();
    if labels.len() != nodes.len() {
        return Err(OnnxError::BadInterface("two nodes share a name".into()));
    }
    let produced = nodes
        .iter()
        .flat_map(|n| n.outputs.iter().map(String::as_str))
        .chain(graph.constants.keys().map(String::as_str))
        .chain(std::iter::once(graph.input.name.as_str()))
        .any(|v| v == output);
    if !produced {
        return Err(OnnxError::BadInterface(format!(
            "output `{output}` is produced by no node"
        )));
    }
    let mut reached: HashSet<&str> = HashSet::from([graph.input.name.as_str()]);
    for n in nodes {
        if n.inputs.iter().any(|i| reached.contains(i.as_str())) {
            reached.extend(n.outputs.iter().map(String::as_str));
        }
    }
    check_weights_are_constant(nodes, &reached)?;
    if !reached.contains(output.as_str()) {
        return Err(OnnxError::BadInterface(format!(
            "output `{output}` is computed from constants only: it does not depend on the input image"
        )));
    }
    Ok(())
}

/// Decodes ONNX protobuf bytes. Decoding from a shared `Bytes` buffer lets prost copy each
/// weight once (a `&[u8]` source copies twice), so the peak is the file plus the model: 2x.
pub fn decode_proto(bytes: Vec<u8>) -> Result<ModelProto> {
    let shared = prost::bytes::Bytes::from(bytes);
    ModelProto::decode(shared).map_err(|e| OnnxError::Decode(e.to_string()))
}

fn default_opset(proto: &ModelProto) -> Result<i64> {
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(1);
    if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        return Err(OnnxError::Opset {
            found: opset,
            min: MIN_OPSET,
            max: MAX_OPSET,
        });
    }
    Ok(opset)
}

/// Layer weights (Conv, BatchNormalization, PRelu) must be constants: zoo trains them as
/// parameters, and their shapes fix the layer's. Computed from the image they would change
/// with every batch.
fn check_weights_are_constant(nodes: &[Node], from_image: &HashSet<&str>) -> Result<()> {
    for n in nodes {
        let layer = matches!(
            n.op,
            Op::Nn(Nn::Conv(_) | Nn::BatchNorm { .. })
                | Op::Activation(crate::ops::Activation::PRelu)
        );
        if !layer {
            continue;
        }
        if let Some(w) = n
            .inputs
            .iter()
            .skip(1)
            .find(|i| from_image.contains(i.as_str()))
        {
            return Err(OnnxError::BadInterface(format!(
                "node `{}` ({}) takes its weights `{w}` from the image; zoo needs layer weights as initializers",
                n.label,
                n.op.onnx_type()
            )));
        }
    }
    Ok(())
}

/// Dropout's mask output is a training-time value; zoo runs Dropout inference-style.
fn check_dropout_masks(nodes: &[(&NodeProto, String, Parsed)], output: &str) -> Result<()> {
    for (node, label, _) in nodes {
        let Some(mask) = node.output.get(1).filter(|m| !m.is_empty()) else {
            continue;
        };
        let used = mask == output || nodes.iter().any(|(n, _, _)| n.input.contains(mask));
        if node.op_type == "Dropout" && used {
            return Err(bad_node(
                label,
                "Dropout",
                "the dropout mask output is used; zoo supports inference-style Dropout only",
            ));
        }
    }
    Ok(())
}

fn single_output<'a>(node: &'a NodeProto, label: &str) -> Result<&'a str> {
    match node.output.as_slice() {
        [one] if !one.is_empty() => Ok(one),
        _ => Err(bad_node(
            label,
            &node.op_type,
            "expected exactly one output",
        )),
    }
}

/// Kahn's algorithm: ONNX requires sorted nodes, but a file that is not sorted still imports,
/// while cycles and reads of values nobody produces are errors.
fn topological_order(
    nodes: &[(&NodeProto, String, Parsed)],
    input: &str,
    constants: &BTreeMap<String, Constant>,
) -> Result<Vec<usize>> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, (node, label, _)) in nodes.iter().enumerate() {
        for out in node.output.iter().filter(|o| !o.is_empty()) {
            if out == input || constants.contains_key(out) || producer.insert(out, i).is_some() {
                return Err(bad_node(
                    label,
                    &node.op_type,
                    format!("output `{out}` is produced twice"),
                ));
            }
        }
    }
    let mut waiting = vec![0usize; nodes.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, (node, label, _)) in nodes.iter().enumerate() {
        for inp in node.input.iter().filter(|s| !s.is_empty()) {
            if inp == input || constants.contains_key(inp) {
                continue;
            }
            match producer.get(inp.as_str()) {
                Some(&p) => {
                    waiting[i] += 1;
                    dependents[p].push(i);
                }
                None => {
                    return Err(OnnxError::DanglingEdge {
                        node: label.clone(),
                        value: inp.clone(),
                    })
                }
            }
        }
    }
    let mut ready: Vec<usize> = (0..nodes.len())
        .rev()
        .filter(|&i| waiting[i] == 0)
        .collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop() {
        order.push(i);
        for &d in dependents[i].iter().rev() {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                ready.push(d);
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck = (0..nodes.len()).find(|&i| waiting[i] > 0).unwrap_or(0);
        return Err(OnnxError::Cycle(nodes[stuck].1.clone()));
    }
    Ok(order)
}
