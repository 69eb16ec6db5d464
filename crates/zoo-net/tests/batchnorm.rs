//! Batch norm that trains uses the batch's statistics and moves the running ones by momentum;
//! frozen batch norm and inference use the running statistics.

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::tensor::{Tensor, TensorData};
use prost::Message;
use zoo_net::Network;
use zoo_onnx::builder::{Attr, GraphBuilder, SeededRng};
use zoo_onnx::OnnxModel;

type B = Autodiff<Flex>;

/// x -> BatchNormalization(scale 1, bias 0, mean 0.5, var 4) over 2 channels.
fn bn_only() -> OnnxModel {
    let mut b = GraphBuilder::new("x", &[Some(1), Some(2), Some(3), Some(3)]);
    b.init_f32("bn_scale", &[2], vec![1.0, 1.0]);
    b.init_f32("bn_bias", &[2], vec![0.0, 0.0]);
    b.init_f32("bn_mean", &[2], vec![0.5, 0.5]);
    b.init_f32("bn_var", &[2], vec![4.0, 4.0]);
    b.node(
        "bn",
        "BatchNormalization",
        &["x", "bn_scale", "bn_bias", "bn_mean", "bn_var"],
        &["y"],
        vec![
            ("epsilon", Attr::Float(0.0)),
            ("momentum", Attr::Float(0.9)),
        ],
    );
    b.output("y", &[Some(1), Some(2), Some(3), Some(3)]);
    OnnxModel::from_bytes(b.build(13).encode_to_vec()).unwrap()
}

fn batch(device: &burn::tensor::Device<B>) -> (Tensor<B, 4>, Vec<f32>) {
    let values = SeededRng::new(3).values(4 * 2 * 9, 3.0);
    let t = Tensor::from_data(TensorData::new(values.clone(), [4, 2, 3, 3]), device);
    (t, values)
}

fn channel_stats(values: &[f32], c: usize) -> (f32, f32) {
    let xs: Vec<f32> = (0..4)
        .flat_map(|n| values[(n * 2 + c) * 9..(n * 2 + c + 1) * 9].to_vec())
        .collect();
    let mean = xs.iter().sum::<f32>() / xs.len() as f32;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / xs.len() as f32;
    (mean, var)
}

#[test]
fn training_batch_norm_normalises_with_batch_statistics_and_updates_running_ones() {
    let device = Default::default();
    let net = Network::<B>::from_model(bn_only(), &device).with_batch_statistics();
    let (x, values) = batch(&device);
    let y: Vec<f32> = net
        .forward_matrix(x.clone(), "y")
        .unwrap()
        .into_data()
        .to_vec()
        .unwrap();
    // Each channel of the output has mean 0 and variance 1 over the batch.
    for c in 0..2 {
        let (m, v) = channel_stats(&y, c);
        assert!(
            m.abs() < 1e-4 && (v - 1.0).abs() < 1e-3,
            "channel {c}: {m} {v}"
        );
    }
    let running = net.running_statistics_params();
    assert_eq!(
        running.len(),
        2,
        "the running mean and variance of the one layer"
    );
    let net = net.update_running_statistics();
    let mean = net.param_value(net.plan().param_index["bn_mean"]);
    let var = net.param_value(net.plan().param_index["bn_var"]);
    for c in 0..2 {
        let (m, v) = channel_stats(&values, c);
        let unbiased = v * 36.0 / 35.0;
        assert!((mean[c] - (0.9 * 0.5 + 0.1 * m)).abs() < 1e-5, "{mean:?}");
        assert!(
            (var[c] - (0.9 * 4.0 + 0.1 * unbiased)).abs() < 1e-4,
            "{var:?}"
        );
    }
    // Inference (no autodiff) normalises with the running statistics.
    let inner = net.valid();
    let (xi, _) = batch(&device);
    let yi: Vec<f32> = inner
        .forward_matrix(xi.inner(), "y")
        .unwrap()
        .into_data()
        .to_vec()
        .unwrap();
    let expected = (values[0] - mean[0]) / var[0].sqrt();
    assert!((yi[0] - expected).abs() < 1e-4, "{} vs {expected}", yi[0]);
}

#[test]
fn frozen_batch_norm_keeps_running_statistics() {
    let device = Default::default();
    let net = Network::<B>::from_model(bn_only(), &device)
        .set_layers_trainable(&["bn".to_string()], false)
        .unwrap()
        .with_batch_statistics();
    assert!(net.running_statistics_params().is_empty());
    let (x, values) = batch(&device);
    let y: Vec<f32> = net
        .forward_matrix(x, "y")
        .unwrap()
        .into_data()
        .to_vec()
        .unwrap();
    assert!((y[0] - (values[0] - 0.5) / 2.0).abs() < 1e-5);
    let net = net.update_running_statistics();
    assert_eq!(
        net.param_value(net.plan().param_index["bn_mean"]),
        [0.5, 0.5]
    );
}
