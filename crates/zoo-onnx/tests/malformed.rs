//! Hostile and broken files are errors with a useful message, never panics or aborts.

use prost::Message;
use zoo_onnx::builder::{Attr, GraphBuilder};
use zoo_onnx::pb::ModelProto;
use zoo_onnx::{OnnxError, OnnxModel};

fn small_model() -> ModelProto {
    let mut b = GraphBuilder::new("x", &[Some(1), Some(2), Some(6), Some(6)]);
    b.init_f32("W", &[3, 2, 3, 3], vec![0.1; 54]);
    b.init_i64("shape", &[1, -1]);
    b.node("conv", "Conv", &["x", "W"], &["c"], vec![]);
    b.node("relu", "Relu", &["c"], &["r"], vec![]);
    b.node("flat", "Reshape", &["r", "shape"], &["y"], vec![]);
    b.output("y", &[Some(1), Some(48)]);
    b.build(11)
}

fn load(model: &ModelProto) -> Result<OnnxModel, OnnxError> {
    OnnxModel::from_bytes(model.encode_to_vec())
}

fn error_text(model: &ModelProto) -> String {
    load(model).expect_err("must be refused").to_string()
}

#[test]
fn the_valid_model_loads_with_shapes() {
    let m = load(&small_model()).unwrap();
    assert_eq!(m.graph.shapes.of("c"), Some(&[1, 3, 4, 4][..]));
    assert_eq!(m.graph.shapes.of("y"), Some(&[1, 48][..]));
}

#[test]
fn truncated_files_are_decode_errors_at_every_length() {
    let bytes = small_model().encode_to_vec();
    for cut in (0..bytes.len()).step_by(7) {
        // Some prefixes happen to be valid protobuf (an empty model); those must fail later.
        match OnnxModel::from_bytes(bytes[..cut].to_vec()) {
            Ok(_) => panic!("a {cut}-byte prefix imported"),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    let err = OnnxModel::from_bytes(bytes[..bytes.len() / 2].to_vec()).unwrap_err();
    assert!(matches!(err, OnnxError::Decode(_)), "{err}");
}

#[test]
fn random_bytes_are_refused() {
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    assert!(OnnxModel::from_bytes(junk).is_err());
    assert!(OnnxModel::from_bytes(b"not an onnx file at all".to_vec()).is_err());
}

#[test]
fn unsupported_op_names_op_node_and_supported_list() {
    let mut m = small_model();
    m.graph.as_mut().unwrap().node[1].op_type = "Loop".into();
    let e = error_text(&m);
    assert!(
        e.contains("Loop") && e.contains("`relu`") && e.contains("Conv, Div"),
        "{e}"
    );
}

#[test]
fn other_domains_are_unsupported() {
    let mut m = small_model();
    m.graph.as_mut().unwrap().node[1].domain = "com.microsoft".into();
    assert!(error_text(&m).contains("com.microsoft"));
}

#[test]
fn dangling_edge_is_named() {
    let mut m = small_model();
    m.graph.as_mut().unwrap().node[1].input[0] = "ghost".into();
    let e = error_text(&m);
    assert!(e.contains("ghost") && e.contains("relu"), "{e}");
}

#[test]
fn cycles_are_refused() {
    let mut m = small_model();
    let g = m.graph.as_mut().unwrap();
    g.node[0].input[0] = "r".into();
    g.input.push(zoo_onnx::builder::value_info(
        "unused",
        &[Some(1), Some(2), Some(6), Some(6)],
    ));
    g.input.remove(0);
    assert!(load(&m).is_err());
}

#[test]
fn tensor_payload_that_does_not_match_shape() {
    let mut m = small_model();
    m.graph.as_mut().unwrap().initializer[0]
        .raw_data
        .truncate(10);
    let e = error_text(&m);
    assert!(e.contains("`W`"), "{e}");
}

#[test]
fn overflowing_and_absurd_shapes_are_refused_before_allocation() {
    let mut m = small_model();
    m.graph.as_mut().unwrap().initializer[0].dims = vec![i64::MAX, 4, 3, 3];
    assert!(error_text(&m).contains("overflows"));

    let mut m = small_model();
    m.graph.as_mut().unwrap().initializer[0].dims = vec![1 << 20, 1 << 20, 1, 1];
    assert!(error_text(&m).contains("limit"));

    let mut m = small_model();
    m.graph.as_mut().unwrap().initializer[0].dims = vec![-3, 2, 3, 3];
    assert!(error_text(&m).contains("negative"));

    // A tiny file asking ConstantOfShape for 2^40 floats.
    let mut b = GraphBuilder::new("x", &[Some(1), Some(2), Some(6), Some(6)]);
    b.init_i64("huge", &[1 << 20, 1 << 20]);
    b.node("fill", "ConstantOfShape", &["huge"], &["w"], vec![]);
    b.node("add", "Add", &["x", "w"], &["y"], vec![]);
    b.output("y", &[None]);
    assert!(error_text(&b.build(11)).contains("limit"));
}

#[test]
fn wrong_tensor_types_are_refused() {
    let mut m = small_model();
    m.graph.as_mut().unwrap().initializer[0].data_type = 10; // float16
    let e = error_text(&m);
    assert!(e.contains("Float16") && e.contains("not supported"), "{e}");
}

#[test]
fn shape_mismatches_are_errors_not_panics() {
    let mut m = small_model();
    m.graph.as_mut().unwrap().initializer[0].dims = vec![3, 5, 3, 3];
    m.graph.as_mut().unwrap().initializer[0].raw_data = vec![0; 3 * 5 * 9 * 4];
    let e = error_text(&m);
    assert!(e.contains("does not fit weight"), "{e}");

    let mut m = small_model();
    m.graph.as_mut().unwrap().initializer[1].int64_data = vec![7, -1];
    assert!(error_text(&m).contains("cannot reshape"));
}

#[test]
fn bad_attributes_are_errors() {
    let mut b = GraphBuilder::new("x", &[Some(1), Some(2), Some(6), Some(6)]);
    b.node(
        "pool",
        "MaxPool",
        &["x"],
        &["y"],
        vec![("kernel_shape", Attr::Ints(vec![0, 2]))],
    );
    b.output("y", &[None]);
    assert!(error_text(&b.build(11)).contains("positive"));

    let mut b = GraphBuilder::new("x", &[Some(1), Some(2), Some(6), Some(6)]);
    b.node(
        "pool",
        "MaxPool",
        &["x"],
        &["y"],
        vec![("kernel_shape", Attr::Ints(vec![9, 9]))],
    );
    b.output("y", &[None]);
    assert!(error_text(&b.build(11)).contains("does not fit"));
}

#[test]
fn interface_problems() {
    let mut m = small_model();
    m.graph.as_mut().unwrap().input[0] = zoo_onnx::builder::value_info("x", &[Some(1), Some(2)]);
    assert!(error_text(&m).contains("NCHW"));

    let mut m = small_model();
    m.opset_import[0].version = 3;
    assert!(error_text(&m).contains("opset 3"));

    let mut m = small_model();
    m.graph = None;
    assert!(matches!(load(&m), Err(OnnxError::NoGraph)));
}

#[test]
fn auto_pad_with_pads_outputs_of_constants_and_outputs_without_batch_are_handled() {
    // auto_pad with a 3-element pads (tract panicked on it): refused, naming both.
    let mut m = small_model();
    let conv = &mut m.graph.as_mut().unwrap().node[0];
    conv.attribute
        .push(zoo_onnx::builder::attr("auto_pad", Attr::Str("SAME_UPPER")));
    conv.attribute
        .push(zoo_onnx::builder::attr("pads", Attr::Ints(vec![1, 1, 1])));
    let e = error_text(&m);
    assert!(e.contains("cannot be combined with auto_pad"), "{e}");

    // An output made of initializers only does not depend on the image.
    let mut b = GraphBuilder::new("x", &[Some(1), Some(2), Some(6), Some(6)]);
    b.init_f32("a", &[1, 3], vec![1.0; 3]);
    b.init_f32("k", &[1, 3], vec![2.0; 3]);
    b.node("relu", "Relu", &["x"], &["r"], vec![]);
    b.node("add", "Add", &["a", "k"], &["y"], vec![]);
    b.output("y", &[Some(1), Some(3)]);
    let e = error_text(&b.build(11));
    assert!(e.contains("does not depend on the input image"), "{e}");

    // An output whose axis 0 is not the batch (a parameter broadcast in front of it) runs at
    // its declared batch only, and says why.
    let mut b = GraphBuilder::new("x", &[Some(1), Some(2), Some(6), Some(6)]);
    b.init_f32("p", &[16, 1, 1], vec![0.5; 16]);
    b.node("gap", "GlobalAveragePool", &["x"], &["g"], vec![]);
    b.init_i64("s", &[1, 2]);
    b.node("flat", "Reshape", &["g", "s"], &["f"], vec![]);
    b.node("add", "Add", &["f", "p"], &["y"], vec![]);
    b.output("y", &[Some(16), Some(1), Some(2)]);
    let m = load(&b.build(11)).unwrap();
    let why = m.graph.shapes.fixed_batch.clone().unwrap();
    assert!(
        why.contains("broadcast") || why.contains("batch axis"),
        "{why}"
    );
}

#[test]
fn empty_files_and_non_regular_files_are_named_errors() {
    let e = OnnxModel::from_bytes(Vec::new()).unwrap_err().to_string();
    assert!(e.contains("empty (0 bytes)"), "{e}");
    #[cfg(unix)]
    {
        let e = OnnxModel::load("/dev/zero").unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}

#[test]
fn mutation_test_findings_are_errors() {
    // Reflect padding as wide as the axis (burn asserted on it).
    let mut b = GraphBuilder::new("x", &[Some(1), Some(2), Some(2), Some(6)]);
    b.init_i64("pads", &[0, 0, 2, 0, 0, 0, 0, 0]);
    b.node(
        "pad",
        "Pad",
        &["x", "pads"],
        &["y"],
        vec![("mode", Attr::Str("reflect"))],
    );
    b.output("y", &[Some(1), Some(2), Some(4), Some(6)]);
    let e = error_text(&b.build(11));
    assert!(e.contains("reflect pads") && e.contains("axis 2"), "{e}");

    // A Conv whose weights are computed from the image (its output channels would change
    // with the batch).
    let mut b = GraphBuilder::new("x", &[Some(1), Some(2), Some(6), Some(6)]);
    b.node("relu", "Relu", &["x"], &["r"], vec![]);
    b.node("conv", "Conv", &["x", "r"], &["y"], vec![]);
    b.output("y", &[Some(1), Some(1), Some(1), Some(1)]);
    let e = error_text(&b.build(11));
    assert!(e.contains("takes its weights `r` from the image"), "{e}");
}

#[test]
fn a_matmul_broadcasting_the_batch_away_runs_at_its_declared_batch_only() {
    // [N, 8, 1, 1] x [10, 8, 1, 1]: at N = 1 the leading dims broadcast to [10, 8]; at N = 2
    // they do not broadcast at all (burn panicked).
    let mut b = GraphBuilder::new("x", &[Some(1), Some(8), Some(1), Some(1)]);
    b.init_f32("w", &[10, 8, 1, 1], vec![0.1; 80]);
    b.node("mm", "MatMul", &["x", "w"], &["y"], vec![]);
    b.output("y", &[Some(10), Some(8), Some(1), Some(1)]);
    let m = load(&b.build(13)).unwrap();
    let why = m.graph.shapes.fixed_batch.clone().expect("fixed batch");
    assert!(why.contains("MatMul broadcast"), "{why}");
}
