//! Every supported op, burn (flex) against tract on small random inputs with odd shapes:
//! non-square inputs, strides > 1, padding that does not divide evenly, batch > 1. Each model
//! runs twice: on `Flex` (where zoo-net has fused CPU kernels) and on `Autodiff<Flex>` (the
//! generic tensor path that training and GPUs use).

mod support;

use burn::backend::Flex;
use prost::Message;
use zoo_net::Network;
use zoo_onnx::builder::{Attr, GraphBuilder, SeededRng};
use zoo_onnx::ops::Array;
use zoo_onnx::pb::ModelProto;
use zoo_onnx::OnnxModel;
use zoo_parity::run_network;

use support::{assert_parity, finish, input, weights};

fn conv_model(chw: [usize; 3], w: [usize; 4], bias: bool, attrs: Vec<(&str, Attr)>) -> ModelProto {
    let mut rng = SeededRng::new(1);
    let mut b = GraphBuilder::default();
    input(&mut b, chw);
    weights(&mut b, &mut rng, "W", &w);
    let mut inputs = vec!["x", "W"];
    if bias {
        weights(&mut b, &mut rng, "B", &[w[0]]);
        inputs.push("B");
    }
    b.node("conv", "Conv", &inputs, &["c"], attrs);
    finish(&mut b, "c", 11)
}

#[test]
fn conv_asymmetric_pads_strides_dilations() {
    let m = conv_model(
        [3, 9, 7],
        [4, 3, 3, 2],
        true,
        vec![
            ("strides", Attr::Ints(vec![2, 1])),
            ("pads", Attr::Ints(vec![1, 0, 2, 1])),
            ("dilations", Attr::Ints(vec![1, 2])),
        ],
    );
    assert_parity(&m, 3);
}

#[test]
fn conv_groups_without_bias() {
    let m = conv_model(
        [4, 8, 11],
        [6, 2, 3, 3],
        false,
        vec![
            ("group", Attr::Int(2)),
            ("strides", Attr::Ints(vec![2, 2])),
            ("pads", Attr::Ints(vec![0, 1, 1, 0])),
        ],
    );
    assert_parity(&m, 2);
}

#[test]
fn conv_auto_pad_same_upper_lower_valid() {
    for mode in ["SAME_UPPER", "SAME_LOWER", "VALID"] {
        let m = conv_model(
            [2, 7, 10],
            [3, 2, 4, 3],
            true,
            vec![
                ("strides", Attr::Ints(vec![2, 3])),
                ("auto_pad", Attr::Str(mode)),
            ],
        );
        assert_parity(&m, 2);
    }
}

#[test]
fn add_and_mul_of_broadcast_constants() {
    let mut rng = SeededRng::new(2);
    let mut b = GraphBuilder::default();
    input(&mut b, [3, 5, 6]);
    weights(&mut b, &mut rng, "bias", &[3, 1, 1]);
    weights(&mut b, &mut rng, "scale", &[1, 3, 1, 1]);
    weights(&mut b, &mut rng, "shift", &[6]);
    weights(&mut b, &mut rng, "div", &[3, 5, 1]);
    b.node("add", "Add", &["x", "bias"], &["a"], vec![]);
    b.node("mul", "Mul", &["a", "scale"], &["m"], vec![]);
    b.node("sub", "Sub", &["m", "shift"], &["s"], vec![]);
    b.node("divide", "Div", &["s", "div"], &["d"], vec![]);
    // Per-channel bias on either side (flex has a fused kernel for it).
    b.node("add_first", "Add", &["bias", "d"], &["e"], vec![]);
    assert_parity(&finish(&mut b, "e", 11), 3);
}

#[test]
fn activations() {
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 5]);
    b.node("relu", "Relu", &["x"], &["r"], vec![]);
    b.node(
        "leaky",
        "LeakyRelu",
        &["x"],
        &["l"],
        vec![("alpha", Attr::Float(0.2))],
    );
    b.node("sig", "Sigmoid", &["x"], &["s"], vec![]);
    b.node("tanh", "Tanh", &["x"], &["t"], vec![]);
    b.node("id", "Identity", &["t"], &["i"], vec![]);
    b.node(
        "cat",
        "Concat",
        &["r", "l", "s", "i"],
        &["c"],
        vec![("axis", Attr::Int(1))],
    );
    assert_parity(&finish(&mut b, "c", 11), 2);
}

#[test]
fn lrn_odd_and_even_sizes_and_powers() {
    // beta 0.75 has its own square-root path; other powers go through exp/log.
    for (size, beta) in [(5, 0.75), (4, 0.75), (1, 0.75), (5, 0.6), (4, 1.3)] {
        let mut b = GraphBuilder::default();
        input(&mut b, [7, 5, 6]);
        b.node(
            "lrn",
            "LRN",
            &["x"],
            &["n"],
            vec![
                ("size", Attr::Int(size)),
                ("alpha", Attr::Float(1e-2)),
                ("beta", Attr::Float(beta)),
                ("bias", Attr::Float(1.5)),
            ],
        );
        assert_parity(&finish(&mut b, "n", 9), 2);
    }
}

#[test]
fn max_pool_pads_ceil_mode_dilations() {
    let cases: Vec<Vec<(&str, Attr)>> = vec![
        vec![
            ("kernel_shape", Attr::Ints(vec![3, 3])),
            ("strides", Attr::Ints(vec![2, 2])),
            ("pads", Attr::Ints(vec![0, 0, 1, 1])),
        ],
        vec![
            ("kernel_shape", Attr::Ints(vec![3, 2])),
            ("strides", Attr::Ints(vec![2, 3])),
            ("ceil_mode", Attr::Int(1)),
        ],
        vec![
            ("kernel_shape", Attr::Ints(vec![2, 3])),
            ("strides", Attr::Ints(vec![1, 2])),
            ("pads", Attr::Ints(vec![1, 0, 0, 2])),
            ("ceil_mode", Attr::Int(1)),
        ],
        vec![
            ("kernel_shape", Attr::Ints(vec![2, 2])),
            ("dilations", Attr::Ints(vec![2, 1])),
            ("pads", Attr::Ints(vec![1, 1, 1, 1])),
        ],
        vec![
            ("kernel_shape", Attr::Ints(vec![3, 3])),
            ("strides", Attr::Ints(vec![2, 2])),
            ("auto_pad", Attr::Str("SAME_UPPER")),
        ],
    ];
    for attrs in cases {
        let mut b = GraphBuilder::default();
        input(&mut b, [3, 10, 9]);
        b.node("pool", "MaxPool", &["x"], &["p"], attrs);
        assert_parity(&finish(&mut b, "p", 12), 2);
    }
}

#[test]
fn average_pool_count_include_pad_and_ceil_mode() {
    for include in [0, 1] {
        for ceil in [0, 1] {
            let mut b = GraphBuilder::default();
            input(&mut b, [2, 9, 8]);
            b.node(
                "pool",
                "AveragePool",
                &["x"],
                &["p"],
                vec![
                    ("kernel_shape", Attr::Ints(vec![3, 2])),
                    ("strides", Attr::Ints(vec![2, 3])),
                    ("pads", Attr::Ints(vec![1, 0, 1, 1])),
                    ("count_include_pad", Attr::Int(include)),
                    ("ceil_mode", Attr::Int(ceil)),
                ],
            );
            assert_parity(&finish(&mut b, "p", 11), 2);
        }
    }
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 9, 8]);
    b.node(
        "pool",
        "AveragePool",
        &["x"],
        &["p"],
        vec![("kernel_shape", Attr::Ints(vec![2, 3]))],
    );
    assert_parity(&finish(&mut b, "p", 11), 2);
}

#[test]
fn global_pools() {
    let mut b = GraphBuilder::default();
    input(&mut b, [5, 3, 7]);
    b.node("gap", "GlobalAveragePool", &["x"], &["a"], vec![]);
    b.node("gmp", "GlobalMaxPool", &["x"], &["m"], vec![]);
    b.node(
        "cat",
        "Concat",
        &["a", "m"],
        &["c"],
        vec![("axis", Attr::Int(1))],
    );
    assert_parity(&finish(&mut b, "c", 11), 3);
}

#[test]
fn batch_normalization() {
    let mut rng = SeededRng::new(3);
    let mut b = GraphBuilder::default();
    input(&mut b, [4, 3, 5]);
    weights(&mut b, &mut rng, "scale", &[4]);
    weights(&mut b, &mut rng, "bias", &[4]);
    weights(&mut b, &mut rng, "mean", &[4]);
    b.init_f32("var", &[4], vec![0.5, 1.5, 2.0, 0.1]);
    b.node(
        "bn",
        "BatchNormalization",
        &["x", "scale", "bias", "mean", "var"],
        &["n"],
        vec![("epsilon", Attr::Float(1e-3))],
    );
    assert_parity(&finish(&mut b, "n", 9), 3);
}

fn dense_model(gemm: Vec<(&str, Attr)>, w_dims: [usize; 2], c_dims: &[usize]) -> ModelProto {
    let mut rng = SeededRng::new(4);
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 5]);
    weights(&mut b, &mut rng, "W", &w_dims);
    weights(&mut b, &mut rng, "C", c_dims);
    b.node("flat", "Flatten", &["x"], &["f"], vec![]);
    b.node("fc", "Gemm", &["f", "W", "C"], &["y"], gemm);
    b.output("y", &[None, None]);
    b.build(11)
}

#[test]
fn gemm_alpha_beta_transposes() {
    assert_parity(
        &dense_model(vec![("transB", Attr::Int(1))], [7, 30], &[7]),
        3,
    );
    assert_parity(
        &dense_model(
            vec![("alpha", Attr::Float(0.5)), ("beta", Attr::Float(2.0))],
            [30, 7],
            &[1, 7],
        ),
        3,
    );
}

#[test]
fn gemm_trans_a_runs_at_declared_batch_and_refuses_others() {
    // transA moves the batch axis: only the declared batch is meaningful, and forward says so.
    let mut rng = SeededRng::new(4);
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 5]);
    weights(&mut b, &mut rng, "W", &[1, 7]);
    b.node("flat", "Flatten", &["x"], &["f"], vec![]);
    b.node(
        "fc",
        "Gemm",
        &["f", "W"],
        &["g"],
        vec![("transA", Attr::Int(1))],
    );
    b.node(
        "all",
        "Flatten",
        &["g"],
        &["y"],
        vec![("axis", Attr::Int(0))],
    );
    b.output("y", &[Some(1), None]);
    let model = b.build(11);
    assert_parity(&model, 1);

    let onnx = OnnxModel::from_bytes(model.encode_to_vec()).unwrap();
    let device = Default::default();
    let net = Network::<Flex>::from_model(onnx, &device);
    let err = run_network(
        &net,
        &vec![0.5; 2 * 30],
        2,
        &net.plan().graph.output.name,
        &device,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("only runs at batch size 1"),
        "{err}"
    );
}

#[test]
fn matmul_reshape_and_batch_generalisation() {
    // The MNIST zoo pattern: Reshape with a constant [1, K] then MatMul with a reshaped weight.
    let mut rng = SeededRng::new(5);
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 4]);
    b.init_i64("shape", &[1, 24]);
    weights(&mut b, &mut rng, "W", &[2, 3, 4, 5]);
    b.init_i64("wshape", &[24, 5]);
    weights(&mut b, &mut rng, "bias", &[1, 5]);
    b.node("r", "Reshape", &["x", "shape"], &["f"], vec![]);
    b.node("rw", "Reshape", &["W", "wshape"], &["w2"], vec![]);
    b.node("mm", "MatMul", &["f", "w2"], &["m"], vec![]);
    b.node("add", "Add", &["m", "bias"], &["y"], vec![]);
    b.output("y", &[Some(1), Some(5)]);
    assert_parity(&b.build(8), 4);
}

/// A token-wise Linear layer and the residual Add after it (a transformer block's
/// projection), which inference on flex runs as one op, matches tract; so does the same chain
/// where the bias Add's output is read twice (no fusion), and a residual Add that broadcasts.
#[test]
fn linear_then_residual_add_fused_or_not() {
    for case in ["residual", "read twice", "broadcast"] {
        let mut rng = SeededRng::new(6);
        let mut b = GraphBuilder::default();
        input(&mut b, [3, 4, 5]);
        weights(&mut b, &mut rng, "W", &[5, 5]);
        weights(&mut b, &mut rng, "bias", &[5]);
        weights(&mut b, &mut rng, "row", &[1, 5]);
        b.node("mm", "MatMul", &["x", "W"], &["m"], vec![]);
        b.node("add", "Add", &["m", "bias"], &["l"], vec![]);
        match case {
            "residual" => {
                b.node("res", "Add", &["l", "x"], &["r"], vec![]);
            }
            "read twice" => {
                b.node("res", "Add", &["x", "l"], &["s"], vec![]);
                b.node("again", "Mul", &["s", "l"], &["r"], vec![]);
            }
            _ => {
                b.node("res", "Add", &["l", "row"], &["r"], vec![]);
            }
        }
        let worst = assert_parity(&finish(&mut b, "r", 13), 3);
        assert!(worst.is_finite(), "{case}");
    }
}

#[test]
fn reshape_with_zero_and_minus_one() {
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 4]);
    b.init_i64("shape", &[0, 6, -1]);
    b.node("r", "Reshape", &["x", "shape"], &["r1"], vec![]);
    b.node(
        "s",
        "Softmax",
        &["r1"],
        &["s1"],
        vec![("axis", Attr::Int(2))],
    );
    b.node("flat", "Flatten", &["s1"], &["y"], vec![]);
    b.output("y", &[None, None]);
    assert_parity(&b.build(13), 2);
}

/// `op` (Softmax or LogSoftmax) over axis 1 of a [3, 2, 5] input at each opset.
fn softmax_family_parity(op: &str, opsets: [i64; 2]) {
    for opset in opsets {
        let mut b = GraphBuilder::default();
        input(&mut b, [3, 2, 5]);
        b.node("sm", op, &["x"], &["s"], vec![("axis", Attr::Int(1))]);
        assert_parity(&finish(&mut b, "s", opset), 2);
    }
}

#[test]
fn softmax_legacy_flattens_trailing_axes_and_opset13_does_not() {
    softmax_family_parity("Softmax", [9, 13]);
}

#[test]
fn log_softmax_follows_softmax_axis_rules_in_both_opset_forms() {
    softmax_family_parity("LogSoftmax", [11, 13]);
}

#[test]
fn dropout_is_identity_at_inference_in_both_opset_forms() {
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 3]);
    b.node(
        "d",
        "Dropout",
        &["x"],
        &["d1", "mask"],
        vec![("ratio", Attr::Float(0.5))],
    );
    assert_parity(&finish(&mut b, "d1", 9), 2);
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 3]);
    b.init_f32("ratio", &[], vec![0.3]);
    b.node("d", "Dropout", &["x", "ratio"], &["d1"], vec![]);
    assert_parity(&finish(&mut b, "d1", 12), 2);
}

#[test]
fn branches_concat_and_add_of_computed_tensors() {
    // A SqueezeNet "fire" / ResNet residual shape: two convs from one input, concatenated and
    // added to the input.
    let mut rng = SeededRng::new(6);
    let mut b = GraphBuilder::default();
    input(&mut b, [4, 6, 5]);
    weights(&mut b, &mut rng, "W1", &[2, 4, 1, 1]);
    weights(&mut b, &mut rng, "W3", &[2, 4, 3, 3]);
    b.node("e1", "Conv", &["x", "W1"], &["a"], vec![]);
    b.node(
        "e3",
        "Conv",
        &["x", "W3"],
        &["c"],
        vec![("pads", Attr::Ints(vec![1, 1, 1, 1]))],
    );
    b.node(
        "cat",
        "Concat",
        &["a", "c"],
        &["cat_out"],
        vec![("axis", Attr::Int(1))],
    );
    b.node("res", "Add", &["cat_out", "x"], &["sum"], vec![]);
    b.node("relu", "Relu", &["sum"], &["r"], vec![]);
    assert_parity(&finish(&mut b, "r", 11), 3);
}

#[test]
fn constant_and_constant_of_shape_nodes() {
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 3]);
    b.init_i64("shape", &[2, 1, 1]);
    b.graph.node.push(zoo_onnx::pb::NodeProto {
        name: "fill".into(),
        op_type: "ConstantOfShape".into(),
        input: vec!["shape".into()],
        output: vec!["filled".into()],
        attribute: vec![zoo_onnx::pb::AttributeProto {
            name: "value".into(),
            r#type: zoo_onnx::pb::attribute_proto::AttributeType::Tensor as i32,
            t: Some(zoo_onnx::tensor::f32_proto("v", &[1], &[0.25])),
            ..Default::default()
        }],
        ..Default::default()
    });
    b.graph.node.push(zoo_onnx::pb::NodeProto {
        name: "k".into(),
        op_type: "Constant".into(),
        output: vec!["k_out".into()],
        attribute: vec![zoo_onnx::pb::AttributeProto {
            name: "value".into(),
            r#type: zoo_onnx::pb::attribute_proto::AttributeType::Tensor as i32,
            t: Some(zoo_onnx::tensor::f32_proto("kv", &[2, 1, 1], &[2.0, -1.0])),
            ..Default::default()
        }],
        ..Default::default()
    });
    b.node("add", "Add", &["x", "filled"], &["a"], vec![]);
    b.node("mul", "Mul", &["a", "k_out"], &["m"], vec![]);
    assert_parity(&finish(&mut b, "m", 11), 2);
}

// --- Activations, reductions, layout ops and shape arithmetic (issue: coverage) ------------

fn scalar(b: &mut GraphBuilder, name: &str, v: f32) {
    b.init_f32(name, &[], vec![v]);
}

#[test]
fn clip_in_attribute_and_input_forms_including_relu6_and_one_sided() {
    // Opset 9: bounds are attributes (ReLU6 and a lower bound only).
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 4, 3]);
    b.node(
        "relu6",
        "Clip",
        &["x"],
        &["a"],
        vec![("min", Attr::Float(0.0)), ("max", Attr::Float(0.6))],
    );
    b.node(
        "low",
        "Clip",
        &["a"],
        &["c"],
        vec![("min", Attr::Float(0.1))],
    );
    assert_parity(&finish(&mut b, "c", 9), 3);
    // Opset 13: bounds are optional inputs; an empty name skips the minimum.
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 4, 3]);
    scalar(&mut b, "lo", -0.3);
    scalar(&mut b, "hi", 0.5);
    b.node("both", "Clip", &["x", "lo", "hi"], &["a"], vec![]);
    b.node("upper", "Clip", &["x", "", "hi"], &["u"], vec![]);
    b.node("sum", "Add", &["a", "u"], &["c"], vec![]);
    assert_parity(&finish(&mut b, "c", 13), 3);
}

#[test]
fn hard_sigmoid_hard_swish_elu_selu_softplus_prelu() {
    let mut rng = SeededRng::new(3);
    let mut b = GraphBuilder::default();
    input(&mut b, [3, 4, 5]);
    weights(&mut b, &mut rng, "slope", &[3, 1, 1]);
    b.node(
        "hs",
        "HardSigmoid",
        &["x"],
        &["a"],
        vec![("alpha", Attr::Float(0.3))],
    );
    b.node("hw", "HardSwish", &["x"], &["b"], vec![]);
    b.node(
        "elu",
        "Elu",
        &["x"],
        &["c"],
        vec![("alpha", Attr::Float(0.7))],
    );
    b.node("selu", "Selu", &["x"], &["d"], vec![]);
    b.node("sp", "Softplus", &["x"], &["e"], vec![]);
    b.node("pr", "PRelu", &["x", "slope"], &["f"], vec![]);
    b.node(
        "cat",
        "Concat",
        &["a", "b", "c", "d", "e", "f"],
        &["g"],
        vec![("axis", Attr::Int(1))],
    );
    assert_parity(&finish(&mut b, "g", 14), 3);
}

#[test]
fn variadic_sum_mean_max_min_with_broadcasting() {
    let mut rng = SeededRng::new(4);
    let mut b = GraphBuilder::default();
    input(&mut b, [3, 4, 4]);
    weights(&mut b, &mut rng, "k", &[3, 1, 1]);
    weights(&mut b, &mut rng, "row", &[4]);
    b.node("relu", "Relu", &["x"], &["r"], vec![]);
    b.node("sum", "Sum", &["x", "r", "k"], &["s"], vec![]);
    b.node("mean", "Mean", &["s", "row", "x"], &["m"], vec![]);
    b.node("max", "Max", &["m", "k"], &["hi"], vec![]);
    b.node("min", "Min", &["hi", "row", "r"], &["lo"], vec![]);
    b.node("one", "Sum", &["lo"], &["o"], vec![]);
    assert_parity(&finish(&mut b, "o", 11), 3);
}

fn reduce_model(op: &str, keepdims: i64, opset: i64) -> ModelProto {
    let mut b = GraphBuilder::default();
    input(&mut b, [4, 5, 3]);
    let mut attrs = vec![("keepdims", Attr::Int(keepdims))];
    let inputs: Vec<&str> = if opset >= 18 {
        b.init_i64("axes", &[2, -1]);
        vec!["x", "axes"]
    } else {
        attrs.push(("axes", Attr::Ints(vec![2, -1])));
        vec!["x"]
    };
    b.node("reduce", op, &inputs, &["r"], attrs);
    if keepdims == 1 {
        finish(&mut b, "r", opset)
    } else {
        b.output("r", &[None, None]);
        b.build(opset)
    }
}

#[test]
fn reduce_mean_and_max_over_spatial_axes_keepdims_both_ways_both_forms() {
    for op in ["ReduceMean", "ReduceMax"] {
        for keepdims in [0, 1] {
            for opset in [13, 18] {
                assert_parity(&reduce_model(op, keepdims, opset), 3);
            }
        }
    }
}

#[test]
fn transpose_and_a_rank5_channel_shuffle() {
    let mut b = GraphBuilder::new("x", &[None, Some(6), Some(3), Some(4)]);
    b.init_i64("split_groups", &[0, 2, 3, 3, 4]);
    b.init_i64("merge", &[0, -1, 3, 4]);
    b.node("r5", "Reshape", &["x", "split_groups"], &["g"], vec![]);
    b.node(
        "t5",
        "Transpose",
        &["g"],
        &["t"],
        vec![("perm", Attr::Ints(vec![0, 2, 1, 3, 4]))],
    );
    b.node("r4", "Reshape", &["t", "merge"], &["s"], vec![]);
    b.node(
        "hw",
        "Transpose",
        &["s"],
        &["w"],
        vec![("perm", Attr::Ints(vec![0, 1, 3, 2]))],
    );
    assert_parity(&finish(&mut b, "w", 11), 4);
}

#[test]
fn squeeze_unsqueeze_in_attribute_and_input_forms() {
    for opset in [11, 13] {
        let mut b = GraphBuilder::default();
        input(&mut b, [3, 4, 5]);
        let (mut un, mut sq) = (vec!["gap"], vec!["u"]);
        let mut un_attrs = vec![];
        let mut sq_attrs = vec![];
        if opset >= 13 {
            b.init_i64("ax_u", &[1]);
            b.init_i64("ax_s", &[1, 3, 4]);
            un.push("ax_u");
            sq.push("ax_s");
        } else {
            un_attrs.push(("axes", Attr::Ints(vec![1])));
            sq_attrs.push(("axes", Attr::Ints(vec![1, 3, 4])));
        }
        b.node("gap0", "GlobalAveragePool", &["x"], &["gap"], vec![]);
        b.node("un", "Unsqueeze", &un, &["u"], un_attrs);
        b.node("sq", "Squeeze", &sq, &["s"], sq_attrs);
        b.output("s", &[None, None]);
        let m = b.build(opset);
        assert_parity(&m, 3);
    }
}

#[test]
fn slice_in_attribute_and_input_forms() {
    let mut b = GraphBuilder::default();
    input(&mut b, [6, 7, 5]);
    b.node(
        "s",
        "Slice",
        &["x"],
        &["z"],
        vec![
            ("starts", Attr::Ints(vec![1, -5])),
            ("ends", Attr::Ints(vec![4, 1000])),
            ("axes", Attr::Ints(vec![1, 2])),
        ],
    );
    assert_parity(&finish(&mut b, "z", 9), 3);
    let mut b = GraphBuilder::default();
    input(&mut b, [6, 7, 5]);
    b.init_i64("starts", &[2, 0]);
    b.init_i64("ends", &[i64::MAX, -2]);
    b.init_i64("axes", &[1, -1]);
    b.node(
        "s",
        "Slice",
        &["x", "starts", "ends", "axes"],
        &["z"],
        vec![],
    );
    assert_parity(&finish(&mut b, "z", 13), 3);
}

#[test]
fn split_even_and_uneven_in_attribute_and_input_forms() {
    for opset in [11, 13] {
        let mut b = GraphBuilder::default();
        input(&mut b, [6, 4, 3]);
        let mut inputs = vec!["x"];
        let mut attrs = vec![("axis", Attr::Int(1))];
        if opset >= 13 {
            b.init_i64("sizes", &[1, 2, 3]);
            inputs.push("sizes");
        } else {
            attrs.push(("split", Attr::Ints(vec![1, 2, 3])));
        }
        b.node("uneven", "Split", &inputs, &["a", "b", "c"], attrs);
        b.node(
            "even",
            "Split",
            &["x"],
            &["e1", "e2"],
            vec![("axis", Attr::Int(2))],
        );
        b.node(
            "cat",
            "Concat",
            &["c", "a", "b"],
            &["abc"],
            vec![("axis", Attr::Int(1))],
        );
        b.node(
            "cat2",
            "Concat",
            &["e2", "e1"],
            &["e"],
            vec![("axis", Attr::Int(2))],
        );
        b.node("sum", "Add", &["abc", "e"], &["z"], vec![]);
        assert_parity(&finish(&mut b, "z", opset), 3);
    }
}

#[test]
fn pad_constant_reflect_edge_in_attribute_and_input_forms() {
    for mode in ["constant", "reflect", "edge"] {
        let pads = vec![0, 0, 1, 2, 0, 0, 2, 1];
        let mut b = GraphBuilder::default();
        input(&mut b, [2, 5, 4]);
        let mode_attr = ("mode", Attr::Str(mode));
        b.node(
            "p",
            "Pad",
            &["x"],
            &["z"],
            vec![
                mode_attr.clone(),
                ("pads", Attr::Ints(pads.clone())),
                ("value", Attr::Float(0.5)),
            ],
        );
        assert_parity(&finish(&mut b, "z", 9), 2);
        let mut b = GraphBuilder::default();
        input(&mut b, [2, 5, 4]);
        b.init_i64("pads", &pads);
        scalar(&mut b, "fill", -0.25);
        // tract 0.23 applies a fill value in reflect/edge mode too (ONNX ignores it there), so
        // the fill input is given in constant mode only, as exporters write it.
        let inputs: &[&str] = if mode == "constant" {
            &["x", "pads", "fill"]
        } else {
            &["x", "pads"]
        };
        b.node("p", "Pad", inputs, &["z"], vec![mode_attr]);
        assert_parity(&finish(&mut b, "z", 13), 2);
    }
}

#[test]
fn gather_of_a_channel_unsqueeze_and_concat_like_inception_v3() {
    let mut b = GraphBuilder::new("x", &[None, Some(3), Some(4), Some(5)]);
    b.graph
        .initializer
        .push(zoo_onnx::tensor::i64_proto("zero", &[], &[0]));
    b.graph
        .initializer
        .push(zoo_onnx::tensor::i64_proto("two", &[], &[-1]));
    scalar(&mut b, "k", 0.458);
    b.node(
        "g0",
        "Gather",
        &["x", "zero"],
        &["c0"],
        vec![("axis", Attr::Int(1))],
    );
    b.node(
        "g2",
        "Gather",
        &["x", "two"],
        &["c2"],
        vec![("axis", Attr::Int(1))],
    );
    b.node(
        "u0",
        "Unsqueeze",
        &["c0"],
        &["u0"],
        vec![("axes", Attr::Ints(vec![1]))],
    );
    b.node(
        "u2",
        "Unsqueeze",
        &["c2"],
        &["u2"],
        vec![("axes", Attr::Ints(vec![1]))],
    );
    b.node("m", "Mul", &["u0", "k"], &["m0"], vec![]);
    b.node(
        "cat",
        "Concat",
        &["m0", "u2", "x"],
        &["z"],
        vec![("axis", Attr::Int(1))],
    );
    assert_parity(&finish(&mut b, "z", 11), 3);
}

/// `x.view(x.size(0), -1)` as the TorchScript exporter writes it, with a dynamic batch.
#[test]
fn shape_arithmetic_flatten_runs_at_any_batch() {
    let mut rng = SeededRng::new(9);
    let mut b = GraphBuilder::new("x", &[None, Some(2), Some(3), Some(3)]);
    weights(&mut b, &mut rng, "W", &[4, 18]);
    b.graph
        .initializer
        .push(zoo_onnx::tensor::i64_proto("i0", &[], &[0]));
    b.init_i64("minus_one", &[-1]);
    b.init_i64("ax0", &[0]);
    b.node("shape", "Shape", &["x"], &["s"], vec![]);
    b.node(
        "gather",
        "Gather",
        &["s", "i0"],
        &["n"],
        vec![("axis", Attr::Int(0))],
    );
    b.node("unsq", "Unsqueeze", &["n", "ax0"], &["n1"], vec![]);
    b.node(
        "cat",
        "Concat",
        &["n1", "minus_one"],
        &["target"],
        vec![("axis", Attr::Int(0))],
    );
    b.node(
        "cast",
        "Cast",
        &["target"],
        &["target64"],
        vec![("to", Attr::Int(7))],
    );
    b.node("flat", "Reshape", &["x", "target64"], &["f"], vec![]);
    b.node(
        "fc",
        "Gemm",
        &["f", "W"],
        &["y"],
        vec![("transB", Attr::Int(1))],
    );
    b.output("y", &[None, Some(4)]);
    let m = b.build(13);
    let onnx = OnnxModel::from_bytes(m.encode_to_vec()).unwrap();
    assert!(onnx.graph.nodes.iter().all(|n| n.op.onnx_type() != "Shape"));
    assert!(
        onnx.graph.shapes.fixed_batch.is_none(),
        "{:?}",
        onnx.graph.shapes.fixed_batch
    );
    assert!(onnx.graph.folded.batch_dependent.contains("target64"));
    assert_parity(&m, 5);
}

#[test]
fn identity_of_an_initializer_feeds_batch_norm_statistics() {
    let mut rng = SeededRng::new(5);
    let mut b = GraphBuilder::default();
    input(&mut b, [3, 4, 4]);
    weights(&mut b, &mut rng, "scale", &[3]);
    weights(&mut b, &mut rng, "bias", &[3]);
    b.init_f32("mean", &[3], vec![0.1, -0.2, 0.3]);
    b.init_f32("var", &[3], vec![1.5, 0.5, 2.0]);
    b.node("id_mean", "Identity", &["mean"], &["mean_copy"], vec![]);
    b.node("id_var", "Identity", &["var"], &["var_copy"], vec![]);
    b.node(
        "bn",
        "BatchNormalization",
        &["x", "scale", "bias", "mean_copy", "var_copy"],
        &["z"],
        vec![],
    );
    let m = finish(&mut b, "z", 13);
    let onnx = OnnxModel::from_bytes(m.encode_to_vec()).unwrap();
    assert!(onnx
        .graph
        .nodes
        .iter()
        .all(|n| !matches!(n.op, zoo_onnx::Op::Array(Array::Identity))));
    assert_parity(&m, 3);
}

#[test]
fn float_cast_of_a_computed_tensor_is_identity_and_other_casts_are_refused() {
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 3]);
    b.node("c", "Cast", &["x"], &["z"], vec![("to", Attr::Int(1))]);
    assert_parity(&finish(&mut b, "z", 13), 2);
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 3]);
    b.node("c", "Cast", &["x"], &["z"], vec![("to", Attr::Int(7))]);
    let e = OnnxModel::from_bytes(finish(&mut b, "z", 13).encode_to_vec()).unwrap_err();
    assert!(e.to_string().contains("Cast of a computed tensor"), "{e}");
}

/// Settings that moved from attributes to inputs survive `zoo export --opset` both ways.
#[test]
fn moved_settings_convert_between_opsets_both_ways() {
    let mut b = GraphBuilder::default();
    input(&mut b, [4, 6, 5]);
    b.node(
        "clip",
        "Clip",
        &["x"],
        &["c"],
        vec![("min", Attr::Float(-0.2)), ("max", Attr::Float(0.7))],
    );
    b.node(
        "pad",
        "Pad",
        &["c"],
        &["p"],
        vec![("pads", Attr::Ints(vec![0, 0, 1, 0, 0, 0, 1, 1]))],
    );
    b.node(
        "slice",
        "Slice",
        &["p"],
        &["s"],
        vec![
            ("starts", Attr::Ints(vec![1])),
            ("ends", Attr::Ints(vec![4])),
            ("axes", Attr::Ints(vec![1])),
        ],
    );
    b.node(
        "split",
        "Split",
        &["s"],
        &["s1", "s2"],
        vec![("axis", Attr::Int(2))],
    );
    b.node(
        "cat",
        "Concat",
        &["s2", "s1"],
        &["sc"],
        vec![("axis", Attr::Int(2))],
    );
    b.node(
        "mean",
        "ReduceMean",
        &["sc"],
        &["m"],
        vec![("axes", Attr::Ints(vec![3])), ("keepdims", Attr::Int(0))],
    );
    b.node(
        "un",
        "Unsqueeze",
        &["m"],
        &["u"],
        vec![("axes", Attr::Ints(vec![3]))],
    );
    b.node(
        "sq",
        "Squeeze",
        &["u"],
        &["q"],
        vec![("axes", Attr::Ints(vec![3]))],
    );
    b.output("q", &[None, None, None]);
    let m9 = b.build(9);
    assert_parity(&m9, 2);
    for to in [13, 18, 21] {
        let up = zoo_onnx::opset::convert(m9.clone(), 9, to, &|_| None).unwrap();
        assert_parity(&up, 2);
        let down = zoo_onnx::opset::convert(up, to, 9, &|_| None).unwrap();
        assert_parity(&down, 2);
    }
}

/// A tf2onnx-style file: NHWC input transposed to NCHW first, TF "SAME" padding on a stride-2
/// conv, ReLU6 as Clip. zoo and tract are both fed NCHW images; the engines transpose.
#[test]
fn channels_last_input_of_tensorflow_exports() {
    let mut rng = SeededRng::new(12);
    let mut b = GraphBuilder::new("images:0", &[None, Some(9), Some(7), Some(3)]);
    weights(&mut b, &mut rng, "conv/kernel", &[4, 3, 3, 3]);
    b.node(
        "to_nchw",
        "Transpose",
        &["images:0"],
        &["x"],
        vec![("perm", Attr::Ints(vec![0, 3, 1, 2]))],
    );
    b.node(
        "conv",
        "Conv",
        &["x", "conv/kernel"],
        &["c"],
        vec![
            ("strides", Attr::Ints(vec![2, 2])),
            ("auto_pad", Attr::Str("SAME_UPPER")),
        ],
    );
    b.node(
        "relu6",
        "Clip",
        &["c"],
        &["r"],
        vec![("min", Attr::Float(0.0)), ("max", Attr::Float(6.0))],
    );
    let m = finish(&mut b, "r", 9);
    let onnx = OnnxModel::from_bytes(m.encode_to_vec()).unwrap();
    assert_eq!(onnx.graph.layout, zoo_onnx::InputLayout::Nhwc);
    assert_eq!(onnx.graph.input_chw(), [3, 9, 7]);
    assert_parity(&m, 3);
}

#[test]
fn a_long_chain_beyond_tracts_optimiser_limit_still_matches() {
    // 3,000 nodes: tract runs it unoptimised (its optimiser is quadratic in the node count).
    let mut b = GraphBuilder::new("x", &[Some(1), Some(2), Some(4), Some(4)]);
    let mut last = "x".to_string();
    for i in 0..3000 {
        let (op, out) = if i % 2 == 0 {
            ("Relu", format!("r{i}"))
        } else {
            ("Tanh", format!("t{i}"))
        };
        b.node(&format!("n{i}"), op, &[&last], &[&out], vec![]);
        last = out;
    }
    let model = finish(&mut b, &last, 13);
    assert!(assert_parity(&model, 2) <= 1e-4);
}
