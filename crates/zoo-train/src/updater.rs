//! Optimisation steps: the new head at `lr * head_lr_factor`, the body at `lr`, with SGD-momentum
//! (fused on the host for CPU, burn's on a GPU) or Adam, and the optimizer state as bytes for
//! checkpoints.

use std::borrow::Cow;

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer, SgdConfig};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use zoo_net::Network;

use crate::checkpoint::{OptimizerState, Reader, WeightSource};
use crate::options::{FinetuneOptions, OptimizerKind};

/// Applies one optimisation step and saves or restores the optimizer's state.
pub trait Updater<B: AutodiffBackend> {
    fn update(
        &mut self,
        net: Network<B>,
        grads: GradientsParams,
        lr: f64,
        head_factor: f64,
    ) -> Network<B>;

    /// The state to checkpoint (borrowed where it can be written from where it lies).
    fn save(&self) -> Result<OptimizerState<'_>, String>;

    fn restore(&mut self, bytes: &[u8], device: &B::Device) -> Result<(), String>;
}

/// The updater for `options`: `head` are the new head's parameters (plan indices).
pub fn for_options<B: AutodiffBackend>(
    o: &FinetuneOptions,
    net: &Network<B>,
    head: &[usize],
    host_optimizer: bool,
) -> Box<dyn Updater<B>> {
    let head_ids: Vec<_> = {
        let ids = net.param_ids();
        head.iter().map(|&i| ids[i]).collect()
    };
    let decay = (o.weight_decay > 0.0).then(|| WeightDecayConfig::new(o.weight_decay as f32));
    match o.optimizer {
        OptimizerKind::Sgdm if host_optimizer => Box::new(HostSgdUpdater {
            sgd: crate::host_sgd::HostSgd::new(o.momentum, o.weight_decay),
            head: head.to_vec(),
            body: (0..net.plan().params.len())
                .filter(|i| net.is_trainable(*i) && !head.contains(i))
                .collect(),
        }),
        OptimizerKind::Sgdm => {
            // PyTorch's rule, as the host loop: no dampening, L2 weight decay.
            let config = SgdConfig::new()
                .with_momentum(Some(
                    MomentumConfig::new()
                        .with_momentum(o.momentum)
                        .with_dampening(0.0),
                ))
                .with_weight_decay(decay);
            Box::new(BurnUpdater {
                body: Some(config.init()),
                head: Some(config.init()),
                head_ids,
            })
        }
        OptimizerKind::Adam => {
            let config = AdamConfig::new().with_weight_decay(decay);
            Box::new(BurnUpdater {
                body: Some(config.init()),
                head: Some(config.init()),
                head_ids,
            })
        }
    }
}

/// burn's optimizers, one instance for the body and one for the head (their state is per
/// parameter, so each sees only its own). `Option` only so a restore can move them.
struct BurnUpdater<O1, O2> {
    body: Option<O1>,
    head: Option<O2>,
    head_ids: Vec<burn::module::ParamId>,
}

type Bytes = BinBytesRecorder<FullPrecisionSettings>;

fn record_bytes<B: AutodiffBackend, R: burn::record::Record<B>>(r: R) -> Result<Vec<u8>, String> {
    Recorder::<B>::record(&Bytes::default(), r, ()).map_err(|e| e.to_string())
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
        let body = self.body.as_mut().expect("optimizer present");
        let net = body.step(lr, net, grads);
        let head = self.head.as_mut().expect("optimizer present");
        head.step(lr * head_factor, net, head_grads)
    }

    fn save(&self) -> Result<OptimizerState<'_>, String> {
        let body =
            record_bytes::<B, _>(self.body.as_ref().expect("optimizer present").to_record())?;
        let head =
            record_bytes::<B, _>(self.head.as_ref().expect("optimizer present").to_record())?;
        let mut out = Vec::new();
        for part in [body, head] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(&part);
        }
        Ok(OptimizerState::Bytes(out))
    }

    fn restore(&mut self, bytes: &[u8], device: &B::Device) -> Result<(), String> {
        let mut reader = Reader(bytes);
        let body = reader.section()?.to_vec();
        let head = reader.section()?.to_vec();
        let body =
            Recorder::<B>::load(&Bytes::default(), body, device).map_err(|e| e.to_string())?;
        let head =
            Recorder::<B>::load(&Bytes::default(), head, device).map_err(|e| e.to_string())?;
        self.body = self.body.take().map(|o| o.load_record(body));
        self.head = self.head.take().map(|o| o.load_record(head));
        Ok(())
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

    fn save(&self) -> Result<OptimizerState<'_>, String> {
        Ok(OptimizerState::Weights(WeightSource {
            params: self.sgd.velocity_sizes(),
            values: Box::new(|index| Cow::Borrowed(self.sgd.velocity_of(index))),
        }))
    }

    fn restore(&mut self, bytes: &[u8], _device: &B::Device) -> Result<(), String> {
        let velocity = Reader(bytes).weights()?;
        self.sgd.set_velocity(velocity);
        Ok(())
    }
}
