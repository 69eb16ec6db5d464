//! The library example (crates/zoo-app/examples/finetune.rs) runs: a small classifier file is
//! finetuned on a folder and exported, and the exported file agrees with tract.

mod common;

#[allow(dead_code)]
#[path = "../crates/zoo-app/examples/finetune.rs"]
mod example;

use common::{small_rgb_classifier, write_images, TempDir};

#[test]
fn the_library_example_finetunes_and_exports_a_model() {
    let t = TempDir::new("example");
    let model = t.path().join("mine.onnx");
    small_rgb_classifier(&model);
    for class in ["cat", "dog", "fox"] {
        write_images(&t.path().join("data").join(class), 6);
    }
    let out = t.path().join("run");
    let (summary, export) =
        example::finetune_and_export(model.to_str().unwrap(), &t.path().join("data"), &out, 2)
            .unwrap();
    assert_eq!(summary.run_dir, out);
    assert_eq!(summary.classes, ["cat", "dog", "fox"]);
    assert_eq!(summary.epochs_run, 2);
    assert!(summary.freeze_audit.frozen_params_unchanged);
    assert!(export.pass, "{:?}", export.batch_1);
    let exported = zoo_onnx::OnnxModel::load(&export.output).unwrap();
    assert_eq!(exported.graph.output.dims.last(), Some(&Some(3)));
}
