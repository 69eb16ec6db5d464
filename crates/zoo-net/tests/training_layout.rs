//! The training path's reformulated ops (conv bias added as per-row scalars, batch norm with
//! batch statistics on `[N, C, H*W]` rows) compute what the generic burn ops compute: the same
//! values and the same gradients for the input and every parameter.

use burn::backend::{Autodiff, Flex};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};
use prost::Message;
use zoo_net::Network;
use zoo_onnx::builder::{Attr, GraphBuilder, SeededRng};
use zoo_onnx::OnnxModel;

type B = Autodiff<Flex>;
const X: [usize; 4] = [3, 2, 5, 4];
const EPS: f32 = 1e-5;

/// conv -> batch norm (-> ReLU when `relu`: zoo fuses the two) -> flatten.
fn conv_bn(w: &[f32], b: &[f32], scale: &[f32], shift: &[f32], relu: bool) -> Network<B> {
    let [_, c, h, wd] = X;
    let mut g = GraphBuilder::new("x", &[Some(1), Some(c), Some(h), Some(wd)]);
    g.init_f32("conv_w_0", &[3, c, 3, 3], w.to_vec());
    g.init_f32("conv_b_0", &[3], b.to_vec());
    g.init_f32("bn_scale", &[3], scale.to_vec());
    g.init_f32("bn_bias", &[3], shift.to_vec());
    g.init_f32("bn_mean", &[3], vec![0.0; 3]);
    g.init_f32("bn_var", &[3], vec![1.0; 3]);
    g.node(
        "conv",
        "Conv",
        &["x", "conv_w_0", "conv_b_0"],
        &["c"],
        vec![("pads", Attr::Ints(vec![1, 1, 1, 1]))],
    );
    g.node(
        "bn",
        "BatchNormalization",
        &["c", "bn_scale", "bn_bias", "bn_mean", "bn_var"],
        &["n"],
        vec![("epsilon", Attr::Float(EPS))],
    );
    if relu {
        g.node("relu", "Relu", &["n"], &["r"], vec![]);
    }
    g.node(
        "flat",
        "Flatten",
        &[if relu { "r" } else { "n" }],
        &["y"],
        vec![("axis", Attr::Int(1))],
    );
    g.output("y", &[None, None]);
    let model = OnnxModel::from_bytes(g.build(13).encode_to_vec()).unwrap();
    Network::from_model(model, &Default::default()).with_batch_statistics()
}

fn leaf<const D: usize>(values: &[f32], dims: [usize; D]) -> Tensor<B, D> {
    Tensor::<B, D>::from_data(TensorData::new(values.to_vec(), dims), &Default::default())
        .require_grad()
}

fn host<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn close(name: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{name}");
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-4 * scale, "{name}[{i}]: {x} vs {y}");
    }
}

#[test]
fn conv_bias_and_batch_statistics_match_the_generic_ops_in_values_and_gradients() {
    for relu in [false, true] {
        conv_bn_matches_the_generic_ops(relu);
    }
}

fn conv_bn_matches_the_generic_ops(relu: bool) {
    let mut rng = SeededRng::new(17);
    let n: usize = X.iter().product();
    let (x, w, b) = (
        rng.values(n, 1.0),
        rng.values(3 * 2 * 9, 0.5),
        rng.values(3, 0.5),
    );
    let (scale, shift) = (rng.values(3, 1.0), rng.values(3, 0.5));
    let weights = rng.values(3 * 3 * 5 * 4, 1.0);
    let target = || {
        Tensor::<B, 2>::from_data(
            TensorData::new(weights.clone(), [3, 60]),
            &Default::default(),
        )
    };

    // zoo's network.
    let net = conv_bn(&w, &b, &scale, &shift, relu);
    let x1 = leaf(&x, X);
    let y1 = net.forward(x1.clone()).unwrap();
    let grads = (y1.clone() * target()).sum().backward();
    let ours: Vec<Vec<f32>> = std::iter::once(host(x1.grad(&grads).unwrap()))
        .chain((0..4).map(|i| host(net.param_tensor(i).grad(&grads).unwrap())))
        .collect();

    // The generic ops: burn's fused conv bias, batch norm with [1, C, 1, 1] broadcasts.
    let (x2, w2, b2) = (leaf(&x, X), leaf(&w, [3, 2, 3, 3]), leaf(&b, [3]));
    let (s2, t2) = (leaf(&scale, [3]), leaf(&shift, [3]));
    let c = conv2d(
        x2.clone(),
        w2.clone(),
        Some(b2.clone()),
        ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
    );
    let mean = c.clone().mean_dim(0).mean_dim(2).mean_dim(3);
    let centred = c - mean;
    let var = centred
        .clone()
        .powi_scalar(2)
        .mean_dim(0)
        .mean_dim(2)
        .mean_dim(3);
    let y = centred / (var + EPS as f64).sqrt() * s2.clone().reshape([1, 3, 1, 1])
        + t2.clone().reshape([1, 3, 1, 1]);
    let y = if relu {
        burn::tensor::activation::relu(y)
    } else {
        y
    };
    let y2: Tensor<B, 2> = y.reshape([3, 60]);
    let grads = (y2.clone() * target()).sum().backward();
    let generic: Vec<Vec<f32>> = [
        host(x2.grad(&grads).unwrap()),
        host(w2.grad(&grads).unwrap()),
        host(b2.grad(&grads).unwrap()),
        host(s2.grad(&grads).unwrap()),
        host(t2.grad(&grads).unwrap()),
    ]
    .to_vec();

    close("output", &host(y1.inner()), &host(y2.inner()));
    let plan = net.plan();
    let names: Vec<&str> = plan.params[..4].iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["conv_w_0", "conv_b_0", "bn_scale", "bn_bias"]);
    for (k, name) in ["x", "conv_w_0", "conv_b_0", "bn_scale", "bn_bias"]
        .iter()
        .enumerate()
    {
        let label = format!("relu {relu}: gradient of {name}");
        if *name == "conv_b_0" {
            // Batch norm takes the mean out, so this gradient is zero but for rounding: both
            // sides are noise, held to the scale of the conv weights' gradient instead.
            let scale = generic[1].iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (a, b) in ours[k].iter().zip(&generic[k]) {
                assert!(
                    a.abs() <= 1e-5 * scale && b.abs() <= 1e-5 * scale,
                    "{label}"
                );
            }
            continue;
        }
        close(&label, &ours[k], &generic[k]);
    }
    // The statistics the trainer folds in are the batch's (unbiased variance).
    let net = net.update_running_statistics();
    let running_var = net.param_value(5);
    assert!(
        running_var.iter().all(|v| (*v - 1.0).abs() > 1e-6),
        "{running_var:?}"
    );
}

#[test]
fn a_trained_conv_bias_gets_the_generic_gradient_without_batch_norm_after_it() {
    // With a ReLU after the convolution zoo runs the two as one op (its own backward); a bias
    // written as an Add of one value per channel after the convolution joins that op too.
    for relu in [false, true] {
        conv_bias_matches_the_generic_ops(relu, None);
        conv_bias_matches_the_generic_ops(relu, Some(&[3, 1, 1]));
        conv_bias_matches_the_generic_ops(relu, Some(&[1, 3, 1, 1]));
    }
}

/// The bias as the convolution's third input, or (`bias_add`) as an Add of that shape after it.
fn conv_bias_matches_the_generic_ops(relu: bool, bias_add: Option<&[usize]>) {
    let [_, c, h, wd] = X;
    let mut rng = SeededRng::new(23);
    let (x, w, b) = (
        rng.values(X.iter().product(), 1.0),
        rng.values(3 * c * 9, 0.5),
        rng.values(3, 0.5),
    );
    let mut g = GraphBuilder::new("x", &[Some(1), Some(c), Some(h), Some(wd)]);
    g.init_f32("conv_w_0", &[3, c, 3, 3], w.clone());
    g.init_f32("conv_b_0", bias_add.unwrap_or(&[3]), b.clone());
    let pads = vec![("pads", Attr::Ints(vec![0, 1, 1, 0]))];
    if bias_add.is_some() {
        g.node("conv", "Conv", &["x", "conv_w_0"], &["p"], pads);
        g.node("bias", "Add", &["p", "conv_b_0"], &["c"], vec![]);
    } else {
        g.node("conv", "Conv", &["x", "conv_w_0", "conv_b_0"], &["c"], pads);
    }
    if relu {
        g.node("relu", "Relu", &["c"], &["r"], vec![]);
    }
    g.node(
        "flat",
        "Flatten",
        &[if relu { "r" } else { "c" }],
        &["y"],
        vec![("axis", Attr::Int(1))],
    );
    g.output("y", &[None, None]);
    let model = OnnxModel::from_bytes(g.build(13).encode_to_vec()).unwrap();
    let net = Network::<B>::from_model(model, &Default::default());
    let x1 = leaf(&x, X);
    let y1 = net.forward(x1.clone()).unwrap();
    let width = y1.dims()[1];
    let weights = rng.values(3 * width, 1.0);
    let target =
        Tensor::<B, 2>::from_data(TensorData::new(weights, [3, width]), &Default::default());
    let grads = (y1.clone() * target.clone()).sum().backward();
    let (b1, x1g) = (
        host(net.param_tensor(1).grad(&grads).unwrap()),
        host(x1.grad(&grads).unwrap()),
    );
    let (x2, w2, b2) = (leaf(&x, X), leaf(&w, [3, c, 3, 3]), leaf(&b, [3]));
    let options =
        burn::tensor::ops::PaddedConvOptions::asymmetric([1, 1], [0, 1], [1, 0], [1, 1], 1);
    let y2: Tensor<B, 4> = conv2d(x2.clone(), w2, Some(b2.clone()), options);
    let y2 = if relu {
        burn::tensor::activation::relu(y2)
    } else {
        y2
    };
    let y2 = y2.reshape([3, width]);
    let grads = (y2.clone() * target).sum().backward();
    close("output", &host(y1.inner()), &host(y2.inner()));
    close(
        &format!("relu {relu}, bias Add {bias_add:?}: gradient of conv_b_0"),
        &b1,
        &host(b2.grad(&grads).unwrap()),
    );
    close(
        &format!("relu {relu}, bias Add {bias_add:?}: gradient of x"),
        &x1g,
        &host(x2.grad(&grads).unwrap()),
    );
    assert!(
        b1.iter().any(|v| v.abs() > 0.1),
        "a bias gradient that is not trivially zero: {b1:?}"
    );
}
