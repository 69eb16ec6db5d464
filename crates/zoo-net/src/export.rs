//! Writing the network back to ONNX: the original protobuf with every parameter's current
//! values (and any edited constant) as initializers. Untouched nodes keep their op types and
//! names; nodes that only produced a weight (`Constant`, `ConstantOfShape`) give way to the
//! initializer holding the trained values.

use burn::tensor::backend::Backend;
use zoo_onnx::pb::{ModelProto, TensorProto};
use zoo_onnx::tensor::{f32_proto, i64_proto};
use zoo_onnx::{builder::value_info, ConstData};

use crate::network::Network;

impl<B: Backend> Network<B> {
    pub fn to_model_proto(&self) -> ModelProto {
        let plan = &self.plan;
        let mut proto = plan.proto.clone();
        let mut fresh: Vec<TensorProto> = Vec::new();
        for (name, dims, values) in self.param_values() {
            fresh.push(f32_proto(&name, &dims, &values));
        }
        for (name, c) in &plan.graph.constants {
            fresh.push(match &c.data {
                ConstData::F32(v) => f32_proto(name, &c.dims, v),
                ConstData::I64(v) => i64_proto(name, &c.dims, v),
            });
        }
        let graph = proto.graph.get_or_insert_with(Default::default);
        let fresh_names: std::collections::HashSet<String> =
            fresh.iter().map(|t| t.name.clone()).collect();
        // Keep constant nodes only when their value is not now an initializer.
        graph.node.retain(|n| {
            !(matches!(n.op_type.as_str(), "Constant" | "ConstantOfShape")
                && n.output.iter().all(|o| fresh_names.contains(o)))
        });
        let still_read: std::collections::HashSet<&String> =
            graph.node.iter().flat_map(|n| n.input.iter()).collect();
        let keep: std::collections::HashSet<String> = fresh
            .iter()
            .map(|t| t.name.clone())
            .filter(|n| still_read.contains(n) || *n == plan.graph.output.name)
            .collect();
        fresh.retain(|t| keep.contains(&t.name));
        // Initializers listed as graph inputs (IR < 4 files) must show their current shapes.
        let dims_of: std::collections::HashMap<&str, Vec<Option<usize>>> = fresh
            .iter()
            .map(|t| {
                (
                    t.name.as_str(),
                    t.dims.iter().map(|&d| Some(d as usize)).collect(),
                )
            })
            .collect();
        graph
            .input
            .retain(|i| i.name == plan.graph.input.name || dims_of.contains_key(i.name.as_str()));
        for input in graph.input.iter_mut() {
            if let Some(d) = dims_of.get(input.name.as_str()) {
                *input = value_info(&input.name, d);
            }
        }
        graph.initializer = fresh;
        graph.output = vec![value_info(&plan.graph.output.name, &plan.graph.output.dims)];
        // Intermediate shape annotations may be stale after a head change; they are optional.
        graph.value_info.clear();
        proto
    }
}
