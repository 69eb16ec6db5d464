//! Two-stage runs (`--fine-tune`): the head-only stage, where a resumed run stands, and what
//! `--ema` averages.

use burn::tensor::backend::AutodiffBackend;
use zoo_net::Network;

/// The head-only epochs of a two-stage run and the layers frozen only during them.
#[derive(Clone, Debug)]
pub struct HeadStage {
    pub epochs: usize,
    pub frozen: Vec<String>,
}

/// The parameters `--ema` averages: those that train now, and those of `later` layers (the
/// body a two-stage run unfreezes).
pub(crate) fn averaged_params<B: AutodiffBackend>(
    net: &Network<B>,
    later: &[String],
) -> Vec<usize> {
    let plan = net.plan();
    (0..plan.params.len())
        .filter(|&i| {
            let p = &plan.params[i];
            net.is_trainable(i)
                || (p.role == zoo_net::ParamRole::Learnable && later.contains(&p.layer))
        })
        .collect()
}

/// The stage a run stands in when it resumes at `iteration`: after its head-only epochs the
/// body is unfrozen (a checkpoint at the switch itself holds the head stage's optimizer state;
/// the loop switches next). Returns the head stage still to come, if any.
pub(crate) fn stage_at<B: AutodiffBackend>(
    net: Network<B>,
    stage: Option<HeadStage>,
    resumed_at: Option<usize>,
    per_epoch: usize,
) -> anyhow::Result<(Network<B>, Option<HeadStage>)> {
    match (stage, resumed_at) {
        (Some(stage), Some(iteration)) if iteration > stage.epochs * per_epoch => {
            Ok((net.set_layers_trainable(&stage.frozen, true)?, None))
        }
        (stage, _) => Ok((net, stage)),
    }
}
