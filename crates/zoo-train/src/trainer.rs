//! The finetuning loop: frozen prefix (optionally cached), new head, SGD-momentum or Adam with a
//! faster head, validation, best-model keeping, early stopping, clean Ctrl-C.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer, SgdConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use serde::Serialize;
use zoo_data::{Augment, Tensors};
use zoo_net::{Activation, FeatureCut, Network};

use crate::options::{FinetuneOptions, OptimizerKind};

/// What the caller sees while training runs.
pub trait Reporter {
    fn info(&self, message: &str);
    fn warn(&self, message: &str);
    fn row(&self, row: &ValidationRow);
    fn progress(&self, iteration: usize, total: usize);
}

/// One validation: a row of the MATLAB-style verbose table.
#[derive(Clone, Debug, Serialize)]
pub struct ValidationRow {
    pub epoch: usize,
    pub iteration: usize,
    pub elapsed_s: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub lr: f64,
}

/// One training iteration (for metrics.csv and the progress plot).
#[derive(Clone, Debug, Serialize)]
pub struct IterationRow {
    pub epoch: usize,
    pub iteration: usize,
    pub elapsed_s: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
}

/// Inputs of one split: either raw images or cached features of the frozen prefix.
pub struct Inputs {
    pub tensors: Tensors,
    /// Per-image features at the cut, flattened; `dims` excludes the batch axis.
    pub features: Option<(Vec<f32>, Vec<usize>)>,
}

impl Inputs {
    fn len(&self) -> usize {
        self.tensors.len()
    }

    fn batch<B: Backend>(
        &self,
        net: &Network<B>,
        cut: Option<&FeatureCut>,
        picked: &[usize],
        augment: Option<(Augment, u64, usize)>,
        device: &B::Device,
    ) -> Result<Tensor<B, 2>, zoo_net::NetError> {
        let logits = net.logits_value().to_string();
        match (&self.features, cut) {
            (Some((values, dims)), Some(cut)) => {
                let size: usize = dims.iter().product();
                let mut batch = Vec::with_capacity(picked.len() * size);
                for &i in picked {
                    batch.extend_from_slice(&values[i * size..(i + 1) * size]);
                }
                let mut full = vec![picked.len()];
                full.extend_from_slice(dims);
                let act = Activation::from_vec(batch, &full, device);
                Ok(net.forward_from(cut, act, &logits))
            }
            _ => {
                let chw = self.tensors.chw;
                let batch = self.tensors.gather(picked, augment);
                let x = Tensor::<B, 4>::from_data(
                    TensorData::new(batch, [picked.len(), chw[0], chw[1], chw[2]]),
                    device,
                );
                net.forward_logits(x)
            }
        }
    }
}

/// Runs the frozen prefix once per image (no autodiff) and keeps the activations at the cut.
pub fn cache_features<B: Backend>(
    net: &Network<B>,
    cut: &FeatureCut,
    tensors: &Tensors,
    batch_size: usize,
    device: &B::Device,
) -> Result<(Vec<f32>, Vec<usize>), zoo_net::NetError> {
    let chw = tensors.chw;
    let size: usize = chw.iter().product();
    let mut values = Vec::new();
    let mut dims = Vec::new();
    for start in (0..tensors.len()).step_by(batch_size.max(1)) {
        let n = (tensors.len() - start).min(batch_size.max(1));
        let x = Tensor::<B, 4>::from_data(
            TensorData::new(
                tensors.values[start * size..(start + n) * size].to_vec(),
                [n, chw[0], chw[1], chw[2]],
            ),
            device,
        );
        let act = net.forward_to(x, &cut.value)?;
        dims = act.dims()[1..].to_vec();
        values.extend(act.to_vec());
    }
    Ok((values, dims))
}

pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    log_softmax(logits, 1)
        .gather(1, labels.unsqueeze_dim(1))
        .mean()
        .neg()
}

fn labels_tensor<B: Backend>(labels: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    let v: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Tensor::from_data(TensorData::new(v, [labels.len()]), device)
}

fn predictions<B: Backend>(logits: Tensor<B, 2>) -> Vec<usize> {
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
) -> Result<(f64, f64, Vec<usize>), zoo_net::NetError> {
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

/// Everything the loop returns.
pub struct Trained<B: AutodiffBackend> {
    pub last: Network<B>,
    pub best: Network<B>,
    pub best_row: Option<ValidationRow>,
    pub rows: Vec<ValidationRow>,
    pub iterations: Vec<IterationRow>,
    pub epoch_seconds: Vec<f64>,
    pub images_seen: usize,
    pub stopped_early: bool,
    pub interrupted: bool,
    /// Validation accuracy before the first step (the new head untrained).
    pub initial_val_accuracy: f64,
}

pub struct LoopInputs<'a, B: AutodiffBackend> {
    pub net: Network<B>,
    pub cut: Option<FeatureCut>,
    pub train: &'a Inputs,
    pub val: &'a Inputs,
    pub head_params: Vec<usize>,
    pub options: &'a FinetuneOptions,
    pub stop: Option<Arc<AtomicBool>>,
    pub device: B::Device,
    /// SGD-momentum as one fused host loop (CPU); on a GPU burn's optimizer keeps it there.
    pub host_optimizer: bool,
    /// Seconds already spent before the first iteration (feature caching), counted in epoch 1.
    pub setup_seconds: f64,
}

pub fn train<B: AutodiffBackend>(
    job: LoopInputs<'_, B>,
    reporter: &dyn Reporter,
) -> Result<Trained<B>, zoo_net::NetError> {
    let o = job.options;
    match o.optimizer {
        OptimizerKind::Sgdm if !job.host_optimizer => {
            // PyTorch's rule, as the host loop: no dampening, L2 weight decay.
            let config = SgdConfig::new()
                .with_momentum(Some(
                    MomentumConfig::new()
                        .with_momentum(o.momentum)
                        .with_dampening(0.0),
                ))
                .with_weight_decay(
                    (o.weight_decay > 0.0).then(|| WeightDecayConfig::new(o.weight_decay as f32)),
                );
            let updater = BurnUpdater::new(config.init(), config.init(), &job);
            run(job, updater, reporter)
        }
        OptimizerKind::Sgdm => {
            let updater = HostSgdUpdater {
                sgd: crate::host_sgd::HostSgd::new(o.momentum, o.weight_decay),
                head: job.head_params.clone(),
                body: (0..job.net.plan().params.len())
                    .filter(|i| job.net.is_trainable(*i) && !job.head_params.contains(i))
                    .collect(),
            };
            run(job, updater, reporter)
        }
        OptimizerKind::Adam => {
            let mut config = AdamConfig::new();
            if o.weight_decay > 0.0 {
                config =
                    config.with_weight_decay(Some(WeightDecayConfig::new(o.weight_decay as f32)));
            }
            let updater = BurnUpdater::new(config.init(), config.init(), &job);
            run(job, updater, reporter)
        }
    }
}

/// Applies one optimisation step, the new head at `lr * head_lr_factor`.
trait Updater<B: AutodiffBackend> {
    fn update(
        &mut self,
        net: Network<B>,
        grads: GradientsParams,
        lr: f64,
        head_factor: f64,
    ) -> Network<B>;
}

/// burn's optimizers, one instance for the body and one for the head (their state is per
/// parameter, so each sees only its own).
struct BurnUpdater<O1, O2> {
    body: O1,
    head: O2,
    head_ids: Vec<burn::module::ParamId>,
}

impl<O1, O2> BurnUpdater<O1, O2> {
    fn new<B: AutodiffBackend>(body: O1, head: O2, job: &LoopInputs<'_, B>) -> Self {
        let ids = job.net.param_ids();
        Self {
            body,
            head,
            head_ids: job.head_params.iter().map(|&i| ids[i]).collect(),
        }
    }
}

impl<B: AutodiffBackend, O1: Optimizer<Network<B>, B>, O2: Optimizer<Network<B>, B>> Updater<B>
    for BurnUpdater<O1, O2>
{
    fn update(
        &mut self,
        net: Network<B>,
        mut grads: GradientsParams,
        lr: f64,
        head_factor: f64,
    ) -> Network<B> {
        let mut head_grads = GradientsParams::new();
        for &id in &self.head_ids {
            if let Some(g) = grads.remove::<B::InnerBackend, 1>(id) {
                head_grads.register(id, g);
            }
        }
        let net = self.body.step(lr, net, grads);
        self.head.step(lr * head_factor, net, head_grads)
    }
}

/// The fused host SGD-momentum (CPU).
struct HostSgdUpdater {
    sgd: crate::host_sgd::HostSgd,
    head: Vec<usize>,
    body: Vec<usize>,
}

impl<B: AutodiffBackend> Updater<B> for HostSgdUpdater {
    fn update(
        &mut self,
        net: Network<B>,
        mut grads: GradientsParams,
        lr: f64,
        head_factor: f64,
    ) -> Network<B> {
        let net = self.sgd.step(net, &mut grads, &self.body, lr);
        self.sgd.step(net, &mut grads, &self.head, lr * head_factor)
    }
}

fn run<B: AutodiffBackend, U: Updater<B>>(
    job: LoopInputs<'_, B>,
    mut updater: U,
    reporter: &dyn Reporter,
) -> Result<Trained<B>, zoo_net::NetError> {
    let o = job.options;
    let device = job.device.clone();
    let mut net = job.net;
    let n_train = job.train.len();
    let per_epoch = n_train.div_ceil(o.batch_size);
    let total = per_epoch * o.epochs;
    let val_every = o.val_every.unwrap_or(per_epoch).max(1);
    let augment =
        (o.augment && job.cut.is_none()).then(|| Augment::standard(job.train.tensors.chw));
    let (_, initial_val_accuracy, _) = evaluate(
        &net.valid(),
        job.cut.as_ref(),
        job.val,
        o.batch_size,
        &device,
    )?;
    let started = Instant::now();
    let mut out = Trained {
        best: net.clone(),
        last: net.clone(),
        best_row: None,
        rows: Vec::new(),
        iterations: Vec::new(),
        epoch_seconds: Vec::new(),
        images_seen: 0,
        stopped_early: false,
        interrupted: false,
        initial_val_accuracy,
    };
    let mut since_best = 0;
    let mut iteration = 0;
    let (mut recent_loss, mut recent_correct, mut recent_n) = (0.0, 0usize, 0usize);
    'epochs: for epoch in 1..=o.epochs {
        let epoch_started = Instant::now();
        let mut order: Vec<usize> = (0..n_train).collect();
        {
            use rand::seq::SliceRandom;
            use rand::SeedableRng;
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
                o.seed.wrapping_add(epoch as u64),
            ));
        }
        for picked in order.chunks(o.batch_size) {
            if job.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
                out.interrupted = true;
                break 'epochs;
            }
            iteration += 1;
            let labels: Vec<usize> = picked
                .iter()
                .map(|&i| job.train.tensors.labels[i])
                .collect();
            let logits = job.train.batch(
                &net,
                job.cut.as_ref(),
                picked,
                augment.map(|a| (a, o.seed, epoch)),
                &device,
            )?;
            let loss = cross_entropy(logits.clone(), labels_tensor::<B>(&labels, &device));
            let loss_value: f32 = loss.clone().into_scalar().elem();
            if !loss_value.is_finite() {
                return Err(zoo_net::NetError::Diverged {
                    iteration: out.iterations.len() + 1,
                    loss: loss_value,
                    lr: o.lr,
                });
            }
            let preds = predictions(logits);
            let correct = preds.iter().zip(&labels).filter(|(p, l)| p == l).count();
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = updater
                .update(net, grads, o.lr, o.head_lr_factor)
                .update_running_statistics();
            out.images_seen += picked.len();
            recent_loss += loss_value as f64 * picked.len() as f64;
            recent_correct += correct;
            recent_n += picked.len();
            out.iterations.push(IterationRow {
                epoch,
                iteration,
                elapsed_s: started.elapsed().as_secs_f64() + job.setup_seconds,
                train_loss: loss_value as f64,
                train_accuracy: correct as f64 / picked.len() as f64,
            });
            reporter.progress(iteration, total);
            if iteration % val_every == 0 || iteration == total {
                let valid = net.valid();
                let (val_loss, val_accuracy, _) =
                    evaluate(&valid, job.cut.as_ref(), job.val, o.batch_size, &device)?;
                if !val_loss.is_finite() && job.val.len() > 0 {
                    return Err(zoo_net::NetError::Diverged {
                        iteration,
                        loss: val_loss as f32,
                        lr: o.lr,
                    });
                }
                let row = ValidationRow {
                    epoch,
                    iteration,
                    elapsed_s: started.elapsed().as_secs_f64() + job.setup_seconds,
                    train_loss: recent_loss / recent_n.max(1) as f64,
                    train_accuracy: recent_correct as f64 / recent_n.max(1) as f64,
                    val_loss,
                    val_accuracy,
                    lr: o.lr,
                };
                (recent_loss, recent_correct, recent_n) = (0.0, 0, 0);
                reporter.row(&row);
                let better = match &out.best_row {
                    None => true,
                    Some(b) => {
                        val_accuracy > b.val_accuracy
                            || (val_accuracy == b.val_accuracy && val_loss < b.val_loss)
                    }
                };
                if better {
                    out.best = net.clone();
                    out.best_row = Some(row.clone());
                    since_best = 0;
                } else {
                    since_best += 1;
                }
                out.rows.push(row);
                if o.patience.is_some_and(|p| since_best >= p) {
                    out.stopped_early = true;
                    out.epoch_seconds.push(
                        epoch_started.elapsed().as_secs_f64()
                            + if epoch == 1 { job.setup_seconds } else { 0.0 },
                    );
                    break 'epochs;
                }
            }
        }
        out.epoch_seconds.push(
            epoch_started.elapsed().as_secs_f64()
                + if epoch == 1 { job.setup_seconds } else { 0.0 },
        );
    }
    if out.best_row.is_none() {
        out.best = net.clone();
    }
    out.last = net;
    Ok(out)
}

use burn::tensor::ElementConversion;
