//! Files no one here wrote by hand: the ONNX Model Zoo's classifier graphs (light, weights
//! materialised), the real pretrained classifiers in ../shared, and the exporter-style fixtures
//! of tests/fixtures/exporters (torch.onnx.export patterns, scripts/make-exporter-fixtures.py).
//! Each imports and matches tract at the logits at batch 1 and 8.

mod support;

use std::path::PathBuf;

use support::{check_parity, light_standin, shared};

const LIGHT: [&str; 9] = [
    "bvlc_alexnet",
    "zfnet512",
    "vgg19",
    "inception_v1",
    "inception_v2",
    "squeezenet",
    "resnet50",
    "shufflenet",
    "densenet121",
];

#[test]
#[ignore = "needs ../shared"]
fn every_light_zoo_graph_imports_and_matches_tract_at_batch_1_and_8() {
    for name in LIGHT {
        let worst = check_parity(light_standin(name), 100.0, 8);
        println!("{name}: max_rel_diff {worst:.2e}");
    }
}

#[test]
#[ignore = "needs ../shared"]
fn real_pretrained_classifiers_import_and_match_tract() {
    for file in [
        "mobilenet_v1_0.25_128-imagenet1001-dequant-opset9.onnx",
        "squeezenet1.0-tflite-imagenet1001-opset9.onnx",
    ] {
        let bytes = std::fs::read(shared(&format!("models/pretrained/{file}"))).unwrap();
        let worst = check_parity(bytes, 1.0, 8);
        println!("{file}: max_rel_diff {worst:.2e}");
    }
}

fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/exporters");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/exporters exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .collect();
    files.sort();
    files
}

#[test]
fn exporter_fixtures_import_and_match_tract_at_batch_1_and_8() {
    let files = fixtures();
    assert!(files.len() >= 70, "{} fixtures", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        match std::panic::catch_unwind(|| check_parity(bytes, 1.0, 8)) {
            Ok(worst) => println!("{name}: max_rel_diff {worst:.2e}"),
            Err(_) => failures.push(name),
        }
    }
    assert!(failures.is_empty(), "failed: {failures:?}");
}
