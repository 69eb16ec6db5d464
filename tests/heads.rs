//! Every head shape finetunes for one epoch, exports with every declared shape updated (the
//! full shape check of `zoo_onnx::check`), and passes the export parity and `verify --run`.

mod common;

use common::{head_shape_classifier, write_images, zoo, TempDir};

fn finetune_export_verify(kind: &str) {
    let t = TempDir::new(&format!("head-{kind}"));
    let model = t.path().join(format!("{kind}.onnx"));
    head_shape_classifier(&model, kind);
    for (i, class) in ["ant", "bee", "cow"].iter().enumerate() {
        write_images(&t.path().join("data").join(class), 5 + i);
    }
    let out = t.path().join("runs");
    let finetune = zoo(
        &[
            "finetune",
            model.to_str().unwrap(),
            "--data",
            t.path().join("data").to_str().unwrap(),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
        t.path(),
    );
    assert_eq!(finetune.code, 0, "{kind}: {}", finetune.stderr);
    if kind == "gemm-1001" {
        assert!(
            finetune.stderr.contains("no background class"),
            "{}",
            finetune.stderr
        );
    }
    let run = finetune.json()["run_dir"].as_str().unwrap().to_string();
    // A failed export writes nothing a later command would take for the model.
    let bad = zoo(&["export", &run, "--onnx", "--engines", "bogus"], t.path());
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        !std::path::Path::new(&run).join("model.onnx").exists(),
        "{kind}"
    );
    let export = zoo(
        &["export", &run, "--onnx", "--engines", "tract", "--json"],
        t.path(),
    );
    assert_eq!(export.code, 0, "{kind}: {}", export.stderr);
    assert_eq!(export.json()["pass"], true, "{kind}");
    assert_eq!(
        export.json()["shape_mismatches"],
        serde_json::json!([]),
        "{kind}"
    );
    let written = std::fs::read(std::path::Path::new(&run).join("model.onnx")).unwrap();
    let proto = <zoo_onnx::pb::ModelProto as prost::Message>::decode(written.as_slice()).unwrap();
    let problems = zoo_onnx::check::declared_shape_mismatches(&proto).unwrap();
    assert!(problems.is_empty(), "{kind}: {problems:?}");
    let reread = zoo_onnx::OnnxModel::from_proto(proto).unwrap();
    let classes_axis = &reread.graph.output.dims[1];
    assert_eq!(
        *classes_axis,
        Some(3),
        "{kind}: {:?}",
        reread.graph.output.dims
    );
    let model_onnx = format!("{run}/model.onnx");
    let verify = zoo(&["verify", &model_onnx, "--run", &run, "--json"], t.path());
    assert_eq!(verify.code, 0, "{kind}: {}", verify.stderr);
    assert_eq!(verify.json()["pass"], true);
}

#[test]
fn a_gemm_head_with_1001_outputs_and_a_background_class() {
    finetune_export_verify("gemm-1001");
}

#[test]
fn a_conv_head_before_pooling_and_flatten() {
    finetune_export_verify("conv-flatten");
}

#[test]
fn a_conv_head_before_pooling_and_softmax_with_nc11_output() {
    finetune_export_verify("conv-softmax");
}

#[test]
fn a_conv_head_after_global_pooling_with_nc11_output() {
    finetune_export_verify("pool-conv");
}
