//! The zoo's own graphs from ../shared: the AlexNet stand-in (opset 9 and 12) and the real
//! MNIST CNN. Ignored by default (they need ../shared); `.ci/run` runs them when it exists.

mod support;

use burn::backend::Flex;
use support::{alexnet_standin, check_parity, shared};
use zoo_net::Network;
use zoo_onnx::OnnxModel;

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
