//! Runs a zoo network and reference engines on the same inputs and reports agreement.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::Serialize;
use zoo_net::{NetError, Network};

use crate::compare::{compare, Agreement};

/// Default tolerance on `max_rel_diff`.
pub const DEFAULT_TOLERANCE: f64 = 1e-4;

/// A reference runtime (tract, ONNX Runtime).
pub trait Engine {
    fn name(&self) -> &str;
    /// Outputs for `images` (a flat run of `C*H*W` samples), one row per sample.
    fn run(&self, images: &[f32]) -> Result<Vec<Vec<f32>>, String>;
}

impl Engine for crate::TractEngine {
    fn name(&self) -> &str {
        "tract"
    }

    fn run(&self, images: &[f32]) -> Result<Vec<Vec<f32>>, String> {
        self.run_batch(images).map_err(|e| e.to_string())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct EngineReport {
    pub name: String,
    pub pass: bool,
    #[serde(flatten)]
    pub agreement: Agreement,
}

#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub pass: bool,
    pub samples: usize,
    pub batch: usize,
    pub tolerance: f64,
    pub max_abs_diff: f64,
    pub max_rel_diff: f64,
    pub top1_agreement: f64,
    pub engines: Vec<EngineReport>,
}

/// Runs `net` on `images` in batches of `batch` and returns one output row per sample.
pub fn run_network<B: Backend>(
    net: &Network<B>,
    images: &[f32],
    batch: usize,
    device: &B::Device,
) -> Result<Vec<Vec<f32>>, NetError> {
    let [c, h, w] = net.plan().graph.input_chw();
    let size = c * h * w;
    let mut rows = Vec::with_capacity(images.len() / size);
    for chunk in images.chunks(size * batch.max(1)) {
        let n = chunk.len() / size;
        let input =
            Tensor::<B, 4>::from_data(TensorData::new(chunk.to_vec(), [n, c, h, w]), device);
        let out = net.forward(input)?;
        let [_, classes] = out.dims();
        let flat = out
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("float output");
        rows.extend(flat.chunks(classes).map(<[f32]>::to_vec));
    }
    Ok(rows)
}

/// Compares the network with every engine on the same images.
pub fn verify<B: Backend>(
    net: &Network<B>,
    engines: &[&dyn Engine],
    images: &[f32],
    batch: usize,
    tolerance: f64,
    device: &B::Device,
) -> Result<VerifyReport, String> {
    let ours = run_network(net, images, batch, device).map_err(|e| e.to_string())?;
    let mut reports = Vec::new();
    for engine in engines {
        let reference = engine.run(images)?;
        let agreement = compare(&ours, &reference);
        reports.push(EngineReport {
            name: engine.name().to_string(),
            pass: agreement.max_rel_diff <= tolerance && agreement.top1_agreement == 1.0,
            agreement,
        });
    }
    let worst =
        |f: fn(&Agreement) -> f64| reports.iter().map(|r| f(&r.agreement)).fold(0.0, f64::max);
    Ok(VerifyReport {
        pass: !reports.is_empty() && reports.iter().all(|r| r.pass),
        samples: ours.len(),
        batch,
        tolerance,
        max_abs_diff: worst(|a| a.max_abs_diff),
        max_rel_diff: worst(|a| a.max_rel_diff),
        top1_agreement: reports
            .iter()
            .map(|r| r.agreement.top1_agreement)
            .fold(1.0, f64::min),
        engines: reports,
    })
}
