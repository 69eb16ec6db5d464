//! Attention (opset 23), burn (flex and the autodiff path) against tract: 4-D and 3-D
//! inputs, grouped key/value heads, an explicit scale, the causal triangle, soft-capping
//! (against the formula written out), and boolean and additive masks. Caches are refused
//! clearly.

mod support;

use burn::backend::{Autodiff, Flex};
use zoo_net::Network;
use zoo_onnx::builder::{Attr, GraphBuilder, SeededRng};
use zoo_onnx::pb::TensorProto;
use zoo_onnx::OnnxModel;
use zoo_parity::{compare, run_network, TractEngine};

use support::{assert_parity, finish, input, weights};

/// Q = x, K = x * wk, V = x + wv on `[N, heads, sequence, head size]`.
fn four_d(b: &mut GraphBuilder, rng: &mut SeededRng, heads: usize, kv_heads: usize) {
    input(b, [heads, 5, 4]);
    weights(b, rng, "wk", &[kv_heads, 5, 4]);
    weights(b, rng, "wv", &[kv_heads, 5, 4]);
    b.init_i64("start", &[0]);
    b.init_i64("end", &[kv_heads as i64]);
    b.init_i64("axis", &[1]);
    b.node(
        "kv",
        "Slice",
        &["x", "start", "end", "axis"],
        &["xs"],
        vec![],
    );
    b.node("k", "Mul", &["xs", "wk"], &["k"], vec![]);
    b.node("v", "Add", &["xs", "wv"], &["v"], vec![]);
}

/// [`four_d`] then one Attention node reading `inputs` and writing `outputs`.
fn one_attention(
    seed: u64,
    heads: usize,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<(&'static str, Attr)>,
) -> zoo_onnx::pb::ModelProto {
    let mut rng = SeededRng::new(seed);
    let mut b = GraphBuilder::default();
    four_d(&mut b, &mut rng, heads, 2);
    b.node("att", "Attention", inputs, outputs, attrs);
    finish(&mut b, "att_out", 23)
}

fn import_error(model: &zoo_onnx::pb::ModelProto) -> String {
    let bytes = prost::Message::encode_to_vec(model);
    OnnxModel::from_bytes(bytes).unwrap_err().to_string()
}

#[test]
fn four_d_attention_with_defaults_scale_and_causal() {
    let settings: Vec<Vec<(&'static str, Attr)>> = vec![
        vec![],
        vec![("scale", Attr::Float(0.3))],
        vec![("is_causal", Attr::Int(1))],
    ];
    for attrs in settings {
        let model = one_attention(21, 2, &["x", "k", "v"], &["att_out"], attrs.clone());
        let worst = assert_parity(&model, 3);
        println!("{attrs:?}: max rel diff {worst:.1e}");
    }
}

/// tract does not soft-cap: zoo's Attention is checked against tract running the formula
/// written out, `softmax(softcap * tanh(Q K^T * scale / softcap) + causal) V`.
#[test]
fn softcap_matches_the_formula_written_out() {
    let build = |written_out: bool| {
        let mut rng = SeededRng::new(21);
        let mut b = GraphBuilder::default();
        four_d(&mut b, &mut rng, 2, 2);
        if written_out {
            let causal: Vec<f32> = (0..25)
                .map(|n| {
                    if n % 5 > n / 5 {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
                .collect();
            b.init_f32("causal", &[5, 5], causal);
            b.init_f32("scale", &[], vec![0.5]);
            b.init_f32("cap", &[], vec![2.0]);
            let perm = vec![("perm", Attr::Ints(vec![0, 1, 3, 2]))];
            b.node("kt", "Transpose", &["k"], &["kt"], perm);
            b.node("qk", "MatMul", &["x", "kt"], &["qk"], vec![]);
            b.node("scaled", "Mul", &["qk", "scale"], &["s"], vec![]);
            b.node("div", "Div", &["s", "cap"], &["d"], vec![]);
            b.node("tanh", "Tanh", &["d"], &["t"], vec![]);
            b.node("capped", "Mul", &["t", "cap"], &["c"], vec![]);
            b.node("masked", "Add", &["c", "causal"], &["m"], vec![]);
            let last = vec![("axis", Attr::Int(-1))];
            b.node("softmax", "Softmax", &["m"], &["p"], last);
            b.node("pv", "MatMul", &["p", "v"], &["att_out"], vec![]);
        } else {
            let attrs = vec![("softcap", Attr::Float(2.0)), ("is_causal", Attr::Int(1))];
            b.node("att", "Attention", &["x", "k", "v"], &["att_out"], attrs);
        }
        prost::Message::encode_to_vec(&finish(&mut b, "att_out", 23))
    };
    assert_zoo_matches_tract(build(false), &build(true));
}

/// zoo runs `ours` (on the autodiff path, batch 2), tract runs `reference` one image at a
/// time; they must agree.
fn assert_zoo_matches_tract(ours: Vec<u8>, reference: &[u8]) {
    let onnx = OnnxModel::from_bytes(ours).unwrap();
    let chw = onnx.graph.input_chw();
    let output = onnx.graph.output.name.clone();
    let tract = TractEngine::from_bytes(reference, chw, false).unwrap();
    let images = SeededRng::new(7).values(2 * chw.iter().product::<usize>(), 2.0);
    let expected = tract.run_batch(&images, 1).unwrap();
    let device = Default::default();
    let net = Network::<Autodiff<Flex>>::from_model(onnx, &device);
    let got = run_network(&net, &images, 2, &output, &device).unwrap();
    let agreement = compare(&got, &expected);
    assert!(agreement.max_rel_diff <= 1e-4, "{agreement:?}");
}

#[test]
fn grouped_key_value_heads_are_shared_by_query_heads() {
    let model = one_attention(22, 4, &["x", "k", "v"], &["att_out"], vec![]);
    assert_parity(&model, 2);
}

/// `[N, sequence, heads * head size]` with the head counts as attributes (2 query heads
/// sharing one key/value head).
#[test]
fn three_d_inputs_with_head_counts() {
    let mut rng = SeededRng::new(23);
    let mut b = GraphBuilder::default();
    input(&mut b, [5, 4, 2]);
    b.init_i64("shape", &[1, 5, 8]);
    b.node("r", "Reshape", &["x", "shape"], &["q"], vec![]);
    weights(&mut b, &mut rng, "wk", &[8, 4]);
    weights(&mut b, &mut rng, "wv", &[8, 4]);
    b.node("k", "MatMul", &["q", "wk"], &["k"], vec![]);
    b.node("v", "MatMul", &["q", "wv"], &["v"], vec![]);
    let heads = vec![
        ("q_num_heads", Attr::Int(2)),
        ("kv_num_heads", Attr::Int(1)),
    ];
    b.node("att", "Attention", &["q", "k", "v"], &["att_out"], heads);
    let model = finish(&mut b, "att_out", 23);
    let onnx = OnnxModel::from_bytes(prost::Message::encode_to_vec(&model)).unwrap();
    assert!(
        onnx.graph.shapes.fixed_batch.is_none(),
        "{:?}",
        onnx.graph.shapes.fixed_batch
    );
    assert_parity(&model, 3);
}

fn bool_mask(name: &str, dims: &[i64], values: &[bool]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 9,
        raw_data: values.iter().map(|&v| u8::from(v)).collect(),
        ..Default::default()
    }
}

/// A boolean mask (tract takes only additive ones: checked against its 0/-inf form) and an
/// additive one.
#[test]
fn boolean_and_additive_masks() {
    // Query i may attend keys j != (i + 1) % 5, and never key 4 from query 0.
    let allowed: Vec<bool> = (0..25)
        .map(|n| {
            let (i, j) = (n / 5, n % 5);
            j != (i + 1) % 5 && !(i == 0 && j == 4)
        })
        .collect();
    let build = |boolean: bool| {
        let mut rng = SeededRng::new(24);
        let mut b = GraphBuilder::default();
        four_d(&mut b, &mut rng, 2, 2);
        weights(&mut b, &mut rng, "additive", &[2, 5, 5]);
        if !boolean {
            let bias = allowed
                .iter()
                .map(|&a| if a { 0.0 } else { f32::NEG_INFINITY });
            b.init_f32("allowed", &[5, 5], bias.collect());
        }
        b.node(
            "a1",
            "Attention",
            &["x", "k", "v", "allowed"],
            &["y1"],
            vec![],
        );
        b.node(
            "a2",
            "Attention",
            &["y1", "k", "v", "additive"],
            &["att_out"],
            vec![],
        );
        let mut model = finish(&mut b, "att_out", 23);
        if boolean {
            let graph = model.graph.as_mut().unwrap();
            graph
                .initializer
                .push(bool_mask("allowed", &[5, 5], &allowed));
        }
        model
    };
    assert_parity(&build(false), 2);
    let encode = |m: &zoo_onnx::pb::ModelProto| prost::Message::encode_to_vec(m);
    assert_zoo_matches_tract(encode(&build(true)), &encode(&build(false)));
}

#[test]
fn caches_and_score_outputs_are_refused_with_the_reason() {
    let caches = ["x", "k", "v", "", "k", "v"];
    let e = import_error(&one_attention(25, 2, &caches, &["att_out"], vec![]));
    assert!(e.contains("att") && e.contains("past_key"), "{e}");
    let outputs = ["att_out", "pk"];
    let e = import_error(&one_attention(25, 2, &["x", "k", "v"], &outputs, vec![]));
    assert!(e.contains("only the attention output"), "{e}");
}

/// Attention written out as nodes (the spellings of PyTorch's `scaled_dot_product_attention`
/// at opset 17, of timm's and of Hugging Face's own code) becomes one Attention node that
/// matches tract running the nodes; a chain that is not attention stays as written.
#[test]
fn written_out_attention_becomes_one_node() {
    let spell = |how: &str| {
        let mut rng = SeededRng::new(23);
        let mut b = GraphBuilder::default();
        four_d(&mut b, &mut rng, 2, 2);
        b.init_f32("root", &[], vec![0.5f32.sqrt()]);
        b.init_f32("scale", &[], vec![0.5]);
        b.init_f32("two", &[], vec![2.0]);
        let perm = |p: Vec<i64>| vec![("perm", Attr::Ints(p))];
        let last = |axis: i64| vec![("axis", Attr::Int(axis))];
        let (softmax_axis, kt_perm) = (
            if how == "softmax over queries" { 2 } else { -1 },
            vec![0, 1, 3, 2],
        );
        match how {
            "torch sdpa" => {
                b.node("qs", "Mul", &["x", "root"], &["q1"], vec![]);
                b.node("kt", "Transpose", &["k"], &["kt"], perm(kt_perm.clone()));
                b.node("ks", "Mul", &["kt", "root"], &["k1"], vec![]);
            }
            "timm" => {
                b.node("qs", "Mul", &["scale", "x"], &["q1"], vec![]);
                b.node("kt", "Transpose", &["k"], &["k1"], perm(kt_perm.clone()));
            }
            _ => {
                b.node("q1", "Identity", &["x"], &["q1"], vec![]);
                b.node("kt", "Transpose", &["k"], &["k1"], perm(kt_perm));
            }
        }
        b.node("qk", "MatMul", &["q1", "k1"], &["qk"], vec![]);
        let scores = if how == "hugging face" || how == "softmax over queries" {
            b.node("div", "Div", &["qk", "two"], &["s"], vec![]);
            "s"
        } else {
            "qk"
        };
        b.node("softmax", "Softmax", &[scores], &["p"], last(softmax_axis));
        b.node("pv", "MatMul", &["p", "v"], &["att_out"], vec![]);
        finish(&mut b, "att_out", 17)
    };
    let ops = |model: &zoo_onnx::pb::ModelProto| -> Vec<&'static str> {
        let onnx = OnnxModel::from_bytes(prost::Message::encode_to_vec(model)).unwrap();
        onnx.graph.nodes.iter().map(|n| n.op.onnx_type()).collect()
    };
    for how in ["torch sdpa", "timm", "hugging face"] {
        let model = spell(how);
        let found = ops(&model);
        assert!(found.contains(&"Attention"), "{how}: {found:?}");
        assert!(!found.contains(&"Softmax"), "{how}: {found:?}");
        let worst = assert_parity(&model, 3);
        println!("{how}: max rel diff {worst:.1e}");
    }
    let model = spell("softmax over queries");
    assert!(!ops(&model).contains(&"Attention"));
    assert_parity(&model, 3);
}

/// timm's attention block around a written-out attention: one projection packs Q, K and V
/// (`[N, T, 3*H*D]`), `Reshape [N, T, 3, H, D] -> Transpose (2, 0, 3, 1, 4)` takes the heads
/// apart (then Split and Squeeze, or three Gathers, take Q, K and V), and `Transpose
/// (0, 2, 1, 3) -> Reshape [N, T, H*D]` puts them back.
fn packed_block(how: &str) -> zoo_onnx::pb::ModelProto {
    let (t, f, h, d) = (6i64, 5usize, 2i64, 4i64);
    let mut rng = SeededRng::new(29);
    let mut b = GraphBuilder::default();
    input(&mut b, [1, t as usize, f]);
    weights(&mut b, &mut rng, "w", &[f, (3 * h * d) as usize]);
    weights(&mut b, &mut rng, "bias", &[(3 * h * d) as usize]);
    b.init_i64("tokens", &[-1, t, f as i64]);
    b.init_i64("heads", &[-1, t, 3, h, d]);
    b.init_i64("merged", &[-1, t, h * d]);
    b.init_i64("first", &[0]);
    b.init_f32("scale", &[], vec![0.35]);
    let perm = |p: Vec<i64>| vec![("perm", Attr::Ints(p))];
    b.node("r0", "Reshape", &["x", "tokens"], &["xt"], vec![]);
    b.node("proj", "MatMul", &["xt", "w"], &["qkv0"], vec![]);
    b.node("bias_add", "Add", &["qkv0", "bias"], &["qkv"], vec![]);
    b.node("r1", "Reshape", &["qkv", "heads"], &["r"], vec![]);
    b.node("tr", "Transpose", &["r"], &["p"], perm(vec![2, 0, 3, 1, 4]));
    let parts = ["q", "k", "v"];
    if how == "gather" {
        for (i, part) in parts.iter().enumerate() {
            let index = format!("i{i}");
            b.init_i64(&index, &[i as i64]);
            let axis0 = vec![("axis", Attr::Int(0))];
            b.node(&format!("g{i}"), "Gather", &["p", &index], &[part], axis0);
        }
    } else {
        let pieces = ["s0", "s1", "s2"];
        b.node(
            "split",
            "Split",
            &["p"],
            &pieces,
            vec![("axis", Attr::Int(0))],
        );
        for (piece, part) in pieces.iter().zip(parts) {
            b.node(
                &format!("sq_{part}"),
                "Squeeze",
                &[piece, "first"],
                &[part],
                vec![],
            );
        }
    }
    b.node("qs", "Mul", &["q", "scale"], &["q1"], vec![]);
    b.node("kt", "Transpose", &["k"], &["k1"], perm(vec![0, 1, 3, 2]));
    b.node("qk", "MatMul", &["q1", "k1"], &["qk"], vec![]);
    b.node(
        "softmax",
        "Softmax",
        &["qk"],
        &["probs"],
        vec![("axis", Attr::Int(-1))],
    );
    b.node("pv", "MatMul", &["probs", "v"], &["heads_out"], vec![]);
    if how == "no merge" {
        return finish(&mut b, "heads_out", 17);
    }
    b.node(
        "back",
        "Transpose",
        &["heads_out"],
        &["swapped"],
        perm(vec![0, 2, 1, 3]),
    );
    b.node(
        "r2",
        "Reshape",
        &["swapped", "merged"],
        &["att_out"],
        vec![],
    );
    let mut model = finish(&mut b, "att_out", 17);
    // Scalar indices: each Gather drops the first axis.
    for i in (0..3).filter(|_| how == "gather") {
        support::set_dims(&mut model, &format!("i{i}"), &[]);
    }
    model
}

/// The packed block becomes one packed Attention node (no transposes, splits, squeezes or
/// gathers left), matching tract running the nodes at batch 3; without the merge after it,
/// the heads stay as written.
#[test]
fn packed_heads_around_attention_become_one_packed_node() {
    let imported = |model: &zoo_onnx::pb::ModelProto| {
        OnnxModel::from_bytes(prost::Message::encode_to_vec(model)).unwrap()
    };
    for how in ["split", "gather"] {
        let model = packed_block(how);
        let onnx = imported(&model);
        let ops: Vec<&str> = onnx.graph.nodes.iter().map(|n| n.op.onnx_type()).collect();
        let packed = onnx
            .graph
            .nodes
            .iter()
            .any(|n| matches!(&n.op, zoo_onnx::Op::Attention(a) if a.packed && a.q_heads == 2));
        assert!(packed, "{how}: {ops:?}");
        for gone in ["Transpose", "Split", "Squeeze", "Gather", "Softmax"] {
            assert!(!ops.contains(&gone), "{how}: {ops:?}");
        }
        let worst = assert_parity(&model, 3);
        println!("{how}: max rel diff {worst:.1e}");
    }
    let model = packed_block("no merge");
    let onnx = imported(&model);
    let packed = onnx
        .graph
        .nodes
        .iter()
        .any(|n| matches!(&n.op, zoo_onnx::Op::Attention(a) if a.packed));
    assert!(!packed);
    assert_parity(&model, 3);
}
