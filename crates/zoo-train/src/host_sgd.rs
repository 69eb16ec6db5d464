//! SGD with momentum as one fused pass per parameter on the host, for CPU training.
//!
//! burn's `Sgd` runs weight decay, momentum and the update as separate tensor ops, each a full
//! pass over the parameter into a freshly allocated buffer: for AlexNet's 54.5 M trainable
//! parameters that was 0.46 s per step on 2 cores, against 0.014 s for one fused loop over
//! fc6. Same update rule (PyTorch's): `v = m*v + g + wd*p; p -= lr*v`. On a GPU backend burn's
//! own optimizers are the right choice (no host round trip).

use std::collections::HashMap;

use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use zoo_net::Network;

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
            let g = g
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .expect("float gradients");
            let mut p = net.param_value(i);
            let v = self.velocity.entry(i).or_insert_with(|| vec![0.0; p.len()]);
            let (m, wd) = (self.momentum, self.weight_decay);
            for ((pk, vk), gk) in p.iter_mut().zip(v.iter_mut()).zip(&g) {
                *vk = m * *vk + gk + wd * *pk;
                *pk -= lr * *vk;
            }
            net.set_param_values(i, p);
        }
        net
    }
}
