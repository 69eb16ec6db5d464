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

/// What training minimises: the loss and its label smoothing.
#[derive(Clone, Copy, Debug)]
pub struct TrainingLoss {
    pub kind: crate::options::LossKind,
    pub label_smoothing: f64,
}

impl From<crate::options::LossKind> for TrainingLoss {
    fn from(kind: crate::options::LossKind) -> Self {
        Self {
            kind,
            label_smoothing: 0.0,
        }
    }
}

impl From<&crate::options::FinetuneOptions> for TrainingLoss {
    fn from(o: &crate::options::FinetuneOptions) -> Self {
        Self {
            kind: o.loss,
            label_smoothing: o.label_smoothing,
        }
    }
}

/// The training loss of a batch: cross-entropy (with label smoothing `e`: the target puts `1 - e` on the true class and spreads `e` evenly
/// over all classes) or the quadratic cost. The validation loss is always plain cross-entropy,
/// so runs with any training loss compare.
pub fn training_loss<B: Backend>(
    loss: impl Into<TrainingLoss>,
    logits: Tensor<B, 2>,
    labels: &[usize],
    device: &B::Device,
) -> Tensor<B, 1> {
    let loss = loss.into();
    match loss.kind {
        crate::options::LossKind::CrossEntropy if loss.label_smoothing > 0.0 => {
            let e = loss.label_smoothing;
            let log_p = log_softmax(logits, 1);
            let nll = (log_p.clone())
                .gather(1, labels_tensor::<B>(labels, device).unsqueeze_dim(1))
                .mean()
                .neg();
            let uniform = log_p.mean_dim(1).mean().neg();
            nll.mul_scalar(1.0 - e).add(uniform.mul_scalar(e))
        }
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

/// A split's loss, accuracy and predictions, and the classes whose output was the same for
/// every image of it.
pub struct SplitScore {
    pub loss: f64,
    pub accuracy: f64,
    pub predictions: Vec<usize>,
    /// Classes whose logit did not change with the image (a "dead" class: no gradient reaches
    /// it, so it can never be learned). Only judged on two images or more.
    pub constant_classes: Vec<usize>,
}

/// Loss, accuracy, predictions and constant outputs of `net` on a split (batched, no autodiff).
pub fn evaluate<B: Backend>(
    net: &Network<B>,
    cut: Option<&FeatureCut>,
    inputs: &Inputs,
    batch_size: usize,
    device: &B::Device,
) -> anyhow::Result<SplitScore> {
    let n = inputs.len();
    let mut loss_sum = 0.0;
    let mut preds = Vec::with_capacity(n);
    let mut ranges = LogitRanges::default();
    let order: Vec<usize> = (0..n).collect();
    for picked in order.chunks(batch_size.max(1)) {
        let logits = inputs.batch(net, cut, picked, None, device)?;
        let labels: Vec<usize> = picked.iter().map(|&i| inputs.tensors.labels[i]).collect();
        let loss: f32 = cross_entropy(logits.clone(), labels_tensor::<B>(&labels, device))
            .into_scalar()
            .elem();
        loss_sum += loss as f64 * picked.len() as f64;
        let [_, k] = logits.dims();
        let values: Vec<f32> = logits
            .clone()
            .into_data()
            .convert::<f32>()
            .into_vec()
            .expect("float logits");
        ranges.add(&values, k);
        preds.extend(predictions(logits));
    }
    let correct = preds
        .iter()
        .zip(&inputs.tensors.labels)
        .filter(|(p, l)| p == l)
        .count();
    Ok(SplitScore {
        loss: if n == 0 {
            f64::NAN
        } else {
            loss_sum / n as f64
        },
        accuracy: if n == 0 {
            f64::NAN
        } else {
            correct as f64 / n as f64
        },
        predictions: preds,
        constant_classes: if n >= 2 {
            ranges.constant()
        } else {
            Vec::new()
        },
    })
}

/// Each class's smallest and largest logit over the images seen.
#[derive(Default)]
struct LogitRanges(Vec<(f32, f32)>);

impl LogitRanges {
    fn add(&mut self, rows: &[f32], classes: usize) {
        if self.0.len() != classes {
            self.0 = vec![(f32::INFINITY, f32::NEG_INFINITY); classes];
        }
        for row in rows.chunks(classes.max(1)) {
            for (range, &v) in self.0.iter_mut().zip(row) {
                *range = (range.0.min(v), range.1.max(v));
            }
        }
    }

    /// Classes whose logit was the same for every image.
    fn constant(&self) -> Vec<usize> {
        (0..self.0.len())
            .filter(|&k| self.0[k].0 == self.0[k].1)
            .collect()
    }
}

/// The training loss of a step: of its labels, or with a mix the two labels' losses weighted by
/// the share each image has.
pub(crate) fn step_loss<B: Backend>(
    o: &crate::options::FinetuneOptions,
    logits: burn::tensor::Tensor<B, 2>,
    (labels, mix): (&[usize], Option<&crate::mixing::Mix>),
    device: &B::Device,
) -> burn::tensor::Tensor<B, 1> {
    let loss = training_loss(o, logits.clone(), labels, device);
    match mix {
        None => loss,
        Some(m) => loss
            .mul_scalar(m.lambda)
            .add(training_loss(o, logits, &m.partner_labels, device).mul_scalar(1.0 - m.lambda)),
    }
}

/// Records and says (once each) the classes whose output was the same for every validation
/// image: no gradient reaches them, so they cannot be learned.
pub(crate) fn note_dead_classes(
    state: &mut crate::checkpoint::LoopState,
    constant: &[usize],
    names: &[String],
    reporter: &dyn crate::trainer::Reporter,
) {
    let when = match state.iteration {
        0 => "before training".to_string(),
        i => format!("at iteration {i}"),
    };
    for &k in constant {
        if state.dead_classes.contains(&k) {
            continue;
        }
        state.dead_classes.push(k);
        let name = names.get(k).map_or_else(
            || format!("output {k}"),
            |n| format!("`{}`", zoo_io::printable(n)),
        );
        reporter.warn(&format!(
            "class {name} is dead {when}: its output is the same for every validation image, so no gradient reaches it and it cannot be learned (an activation after the head that stops the gradient, or a diverging run); try another --seed or a lower --lr"
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::LossKind;

    /// Against the cross-entropy of the smoothed target worked out by hand: logits [1, 2, 3]
    /// (label 2) and [0, 0, 0] (label 0), e = 0.1: 0.9 x 0.753109 + 0.1 x 1.253109.
    #[test]
    fn label_smoothing_is_the_cross_entropy_of_the_smoothed_target() {
        let device = Default::default();
        let logits = || {
            let values = TensorData::new(vec![1.0f32, 2.0, 3.0, 0.0, 0.0, 0.0], [2, 3]);
            Tensor::<burn::backend::Flex, 2>::from_data(values, &device)
        };
        let loss = |label_smoothing| -> f32 {
            let kind = LossKind::CrossEntropy;
            let loss = TrainingLoss {
                kind,
                label_smoothing,
            };
            training_loss(loss, logits(), &[2, 0], &device)
                .into_scalar()
                .elem()
        };
        assert!((loss(0.0) - 0.753_109_1).abs() < 1e-5, "{}", loss(0.0));
        assert!((loss(0.1) - 0.803_109_1).abs() < 1e-5, "{}", loss(0.1));
        let plain: f32 = training_loss(LossKind::CrossEntropy, logits(), &[2, 0], &device)
            .into_scalar()
            .elem();
        assert_eq!(plain, loss(0.0));
    }
}
