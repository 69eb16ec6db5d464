//! The lecture's first half: MLPs with chosen widths and activations, the quadratic loss, and
//! the single neuron on two hand-made features of a digit.

use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};
use zoo_net::Network;
use zoo_train::arch::{build, FEATURES};
use zoo_train::trainer::training_loss;
use zoo_train::{
    train_from_scratch, Activation, ArchSpec, FinetuneOptions, LossKind, Reporter, ValidationRow,
};

struct Quiet;

impl Reporter for Quiet {
    fn info(&self, _: &str) {}
    fn warn(&self, _: &str) {}
    fn row(&self, _: &ValidationRow) {}
    fn progress(&self, _: usize, _: usize) {}
}

type Ad = Autodiff<Flex>;

fn loss_at(kind: LossKind, logits: &[f32], labels: &[usize]) -> f32 {
    let d = Default::default();
    let t = Tensor::<Flex, 2>::from_data(TensorData::new(logits.to_vec(), [2, 3]), &d);
    training_loss(kind, t, labels, &d).into_scalar()
}

#[test]
fn quadratic_loss_is_half_the_squared_softmax_error_with_matching_gradients() {
    let logits = [1.0f32, -0.5, 0.3, 0.2, 2.0, -1.0];
    let labels = [0usize, 2];
    let softmax = |row: &[f32]| {
        let e: Vec<f32> = row.iter().map(|v| v.exp()).collect();
        let s: f32 = e.iter().sum();
        e.into_iter().map(|v| v / s).collect::<Vec<_>>()
    };
    let by_hand: f32 = logits
        .chunks(3)
        .zip(labels)
        .map(|(row, l)| {
            let p = softmax(row);
            0.5 * (0..3)
                .map(|k| (p[k] - if k == l { 1.0 } else { 0.0 }).powi(2))
                .sum::<f32>()
        })
        .sum::<f32>()
        / 2.0;
    let value = loss_at(LossKind::Quadratic, &logits, &labels);
    assert!((value - by_hand).abs() < 1e-6, "{value} vs {by_hand}");
    // Autodiff gradient against central differences.
    let d = Default::default();
    let x = Tensor::<Ad, 2>::from_data(TensorData::new(logits.to_vec(), [2, 3]), &d).require_grad();
    let grads = training_loss(LossKind::Quadratic, x.clone(), &labels, &d).backward();
    let g = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
    for i in 0..6 {
        let (mut up, mut down) = (logits, logits);
        up[i] += 1e-3;
        down[i] -= 1e-3;
        let fd = (loss_at(LossKind::Quadratic, &up, &labels)
            - loss_at(LossKind::Quadratic, &down, &labels))
            / 2e-3;
        assert!((g[i] - fd).abs() < 1e-3, "logit {i}: {} vs {fd}", g[i]);
    }
    // A saturated wrong answer: cross-entropy still pulls hard, quadratic hardly at all (why
    // quadratic loss learns slowly).
    let wrong = [10.0f32, 0.0, 0.0, 10.0, 0.0, 0.0];
    let slope = |kind| {
        let x =
            Tensor::<Ad, 2>::from_data(TensorData::new(wrong.to_vec(), [2, 3]), &d).require_grad();
        let grads = training_loss(kind, x.clone(), &[1, 1], &d).backward();
        let g = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
        g.iter().map(|v| v.abs()).fold(0.0f32, f32::max)
    };
    assert!(slope(LossKind::CrossEntropy) > 100.0 * slope(LossKind::Quadratic));
}

#[test]
fn mlp_has_the_widths_and_activation_asked_for() {
    let spec = ArchSpec {
        hidden: vec![7, 5],
        activation: Activation::Tanh,
        ..ArchSpec::named("mlp")
    };
    assert_eq!(spec.label(), "mlp-7-5-tanh");
    let arch = build(&spec, 3, 0).unwrap();
    let graph = arch.model.graph.as_ref().unwrap();
    let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops.iter().filter(|o| **o == "Tanh").count(), 2);
    assert_eq!(ops.iter().filter(|o| **o == "Gemm").count(), 3);
    let dims = |name: &str| -> Vec<i64> {
        graph
            .initializer
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .dims
            .clone()
    };
    assert_eq!(dims("fc1_w_0"), [7, 784]);
    assert_eq!(dims("fc2_w_0"), [5, 7]);
    assert_eq!(dims("fc3_w_0"), [3, 5]);
    assert_eq!(arch.head, "fc3");
    let none = ArchSpec {
        hidden: vec![],
        ..spec
    };
    assert!(build(&none, 3, 0).is_err());
}

#[test]
fn linear2d_computes_intensity_and_mirror_difference() {
    let arch = build(&ArchSpec::named("linear2d"), 2, 0).unwrap();
    let d = Default::default();
    let model = zoo_onnx::OnnxModel::from_proto(arch.model).unwrap();
    let net = Network::<Flex>::from_model(model, &d);
    // Image 0: a left-right symmetric bar; image 1: bright only in its left half.
    let mut pixels = vec![0f32; 2 * 784];
    for r in 0..28 {
        for c in 12..16 {
            pixels[r * 28 + c] = 1.0;
        }
        for c in 0..14 {
            pixels[784 + r * 28 + c] = 0.5;
        }
    }
    let x = Tensor::<Flex, 4>::from_data(TensorData::new(pixels.clone(), [2, 1, 28, 28]), &d);
    let f = net.forward_to(x, FEATURES).unwrap().to_vec();
    let mean = |img: &[f32]| img.iter().sum::<f32>() / 784.0;
    let asym = |img: &[f32]| {
        (0..784)
            .map(|i| {
                let (r, c) = (i / 28, i % 28);
                (img[i] - img[r * 28 + 27 - c]).powi(2)
            })
            .sum::<f32>()
            / 784.0
    };
    for (k, img) in pixels.chunks(784).enumerate() {
        assert!((f[2 * k] - mean(img)).abs() < 1e-6, "intensity of {k}");
        assert!((f[2 * k + 1] - asym(img)).abs() < 1e-6, "symmetry of {k}");
    }
    assert_eq!(
        f[1], 0.0,
        "a mirror-symmetric digit has no mirror difference"
    );
}

/// Class folders of 28x28 "digits": `1` thin centred bars (symmetric, dark), `5` a bright
/// block on the left (asymmetric, bright), with jitter.
fn digits(root: &std::path::Path) {
    let mut rng = zoo_onnx::builder::SeededRng::new(9);
    for (class, n) in [("1", 40), ("5", 40), ("7", 10)] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let shift = (rng.next_u64() % 3) as u32;
            let img = image::GrayImage::from_fn(28, 28, |x, y| {
                let on = match class {
                    "1" => (13..15).contains(&x) && (4..24).contains(&y),
                    "5" => (3 + shift..12 + shift).contains(&x) && (6..22).contains(&y),
                    _ => y == 5 && x > 4,
                };
                image::Luma([if on { 220 } else { 0 }])
            });
            img.save(dir.join(format!("{i:02}.png"))).unwrap();
        }
    }
}

#[test]
fn linear2d_learns_one_against_five_with_its_features_fixed_and_draws_the_line() {
    let root = std::env::temp_dir().join(format!("zoo-linear2d-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    digits(&root.join("data"));
    let mut o = FinetuneOptions::new(root.join("data"), 2);
    o.keep_classes = Some(vec!["1".into(), "5".into()]);
    o.epochs = 15;
    o.batch_size = 8;
    o.lr = 5.0;
    o.head_lr_factor = 1.0;
    o.out = Some(root.join("run"));
    let s = train_from_scratch(&ArchSpec::named("linear2d"), &o, None, &Quiet).unwrap();
    assert_eq!(
        s.classes,
        ["1", "5"],
        "--digits keeps those classes, in that order"
    );
    assert_eq!(s.train_images + s.val_images, 80, "the 7s are left out");
    assert!(s.best_val_accuracy >= 0.9, "{}", s.best_val_accuracy);
    assert!(s.freeze_audit.frozen_params_unchanged);
    assert_eq!(
        s.freeze_audit.frozen_layers,
        ["intensity", "mirror", "symmetry"]
    );
    let picture: PathBuf = root.join("run").join(zoo_train::report::plot::DECISION_PNG);
    let png = image::open(&picture).unwrap();
    assert_eq!((png.width(), png.height()), (800, 640));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn architecture_specs_round_trip_through_config_json_and_old_names_still_read() {
    let spec = ArchSpec {
        hidden: vec![64],
        activation: Activation::Sigmoid,
        ..ArchSpec::named("mlp")
    };
    let text = serde_json::to_string(&spec).unwrap();
    assert_eq!(serde_json::from_str::<ArchSpec>(&text).unwrap(), spec);
    let old: ArchSpec = serde_json::from_str("\"lenet5\"").unwrap();
    assert_eq!(old, ArchSpec::named("lenet5"));
}
