//! A replaced head survives export: the written ONNX re-imports with the new shapes and tract
//! computes what zoo computes (the MNIST zoo pattern: MatMul of a reshaped weight + bias Add,
//! and the Caffe pattern: Gemm with transB + Softmax).

use burn::backend::Flex;
use prost::Message;
use zoo_net::{replace_head, Network};
use zoo_onnx::builder::{Attr, GraphBuilder, SeededRng};
use zoo_onnx::OnnxModel;
use zoo_parity::{compare, run_network, TractEngine};

fn mnist_like() -> Vec<u8> {
    let mut rng = SeededRng::new(5);
    let mut b = GraphBuilder::new("x", &[Some(1), Some(2), Some(3), Some(4)]);
    b.init_i64("shape", &[1, 24]);
    b.init_f32("W", &[2, 3, 4, 10], rng.values(240, 0.5));
    b.init_i64("wshape", &[24, 10]);
    b.init_f32("bias", &[1, 10], rng.values(10, 0.5));
    b.node("r", "Reshape", &["x", "shape"], &["f"], vec![]);
    b.node("rw", "Reshape", &["W", "wshape"], &["w2"], vec![]);
    b.node("mm", "MatMul", &["f", "w2"], &["m"], vec![]);
    b.node("add", "Add", &["m", "bias"], &["y"], vec![]);
    b.output("y", &[Some(1), Some(10)]);
    b.build(8).encode_to_vec()
}

fn caffe_like() -> Vec<u8> {
    let mut rng = SeededRng::new(6);
    let mut b = GraphBuilder::new("data", &[Some(1), Some(2), Some(3), Some(4)]);
    b.init_i64("shape", &[1, 24]);
    b.init_f32("fc8_w_0", &[1000, 24], rng.values(24000, 0.3));
    b.init_f32("fc8_b_0", &[1000], rng.values(1000, 0.1));
    b.node("n0", "Reshape", &["data", "shape"], &["f"], vec![]);
    b.node(
        "n1",
        "Gemm",
        &["f", "fc8_w_0", "fc8_b_0"],
        &["g"],
        vec![("transB", Attr::Int(1))],
    );
    b.node("n2", "Softmax", &["g"], &["prob"], vec![]);
    b.output("prob", &[Some(1), Some(1000)]);
    b.build(9).encode_to_vec()
}

fn roundtrip(bytes: Vec<u8>, head: &str, classes: usize) -> zoo_net::HeadChange {
    let mut model = OnnxModel::from_bytes(bytes).unwrap();
    let change = replace_head(&mut model, head, classes, 3).unwrap();
    assert_eq!(change.new_outputs, classes);
    let device = Default::default();
    let net = Network::<Flex>::from_model(model, &device);
    let proto = net.to_model_proto();
    let problems = zoo_onnx::check::declared_shape_mismatches(&proto).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    // Written tensor by tensor (how runs write their ONNX files), it decodes to the same
    // model, the metadata edit included.
    let edit = |p: &mut zoo_onnx::pb::ModelProto| p.doc_string = "written as encoded".into();
    let mut streamed = Vec::new();
    net.write_model_proto(edit, &mut streamed).unwrap();
    let mut expected = proto.clone();
    edit(&mut expected);
    let decoded = zoo_onnx::pb::ModelProto::decode(streamed.as_slice()).unwrap();
    assert!(
        decoded == expected,
        "the streamed file decodes to another model"
    );
    let exported = proto.encode_to_vec();
    let again = OnnxModel::from_bytes(exported.clone()).unwrap();
    let chw = again.graph.input_chw();
    let reimported = Network::<Flex>::from_model(again, &device);
    assert_eq!(net.param_values(), reimported.param_values());
    let images = SeededRng::new(2).values(5 * chw.iter().product::<usize>(), 1.0);
    let ours = run_network(&net, &images, 5, &net.plan().graph.output.name, &device).unwrap();
    assert_eq!(ours[0].len(), classes);
    let tract = TractEngine::from_bytes(&exported, chw, false)
        .unwrap()
        .run_batch(&images, 1)
        .unwrap();
    let a = compare(&ours, &tract);
    assert!(a.max_rel_diff <= 1e-5 && a.top1_agreement == 1.0, "{a:?}");
    change
}

fn conv_head(kind: &str, classes_before: usize) -> Vec<u8> {
    zoo_onnx::builder::head_shape_classifier(kind, classes_before).encode_to_vec()
}

#[test]
fn conv_heads_of_every_shape_are_replaced_with_every_declared_shape_updated() {
    for kind in ["conv-flatten", "conv-softmax", "pool-conv"] {
        let head = if kind == "pool-conv" { "fc6" } else { "conv10" };
        let change = roundtrip(conv_head(kind, 12), head, 3);
        assert_eq!((change.old_outputs, change.new_outputs), (12, 3), "{kind}");
    }
}

#[test]
fn a_1001_class_head_with_background_becomes_n_outputs() {
    let change = roundtrip(conv_head("gemm-1001", 1001), "logits", 4);
    assert_eq!(change.old_outputs, 1001);
    assert!(
        change.note().unwrap().contains("background"),
        "{:?}",
        change.note()
    );
}

#[test]
fn matmul_head_behind_a_reshape_is_replaced_and_exported() {
    roundtrip(mnist_like(), "mm", 3);
}

#[test]
fn gemm_head_before_softmax_is_replaced_and_exported() {
    roundtrip(caffe_like(), "fc8", 5);
}

#[test]
fn unknown_or_unsuitable_heads_are_errors() {
    let mut model = OnnxModel::from_bytes(caffe_like()).unwrap();
    let err = replace_head(&mut model, "fc9", 5, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("fc9") && err.contains("fc8"), "{err}");
    let err = replace_head(&mut model, "fc8", 1, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 2 classes"), "{err}");
}

#[test]
fn dynamic_batch_export_runs_at_batch_7_in_tract() {
    for (bytes, head) in [(mnist_like(), "mm"), (caffe_like(), "fc8")] {
        let mut model = OnnxModel::from_bytes(bytes).unwrap();
        replace_head(&mut model, head, 4, 1).unwrap();
        let device = Default::default();
        let net = Network::<Flex>::from_model(model, &device);
        let exported = net.to_model_proto_dynamic_batch().encode_to_vec();
        let again = OnnxModel::from_bytes(exported.clone()).unwrap();
        assert_eq!(again.graph.input.dims[0], None, "{head}: symbolic batch");
        assert_eq!(again.graph.output.dims, [None, Some(4)]);
        let chw = again.graph.input_chw();
        let images = SeededRng::new(4).values(7 * 24, 1.0);
        let ours: Vec<f32> = run_network(&net, &images, 7, &net.plan().graph.output.name, &device)
            .unwrap()
            .concat();
        // tract with a symbolic batch, run 7 at a time, proves the batch axis is dynamic.
        let tract = TractEngine::from_bytes(&exported, chw, true).unwrap();
        assert_eq!(tract.effective_batch(7), 7);
        let theirs: Vec<f32> = tract.run_batch(&images, 7).unwrap().concat();
        let diff = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert_eq!(ours.len(), theirs.len());
        assert!(diff < 1e-5, "{head}: {diff}");
    }
}
