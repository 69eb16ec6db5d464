//! End-to-end tests of the `zoo` command line: real processes, real files, outputs re-read.

mod common;

use common::{alexnet_standin, shared, small_rgb_classifier, write_images, zoo, TempDir};
use zoo_onnx::ops::Activation;

#[test]
fn inspect_json_lists_layers_params_and_op_support() {
    let t = TempDir::new("inspect");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    let run = zoo(&["inspect", model.to_str().unwrap(), "--json"], t.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    let names: Vec<&str> = j["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["conv1", "n1", "n2", "n3", "n4", "fc6", "n6", "fc7", "n8"]
    );
    let conv1 = &j["layers"][0];
    assert_eq!(conv1["op"], "Conv");
    assert_eq!(conv1["output_shape"], serde_json::json!([1, 8, 10, 9]));
    assert_eq!(conv1["params"], 608);
    // No card: the default plan freezes every layer but the last.
    assert_eq!(conv1["trainable"], false);
    assert_eq!(j["layers"][7]["trainable"], true);
    assert_eq!(j["total_params"], 608 + 16 * 160 + 16 + 85);
    let lrn = j["ops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == "LRN")
        .unwrap();
    assert_eq!(
        (
            lrn["import"].as_bool(),
            lrn["export"].as_bool(),
            lrn["tract"].as_bool()
        ),
        (Some(true), Some(true), Some(true))
    );
    assert!(
        run.stderr
            .contains("warning: no model card and no zoo metadata"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--like"));
}

#[test]
fn inspect_table_with_like_uses_the_card_and_warns_not() {
    let t = TempDir::new("inspect-like");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    let run = zoo(
        &["inspect", model.to_str().unwrap(), "--like", "alexnet"],
        t.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    assert!(run.stdout.contains("(card `alexnet`)"), "{}", run.stdout);
    assert!(run.stdout.contains("Nx8x10x9"), "{}", run.stdout);
    assert!(
        run.stdout.contains("total parameters      3,269"),
        "{}",
        run.stdout
    );
}

#[test]
fn inspect_reports_unsupported_ops_with_tract_support() {
    let t = TempDir::new("inspect-unsupported");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    let bytes = std::fs::read(&model).unwrap();
    let mut proto = zoo_onnx::decode_proto(bytes).unwrap();
    proto.graph.as_mut().unwrap().node[1].op_type = "Acos".into();
    zoo_onnx::write::save_atomic(&proto, &model).unwrap();
    let run = zoo(&["inspect", model.to_str().unwrap(), "--json"], t.path());
    assert_eq!(run.code, 2);
    let j = run.json();
    let err = j["import_error"].as_str().unwrap();
    assert!(
        err.contains("Acos") && err.contains("n1") && err.contains("supported ops"),
        "{err}"
    );
    let elu = j["ops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == "Acos")
        .unwrap();
    assert_eq!(elu["import"], false);
    assert_eq!(elu["tract"], true);
}

#[test]
fn verify_random_inputs_passes_at_batch_1_and_3() {
    let t = TempDir::new("verify");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    for batch in ["1", "3"] {
        let run = zoo(
            &[
                "verify",
                model.to_str().unwrap(),
                "--samples",
                "7",
                "--batch",
                batch,
                "--json",
                "--like",
                "alexnet",
            ],
            t.path(),
        );
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        let j = run.json();
        assert_eq!(j["pass"], true);
        assert_eq!(j["samples"], 7);
        assert_eq!(j["batch"].to_string(), batch);
        assert_eq!(j["top1_agreement"], 1.0);
        assert!(j["max_rel_diff"].as_f64().unwrap() <= 1e-4);
        assert_eq!(j["engines"][0]["name"], "tract");
    }
}

#[test]
fn verify_images_skips_unreadable_files_and_counts_the_rest() {
    let t = TempDir::new("verify-images");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    let images = t.path().join("images");
    write_images(&images.join("a"), 5);
    std::fs::write(images.join("a/broken.jpg"), b"\xff\xd8\xff\xe0 truncated").unwrap();
    let run = zoo(
        &[
            "verify",
            model.to_str().unwrap(),
            "--images",
            images.to_str().unwrap(),
            "--batch",
            "2",
            "--json",
        ],
        t.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["samples"], 5);
    assert_eq!(j["pass"], true);
    let skipped = j["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].as_str().unwrap().contains("broken.jpg"));
}

#[test]
fn verify_exits_1_when_tolerance_is_exceeded() {
    let t = TempDir::new("verify-fail");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    let run = zoo(
        &[
            "verify",
            model.to_str().unwrap(),
            "--tolerance",
            "0",
            "--samples",
            "16",
            "--json",
        ],
        t.path(),
    );
    let j = run.json();
    // Two float implementations never agree to the last bit over thousands of products.
    assert!(j["max_rel_diff"].as_f64().unwrap() > 0.0);
    assert_eq!(j["pass"], false);
    assert_eq!(run.code, 1);
}

#[test]
fn bad_inputs_are_clear_errors_with_exit_2() {
    let t = TempDir::new("errors");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    let bytes = std::fs::read(&model).unwrap();
    let truncated = t.path().join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let run = zoo(&["verify", truncated.to_str().unwrap()], t.path());
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("not a valid ONNX protobuf"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"));

    let run = zoo(&["inspect", "resnet50"], t.path());
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown model `resnet50`")
            && run.stderr.contains(
                "did you mean resnet50-a1, resnet50-caffe2, resnet50-v1, resnet50-v2, resnet50d?"
            )
            && run.stderr.contains("alexnet, beit-base, caffenet"),
        "{}",
        run.stderr
    );

    let run = zoo(&["inspect", "alexnet"], t.path());
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("zoo fetch alexnet"), "{}", run.stderr);

    let run = zoo(
        &["verify", model.to_str().unwrap(), "--engines", "onnxjs"],
        t.path(),
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown engine `onnxjs`"),
        "{}",
        run.stderr
    );

    let run = zoo(
        &["inspect", model.to_str().unwrap(), "--like", "vgg"],
        t.path(),
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(
            "(did you mean repvgg-a2, repvgg-b0, vgg16, vgg16-bn, vgg19, vgg19-bn, vgg19-caffe2?)"
        ) && run
            .stderr
            .contains("known models: alexnet, beit-base, caffenet"),
        "{}",
        run.stderr
    );
}

#[test]
#[ignore = "needs ../shared"]
fn inspect_alexnet_standin_lists_conv1_to_fc8_and_60965224_params() {
    let t = TempDir::new("alexnet-inspect");
    let model = alexnet_standin(t.path(), "12");
    let run = zoo(
        &[
            "inspect",
            model.to_str().unwrap(),
            "--like",
            "alexnet",
            "--json",
        ],
        t.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["total_params"], 60_965_224);
    let with_params: Vec<(&str, bool)> = j["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["params"].as_u64().unwrap() > 0)
        .map(|l| {
            (
                l["name"].as_str().unwrap(),
                l["trainable"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        with_params,
        [
            ("conv1", false),
            ("conv2", false),
            ("conv3", false),
            ("conv4", false),
            ("conv5", false),
            ("fc6", true),
            ("fc7", true),
            ("fc8", true)
        ]
    );
    let ops: Vec<&str> = j["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["op"].as_str().unwrap())
        .collect();
    assert!(ops.contains(&"LRN") && ops.contains(&"Gemm"));
}

#[test]
#[ignore = "needs ../shared"]
fn verify_alexnet_standin_opset_9_and_12_at_batch_1_and_8() {
    let t = TempDir::new("alexnet-verify");
    for opset in ["9", "12"] {
        let model = alexnet_standin(t.path(), opset);
        for batch in ["1", "8"] {
            let run = zoo(
                &[
                    "verify",
                    model.to_str().unwrap(),
                    "--like",
                    "alexnet",
                    "--batch",
                    batch,
                    "--samples",
                    "8",
                    "--json",
                ],
                t.path(),
            );
            assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
            let j = run.json();
            assert_eq!(j["pass"], true, "opset {opset} batch {batch}: {j}");
            assert!(j["max_rel_diff"].as_f64().unwrap() <= 1e-4);
            assert_eq!(j["top1_agreement"], 1.0);
        }
    }
}

#[test]
#[ignore = "needs ../shared"]
fn verify_alexnet_standin_on_real_photos_with_the_caffe_recipe() {
    let t = TempDir::new("alexnet-photos");
    let model = alexnet_standin(t.path(), "12");
    let photos = shared("data/flowers5");
    let run = zoo(
        &[
            "verify",
            model.to_str().unwrap(),
            "--like",
            "alexnet",
            "--images",
            photos.to_str().unwrap(),
            "--samples",
            "24",
            "--batch",
            "8",
            "--json",
        ],
        t.path(),
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let j = run.json();
    assert_eq!(j["samples"], 24);
    assert_eq!(j["pass"], true, "{j}");
}

#[test]
#[ignore = "needs ../shared"]
fn verify_mnist_cnn_at_batch_1_and_8() {
    let t = TempDir::new("mnist-verify");
    let model = shared("models/mnist-8.onnx");
    for batch in ["1", "8"] {
        let run = zoo(
            &[
                "verify",
                model.to_str().unwrap(),
                "--like",
                "lenet",
                "--batch",
                batch,
                "--samples",
                "16",
                "--json",
            ],
            t.path(),
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        let j = run.json();
        assert_eq!(j["pass"], true);
        assert_eq!(j["top1_agreement"], 1.0);
    }
}

/// Every family with a light graph in ../shared: the card's freeze plan and head name layers
/// of the real graph (patterns resolve, nothing unknown), as `zoo inspect FILE --like CARD`.
#[test]
#[ignore = "needs ../shared"]
fn cards_freeze_plans_and_heads_resolve_on_the_light_zoo_graphs() {
    let t = TempDir::new("cards-light");
    for (light, card) in [
        ("bvlc_alexnet", "alexnet"),
        ("zfnet512", "zfnet512"),
        ("vgg19", "vgg19-caffe2"),
        ("inception_v1", "inception-v1"),
        ("inception_v2", "inception-v2"),
        ("squeezenet", "squeezenet1.0"),
        ("resnet50", "resnet50-caffe2"),
        ("shufflenet", "shufflenet"),
        ("densenet121", "densenet121"),
    ] {
        let out = t.path().join(format!("{light}.onnx"));
        let src = common::shared(&format!("models/light/light_{light}.onnx"));
        let m = zoo(
            &[
                "materialize",
                src.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
            t.path(),
        );
        assert_eq!(m.code, 0, "{light}: {}", m.stderr);
        let run = zoo(
            &["inspect", out.to_str().unwrap(), "--like", card, "--json"],
            t.path(),
        );
        assert_eq!(run.code, 0, "{light}: {}", run.stderr);
        let j = run.json();
        let layers: Vec<&str> = j["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["name"].as_str())
            .collect();
        let head = j["profile"]["head"].as_str().unwrap();
        assert!(
            layers.contains(&head),
            "{card}: head `{head}` not among {layers:?}"
        );
        let freeze: Vec<&str> = j["profile"]["freeze"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert!(!freeze.is_empty(), "{card}");
        for f in &freeze {
            assert!(
                layers.contains(f),
                "{card}: frozen `{f}` is not a layer of {light}"
            );
        }
        let (trainable, total) = (
            j["trainable_params"].as_u64().unwrap(),
            j["total_params"].as_u64().unwrap(),
        );
        assert!(
            trainable > 0 && trainable < total,
            "{card}: {trainable} of {total} train"
        );
        println!(
            "{card}: {} layers, {} frozen, head {head}, {trainable} of {total} parameters train",
            layers.len(),
            freeze.len()
        );
    }
}

/// Hostile names and counts: a 70,000-character node name is cut in the table (the JSON keeps
/// it), and zero samples, batches or validation intervals are refused by the parser.
#[test]
fn huge_names_and_zero_counts_are_handled_without_panics() {
    let t = TempDir::new("hostile");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    let bytes = std::fs::read(&model).unwrap();
    let mut proto = zoo_onnx::decode_proto(bytes).unwrap();
    let long = "n".repeat(70_000);
    proto.graph.as_mut().unwrap().node[1].name = long.clone();
    zoo_onnx::write::save_atomic(&proto, &model).unwrap();
    let run = zoo(&["inspect", model.to_str().unwrap()], t.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("nnn...nnn") && !run.stdout.contains(&long));
    let json = zoo(&["inspect", model.to_str().unwrap(), "--json"], t.path());
    assert!(json.stdout.contains(&long));
    for args in [
        vec!["verify", model.to_str().unwrap(), "--samples", "0"],
        vec!["verify", model.to_str().unwrap(), "--batch", "0"],
        vec!["verify", model.to_str().unwrap(), "--samples", "100000000"],
    ] {
        let run = zoo(&args, t.path());
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    let run = zoo(
        &[
            "finetune",
            model.to_str().unwrap(),
            "--data",
            t.path().to_str().unwrap(),
            "--val-every",
            "0",
        ],
        t.path(),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
}

/// A learning rate that makes the loss explode stops the run with the reason, instead of
/// reporting a model full of NaN as trained.
#[test]
fn a_diverging_learning_rate_is_an_error_not_a_nan_model() {
    let t = TempDir::new("diverge");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    for class in ["a", "b"] {
        write_images(&t.path().join("data").join(class), 6);
    }
    let run = zoo(
        &[
            "finetune",
            model.to_str().unwrap(),
            "--data",
            t.path().join("data").to_str().unwrap(),
            "--lr",
            "1e30",
            "--epochs",
            "5",
            "--out",
            t.path().join("runs").to_str().unwrap(),
        ],
        t.path(),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("training diverged") && run.stderr.contains("lower --lr"),
        "{}",
        run.stderr
    );
    // The run folder says it failed, and why.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path().join("runs/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["status"], "failed", "{summary}");
    assert!(
        summary["error"].as_str().unwrap().contains("diverged"),
        "{summary}"
    );
    assert!(!t.path().join("runs/best.onnx").exists() || summary["best"].is_object());
}

/// 28x28 gray "digits" in class folders: bars and blocks that an MLP separates at once.
fn gray_digits(root: &std::path::Path) {
    for (k, class) in ["0", "1", "2"].iter().enumerate() {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..8u32 {
            let img = image::GrayImage::from_fn(28, 28, |x, y| {
                let on = match k {
                    0 => (4 + i % 3..10 + i % 3).contains(&x),
                    1 => (4 + i % 3..10 + i % 3).contains(&y),
                    _ => x > 18 && y > 18,
                };
                image::Luma([if on { 230 } else { 10 }])
            });
            img.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }
}

#[test]
fn train_mlp_with_chosen_widths_activation_and_quadratic_loss_records_them_and_resumes_them() {
    let t = TempDir::new("train-mlp");
    gray_digits(&t.path().join("digits"));
    let run = t.path().join("run");
    let digits = t.path().join("digits");
    let r = zoo(
        &[
            "train",
            "mlp",
            "--hidden",
            "12,6",
            "--activation",
            "tanh",
            "--loss",
            "quadratic",
            "--data",
            digits.to_str().unwrap(),
            "--val-per-class",
            "2",
            "--epochs",
            "3",
            "--batch-size",
            "4",
            "--lr",
            "0.5",
            "--head-lr-factor",
            "1",
            "--out",
            run.to_str().unwrap(),
            "--json",
        ],
        t.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["model"], "mlp-12-6-tanh");
    let config = common::read_json(&run.join("config.json"));
    assert_eq!(
        config["base"]["arch"],
        serde_json::json!({"name": "mlp", "hidden": [12, 6], "activation": "tanh"})
    );
    assert_eq!(config["options"]["loss"], "quadratic");
    let best = zoo_onnx::OnnxModel::load(run.join("best.onnx")).unwrap();
    let tanh = best
        .graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, zoo_onnx::Op::Activation(Activation::Tanh)))
        .count();
    assert_eq!(tanh, 2);
    assert!(run.join("report.html").is_file());
    let bad = zoo(
        &[
            "train",
            "mlp",
            "--activation",
            "swish",
            "--data",
            digits.to_str().unwrap(),
        ],
        t.path(),
    );
    assert!(
        bad.code == 2 && bad.stderr.contains("sigmoid, tanh or relu"),
        "{}",
        bad.stderr
    );
    let digits_missing = zoo(
        &[
            "train",
            "linear2d",
            "--digits",
            "1,9",
            "--data",
            digits.to_str().unwrap(),
        ],
        t.path(),
    );
    assert!(
        digits_missing.code == 2 && digits_missing.stderr.contains("no class `9`"),
        "{}",
        digits_missing.stderr
    );
}
