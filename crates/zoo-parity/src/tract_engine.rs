//! tract as the independent reference runtime: it parses the ONNX file itself, so agreement
//! with it checks our parser, our op semantics and our weights together.

use std::path::Path;

use tract_onnx::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("tract could not run the model: {0}")]
pub struct TractError(String);

fn err(e: impl std::fmt::Display) -> TractError {
    TractError(format!("{e:#}"))
}

/// An optimised tract plan for one image at a time (`[1, C, H, W]`).
pub struct TractEngine {
    plan: Arc<TypedRunnableModel>,
    chw: [usize; 3],
}

impl TractEngine {
    pub fn from_path(path: &Path, chw: [usize; 3]) -> Result<Self, TractError> {
        let bytes = std::fs::read(path).map_err(err)?;
        Self::from_bytes(&bytes, chw)
    }

    pub fn from_bytes(bytes: &[u8], chw: [usize; 3]) -> Result<Self, TractError> {
        let [c, h, w] = chw;
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .map_err(err)?
            .with_input_fact(0, f32::fact([1, c, h, w]).into())
            .map_err(err)?
            .into_optimized()
            .map_err(err)?
            .into_runnable()
            .map_err(err)?;
        Ok(Self { plan, chw })
    }

    /// Runs one image (`C*H*W` values) and returns the flattened output.
    pub fn run_one(&self, image: &[f32]) -> Result<Vec<f32>, TractError> {
        let [c, h, w] = self.chw;
        let input = Tensor::from_shape(&[1, c, h, w], image).map_err(err)?;
        let outputs = self.plan.run(tvec!(input.into_tvalue())).map_err(err)?;
        let view = outputs[0].to_plain_array_view::<f32>().map_err(err)?;
        Ok(view.iter().copied().collect())
    }

    /// Runs a batch by running each image in turn (zoo files often fix the batch to 1).
    pub fn run_batch(&self, images: &[f32]) -> Result<Vec<Vec<f32>>, TractError> {
        let size = self.chw.iter().product::<usize>();
        images.chunks(size).map(|img| self.run_one(img)).collect()
    }
}
