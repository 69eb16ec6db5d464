//! Helpers shared by the end-to-end tests: run the `zoo` binary, make model files and images.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prost::Message;
use zoo_onnx::builder::{Attr, GraphBuilder, SeededRng};

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Runs `zoo` in `home` (so default outputs such as `features.csv`, `evaluation/` or `runs/`
/// land there, never in the checkout) with an isolated Hugging Face cache, zoo cache and user
/// card folder.
pub fn zoo(args: &[&str], home: &Path) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_zoo"))
        .args(args)
        .current_dir(home)
        .env("HF_HOME", home.join("hf"))
        .env("ZOO_CACHE", home.join("zoo"))
        .env("ZOO_HOME", home.join("zoo-home"))
        .env_remove("ZOO_CARDS")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_ENDPOINT")
        .output()
        .expect("zoo runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("zoo-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small RGB classifier: conv (stride 2, odd pads) + LRN + pool + two Gemm layers + softmax,
/// named like the Caffe zoo files (conv1_w_0 ...), batch fixed to 1 as in the zoo.
pub fn small_rgb_classifier(path: &Path) {
    let mut rng = SeededRng::new(21);
    let mut b = GraphBuilder::new("data_0", &[Some(1), Some(3), Some(20), Some(18)]);
    b.init_f32("conv1_w_0", &[8, 3, 5, 5], rng.values(600, 0.2));
    b.init_f32("conv1_b_0", &[8], rng.values(8, 0.1));
    b.init_f32("fc6_w_0", &[16, 8 * 5 * 4], rng.values(16 * 160, 0.1));
    b.init_f32("fc6_b_0", &[16], rng.values(16, 0.1));
    b.init_f32("fc7_w_0", &[5, 16], rng.values(80, 0.3));
    b.init_f32("fc7_b_0", &[5], rng.values(5, 0.1));
    b.init_i64("flat_shape", &[1, 160]);
    b.node(
        "n0",
        "Conv",
        &["data_0", "conv1_w_0", "conv1_b_0"],
        &["c1"],
        vec![
            ("strides", Attr::Ints(vec![2, 2])),
            ("pads", Attr::Ints(vec![1, 2, 2, 1])),
        ],
    );
    b.node("n1", "Relu", &["c1"], &["r1"], vec![]);
    b.node(
        "n2",
        "LRN",
        &["r1"],
        &["l1"],
        vec![
            ("size", Attr::Int(5)),
            ("alpha", Attr::Float(1e-4)),
            ("beta", Attr::Float(0.75)),
        ],
    );
    b.node(
        "n3",
        "MaxPool",
        &["l1"],
        &["p1"],
        vec![
            ("kernel_shape", Attr::Ints(vec![3, 3])),
            ("strides", Attr::Ints(vec![2, 2])),
            ("pads", Attr::Ints(vec![0, 0, 1, 1])),
        ],
    );
    b.node("n4", "Reshape", &["p1", "flat_shape"], &["f"], vec![]);
    b.node(
        "n5",
        "Gemm",
        &["f", "fc6_w_0", "fc6_b_0"],
        &["g6"],
        vec![("transB", Attr::Int(1))],
    );
    b.node("n6", "Relu", &["g6"], &["r6"], vec![]);
    b.node(
        "n7",
        "Gemm",
        &["r6", "fc7_w_0", "fc7_b_0"],
        &["g7"],
        vec![("transB", Attr::Int(1))],
    );
    b.node("n8", "Softmax", &["g7"], &["prob"], vec![]);
    b.output("prob", &[Some(1), Some(5)]);
    std::fs::write(path, b.build(9).encode_to_vec()).unwrap();
}

/// Writes `n` small PNG photos with varied colours and sizes.
pub fn write_images(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = SeededRng::new(5);
    for i in 0..n {
        let (w, h) = (30 + (i as u32 * 7) % 20, 25 + (i as u32 * 5) % 17);
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let v = rng.next_u64();
            image::Rgb([
                (x * 8 + (v & 31) as u32) as u8,
                (y * 9) as u8,
                ((v >> 8) & 255) as u8,
            ])
        });
        img.save(dir.join(format!("img{i:02}.png"))).unwrap();
    }
}

pub fn shared(path: &str) -> PathBuf {
    let root = std::env::var_os("ZOO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    root.join(path)
}

/// The AlexNet stand-in: ../shared's weight-stripped zoo graph filled with seeded weights by
/// `zoo materialize`, at `opset`.
pub fn alexnet_standin(dir: &Path, opset: &str) -> PathBuf {
    let out = dir.join(format!("alexnet-{opset}.onnx"));
    let light = shared("models/light_bvlc_alexnet.onnx");
    let run = zoo(
        &[
            "materialize",
            light.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--opset",
            opset,
        ],
        dir,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    out
}

/// Every file a finetune or train run directory holds.
pub const RUN_FILES: &[&str] = &[
    "config.json",
    "labels.txt",
    "metrics.csv",
    "confusion.csv",
    "best.onnx",
    "last.onnx",
    "summary.json",
    "training-progress.png",
    "confusion.png",
    "misclassified.png",
    "filters.png",
    "report.html",
];

pub fn assert_run_files(run: &Path) {
    for f in RUN_FILES {
        assert!(run.join(f).is_file(), "{f} missing in {}", run.display());
    }
}

/// A small classifier with one of the head shapes of the zoo's files
/// (`zoo_onnx::builder::head_shape_classifier`), written to `path`.
pub fn head_shape_classifier(path: &Path, kind: &str) {
    let outputs = if kind == "gemm-1001" { 1001 } else { 10 };
    let model = zoo_onnx::builder::head_shape_classifier(kind, outputs);
    std::fs::write(path, model.encode_to_vec()).unwrap();
}
