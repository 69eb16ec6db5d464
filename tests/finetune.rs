//! `zoo finetune` end to end: run directory, runs/latest, table output, errors.

mod common;

use common::{
    alexnet_standin, assert_run_files, shared, small_rgb_classifier, write_images, zoo, TempDir,
};

#[test]
fn finetune_writes_a_complete_run_directory_and_links_latest() {
    let t = TempDir::new("finetune");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    for (i, class) in ["cat", "dog", "fox"].iter().enumerate() {
        write_images(&t.path().join("data").join(class), 6 + i);
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zoo"))
        .current_dir(t.path())
        .args([
            "finetune",
            model.to_str().unwrap(),
            "--data",
            "data",
            "--classes",
            "3",
            "--epochs",
            "2",
            "--batch-size",
            "4",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("| epoch | iteration |") && stderr.contains("val acc"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: no model card"),
        "a bare file says which defaults it uses: {stderr}"
    );
    let run = t.path().join(String::from_utf8_lossy(&out.stdout).trim());
    let latest = std::fs::canonicalize(t.path().join("runs/latest")).unwrap();
    assert_eq!(latest, std::fs::canonicalize(&run).unwrap());
    assert_run_files(&run);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["frozen_params_unchanged"], true);
    assert_eq!(summary["classes"], serde_json::json!(["cat", "dog", "fox"]));
    assert_eq!(summary["epochs_run"], 2);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["options"]["epochs"], 2);
    // The default recipe for 17 images (18, one a duplicate): two stages (one head-only epoch of the two given),
    // a gentler body rate, augmentation; said on one line and recorded.
    assert!(
        stderr.contains("recipe: two-stage (17 training images, 3235 parameters")
            && stderr.contains("given: epochs"),
        "{stderr}"
    );
    let o = &config["options"];
    assert_eq!(
        (
            &o["recipe"],
            &o["fine_tune"],
            &o["augment"],
            &o["head_lr_factor"]
        ),
        (
            &serde_json::json!("two-stage"),
            &serde_json::json!(1),
            &serde_json::json!(true),
            &serde_json::json!(30.0)
        ),
        "{o}"
    );
    assert!(
        stderr.contains("fine-tune: after 1 head-only epoch(s)"),
        "{stderr}"
    );
    assert_eq!(config["base_sha256"].as_str().unwrap().len(), 64);
    // The weights are ONNX with the new 3-way head and the run's labels in their metadata.
    let best = zoo_onnx::OnnxModel::load(run.join("best.onnx")).unwrap();
    assert_eq!(best.graph.output.dims, [Some(1), Some(3)]);
    assert_eq!(best.metadata["zoo.labels"], r#"["cat","dog","fox"]"#);
    // A run directory is a model argument; its metadata supplies the preprocessing.
    let inspect = zoo(&["inspect", run.to_str().unwrap(), "--json"], t.path());
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    assert!(!inspect.stderr.contains("warning"), "{}", inspect.stderr);
    assert_eq!(inspect.json()["profile"]["source"], "metadata");
    // zoo predict on the run prints the run's labels, highest probability first.
    let image = t.path().join("data/dog/img00.png");
    let predict = zoo(
        &[
            "predict",
            run.to_str().unwrap(),
            image.to_str().unwrap(),
            "--top",
            "3",
            "--json",
        ],
        t.path(),
    );
    assert_eq!(predict.code, 0, "{}", predict.stderr);
    let p = predict.json();
    let top = p["predictions"][0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    let labels: Vec<&str> = top.iter().map(|g| g["label"].as_str().unwrap()).collect();
    assert!(
        labels.iter().all(|l| ["cat", "dog", "fox"].contains(l)),
        "{labels:?}"
    );
    let probs: Vec<f64> = top
        .iter()
        .map(|g| g["probability"].as_f64().unwrap())
        .collect();
    assert!(
        probs.windows(2).all(|w| w[0] >= w[1]) && (probs.iter().sum::<f64>() - 1.0).abs() < 1e-4,
        "{probs:?}"
    );
    assert_eq!(p["labels_from"], "the file's zoo metadata");

    // Export: dynamic batch, metadata, parity with tract on the run's validation images.
    let export = zoo(
        &[
            "export",
            run.to_str().unwrap(),
            "--onnx",
            "--engines",
            "tract",
            "--json",
        ],
        t.path(),
    );
    assert_eq!(export.code, 0, "{}", export.stderr);
    let e = export.json();
    assert_eq!(e["pass"], true, "{e}");
    assert_eq!(e["batch_7"]["batch"], 7);
    assert!(e["batch_1"]["max_rel_diff"].as_f64().unwrap() <= 1e-4);
    assert_eq!(e["samples"], summary["val_images"]);
    let receipt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("parity.json")).unwrap()).unwrap();
    assert_eq!(receipt["pass"], true);
    let exported = zoo_onnx::OnnxModel::load(run.join("model.onnx")).unwrap();
    assert_eq!(exported.graph.input.dims[0], None, "dynamic batch axis");
    assert!(exported.metadata.contains_key("zoo.training_summary"));
    assert_eq!(exported.metadata["zoo.labels"], r#"["cat","dog","fox"]"#);
    let per_class: Vec<&str> = e["batch_7"]["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["class"].as_str().unwrap())
        .collect();
    assert_eq!(per_class, ["cat", "dog", "fox"]);
    assert_eq!(
        e["batch_7"]["engines"][0]["batch"], 7,
        "tract ran batches of 7"
    );

    // The same check on demand: the export against the run's trained network, same fields as
    // the import-mode verify, on the run's validation images and on a whole dataset.
    let model_onnx = run.join("model.onnx");
    let data_dir = t.path().join("data");
    for extra in [vec![], vec!["--data", data_dir.to_str().unwrap()]] {
        let mut args = vec![
            "verify",
            model_onnx.to_str().unwrap(),
            "--run",
            run.to_str().unwrap(),
            "--json",
        ];
        args.extend(extra.iter().copied());
        let v = zoo(&args, t.path());
        assert_eq!(v.code, 0, "{}", v.stderr);
        assert!(!v.stderr.contains("warning"), "{}", v.stderr);
        let j = v.json();
        for field in [
            "pass",
            "samples",
            "batch",
            "max_abs_diff",
            "max_rel_diff",
            "top1_agreement",
            "engines",
            "inputs",
            "model",
        ] {
            assert!(j.get(field).is_some(), "verify --run lacks `{field}`: {j}");
        }
        assert_eq!(j["pass"], true);
        assert_eq!(j["per_class"].as_array().unwrap().len(), 3);
        let expected = if extra.is_empty() {
            summary["val_images"].clone()
        } else {
            (6 + 7 + 8).into()
        };
        assert_eq!(j["samples"], expected);
    }
    // A file that is not this run's export is refused with the reason.
    let foreign = zoo(
        &[
            "verify",
            model.to_str().unwrap(),
            "--run",
            run.to_str().unwrap(),
        ],
        t.path(),
    );
    assert_eq!(foreign.code, 2, "{}", foreign.stderr);
    assert!(foreign.stderr.contains("interface"), "{}", foreign.stderr);

    // Other opsets: across the Softmax change at 13 and down to 7; parity still holds.
    for opset in ["13", "7"] {
        let file = t.path().join(format!("opset{opset}.onnx"));
        let x = zoo(
            &[
                "export",
                run.to_str().unwrap(),
                "--onnx",
                "--opset",
                opset,
                "--engines",
                "tract",
                "--output",
                file.to_str().unwrap(),
                "--json",
            ],
            t.path(),
        );
        assert_eq!(x.code, 0, "opset {opset}: {}", x.stderr);
        assert_eq!(x.json()["pass"], true);
        let again = zoo_onnx::OnnxModel::load(&file).unwrap();
        assert_eq!(again.graph.opset.to_string(), opset);
    }
    let unknown = zoo(
        &["export", run.to_str().unwrap(), "--onnx", "--opset", "40"],
        t.path(),
    );
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("opset 40"), "{}", unknown.stderr);

    // Evaluate the run on all its data: counts add up, classes by name, files written.
    let data = t.path().join("data");
    let eval = zoo(
        &[
            "evaluate",
            run.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--json",
        ],
        t.path(),
    );
    assert_eq!(eval.code, 0, "{}", eval.stderr);
    let ev = eval.json();
    assert_eq!(ev["samples"], 6 + 7 + 8);
    let [lo, hi] = [
        ev["accuracy_ci95"][0].as_f64().unwrap(),
        ev["accuracy_ci95"][1].as_f64().unwrap(),
    ];
    let acc = ev["accuracy"].as_f64().unwrap();
    assert!(lo <= acc && acc <= hi);
    let names: Vec<&str> = ev["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cat", "dog", "fox"]);
    assert!(
        run.join("evaluation/confusion.csv").is_file()
            && run.join("evaluation/confusion.png").is_file()
    );
    // zoo's own network is the default engine; tract, independent, agrees image for image.
    assert!(ev["engine"].as_str().unwrap().starts_with("zoo"), "{ev}");
    let data_arg = data.to_str().unwrap();
    let tract = zoo(
        &[
            "evaluate",
            run.to_str().unwrap(),
            "--data",
            data_arg,
            "--engine",
            "tract",
            "--json",
        ],
        t.path(),
    );
    assert_eq!(tract.code, 0, "{}", tract.stderr);
    let tv = tract.json();
    assert_eq!(tv["engine"], "tract (CPU)");
    assert_eq!(
        (tv["correct"].clone(), tv["classes"].clone()),
        (ev["correct"].clone(), ev["classes"].clone())
    );
    let bad = zoo(
        &["evaluate", run.to_str().unwrap(), "--engine", "onnx"],
        t.path(),
    );
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("zoo, tract or ort"), "{}", bad.stderr);
    let image = data.join("cat/img00.png");
    let guesses = |engine: &str| {
        let p = zoo(
            &[
                "predict",
                run.to_str().unwrap(),
                image.to_str().unwrap(),
                "--engine",
                engine,
                "--json",
            ],
            t.path(),
        );
        assert_eq!(p.code, 0, "{}", p.stderr);
        p.json()["predictions"][0]["top"].clone()
    };
    let (ours, theirs) = (guesses("zoo"), guesses("tract"));
    for k in 0..3 {
        assert_eq!(ours[k]["label"], theirs[k]["label"]);
        let (a, b) = (
            ours[k]["probability"].as_f64().unwrap(),
            theirs[k]["probability"].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

/// `zoo lr-find` prints its suggestions (JSON with --json), writes its curve where --out says,
/// refuses --resume and a rate that is not a number; `--lr auto` is accepted by finetune.
#[test]
fn lr_find_and_lr_auto_from_the_command_line() {
    let t = TempDir::new("lr-find");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    for class in ["a", "b"] {
        write_images(&t.path().join("data").join(class), 5);
    }
    let (model, data) = (model.to_str().unwrap(), t.path().join("data"));
    let data = data.to_str().unwrap();
    let sweep = zoo(
        &["lr-find", model, "--data", data, "--out", "sweep", "--json"],
        t.path(),
    );
    assert_eq!(sweep.code, 0, "{}", sweep.stderr);
    let found = sweep.json();
    assert_eq!(found["rule"], "valley");
    assert_eq!(found["suggestions"].as_array().unwrap().len(), 3);
    assert!(t.path().join("sweep/lr-find.png").is_file());
    let text = zoo(&["lr-find", model, "--data", data], t.path());
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(text.stdout.contains("suggested --lr"), "{}", text.stdout);
    assert!(
        t.path().join("lr-find/lr-find.json").is_file(),
        "the default --out"
    );
    let refused = zoo(&["lr-find", "--resume", "x"], t.path());
    assert_eq!(refused.code, 2);
    let bad = zoo(
        &["finetune", model, "--data", data, "--lr", "fast"],
        t.path(),
    );
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("a number, or auto"), "{}", bad.stderr);
    let auto = zoo(
        &[
            "finetune", model, "--data", data, "--lr", "auto", "--epochs", "1", "--out", "run",
        ],
        t.path(),
    );
    assert_eq!(auto.code, 0, "{}", auto.stderr);
    assert!(
        auto.stderr.contains("lr-find, valley rule"),
        "{}",
        auto.stderr
    );
    assert!(t.path().join("run/lr-find.png").is_file());
}

#[test]
fn finetune_refuses_a_class_count_that_does_not_match() {
    let t = TempDir::new("finetune-mismatch");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    write_images(&t.path().join("data/a"), 3);
    write_images(&t.path().join("data/b"), 3);
    let run = zoo(
        &[
            "finetune",
            model.to_str().unwrap(),
            "--data",
            t.path().join("data").to_str().unwrap(),
            "--classes",
            "5",
            "--out",
            t.path().join("run").to_str().unwrap(),
        ],
        t.path(),
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("--classes 5") && run.stderr.contains("2 classes (a, b)"),
        "{}",
        run.stderr
    );
    let run = zoo(
        &[
            "finetune",
            model.to_str().unwrap(),
            "--data",
            "x",
            "--classes",
            "2",
            "--device",
            "cuda",
        ],
        t.path(),
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("CUDA"), "{}", run.stderr);
}

#[test]
#[ignore = "needs ../shared"]
fn alexnet_standin_finetunes_on_flowers5_with_the_freeze_audit_holding() {
    let t = TempDir::new("alexnet-finetune");
    let model = alexnet_standin(t.path(), "12");
    let light = shared("models/light_bvlc_alexnet.onnx");
    let out = t.path().join("run");
    let run = zoo(
        &[
            "finetune",
            model.to_str().unwrap(),
            "--like",
            "alexnet",
            "--data",
            shared("data/flowers5").to_str().unwrap(),
            "--classes",
            "5",
            "--epochs",
            "2",
            "--weight-decay",
            "0",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
        t.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["train_images"], 320);
    assert_eq!(j["val_images"], 80);
    assert_eq!(j["feature_cache"], "r15");
    assert_eq!(j["frozen_params_unchanged"], true);
    assert_eq!(
        j["frozen_layers"],
        serde_json::json!(["conv1", "conv2", "conv3", "conv4", "conv5"])
    );
    assert_run_files(&out);
    let export = zoo(
        &["export", out.to_str().unwrap(), "--onnx", "--json"],
        t.path(),
    );
    assert_eq!(export.code, 0, "{}", export.stderr);
    let e = export.json();
    assert_eq!(e["pass"], true, "{e}");
    assert_eq!(e["samples"], 80);
    // Every validation image, at batch 1 and 7, against tract and (when installed) ONNX
    // Runtime, which runs the dynamic-batch file 7 images at a time.
    let ort_installed = !e["warnings"].to_string().contains("ONNX Runtime");
    for (key, batch) in [("batch_1", 1), ("batch_7", 7)] {
        let engines = e[key]["engines"].as_array().unwrap();
        let names: Vec<&str> = engines
            .iter()
            .map(|x| x["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            if ort_installed {
                vec!["tract", "ort"]
            } else {
                vec!["tract"]
            }
        );
        for engine in engines {
            assert_eq!(engine["batch"], batch, "{engine}");
            assert_eq!(engine["samples"], 80);
            assert_eq!(engine["top1_agreement"], 1.0);
            assert!(engine["max_rel_diff"].as_f64().unwrap() <= 1e-4, "{engine}");
        }
        assert_eq!(e[key]["per_class"].as_array().unwrap().len(), 5);
    }
    println!("export parity: {}", serde_json::to_string(&e).unwrap());

    // The exported graph is the zoo graph: same nodes (names and op types, LRN and Gemm
    // included) and initializer names, fc8 now [5, 4096].
    let original = prost_model(&light);
    let exported = prost_model(&out.join("model.onnx"));
    let nodes = |m: &zoo_onnx::pb::ModelProto| -> Vec<(String, String)> {
        m.graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .filter(|n| n.op_type != "ConstantOfShape" && n.op_type != "Constant")
            .map(|n| (n.name.clone(), n.op_type.clone()))
            .collect()
    };
    assert_eq!(nodes(&exported), nodes(&original));
    let ops: Vec<String> = nodes(&exported).into_iter().map(|(_, op)| op).collect();
    assert_eq!(ops.iter().filter(|o| *o == "LRN").count(), 2);
    assert_eq!(ops.iter().filter(|o| *o == "Gemm").count(), 3);
    let g = exported.graph.as_ref().unwrap();
    for layer in [
        "conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8",
    ] {
        let w = format!("{layer}_w_0");
        assert!(g.initializer.iter().any(|t| t.name == w), "{w} kept");
    }
    let fc8 = g.initializer.iter().find(|t| t.name == "fc8_w_0").unwrap();
    assert_eq!(fc8.dims, [5, 4096]);

    // The metadata round-trips: predict on the export prints the run's labels.
    let daisy = std::fs::read_dir(shared("data/flowers5/daisy"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let predict = zoo(
        &[
            "predict",
            out.join("model.onnx").to_str().unwrap(),
            daisy.to_str().unwrap(),
            "--json",
        ],
        t.path(),
    );
    assert_eq!(predict.code, 0, "{}", predict.stderr);
    let top: Vec<String> = predict.json()["predictions"][0]["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["label"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = top.clone();
    sorted.sort();
    assert_eq!(sorted, ["daisy", "dandelion", "rose", "sunflower", "tulip"]);
}

fn prost_model(path: &std::path::Path) -> zoo_onnx::pb::ModelProto {
    use prost::Message;
    zoo_onnx::pb::ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
}

#[test]
#[ignore = "needs ../shared"]
fn predict_reads_real_mnist_digits_with_the_lenet_card() {
    let t = TempDir::new("predict-mnist");
    let dataset = zoo_data::open(&shared("data/mnist")).unwrap();
    let mut args = vec![
        "predict".to_string(),
        shared("models/mnist-8.onnx").display().to_string(),
        "--like".into(),
        "lenet".into(),
        "--top".into(),
        "1".into(),
        "--json".into(),
    ];
    let mut truth = Vec::new();
    for (i, s) in dataset.samples.iter().take(40).enumerate() {
        let path = t.path().join(format!("digit{i:02}.png"));
        s.image.load().unwrap().save(&path).unwrap();
        args.push(path.display().to_string());
        truth.push(dataset.classes[s.label].clone());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = zoo(&refs, t.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    let correct = j["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&truth)
        .filter(|(p, t)| p["top"][0]["label"] == t.as_str())
        .count();
    // The model scores 98.9 % on the whole test set.
    assert!(correct >= 38, "{correct}/40 correct");
    assert_eq!(j["labels_from"], "card `lenet`");
}

#[test]
#[ignore = "needs ../shared"]
fn evaluate_mnist_cnn_reproduces_the_published_98_90_percent() {
    let t = TempDir::new("evaluate-mnist");
    let out = t.path().join("eval");
    let run = zoo(
        &[
            "evaluate",
            shared("models/mnist-8.onnx").to_str().unwrap(),
            "--like",
            "lenet",
            "--data",
            shared("data/mnist").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
        t.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["samples"], 10_000);
    assert_eq!(j["correct"], 9_890);
    let csv = std::fs::read_to_string(out.join("confusion.csv")).unwrap();
    let diagonal: usize = csv
        .lines()
        .skip(1)
        .enumerate()
        .map(|(i, l)| l.split(',').nth(i + 1).unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(diagonal, 9_890, "the CSV agrees with the report");
}

#[test]
fn a_class_of_only_unreadable_files_is_refused_and_imbalance_counts_readable_images() {
    let t = TempDir::new("unreadable-class");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    write_images(&t.path().join("data/cat"), 6);
    write_images(&t.path().join("data/dog"), 6);
    let broken = t.path().join("data/fox");
    std::fs::create_dir_all(&broken).unwrap();
    for i in 0..20 {
        std::fs::write(broken.join(format!("f{i}.jpg")), b"not an image").unwrap();
    }
    let (data, out) = (t.path().join("data"), t.path().join("run"));
    let args = [
        "finetune",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ];
    let run = zoo(&args, t.path());
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("class `fox` has no readable image")
            && run.stderr.contains("f0.jpg")
            && !run.stderr.contains("imbalanced"),
        "{}",
        run.stderr
    );
    // With one readable fox among the broken files, the imbalance is of readable images.
    write_images(&broken, 1);
    let run = zoo(&args, t.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("has 6 readable images, `fox` only 1"),
        "{}",
        run.stderr
    );
}
