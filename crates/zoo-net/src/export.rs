//! Writing the network back to ONNX: the original protobuf with every parameter's current
//! values (and any edited constant) as initializers. Untouched nodes keep their op types and
//! names; nodes that only produced a weight (`Constant`, `ConstantOfShape`) give way to the
//! initializer holding the trained values.

use burn::tensor::backend::Backend;
use zoo_onnx::builder::{typed_value_info, value_info};
use zoo_onnx::ops::Array;
use zoo_onnx::pb::{GraphProto, ModelProto, NodeProto, TensorProto};
use zoo_onnx::tensor::{f32_proto, i64_proto};
use zoo_onnx::ConstData;

use crate::network::Network;

impl<B: Backend> Network<B> {
    pub fn to_model_proto(&self) -> ModelProto {
        self.export_proto(false, true)
    }

    /// [`to_model_proto`](Self::to_model_proto), changed by `edit` (metadata), written to `out`
    /// as it is encoded: every parameter's values are fetched and written one tensor at a time,
    /// so neither a copy of all the weights nor the encoded file sits in memory (AlexNet's were
    /// 244 MB each). It decodes to the same model; the initializers follow the graph's other
    /// fields, which protobuf allows.
    pub fn write_model_proto(
        &self,
        edit: impl FnOnce(&mut ModelProto),
        out: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        use prost::Message;
        let mut proto = self.export_proto(false, false);
        edit(&mut proto);
        let mut graph = proto.graph.take().unwrap_or_default();
        let initializers = std::mem::take(&mut graph.initializer);
        let param_of: std::collections::HashMap<&str, usize> = (self.plan.params.iter())
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        let pieces: Vec<Initializer> = initializers
            .iter()
            .map(|t| {
                let param = param_of
                    .get(t.name.as_str())
                    .filter(|_| t.raw_data.is_empty());
                Initializer {
                    head: t.encode_to_vec(),
                    param: param.map(|&i| (i, 4 * self.plan.params[i].numel())),
                }
            })
            .collect();
        let rest = graph.encode_to_vec();
        let graph_len = rest.len() + pieces.iter().map(|p| field_len(p.len())).sum::<usize>();
        out.write_all(&proto.encode_to_vec())?;
        write_key_and_len(out, GRAPH_FIELD, graph_len)?;
        out.write_all(&rest)?;
        for piece in &pieces {
            write_key_and_len(out, INITIALIZER_FIELD, piece.len())?;
            out.write_all(&piece.head)?;
            if let Some((param, bytes)) = piece.param {
                write_key_and_len(out, RAW_DATA_FIELD, bytes)?;
                let values = self.param_value(param);
                let mut block = Vec::with_capacity(1 << 20);
                for chunk in values.chunks(1 << 18) {
                    block.clear();
                    block.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
                    out.write_all(&block)?;
                }
            }
        }
        Ok(())
    }

    /// The model with a dynamic batch axis: the input and output get a symbolic `N`, and
    /// Reshape targets that keep the batch axis get -1 where the file had the fixed batch.
    pub fn to_model_proto_dynamic_batch(&self) -> ModelProto {
        self.export_proto(true, true)
    }

    /// The model; without `values`, the parameters' initializers carry no data (their values
    /// are written by [`write_model_proto`](Self::write_model_proto)).
    fn export_proto(&self, dynamic_batch: bool, values: bool) -> ModelProto {
        let plan = &self.plan;
        let mut proto = plan.proto.clone();
        let fresh = self.initializers(dynamic_batch, values);
        let graph = proto.graph.get_or_insert_with(Default::default);
        let fresh_names: std::collections::HashSet<String> =
            fresh.iter().map(|t| t.name.clone()).collect();
        // Nodes whose value is now an initializer give way to it: constant nodes, and an
        // Identity of a weight (folded into a copy at import).
        graph
            .node
            .retain(|n| !n.output.iter().all(|o| fresh_names.contains(o)));
        let still_read: std::collections::HashSet<&String> =
            graph.node.iter().flat_map(|n| n.input.iter()).collect();
        let output = &plan.graph.output.name;
        let fresh: Vec<TensorProto> = fresh
            .into_iter()
            .filter(|t| still_read.contains(&t.name) || t.name == *output)
            .collect();
        // Initializers listed as graph inputs (IR < 4 files) must show their current shapes.
        let dims_of: std::collections::HashMap<&str, (Vec<Option<usize>>, i32)> = fresh
            .iter()
            .map(|t| {
                let dims = t.dims.iter().map(|&d| Some(d as usize)).collect();
                (t.name.as_str(), (dims, t.data_type))
            })
            .collect();
        graph
            .input
            .retain(|i| i.name == plan.graph.input.name || dims_of.contains_key(i.name.as_str()));
        for input in graph.input.iter_mut() {
            if let Some((d, elem_type)) = dims_of.get(input.name.as_str()) {
                *input = typed_value_info(&input.name, d, *elem_type);
            }
        }
        graph.initializer = fresh;
        if dynamic_batch {
            expand_broadcast_parts(plan, graph);
            rewire_baked_targets(plan, graph);
        }
        self.declare_interface(graph, dynamic_batch);
        refresh_value_info(plan, &mut graph.value_info, dynamic_batch);
        proto
    }

    /// The parameters' current values and the constants as initializers (shape arithmetic
    /// computed at import stays as nodes: it follows the batch at run time).
    fn initializers(&self, dynamic_batch: bool, values: bool) -> Vec<TensorProto> {
        let plan = &self.plan;
        let mut fresh: Vec<TensorProto> = (plan.params.iter().enumerate())
            .map(|(i, p)| match values {
                true => f32_proto(&p.name, &p.dims, &self.param_value(i)),
                false => f32_proto(&p.name, &p.dims, &[]),
            })
            .collect();
        let batch_shapes = if dynamic_batch {
            batch_keeping_shapes(plan)
        } else {
            Default::default()
        };
        let constants = plan
            .graph
            .constants
            .iter()
            .filter(|(name, _)| !plan.graph.folded.computed.contains(*name));
        for (name, c) in constants {
            fresh.push(match &c.data {
                ConstData::F32(v) => f32_proto(name, &c.dims, v),
                ConstData::I64(v) => match batch_shapes.get(name) {
                    Some(dynamic) => i64_proto(name, &c.dims, dynamic),
                    None => i64_proto(name, &c.dims, v),
                },
            });
        }
        fresh
    }

    /// The graph's input and output with their dims; the batch symbolic in a dynamic export.
    fn declare_interface(&self, graph: &mut zoo_onnx::pb::GraphProto, dynamic_batch: bool) {
        let spec = &self.plan.graph;
        let mut out_dims = spec.output.dims.clone();
        if dynamic_batch && spec.shapes.batched.contains(&spec.output.name) {
            if let Some(d) = out_dims.first_mut() {
                *d = None;
            }
            let mut in_dims = spec.input.dims.clone();
            in_dims[0] = None;
            for input in graph.input.iter_mut().filter(|i| i.name == spec.input.name) {
                *input = value_info(&input.name, &in_dims);
            }
        }
        graph.output = vec![value_info(&spec.output.name, &out_dims)];
    }
}

/// One initializer as [`Network::write_model_proto`] writes it: its encoded fields but its
/// values, and for a parameter the plan index and byte count of the values streamed after them.
struct Initializer {
    head: Vec<u8>,
    param: Option<(usize, usize)>,
}

impl Initializer {
    /// The encoded `TensorProto`'s length, values included.
    fn len(&self) -> usize {
        self.head.len() + self.param.map_or(0, |(_, bytes)| field_len(bytes))
    }
}

/// Field numbers of the ONNX protos written by hand: `ModelProto.graph`,
/// `GraphProto.initializer`, `TensorProto.raw_data` (all length-delimited).
const GRAPH_FIELD: u32 = 7;
const INITIALIZER_FIELD: u32 = 5;
const RAW_DATA_FIELD: u32 = 9;

/// Bytes of a length-delimited field (key, length, payload) whose payload is `len` bytes; every
/// key here is one byte (field numbers below 16).
fn field_len(len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

fn write_key_and_len(out: &mut dyn std::io::Write, field: u32, len: usize) -> std::io::Result<()> {
    let mut bytes = vec![(field << 3 | 2) as u8];
    prost::encoding::encode_varint(len as u64, &mut bytes);
    out.write_all(&bytes)
}

/// Shape constants read only by Reshapes that keep the batch axis, rewritten for a
/// dynamic-batch export: -1 on the batch axis (the batch, or a multiple of it, as zoo runs
/// them) and the resolved sizes elsewhere (a second -1 or a 0 would be ambiguous beside it).
fn batch_keeping_shapes(plan: &crate::plan::Plan) -> std::collections::HashMap<String, Vec<i64>> {
    use zoo_onnx::{Op, ReshapeTarget};
    let graph = &plan.graph;
    let target = |n: &zoo_onnx::Node| match graph.shapes.reshape_targets.get(&n.label) {
        Some(ReshapeTarget::Batch { dims, axis })
            if matches!(n.op, Op::Array(Array::Reshape { .. })) =>
        {
            Some(batch_free_target(dims, *axis))
        }
        _ => None,
    };
    let mut keep = std::collections::HashMap::new();
    for node in graph.file_nodes() {
        let (Some(values), Some(shape)) = (target(node), node.input(1)) else {
            continue;
        };
        let is_constant = graph
            .constants
            .get(shape)
            .is_some_and(|c| c.as_i64().is_some());
        let only_readers_agree = graph
            .file_nodes()
            .filter(|n| n.inputs.iter().any(|i| i == shape))
            .all(|n| target(n).as_ref() == Some(&values));
        if is_constant && only_readers_agree {
            keep.insert(shape.to_string(), values);
        }
    }
    keep
}

/// A Reshape target with -1 where the batch is, for runtimes that infer it.
fn batch_free_target(dims: &[usize], axis: usize) -> Vec<i64> {
    (0..dims.len())
        .map(|j| if j == axis { -1 } else { dims[j] as i64 })
        .collect()
}

/// Intermediate shape annotations after a head change: each float value zoo knows is written
/// with its current dims (a symbolic batch where the export has one); annotations of values
/// the graph no longer has are dropped.
fn refresh_value_info(
    plan: &crate::plan::Plan,
    infos: &mut Vec<zoo_onnx::pb::ValueInfoProto>,
    dynamic_batch: bool,
) {
    let shapes = &plan.graph.shapes;
    let float = zoo_onnx::pb::tensor_proto::DataType::Float as i32;
    // Where a value holds the batch as a factor of an axis (`[L * N, C]`) no dim says so:
    // its annotation is dropped rather than written wrong.
    let batch_is_a_factor = |name: &str| {
        let axis = shapes.batch_axes.get(name).copied().unwrap_or(0);
        let whole = shapes.of(name).and_then(|d| d.get(axis)) == Some(&shapes.declared_batch);
        dynamic_batch && shapes.batched.contains(name) && !whole
    };
    infos.retain(|v| {
        (shapes.of(&v.name).is_some() || plan.graph.constants.contains_key(&v.name))
            && !batch_is_a_factor(&v.name)
    });
    for v in infos.iter_mut() {
        let is_float = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(zoo_onnx::pb::type_proto::Value::TensorType(t)) => t.elem_type == float,
            _ => false,
        };
        if !is_float || plan.graph.constants.contains_key(&v.name) {
            continue;
        }
        let Some(dims) = shapes.of(&v.name) else {
            continue;
        };
        let mut d: Vec<Option<usize>> = dims.iter().map(|&x| Some(x)).collect();
        if dynamic_batch && shapes.batched.contains(&v.name) {
            d[shapes.batch_axes.get(&v.name).copied().unwrap_or(0)] = None;
        }
        *v = value_info(&v.name, &d);
    }
}

/// Concat parts that zoo repeats along the batch at run time (a class token a fixed-batch
/// export expanded to batch 1) get an explicit `Expand` to the batch of a batched part, so
/// that other runtimes run the dynamic-batch file at any batch:
/// `Expand(part, Concat(Gather(Shape(batched), [0]), part_dims[1..]))`.
fn expand_broadcast_parts(plan: &crate::plan::Plan, graph: &mut GraphProto) {
    use zoo_onnx::Op;
    let shapes = &plan.graph.shapes;
    for node in &plan.graph.nodes {
        let is_concat = matches!(node.op, Op::Array(Array::Concat { .. }));
        if !is_concat || !shapes.batch_rewrites.contains(&node.label) {
            continue;
        }
        let Some(batched) = node.inputs.iter().find(|i| shapes.batched.contains(*i)) else {
            continue;
        };
        let Some(at) = graph.node.iter().position(|n| n.output == node.outputs) else {
            continue;
        };
        let mut added: Vec<NodeProto> = Vec::new();
        let mut inputs = graph.node[at].input.clone();
        for (k, part) in inputs.iter_mut().enumerate() {
            let Some(dims) = shapes.of(part).filter(|_| !shapes.batched.contains(part)) else {
                continue;
            };
            let base = format!("zoo_batch/{}/{k}", node.label);
            let rest: Vec<i64> = dims[1..].iter().map(|&d| d as i64).collect();
            graph
                .initializer
                .push(i64_proto(&format!("{base}/first"), &[1], &[0]));
            graph
                .initializer
                .push(i64_proto(&format!("{base}/rest"), &[rest.len()], &rest));
            let step = |op: &str, ins: Vec<String>, out: &str, attribute| NodeProto {
                op_type: op.to_string(),
                name: format!("{base}/{op}"),
                input: ins,
                output: vec![out.to_string()],
                attribute,
                ..Default::default()
            };
            let axis0 = vec![zoo_onnx::builder::attr(
                "axis",
                zoo_onnx::builder::Attr::Int(0),
            )];
            added.push(step(
                "Shape",
                vec![batched.clone()],
                &format!("{base}/shape"),
                vec![],
            ));
            added.push(step(
                "Gather",
                vec![format!("{base}/shape"), format!("{base}/first")],
                &format!("{base}/batch"),
                axis0.clone(),
            ));
            added.push(step(
                "Concat",
                vec![format!("{base}/batch"), format!("{base}/rest")],
                &format!("{base}/target"),
                axis0,
            ));
            let expanded = format!("{base}/expanded");
            added.push(step(
                "Expand",
                vec![part.clone(), format!("{base}/target")],
                &expanded,
                vec![],
            ));
            *part = expanded;
        }
        graph.node[at].input = inputs;
        graph.node.splice(at..at, added);
    }
}

/// Reshape targets computed by shape arithmetic that baked the batch in (a fixed-batch
/// export's `x.reshape(B, ...)` with `B` folded to 1): the Reshape reads a fresh target
/// `[-1, rest...]` instead, so the dynamic-batch file follows the batch in other runtimes.
fn rewire_baked_targets(plan: &crate::plan::Plan, graph: &mut GraphProto) {
    use zoo_onnx::{Op, ReshapeTarget};
    let (shapes, folded) = (&plan.graph.shapes, &plan.graph.folded);
    for node in plan.graph.file_nodes() {
        let (Op::Array(Array::Reshape { .. }), Some(target)) = (&node.op, node.input(1)) else {
            continue;
        };
        let Some(ReshapeTarget::Batch { dims, axis }) = shapes.reshape_targets.get(&node.label)
        else {
            continue;
        };
        if !folded.computed.contains(target) || folded.batch_dependent.contains(target) {
            continue;
        }
        let Some(proto_node) = graph.node.iter_mut().find(|n| n.output == node.outputs) else {
            continue;
        };
        let name = format!("zoo_batch/{}/shape", node.label);
        let values = batch_free_target(dims, *axis);
        proto_node.input[1] = name.clone();
        graph
            .initializer
            .push(i64_proto(&name, &[values.len()], &values));
    }
}
