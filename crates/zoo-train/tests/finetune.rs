//! Finetuning on a small synthetic task: the feature cache changes nothing but speed, the
//! freeze audit holds (and catches broken freezing), mismatches are clear errors.

use std::path::{Path, PathBuf};

use prost::Message;
use zoo_onnx::builder::{Attr, GraphBuilder, SeededRng};
use zoo_train::{finetune, BaseModel, FinetuneOptions, Reporter, TrainProfile, ValidationRow};

struct Quiet;

impl Reporter for Quiet {
    fn info(&self, _: &str) {}
    fn warn(&self, _: &str) {}
    fn row(&self, _: &ValidationRow) {}
    fn progress(&self, _: usize, _: usize) {}
}

fn tmp(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("zoo-train-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// conv1 (frozen) -> relu -> pool -> flatten -> fc1 -> relu -> fc2 (head, 4 outputs) -> softmax.
fn base_model(path: &Path) {
    base_model_ending(path, 4, |_| "g2".into());
}

/// [`base_model`] with fc2 giving `outputs` and `tail` adding nodes after it (from `g2`),
/// returning the value the softmax reads.
fn base_model_ending(path: &Path, outputs: usize, tail: impl FnOnce(&mut GraphBuilder) -> String) {
    let mut rng = SeededRng::new(3);
    let mut b = GraphBuilder::new("x", &[Some(1), Some(3), Some(12), Some(12)]);
    b.init_f32("conv1_w_0", &[6, 3, 3, 3], rng.values(162, 0.3));
    b.init_f32("conv1_b_0", &[6], rng.values(6, 0.1));
    b.init_f32("fc1_w_0", &[16, 6 * 6 * 6], rng.values(16 * 216, 0.1));
    b.init_f32("fc1_b_0", &[16], rng.values(16, 0.1));
    b.init_f32("fc2_w_0", &[outputs, 16], rng.values(16 * outputs, 0.3));
    b.init_f32("fc2_b_0", &[outputs], rng.values(outputs, 0.1));
    b.init_i64("shape", &[1, 216]);
    b.node(
        "n0",
        "Conv",
        &["x", "conv1_w_0", "conv1_b_0"],
        &["c"],
        vec![("pads", Attr::Ints(vec![1, 1, 1, 1]))],
    );
    b.node("n1", "Relu", &["c"], &["r"], vec![]);
    b.node(
        "n2",
        "MaxPool",
        &["r"],
        &["p"],
        vec![
            ("kernel_shape", Attr::Ints(vec![2, 2])),
            ("strides", Attr::Ints(vec![2, 2])),
        ],
    );
    b.node("n3", "Reshape", &["p", "shape"], &["f"], vec![]);
    b.node(
        "n4",
        "Gemm",
        &["f", "fc1_w_0", "fc1_b_0"],
        &["g1"],
        vec![("transB", Attr::Int(1))],
    );
    b.node("n5", "Relu", &["g1"], &["r1"], vec![]);
    b.node(
        "n6",
        "Gemm",
        &["r1", "fc2_w_0", "fc2_b_0"],
        &["g2"],
        vec![("transB", Attr::Int(1))],
    );
    let logits = tail(&mut b);
    b.node("n7", "Softmax", &[&logits], &["prob"], vec![]);
    b.output("prob", &[Some(1), Some(outputs)]);
    std::fs::write(path, b.build(9).encode_to_vec()).unwrap();
}

/// Three classes that differ in colour, with noise: learnable in a few epochs.
fn dataset(root: &Path, per_class: usize) {
    let mut rng = SeededRng::new(17);
    for (c, rgb) in [
        ("red", [200u8, 40, 40]),
        ("green", [40, 200, 40]),
        ("blue", [40, 40, 200]),
    ] {
        let dir = root.join(c);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let img = image::RgbImage::from_fn(16, 14, |_, _| {
                let n = (rng.symmetric() * 50.0) as i32;
                image::Rgb(rgb.map(|v| (v as i32 + n).clamp(0, 255) as u8))
            });
            img.save(dir.join(format!("{i:02}.png"))).unwrap();
        }
    }
}

fn profile() -> TrainProfile {
    TrainProfile {
        name: "tiny".into(),
        preprocessing_from: "test".into(),
        card: None,
        preprocessing: zoo_cards::Preprocessing::default_for([3, 12, 12]),
        freeze: vec!["conv1".into()],
        head: "fc2".into(),
    }
}

fn options(data: &Path, out: &Path, cache: bool) -> FinetuneOptions {
    let mut o = FinetuneOptions::new(data.to_path_buf(), 3);
    o.epochs = 3;
    o.batch_size = 8;
    o.lr = 0.01;
    o.feature_cache = cache;
    o.out = Some(out.to_path_buf());
    o
}

fn weights(run: &Path, name: &str) -> Vec<(String, Vec<f32>)> {
    let model = zoo_onnx::OnnxModel::load(run.join(name)).unwrap();
    let net = zoo_net::Network::<burn::backend::Flex>::from_model(model, &Default::default());
    net.param_values()
        .into_iter()
        .map(|(n, _, v)| (n, v))
        .collect()
}

/// Every named tensor of `a` within `tolerance` of `b`'s.
fn assert_close(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)], tolerance: f32) {
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(b) {
        let diff = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < tolerance, "{name} differs by {diff}");
    }
}

#[test]
fn cached_and_uncached_training_reach_the_same_weights_and_write_the_run() {
    let t = tmp("cache");
    let model = t.join("base.onnx");
    base_model(&model);
    dataset(&t.join("data"), 10);
    let cached = finetune(
        &BaseModel::File(model.clone()),
        &profile(),
        &options(&t.join("data"), &t.join("run-cached"), true),
        None,
        &Quiet,
    )
    .unwrap();
    let plain = finetune(
        &BaseModel::File(model.clone()),
        &profile(),
        &options(&t.join("data"), &t.join("run-plain"), false),
        None,
        &Quiet,
    )
    .unwrap();
    assert_eq!(cached.feature_cache.as_deref(), Some("f"));
    assert_eq!(plain.feature_cache, None);
    assert!(
        cached.freeze_audit.frozen_params_unchanged && plain.freeze_audit.frozen_params_unchanged
    );
    let a = weights(&t.join("run-cached"), "last.onnx");
    let b = weights(&t.join("run-plain"), "last.onnx");
    assert_close(&a, &b, 1e-4);
    assert!(
        cached.best_val_accuracy > 0.5,
        "the colours are learnable: {}",
        cached.best_val_accuracy
    );
    for f in [
        "config.json",
        "labels.txt",
        "metrics.csv",
        "confusion.csv",
        "best.onnx",
        "last.onnx",
        "summary.json",
        "training-progress.png",
        "confusion.png",
    ] {
        assert!(t.join("run-cached").join(f).is_file(), "{f}");
    }
    let progress = image::open(t.join("run-cached/training-progress.png")).unwrap();
    assert_eq!((progress.width(), progress.height()), (960, 720));
    let confusion = image::open(t.join("run-cached/confusion.png"))
        .unwrap()
        .to_rgb8();
    assert!(
        confusion.pixels().any(|p| p.0 != [255, 255, 255]),
        "the confusion plot is not blank"
    );
    let labels = std::fs::read_to_string(t.join("run-cached/labels.txt")).unwrap();
    assert_eq!(labels, "blue\ngreen\nred\n");
    let metrics = std::fs::read_to_string(t.join("run-cached/metrics.csv")).unwrap();
    assert_eq!(
        metrics.lines().count(),
        1 + 3 * 3,
        "header + 3 epochs x 3 iterations"
    );
    // The head has 3 outputs now and the frozen conv is untouched.
    let base = weights(&t, "base.onnx");
    let conv_before = &base.iter().find(|(n, _)| n == "conv1_w_0").unwrap().1;
    let conv_after = &a.iter().find(|(n, _)| n == "conv1_w_0").unwrap().1;
    assert_eq!(conv_before, conv_after);
    assert_eq!(
        a.iter().find(|(n, _)| n == "fc2_w_0").unwrap().1.len(),
        3 * 16
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.join("run-cached/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["frozen_params_unchanged"], true);
    std::fs::remove_dir_all(&t).unwrap();
}

#[test]
fn unfreezing_everything_changes_the_conv_and_the_audit_sees_no_frozen_layer() {
    let t = tmp("unfreeze");
    let model = t.join("base.onnx");
    base_model(&model);
    dataset(&t.join("data"), 6);
    let mut o = options(&t.join("data"), &t.join("run"), true);
    o.freeze = zoo_train::FreezeChoice::Nothing;
    let s = finetune(
        &BaseModel::File(model.clone()),
        &profile(),
        &o,
        None,
        &Quiet,
    )
    .unwrap();
    assert!(s.freeze_audit.frozen_layers.is_empty());
    assert_eq!(s.feature_cache, None, "nothing frozen, nothing to cache");
    let base = weights(&t, "base.onnx");
    let after = weights(&t.join("run"), "last.onnx");
    assert_ne!(base[0].1, after[0].1, "conv1 trains when unfrozen");
    std::fs::remove_dir_all(&t).unwrap();
}

#[test]
fn class_count_mismatch_lists_the_classes() {
    let t = tmp("mismatch");
    let model = t.join("base.onnx");
    base_model(&model);
    dataset(&t.join("data"), 3);
    let mut o = options(&t.join("data"), &t.join("run"), true);
    o.classes = 5;
    let err = finetune(
        &BaseModel::File(model.clone()),
        &profile(),
        &o,
        None,
        &Quiet,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--classes 5") && err.contains("3 classes (blue, green, red)"),
        "{err}"
    );
    let mut o = options(&t.join("data"), &t.join("run2"), true);
    o.freeze = zoo_train::FreezeChoice::Layers(vec!["fc2".into()]);
    let err = finetune(
        &BaseModel::File(model.clone()),
        &profile(),
        &o,
        None,
        &Quiet,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("is the head"), "{err}");
    o.freeze = zoo_train::FreezeChoice::Layers(vec!["conv9".into()]);
    let err = finetune(
        &BaseModel::File(model.clone()),
        &profile(),
        &o,
        None,
        &Quiet,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("conv9") && err.contains("conv1, fc1, fc2"),
        "{err}"
    );
    std::fs::remove_dir_all(&t).unwrap();
}

#[test]
fn ctrl_c_before_the_first_step_still_writes_the_run() {
    let t = tmp("stop");
    let model = t.join("base.onnx");
    base_model(&model);
    dataset(&t.join("data"), 4);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let s = finetune(
        &BaseModel::File(model.clone()),
        &profile(),
        &options(&t.join("data"), &t.join("run"), true),
        Some(stop),
        &Quiet,
    )
    .unwrap();
    assert!(s.interrupted);
    assert_eq!(s.status, zoo_train::RunStatus::Interrupted);
    // No step and no validation: no rate and no best accuracy, not a huge or NaN figure.
    assert_eq!((s.validations, s.images_per_s), (0, 0.0));
    assert!(
        !s.resumable,
        "nothing to resume before the first checkpoint"
    );
    assert!(t.join("run/best.onnx").is_file() && t.join("run/summary.json").is_file());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.join("run/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["status"], "interrupted");
    assert!(summary["best_val_accuracy"].is_null(), "{summary}");
    std::fs::remove_dir_all(&t).unwrap();
}

#[test]
fn the_freeze_audit_fails_when_a_frozen_layer_was_trained() {
    use burn::backend::{Autodiff, Flex};
    use burn::optim::{GradientsParams, Optimizer, SgdConfig};
    type B = Autodiff<Flex>;
    let t = tmp("audit");
    let path = t.join("base.onnx");
    base_model(&path);
    let device = Default::default();
    // "Broken freezing": conv1 is listed as frozen but was left trainable.
    let net = zoo_net::Network::<B>::from_model(zoo_onnx::OnnxModel::load(&path).unwrap(), &device);
    let frozen: Vec<usize> = net.plan().layer("conv1").unwrap().params.clone();
    let snapshot: Vec<Vec<f32>> = frozen.iter().map(|&i| net.param_value(i)).collect();
    assert!(zoo_train::frozen_unchanged(&[&net], &frozen, &snapshot));
    let x = burn::tensor::Tensor::<B, 4>::ones([2, 3, 12, 12], &device);
    let loss = net.forward_logits(x).unwrap().sum();
    let grads = GradientsParams::from_grads(loss.backward(), &net);
    let net = SgdConfig::new()
        .init::<B, zoo_net::Network<B>>()
        .step(0.1, net, grads);
    assert!(
        !zoo_train::frozen_unchanged(&[&net], &frozen, &snapshot),
        "the audit must catch a trained frozen layer"
    );
    std::fs::remove_dir_all(&t).unwrap();
}

#[test]
fn fused_host_sgd_matches_burns_sgd_momentum() {
    use burn::backend::{Autodiff, Flex};
    use burn::optim::decay::WeightDecayConfig;
    use burn::optim::momentum::MomentumConfig;
    use burn::optim::{GradientsParams, Optimizer, SgdConfig};
    type B = Autodiff<Flex>;
    let t = tmp("host-sgd");
    let path = t.join("base.onnx");
    base_model(&path);
    let device = Default::default();
    let load =
        || zoo_net::Network::<B>::from_model(zoo_onnx::OnnxModel::load(&path).unwrap(), &device);
    let (mut a, mut b) = (load(), load());
    let mut burn_sgd = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
        ))
        .with_weight_decay(Some(WeightDecayConfig::new(1e-3)))
        .init::<B, zoo_net::Network<B>>();
    let mut host = zoo_train::host_sgd::HostSgd::new(0.9, 1e-3);
    let all: Vec<usize> = (0..a.plan().params.len()).collect();
    let x = burn::tensor::Tensor::<B, 4>::random(
        [3, 3, 12, 12],
        burn::tensor::Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    for _ in 0..3 {
        let loss =
            |n: &zoo_net::Network<B>| n.forward_logits(x.clone()).unwrap().powf_scalar(2.0).mean();
        let ga = GradientsParams::from_grads(loss(&a).backward(), &a);
        a = burn_sgd.step(0.05, a, ga);
        let mut gb = GradientsParams::from_grads(loss(&b).backward(), &b);
        b = host.step(b, &mut gb, &all, 0.05);
    }
    let named = |n: &zoo_net::Network<_>| -> Vec<(String, Vec<f32>)> {
        n.param_values()
            .into_iter()
            .map(|(name, _, v)| (name, v))
            .collect()
    };
    assert_close(&named(&a), &named(&b), 1e-5);
    std::fs::remove_dir_all(&t).unwrap();
}

/// Keeps what a run says.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl Reporter for Recorder {
    fn info(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
    fn warn(&self, message: &str) {
        self.info(message);
    }
    fn row(&self, _: &ValidationRow) {}
    fn progress(&self, _: usize, _: usize) {}
}

/// A memory budget too small for the images streams them from disk, one too small for the
/// cached features spills them to the run directory, and neither changes what is learned:
/// streamed runs reach the weights of runs that hold their images, bit for bit (with the cache,
/// and with augmentation), and so do runs whose cache spilled. A finished run's spilled cache is
/// removed. (24 images take 41 KB and their features 21 KB; 60 images 104 KB and 52 KB.)
#[test]
fn streamed_images_and_spilled_features_train_to_the_weights_of_held_ones() {
    const BUDGET: u64 = 64 << 10;
    let t = tmp("stream");
    let model = BaseModel::File(t.join("base.onnx"));
    base_model(&t.join("base.onnx"));
    dataset(&t.join("few"), 8);
    dataset(&t.join("more"), 20);
    let run = |data: &str, name: &str, augment: bool, budget: Option<u64>| {
        let mut o = options(&t.join(data), &t.join(name), true);
        o.augment = augment;
        o.memory_budget = budget;
        let said = Recorder::default();
        let summary = finetune(&model, &profile(), &o, None, &said);
        let said = said.0.into_inner().unwrap().join("\n");
        (summary, said, t.join(name))
    };
    let weights_of = |dir: &Path| weights(dir, "last.onnx");
    for augment in [false, true] {
        let (held, said, held_dir) = run("few", &format!("held-{augment}"), augment, None);
        held.unwrap();
        assert!(!said.contains("streaming"), "{said}");
        let (streamed, said, dir) =
            run("few", &format!("streamed-{augment}"), augment, Some(BUDGET));
        let streamed = streamed.unwrap();
        assert!(said.contains("streaming: 24 preprocessed images"), "{said}");
        assert_eq!(streamed.feature_cache.is_some(), !augment, "{said}");
        assert_eq!(weights_of(&held_dir), weights_of(&dir), "augment {augment}");
    }
    let (_, _, held_dir) = run("more", "held-more", false, None);
    for budget in [BUDGET, 1] {
        let (spilled, said, dir) = run("more", &format!("spilled-{budget}"), false, Some(budget));
        assert!(spilled.unwrap().feature_cache.is_some(), "{said}");
        assert!(
            said.contains("feature cache: 60 images' features")
                && said.contains("every row is kept in")
                && said.contains(&dir.join("cache").display().to_string()),
            "{said}"
        );
        assert_eq!(weights_of(&held_dir), weights_of(&dir), "budget {budget}");
        assert!(!dir.join("cache").exists(), "a finished run keeps no cache");
    }
    std::fs::remove_dir_all(&t).unwrap();
}

/// A ReLU right after the replaced head is made a LeakyReLU (said, recorded in the summary's
/// head change, and in the exported file): no class can die behind it. A ReLU zoo does not take out (behind a
/// subtraction of a constant) with one class pushed below zero for every image: that class is dead from the
/// start, said during training, and named in summary.json and the report.
#[test]
fn a_relu_after_the_head_is_made_leaky_and_a_dead_class_is_detected_and_reported() {
    let t = tmp("dead");
    dataset(&t.join("data"), 8);
    let run = |name: &str, tail: fn(&mut GraphBuilder) -> String| {
        let model = t.join(format!("{name}.onnx"));
        base_model_ending(&model, 3, tail);
        let mut o = options(&t.join("data"), &t.join(name), true);
        o.epochs = 2;
        let said = Recorder::default();
        let summary = finetune(&BaseModel::File(model), &profile(), &o, None, &said).unwrap();
        (summary, said.0.into_inner().unwrap().join("\n"))
    };
    let (relu, said) = run("relu", |b| {
        b.node("n_relu", "Relu", &["g2"], &["logits"], vec![]);
        "logits".into()
    });
    let head = serde_json::to_value(&relu.head).unwrap();
    assert_eq!(
        head["unblocked"],
        serde_json::json!(["n_relu", "Relu"]),
        "{head}"
    );
    assert!(
        said.contains("the Relu after the new head (`n_relu`) becomes a LeakyRelu"),
        "{said}"
    );
    assert!(relu.dead_classes.is_empty(), "{:?}", relu.dead_classes);
    let best = zoo_onnx::OnnxModel::load(relu.run_dir.join("best.onnx")).unwrap();
    let count = |op: &str| {
        (best.graph.nodes.iter())
            .filter(|n| n.op.onnx_type() == op)
            .count()
    };
    assert_eq!(count("Relu"), 2, "the body's two ReLUs, not the head's");
    assert_eq!(
        count("LeakyRelu"),
        1,
        "the head's, in the exported file too"
    );

    let (dead, said) = run("pushed-down", |b| {
        // Behind a Flatten, the subtraction is not taken for fc2's bias.
        b.init_f32("push", &[3], vec![1000.0, 0.0, 0.0]);
        b.node("n_flat", "Flatten", &["g2"], &["g2f"], vec![]);
        b.node("n_sub", "Sub", &["g2f", "push"], &["s"], vec![]);
        b.node("n_relu", "Relu", &["s"], &["logits"], vec![]);
        "logits".into()
    });
    assert_eq!(dead.dead_classes, ["blue"], "{said}");
    assert!(
        said.contains("class `blue` is dead before training"),
        "{said}"
    );
    let page = std::fs::read_to_string(dead.run_dir.join("report.html")).unwrap();
    assert!(page.contains("dead classes") && page.contains("blue"));
    let json = std::fs::read_to_string(dead.run_dir.join("summary.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["dead_classes"], serde_json::json!(["blue"]));
    std::fs::remove_dir_all(&t).unwrap();
}

/// `--schedule cosine --warmup 2`: each validation (one per step here) reports the rate its step
/// used, rising over two steps, then falling along a cosine; the rates reach the table, the
/// metrics and config.json. A warm-up as long as the run is refused before a run directory is
/// made.
#[test]
fn a_cosine_schedule_with_warmup_sets_each_steps_rate() {
    use zoo_train::{Schedule, Warmup};
    let t = tmp("schedule");
    base_model(&t.join("base.onnx"));
    dataset(&t.join("data"), 8);
    let model = BaseModel::File(t.join("base.onnx"));
    let mut o = options(&t.join("data"), &t.join("run"), true);
    (o.schedule, o.warmup, o.val_every) = (Schedule::Cosine, Some(Warmup::Iterations(2)), Some(1));
    let summary = finetune(&model, &profile(), &o, None, &Recorder::default()).unwrap();
    let metrics = std::fs::read_to_string(summary.run_dir.join("metrics.csv")).unwrap();
    let rates: Vec<f64> = (metrics.lines().skip(1))
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    // 18 training images, batch 8: 3 steps an epoch, 9 in all; 2 of warm-up, 7 of decay.
    assert_eq!(rates.len(), 9);
    let expected = |i: usize| match i {
        1 | 2 => 0.01 * i as f64 / 2.0,
        _ => 0.01 * 0.5 * (1.0 + (std::f64::consts::PI * (i - 3) as f64 / 7.0).cos()),
    };
    for (k, rate) in rates.iter().enumerate() {
        let want = expected(k + 1);
        assert!(
            (rate - want).abs() <= 1e-12 * want.max(1e-3),
            "step {}: {rate} vs {want}",
            k + 1
        );
    }
    let config = std::fs::read_to_string(summary.run_dir.join("config.json")).unwrap();
    assert!(
        config.contains("\"schedule\": \"cosine\"") && config.contains("\"iterations\": 2"),
        "{config}"
    );

    o.out = Some(t.join("refused"));
    o.warmup = Some(Warmup::Epochs(3.0));
    let err = finetune(&model, &profile(), &o, None, &Recorder::default()).unwrap_err();
    assert!(format!("{err:#}").contains("as long as the run"), "{err:#}");
    assert!(!t.join("refused").exists());
    std::fs::remove_dir_all(&t).unwrap();
}

/// `lr-find` sweeps on a copy of the network and leaves the model as it was: the rates grow
/// from 1e-7 toward 10, three rules are suggested (valley first), and the record and picture
/// are written. `--lr auto` runs the same sweep inside a run and trains at its suggestion,
/// which config.json records as the run's rate.
#[test]
fn lr_find_suggests_a_rate_and_lr_auto_trains_at_it() {
    let t = tmp("lr-find");
    base_model(&t.join("base.onnx"));
    dataset(&t.join("data"), 8);
    let before = std::fs::read(t.join("base.onnx")).unwrap();
    let model = BaseModel::File(t.join("base.onnx"));
    let o = options(&t.join("data"), &t.join("unused"), true);
    let found = zoo_train::lr_find(
        &model,
        &profile(),
        &o,
        &t.join("sweep"),
        &Recorder::default(),
    )
    .unwrap();
    assert_eq!(std::fs::read(t.join("base.onnx")).unwrap(), before);
    assert!(!t.join("unused").exists(), "no run is made");
    assert!(found.lrs.len() >= 10 && (found.lrs[0] - 1e-7).abs() < 1e-15);
    assert!(found.lrs.windows(2).all(|w| w[1] > w[0]));
    let rules: Vec<&str> = found.suggestions.iter().map(|s| s.rule.as_str()).collect();
    assert_eq!(rules, ["valley", "steep", "minimum/10"]);
    assert_eq!(
        (found.rule.as_str(), found.lr),
        ("valley", found.suggestions[0].lr)
    );
    assert!(found.lr > 1e-7 && found.lr < 10.0, "{}", found.lr);
    let json = std::fs::read_to_string(t.join("sweep/lr-find.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["lr"].as_f64(), Some(found.lr));
    let png = std::fs::read(t.join("sweep/lr-find.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));

    let mut auto = options(&t.join("data"), &t.join("auto"), true);
    auto.lr_auto = true;
    let said = Recorder::default();
    let summary = finetune(&model, &profile(), &auto, None, &said).unwrap();
    let said = said.0.into_inner().unwrap().join("\n");
    let config = std::fs::read_to_string(summary.run_dir.join("config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    let swept = std::fs::read_to_string(summary.run_dir.join("lr-find.json")).unwrap();
    let swept: serde_json::Value = serde_json::from_str(&swept).unwrap();
    assert_eq!(config["options"]["lr"], swept["lr"]);
    assert_eq!(config["options"]["lr_auto"], true);
    assert!(said.contains("(lr-find, valley rule)"), "{said}");
    std::fs::remove_dir_all(&t).unwrap();
}

/// Stops the run at its first validation (the end of epoch 1): Ctrl-C as a user would press it.
struct StopAtFirstRow(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Reporter for StopAtFirstRow {
    fn info(&self, _: &str) {}
    fn warn(&self, _: &str) {}
    fn row(&self, _: &ValidationRow) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    fn progress(&self, _: usize, _: usize) {}
}

/// `--fine-tune 1`: the first epoch trains the head alone (its weights are those of a head-only
/// run, the body is the base model's), then every layer trains (conv1, frozen by the card, and
/// fc1 move), with the earlier half of the body at lr / spread; a run stopped at the switch and
/// resumed reaches the uninterrupted run's weights bit for bit.
#[test]
fn fine_tune_trains_the_head_first_then_the_body_at_spread_rates_and_resumes_exactly() {
    for optimizer in [
        zoo_train::OptimizerKind::Sgdm,
        zoo_train::OptimizerKind::Adam,
    ] {
        let t = tmp(&format!("two-stage-{optimizer:?}"));
        base_model(&t.join("base.onnx"));
        dataset(&t.join("data"), 8);
        let mut o = options(&t.join("data"), &t.join("whole"), false);
        (o.fine_tune, o.optimizer) = (Some(1), optimizer);
        two_stages_hold(&t, &o);
        std::fs::remove_dir_all(&t).unwrap();
    }
}

fn two_stages_hold(t: &Path, o: &FinetuneOptions) {
    let model = BaseModel::File(t.join("base.onnx"));
    let whole = finetune(&model, &profile(), o, None, &Quiet).unwrap();
    assert!(
        whole.freeze_audit.frozen_layers.is_empty(),
        "stage two trains everything"
    );
    let config = std::fs::read_to_string(t.join("whole/config.json")).unwrap();
    assert!(config.contains("\"fine_tune\": 1"), "{config}");
    // Stopped after epoch 1: the head-only stage's weights.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped_at = |out: &str, o: &FinetuneOptions| {
        stop.store(false, std::sync::atomic::Ordering::SeqCst);
        let o = FinetuneOptions {
            out: Some(t.join(out)),
            ..o.clone()
        };
        let reporter = StopAtFirstRow(stop.clone());
        let s = finetune(&model, &profile(), &o, Some(stop.clone()), &reporter);
        assert!(s.unwrap().interrupted);
        weights(&t.join(out), "last.onnx")
    };
    let head_stage = stopped_at("staged", o);
    let mut head_only = o.clone();
    head_only.fine_tune = None;
    head_only.freeze = zoo_train::FreezeChoice::Layers(vec!["conv1".into(), "fc1".into()]);
    assert_eq!(head_stage, stopped_at("head-only", &head_only));
    let base = weights(t, "base.onnx");
    let end = weights(&t.join("whole"), "last.onnx");
    for layer in ["conv1", "fc1"] {
        let of = |w: &[(String, Vec<f32>)]| {
            let found = w.iter().find(|(n, _)| n.starts_with(layer));
            found.unwrap().1.clone()
        };
        assert_eq!(
            of(&head_stage),
            of(&base),
            "{layer} frozen in the head stage"
        );
        assert_ne!(of(&end), of(&base), "{layer} trains after the switch");
    }
    let resumed = zoo_train::resume(&t.join("staged"), None, &Quiet).unwrap();
    assert!(!resumed.interrupted);
    assert_eq!(weights(&t.join("staged"), "last.onnx"), end);
    let best = |run: &str| weights(&t.join(run), "best.onnx");
    assert_eq!(best("staged"), best("whole"));
}

/// The rate groups: the trainable body's earlier half at 1 / spread, its later half at 1, the
/// head at its factor; one body group without a spread.
#[test]
fn rate_groups_spread_the_body_and_keep_the_heads_factor() {
    let t = tmp("groups");
    base_model(&t.join("base.onnx"));
    let onnx = zoo_onnx::OnnxModel::load(t.join("base.onnx")).unwrap();
    let net = zoo_net::Network::<zoo_train::CpuTrain>::from_model(onnx, &Default::default());
    let plan = net.plan();
    let of = |layer: &str| plan.layer(layer).unwrap().params.clone();
    let head = of("fc2");
    let groups = zoo_train::updater::rate_groups(&net, &head, 10.0, 100.0);
    let factors: Vec<f64> = groups.iter().map(|g| g.factor).collect();
    let params: Vec<Vec<usize>> = groups.iter().map(|g| g.params.clone()).collect();
    assert_eq!(factors, [0.01, 1.0, 10.0]);
    assert_eq!(params, [of("conv1"), of("fc1"), head.clone()]);
    let one = zoo_train::updater::rate_groups(&net, &head, 10.0, 1.0);
    assert_eq!(one.len(), 2);
    assert_eq!((one[0].factor, one[0].params.len()), (1.0, 4));
    std::fs::remove_dir_all(&t).unwrap();
}

/// `--ema D`: the average follows `e = D e + (1 - D) w` from the weights before the first step.
/// Directly (three steps of made-up weights on the network) and in a run of one step, where the
/// best (validated) model must be `D w0 + (1 - D) w1` of the starting weights (a run stopped
/// before its first step) and the trained ones (last.onnx).
#[test]
fn ema_weights_follow_the_recurrence() {
    let t = tmp("ema");
    base_model(&t.join("base.onnx"));
    let onnx = zoo_onnx::OnnxModel::load(t.join("base.onnx")).unwrap();
    let mut net = zoo_net::Network::<zoo_train::CpuTrain>::from_model(onnx, &Default::default());
    let fc2 = net.plan().layer("fc2").unwrap().params[1];
    let start = net.param_value(fc2);
    let mut ema = zoo_train::ema::Ema::new(0.75, &net, &[fc2]);
    let mut expected = start.clone();
    for step in 1..=3 {
        let w: Vec<f32> = (0..start.len()).map(|k| (k * step) as f32 - 1.5).collect();
        net.set_param_values(fc2, w.clone());
        ema.update(&net);
        for (e, w) in expected.iter_mut().zip(&w) {
            *e = 0.75 * *e + 0.25 * w;
        }
    }
    assert_eq!(ema.values()[0].1, expected);
    assert_ne!(expected, start);

    dataset(&t.join("data"), 4);
    let model = BaseModel::File(t.join("base.onnx"));
    let mut o = options(&t.join("data"), &t.join("before"), false);
    (o.epochs, o.batch_size, o.ema) = (1, 64, Some(0.5));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    finetune(&model, &profile(), &o, Some(stop), &Quiet).unwrap();
    o.out = Some(t.join("run"));
    let s = finetune(&model, &profile(), &o, None, &Quiet).unwrap();
    assert_eq!(s.validations, 1);
    let (w0, w1) = (
        weights(&t.join("before"), "best.onnx"),
        weights(&t.join("run"), "last.onnx"),
    );
    let averaged = weights(&t.join("run"), "best.onnx");
    let mut moved = 0;
    for (((name, a), (_, b)), (_, e)) in w0.iter().zip(&w1).zip(&averaged) {
        for ((a, b), e) in a.iter().zip(b).zip(e) {
            assert!(
                (0.5 * a + 0.5 * b - e).abs() <= 1e-6,
                "{name}: {e} vs {a}, {b}"
            );
            moved += usize::from(a != b);
        }
    }
    assert!(moved > 0, "the step changed the weights");
    std::fs::remove_dir_all(&t).unwrap();
}
