//! The imported network trains: one SGD step changes trainable weights, leaves frozen ones
//! bit-identical, and lowers the loss on a fixed batch.

use burn::backend::{Autodiff, Flex};
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use prost::Message;
use zoo_net::Network;
use zoo_onnx::builder::{Attr, GraphBuilder, SeededRng};
use zoo_onnx::OnnxModel;

type B = Autodiff<Flex>;

fn tiny_classifier() -> OnnxModel {
    let mut rng = SeededRng::new(9);
    let mut b = GraphBuilder::new("x", &[Some(1), Some(1), Some(6), Some(5)]);
    b.init_f32("conv_w_0", &[3, 1, 3, 3], rng.values(27, 0.5));
    b.init_f32("conv_b_0", &[3], rng.values(3, 0.1));
    b.init_f32("fc_w_0", &[4, 36], rng.values(144, 0.3));
    b.init_f32("fc_b_0", &[4], rng.values(4, 0.1));
    b.init_i64("shape", &[1, 36]);
    b.node(
        "n0",
        "Conv",
        &["x", "conv_w_0", "conv_b_0"],
        &["c"],
        vec![("pads", Attr::Ints(vec![1, 0, 0, 1]))],
    );
    b.node("n1", "Relu", &["c"], &["r"], vec![]);
    b.node(
        "n2",
        "MaxPool",
        &["r"],
        &["p"],
        vec![
            ("kernel_shape", Attr::Ints(vec![2, 2])),
            ("strides", Attr::Ints(vec![1, 1])),
        ],
    );
    b.node("n3", "Reshape", &["p", "shape"], &["f"], vec![]);
    b.node(
        "n4",
        "Dropout",
        &["f"],
        &["d"],
        vec![("ratio", Attr::Float(0.0))],
    );
    b.node(
        "n5",
        "Gemm",
        &["d", "fc_w_0", "fc_b_0"],
        &["y"],
        vec![("transB", Attr::Int(1))],
    );
    b.output("y", &[Some(1), Some(4)]);
    OnnxModel::from_bytes(b.build(9).encode_to_vec()).unwrap()
}

fn loss(net: &Network<B>, x: Tensor<B, 4>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let logits = net.forward(x).unwrap();
    let picked = log_softmax(logits, 1).gather(1, labels.unsqueeze_dim(1));
    picked.mean().neg()
}

#[test]
fn one_sgd_step_trains_unfrozen_layers_only_and_lowers_the_loss() {
    let device = Default::default();
    let net = Network::<B>::from_model(tiny_classifier(), &device)
        .set_layers_trainable(&["conv".to_string()], false)
        .unwrap();
    let names: Vec<&str> = net.plan().layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["conv", "fc"]);
    let before = net.param_values();

    let x = Tensor::<B, 4>::from_data(
        TensorData::new(SeededRng::new(3).values(6 * 30, 1.0), [6, 1, 6, 5]),
        &device,
    );
    let labels =
        Tensor::<B, 1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 3, 0, 1], [6]), &device);

    let loss0 = loss(&net, x.clone(), labels.clone());
    let loss0_value: f32 = loss0.clone().into_scalar();
    let grads = GradientsParams::from_grads(loss0.backward(), &net);
    let mut optim = SgdConfig::new().init::<B, Network<B>>();
    let net = optim.step(0.5, net, grads);
    let loss1_value: f32 = loss(&net, x, labels).into_scalar();
    assert!(
        loss1_value < loss0_value,
        "loss {loss0_value} -> {loss1_value}"
    );

    let after = net.param_values();
    for ((name, _, old), (_, _, new)) in before.iter().zip(&after) {
        if name.starts_with("conv") {
            assert_eq!(old, new, "{name} is frozen and must not change");
        } else {
            assert_ne!(old, new, "{name} is trainable and must change");
        }
    }
}

#[test]
fn unknown_layer_names_are_listed() {
    let net = Network::<B>::from_model(tiny_classifier(), &Default::default());
    let err = net
        .set_layers_trainable(&["conv9".to_string()], false)
        .unwrap_err();
    assert!(err.to_string().contains("conv9") && err.to_string().contains("conv, fc"));
}
