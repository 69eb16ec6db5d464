//! Proof by running for batch rules that shapes alone cannot prove. A fixed-batch export
//! (`[1, 3, H, W]`, targets with the 1 baked in) runs at any batch only if every sample is
//! computed on its own: two different images run one at a time and then together must give
//! the same rows. Otherwise the graph keeps its declared batch, with a warning naming the
//! first rewritten node.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::network::Network;

/// Largest difference between a row computed alone and in the batch of two, relative to the
/// largest output; float reordering stays far below it.
const TOLERANCE: f32 = 1e-3;

/// Why the graph must keep its declared batch, when its batch rewrites do not hold.
pub(crate) fn disproved<B: Backend>(net: &Network<B>, device: &B::Device) -> Option<String> {
    let shapes = &net.plan.graph.shapes;
    let first = shapes.batch_rewrites.first()?;
    if shapes.fixed_batch.is_some() {
        return None;
    }
    let [c, h, w] = net.plan.graph.input_chw();
    let image = |seed: u32| -> Vec<f32> {
        (0..c * h * w)
            .map(|i| {
                let k = (i as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(seed * 40_503);
                (k % 1000) as f32 / 500.0 - 1.0
            })
            .collect()
    };
    let (a, b) = (image(1), image(2));
    let batch = |parts: &[&[f32]]| {
        let data: Vec<f32> = parts.concat();
        Tensor::<B, 4>::from_data(TensorData::new(data, [parts.len(), c, h, w]), device)
    };
    let run = |x: Tensor<B, 4>| -> Option<Vec<f32>> {
        let y = net.forward(x).ok()?;
        y.into_data().convert::<f32>().to_vec().ok()
    };
    let alone = [run(batch(&[&a]))?, run(batch(&[&b]))?].concat();
    let together = match run(batch(&[&a, &b])) {
        Some(t) if t.len() == alone.len() => t,
        _ => return Some(reason(first)),
    };
    let scale = alone.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let worst = alone
        .iter()
        .zip(&together)
        .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
    // A NaN difference fails the proof too.
    let holds = worst / scale <= TOLERANCE;
    (!holds).then(|| reason(first))
}

fn reason(node: &str) -> String {
    format!("node `{node}`: its batch rule did not hold when run at batch 1 and 2")
}
