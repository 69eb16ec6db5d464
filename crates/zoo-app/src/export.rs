//! `zoo export RUN --onnx`: the run's best weights as an ONNX file with a dynamic batch axis
//! and zoo metadata, checked against tract (and ONNX Runtime when present) on the run's own
//! validation images, with the receipt in `parity.json` beside the file.

use std::path::{Path, PathBuf};

use prost::Message;
use serde::Serialize;
use zoo_net::Network;
use zoo_onnx::pb::StringStringEntryProto;
use zoo_parity::{verify, Engine, OrtEngine, TractEngine, VerifyReport};

use crate::CpuBackend;

#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    pub output: PathBuf,
    pub pass: bool,
    pub samples: usize,
    pub tolerance: f64,
    /// Zoo's burn network at batch 1 and at batch 7 against each engine.
    pub batch_1: VerifyReport,
    pub batch_7: VerifyReport,
    pub warnings: Vec<String>,
}

fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// The run's validation images, preprocessed exactly as in training.
fn validation_images(
    run: &Path,
    preprocessing: &zoo_cards::Preprocessing,
) -> anyhow::Result<(Vec<f32>, usize)> {
    let config = read_json(&run.join("config.json"))?;
    let o = &config["options"];
    let data = PathBuf::from(
        o["data"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("config.json has no options.data"))?,
    );
    let dataset = zoo_data::open(&data)?;
    let plan = zoo_train::split_plan(
        o["val_per_class"].as_u64().map(|v| v as usize),
        o["val_split"].as_f64(),
        &dataset,
    );
    let splits = zoo_data::split(&dataset, plan, o["seed"].as_u64().unwrap_or(0))?;
    let (tensors, _) = zoo_data::load(&dataset, &splits.val, preprocessing);
    if tensors.is_empty() {
        anyhow::bail!("the run has no readable validation images to check the export on");
    }
    Ok((tensors.values, tensors.labels.len()))
}

pub fn export_run(
    run: &Path,
    output: Option<&Path>,
    engines: &[String],
    tolerance: f64,
) -> anyhow::Result<ExportReport> {
    let best = run.join("best.onnx");
    let model = zoo_onnx::OnnxModel::load(&best)?;
    let profile = crate::profile::profile_of_model(None, &model);
    let chw = model.graph.input_chw();
    let device = Default::default();
    let net = Network::<CpuBackend>::from_model(model, &device);
    let mut proto = net.to_model_proto_dynamic_batch();
    if let Ok(summary) = std::fs::read_to_string(run.join("summary.json")) {
        proto
            .metadata_props
            .retain(|p| p.key != "zoo.training_summary");
        proto.metadata_props.push(StringStringEntryProto {
            key: "zoo.training_summary".into(),
            value: summary,
        });
    }
    let bytes = proto.encode_to_vec();
    let output = output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| run.join("model.onnx"));
    zoo_onnx::write::write_atomic(&output, &bytes)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", output.display()))?;

    let (images, samples) = validation_images(run, &profile.preprocessing)?;
    let mut warnings = Vec::new();
    let tract = TractEngine::from_bytes(&bytes, chw)?;
    let ort = if engines.iter().any(|e| e == "ort") {
        match OrtEngine::from_bytes(&bytes, chw) {
            Ok(o) => Some(o),
            Err(why) => {
                warnings.push(format!("{why}; checked with tract only"));
                None
            }
        }
    } else {
        None
    };
    let mut list: Vec<&dyn Engine> = vec![&tract];
    if let Some(o) = &ort {
        list.push(o);
    }
    let batch_1 =
        verify(&net, &list, &images, 1, tolerance, &device).map_err(anyhow::Error::msg)?;
    let batch_7 =
        verify(&net, &list, &images, 7, tolerance, &device).map_err(anyhow::Error::msg)?;
    let report = ExportReport {
        pass: batch_1.pass && batch_7.pass,
        output: output.clone(),
        samples,
        tolerance,
        batch_1,
        batch_7,
        warnings,
    };
    let receipt = output.with_file_name("parity.json");
    let text = serde_json::to_string_pretty(&report)?;
    zoo_onnx::write::write_atomic(&receipt, format!("{text}\n").as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", receipt.display()))?;
    Ok(report)
}
