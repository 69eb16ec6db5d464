//! Opset conversion: meaning-changing attributes are rewritten both ways, and what cannot be
//! expressed in the target opset is refused with the node named.

use zoo_onnx::builder::{Attr, GraphBuilder};
use zoo_onnx::opset::convert;
use zoo_onnx::pb::ModelProto;

fn node<'a>(m: &'a ModelProto, name: &str) -> &'a zoo_onnx::pb::NodeProto {
    m.graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .find(|n| n.name == name)
        .unwrap()
}

fn attr_i(m: &ModelProto, node_name: &str, attr: &str) -> Option<i64> {
    node(m, node_name)
        .attribute
        .iter()
        .find(|a| a.name == attr)
        .map(|a| a.i)
}

fn opset(m: &ModelProto) -> i64 {
    m.opset_import
        .iter()
        .find(|o| o.domain.is_empty())
        .unwrap()
        .version
}

/// Dropout(ratio 0.3, opset 9) -> Softmax (no axis).
fn dropout_softmax(opset: i64) -> ModelProto {
    let mut b = GraphBuilder::new("x", &[Some(1), Some(4)]);
    b.node(
        "drop",
        "Dropout",
        &["x"],
        &["d"],
        vec![("ratio", Attr::Float(0.3))],
    );
    b.node("soft", "Softmax", &["d"], &["y"], vec![]);
    b.output("y", &[Some(1), Some(4)]);
    b.build(opset)
}

#[test]
fn dropout_ratio_moves_between_attribute_and_input() {
    let up = convert(dropout_softmax(9), 9, 12, &|_| Some(2)).unwrap();
    assert_eq!(opset(&up), 12);
    assert!(up.ir_version >= 7, "opset 12 needs IR 7");
    let drop = node(&up, "drop");
    assert_eq!(drop.input.len(), 2);
    assert!(drop.attribute.iter().all(|a| a.name != "ratio"));
    let ratio = up
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .find(|t| t.name == drop.input[1])
        .unwrap();
    let value = match ratio.float_data.first() {
        Some(&v) => v,
        None => f32::from_le_bytes(ratio.raw_data[..4].try_into().unwrap()),
    };
    assert_eq!(value, 0.3);

    let down = convert(up, 12, 9, &|_| Some(2)).unwrap();
    let drop = node(&down, "drop");
    assert_eq!(drop.input.len(), 1);
    let ratio = drop.attribute.iter().find(|a| a.name == "ratio").unwrap();
    assert_eq!(ratio.f, 0.3);
}

#[test]
fn softmax_across_opset_13_keeps_its_meaning_on_matrices_only() {
    // Rank 2: the axis is made explicit (1), which means the same on both sides of 13.
    let up = convert(dropout_softmax(9), 9, 13, &|_| Some(2)).unwrap();
    assert_eq!(attr_i(&up, "soft", "axis"), Some(1));
    // Rank 4 or unknown: refused, naming the node.
    for rank in [Some(4), None] {
        let err = convert(dropout_softmax(9), 9, 13, &|_| rank)
            .unwrap_err()
            .to_string();
        assert!(err.contains("soft") && err.contains("opset 13"), "{err}");
    }
    // No crossing: untouched.
    let same = convert(dropout_softmax(9), 9, 11, &|_| None).unwrap();
    assert_eq!(attr_i(&same, "soft", "axis"), None);
}

#[test]
fn inexpressible_attributes_are_refused() {
    let mut b = GraphBuilder::new("x", &[Some(1), Some(2), Some(4), Some(4)]);
    b.init_f32("s", &[2], vec![1.0; 2]);
    b.init_f32("b", &[2], vec![0.0; 2]);
    b.node(
        "bn",
        "BatchNormalization",
        &["x", "s", "b", "b", "s"],
        &["n"],
        vec![("spatial", Attr::Int(0))],
    );
    b.node(
        "pool",
        "MaxPool",
        &["n"],
        &["y"],
        vec![
            ("kernel_shape", Attr::Ints(vec![3, 3])),
            ("ceil_mode", Attr::Int(1)),
        ],
    );
    b.output("y", &[Some(1), Some(2), Some(2), Some(2)]);
    let err = convert(b.build(8), 8, 9, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bn") && err.contains("spatial"), "{err}");
    let err = convert(b.build(11), 11, 8, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("pool") && err.contains("ceil_mode"), "{err}");
    let err = convert(b.build(11), 11, 40, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("opset 40"), "{err}");
}
