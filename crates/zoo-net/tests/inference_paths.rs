//! Inference on flex runs a batch image by image on all cores (each image's activations stay
//! in one core's caches), with a convolution and the ReLU after it as one op. It must compute
//! what the batch run layer by layer computes: the logits and any intermediate value.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};
use prost::Message;
use zoo_net::Network;
use zoo_onnx::builder::{Attr, GraphBuilder, SeededRng};
use zoo_onnx::OnnxModel;

/// Large enough images for the image-by-image path (small ones run layer by layer).
const X: [usize; 4] = [5, 3, 64, 64];

/// conv 3x3 -> ReLU -> max pool 3x3/2 -> [conv 1x1 -> ReLU, the pool's output, conv 3x3 ->
/// ReLU] -> concat -> flatten: SqueezeNet's shapes in small. At inference the two convolutions
/// write their channels straight into the concatenation, and the pool's output is copied in
/// between.
fn fire_model() -> OnnxModel {
    let mut rng = SeededRng::new(61);
    let mut g = GraphBuilder::new("x", &[Some(1), Some(3), Some(64), Some(64)]);
    for (name, dims) in [
        ("w1", vec![4, 3, 3, 3]),
        ("e1", vec![3, 4, 1, 1]),
        ("e3", vec![3, 4, 3, 3]),
    ] {
        let n = dims.iter().product();
        g.init_f32(name, &dims, rng.values(n, 0.5));
        g.init_f32(&format!("{name}_b"), &[dims[0]], rng.values(dims[0], 0.2));
    }
    let pads = |p: i64| vec![("pads", Attr::Ints(vec![p; 4]))];
    g.node("c1", "Conv", &["x", "w1", "w1_b"], &["c1"], pads(1));
    g.node("r1", "Relu", &["c1"], &["r1"], vec![]);
    g.node(
        "pool",
        "MaxPool",
        &["r1"],
        &["p"],
        vec![
            ("kernel_shape", Attr::Ints(vec![3, 3])),
            ("strides", Attr::Ints(vec![2, 2])),
        ],
    );
    g.node("c2", "Conv", &["p", "e1", "e1_b"], &["c2"], pads(0));
    g.node("r2", "Relu", &["c2"], &["r2"], vec![]);
    g.node("c3", "Conv", &["p", "e3", "e3_b"], &["c3"], pads(1));
    g.node("r3", "Relu", &["c3"], &["r3"], vec![]);
    g.node(
        "cat",
        "Concat",
        &["r2", "p", "r3"],
        &["cat"],
        vec![("axis", Attr::Int(1))],
    );
    g.node(
        "flat",
        "Flatten",
        &["cat"],
        &["y"],
        vec![("axis", Attr::Int(1))],
    );
    g.output("y", &[None, None]);
    OnnxModel::from_bytes(g.build(13).encode_to_vec()).unwrap()
}

fn input<B: burn::tensor::backend::Backend>(values: &[f32]) -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(values.to_vec(), X), &Default::default())
}

fn close(name: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{name}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
            "{name}[{i}]: {x} vs {y}"
        );
    }
}

#[test]
fn image_by_image_inference_matches_the_batch_run_layer_by_layer() {
    let x = SeededRng::new(67).values(X.iter().product(), 1.0);
    let flex = Network::<Flex>::from_model(fire_model(), &Default::default());
    // The autodiff backend runs the batch layer by layer (no image tasks).
    let layered = Network::<Autodiff<Flex>>::from_model(fire_model(), &Default::default());
    let host = |t: Tensor<Flex, 2>| t.into_data().to_vec::<f32>().unwrap();
    let ours = host(flex.forward(input(&x)).unwrap());
    let reference = host(layered.forward(input(&x)).unwrap().inner());
    close("logits", &ours, &reference);
    assert!(
        ours.iter().any(|&v| v > 0.0) && ours.contains(&0.0),
        "ReLU ran"
    );

    for value in ["p", "r3", "cat"] {
        let a = flex.forward_to(input(&x), value).unwrap();
        let b = layered.forward_to(input(&x), value).unwrap();
        assert_eq!(a.dims(), b.dims(), "{value}");
        assert_eq!(a.dims()[0], X[0], "{value}: the whole batch");
        close(value, &a.to_vec(), &b.to_vec());
    }
}
