//! The zoo's own graphs from ../shared: the AlexNet stand-in (opset 9 and 12) and the real
//! MNIST CNN. Ignored by default (they need ../shared); `.ci/run` runs them when it exists.

use std::path::PathBuf;

use burn::backend::Flex;
use prost::Message;
use zoo_net::Network;
use zoo_onnx::builder::SeededRng;
use zoo_onnx::pb::ModelProto;
use zoo_onnx::standin::{materialize_weights, upgrade_opset};
use zoo_onnx::OnnxModel;
use zoo_parity::{expose_first_output, run_network, verify_outputs, TractEngine};

fn shared(path: &str) -> PathBuf {
    let root = std::env::var_os("ZOO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    root.join(path)
}

fn alexnet_standin(opset: i64) -> Vec<u8> {
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
fn check_parity(bytes: Vec<u8>, scale: f32, samples: usize) {
    let onnx = OnnxModel::from_bytes(bytes.clone()).unwrap();
    let chw = onnx.graph.input_chw();
    let device = Default::default();
    let net = Network::<Flex>::from_model(onnx, &device);
    let logits = net.logits_value().to_string();
    let mut with_logits = ModelProto::decode(bytes.as_slice()).unwrap();
    expose_first_output(&mut with_logits, &logits);
    let tract = TractEngine::from_bytes(&with_logits.encode_to_vec(), chw, false).unwrap();
    let images = SeededRng::new(11).values(samples * chw.iter().product::<usize>(), scale);
    for batch in [1, 8] {
        let ours = run_network(&net, &images, batch, &logits, &device).unwrap();
        let report = verify_outputs(&ours, &[&tract], &images, None, batch, 1e-4).unwrap();
        println!("batch {batch}: {}", serde_json::to_string(&report).unwrap());
        assert!(report.pass, "batch {batch}: {report:?}");
        assert_eq!(report.samples, samples);
    }
}

#[test]
#[ignore = "needs ../shared"]
fn alexnet_standin_opset9_matches_tract_at_batch_1_and_8() {
    check_parity(alexnet_standin(9), 100.0, 8);
}

#[test]
#[ignore = "needs ../shared"]
fn alexnet_standin_opset12_matches_tract_at_batch_1_and_8() {
    check_parity(alexnet_standin(12), 100.0, 8);
}

#[test]
#[ignore = "needs ../shared"]
fn mnist_cnn_matches_tract_at_batch_1_and_8() {
    let bytes = std::fs::read(shared("models/mnist-8.onnx")).unwrap();
    check_parity(bytes, 1.0, 16);
}

#[test]
#[ignore = "needs ../shared"]
fn alexnet_standin_layers_and_parameter_count() {
    let onnx = OnnxModel::from_bytes(alexnet_standin(12)).unwrap();
    let net = Network::<Flex>::from_model(onnx, &Default::default());
    let plan = net.plan();
    let names: Vec<&str> = plan.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    );
    assert_eq!(plan.total_params(), 60_965_224);
    let fc8 = plan.layer("fc8").unwrap();
    let dims: Vec<&[usize]> = fc8
        .params
        .iter()
        .map(|&p| plan.params[p].dims.as_slice())
        .collect();
    assert_eq!(dims, [&[1000, 4096][..], &[1000][..]]);
}

#[test]
#[ignore = "needs ../shared"]
fn mnist_cnn_layers_group_bias_adds() {
    let onnx = OnnxModel::load(shared("models/mnist-8.onnx")).unwrap();
    let net = Network::<Flex>::from_model(onnx, &Default::default());
    let plan = net.plan();
    let layers: Vec<(&str, Vec<&str>)> = plan
        .layers
        .iter()
        .map(|l| {
            (
                l.name.as_str(),
                l.params
                    .iter()
                    .map(|&p| plan.params[p].name.as_str())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        layers,
        [
            ("Convolution28", vec!["Parameter5", "Parameter6"]),
            ("Convolution110", vec!["Parameter87", "Parameter88"]),
            ("Times212", vec!["Parameter193", "Parameter194"]),
        ]
    );
    assert_eq!(plan.total_params(), 5994);
}
