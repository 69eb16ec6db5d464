//! Losses and validation: the training loss of a batch, and a split's loss, accuracy,
//! predictions and class probabilities.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::ElementConversion;
use burn::tensor::{Int, Tensor, TensorData};
use zoo_net::{FeatureCut, Network};

use crate::trainer::Inputs;

pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    log_softmax(logits, 1)
        .gather(1, labels.unsqueeze_dim(1))
        .mean()
        .neg()
}

/// The training loss `kind` of a batch (validation loss is always cross-entropy, so runs with
/// either loss compare).
pub fn training_loss<B: Backend>(
    kind: crate::options::LossKind,
    logits: Tensor<B, 2>,
    labels: &[usize],
    device: &B::Device,
) -> Tensor<B, 1> {
    match kind {
        crate::options::LossKind::CrossEntropy => {
            cross_entropy(logits, labels_tensor::<B>(labels, device))
        }
        crate::options::LossKind::Quadratic => {
            let [n, k] = logits.dims();
            let mut one_hot = vec![0f32; n * k];
            for (i, &l) in labels.iter().enumerate() {
                one_hot[i * k + l] = 1.0;
            }
            let target = Tensor::<B, 2>::from_data(TensorData::new(one_hot, [n, k]), device);
            let diff = burn::tensor::activation::softmax(logits, 1) - target;
            (diff.clone() * diff).sum_dim(1).mean().mul_scalar(0.5)
        }
    }
}

pub(crate) fn labels_tensor<B: Backend>(labels: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    let v: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Tensor::from_data(TensorData::new(v, [labels.len()]), device)
}

pub(crate) fn predictions<B: Backend>(logits: Tensor<B, 2>) -> Vec<usize> {
    logits
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .expect("int predictions")
        .into_iter()
        .map(|v| v as usize)
        .collect()
}

/// Loss, accuracy and predictions of `net` on a split (batched, no autodiff).
pub fn evaluate<B: Backend>(
    net: &Network<B>,
    cut: Option<&FeatureCut>,
    inputs: &Inputs,
    batch_size: usize,
    device: &B::Device,
) -> anyhow::Result<(f64, f64, Vec<usize>)> {
    let n = inputs.len();
    if n == 0 {
        return Ok((f64::NAN, f64::NAN, Vec::new()));
    }
    let mut loss_sum = 0.0;
    let mut preds = Vec::with_capacity(n);
    let order: Vec<usize> = (0..n).collect();
    for picked in order.chunks(batch_size.max(1)) {
        let logits = inputs.batch(net, cut, picked, None, device)?;
        let labels: Vec<usize> = picked.iter().map(|&i| inputs.tensors.labels[i]).collect();
        let loss: f32 = cross_entropy(logits.clone(), labels_tensor::<B>(&labels, device))
            .into_scalar()
            .elem();
        loss_sum += loss as f64 * picked.len() as f64;
        preds.extend(predictions(logits));
    }
    let correct = preds
        .iter()
        .zip(&inputs.tensors.labels)
        .filter(|(p, l)| p == l)
        .count();
    Ok((loss_sum / n as f64, correct as f64 / n as f64, preds))
}

/// Class probabilities (softmax of the logits) of every input of a split, batched.
pub fn probabilities<B: Backend>(
    net: &Network<B>,
    cut: Option<&FeatureCut>,
    inputs: &Inputs,
    batch_size: usize,
    device: &B::Device,
) -> anyhow::Result<Vec<Vec<f64>>> {
    let order: Vec<usize> = (0..inputs.len()).collect();
    let mut out = Vec::with_capacity(order.len());
    for picked in order.chunks(batch_size.max(1)) {
        let logits = inputs.batch(net, cut, picked, None, device)?;
        let [_, k] = logits.dims();
        let values: Vec<f32> = logits
            .into_data()
            .convert::<f32>()
            .into_vec()
            .expect("float logits");
        out.extend(values.chunks(k).map(crate::report::softmax));
    }
    Ok(out)
}
