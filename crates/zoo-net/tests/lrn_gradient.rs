//! Training through LRN (an unfrozen AlexNet) uses the generic tensor path: its input gradient
//! must match finite differences, for the odd window (average-pool form) and the even one.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};
use prost::Message;
use zoo_net::Network;
use zoo_onnx::builder::{Attr, GraphBuilder, SeededRng};
use zoo_onnx::OnnxModel;

type B = Autodiff<Flex>;
const DIMS: [usize; 4] = [2, 6, 3, 2];

fn lrn_network(size: i64) -> Network<B> {
    let [_, c, h, w] = DIMS;
    let mut b = GraphBuilder::new("x", &[Some(1), Some(c), Some(h), Some(w)]);
    b.node(
        "lrn",
        "LRN",
        &["x"],
        &["n"],
        vec![
            ("size", Attr::Int(size)),
            ("alpha", Attr::Float(0.5)),
            ("beta", Attr::Float(0.75)),
            ("bias", Attr::Float(1.0)),
        ],
    );
    b.node(
        "flat",
        "Flatten",
        &["n"],
        &["y"],
        vec![("axis", Attr::Int(1))],
    );
    b.output("y", &[None, None]);
    let bytes = b.build(13).encode_to_vec();
    Network::from_model(OnnxModel::from_bytes(bytes).unwrap(), &Default::default())
}

/// sum(weights * lrn(x)) in f64 from the network's f32 output.
fn objective(net: &Network<B>, x: &[f32], weights: &[f32]) -> f64 {
    let input = Tensor::<B, 4>::from_data(TensorData::new(x.to_vec(), DIMS), &Default::default());
    let y = net
        .forward(input)
        .unwrap()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    y.iter()
        .zip(weights)
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum()
}

#[test]
fn lrn_input_gradient_matches_finite_differences() {
    let n: usize = DIMS.iter().product();
    let mut rng = SeededRng::new(5);
    let x = rng.values(n, 1.5);
    let weights = rng.values(n, 1.0);
    for size in [5, 4] {
        let net = lrn_network(size);
        let device = Default::default();
        let input =
            Tensor::<B, 4>::from_data(TensorData::new(x.clone(), DIMS), &device).require_grad();
        let w = Tensor::<B, 2>::from_data(TensorData::new(weights.clone(), [2, n / 2]), &device);
        let grads = (net.forward(input.clone()).unwrap() * w).sum().backward();
        let analytic = input
            .grad(&grads)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let eps = 1e-2f32;
        for i in 0..n {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += eps;
            down[i] -= eps;
            let numeric = (objective(&net, &up, &weights) - objective(&net, &down, &weights))
                / (2.0 * eps as f64);
            let diff = (numeric - analytic[i] as f64).abs();
            assert!(
                diff <= 2e-3 * numeric.abs().max(1.0),
                "size {size}, element {i}: analytic {} vs numeric {numeric}",
                analytic[i]
            );
        }
    }
}
