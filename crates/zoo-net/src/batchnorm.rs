//! Batch-norm layers that train: they normalise with each batch's statistics and the running
//! statistics (the ONNX `mean`/`var` inputs, used at inference) follow them by momentum.
//!
//! The forward pass cannot change parameters, so it records the statistics here and the
//! trainer applies them after the step ([`Network::update_running_statistics`]).

use std::sync::{Arc, Mutex};
use zoo_onnx::ops::Nn;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::network::Network;

/// One batch-norm node's statistics from one forward pass.
#[derive(Clone, Debug)]
pub struct BatchStatistics {
    pub mean_param: usize,
    pub var_param: usize,
    /// ONNX momentum: `running = momentum * running + (1 - momentum) * batch`.
    pub momentum: f32,
    pub mean: Vec<f32>,
    /// Unbiased (`n / (n - 1)`), as PyTorch keeps it.
    pub var: Vec<f32>,
}

pub(crate) type Sink = Arc<Mutex<Vec<BatchStatistics>>>;

pub(crate) struct Recorder<'a> {
    pub(crate) sink: &'a Sink,
    pub(crate) mean_param: usize,
    pub(crate) var_param: usize,
}

fn host<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Vec<f32> {
    t.clone()
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("float statistics")
}

impl Recorder<'_> {
    pub(crate) fn record<B: Backend, const D: usize>(
        &self,
        mean: &Tensor<B, D>,
        var: &Tensor<B, D>,
        per_channel: usize,
        momentum: f32,
    ) {
        self.record_values(host(mean), host(var), per_channel, momentum);
    }

    /// `record` for statistics already on the host (`var` biased, over `per_channel` values).
    pub(crate) fn record_values(
        &self,
        mean: Vec<f32>,
        var: Vec<f32>,
        per_channel: usize,
        momentum: f32,
    ) {
        let n = per_channel as f32;
        let unbias = if per_channel > 1 { n / (n - 1.0) } else { 1.0 };
        let stats = BatchStatistics {
            mean_param: self.mean_param,
            var_param: self.var_param,
            momentum,
            mean,
            var: var.into_iter().map(|v| v * unbias).collect(),
        };
        if let Ok(mut sink) = self.sink.lock() {
            sink.push(stats);
        }
    }
}

impl<B: Backend> Network<B> {
    /// Trainable batch-norm layers use batch statistics from now on (when run with autodiff);
    /// frozen ones keep their running statistics.
    pub fn with_batch_statistics(mut self) -> Self {
        self.batch_stats = Some(Arc::new(Mutex::new(Vec::new())));
        self
    }

    /// The running-statistics parameters that training updates (those of trainable
    /// batch-norm layers).
    pub fn running_statistics_params(&self) -> Vec<usize> {
        let plan = &self.plan;
        plan.graph
            .nodes
            .iter()
            .filter(|n| matches!(n.op, zoo_onnx::Op::Nn(Nn::BatchNorm { .. })))
            .filter_map(|n| {
                let index = |i: usize| n.input(i).and_then(|v| plan.param_index.get(v)).copied();
                let scale = index(1)?;
                self.trainable[scale].then(|| [index(3), index(4)])
            })
            .flatten()
            .flatten()
            .collect()
    }

    /// Folds the statistics recorded since the last call into the running statistics.
    pub fn update_running_statistics(mut self) -> Self {
        let Some(sink) = self.batch_stats.clone() else {
            return self;
        };
        let recorded: Vec<BatchStatistics> = match sink.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(_) => return self,
        };
        if recorded.is_empty() {
            return self;
        }
        for s in recorded {
            for (param, batch) in [(s.mean_param, &s.mean), (s.var_param, &s.var)] {
                let running = self.param_value(param);
                let m = s.momentum;
                let next: Vec<f32> = running
                    .iter()
                    .zip(batch)
                    .map(|(r, b)| m * r + (1.0 - m) * b)
                    .collect();
                self.set_param_values(param, next);
            }
        }
        self
    }
}
