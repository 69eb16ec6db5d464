//! Shared by the parity tests: where ../shared is, zoo against tract at the logits at batch 1
//! and 8, and the small-graph helpers of the op tests.
#![allow(dead_code)]

use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use prost::Message;
use zoo_net::Network;
use zoo_onnx::builder::{Attr, GraphBuilder, SeededRng};
use zoo_onnx::ops::Nn;
use zoo_onnx::pb::ModelProto;
use zoo_onnx::standin::{materialize_weights, upgrade_opset};
use zoo_onnx::OnnxModel;
use zoo_parity::{compare, expose_first_output, run_network, verify_outputs, TractEngine};

pub fn shared(path: &str) -> PathBuf {
    let root = std::env::var_os("ZOO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    root.join(path)
}

pub fn alexnet_standin(opset: i64) -> Vec<u8> {
    let light =
        std::fs::read(shared("models/light_bvlc_alexnet.onnx")).expect("../shared is present");
    let model = ModelProto::decode(light.as_slice()).unwrap();
    let model = materialize_weights(model, 42).unwrap();
    let model = if opset > 9 {
        upgrade_opset(model, opset).unwrap()
    } else {
        model
    };
    model.encode_to_vec()
}

/// Compared at the logits: the AlexNet stand-in's softmax saturates on these inputs.
pub fn check_parity(bytes: Vec<u8>, scale: f32, samples: usize) -> f64 {
    let onnx = OnnxModel::from_bytes(bytes.clone()).unwrap();
    let chw = onnx.graph.input_chw();
    let device = Default::default();
    let net = Network::<Flex>::from_model(onnx, &device);
    let logits = net.logits_value().to_string();
    let mut with_logits = ModelProto::decode(bytes.as_slice()).unwrap();
    expose_first_output(&mut with_logits, &logits);
    let tract = TractEngine::from_bytes(&with_logits.encode_to_vec(), chw, false).unwrap();
    let images = SeededRng::new(11).values(samples * chw.iter().product::<usize>(), scale);
    let mut worst = 0.0f64;
    for batch in [1, 8] {
        let ours = run_network(&net, &images, batch, &logits, &device).unwrap();
        let report = verify_outputs(&ours, &[&tract], &images, None, batch, 1e-4).unwrap();
        assert!(report.pass, "batch {batch}: {report:?}");
        assert_eq!(report.samples, samples);
        worst = worst.max(report.max_rel_diff);
    }
    worst
}

/// A light graph of ../shared/models/light materialised with seeded He-scaled weights (so
/// that the logits of the deep ones stay far from zero).
pub fn light_standin(name: &str) -> Vec<u8> {
    let bytes = std::fs::read(shared(&format!("models/light/light_{name}.onnx")))
        .expect("../shared is present");
    let model = ModelProto::decode(bytes.as_slice()).unwrap();
    zoo_onnx::standin::materialize_with_gain(model, 42, 2.0)
        .unwrap()
        .encode_to_vec()
}

/// Runs the model in burn at `batch` and in tract one image at a time; asserts agreement.
pub fn assert_parity(model: &ModelProto, batch: usize) -> f64 {
    let bytes = model.encode_to_vec();
    let onnx = OnnxModel::from_bytes(bytes.clone()).expect("import");
    let chw = onnx.graph.input_chw();
    let device = Default::default();
    let output = onnx.graph.output.name.clone();
    let tract = TractEngine::from_bytes(&bytes, chw, false).expect("tract loads the model");
    let mut rng = SeededRng::new(7);
    let images = rng.values(batch * chw.iter().product::<usize>(), 2.0);
    let reference = tract.run_batch(&images, 1).expect("tract runs");
    // On an autodiff backend the network is training, where dropout is active.
    let trains_differently = onnx
        .graph
        .nodes
        .iter()
        .any(|n| matches!(n.op, zoo_onnx::Op::Nn(Nn::Dropout { .. })));
    let fused = Network::<Flex>::from_model(onnx.clone(), &device);
    let mut runs = vec![(
        "flex",
        run_network(&fused, &images, batch, &output, &device),
    )];
    if !trains_differently {
        let generic = Network::<Autodiff<Flex>>::from_model(onnx, &device);
        runs.push((
            "autodiff",
            run_network(&generic, &images, batch, &output, &device),
        ));
    }
    let mut worst = 0.0f64;
    for (backend, ours) in runs {
        let ours = ours.expect("forward");
        let agreement = compare(&ours, &reference);
        assert!(
            agreement.max_rel_diff <= 1e-4 && agreement.top1_agreement == 1.0,
            "{backend} disagrees: {agreement:?}\nours[0]={:?}\ntract[0]={:?}",
            &ours[0][..ours[0].len().min(8)],
            &reference[0][..reference[0].len().min(8)]
        );
        worst = worst.max(agreement.max_rel_diff);
    }
    worst
}

pub fn input(b: &mut GraphBuilder, dims: [usize; 3]) {
    *b = GraphBuilder::new("x", &[Some(1), Some(dims[0]), Some(dims[1]), Some(dims[2])]);
}

pub fn weights(b: &mut GraphBuilder, rng: &mut SeededRng, name: &str, dims: &[usize]) {
    let n = dims.iter().product();
    b.init_f32(name, dims, rng.values(n, 0.5));
}

/// Wraps a body ending in value `last` (rank 4) with Flatten so outputs are [N, K].
pub fn finish(b: &mut GraphBuilder, last: &str, opset: i64) -> ModelProto {
    b.node(
        "flat",
        "Flatten",
        &[last],
        &["y"],
        vec![("axis", Attr::Int(1))],
    );
    b.output("y", &[None, None]);
    b.build(opset)
}

/// Gives an initializer the builder wrote as a vector its N-D shape.
pub fn set_dims(model: &mut ModelProto, name: &str, dims: &[i64]) {
    let graph = model.graph.as_mut().unwrap();
    let t = graph
        .initializer
        .iter_mut()
        .find(|t| t.name == name)
        .unwrap();
    t.dims = dims.to_vec();
}
