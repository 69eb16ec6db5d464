//! Forward-pass and import benchmarks: zoo (burn flex) next to tract and ONNX Runtime on the
//! same machine, same inputs, same threads. Median of 5 timed runs after one warm-up, each
//! engine's runs after a pause that lets the previous engine's threads go idle.
//!
//! Needs the AlexNet graph and the MNIST CNN: `ZOO_SHARED` (default ../shared from the
//! workspace root). Prints one JSON object per measurement (scripts/bench.sh tabulates them).
//! The real SqueezeNet 1.0 of `models/pretrained` is measured too when present, and timm's
//! ViT-tiny when `ZOO_BENCH_VIT` names its ONNX export (`scripts/bench.sh` makes one with
//! `scripts/torch_timm_train.py vit_tiny_patch16_224 --export FILE`).
//! Run: cargo bench -p zoo-parity --bench forward [-- WORKLOAD_PART] (only workloads whose
//! name contains WORKLOAD_PART, import skipped). For a profiler: `-- WORKLOAD_PART
//! --profile-zoo BATCH` runs zoo's forward alone at that batch for about 20 seconds.

use std::path::PathBuf;
use std::time::Instant;

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use prost::Message;
use zoo_net::Network;
use zoo_onnx::builder::SeededRng;
use zoo_onnx::OnnxModel;
use zoo_parity::{OrtEngine, TractEngine};

const RUNS: usize = 5;

fn shared(path: &str) -> PathBuf {
    std::env::var_os("ZOO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join(path)
}

/// How long the machine is left idle before each engine's runs: ONNX Runtime's worker threads
/// spin on after its session is made and after its runs, and the engine measured next shared
/// the cores with them (zoo's first MNIST runs after it took 11-19 ms, 2.8-3.0 ms once idle).
const SETTLE: std::time::Duration = std::time::Duration::from_millis(300);

/// Median seconds of `RUNS` calls after a settling pause and a warm-up.
fn median(mut f: impl FnMut()) -> f64 {
    std::thread::sleep(SETTLE);
    f();
    let mut t: Vec<f64> = (0..RUNS)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[RUNS / 2]
}

fn report(workload: &str, engine: &str, batch: usize, seconds: f64) {
    println!(
        "{}",
        serde_json::json!({
            "workload": workload, "engine": engine, "batch": batch,
            "seconds": seconds, "images_per_s": batch as f64 / seconds,
        })
    );
}

/// The batch `--profile-zoo BATCH` asks for.
fn profile_batch() -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == "--profile-zoo")?;
    args.get(i + 1).and_then(|b| b.parse().ok())
}

/// zoo's forward at `batch`, repeated for about 20 seconds (for `perf record`).
fn profile(net: &Network<Flex>, chw: [usize; 3], batch: usize) {
    let [c, h, w] = chw;
    let images = SeededRng::new(1).values(batch * c * h * w, 1.0);
    let started = Instant::now();
    let mut runs = 0;
    while started.elapsed().as_secs() < 20 {
        let data = TensorData::new(images.clone(), [batch, c, h, w]);
        let _ = net
            .forward(Tensor::from_data(data, &Default::default()))
            .unwrap()
            .into_data();
        runs += 1;
    }
    eprintln!(
        "{runs} forwards at batch {batch} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn forward(workload: &str, bytes: &[u8], batches: &[usize]) {
    let model = OnnxModel::from_bytes(bytes.to_vec()).unwrap();
    let chw = model.graph.input_chw();
    let size: usize = chw.iter().product();
    let device = Default::default();
    let net = Network::<Flex>::from_model(model, &device);
    if let Some(batch) = profile_batch() {
        return profile(&net, chw, batch);
    }
    let dynamic = net.to_model_proto_dynamic_batch().encode_to_vec();
    let tract = TractEngine::from_bytes(&dynamic, chw, true).unwrap();
    let ort = OrtEngine::from_bytes(&dynamic, chw);
    if let Err(why) = &ort {
        eprintln!("ONNX Runtime not measured: {why}");
    }
    let [c, h, w] = chw;
    for &batch in batches {
        let images = SeededRng::new(1).values(batch * size, 1.0);
        let s = median(|| {
            let data = TensorData::new(images.clone(), [batch, c, h, w]);
            let x = Tensor::<Flex, 4>::from_data(data, &device);
            let _ = net.forward(x).unwrap().into_data();
        });
        report(workload, "zoo (burn flex)", batch, s);
        let s = median(|| {
            tract.run_batch(&images, batch).unwrap();
        });
        report(workload, "tract 0.23", batch, s);
        if let Ok(o) = &ort {
            let s = median(|| {
                o.run_batch(&images, batch).unwrap();
            });
            report(workload, "ONNX Runtime (ort)", batch, s);
        }
    }
}

/// `--import-only zoo|tract FILE`: imports one file and exits, so that scripts/bench.sh can read
/// the import's peak memory off `/usr/bin/time`.
fn import_only(args: &[String]) -> bool {
    let Some(i) = args.iter().position(|a| a == "--import-only") else {
        return false;
    };
    let (engine, path) = (args[i + 1].as_str(), PathBuf::from(&args[i + 2]));
    match engine {
        "zoo" => drop(std::hint::black_box(
            Network::<Flex>::load(&path, &Default::default()).unwrap(),
        )),
        "tract" => drop(std::hint::black_box(
            TractEngine::from_path(&path, [3, 224, 224], false).unwrap(),
        )),
        other => panic!("--import-only takes zoo or tract, not {other}"),
    }
    true
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if import_only(&args) {
        return;
    }
    // `cargo bench` passes `--bench` itself; a plain argument picks workloads.
    let only = args[1..].iter().find(|a| !a.starts_with("--")).cloned();
    let wanted = |workload: &str| only.as_ref().is_none_or(|o| workload.contains(o.as_str()));
    let light = shared("models/light_bvlc_alexnet.onnx");
    let mnist = shared("models/mnist-8.onnx");
    if !light.is_file() || !mnist.is_file() {
        eprintln!(
            "benchmarks need {} and {} (set ZOO_SHARED)",
            light.display(),
            mnist.display()
        );
        return;
    }
    let proto = zoo_onnx::decode_proto(std::fs::read(&light).unwrap()).unwrap();
    let alexnet = zoo_onnx::standin::materialize_weights(proto, 0)
        .unwrap()
        .encode_to_vec();

    let squeezenet = shared("models/pretrained/squeezenet1.0-tflite-imagenet1001-opset9.onnx");
    if squeezenet.is_file() && wanted("SqueezeNet") {
        let bytes = std::fs::read(&squeezenet).unwrap();
        forward("SqueezeNet 1.0 forward 224x224 (real)", &bytes, &[32]);
    }
    if let Some(vit) = std::env::var_os("ZOO_BENCH_VIT").map(PathBuf::from) {
        let workload = "ViT-tiny forward 224x224 (timm)";
        if wanted(workload) {
            forward(workload, &std::fs::read(&vit).unwrap(), &[1, 32]);
        }
    }
    if only.is_some() {
        for (workload, bytes, batches) in [
            ("AlexNet forward 224x224", alexnet.clone(), vec![1, 32]),
            (
                "MNIST CNN forward 28x28",
                std::fs::read(&mnist).unwrap(),
                vec![256],
            ),
        ] {
            if wanted(workload) {
                forward(workload, &bytes, &batches);
            }
        }
        return;
    }

    // Import of the 244 MB file: parse, validate, build the trainable network.
    let dir = std::env::temp_dir().join(format!("zoo-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("alexnet.onnx");
    std::fs::write(&path, &alexnet).unwrap();
    let import = |engine: &str, seconds: f64| {
        println!(
            "{}",
            serde_json::json!({"workload": "import AlexNet (244 MB)", "engine": engine, "seconds": seconds})
        );
    };
    import(
        "zoo (burn flex)",
        median(|| {
            std::hint::black_box(Network::<Flex>::load(&path, &Default::default()).unwrap());
        }),
    );
    import(
        "tract 0.23 (load + optimise)",
        median(|| {
            std::hint::black_box(TractEngine::from_path(&path, [3, 224, 224], false).unwrap());
        }),
    );
    std::fs::remove_dir_all(&dir).ok();

    forward("AlexNet forward 224x224", &alexnet, &[1, 32]);
    forward(
        "MNIST CNN forward 28x28",
        &std::fs::read(&mnist).unwrap(),
        &[256],
    );
}
