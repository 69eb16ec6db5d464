//! `zoo demo`, `zoo train`, `zoo show`, `--device`: the offline quickstart and the curriculum.

mod common;

use std::path::PathBuf;

use common::{alexnet_standin, assert_run_files, read_json, shared, zoo, TempDir};

fn demo_asset(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../zoo-app/assets/demo")
        .join(name)
}

#[test]
fn demo_runs_offline_and_evaluate_reproduces_the_finetune_accuracy_to_the_image() {
    let t = TempDir::new("demo");
    let out = t.path().join("demo");
    let run = zoo(
        &["demo", "--out", out.to_str().unwrap(), "--json"],
        t.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let d = run.json();
    assert_eq!(d["parity_pass"], true, "{d}");
    assert_eq!(d["import_parity_pass"], true);
    assert_eq!(d["frozen_params_unchanged"], true);
    assert_eq!(d["train_images"], 250);
    assert_eq!(d["heldout_images"], 250);
    let after = d["accuracy_after"].as_f64().unwrap();
    let before = d["accuracy_before"].as_f64().unwrap();
    assert!(after >= 0.90, "accuracy after finetuning {after}");
    assert!(before < 0.5, "an untrained head is near chance: {before}");
    let run_dir = PathBuf::from(d["run_dir"].as_str().unwrap());
    assert_run_files(&run_dir);
    assert!(run_dir.join("model.onnx").is_file() && run_dir.join("parity.json").is_file());

    // The exported file, evaluated by tract on the run's own validation images, gets exactly
    // the images right that the finetune's best weights got right.
    let summary = read_json(&run_dir.join("summary.json"));
    let val = summary["val_images"].as_u64().unwrap() as f64;
    let finetune_correct = (summary["best_val_accuracy"].as_f64().unwrap() * val).round();
    let eval = zoo(
        &[
            "evaluate",
            run_dir.to_str().unwrap(),
            "--engine",
            "tract",
            "--json",
        ],
        t.path(),
    );
    assert_eq!(eval.code, 0, "{}", eval.stderr);
    assert!(
        !eval.stderr.contains("warning"),
        "CPU is not a warning: {}",
        eval.stderr
    );
    let e = eval.json();
    assert_eq!(e["engine"], "tract (CPU)");
    assert_eq!(e["samples"].as_u64().unwrap() as f64, val);
    assert_eq!(
        e["correct"].as_u64().unwrap() as f64,
        finetune_correct,
        "{e}"
    );
    assert_eq!(e["accuracy"].as_f64().unwrap(), after);

    // The text form says the same in a few lines.
    let text = zoo(&["demo", "--out", out.to_str().unwrap()], t.path());
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains("accuracy after") && text.stdout.contains("parity           pass")
    );
}

#[test]
fn train_builds_lenet5_and_mnist_cnn_and_refuses_bad_requests() {
    let t = TempDir::new("train");
    let digits = demo_asset("digits5-9-images-idx3-ubyte.gz");
    for (arch, head, frozen) in [("lenet5", "fc2", 6), ("mnist-cnn", "Times212", 2)] {
        let out = t.path().join(arch);
        let run = zoo(
            &[
                "train",
                arch,
                "--data",
                digits.to_str().unwrap(),
                "--train-per-class",
                "20",
                "--epochs",
                "1",
                "--out",
                out.to_str().unwrap(),
                "--json",
            ],
            t.path(),
        );
        assert_eq!(run.code, 0, "{arch}: {}", run.stderr);
        let j = run.json();
        assert_eq!(j["train_images"], 100, "{arch}");
        assert_eq!(j["val_images"], 400);
        assert_eq!(
            j["frozen_layers"],
            serde_json::json!([]),
            "from scratch, all layers train"
        );
        assert_eq!(j["classes"], serde_json::json!(["5", "6", "7", "8", "9"]));
        // From scratch no head is new: one learning rate for every layer, training's own.
        let config = read_json(&out.join("config.json"));
        assert_eq!(config["options"]["head_lr_factor"], 1.0, "{arch}");
        assert_eq!(config["options"]["lr"], 0.03, "{arch}");
        // The weights carry the plan a later finetune uses.
        assert_run_files(&out);
        let best = zoo_onnx::OnnxModel::load(out.join("best.onnx")).unwrap();
        assert_eq!(best.metadata["zoo.head"], head);
        let freeze: Vec<String> = serde_json::from_str(&best.metadata["zoo.freeze"]).unwrap();
        assert_eq!(freeze.len(), frozen, "{arch}: {freeze:?}");
        assert_eq!(best.graph.output.dims.last(), Some(&Some(5)));
    }
    let bad = zoo(
        &["train", "alexnet9", "--data", digits.to_str().unwrap()],
        t.path(),
    );
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("lenet5, mnist-cnn"), "{}", bad.stderr);
    let too_many = zoo(
        &[
            "train",
            "lenet5",
            "--data",
            digits.to_str().unwrap(),
            "--train-per-class",
            "100",
        ],
        t.path(),
    );
    assert_eq!(too_many.code, 2);
    assert!(
        too_many.stderr.contains("--train-per-class 100"),
        "{}",
        too_many.stderr
    );
}

#[test]
fn device_cuda_without_cuda_is_one_line_and_auto_falls_back_to_cpu() {
    let t = TempDir::new("device");
    let digits = demo_asset("digits5-9-images-idx3-ubyte.gz");
    let base = demo_asset("lenet5-digits0-4.onnx");
    let args = |device: &'static str, out: &str| -> Vec<String> {
        [
            "finetune",
            base.to_str().unwrap(),
            "--data",
            digits.to_str().unwrap(),
            "--classes",
            "5",
            "--train-per-class",
            "10",
            "--epochs",
            "1",
            "--device",
            device,
            "--out",
            out,
        ]
        .map(String::from)
        .to_vec()
    };
    let cuda_args = args("cuda", t.path().join("cuda").to_str().unwrap());
    let cuda = zoo(
        &cuda_args.iter().map(String::as_str).collect::<Vec<_>>(),
        t.path(),
    );
    if cfg!(feature = "cuda") {
        return; // a CUDA build on a GPU machine is checked by scripts/gpu-check.sh
    }
    assert_eq!(cuda.code, 2);
    let lines: Vec<&str> = cuda.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", cuda.stderr);
    assert!(
        lines[0].contains("CUDA") && !lines[0].contains("panicked"),
        "{}",
        lines[0]
    );
    let auto_args = args("auto", t.path().join("auto").to_str().unwrap());
    let auto = zoo(
        &auto_args.iter().map(String::as_str).collect::<Vec<_>>(),
        t.path(),
    );
    assert_eq!(auto.code, 0, "{}", auto.stderr);
    assert!(
        auto.stderr.contains("device: CPU (auto;"),
        "{}",
        auto.stderr
    );
    let config = read_json(&t.path().join("auto/config.json"));
    assert_eq!(config["versions"]["backend"], "flex (CPU)");
}

#[test]
fn show_filters_and_activations_draw_one_tile_per_kernel_or_map() {
    let t = TempDir::new("show");
    let base = demo_asset("lenet5-digits0-4.onnx");
    let png = t.path().join("filters.png");
    let f = zoo(
        &[
            "show",
            "filters",
            base.to_str().unwrap(),
            "--layer",
            "conv1",
            "-o",
            png.to_str().unwrap(),
            "--json",
        ],
        t.path(),
    );
    assert_eq!(f.code, 0, "{}", f.stderr);
    let j = f.json();
    assert_eq!(j["tiles"], 16);
    assert_eq!(j["rgb"], false);
    assert_eq!(j["tile_size"], serde_json::json!([3, 3]));
    let img = image::open(&png).unwrap();
    assert_eq!(
        [img.width(), img.height()],
        [
            j["image_size"][0].as_u64().unwrap() as u32,
            j["image_size"][1].as_u64().unwrap() as u32
        ]
    );

    let digit =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/images/gray.png");
    let act_png = t.path().join("act.png");
    let a = zoo(
        &[
            "show",
            "activations",
            base.to_str().unwrap(),
            "--image",
            digit.to_str().unwrap(),
            "--layer",
            "conv2",
            "-o",
            act_png.to_str().unwrap(),
            "--json",
        ],
        t.path(),
    );
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert_eq!(a.json()["tiles"], 32);
    assert_eq!(a.json()["tile_size"], serde_json::json!([14, 14]));
    assert!(image::open(&act_png).is_ok());

    let fc = zoo(
        &[
            "show",
            "filters",
            base.to_str().unwrap(),
            "--layer",
            "fc1",
            "-o",
            png.to_str().unwrap(),
        ],
        t.path(),
    );
    assert_eq!(fc.code, 2);
    assert!(fc.stderr.contains("Conv layers"), "{}", fc.stderr);
}

#[test]
#[ignore = "needs ../shared"]
fn alexnet_standin_conv1_filters_are_a_96_tile_rgb_grid() {
    let t = TempDir::new("show-alexnet");
    let model = alexnet_standin(t.path(), "9");
    let png = t.path().join("conv1.png");
    let f = zoo(
        &[
            "show",
            "filters",
            model.to_str().unwrap(),
            "--like",
            "alexnet",
            "--layer",
            "conv1",
            "-o",
            png.to_str().unwrap(),
            "--json",
        ],
        t.path(),
    );
    assert_eq!(f.code, 0, "{}", f.stderr);
    let j = f.json();
    assert_eq!(j["tiles"], 96);
    assert_eq!(j["rgb"], true);
    assert_eq!(j["tile_size"], serde_json::json!([11, 11]));
    assert_eq!(j["grid"], serde_json::json!([10, 10]));
    assert_eq!(image::open(&png).unwrap().color(), image::ColorType::Rgb8);
}

/// `zoo train ARCH` on the README's MNIST workload (750 test digits per class train, the other
/// 2,500 validate) with `options`; the summary.
fn train_on_750_digits_per_class(arch: &str, options: &[&str]) -> serde_json::Value {
    let t = TempDir::new(&format!("{arch}-mnist"));
    let out = t.path().join("run");
    let mnist = shared("data/mnist");
    let mut args = vec![
        "train",
        arch,
        "--data",
        mnist.to_str().unwrap(),
        "--train-per-class",
        "750",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(options);
    let run = zoo(&args, t.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    println!(
        "{arch} on MNIST: {} train / {} validation images, best {:.4} at epoch {}, {:.0} s",
        j["train_images"],
        j["val_images"],
        j["best_val_accuracy"],
        j["best_epoch"],
        j["wall_time_s"]
    );
    assert_eq!(j["train_images"], 7500);
    assert_eq!(j["val_images"], 2500);
    j
}

#[test]
#[ignore = "needs ../shared"]
fn lenet5_from_scratch_on_750_per_class_reaches_98_percent() {
    let options = [
        "--epochs",
        "8",
        "--lr",
        "0.01",
        "--head-lr-factor",
        "1",
        "--batch-size",
        "64",
    ];
    let j = train_on_750_digits_per_class("lenet5", &options);
    assert!(j["best_val_accuracy"].as_f64().unwrap() >= 0.98, "{j}");
}

/// The lecture's MLP with `zoo train`'s defaults (no learning-rate flags) on the README's
/// workload, 750 MNIST test digits per class to train and 2,500 to validate: at least 94 %
/// (95.9 % measured; finetuning's defaults leaked into training from scratch gave 93.0 %).
#[test]
#[ignore = "needs ../shared"]
fn train_mlp_with_its_defaults_reaches_the_documented_accuracy() {
    let j = train_on_750_digits_per_class("mlp", &[]);
    let accuracy = j["best_val_accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.94, "{accuracy}");
}
