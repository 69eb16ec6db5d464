//! What PyTorch's default (dynamo) exporter writes for full-size timm and torchvision models,
//! each on a small graph, burn against tract: LeViT's attention-bias table read with
//! GatherND, ConvNeXt's head flattened and gathered by indices computed from the batch size
//! (`as_strided`), MobileViT's Resize to sizes taken from the input's shape, and Swin's shift
//! mask written into ConstantOfShape's zeros.

mod support;

use zoo_onnx::builder::{Attr, GraphBuilder, SeededRng};
use zoo_onnx::pb::ModelProto;
use zoo_onnx::OnnxModel;

use support::{assert_parity, finish, input, set_dims, weights};

fn imported(model: &ModelProto) -> OnnxModel {
    OnnxModel::from_bytes(prost::Message::encode_to_vec(model)).expect("import")
}

/// `table[:, idx]` as the dynamo exporter writes it: the table transposed, GatherND with
/// index tuples of length 1, transposed back; added to the image.
#[test]
fn gather_nd_reads_a_trained_table_with_constant_index_tuples() {
    let mut rng = SeededRng::new(31);
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 3]);
    weights(&mut b, &mut rng, "table", &[5, 2]);
    let idx: Vec<i64> = (0..9).map(|i| (i * 7 + 3) % 5).collect();
    b.init_i64("idx", &idx);
    b.node("nd", "GatherND", &["table", "idx"], &["g"], vec![]);
    let perm = vec![("perm", Attr::Ints(vec![2, 0, 1]))];
    b.node("t", "Transpose", &["g"], &["bias"], perm);
    b.node("add", "Add", &["x", "bias"], &["y0"], vec![]);
    let mut model = finish(&mut b, "y0", 18);
    set_dims(&mut model, "idx", &[3, 3, 1]);
    let onnx = imported(&model);
    assert!(onnx.graph.shapes.fixed_batch.is_none());
    assert_parity(&model, 3);

    // Tuples of length 2 index both axes of the table.
    let mut b = GraphBuilder::default();
    input(&mut b, [1, 2, 3]);
    weights(&mut b, &mut rng, "table", &[4, 3]);
    b.init_i64("idx", &[0, 1, 3, 2, 3, 0, 2, 2, 1, 1, 0, 0]);
    b.node("nd", "GatherND", &["table", "idx"], &["g"], vec![]);
    b.node("add", "Add", &["x", "g"], &["y0"], vec![]);
    let mut model = finish(&mut b, "y0", 18);
    set_dims(&mut model, "idx", &[2, 3, 2]);
    assert_parity(&model, 2);
}

/// ConvNeXt's head at full size: `[N, C, 1, 1]` flattened to `[N * C]`, then gathered back
/// with indices `n * C + c` built from `Range(0, N)`.
#[test]
fn a_gather_by_indices_computed_from_the_batch_keeps_each_sample_apart() {
    let mut b = GraphBuilder::default();
    input(&mut b, [4, 3, 3]);
    b.init_i64("axes", &[2, 3]);
    b.init_i64("to_flat", &[-1]);
    b.init_i64("zero", &[0]);
    b.init_i64("one", &[1]);
    b.init_i64("channels", &[4]);
    b.init_i64("spread", &[1, 2, 3]);
    b.init_i64("offsets", &[0, 1, 2, 3]);
    let keep = vec![("keepdims", Attr::Int(1))];
    b.node("mean", "ReduceMean", &["x", "axes"], &["m"], keep);
    b.node("flatten", "Reshape", &["m", "to_flat"], &["f"], vec![]);
    b.node("shape", "Shape", &["x"], &["s"], vec![]);
    b.node(
        "n",
        "Gather",
        &["s", "zero"],
        &["n1"],
        vec![("axis", Attr::Int(0))],
    );
    b.node("n0", "Squeeze", &["n1", "zero"], &["n"], vec![]);
    b.node("range", "Range", &["zero0", "n", "one0"], &["r"], vec![]);
    b.node("scale", "Mul", &["r", "channels0"], &["rs"], vec![]);
    b.node("unsq", "Unsqueeze", &["rs", "spread"], &["ru"], vec![]);
    b.node("idx", "Add", &["ru", "offsets"], &["idx"], vec![]);
    b.node(
        "pick",
        "Gather",
        &["f", "idx"],
        &["y0"],
        vec![("axis", Attr::Int(0))],
    );
    let mut model = finish(&mut b, "y0", 18);
    set_dims(&mut model, "offsets", &[1, 4, 1, 1]);
    let graph = model.graph.as_mut().unwrap();
    for (name, v) in [("zero0", 0), ("one0", 1), ("channels0", 4)] {
        let mut t = graph
            .initializer
            .iter()
            .find(|t| t.name == "zero")
            .unwrap()
            .clone();
        (t.name, t.dims, t.int64_data, t.raw_data) = (name.into(), vec![], vec![v], vec![]);
        graph.initializer.push(t);
    }
    let onnx = imported(&model);
    assert!(
        onnx.graph.shapes.fixed_batch.is_none(),
        "{:?}",
        onnx.graph.shapes.fixed_batch
    );
    assert!(onnx.graph.shapes.per_sample_gathers.contains_key("pick"));
    assert_parity(&model, 3);
}

/// MobileViT's `interpolate(size=...)`: Resize's sizes `[N, C, H, W]` read from the input's
/// shape (N follows the batch; H and W are fixed).
#[test]
fn resize_to_sizes_taken_from_the_input_shape_follows_the_batch() {
    let mut b = GraphBuilder::default();
    input(&mut b, [2, 3, 3]);
    b.init_i64("start", &[0]);
    b.init_i64("end", &[2]);
    b.init_i64("hw", &[5, 4]);
    b.node("shape", "Shape", &["x"], &["s"], vec![]);
    b.node("nc", "Slice", &["s", "start", "end"], &["nc"], vec![]);
    b.node(
        "sizes",
        "Concat",
        &["nc", "hw"],
        &["sizes"],
        vec![("axis", Attr::Int(0))],
    );
    let linear = vec![("mode", Attr::Str("linear"))];
    b.node("up", "Resize", &["x", "", "", "sizes"], &["y0"], linear);
    let model = finish(&mut b, "y0", 13);
    let onnx = imported(&model);
    assert!(
        onnx.graph.shapes.fixed_batch.is_none(),
        "{:?}",
        onnx.graph.shapes.fixed_batch
    );
    assert_parity(&model, 3);
}

/// torchvision's Swin (dynamo export): the shift mask is written into `new_zeros(...)`
/// (ConstantOfShape) with ScatterND; the zeros are made by the graph, not a weight, so the
/// mask is computed at import.
#[test]
fn scatter_into_constant_of_shape_zeros_is_computed_at_import() {
    let mut b = GraphBuilder::default();
    input(&mut b, [1, 3, 3]);
    b.init_i64("shape", &[3, 3]);
    b.init_i64("where", &[0, 0, 1, 1, 2, 2]);
    b.init_f32("marks", &[3], vec![1.0, 2.0, 3.0]);
    b.node("zeros", "ConstantOfShape", &["shape"], &["z"], vec![]);
    b.node(
        "mask",
        "ScatterND",
        &["z", "where", "marks"],
        &["mask"],
        vec![],
    );
    b.node("add", "Add", &["x", "mask"], &["y0"], vec![]);
    let mut model = finish(&mut b, "y0", 18);
    set_dims(&mut model, "where", &[3, 2]);
    let onnx = imported(&model);
    assert!(!onnx
        .graph
        .nodes
        .iter()
        .any(|n| n.op.onnx_type() == "ScatterND"));
    assert_parity(&model, 2);
}
