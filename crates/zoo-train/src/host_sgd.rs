//! SGD with momentum as one fused pass per parameter on the host, for CPU training.
//!
//! burn's `Sgd` runs weight decay, momentum and the update as separate tensor ops, each a full
//! pass over the parameter into a freshly allocated buffer: for AlexNet's 54.5 M trainable
//! parameters that was 0.46 s per step on 2 cores, against 0.014 s for one fused loop over
//! fc6. On CPU the parameters are updated in place (no copies) and the loop runs on all cores. Same update rule (PyTorch's): `v = m*v + g + wd*p; p -= lr*v`. On a GPU backend burn's
//! own optimizers are the right choice (no host round trip).

use std::collections::HashMap;

use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use rayon::prelude::*;
use zoo_net::Network;

/// Elements per parallel task: large enough to amortise scheduling, small enough to split
/// fc-sized layers across cores.
const CHUNK: usize = 1 << 16;

pub struct HostSgd {
    momentum: f32,
    weight_decay: f32,
    velocity: HashMap<usize, Vec<f32>>,
}

impl HostSgd {
    pub fn new(momentum: f64, weight_decay: f64) -> Self {
        Self {
            momentum: momentum as f32,
            weight_decay: weight_decay as f32,
            velocity: HashMap::new(),
        }
    }

    /// The momentum buffers by plan index (for checkpoints), in index order.
    /// Plan index and length of each velocity, by index.
    pub fn velocity_sizes(&self) -> Vec<(usize, usize)> {
        let mut sizes: Vec<_> = self.velocity.iter().map(|(&i, v)| (i, v.len())).collect();
        sizes.sort_by_key(|&(i, _)| i);
        sizes
    }

    /// One parameter's velocity (empty for none).
    pub fn velocity_of(&self, index: usize) -> &[f32] {
        self.velocity.get(&index).map_or(&[], Vec::as_slice)
    }

    pub fn set_velocity(&mut self, velocity: Vec<(usize, Vec<f32>)>) {
        self.velocity = velocity.into_iter().collect();
    }

    /// Applies one step to the parameters in `params` (plan indices) with learning rate `lr`,
    /// taking their gradients out of `grads`.
    pub fn step<B: AutodiffBackend>(
        &mut self,
        mut net: Network<B>,
        grads: &mut GradientsParams,
        params: &[usize],
        lr: f64,
    ) -> Network<B> {
        let ids = net.param_ids();
        let lr = lr as f32;
        for &i in params {
            let Some(g) = grads.remove::<B::InnerBackend, 1>(ids[i]) else {
                continue;
            };
            let v = self
                .velocity
                .entry(i)
                .or_insert_with(|| vec![0.0; g.dims()[0]]);
            let (m, wd) = (self.momentum, self.weight_decay);
            net.map_param(i, |p| {
                let p = zoo_net::host::update_values(p.inner(), |p| {
                    zoo_net::host::with_values(&g, |g| {
                        p.par_chunks_mut(CHUNK)
                            .zip(v.par_chunks_mut(CHUNK))
                            .zip(g.par_chunks(CHUNK))
                            .for_each(|((p, v), g)| {
                                for ((pk, vk), gk) in p.iter_mut().zip(v.iter_mut()).zip(g) {
                                    *vk = m * *vk + gk + wd * *pk;
                                    *pk -= lr * *vk;
                                }
                            })
                    })
                });
                Tensor::from_inner(p)
            });
        }
        net
    }
}
