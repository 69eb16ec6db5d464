//! The learning-rate finder (`zoo lr-find`, `zoo finetune --lr auto`), as fastai documents its
//! `lr_find`: a short run whose rate grows exponentially from `start` to `end`, one mini-batch
//! per rate, stopped once the loss clearly diverges; the smoothed loss against the rate, and a
//! suggested rate by a named rule. It trains a copy of the network: the model and any run are
//! left untouched.

use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ElementConversion;
use serde::Serialize;
use zoo_net::{FeatureCut, Network};

use crate::losses::training_loss;
use crate::options::FinetuneOptions;
use crate::trainer::Inputs;

/// The sweep: `steps` rates from `start` to `end`, evenly spaced in log scale (fastai's
/// defaults).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sweep {
    pub start: f64,
    pub end: f64,
    pub steps: usize,
}

impl Default for Sweep {
    fn default() -> Self {
        Self {
            start: 1e-7,
            end: 10.0,
            steps: 100,
        }
    }
}

/// Smoothing of the recorded loss (an exponential moving average, debiased).
const SMOOTHING: f64 = 0.98;
/// The sweep stops when the smoothed loss exceeds the lowest one by this factor.
const DIVERGED: f64 = 4.0;

/// A rule's suggested rate.
#[derive(Clone, Debug, Serialize)]
pub struct Suggestion {
    /// `valley`, `steep` or `minimum/10`.
    pub rule: String,
    pub lr: f64,
    /// The smoothed loss at that rate.
    pub loss: f64,
}

/// The sweep's record and its suggestions; `lr` is the `valley` rule's (fastai's default).
#[derive(Clone, Debug, Serialize)]
pub struct LrFind {
    pub sweep: Sweep,
    pub lrs: Vec<f64>,
    pub losses: Vec<f64>,
    pub smoothed: Vec<f64>,
    pub suggestions: Vec<Suggestion>,
    pub lr: f64,
    pub rule: String,
    /// Why the sweep ended before its last rate, when it did.
    pub stopped: Option<String>,
}

impl Sweep {
    /// The rate of step `k` (from 0).
    pub fn lr(&self, k: usize) -> f64 {
        let span = (self.steps.max(2) - 1) as f64;
        self.start * (self.end / self.start).powf(k as f64 / span)
    }

    pub fn check(&self) -> Result<(), String> {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        if !(ok(self.start) && ok(self.end) && self.start < self.end && self.steps >= 10) {
            return Err(format!(
                "a learning-rate sweep needs 0 < start < end and 10 steps or more (got {} to {} in {})",
                self.start, self.end, self.steps
            ));
        }
        Ok(())
    }
}

/// What a sweep trains: a copy of the network, its inputs and how they are split.
pub struct SweepJob<'a, B: AutodiffBackend> {
    pub net: Network<B>,
    pub cut: Option<&'a FeatureCut>,
    pub train: &'a Inputs,
    pub head_params: &'a [usize],
    pub options: &'a FinetuneOptions,
    pub host_optimizer: bool,
    pub device: B::Device,
}

/// Runs the sweep (shuffled batches, epoch after epoch as needed) and suggests a rate.
pub fn run<B: AutodiffBackend>(job: SweepJob<'_, B>, sweep: Sweep) -> anyhow::Result<LrFind> {
    sweep.check().map_err(anyhow::Error::msg)?;
    let o = job.options;
    let mut net = job.net;
    let mut updater = crate::updater::for_options(o, &net, job.head_params, job.host_optimizer);
    let n = job.train.len();
    anyhow::ensure!(n > 0, "no training images to sweep the learning rate on");
    let per_epoch = n.div_ceil(o.batch_size);
    let (mut lrs, mut losses, mut smoothed) = (Vec::new(), Vec::new(), Vec::new());
    let mut stopped = None;
    let mut order = Vec::new();
    for k in 0..sweep.steps {
        let (epoch, b) = (k / per_epoch, k % per_epoch);
        // Shuffled once per epoch, as the training loop does.
        if b == 0 {
            order = crate::trainer::shuffled(n, o.seed, epoch + 1);
        }
        let picked = &order[b * o.batch_size..((b + 1) * o.batch_size).min(n)];
        B::seed(&job.device, o.seed.wrapping_add(k as u64));
        let labels: Vec<usize> = picked
            .iter()
            .map(|&i| job.train.tensors.labels[i])
            .collect();
        let logits = job.train.batch(&net, job.cut, picked, None, &job.device)?;
        let loss = training_loss(o, logits, &labels, &job.device);
        let value: f32 = loss.clone().into_scalar().elem();
        let lr = sweep.lr(k);
        lrs.push(lr);
        losses.push(value as f64);
        smoothed.push(debiased_average(&losses));
        let best = smoothed.iter().copied().fold(f64::INFINITY, f64::min);
        let last = *smoothed.last().expect("one pushed");
        if !last.is_finite() || last > DIVERGED * best {
            stopped = Some(format!("the loss diverged at lr {lr:.3e}"));
            break;
        }
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = updater.update(net, grads, lr).update_running_statistics();
    }
    let suggestions = suggest(&lrs, &smoothed);
    let chosen = suggestions
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the sweep ended before any rate could be judged"))?;
    Ok(LrFind {
        sweep,
        lrs,
        losses,
        smoothed,
        lr: chosen.lr,
        rule: chosen.rule.clone(),
        suggestions,
        stopped,
    })
}

/// The exponential moving average of `losses` up to its last value, debiased for its start.
fn debiased_average(losses: &[f64]) -> f64 {
    let mut average = 0.0;
    for &l in losses {
        average = SMOOTHING * average + (1.0 - SMOOTHING) * l;
    }
    average / (1.0 - SMOOTHING.powi(losses.len() as i32))
}

/// `valley` (first: the default), `steep` and `minimum/10`, judged on the smoothed curve without
/// its last points (where it turns up).
pub fn suggest(lrs: &[f64], smoothed: &[f64]) -> Vec<Suggestion> {
    let n = smoothed
        .len()
        .saturating_sub(if smoothed.len() > 20 { 5 } else { 0 });
    if n < 3 {
        return Vec::new();
    }
    let (lrs, loss) = (&lrs[..n], &smoothed[..n]);
    let at = |rule: &str, i: usize, lr: f64| Suggestion {
        rule: rule.into(),
        lr,
        loss: loss[i],
    };
    let minimum = (0..n)
        .min_by(|&a, &b| loss[a].total_cmp(&loss[b]))
        .expect("n >= 3");
    // Steepest descent: the most negative slope of the loss against log(lr).
    let steep = (1..n)
        .min_by(|&a, &b| {
            let slope = |i: usize| (loss[i] - loss[i - 1]) / (lrs[i] / lrs[i - 1]).ln();
            slope(a).total_cmp(&slope(b))
        })
        .expect("n >= 3");
    let valley = valley(loss);
    // Marked on the curve at the swept rate nearest a tenth of the minimum's.
    let tenth = lrs[minimum] / 10.0;
    let near_tenth = (0..n)
        .min_by(|&a, &b| {
            (lrs[a] / tenth)
                .ln()
                .abs()
                .total_cmp(&(lrs[b] / tenth).ln().abs())
        })
        .expect("n >= 3");
    vec![
        at("valley", valley, lrs[valley]),
        at("steep", steep, lrs[steep]),
        at("minimum/10", near_tenth, tenth),
    ]
}

/// The valley rule: the longest run of falling losses (the longest decreasing subsequence, taken
/// as the points just before where it ends), and the point half way along it, where the fall is
/// steady and still well before the minimum.
fn valley(loss: &[f64]) -> usize {
    let n = loss.len();
    // longest[i]: the length of the longest decreasing subsequence ending at i.
    let mut longest = vec![1usize; n];
    let mut end = 0;
    for i in 1..n {
        for j in 0..i {
            if loss[i] < loss[j] {
                longest[i] = longest[i].max(longest[j] + 1);
            }
        }
        if longest[i] > longest[end] {
            end = i;
        }
    }
    let start = end + 1 - longest[end];
    (start + (end - start) / 2).min(n - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loss that is flat, falls steadily between 1e-4 and 1e-1 (in log lr), then blows up:
    /// every rule lands inside the fall, the valley in its middle part.
    #[test]
    fn the_rules_pick_rates_inside_the_fall_of_the_loss() {
        let sweep = Sweep::default();
        let lrs: Vec<f64> = (0..100).map(|k| sweep.lr(k)).collect();
        assert!((lrs[0] - 1e-7).abs() < 1e-20 && (lrs[99] - 10.0).abs() < 1e-9);
        let loss: Vec<f64> = lrs
            .iter()
            .map(|&lr| {
                let x = lr.log10();
                match x {
                    x if x < -4.0 => 2.3,
                    x if x < -1.0 => 2.3 - 0.7 * (x + 4.0),
                    x => 0.2 + 3.0 * (x + 1.0).powi(2),
                }
            })
            .collect();
        let s = suggest(&lrs, &loss);
        let rate = |rule: &str| s.iter().find(|x| x.rule == rule).unwrap().lr;
        assert_eq!(s[0].rule, "valley");
        for rule in ["valley", "steep"] {
            let lr = rate(rule);
            assert!((1e-4..=1e-1).contains(&lr), "{rule}: {lr}");
        }
        assert!(
            (1e-3..=3e-2).contains(&rate("valley")),
            "{}",
            rate("valley")
        );
        let min = rate("minimum/10");
        assert!((5e-3..=2e-2).contains(&min), "{min}");
    }

    #[test]
    fn the_average_is_debiased_and_bad_sweeps_are_refused() {
        assert!((debiased_average(&[3.0]) - 3.0).abs() < 1e-12);
        assert!((debiased_average(&[2.0, 2.0, 2.0]) - 2.0).abs() < 1e-12);
        for bad in [(1.0, 0.5, 100), (0.0, 1.0, 100), (1e-7, 10.0, 3)] {
            let s = Sweep {
                start: bad.0,
                end: bad.1,
                steps: bad.2,
            };
            assert!(s.check().is_err(), "{bad:?}");
        }
        assert!(suggest(&[1.0, 2.0], &[1.0, 0.5]).is_empty());
    }
}
