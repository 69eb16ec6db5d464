//! `--ema D`: an exponential moving average of the trainable weights, `e = D e + (1 - D) w`
//! after every step (timm's `ModelEma`), started from the weights before the first step.
//! Validation, the best model and the exported weights use the average; training steps the
//! weights themselves. The average is checkpointed with the optimizer state (the same atomic
//! file), so `--resume` continues it exactly.

use std::borrow::Cow;

use burn::tensor::backend::Backend;
use zoo_net::Network;

use crate::checkpoint::{OptimizerState, Reader, WeightSource};

/// The average of each trainable parameter, by plan index.
pub struct Ema {
    decay: f32,
    values: Vec<(usize, Vec<f32>)>,
}

impl Ema {
    /// The average of `params` of `net`, starting at their values now.
    pub fn new<B: Backend>(decay: f64, net: &Network<B>, params: &[usize]) -> Self {
        let values = params.iter().map(|&i| (i, net.param_value(i))).collect();
        Self {
            decay: decay as f32,
            values,
        }
    }

    /// One step of the recurrence with `net`'s weights now (parameters frozen for now, as a
    /// two-stage run's body in its head stage, do not move and are skipped).
    pub fn update<B: Backend>(&mut self, net: &Network<B>) {
        let d = self.decay;
        for (index, average) in &mut self.values {
            if !net.is_trainable(*index) {
                continue;
            }
            let now = net.param_value(*index);
            for (e, w) in average.iter_mut().zip(now) {
                *e = d * *e + (1.0 - d) * w;
            }
        }
    }

    /// `net` with the averaged weights in place of its own.
    pub fn applied_to<B: Backend>(&self, net: &Network<B>) -> Network<B> {
        let mut averaged = net.clone();
        for (index, values) in &self.values {
            averaged.set_param_values(*index, values.clone());
        }
        averaged
    }

    pub fn values(&self) -> &[(usize, Vec<f32>)] {
        &self.values
    }
}

impl Ema {
    /// The optimizer's checkpoint state with the average after it: the optimizer's section,
    /// then the averaged weights.
    pub fn pack<'a>(&self, optimizer: OptimizerState) -> Result<OptimizerState<'a>, String> {
        let mut inner = Vec::new();
        match optimizer {
            OptimizerState::Bytes(bytes) => inner = bytes,
            OptimizerState::Weights(set) => {
                crate::checkpoint::write_weights(&mut inner, &set).map_err(|e| e.to_string())?
            }
        }
        let mut out = (inner.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&inner);
        let averaged = WeightSource {
            params: (self.values.iter()).map(|(i, v)| (*i, v.len())).collect(),
            values: Box::new(|index| {
                let found = self.values.iter().find(|(i, _)| *i == index);
                Cow::Borrowed(found.map_or(&[][..], |(_, v)| v.as_slice()))
            }),
        };
        crate::checkpoint::write_weights(&mut out, &averaged).map_err(|e| e.to_string())?;
        Ok(OptimizerState::Bytes(out))
    }

    /// Takes the average back from what [`Ema::pack`] wrote; returns the optimizer's part.
    pub fn unpack<'a>(&mut self, bytes: &'a [u8]) -> Result<&'a [u8], String> {
        let mut reader = Reader(bytes);
        let inner = reader.section()?;
        let averaged = reader.weights()?;
        let shape = |w: &[(usize, Vec<f32>)]| -> Vec<(usize, usize)> {
            w.iter().map(|(i, v)| (*i, v.len())).collect()
        };
        if shape(&averaged) != shape(&self.values) || !reader.0.is_empty() {
            return Err("its averaged weights (--ema) do not fit the network's".into());
        }
        self.values = averaged;
        Ok(inner)
    }
}
