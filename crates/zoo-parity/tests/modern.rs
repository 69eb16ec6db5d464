//! Transformer-era classifiers (tests/fixtures/modern, written by
//! scripts/make-modern-fixtures.py: tiny timm ViT, DeiT, BEiT, ConvNeXt, Swin, LeViT and
//! EfficientNetV2 and torchvision's ViT in five exporter styles, plus opset-23 Attention and
//! weights kept in a `.onnx.data` file). Each file imports, runs at batch 1 and 2 (the
//! fixed-batch model-zoo style included), and agrees with PyTorch's own logits and with tract.

use std::path::PathBuf;

use burn::backend::Flex;
use prost::Message;
use zoo_net::Network;
use zoo_onnx::OnnxModel;
use zoo_parity::{expose_first_output, run_network, verify_outputs, TractEngine};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/modern")
}

fn fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("tests/fixtures/modern exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .collect();
    files.sort();
    files
}

/// `scripts/make-modern-fixtures.py`'s probe images: pixel i of image k is
/// `((i * 7919 + k * 104729) % 1000) / 500 - 1`.
fn probe_images(size: usize) -> Vec<f32> {
    let n = 3 * size * size;
    (1..=2u64)
        .flat_map(|k| {
            (0..n as u64).map(move |i| ((i * 7919 + k * 104_729) % 1000) as f32 / 500.0 - 1.0)
        })
        .collect()
}

/// PyTorch's logits for the probe images, and the image size.
fn expected(family: &str) -> (usize, Vec<f32>) {
    let text = std::fs::read_to_string(dir().join(format!("{family}.expected.json"))).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let size = json["size"].as_u64().unwrap() as usize;
    let logits = json["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    (size, logits)
}

fn check(path: &std::path::Path) -> Result<String, String> {
    let name = path.file_stem().unwrap().to_string_lossy().to_string();
    let family = name.split('-').next().unwrap().to_string();
    let proto = zoo_onnx::read_model(path).map_err(|e| format!("read: {e}"))?;
    let onnx = OnnxModel::from_proto(proto.clone()).map_err(|e| format!("import: {e}"))?;
    let chw = onnx.graph.input_chw();
    let any_batch = onnx.graph.input.dims[0].is_none();
    let device = Default::default();
    let net = Network::<Flex>::from_model(onnx, &device);
    let logits = net.logits_value().to_string();

    let (size, torch) = expected(&family);
    assert_eq!(chw, [3, size, size]);
    let images = probe_images(size);
    let ours = run_network(&net, &images, 2, &logits, &device).map_err(|e| e.to_string())?;
    let ours: Vec<f32> = ours.into_iter().flatten().collect();
    let scale = torch.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let worst = ours
        .iter()
        .zip(&torch)
        .fold(0.0f32, |m, (p, q)| m.max((p - q).abs() / scale));
    if ours.len() != torch.len() || worst > 1e-4 {
        return Err(format!("PyTorch's logits differ: rel {worst:.2e}"));
    }

    let mut with_logits = proto;
    expose_first_output(&mut with_logits, &logits);
    // tract 0.23 cannot optimise LeViT's subsampling (`x[:, ::2]` after a Reshape); the
    // engine then runs it unoptimised.
    let tract = TractEngine::from_bytes(&with_logits.encode_to_vec(), chw, any_batch)
        .map_err(|e| format!("tract: {e}"))?;
    for batch in [1, 2] {
        let ours =
            run_network(&net, &images, batch, &logits, &device).map_err(|e| e.to_string())?;
        let report = verify_outputs(&ours, &[&tract], &images, None, batch, 1e-4)
            .map_err(|e| e.to_string())?;
        if !report.pass || report.top1_agreement < 1.0 {
            return Err(format!("tract at batch {batch}: {report:?}"));
        }
    }
    Ok(format!(
        "{name}: PyTorch rel {worst:.1e}; tract agrees at batch 1 and 2"
    ))
}

#[test]
fn modern_fixtures_match_pytorch_and_tract_at_batch_1_and_2() {
    let files = fixtures();
    assert!(files.len() >= 42, "{} fixtures", files.len());
    let mut failures = Vec::new();
    for path in &files {
        match std::panic::catch_unwind(|| check(path)) {
            Ok(Ok(line)) => println!("{line}"),
            Ok(Err(e)) => failures.push(format!("{}: {e}", path.display())),
            Err(_) => failures.push(format!("{}: panicked", path.display())),
        }
    }
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
}

#[test]
fn fixed_batch_files_follow_the_batch_without_falling_back() {
    for family in ["vit", "deit", "swin", "convnext", "levit", "vittv"] {
        let bytes = std::fs::read(dir().join(format!("{family}-zoo17.onnx"))).unwrap();
        let onnx = OnnxModel::from_bytes(bytes).unwrap();
        assert_eq!(
            onnx.graph.input.dims[0],
            Some(1),
            "{family}: the file fixes batch 1"
        );
        let net = Network::<Flex>::from_model(onnx, &Default::default());
        let shapes = &net.plan().graph.shapes;
        assert!(
            shapes.fixed_batch.is_none(),
            "{family}: {:?}",
            shapes.fixed_batch
        );
    }
}

/// Training reaches every parameter kind of these families on the generic autodiff path:
/// class and position tokens, LayerNorm scales, attention and MLP weights, attention-bias
/// tables (LeViT's gathered ones, Swin's folded ones), layer scales.
#[test]
fn every_learnable_parameter_of_each_family_gets_a_gradient() {
    use burn::backend::Autodiff;
    use burn::tensor::{Tensor, TensorData};
    type B = Autodiff<Flex>;
    let families = [
        "vit", "deit", "beit", "convnext", "swin", "levit", "effnetv2", "vittv",
    ];
    let mut files: Vec<(&str, &str)> = families
        .iter()
        .flat_map(|f| [(*f, "ts17"), (*f, "zoo16")])
        .collect();
    // Opset 23's one-node Attention.
    files.extend([("vit", "dynamo23"), ("vittv", "dynamo23")]);
    for (family, style) in files {
        let bytes = std::fs::read(dir().join(format!("{family}-{style}.onnx"))).unwrap();
        let onnx = OnnxModel::from_bytes(bytes).unwrap();
        let device = Default::default();
        let net = Network::<B>::from_model(onnx, &device);
        let [c, h, w] = net.plan().graph.input_chw();
        let x = Tensor::<B, 4>::from_data(TensorData::new(probe_images(h), [2, c, h, w]), &device);
        let logits = net.forward_logits(x).unwrap();
        let grads = (logits.clone() * logits).sum().backward();
        let plan = net.plan();
        let mut missing = Vec::new();
        let mut checked = 0;
        for (i, spec) in plan.params.iter().enumerate() {
            if spec.role != zoo_net::ParamRole::Learnable {
                continue;
            }
            checked += 1;
            let grad = net.param_tensor(i).grad(&grads);
            let norm = grad.map_or(0.0, |g| g.abs().sum().into_scalar());
            if norm.is_nan() || norm <= 0.0 {
                missing.push(spec.name.clone());
            }
        }
        assert!(checked >= 10, "{family}-{style}: {checked} parameters");
        assert!(
            missing.is_empty(),
            "{family}-{style}: no gradient for {missing:?}"
        );
        println!("{family}-{style}: {checked} parameters, every one has a gradient");
    }
}
