//! Optimisation steps in rate groups: the new head at `lr * head_lr_factor`, the body at `lr`
//! (or, with `--lr-spread S`, its earlier half at `lr / S`: discriminative rates), with
//! SGD-momentum (fused on the host for CPU, burn's on a GPU) or Adam, and the optimizer state as
//! bytes for checkpoints.

use std::borrow::Cow;

use burn::module::ParamId;
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
    /// One step at the body's rate `lr` (each group at its factor of it).
    fn update(&mut self, net: Network<B>, grads: GradientsParams, lr: f64) -> Network<B>;

    /// The state to checkpoint (borrowed where it can be written from where it lies).
    fn save(&self) -> Result<OptimizerState<'_>, String>;

    fn restore(&mut self, bytes: &[u8], device: &B::Device) -> Result<(), String>;
}

/// Parameters (plan indices) that step at one factor of the body's rate.
#[derive(Clone, Debug, PartialEq)]
pub struct RateGroup {
    pub params: Vec<usize>,
    pub factor: f64,
}

/// How many parts the trainable body is cut into for discriminative rates (fastai's default
/// splits: the body's earlier and later layers, then the head).
const BODY_GROUPS: usize = 2;

/// The rate groups of `net` as it trains now: the trainable body's layers in graph order cut
/// into [`BODY_GROUPS`] runs, the first at `1 / spread` of the rate rising geometrically to the
/// last at 1 (one group at 1 when `spread` is 1), then the head (`head`) at `head_factor`.
pub fn rate_groups<B: AutodiffBackend>(
    net: &Network<B>,
    head: &[usize],
    head_factor: f64,
    spread: f64,
) -> Vec<RateGroup> {
    let plan = net.plan();
    let body_layers: Vec<Vec<usize>> = (plan.layers.iter())
        .map(|l| {
            (l.params.iter().copied())
                .filter(|&i| net.is_trainable(i) && !head.contains(&i))
                .collect::<Vec<_>>()
        })
        .filter(|params| !params.is_empty())
        .collect();
    let parts = if spread == 1.0 {
        1
    } else {
        BODY_GROUPS.min(body_layers.len()).max(1)
    };
    let mut groups: Vec<RateGroup> = (0..parts)
        .map(|g| {
            let from = g * body_layers.len() / parts;
            let to = (g + 1) * body_layers.len() / parts;
            let rise = if parts == 1 {
                1.0
            } else {
                g as f64 / (parts - 1) as f64
            };
            RateGroup {
                params: body_layers[from..to].concat(),
                factor: spread.powf(rise - 1.0),
            }
        })
        .collect();
    groups.push(RateGroup {
        params: head.to_vec(),
        factor: head_factor,
    });
    groups
}

/// The updater for `options` over the layers `net` trains now, in their rate groups
/// ([`rate_groups`]: the body spread by `--lr-spread`, `head` at `--head-lr-factor`).
pub fn for_options<B: AutodiffBackend>(
    o: &FinetuneOptions,
    net: &Network<B>,
    head: &[usize],
    host_optimizer: bool,
) -> Box<dyn Updater<B>> {
    let groups = rate_groups(net, head, o.head_lr_factor, o.lr_spread());
    let decay = (o.weight_decay > 0.0).then(|| WeightDecayConfig::new(o.weight_decay as f32));
    let ids = net.param_ids();
    let with_ids = |groups: Vec<RateGroup>| -> Vec<(RateGroup, Vec<ParamId>)> {
        (groups.into_iter())
            .map(|g| {
                let group_ids = g.params.iter().map(|&i| ids[i]).collect();
                (g, group_ids)
            })
            .collect()
    };
    match o.optimizer {
        OptimizerKind::Sgdm if host_optimizer => Box::new(HostSgdUpdater {
            sgd: crate::host_sgd::HostSgd::new(o.momentum, o.weight_decay),
            groups,
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
            let groups = with_ids(groups);
            let optimizers = groups.iter().map(|_| Some(config.init())).collect();
            Box::new(BurnUpdater { optimizers, groups })
        }
        OptimizerKind::Adam => {
            let config = AdamConfig::new().with_weight_decay(decay);
            let groups = with_ids(groups);
            let optimizers = groups.iter().map(|_| Some(config.init())).collect();
            Box::new(BurnUpdater { optimizers, groups })
        }
    }
}

/// burn's optimizers, one instance per rate group (their state is per parameter, so each sees
/// only its own). `Option` only so a restore can move them.
struct BurnUpdater<O> {
    optimizers: Vec<Option<O>>,
    groups: Vec<(RateGroup, Vec<ParamId>)>,
}

type Bytes = BinBytesRecorder<FullPrecisionSettings>;

fn record_bytes<B: AutodiffBackend, R: burn::record::Record<B>>(r: R) -> Result<Vec<u8>, String> {
    Recorder::<B>::record(&Bytes::default(), r, ()).map_err(|e| e.to_string())
}

impl<B: AutodiffBackend, O: Optimizer<Network<B>, B>> Updater<B> for BurnUpdater<O> {
    fn update(&mut self, mut net: Network<B>, mut grads: GradientsParams, lr: f64) -> Network<B> {
        for (optimizer, (group, ids)) in self.optimizers.iter_mut().zip(&self.groups) {
            let mut own = GradientsParams::new();
            for &id in ids {
                if let Some(g) = grads.remove::<B::InnerBackend, 1>(id) {
                    own.register(id, g);
                }
            }
            let optimizer = optimizer.as_mut().expect("optimizer present");
            net = optimizer.step(lr * group.factor, net, own);
        }
        net
    }

    /// One length-prefixed section per group, in group order (the head last).
    fn save(&self) -> Result<OptimizerState<'_>, String> {
        let mut out = Vec::new();
        for optimizer in &self.optimizers {
            let record = optimizer.as_ref().expect("optimizer present").to_record();
            let part = record_bytes::<B, _>(record)?;
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(&part);
        }
        Ok(OptimizerState::Bytes(out))
    }

    fn restore(&mut self, bytes: &[u8], device: &B::Device) -> Result<(), String> {
        let mut reader = Reader(bytes);
        let mut records = Vec::new();
        for _ in &self.optimizers {
            let part = reader.section()?.to_vec();
            records.push(
                Recorder::<B>::load(&Bytes::default(), part, device).map_err(|e| e.to_string())?,
            );
        }
        for (optimizer, record) in self.optimizers.iter_mut().zip(records) {
            *optimizer = optimizer.take().map(|o| o.load_record(record));
        }
        Ok(())
    }
}

/// The fused host SGD-momentum (CPU).
struct HostSgdUpdater {
    sgd: crate::host_sgd::HostSgd,
    groups: Vec<RateGroup>,
}

impl<B: AutodiffBackend> Updater<B> for HostSgdUpdater {
    fn update(&mut self, mut net: Network<B>, mut grads: GradientsParams, lr: f64) -> Network<B> {
        for group in &self.groups {
            net = self
                .sgd
                .step(net, &mut grads, &group.params, lr * group.factor);
        }
        net
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
