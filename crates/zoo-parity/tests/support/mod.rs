//! Shared by the model-level parity tests: where ../shared is, and zoo against tract at the
//! logits at batch 1 and 8.
#![allow(dead_code)]

use std::path::PathBuf;

use burn::backend::Flex;
use prost::Message;
use zoo_net::Network;
use zoo_onnx::builder::SeededRng;
use zoo_onnx::pb::ModelProto;
use zoo_onnx::standin::{materialize_weights, upgrade_opset};
use zoo_onnx::OnnxModel;
use zoo_parity::{expose_first_output, run_network, verify_outputs, TractEngine};

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
