//! A run written before the redesign (tests/fixtures/old-run: config.json with the old option
//! fields, killed after two validations) resumes with today's binary, to the weights of an
//! uninterrupted run started today.

mod common;

use std::path::Path;

use common::{read_json, zoo, TempDir};

/// Copies a folder tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let model = zoo_onnx::OnnxModel::load(path).unwrap();
    let mut w: Vec<_> = (model.graph.constants.iter())
        .filter_map(|(name, t)| t.as_f32().map(|v| (name.clone(), v.to_vec())))
        .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

#[test]
fn a_run_written_before_the_redesign_resumes_to_the_weights_of_an_uninterrupted_run() {
    let t = TempDir::new("old-run");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/old-run");
    let root = t.path().join("old-run");
    copy_tree(&fixture, &root);
    let config = root.join("run/config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    let old: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(old["options"]["train_per_class"], 20, "the old field names");
    assert_eq!(old["options"]["unfreeze_all"], false);
    std::fs::write(&config, text.replace("@FIXTURE@", root.to_str().unwrap())).unwrap();

    let run = root.join("run");
    let resumed = zoo(&["finetune", "--resume", run.to_str().unwrap()], t.path());
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(resumed.stderr.contains("resuming"), "{}", resumed.stderr);
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["status"], "finished", "{summary}");
    assert_eq!(summary["epochs_run"], 4);

    let (model, data) = (
        root.join("lenet5-digits0-4.onnx"),
        root.join("digits5-9-images-idx3-ubyte.gz"),
    );
    let whole = t.path().join("whole");
    let args = [
        "finetune",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--train-per-class",
        "20",
        "--epochs",
        "4",
        "--batch-size",
        "4",
        "--val-every",
        "5",
        "--optimizer",
        "adam",
        "--seed",
        "3",
        "--device",
        "cpu",
        // The options as given, as the old run took them (no recipe then).
        "--recipe",
        "head-only",
        "--out",
        whole.to_str().unwrap(),
    ];
    let fresh = zoo(&args, t.path());
    assert_eq!(fresh.code, 0, "{}", fresh.stderr);
    let whole_summary = read_json(&whole.join("summary.json"));
    assert_eq!(summary["best_iteration"], whole_summary["best_iteration"]);
    assert_eq!(
        summary["best_val_accuracy"],
        whole_summary["best_val_accuracy"]
    );
    let (a, b) = (
        weights(&whole.join("best.onnx")),
        weights(&run.join("best.onnx")),
    );
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let d = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-6, "{name}: resumed weights differ by {d}");
    }
}
