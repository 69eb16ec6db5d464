//! The model phase: import the base model, replace the head, freeze, and snapshot the frozen
//! weights for the freeze audit.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use burn::tensor::backend::AutodiffBackend;
use prost::Message;
use zoo_net::{HeadChange, Network, ParamRole};
use zoo_onnx::pb::ModelProto;

use super::config::BaseSource;
use super::{context, Job, TrainProfile};
use crate::options::{FinetuneOptions, FreezeChoice};

/// What a run starts from.
#[derive(Clone, Debug)]
pub enum BaseModel {
    /// An ONNX file (a fetched zoo model, a local file, a run's weights).
    File(PathBuf),
    /// An ONNX file the caller has already parsed (to read its profile): the run takes the
    /// parsed model instead of reading a 244 MB AlexNet a second time ([`BaseModel::parsed`]).
    Parsed {
        path: PathBuf,
        model: Arc<Mutex<Option<zoo_onnx::OnnxModel>>>,
    },
    /// A network `zoo train` built from scratch.
    Built {
        arch: crate::arch::ArchSpec,
        model: Box<ModelProto>,
    },
}

impl BaseModel {
    /// A file and its parsed model, handed to the run (which parses the file again only if it
    /// runs twice).
    pub fn parsed(path: PathBuf, model: zoo_onnx::OnnxModel) -> Self {
        BaseModel::Parsed {
            path,
            model: Arc::new(Mutex::new(Some(model))),
        }
    }

    /// sha256 of the ONNX bytes, and the parsed model.
    pub(super) fn load(&self) -> anyhow::Result<(String, zoo_onnx::OnnxModel)> {
        match self {
            BaseModel::File(path) | BaseModel::Parsed { path, .. } => {
                let sha = context(
                    zoo_fetch::sha256_file(path),
                    &format!("cannot read {}", path.display()),
                )?;
                let taken = match self {
                    BaseModel::Parsed { model, .. } => model.lock().ok().and_then(|mut m| m.take()),
                    _ => None,
                };
                let model = match taken {
                    Some(model) => model,
                    None => zoo_onnx::OnnxModel::load(path)?,
                };
                Ok((sha, model))
            }
            BaseModel::Built { model, .. } => {
                use sha2::Digest;
                let sha = hex::encode(sha2::Sha256::digest(model.encode_to_vec()));
                Ok((sha, zoo_onnx::OnnxModel::from_proto((**model).clone())?))
            }
        }
    }

    pub(super) fn source(&self) -> BaseSource {
        match self {
            BaseModel::File(path) | BaseModel::Parsed { path, .. } => {
                BaseSource::File(path.clone())
            }
            BaseModel::Built { arch, .. } => BaseSource::Arch(arch.clone()),
        }
    }

    /// For config.json: the file, or the architecture.
    pub(super) fn describe(&self) -> String {
        match self {
            BaseModel::File(path) | BaseModel::Parsed { path, .. } => path.display().to_string(),
            BaseModel::Built { arch, .. } => format!("{} (built from scratch)", arch.label()),
        }
    }
}

/// The network phase's result.
pub(super) struct Model<B: AutodiffBackend> {
    pub(super) net: Network<B>,
    pub(super) base_sha256: String,
    pub(super) head: HeadChange,
    pub(super) frozen: Vec<String>,
    pub(super) frozen_idx: Vec<usize>,
    /// With `--fine-tune`: the layers frozen only during the head-only epochs (the network
    /// starts with them frozen; `frozen*` and the counts describe the unfrozen stage).
    pub(super) head_stage_frozen: Vec<String>,
    pub(super) snapshot: Vec<Vec<f32>>,
    pub(super) head_params: Vec<usize>,
    pub(super) trainable_params: usize,
    pub(super) frozen_params: usize,
}

impl<B: AutodiffBackend> Model<B> {
    /// The head-only stage of a two-stage run (`--fine-tune`).
    pub(super) fn head_stage(
        &self,
        options: &FinetuneOptions,
    ) -> Option<crate::trainer::HeadStage> {
        (options.fine_tune).map(|epochs| crate::trainer::HeadStage {
            epochs,
            frozen: self.head_stage_frozen.clone(),
        })
    }
}

impl Job<'_> {
    /// Refuses, before training, a model whose weights, gradients and optimizer state alone
    /// exceed the memory this machine has available (streaming cannot help there; the memory
    /// budget governs the data, not the model).
    pub(super) fn check_model_fits<B: AutodiffBackend>(
        &self,
        model: &Model<B>,
    ) -> anyhow::Result<()> {
        let needed = crate::memory::model_bytes(model.trainable_params, model.frozen_params);
        crate::memory::check_model_fits(needed, crate::memory::available_bytes()).map_err(|why| {
            anyhow::anyhow!(
                "training {} {why} ({} trainable and {} frozen parameters): freeze more layers (--freeze-until a later layer), or free memory",
                self.profile.name,
                model.trainable_params,
                model.frozen_params,
            )
        })
    }

    /// Import, new head, freeze plan, and the snapshot the freeze audit compares against.
    pub(super) fn build_model<B: AutodiffBackend>(
        &self,
        options: &mut FinetuneOptions,
        (train_images, images_chw): (usize, [usize; 3]),
        device: &B::Device,
    ) -> anyhow::Result<Model<B>> {
        let profile = self.profile;
        let (base_sha256, mut onnx) = self.base.load()?;
        let chw = onnx.graph.input_chw();
        if chw != images_chw {
            anyhow::bail!(
                "the preprocessing makes {:?} images but the model takes {:?}; fix the card or use --like",
                images_chw,
                chw
            );
        }
        let head = zoo_net::replace_head(&mut onnx, &profile.head, options.classes, options.seed)?;
        if let Some(note) = head.note() {
            self.reporter.info(&note);
        }
        let net = Network::<B>::from_model(onnx, device);
        self.apply_recipe(options, train_images, &net)?;
        let frozen = frozen_layers(&net, options, profile)?;
        let net = net
            .set_layers_trainable(&frozen, false)?
            .with_batch_statistics();
        let plan = net.plan();
        // Frozen: every parameter of a frozen layer, and every buffer except the running
        // statistics of batch-norm layers that train.
        let running = net.running_statistics_params();
        let frozen_idx: Vec<usize> = (0..plan.params.len())
            .filter(|&i| {
                frozen.contains(&plan.params[i].layer)
                    || (plan.params[i].role == ParamRole::Buffer && !running.contains(&i))
            })
            .collect();
        let snapshot: Vec<Vec<f32>> = frozen_idx.iter().map(|&i| net.param_value(i)).collect();
        let head_params: Vec<usize> = plan
            .layer(&profile.head)
            .map(|l| l.params.clone())
            .unwrap_or_default();
        let trainable_params: usize = (0..plan.params.len())
            .filter(|&i| net.is_trainable(i))
            .map(|i| plan.params[i].numel())
            .sum();
        let frozen_params: usize = frozen_idx.iter().map(|&i| plan.params[i].numel()).sum();
        self.reporter.info(&format!(
            "model: {} -> {} classes at `{}`; frozen: {}; trainable parameters: {}",
            profile.name,
            options.classes,
            profile.head,
            zoo_cards::describe_layers(&frozen),
            trainable_params
        ));
        let head_stage_frozen = match options.fine_tune {
            Some(epochs) => {
                let layers = trainable_body_layers(&net, &profile.head);
                self.reporter.info(&format!(
                    "fine-tune: the head alone for {epochs} epoch(s), then {} more unfreeze at rates from --lr/{} to --lr",
                    zoo_cards::describe_layers(&layers),
                    options.lr_spread()
                ));
                layers
            }
            None => Vec::new(),
        };
        let net = net.set_layers_trainable(&head_stage_frozen, false)?;
        Ok(Model {
            net,
            head_stage_frozen,
            base_sha256,
            head,
            frozen,
            frozen_idx,
            snapshot,
            head_params,
            trainable_params,
            frozen_params,
        })
    }
}

impl Job<'_> {
    /// A new run's recipe ([`crate::recipe`]), chosen by its training images and the model's
    /// parameters, fills the options the user left out; said on one line. A resumed run's
    /// options are final (its config.json holds what the recipe chose).
    fn apply_recipe<B: AutodiffBackend>(
        &self,
        options: &mut FinetuneOptions,
        train_images: usize,
        net: &Network<B>,
    ) -> anyhow::Result<()> {
        let Some(asked) = options.recipe.filter(|_| self.resume.is_none()) else {
            return Ok(());
        };
        let plan = net.plan();
        let params: usize = (plan.params.iter())
            .filter(|p| p.role == ParamRole::Learnable)
            .map(|p| p.numel())
            .sum();
        let (recipe, why) = asked.choose(train_images, params);
        recipe.apply(options);
        self.reporter.info(&format!(
            "recipe: {} ({why}): {}",
            recipe.name(),
            recipe.describe(options)
        ));
        options.validate().map_err(anyhow::Error::msg)
    }
}

/// The layers to freeze: `--unfreeze-all`, `--freeze`, `--freeze-until`, else the profile's.
fn frozen_layers<B: AutodiffBackend>(
    net: &Network<B>,
    options: &FinetuneOptions,
    profile: &TrainProfile,
) -> anyhow::Result<Vec<String>> {
    let layer_names: Vec<String> = net.plan().layers.iter().map(|l| l.name.clone()).collect();
    let frozen: Vec<String> = match &options.freeze {
        FreezeChoice::Nothing => Vec::new(),
        FreezeChoice::Layers(list) => list.clone(),
        FreezeChoice::Until(until) => {
            // A layer, or the last layer of a module (`blocks.9`).
            let pos = layer_names
                .iter()
                .rposition(|l| zoo_cards::layer_matches(until, l));
            let pos = pos.ok_or_else(|| {
                anyhow::anyhow!(
                    "--freeze-until: no layer `{until}`; layers: {}",
                    layer_names.join(", ")
                )
            })?;
            layer_names[..=pos].to_vec()
        }
        // Two stages unfreeze the body after the head's epochs: the card's plan is stage one's.
        FreezeChoice::Card if options.fine_tune.is_some() => Vec::new(),
        FreezeChoice::Card => profile.freeze.clone(),
    };
    if frozen.contains(&profile.head) {
        anyhow::bail!(
            "`{}` is the head: it is replaced and always trains; do not freeze it",
            profile.head
        );
    }
    Ok(frozen)
}

/// The layers with trainable parameters other than the head, in graph order.
fn trainable_body_layers<B: AutodiffBackend>(net: &Network<B>, head: &str) -> Vec<String> {
    (net.plan().layers.iter())
        .filter(|l| l.name != head && l.params.iter().any(|&i| net.is_trainable(i)))
        .map(|l| l.name.clone())
        .collect()
}

/// The freeze audit: every frozen parameter of every network equals its snapshot bit for bit.
pub fn frozen_unchanged<B: burn::tensor::backend::Backend>(
    nets: &[&Network<B>],
    frozen: &[usize],
    snapshot: &[Vec<f32>],
) -> bool {
    nets.iter().all(|net| {
        frozen.iter().zip(snapshot).all(|(&i, before)| {
            net.param_value(i)
                .iter()
                .map(|v| v.to_bits())
                .eq(before.iter().map(|v| v.to_bits()))
        })
    })
}
