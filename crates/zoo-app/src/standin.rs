//! `zoo materialize`: a weight-stripped zoo file becomes a runnable stand-in.

use std::path::Path;

use zoo_onnx::standin::{materialize_weights, upgrade_opset};

pub fn materialize_file(
    input: &Path,
    output: &Path,
    seed: u64,
    opset: Option<i64>,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(input)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", input.display()))?;
    let model = zoo_onnx::decode_proto(bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a valid ONNX file: {e}", input.display()))?;
    let mut model = materialize_weights(model, seed)?;
    if let Some(v) = opset {
        model = upgrade_opset(model, v)?;
    }
    // Refuse to write something zoo itself cannot import.
    zoo_onnx::OnnxModel::from_proto(model.clone())?;
    zoo_onnx::write::save_atomic(&model, output)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", output.display()))?;
    Ok(())
}
