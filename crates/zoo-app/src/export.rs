//! `zoo export RUN --onnx`: the run's best weights as an ONNX file with a dynamic batch axis
//! and zoo metadata, checked against tract (and ONNX Runtime when present) on the run's own
//! validation images, with the receipt in `parity.json` beside the file.

use std::path::{Path, PathBuf};

use prost::Message;
use serde::Serialize;
use zoo_net::Network;
use zoo_parity::{compare_outputs, run_network, VerifyReport};

use crate::engines::{engine_rows, Engines};
use crate::pixels::rows_by_block;

use crate::CpuBackend;

#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    pub output: PathBuf,
    pub opset: i64,
    /// The value compared (the logits, before any final Softmax).
    pub compared_at: String,
    pub pass: bool,
    pub samples: usize,
    pub tolerance: f64,
    /// Zoo's burn network at batch 1 and at batch 7 against each engine.
    pub batch_1: VerifyReport,
    pub batch_7: VerifyReport,
    /// Declared shapes of the written file that its graph does not compute (a full shape
    /// check, as `onnx.checker`'s); empty when the file is consistent.
    pub shape_mismatches: Vec<String>,
    pub warnings: Vec<String>,
}

pub fn export_run(
    run: &Path,
    output: Option<&Path>,
    opset: Option<i64>,
    engines: &[String],
    tolerance: f64,
) -> anyhow::Result<ExportReport> {
    let best = run.join("best.onnx");
    let model = zoo_onnx::OnnxModel::load(&best)?;
    let profile = crate::profile::profile_of_model(&Default::default(), &model)?;
    let (labels, _) = crate::profile::model_labels(&model, &Default::default())?;
    let chw = model.graph.input_chw();
    let from_opset = model.graph.opset;
    let device = Default::default();
    let net = Network::<CpuBackend>::from_model(model, &device);
    let mut proto = net.to_model_proto_dynamic_batch();
    if let Some(to) = opset {
        let shapes = &net.plan().graph.shapes;
        proto =
            zoo_onnx::opset::convert(proto, from_opset, to, &|v| shapes.of(v).map(<[usize]>::len))?;
    }
    if let Ok(summary) = std::fs::read_to_string(run.join("summary.json")) {
        let key = zoo_train::export::META_TRAINING_SUMMARY;
        zoo_train::export::set_metadata(&mut proto, key, summary);
    }
    // Everything that can fail runs before the file is written, so a failed (or killed)
    // export leaves no model.onnx that later commands would prefer.
    let shape_mismatches = zoo_onnx::check::declared_shape_mismatches(&proto)?;
    let budget = zoo_train::memory::default_budget();
    let images =
        crate::labeled::run_validation(run, &profile.preprocessing, labels.as_deref(), budget)?;
    // Compared at the logits: a saturated final Softmax would hide differences.
    let compared_at = net.logits_value().to_string();
    let bytes = proto.encode_to_vec();
    let engines = Engines::open(proto, chw, true, engines, &compared_at)?;
    let output = output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| run.join("model.onnx"));
    // Refused now, before the checks, if the file cannot be replaced.
    zoo_io::check_replaceable(&output).map_err(|e| anyhow::anyhow!("cannot write there: {e}"))?;
    let check = |batch| -> anyhow::Result<VerifyReport> {
        let ours = rows_by_block(images.pixels(), batch, |block| {
            Ok(run_network(&net, block, batch, &compared_at, &device)?)
        })?;
        let theirs = engine_rows(&engines.list(), images.pixels(), batch)?;
        let classes = Some(images.sample_classes());
        Ok(compare_outputs(&ours, &theirs, classes, batch, tolerance))
    };
    let batch_1 = check(1)?;
    let batch_7 = check(7)?;
    // Written only once its checks have run: an export killed during them leaves no
    // unverified model.onnx for later commands to prefer over best.onnx.
    zoo_io::write_atomic(&output, &bytes)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", output.display()))?;
    drop(bytes);
    let report = ExportReport {
        pass: batch_1.pass && batch_7.pass && shape_mismatches.is_empty(),
        shape_mismatches,
        output,
        opset: opset.unwrap_or(from_opset),
        compared_at,
        samples: images.len(),
        tolerance,
        batch_1,
        batch_7,
        warnings: engines.warnings.clone(),
    };
    write_receipt(run, &report)?;
    Ok(report)
}

/// `parity.json` beside the exported file, and the run's page again when it sits in the run
/// directory (the page shows the receipt).
fn write_receipt(run: &Path, report: &ExportReport) -> anyhow::Result<()> {
    let receipt = report.output.with_file_name("parity.json");
    let text = serde_json::to_string_pretty(report)?;
    zoo_io::write_atomic(&receipt, format!("{text}\n").as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", receipt.display()))?;
    if receipt.parent() == Some(run) {
        zoo_train::report::html::write(run)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", run.display()))?;
    }
    Ok(())
}
