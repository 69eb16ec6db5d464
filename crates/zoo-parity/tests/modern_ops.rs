//! The ops transformer-era exports brought in, each on a small graph, burn (flex and the
//! autodiff path) against tract: normalisations, GELU, element-wise math, comparisons and
//! selection, copies, reductions, N-D Gather, stepped slices, Range and CastLike.

mod support;

use zoo_onnx::builder::{Attr, GraphBuilder, SeededRng};
use zoo_onnx::OnnxModel;

use support::{assert_parity, finish, input, set_dims, weights};

fn ints(v: &[i64]) -> Attr {
    Attr::Ints(v.to_vec())
}

#[test]
fn layer_normalization_over_the_last_one_and_two_axes() {
    let mut rng = SeededRng::new(3);
    let mut b = GraphBuilder::default();
    input(&mut b, [3, 5, 6]);
    weights(&mut b, &mut rng, "s1", &[6]);
    weights(&mut b, &mut rng, "b1", &[6]);
    weights(&mut b, &mut rng, "s2", &[5, 6]);
    b.node(
        "ln1",
        "LayerNormalization",
        &["x", "s1", "b1"],
        &["a"],
        vec![],
    );
    let axis = vec![("axis", Attr::Int(-2)), ("epsilon", Attr::Float(1e-3))];
    b.node("ln2", "LayerNormalization", &["a", "s2"], &["out"], axis);
    assert_parity(&finish(&mut b, "out", 17), 3);
}

/// Opset 16 has no LayerNormalization: exporters write it out.
#[test]
fn layer_norm_written_out_at_opset_16() {
    let mut rng = SeededRng::new(4);
    let mut b = GraphBuilder::default();
    input(&mut b, [3, 4, 6]);
    weights(&mut b, &mut rng, "w", &[6]);
    weights(&mut b, &mut rng, "bias", &[6]);
    b.init_f32("two", &[], vec![2.0]);
    b.init_f32("eps", &[], vec![1e-5]);
    let last = || vec![("axes", ints(&[-1]))];
    b.node("mean", "ReduceMean", &["x"], &["m"], last());
    b.node("sub", "Sub", &["x", "m"], &["d"], vec![]);
    b.node("pow", "Pow", &["d", "two"], &["p"], vec![]);
    b.node("var", "ReduceMean", &["p"], &["v"], last());
    b.node("add", "Add", &["v", "eps"], &["ve"], vec![]);
    b.node("sqrt", "Sqrt", &["ve"], &["sd"], vec![]);
    b.node("div", "Div", &["d", "sd"], &["n"], vec![]);
    b.node("mul", "Mul", &["n", "w"], &["nw"], vec![]);
    b.node("shift", "Add", &["nw", "bias"], &["out"], vec![]);
    let model = finish(&mut b, "out", 16);
    // Recognised and run as one layer norm, named after its scale.
    let onnx = OnnxModel::from_bytes(prost::Message::encode_to_vec(&model)).unwrap();
    let ops: Vec<&str> = onnx.graph.nodes.iter().map(|n| n.op.onnx_type()).collect();
    assert_eq!(ops, ["LayerNormalization", "Flatten"]);
    assert_eq!(onnx.graph.nodes[0].label, "mul");
    assert_parity(&model, 2);
}

/// ConvNeXt's `LayerNorm2d` as exported: Transpose to channels last, LayerNormalization over
/// the last axis, Transpose back. It becomes one LayerNorm over channels (named after the
/// LayerNormalization) that matches tract running the three nodes; the same nodes with the
/// norm over the last two axes stay as written.
#[test]
fn layer_norm_between_channel_transposes_becomes_one_node() {
    let block = |axis: i64| {
        let mut rng = SeededRng::new(6);
        let mut b = GraphBuilder::default();
        input(&mut b, [6, 5, 7]);
        let normalised: &[usize] = if axis == -1 { &[6] } else { &[7, 6] };
        weights(&mut b, &mut rng, "w", normalised);
        weights(&mut b, &mut rng, "bias", normalised);
        b.node(
            "last",
            "Transpose",
            &["x"],
            &["t"],
            vec![("perm", ints(&[0, 2, 3, 1]))],
        );
        let attrs = vec![("axis", Attr::Int(axis)), ("epsilon", Attr::Float(1e-6))];
        b.node(
            "norm",
            "LayerNormalization",
            &["t", "w", "bias"],
            &["n"],
            attrs,
        );
        b.node(
            "first",
            "Transpose",
            &["n"],
            &["out"],
            vec![("perm", ints(&[0, 3, 1, 2]))],
        );
        finish(&mut b, "out", 17)
    };
    let ops = |model| {
        let onnx = OnnxModel::from_bytes(prost::Message::encode_to_vec(model)).unwrap();
        let over = onnx.graph.nodes.iter().any(|n| {
            matches!(
                n.op,
                zoo_onnx::Op::Norm(zoo_onnx::ops::Norm::OverChannels { .. })
            ) && n.label == "norm"
        });
        (
            onnx.graph
                .nodes
                .iter()
                .map(|n| n.op.onnx_type())
                .collect::<Vec<_>>(),
            over,
        )
    };
    let model = block(-1);
    let (found, over) = ops(&model);
    assert_eq!(found, ["LayerNormalization", "Flatten"]);
    assert!(over);
    let worst = assert_parity(&model, 3);
    println!("over channels: max rel diff {worst:.1e}");
    let model = block(-2);
    let (found, over) = ops(&model);
    assert!(found.contains(&"Transpose") && !over, "{found:?}");
    assert_parity(&model, 3);
}

#[test]
fn instance_normalization() {
    let mut rng = SeededRng::new(5);
    let mut b = GraphBuilder::default();
    input(&mut b, [4, 5, 3]);
    weights(&mut b, &mut rng, "s", &[4]);
    weights(&mut b, &mut rng, "t", &[4]);
    let eps = vec![("epsilon", Attr::Float(1e-4))];
    b.node(
        "in",
        "InstanceNormalization",
        &["x", "s", "t"],
        &["out"],
        eps,
    );
    assert_parity(&finish(&mut b, "out", 11), 3);
}

/// Before opset 20 exporters write GELU out; each spelling becomes one `Gelu` node.
#[test]
fn erf_written_gelu() {
    let ops_of = |model: &zoo_onnx::pb::ModelProto| -> Vec<String> {
        let onnx = OnnxModel::from_bytes(prost::Message::encode_to_vec(model)).unwrap();
        let ops = onnx
            .graph
            .nodes
            .iter()
            .map(|n| n.op.onnx_type().to_string());
        ops.collect()
    };
    // torch's: (x * (1 + erf(x / divisor))) * 0.5, GELU when the divisor is sqrt 2.
    let torch_spelling = |divisor: f32| {
        let mut b = GraphBuilder::default();
        input(&mut b, [2, 3, 4]);
        b.init_f32("root2", &[], vec![divisor]);
        b.init_f32("one", &[], vec![1.0]);
        b.init_f32("half", &[], vec![0.5]);
        b.node("div", "Div", &["x", "root2"], &["d"], vec![]);
        b.node("erf", "Erf", &["d"], &["e"], vec![]);
        b.node("add", "Add", &["e", "one"], &["a"], vec![]);
        b.node("mul", "Mul", &["x", "a"], &["m"], vec![]);
        b.node("halve", "Mul", &["m", "half"], &["out"], vec![]);
        finish(&mut b, "out", 13)
    };
    let model = torch_spelling(std::f32::consts::SQRT_2);
    assert_eq!(ops_of(&model), ["Gelu", "Flatten"]);
    assert_parity(&model, 2);

    // The half first and x scaled by 1/sqrt 2: (x * 0.5) * (1 + erf(x * 0.7071))
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 4]);
    b.init_f32("inv_root2", &[], vec![std::f32::consts::FRAC_1_SQRT_2]);
    b.init_f32("one", &[], vec![1.0]);
    b.init_f32("half", &[], vec![0.5]);
    b.node("halve", "Mul", &["x", "half"], &["h"], vec![]);
    b.node("scale", "Mul", &["x", "inv_root2"], &["d"], vec![]);
    b.node("erf", "Erf", &["d"], &["e"], vec![]);
    b.node("add", "Add", &["one", "e"], &["a"], vec![]);
    b.node("mul", "Mul", &["h", "a"], &["out"], vec![]);
    let model = finish(&mut b, "out", 13);
    assert_eq!(ops_of(&model), ["Gelu", "Flatten"]);
    assert_parity(&model, 2);

    // Another divisor is not GELU: left as written.
    let model = torch_spelling(1.5);
    assert!(!ops_of(&model).contains(&"Gelu".to_string()));
    assert_parity(&model, 2);
}

#[test]
fn element_wise_functions() {
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 4]);
    b.init_f32("one", &[], vec![1.0]);
    b.node("neg", "Neg", &["x"], &["n"], vec![]);
    b.node("abs", "Abs", &["x"], &["a"], vec![]);
    b.node("exp", "Exp", &["x"], &["e"], vec![]);
    b.node("a1", "Add", &["a", "one"], &["a1"], vec![]);
    b.node("log", "Log", &["a1"], &["l"], vec![]);
    b.node("sqrt", "Sqrt", &["a"], &["s"], vec![]);
    b.node("rec", "Reciprocal", &["a1"], &["r"], vec![]);
    b.node("ceil", "Ceil", &["x"], &["c"], vec![]);
    b.node("floor", "Floor", &["x"], &["f"], vec![]);
    let parts = ["n", "a", "e", "l", "s", "r", "c", "f"];
    b.node(
        "cat",
        "Concat",
        &parts,
        &["out"],
        vec![("axis", Attr::Int(1))],
    );
    assert_parity(&finish(&mut b, "out", 13), 2);
}

#[test]
fn pow_with_scalar_and_tensor_exponents_and_fmod() {
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 4]);
    b.init_f32("three", &[], vec![3.0]);
    b.init_f32("halves", &[4], vec![0.5, 1.0, 1.5, 2.0]);
    b.init_f32("divisor", &[4], vec![0.7, -0.3, 1.1, 0.45]);
    b.node("cube", "Pow", &["x", "three"], &["c"], vec![]);
    b.node("abs", "Abs", &["x"], &["a"], vec![]);
    b.node("pow", "Pow", &["a", "halves"], &["p"], vec![]);
    b.node(
        "mod",
        "Mod",
        &["x", "divisor"],
        &["m"],
        vec![("fmod", Attr::Int(1))],
    );
    b.node(
        "cat",
        "Concat",
        &["c", "p", "m"],
        &["out"],
        vec![("axis", Attr::Int(1))],
    );
    assert_parity(&finish(&mut b, "out", 13), 2);
}

#[test]
fn comparisons_not_and_where_on_data() {
    let mut rng = SeededRng::new(6);
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 4]);
    weights(&mut b, &mut rng, "other", &[4]);
    b.init_f32("zero", &[], vec![0.0]);
    b.node("gt", "Greater", &["x", "other"], &["g"], vec![]);
    b.node("lt", "Less", &["x", "zero"], &["l"], vec![]);
    b.node("not", "Not", &["g"], &["ng"], vec![]);
    b.node("floor", "Floor", &["x"], &["f"], vec![]);
    b.node("eq", "Equal", &["f", "zero"], &["e"], vec![]);
    b.node("w1", "Where", &["ng", "x", "other"], &["a"], vec![]);
    b.node("w2", "Where", &["e", "a", "zero"], &["b"], vec![]);
    b.node("w3", "Where", &["l", "b", "x"], &["out"], vec![]);
    assert_parity(&finish(&mut b, "out", 13), 3);
}

#[test]
fn expand_and_tile() {
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 1, 4]);
    b.init_i64("shape", &[1, 2, 3, 4]);
    b.init_i64("repeats", &[1, 1, 2, 3]);
    b.node("expand", "Expand", &["x", "shape"], &["e"], vec![]);
    b.node("tile", "Tile", &["e", "repeats"], &["out"], vec![]);
    assert_parity(&finish(&mut b, "out", 13), 2);
}

#[test]
fn reduce_sum_in_input_form_and_reduce_min() {
    let mut b = GraphBuilder::default();
    input(&mut b, [3, 4, 5]);
    b.init_i64("axes", &[-1]);
    b.node("sum", "ReduceSum", &["x", "axes"], &["s"], vec![]);
    let attrs = vec![("axes", ints(&[2])), ("keepdims", Attr::Int(1))];
    b.node("min", "ReduceMin", &["x"], &["m"], attrs);
    b.node("add", "Add", &["s", "m"], &["out"], vec![]);
    assert_parity(&finish(&mut b, "out", 13), 2);
}

/// LeViT's attention biases: a learnable table read through a constant 2-D index.
#[test]
fn gather_of_a_table_by_a_constant_2d_index() {
    let mut rng = SeededRng::new(8);
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 3]);
    weights(&mut b, &mut rng, "table", &[2, 5]);
    b.init_i64("idx", &[0, 1, 4, 2, 3, 1, 4, 0, 2]);
    b.node(
        "gather",
        "Gather",
        &["table", "idx"],
        &["g"],
        vec![("axis", Attr::Int(1))],
    );
    b.node("add", "Add", &["x", "g"], &["out"], vec![]);
    let mut model = finish(&mut b, "out", 13);
    // The index as a 3x3 table.
    set_dims(&mut model, "idx", &[3, 3]);
    assert_parity(&model, 2);
}

#[test]
fn slices_with_steps_of_two_and_minus_one() {
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 5, 6]);
    b.init_i64("starts", &[0, -1]);
    b.init_i64("ends", &[i64::MAX, i64::MIN]);
    b.init_i64("axes", &[2, 3]);
    b.init_i64("steps", &[2, -1]);
    let inputs = ["x", "starts", "ends", "axes", "steps"];
    b.node("slice", "Slice", &inputs, &["out"], vec![]);
    assert_parity(&finish(&mut b, "out", 13), 2);
}

#[test]
fn range_and_cast_like_feed_data() {
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 4]);
    b.init_i64("start", &[0]);
    b.init_i64("limit", &[4]);
    b.init_i64("delta", &[1]);
    b.node(
        "range",
        "Range",
        &["start", "limit", "delta"],
        &["r"],
        vec![],
    );
    b.node("like", "CastLike", &["r", "x"], &["rf"], vec![]);
    b.node("add", "Add", &["x", "rf"], &["out"], vec![]);
    let mut model = finish(&mut b, "out", 15);
    // Range takes scalars.
    let graph = model.graph.as_mut().unwrap();
    for t in graph.initializer.iter_mut() {
        t.dims.clear();
    }
    assert_parity(&model, 2);
}

#[test]
fn gelu_exact_and_tanh_at_opset_20() {
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 4]);
    b.node("exact", "Gelu", &["x"], &["e"], vec![]);
    let tanh = vec![("approximate", Attr::Str("tanh"))];
    b.node("approx", "Gelu", &["x"], &["t"], tanh);
    // Scaled apart so that the two halves do not tie for the top-1 comparison.
    b.init_f32("three", &[], vec![3.0]);
    b.node("scale", "Mul", &["t", "three"], &["t3"], vec![]);
    b.node(
        "cat",
        "Concat",
        &["e", "t3"],
        &["out"],
        vec![("axis", Attr::Int(1))],
    );
    assert_parity(&finish(&mut b, "out", 20), 2);
}

#[test]
fn group_normalization_per_channel_and_per_group_scales() {
    for (opset, per) in [(21, 6), (18, 3)] {
        let mut rng = SeededRng::new(9);
        let mut b = GraphBuilder::default();
        input(&mut b, [6, 3, 4]);
        weights(&mut b, &mut rng, "s", &[per]);
        weights(&mut b, &mut rng, "t", &[per]);
        let groups = vec![("num_groups", Attr::Int(3))];
        b.node(
            "gn",
            "GroupNormalization",
            &["x", "s", "t"],
            &["out"],
            groups,
        );
        assert_parity(&finish(&mut b, "out", opset), 2);
    }
}

/// Attention written as einsum (`q @ k^T` per head), and MaxViT's relative-position terms
/// against a learnable table (output rank 5).
#[test]
fn einsum_attention_and_relative_position_patterns() {
    let mut rng = SeededRng::new(10);
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 4]);
    weights(&mut b, &mut rng, "table", &[6, 4]);
    weights(&mut b, &mut rng, "table5", &[2, 3, 4]);
    let eq = |e: &'static str| vec![("equation", Attr::Str(e))];
    b.node("qk", "Einsum", &["x", "x"], &["s"], eq("bhqd,bhkd->bhqk"));
    b.node(
        "rel",
        "Einsum",
        &["x", "table"],
        &["r"],
        eq("nchw,iw->ncih"),
    );
    b.node(
        "rel5",
        "Einsum",
        &["x", "table5"],
        &["r5"],
        eq("nchw,jyw->ncjhy"),
    );
    b.node(
        "flat5",
        "Flatten",
        &["r5"],
        &["f5"],
        vec![("axis", Attr::Int(1))],
    );
    b.node(
        "flat_s",
        "Flatten",
        &["s"],
        &["fs"],
        vec![("axis", Attr::Int(1))],
    );
    b.node(
        "flat_r",
        "Flatten",
        &["r"],
        &["fr"],
        vec![("axis", Attr::Int(1))],
    );
    let cat = vec![("axis", Attr::Int(1))];
    b.node("cat", "Concat", &["fs", "fr", "f5"], &["out"], cat);
    b.output("out", &[None, None]);
    assert_parity(&b.build(13), 3);
}

#[test]
fn einsum_equations_out_of_reach_are_refused_clearly() {
    use zoo_onnx::ops::Einsum;
    assert!(Einsum::parse("ij,jk").unwrap_err().contains("explicit"));
    assert!(Einsum::parse("ii,ij->j").unwrap_err().contains("repeats"));
    assert!(Einsum::parse("ij,jk->i")
        .unwrap_err()
        .contains("summed within one operand"));
    assert!(Einsum::parse("...ij,...jk->...ik")
        .unwrap_err()
        .contains("ellipses"));
    let e = Einsum::parse("bij, bjk -> bik").unwrap();
    assert_eq!(e.labels.contracted, vec!['j']);
}

/// torchvision's Swin writes its shift mask with ScatterND: computed at import. On a
/// value computed from the image it is refused clearly.
#[test]
fn scatter_nd_of_known_values_folds_and_on_data_is_refused() {
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 4]);
    b.init_f32("z", &[3, 4], vec![0.5; 12]);
    b.init_i64("idx", &[0, 1, 2, 3]);
    b.init_f32("upd", &[2], vec![5.0, -7.0]);
    b.node(
        "scatter",
        "ScatterND",
        &["z", "idx", "upd"],
        &["mask"],
        vec![],
    );
    b.node("add", "Add", &["x", "mask"], &["out"], vec![]);
    let mut model = finish(&mut b, "out", 13);
    set_dims(&mut model, "idx", &[2, 2]);
    assert_parity(&model, 2);
    // The same scatter into the image itself.
    let graph = model.graph.as_mut().unwrap();
    let scatter = graph.node.iter_mut().find(|n| n.name == "scatter").unwrap();
    scatter.input[0] = "x".into();
    let bytes = prost::Message::encode_to_vec(&model);
    let e = OnnxModel::from_bytes(bytes).unwrap_err().to_string();
    assert!(
        e.contains("ScatterND") && e.contains("known at import"),
        "{e}"
    );
}

fn resize_model(
    attrs: Vec<(&str, Attr)>,
    scales: Option<[f32; 4]>,
    sizes: Option<[i64; 4]>,
    opset: i64,
) -> zoo_onnx::pb::ModelProto {
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 5, 6]);
    let mut inputs = vec!["x", "", "", ""];
    if opset >= 11 {
        b.init_f32("roi", &[0], vec![]);
        inputs[1] = "roi";
    }
    if let Some(s) = scales {
        b.init_f32("scales", &[4], s.to_vec());
        inputs[if opset >= 11 { 2 } else { 1 }] = "scales";
    }
    if let Some(s) = sizes {
        b.init_f32("scales", &[0], vec![]);
        inputs[2] = "scales";
        b.init_i64("sizes", &s);
        inputs[3] = "sizes";
    }
    while inputs.last() == Some(&"") {
        inputs.pop();
    }
    b.node("resize", "Resize", &inputs, &["r"], attrs);
    finish(&mut b, "r", opset)
}

#[test]
fn resize_nearest_linear_and_cubic_in_the_coordinate_modes_exporters_write() {
    let mode = |m: &'static str, c: &'static str| {
        vec![
            ("mode", Attr::Str(m)),
            ("coordinate_transformation_mode", Attr::Str(c)),
        ]
    };
    // torch's F.interpolate(scale_factor=2, mode="nearest") at opset 11+ and 10.
    let mut nearest = mode("nearest", "asymmetric");
    nearest.push(("nearest_mode", Attr::Str("floor")));
    assert_parity(
        &resize_model(nearest, Some([1.0, 1.0, 2.0, 2.0]), None, 13),
        2,
    );
    assert_parity(
        &resize_model(vec![], Some([1.0, 1.0, 2.0, 3.0]), None, 10),
        2,
    );
    // Bilinear, align_corners False and True, to given sizes and by a fractional scale.
    let sizes = Some([1, 2, 7, 9]);
    assert_parity(
        &resize_model(mode("linear", "pytorch_half_pixel"), None, sizes, 13),
        2,
    );
    assert_parity(
        &resize_model(mode("linear", "align_corners"), None, sizes, 13),
        2,
    );
    assert_parity(
        &resize_model(
            mode("linear", "half_pixel"),
            Some([1.0, 1.0, 0.5, 1.5]),
            None,
            19,
        ),
        2,
    );
    // Bicubic as torch writes it (a = -0.75).
    let mut cubic = mode("cubic", "pytorch_half_pixel");
    cubic.push(("cubic_coeff_a", Attr::Float(-0.75)));
    assert_parity(&resize_model(cubic, None, sizes, 13), 2);
}

/// tract has no Upsample (deprecated at opset 10): checked against nearest neighbours by hand.
#[test]
fn upsample_of_opset_9() {
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 4]);
    b.init_f32("scales", &[4], vec![1.0, 1.0, 2.0, 2.0]);
    let nearest = vec![("mode", Attr::Str("nearest"))];
    b.node("up", "Upsample", &["x", "scales"], &["u"], nearest);
    let model = finish(&mut b, "u", 9);
    let onnx = OnnxModel::from_bytes(prost::Message::encode_to_vec(&model)).unwrap();
    let device = Default::default();
    let net = zoo_net::Network::<burn::backend::Flex>::from_model(onnx, &device);
    let x = SeededRng::new(3).values(2 * 3 * 4, 1.0);
    let y = zoo_parity::run_network(&net, &x, 1, "y", &device).unwrap();
    assert_eq!(y[0].len(), 2 * 6 * 8);
    for (k, v) in y[0].iter().enumerate() {
        let (c, i, j) = (k / 48, k % 48 / 8, k % 8);
        assert_eq!(*v, x[c * 12 + (i / 2) * 4 + j / 2], "output {k}");
    }
}
