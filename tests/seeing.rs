//! Seeing what a network learned: features of any layer, their 2-D map, Grad-CAM on a case with
//! a known answer.

mod common;

use std::path::Path;

use common::{read_json, small_rgb_classifier, zoo, TempDir};
use prost::Message;
use zoo_onnx::builder::{Attr, GraphBuilder, SeededRng};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Class folders whose photos differ by their dominant colour (with noise): separable by
/// any reasonable feature.
fn colour_classes(root: &Path, per_class: usize) {
    let mut rng = SeededRng::new(11);
    for (class, rgb) in [
        ("red", [200, 40, 40]),
        ("green", [40, 190, 60]),
        ("blue", [50, 60, 210]),
    ] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let img = image::RgbImage::from_fn(24, 22, |_, _| {
                let n = (rng.next_u64() % 60) as i32 - 30;
                image::Rgb(rgb.map(|v: i32| (v + n).clamp(0, 255) as u8))
            });
            img.save(dir.join(format!("{i:02}.png"))).unwrap();
        }
    }
}

/// Leave-one-out 1-nearest-neighbour accuracy of CSV feature rows (path,label,f0,...).
fn knn_accuracy(csv: &str) -> (f64, usize, usize) {
    let rows: Vec<(String, Vec<f64>)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split(',');
            let _path = f.next().unwrap();
            let label = f.next().unwrap().to_string();
            (label, f.map(|v| v.parse().unwrap()).collect())
        })
        .collect();
    let dist = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>();
    let correct = (0..rows.len())
        .filter(|&i| {
            let nearest = (0..rows.len())
                .filter(|&j| j != i)
                .min_by(|&a, &b| {
                    dist(&rows[i].1, &rows[a].1).total_cmp(&dist(&rows[i].1, &rows[b].1))
                })
                .unwrap();
            rows[nearest].0 == rows[i].0
        })
        .count();
    (
        correct as f64 / rows.len() as f64,
        rows.len(),
        rows[0].1.len(),
    )
}

#[test]
fn features_of_a_finetuned_run_give_one_row_per_image_and_separate_its_classes() {
    let t = TempDir::new("features");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    let data = t.path().join("data");
    colour_classes(&data, 12);
    let run = t.path().join("run");
    let ft = zoo(
        &[
            "finetune",
            s(&model),
            "--data",
            s(&data),
            "--val-per-class",
            "5",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--out",
            s(&run),
        ],
        t.path(),
    );
    assert_eq!(ft.code, 0, "{}", ft.stderr);
    // The run's own validation images at fc6: 15 rows of 16 values.
    let csv = t.path().join("fc6.csv");
    let f = zoo(
        &[
            "features",
            s(&run),
            "--layer",
            "fc6",
            "--out",
            s(&csv),
            "--json",
        ],
        t.path(),
    );
    assert_eq!(f.code, 0, "{}", f.stderr);
    assert_eq!(f.json()["images"], 15);
    assert_eq!(f.json()["width"], 16);
    let (accuracy, rows, width) = knn_accuracy(&std::fs::read_to_string(&csv).unwrap());
    assert_eq!((rows, width), (15, 16));
    assert!(
        accuracy >= 0.8,
        "1-NN on fc6 features: {accuracy} (chance 0.33)"
    );
    // A whole folder, a conv node's output averaged per channel, as .npy.
    let npy = t.path().join("conv.npy");
    let f = zoo(
        &[
            "features",
            s(&run),
            "--data",
            s(&data),
            "--layer",
            "c1",
            "--pool",
            "avg",
            "--out",
            s(&npy),
            "--json",
        ],
        t.path(),
    );
    assert_eq!(f.code, 0, "{}", f.stderr);
    assert_eq!(
        (f.json()["images"].as_u64(), f.json()["width"].as_u64()),
        (Some(36), Some(8))
    );
    let bytes = std::fs::read(&npy).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert!(std::str::from_utf8(&bytes[10..10 + header_len])
        .unwrap()
        .contains("(36, 8)"));
    assert_eq!(bytes.len(), 10 + header_len + 36 * 8 * 4);
    let rows = std::fs::read_to_string(format!("{}.rows.csv", npy.display())).unwrap();
    assert_eq!(rows.lines().count(), 37);
    // Unknown layers and pooling a vector are refused with what exists.
    let bad = zoo(&["features", s(&run), "--layer", "fc99"], t.path());
    assert!(
        bad.code == 2 && bad.stderr.contains("fc6"),
        "{}",
        bad.stderr
    );
    let flat = zoo(
        &["features", s(&run), "--layer", "fc6", "--pool", "avg"],
        t.path(),
    );
    assert!(flat.stderr.contains("feature maps"), "{}", flat.stderr);
    // The map: one PNG, every validation image on it.
    let map = t.path().join("map.png");
    let m = zoo(
        &[
            "show",
            "features",
            s(&run),
            "--layer",
            "fc6",
            "-o",
            s(&map),
            "--json",
        ],
        t.path(),
    );
    assert_eq!(m.code, 0, "{}", m.stderr);
    assert_eq!(m.json()["images"], 15);
    let e = m.json()["explained"].as_array().unwrap().clone();
    assert!(e[0].as_f64().unwrap() >= e[1].as_f64().unwrap());
    assert_eq!(image::open(&map).unwrap().width(), 800);
    let _ = read_json(&run.join("summary.json"));
}

/// conv (3x3, pad 1) whose map 0 copies the red channel and map 1 the blue one, ReLU, global
/// average pooling, and a 2x2 identity classifier: class 0's score is the image's mean red,
/// class 1's its mean blue. Only the red region can explain class 0.
fn known_answer_model(path: &Path) {
    let mut b = GraphBuilder::new("image", &[Some(1), Some(3), Some(16), Some(16)]);
    let mut w = vec![0f32; 2 * 3 * 9];
    w[4] = 1.0; // map 0 <- red, centre tap
    w[27 + 2 * 9 + 4] = 1.0; // map 1 <- blue
    b.init_f32("conv_w_0", &[2, 3, 3, 3], w);
    b.init_f32("conv_b_0", &[2], vec![0.0; 2]);
    b.init_f32("fc_w_0", &[2, 2], vec![1.0, 0.0, 0.0, 1.0]);
    b.init_f32("fc_b_0", &[2], vec![0.0; 2]);
    b.node(
        "conv",
        "Conv",
        &["image", "conv_w_0", "conv_b_0"],
        &["maps"],
        vec![("pads", Attr::Ints(vec![1, 1, 1, 1]))],
    );
    b.node("relu", "Relu", &["maps"], &["relu_out"], vec![]);
    b.node(
        "gap",
        "GlobalAveragePool",
        &["relu_out"],
        &["pooled"],
        vec![],
    );
    b.node(
        "flat",
        "Flatten",
        &["pooled"],
        &["vector"],
        vec![("axis", Attr::Int(1))],
    );
    b.node(
        "fc",
        "Gemm",
        &["vector", "fc_w_0", "fc_b_0"],
        &["logits"],
        vec![("transB", Attr::Int(1))],
    );
    b.output("logits", &[Some(1), Some(2)]);
    std::fs::write(path, b.build(13).encode_to_vec()).unwrap();
}

#[test]
fn grad_cam_puts_its_peak_where_the_only_evidence_for_the_class_is() {
    let t = TempDir::new("cam");
    let model = t.path().join("known.onnx");
    known_answer_model(&model);
    // Red square top-left, blue square bottom-right, black elsewhere.
    let img = image::RgbImage::from_fn(16, 16, |x, y| match (x, y) {
        (1..=5, 1..=5) => image::Rgb([255, 0, 0]),
        (10..=14, 10..=14) => image::Rgb([0, 0, 255]),
        _ => image::Rgb([0, 0, 0]),
    });
    let photo = t.path().join("two-squares.png");
    img.save(&photo).unwrap();
    let peak = |class: &str| {
        let out = t.path().join(format!("cam-{class}.png"));
        let r = zoo(
            &[
                "show",
                "cam",
                s(&model),
                "--image",
                s(&photo),
                "--class",
                class,
                "-o",
                s(&out),
                "--json",
            ],
            t.path(),
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        let j = r.json();
        assert_eq!(j["layer"], "relu_out", "the last conv, after its ReLU");
        assert_eq!(j["map_size"], serde_json::json!([16, 16]));
        let png = image::open(&out).unwrap();
        assert!(
            png.width() >= 320 && png.height() > 320,
            "{}x{}",
            png.width(),
            png.height()
        );
        [
            j["peak"][0].as_f64().unwrap(),
            j["peak"][1].as_f64().unwrap(),
        ]
    };
    let red = peak("0");
    assert!(
        red[0] < 0.4 && red[1] < 0.4,
        "class 0 (red) looks top-left: {red:?}"
    );
    let blue = peak("1");
    assert!(
        blue[0] > 0.6 && blue[1] > 0.6,
        "class 1 (blue) looks bottom-right: {blue:?}"
    );
    // Without --class: the predicted class (the red square is brighter in the mean? equal
    // areas and values, so either), named "class K" without labels.
    let none = zoo(
        &[
            "show",
            "cam",
            s(&model),
            "--image",
            s(&photo),
            "-o",
            s(&t.path().join("c.png")),
            "--json",
        ],
        t.path(),
    );
    assert!(none.json()["class"].as_str().unwrap().starts_with("class "));
    let wrong = zoo(
        &[
            "show",
            "cam",
            s(&model),
            "--image",
            s(&photo),
            "--class",
            "7",
            "-o",
            "x.png",
        ],
        t.path(),
    );
    assert!(
        wrong.code == 2 && wrong.stderr.contains("2 classes"),
        "{}",
        wrong.stderr
    );
    let name = zoo(
        &[
            "show",
            "cam",
            s(&model),
            "--image",
            s(&photo),
            "--class",
            "cat",
            "-o",
            "x.png",
        ],
        t.path(),
    );
    assert!(name.stderr.contains("--labels"), "{}", name.stderr);
}
