//! The finetuning loop: frozen prefix (optionally cached), new head, SGD-momentum or Adam with a
//! faster head, validation, best-model keeping, early stopping, clean Ctrl-C.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use zoo_data::Augment;
use zoo_net::{FeatureCut, Network};

use crate::checkpoint::{Checkpoint, LoopState, OptimizerState};
use crate::ema::Ema;
use crate::options::FinetuneOptions;
use crate::updater::Updater;

use crate::losses::predictions;
pub use crate::losses::{cross_entropy, evaluate, probabilities, training_loss};
use crate::losses::{note_dead_classes, step_loss};
use crate::mixing::Mix;
pub use crate::rows::{IterationRow, Reporter, StderrReporter, ValidationRow};
pub use crate::split_inputs::Inputs;
pub use crate::stages::HeadStage;
use crate::stages::{averaged_params, stage_at};

/// Everything the loop returns.
pub struct Trained<B: AutodiffBackend> {
    pub last: Network<B>,
    pub best: Network<B>,
    pub state: LoopState,
    pub stopped_early: bool,
    pub interrupted: bool,
}

/// Where the loop writes as it goes, so a killed run keeps what it did.
pub trait Journal<B: AutodiffBackend> {
    /// After each iteration (and its validation, when one ran).
    fn iteration(
        &mut self,
        row: &IterationRow,
        validation: Option<&ValidationRow>,
    ) -> std::io::Result<()>;
    /// A validation beat every earlier one.
    fn new_best(&mut self, best: &Network<B>, state: &LoopState) -> std::io::Result<()>;
    /// At every validation and epoch end: weights and optimizer state to resume from.
    fn checkpoint(
        &mut self,
        last: &Network<B>,
        best: &Network<B>,
        state: &LoopState,
        optimizer: &OptimizerState,
    ) -> std::io::Result<()>;
}

pub struct LoopInputs<'a, B: AutodiffBackend> {
    /// The class of each output, for messages.
    pub classes: &'a [String],
    pub cut: Option<FeatureCut>,
    pub train: &'a Inputs,
    pub val: &'a Inputs,
    pub head_params: Vec<usize>,
    pub options: &'a FinetuneOptions,
    pub stop: Option<Arc<AtomicBool>>,
    pub device: B::Device,
    /// SGD-momentum as one fused host loop (CPU); on a GPU burn's optimizer keeps it there.
    pub host_optimizer: bool,
    /// The learning rate of each step, as a factor of `options.lr`.
    pub lr_plan: crate::schedule::LrPlan,
    /// Seconds already spent before the first iteration (feature caching), counted in epoch 1.
    pub setup_seconds: f64,
    /// Continue from this checkpoint instead of from the first step.
    pub resume: Option<Checkpoint>,
    /// `--fine-tune`: the head trains alone for these epochs, then these layers unfreeze.
    pub head_stage: Option<HeadStage>,
}

/// The seed of one iteration's random draws (dropout): a function of the run's seed and the
/// iteration alone, so a resumed run draws what an uninterrupted one would.
fn iteration_seed(seed: u64, iteration: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (iteration as u64).wrapping_add(1)
}

pub(crate) fn shuffled(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
        seed.wrapping_add(epoch as u64),
    ));
    order
}

/// The loop's fixed facts and its running state.
struct Loop<'a, B: AutodiffBackend> {
    job: LoopInputs<'a, B>,
    /// `None` only during an update, which takes the network by value so the host optimizer
    /// can change its tensors in place.
    net: Option<Network<B>>,
    updater: Box<dyn Updater<B>>,
    state: LoopState,
    best: Network<B>,
    per_epoch: usize,
    total: usize,
    val_every: usize,
    augment: Option<Augment>,
    /// The head-only stage while it lasts (`--fine-tune`).
    head_stage: Option<HeadStage>,
    /// The average of the weights (`--ema`): what validates and becomes the best model.
    ema: Option<Ema>,
    /// Wall time of earlier sessions of this run is in `state.elapsed_s`.
    session_started: Instant,
    elapsed_before: f64,
}

/// Trains `job.net` (from its checkpoint when resuming), writing to `journal` as it goes.
pub fn train<B: AutodiffBackend>(
    mut net: Network<B>,
    mut job: LoopInputs<'_, B>,
    journal: &mut dyn Journal<B>,
    reporter: &dyn Reporter,
) -> anyhow::Result<Trained<B>> {
    let o = job.options;
    let per_epoch = job.train.len().div_ceil(o.batch_size);
    let resumed_at = job.resume.as_ref().map(|c| c.state.iteration);
    let (net_now, head_stage) = stage_at(net, job.head_stage.clone(), resumed_at, per_epoch)?;
    net = net_now;
    let mut updater = crate::updater::for_options(o, &net, &job.head_params, job.host_optimizer);
    let mut ema = o.ema.map(|decay| {
        let stage_two = head_stage.as_ref().map_or(&[][..], |h| h.frozen.as_slice());
        Ema::new(decay, &net, &averaged_params(&net, stage_two))
    });
    let mut best = net.clone();
    let state = match job.resume.take() {
        Some(c) => {
            for (i, v) in c.last {
                net.set_param_values(i, v);
            }
            for (i, v) in c.best {
                best.set_param_values(i, v);
            }
            let optimizer = match &mut ema {
                Some(ema) => ema.unpack(&c.optimizer),
                None => Ok(&c.optimizer[..]),
            };
            (optimizer.and_then(|bytes| updater.restore(bytes, &job.device)))
                .map_err(|e| anyhow::anyhow!("the checkpoint's optimizer state: {e}"))?;
            c.state
        }
        None => first_state(&net, &job, reporter)?,
    };
    let elapsed_before = state.elapsed_s;
    let augment =
        (o.augment && job.cut.is_none()).then(|| Augment::standard(job.train.tensors.chw));
    let mut run = Loop {
        per_epoch,
        total: per_epoch * o.epochs,
        val_every: o.val_every.unwrap_or(per_epoch).max(1),
        augment,
        head_stage,
        ema,
        job,
        net: Some(net),
        updater,
        state,
        best,
        session_started: Instant::now(),
        elapsed_before,
    };
    let (stopped_early, interrupted) = run.epochs(journal, reporter)?;
    Ok(Trained {
        last: run.net.take().expect("network present"),
        best: run.best,
        state: run.state,
        stopped_early,
        interrupted,
    })
}

/// A new run's state: the validation before the first step, and any class dead already.
fn first_state<B: AutodiffBackend>(
    net: &Network<B>,
    job: &LoopInputs<'_, B>,
    reporter: &dyn Reporter,
) -> anyhow::Result<LoopState> {
    let o = job.options;
    let initial = evaluate(
        &net.valid(),
        job.cut.as_ref(),
        job.val,
        o.batch_size,
        &job.device,
    )?;
    let mut state = LoopState {
        initial_val_accuracy: initial.accuracy,
        current_epoch_s: job.setup_seconds,
        elapsed_s: job.setup_seconds,
        ..Default::default()
    };
    note_dead_classes(&mut state, &initial.constant_classes, job.classes, reporter);
    Ok(state)
}

/// One training step: its images, their pixels when read ahead, and the epoch's clock (its
/// start, and whether this step ends it).
struct Step<'p> {
    epoch: usize,
    picked: &'p [usize],
    pixels: Option<Vec<f32>>,
    clock: (Instant, bool),
}

enum Flow {
    Continue,
    StopEarly,
}

impl<'a, B: AutodiffBackend> Loop<'a, B> {
    fn net(&self) -> &Network<B> {
        self.net.as_ref().expect("network present")
    }

    /// The body's learning rate at step `iteration` (the schedule's factor of `--lr`).
    fn lr_at(&self, iteration: usize) -> f64 {
        self.job.options.lr * self.job.lr_plan.factor(iteration)
    }

    fn elapsed(&self) -> f64 {
        self.elapsed_before + self.session_started.elapsed().as_secs_f64()
    }

    /// Returns (stopped early, interrupted).
    fn epochs(
        &mut self,
        journal: &mut dyn Journal<B>,
        reporter: &dyn Reporter,
    ) -> anyhow::Result<(bool, bool)> {
        if self.state.stopped_early {
            return Ok((true, false));
        }
        let first_epoch = self.state.iteration / self.per_epoch.max(1) + 1;
        for epoch in first_epoch..=self.job.options.epochs {
            if self.head_stage.as_ref().is_some_and(|h| epoch > h.epochs) {
                self.unfreeze(reporter)?;
            }
            let (ended, checkpointed) = self.epoch(epoch, journal, reporter)?;
            if let Some(end) = ended {
                return Ok(end);
            }
            if !checkpointed {
                self.checkpoint(journal)?;
            }
        }
        Ok((false, false))
    }

    /// The end of the head-only stage: its layers train from now on, at their rates, with a
    /// fresh optimizer state (fastai's `unfreeze`).
    fn unfreeze(&mut self, reporter: &dyn Reporter) -> anyhow::Result<()> {
        let Some(stage) = self.head_stage.take() else {
            return Ok(());
        };
        let net = self.net.take().expect("network present");
        let net = net.set_layers_trainable(&stage.frozen, true)?;
        self.updater = crate::updater::for_options(
            self.job.options,
            &net,
            &self.job.head_params,
            self.job.host_optimizer,
        );
        self.net = Some(net);
        reporter.info(&format!(
            "fine-tune: after {} head-only epoch(s) {} unfreeze",
            stage.epochs,
            zoo_cards::describe_layers(&stage.frozen)
        ));
        Ok(())
    }

    /// The steps of one epoch (from where a resumed run stands). Streamed images are read and
    /// decoded a batch ahead, on another thread, while the current step computes. Returns
    /// `(stopped early, interrupted)` when the run ends here, and whether the last step
    /// checkpointed.
    fn epoch(
        &mut self,
        epoch: usize,
        journal: &mut dyn Journal<B>,
        reporter: &dyn Reporter,
    ) -> anyhow::Result<(Option<(bool, bool)>, bool)> {
        let epoch_started =
            Instant::now() - std::time::Duration::from_secs_f64(self.state.current_epoch_s);
        let done_in_epoch = self.state.iteration - (epoch - 1) * self.per_epoch;
        let order = shuffled(self.job.train.len(), self.job.options.seed, epoch);
        let batches: Vec<&[usize]> = (order.chunks(self.job.options.batch_size))
            .skip(done_in_epoch)
            .collect();
        let train: &'a Inputs = self.job.train;
        let ahead = train.features.is_none() && train.tensors.streamed.is_some();
        let augment = self.augment.map(|a| (a, self.job.options.seed, epoch));
        std::thread::scope(|scope| {
            let fetch = |picked: &[usize]| {
                let picked = picked.to_vec();
                scope.spawn(move || train.tensors.gather(&picked, augment))
            };
            let mut next = batches.first().filter(|_| ahead).map(|p| fetch(p));
            let mut checkpointed = false;
            for (k, picked) in batches.iter().enumerate() {
                let pixels = match next.take() {
                    Some(reading) => Some(reading.join().map_err(|_| {
                        anyhow::anyhow!("the thread reading the next batch of images failed")
                    })??),
                    None => None,
                };
                next = batches.get(k + 1).filter(|_| ahead).map(|p| fetch(p));
                if self
                    .job
                    .stop
                    .as_ref()
                    .is_some_and(|s| s.load(Ordering::SeqCst))
                {
                    let seconds = epoch_started.elapsed().as_secs_f64();
                    self.state.epoch_seconds.push(seconds);
                    return Ok((Some((false, true)), false));
                }
                let ends_epoch = done_in_epoch + k + 1 == self.per_epoch;
                let step = Step {
                    epoch,
                    picked,
                    pixels,
                    clock: (epoch_started, ends_epoch),
                };
                let (flow, validated) = self.iteration(step, journal, reporter)?;
                checkpointed = validated;
                if let Flow::StopEarly = flow {
                    if !ends_epoch {
                        let seconds = epoch_started.elapsed().as_secs_f64();
                        self.state.epoch_seconds.push(seconds);
                    }
                    return Ok((Some((true, false)), false));
                }
            }
            Ok((None, checkpointed))
        })
    }

    /// One step, then a validation and a checkpoint when one is due (returned as `true`).
    /// `clock` is the epoch's start and whether this step ends it.
    fn iteration(
        &mut self,
        step: Step,
        journal: &mut dyn Journal<B>,
        reporter: &dyn Reporter,
    ) -> anyhow::Result<(Flow, bool)> {
        let Step {
            epoch,
            picked,
            pixels,
            clock,
        } = step;
        let o = self.job.options;
        let device = self.job.device.clone();
        self.state.iteration += 1;
        let iteration = self.state.iteration;
        B::seed(&device, iteration_seed(o.seed, iteration));
        let labels: Vec<usize> = picked
            .iter()
            .map(|&i| self.job.train.tensors.labels[i])
            .collect();
        let (logits, mix) = self.logits((epoch, iteration), picked, pixels, &labels)?;
        let loss = step_loss(o, logits.clone(), (&labels, mix.as_ref()), &device);
        let loss_value: f32 = loss.clone().into_scalar().elem();
        let lr = self.lr_at(iteration);
        if !loss_value.is_finite() {
            return Err(zoo_net::NetError::Diverged {
                iteration,
                loss: loss_value,
                lr,
            }
            .into());
        }
        let correct = predictions(logits)
            .iter()
            .zip(&labels)
            .filter(|(p, l)| p == l)
            .count();
        let grads = GradientsParams::from_grads(loss.backward(), self.net());
        let net = self.net.take().expect("network present");
        self.net = Some(
            self.updater
                .update(net, grads, lr)
                .update_running_statistics(),
        );
        if let (Some(ema), Some(net)) = (&mut self.ema, &self.net) {
            ema.update(net);
        }
        self.state.images_seen += picked.len();
        self.state.recent_loss += loss_value as f64 * picked.len() as f64;
        self.state.recent_correct += correct;
        self.state.recent_n += picked.len();
        let row = IterationRow {
            epoch,
            iteration,
            elapsed_s: self.elapsed(),
            train_loss: loss_value as f64,
            train_accuracy: correct as f64 / picked.len() as f64,
            images: picked.len(),
        };
        self.state.iterations.push(row.clone());
        reporter.progress(iteration, self.total);
        self.clock(clock);
        if !iteration.is_multiple_of(self.val_every) && iteration != self.total {
            journal.iteration(&row, None)?;
            return Ok((Flow::Continue, false));
        }
        let (validation, flow) = self.validate(epoch, journal, reporter)?;
        journal.iteration(&row, Some(&validation))?;
        self.checkpoint(journal)?;
        Ok((flow, true))
    }

    /// The training logits of a step: from pixels read ahead, or from its inputs; with
    /// `--mixup`/`--cutmix` the pixels mixed first (and how).
    fn logits(
        &self,
        (epoch, iteration): (usize, usize),
        picked: &[usize],
        pixels: Option<Vec<f32>>,
        labels: &[usize],
    ) -> anyhow::Result<(burn::tensor::Tensor<B, 2>, Option<Mix>)> {
        let (train, device, o) = (self.job.train, &self.job.device, self.job.options);
        let augment = self.augment.map(|a| (a, o.seed, epoch));
        let mixing = (o.mixup, o.cutmix);
        let pixels = match pixels {
            Some(pixels) => pixels,
            None if o.mixes() => train.tensors.gather(picked, augment)?,
            None => {
                let cut = self.job.cut.as_ref();
                return Ok((train.batch(self.net(), cut, picked, augment, device)?, None));
            }
        };
        let mut pixels = pixels;
        let seed = iteration_seed(o.seed, iteration);
        let mix = crate::mixing::mix(&mut pixels, train.tensors.chw, labels, mixing, seed);
        Ok((train.forward_pixels(self.net(), pixels, device)?, mix))
    }

    /// The epoch's time so far, or its length when this step ended it.
    fn clock(&mut self, (epoch_started, ends_epoch): (Instant, bool)) {
        let seconds = epoch_started.elapsed().as_secs_f64();
        if ends_epoch {
            self.state.epoch_seconds.push(seconds);
            self.state.current_epoch_s = 0.0;
        } else {
            self.state.current_epoch_s = seconds;
        }
    }

    fn validate(
        &mut self,
        epoch: usize,
        journal: &mut dyn Journal<B>,
        reporter: &dyn Reporter,
    ) -> anyhow::Result<(ValidationRow, Flow)> {
        let o = self.job.options;
        let validated = self.validated();
        let score = evaluate(
            &validated.valid(),
            self.job.cut.as_ref(),
            self.job.val,
            o.batch_size,
            &self.job.device,
        )?;
        let (val_loss, val_accuracy) = (score.loss, score.accuracy);
        let names = self.job.classes;
        note_dead_classes(&mut self.state, &score.constant_classes, names, reporter);
        let lr = self.lr_at(self.state.iteration);
        if !val_loss.is_finite() && self.job.val.len() > 0 {
            return Err(zoo_net::NetError::Diverged {
                iteration: self.state.iteration,
                loss: val_loss as f32,
                lr,
            }
            .into());
        }
        let elapsed_s = self.elapsed();
        let s = &mut self.state;
        let row = ValidationRow {
            epoch,
            iteration: s.iteration,
            elapsed_s,
            train_loss: s.recent_loss / s.recent_n.max(1) as f64,
            train_accuracy: s.recent_correct as f64 / s.recent_n.max(1) as f64,
            val_loss,
            val_accuracy,
            lr,
        };
        (s.recent_loss, s.recent_correct, s.recent_n) = (0.0, 0, 0);
        reporter.row(&row);
        let better = match &s.best_row {
            None => true,
            Some(b) => {
                val_accuracy > b.val_accuracy
                    || (val_accuracy == b.val_accuracy && val_loss < b.val_loss)
            }
        };
        s.rows.push(row.clone());
        if better {
            s.best_row = Some(row.clone());
            s.since_best = 0;
            self.best = validated;
            self.state.elapsed_s = self.elapsed();
            journal.new_best(&self.best, &self.state)?;
        } else {
            s.since_best += 1;
        }
        let stop = o.patience.is_some_and(|p| self.state.since_best >= p);
        self.state.stopped_early = stop;
        Ok((
            row,
            if stop {
                Flow::StopEarly
            } else {
                Flow::Continue
            },
        ))
    }

    /// The network validation sees: the average of the weights with `--ema`, else the weights.
    fn validated(&self) -> Network<B> {
        match &self.ema {
            Some(ema) => ema.applied_to(self.net()),
            None => self.net().clone(),
        }
    }

    fn checkpoint(&mut self, journal: &mut dyn Journal<B>) -> anyhow::Result<()> {
        self.state.elapsed_s = self.elapsed();
        let optimizer = self.updater.save();
        let optimizer = match &self.ema {
            Some(ema) => optimizer.and_then(|state| ema.pack(state)),
            None => optimizer,
        };
        let optimizer =
            optimizer.map_err(|e| anyhow::anyhow!("cannot save the optimizer state: {e}"))?;
        journal.checkpoint(self.net(), &self.best, &self.state, &optimizer)?;
        Ok(())
    }
}

/// A journal that keeps nothing (library callers that only want the weights).
pub struct NoJournal;

impl<B: AutodiffBackend> Journal<B> for NoJournal {
    fn iteration(&mut self, _: &IterationRow, _: Option<&ValidationRow>) -> std::io::Result<()> {
        Ok(())
    }
    fn new_best(&mut self, _: &Network<B>, _: &LoopState) -> std::io::Result<()> {
        Ok(())
    }
    fn checkpoint(
        &mut self,
        _: &Network<B>,
        _: &Network<B>,
        _: &LoopState,
        _: &OptimizerState,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

use burn::tensor::ElementConversion;
