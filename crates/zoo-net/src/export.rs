//! Writing the network back to ONNX: the original protobuf with every parameter's current
//! values (and any edited constant) as initializers. Untouched nodes keep their op types and
//! names; nodes that only produced a weight (`Constant`, `ConstantOfShape`) give way to the
//! initializer holding the trained values.

use burn::tensor::backend::Backend;
use zoo_onnx::builder::{typed_value_info, value_info};
use zoo_onnx::ops::Array;
use zoo_onnx::pb::{ModelProto, TensorProto};
use zoo_onnx::tensor::{f32_proto, i64_proto};
use zoo_onnx::ConstData;

use crate::network::Network;

impl<B: Backend> Network<B> {
    pub fn to_model_proto(&self) -> ModelProto {
        self.export_proto(false)
    }

    /// The model with a dynamic batch axis: the input and output get a symbolic `N`, and
    /// Reshape targets that keep the batch axis get -1 where the file had the fixed batch.
    pub fn to_model_proto_dynamic_batch(&self) -> ModelProto {
        self.export_proto(true)
    }

    fn export_proto(&self, dynamic_batch: bool) -> ModelProto {
        let plan = &self.plan;
        let mut proto = plan.proto.clone();
        let fresh = self.initializers(dynamic_batch);
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
        self.declare_interface(graph, dynamic_batch);
        refresh_value_info(plan, &mut graph.value_info, dynamic_batch);
        proto
    }

    /// The parameters' current values and the constants as initializers (shape arithmetic
    /// computed at import stays as nodes: it follows the batch at run time).
    fn initializers(&self, dynamic_batch: bool) -> Vec<TensorProto> {
        let plan = &self.plan;
        let mut fresh: Vec<TensorProto> = (self.param_values().into_iter())
            .map(|(name, dims, values)| f32_proto(&name, &dims, &values))
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
                ConstData::I64(v) if batch_shapes.contains(name) => {
                    let mut v = v.clone();
                    v[0] = -1;
                    i64_proto(name, &c.dims, &v)
                }
                ConstData::I64(v) => i64_proto(name, &c.dims, v),
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

/// Shape constants read only by Reshapes that keep the batch axis, whose first entry is the
/// file's fixed batch size: those become -1 in a dynamic-batch export.
fn batch_keeping_shapes(plan: &crate::plan::Plan) -> std::collections::HashSet<String> {
    use zoo_onnx::{Op, ReshapeTarget};
    let graph = &plan.graph;
    let mut keep = std::collections::HashSet::new();
    for node in &graph.nodes {
        let (Op::Array(Array::Reshape { .. }), Some(shape)) = (&node.op, node.input(1)) else {
            continue;
        };
        let keeps = matches!(
            graph.shapes.reshape_targets.get(&node.label),
            Some(ReshapeTarget::KeepBatch(_))
        );
        let first = graph
            .constants
            .get(shape)
            .and_then(|c| c.as_i64())
            .and_then(|v| v.first().copied());
        let only_readers_keep = graph.consumers(shape).all(|n| {
            matches!(n.op, Op::Array(Array::Reshape { .. }))
                && matches!(
                    graph.shapes.reshape_targets.get(&n.label),
                    Some(ReshapeTarget::KeepBatch(_))
                )
        });
        if keeps && only_readers_keep && first == Some(graph.shapes.declared_batch as i64) {
            keep.insert(shape.to_string());
        }
    }
    keep
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
    infos.retain(|v| shapes.of(&v.name).is_some() || plan.graph.constants.contains_key(&v.name));
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
            d[0] = None;
        }
        *v = value_info(&v.name, &d);
    }
}
