//! Builds ONNX models in code (through the protobuf types, never by hand-written bytes):
//! used by tests, fixture scripts and the stand-in materialiser.

use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use crate::tensor::{f32_proto, i64_proto};

/// An attribute value for [`GraphBuilder::node`].
#[derive(Clone, Debug)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Str(&'static str),
}

pub fn attr(name: &str, value: Attr) -> AttributeProto {
    let mut a = AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    match value {
        Attr::Int(i) => {
            a.i = i;
            a.r#type = AttributeType::Int as i32;
        }
        Attr::Float(f) => {
            a.f = f;
            a.r#type = AttributeType::Float as i32;
        }
        Attr::Ints(v) => {
            a.ints = v;
            a.r#type = AttributeType::Ints as i32;
        }
        Attr::Str(s) => {
            a.s = s.as_bytes().to_vec();
            a.r#type = AttributeType::String as i32;
        }
    }
    a
}

/// A float tensor value description; `None` dims are symbolic (`N`).
pub fn value_info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    typed_value_info(name, dims, DataType::Float as i32)
}

/// A tensor value description of any element type (`TensorProto` data type code).
pub fn typed_value_info(name: &str, dims: &[Option<usize>], elem_type: i32) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v as i64),
                None => dimension::Value::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Accumulates nodes and initializers of a single-input, single-output graph.
#[derive(Default, Debug, Clone)]
pub struct GraphBuilder {
    pub graph: GraphProto,
}

impl GraphBuilder {
    pub fn new(input: &str, dims: &[Option<usize>]) -> Self {
        let mut graph = GraphProto {
            name: "zoo".into(),
            ..Default::default()
        };
        graph.input.push(value_info(input, dims));
        Self { graph }
    }

    pub fn init_f32(&mut self, name: &str, dims: &[usize], values: Vec<f32>) -> &mut Self {
        assert_eq!(dims.iter().product::<usize>(), values.len(), "{name}");
        self.graph.initializer.push(f32_proto(name, dims, &values));
        self
    }

    pub fn init_i64(&mut self, name: &str, values: &[i64]) -> &mut Self {
        self.graph
            .initializer
            .push(i64_proto(name, &[values.len()], values));
        self
    }

    pub fn node(
        &mut self,
        name: &str,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<(&str, Attr)>,
    ) -> &mut Self {
        self.graph.node.push(NodeProto {
            name: name.to_string(),
            op_type: op.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs.into_iter().map(|(n, v)| attr(n, v)).collect(),
            ..Default::default()
        });
        self
    }

    pub fn output(&mut self, name: &str, dims: &[Option<usize>]) -> &mut Self {
        self.graph.output.push(value_info(name, dims));
        self
    }

    pub fn build(&self, opset: i64) -> ModelProto {
        ModelProto {
            ir_version: if opset >= 13 { 7 } else { 4 },
            producer_name: "zoo".into(),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: opset,
            }],
            graph: Some(self.graph.clone()),
            ..Default::default()
        }
    }
}

/// A deterministic generator (SplitMix64) for seeded test weights and inputs: stable across
/// crate versions, so fixtures and reported numbers are reproducible.
#[derive(Clone, Debug)]
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn symmetric(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn values(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.symmetric() * scale).collect()
    }
}

/// A small classifier whose head has one of the shapes the zoo's files use: `gemm-1001` (a
/// fully connected head, 1001 outputs with output 0 = background as in TF/TFLite files),
/// `conv-flatten` (Conv -> Relu -> GlobalAveragePool -> Flatten, torchvision SqueezeNet),
/// `conv-softmax` (the same ending in Softmax with an [N, C, 1, 1] output, SqueezeNet 1.0
/// Caffe) and `pool-conv` (GlobalAveragePool -> Conv, [N, C, 1, 1] logits, DenseNet Caffe2).
pub fn head_shape_classifier(kind: &str, outputs: usize) -> ModelProto {
    let mut rng = SeededRng::new(31);
    let mut b = GraphBuilder::new("data", &[Some(1), Some(3), Some(12), Some(12)]);
    b.init_f32("conv1_w_0", &[8, 3, 3, 3], rng.values(216, 0.3));
    b.init_f32("conv1_b_0", &[8], rng.values(8, 0.1));
    b.node(
        "c1",
        "Conv",
        &["data", "conv1_w_0", "conv1_b_0"],
        &["c"],
        vec![
            ("strides", Attr::Ints(vec![2, 2])),
            ("pads", Attr::Ints(vec![1, 1, 1, 1])),
        ],
    );
    b.node("r1", "Relu", &["c"], &["r"], vec![]);
    let head_in = if kind == "gemm-1001" || kind == "pool-conv" {
        b.node("gap", "GlobalAveragePool", &["r"], &["g"], vec![]);
        "g"
    } else {
        "r"
    };
    let out_dims = match kind {
        "gemm-1001" => gemm_head(&mut b, &mut rng, head_in, outputs),
        "pool-conv" => {
            b.init_f32("fc6_w_0", &[outputs, 8, 1, 1], rng.values(outputs * 8, 0.3));
            b.init_f32("fc6_b_0", &[outputs], rng.values(outputs, 0.1));
            b.node(
                "fc6",
                "Conv",
                &[head_in, "fc6_w_0", "fc6_b_0"],
                &["y"],
                vec![],
            );
            vec![Some(1), Some(outputs), Some(1), Some(1)]
        }
        _ => conv_head(&mut b, &mut rng, head_in, outputs, kind == "conv-flatten"),
    };
    b.output("y", &out_dims);
    // An annotation of the pooled value, as exporters write them: stale once a Conv head
    // before the pooling changes its class count.
    if let Some(pooled) = b.graph.node.iter().find(|n| n.name == "gap") {
        let dims = if head_in == "g" { 8 } else { outputs };
        let name = pooled.output[0].clone();
        b.graph
            .value_info
            .push(value_info(&name, &[Some(1), Some(dims), Some(1), Some(1)]));
    }
    b.build(9)
}

/// `head_shape_classifier`'s fully connected head: Flatten, then Gemm to `outputs`.
fn gemm_head(
    b: &mut GraphBuilder,
    rng: &mut SeededRng,
    head_in: &str,
    outputs: usize,
) -> Vec<Option<usize>> {
    b.init_f32("logits_w_0", &[outputs, 8], rng.values(outputs * 8, 0.3));
    b.init_f32("logits_b_0", &[outputs], rng.values(outputs, 0.1));
    b.node(
        "flat",
        "Flatten",
        &[head_in],
        &["f"],
        vec![("axis", Attr::Int(1))],
    );
    let trans_b = vec![("transB", Attr::Int(1))];
    b.node(
        "fc",
        "Gemm",
        &["f", "logits_w_0", "logits_b_0"],
        &["y"],
        trans_b,
    );
    vec![Some(1), Some(outputs)]
}

/// `head_shape_classifier`'s SqueezeNet-style head: 1x1 conv, ReLU, global pooling, then
/// Flatten or Softmax.
fn conv_head(
    b: &mut GraphBuilder,
    rng: &mut SeededRng,
    head_in: &str,
    outputs: usize,
    flatten: bool,
) -> Vec<Option<usize>> {
    b.init_f32(
        "conv10_w_0",
        &[outputs, 8, 1, 1],
        rng.values(outputs * 8, 0.3),
    );
    b.init_f32("conv10_b_0", &[outputs], rng.values(outputs, 0.1));
    b.node(
        "c10",
        "Conv",
        &[head_in, "conv10_w_0", "conv10_b_0"],
        &["h"],
        vec![],
    );
    b.node("r10", "Relu", &["h"], &["hr"], vec![]);
    b.node("gap", "GlobalAveragePool", &["hr"], &["g"], vec![]);
    if flatten {
        b.node(
            "flat",
            "Flatten",
            &["g"],
            &["y"],
            vec![("axis", Attr::Int(1))],
        );
        vec![Some(1), Some(outputs)]
    } else {
        b.node("sm", "Softmax", &["g"], &["y"], vec![]);
        vec![Some(1), Some(outputs), Some(1), Some(1)]
    }
}
