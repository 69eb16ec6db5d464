//! `zoo finetune`: data → split → import → new head → freeze → (feature cache) → train →
//! run directory with weights, logs and a freeze audit.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use prost::Message;
use serde::Serialize;
use zoo_cards::Preprocessing;
use zoo_data::{split, Skipped, SplitPlan};
use zoo_net::{HeadChange, Network, ParamRole};
use zoo_onnx::pb::ModelProto;

use crate::device::Device;
use crate::options::FinetuneOptions;
use crate::rundir;
use crate::trainer::{
    cache_features, evaluate, train, Inputs, LoopInputs, Reporter, ValidationRow,
};

/// The CPU training backend: burn's flex with autodiff.
pub type CpuTrain = Autodiff<Flex>;

/// How the base model is fed and finetuned (from its card, its metadata, or defaults).
#[derive(Clone, Debug, Serialize)]
pub struct TrainProfile {
    /// Card name or file name, used for the run directory's name.
    pub name: String,
    pub card: Option<String>,
    pub preprocessing: Preprocessing,
    pub freeze: Vec<String>,
    pub head: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct FreezeAudit {
    pub frozen_layers: Vec<String>,
    pub frozen_params: usize,
    pub trainable_params: usize,
    /// Every frozen tensor is bit-identical to the imported one, in the best and last weights.
    pub frozen_params_unchanged: bool,
    /// Batch-norm layers always normalise with their running statistics in zoo's executor.
    pub frozen_batchnorm_running_stats: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub run_dir: PathBuf,
    pub model: String,
    pub classes: Vec<String>,
    pub train_images: usize,
    pub val_images: usize,
    /// Before training: the imported network with its new, untrained head.
    pub initial_val_accuracy: f64,
    pub best_val_accuracy: f64,
    pub best_val_loss: f64,
    pub best_epoch: usize,
    pub best_iteration: usize,
    pub final_val_accuracy: f64,
    pub epochs_run: usize,
    pub stopped_early: bool,
    pub interrupted: bool,
    /// Training images processed per second over the whole run (caching included).
    pub images_per_s: f64,
    /// Wall time of each epoch; the first includes decoding-free feature caching.
    pub epoch_seconds: Vec<f64>,
    pub data_load_s: f64,
    pub wall_time_s: f64,
    pub feature_cache: Option<String>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
    pub head: HeadChange,
    #[serde(flatten)]
    pub freeze_audit: FreezeAudit,
}

/// How a run splits its data: `--train-per-class`, else `--val-per-class`, else `--val-split`,
/// else the manifest's split column, else 20 % per class. `zoo export` rebuilds a run's
/// validation set with it.
pub fn split_plan(
    train_per_class: Option<usize>,
    val_per_class: Option<usize>,
    val_split: Option<f64>,
    dataset: &zoo_data::Dataset,
) -> SplitPlan {
    match (train_per_class, val_per_class, val_split) {
        (Some(k), _, _) => SplitPlan::TrainPerClass(k),
        (None, Some(k), _) => SplitPlan::PerClass(k),
        (None, None, Some(f)) => SplitPlan::Fraction(f),
        (None, None, None) if dataset.samples.iter().any(|s| s.split.is_some()) => {
            SplitPlan::FromManifest
        }
        (None, None, None) => SplitPlan::Fraction(0.2),
    }
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

fn context<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

/// What a run starts from.
#[derive(Clone, Debug)]
pub enum BaseModel {
    /// An ONNX file (a fetched zoo model, a local file, a run's weights).
    File(PathBuf),
    /// A network `zoo train` built from scratch.
    Built {
        arch: String,
        model: Box<ModelProto>,
    },
}

impl BaseModel {
    /// sha256 of the ONNX bytes, and the parsed model.
    fn load(&self) -> anyhow::Result<(String, zoo_onnx::OnnxModel)> {
        match self {
            BaseModel::File(path) => {
                let sha = context(
                    zoo_fetch::sha256_file(path),
                    &format!("cannot read {}", path.display()),
                )?;
                Ok((sha, zoo_onnx::OnnxModel::load(path)?))
            }
            BaseModel::Built { model, .. } => {
                use sha2::Digest;
                let sha = hex::encode(sha2::Sha256::digest(model.encode_to_vec()));
                Ok((sha, zoo_onnx::OnnxModel::from_proto((**model).clone())?))
            }
        }
    }

    /// For config.json: the file, or the architecture.
    fn describe(&self) -> String {
        match self {
            BaseModel::File(path) => path.display().to_string(),
            BaseModel::Built { arch, .. } => format!("{arch} (built from scratch)"),
        }
    }
}

/// Finetunes on the device `options.device` resolves to.
pub fn finetune(
    base: &BaseModel,
    profile: &TrainProfile,
    options: &FinetuneOptions,
    stop: Option<Arc<AtomicBool>>,
    reporter: &dyn Reporter,
) -> anyhow::Result<Summary> {
    options.validate().map_err(anyhow::Error::msg)?;
    let (device, note) = crate::device::resolve(options.device).map_err(anyhow::Error::msg)?;
    reporter.info(&note.unwrap_or_else(|| format!("device: {}", device.backend_name())));
    match device {
        Device::Cpu => finetune_on::<CpuTrain>(
            Default::default(),
            Device::Cpu,
            base,
            profile,
            options,
            stop,
            reporter,
        ),
        #[cfg(feature = "cuda")]
        Device::Cuda => crate::device::on_cuda(|cuda| {
            finetune_on::<Autodiff<crate::device::CudaBackend>>(
                cuda,
                Device::Cuda,
                base,
                profile,
                options,
                stop,
                reporter,
            )
        }),
    }
}

#[allow(clippy::too_many_arguments)]
fn finetune_on<B: AutodiffBackend>(
    device: B::Device,
    device_kind: Device,
    base: &BaseModel,
    profile: &TrainProfile,
    options: &FinetuneOptions,
    stop: Option<Arc<AtomicBool>>,
    reporter: &dyn Reporter,
) -> anyhow::Result<Summary> {
    // config.json records where the data is, absolutely, so `zoo export` finds the validation
    // images again from any working directory.
    let options = &FinetuneOptions {
        data: std::fs::canonicalize(&options.data).unwrap_or_else(|_| options.data.clone()),
        ..options.clone()
    };
    let started = Instant::now();
    let mut warnings = Vec::new();

    // Data first: mistakes there are the cheapest to report.
    let dataset = zoo_data::open(&options.data)?;
    if dataset.classes.len() != options.classes {
        anyhow::bail!(
            "--classes {} does not match the data: {} has {} classes ({})",
            options.classes,
            options.data.display(),
            dataset.classes.len(),
            dataset.classes.join(", ")
        );
    }
    let split_plan = split_plan(
        options.train_per_class,
        options.val_per_class,
        options.val_split,
        &dataset,
    );
    let splits = split(&dataset, split_plan, options.seed)?;
    for w in &splits.warnings {
        reporter.warn(w);
    }
    warnings.extend(splits.warnings.clone());
    if splits.val.is_empty() {
        reporter.warn("no validation images: the best model is the last one");
    }
    let load_started = Instant::now();
    let (train_t, mut skipped) = zoo_data::load(&dataset, &splits.train, &profile.preprocessing);
    let (val_t, skipped_val) = zoo_data::load(&dataset, &splits.val, &profile.preprocessing);
    skipped.extend(skipped_val);
    for s in &skipped {
        reporter.warn(&format!("skipped {}: {}", s.path, s.reason));
    }
    if train_t.is_empty() {
        anyhow::bail!("no training image could be decoded");
    }
    let data_load_s = load_started.elapsed().as_secs_f64();
    reporter.info(&format!(
        "data: {} classes, {} training and {} validation images ({} skipped), loaded in {:.1} s",
        dataset.classes.len(),
        train_t.len(),
        val_t.len(),
        skipped.len(),
        data_load_s
    ));

    // Model: import, new head, freeze plan.
    let (base_sha256, mut onnx) = base.load()?;
    let chw = onnx.graph.input_chw();
    if chw != train_t.chw {
        anyhow::bail!(
            "the preprocessing makes {:?} images but the model takes {:?}; fix the card or use --like",
            train_t.chw,
            chw
        );
    }
    let head = zoo_net::replace_head(&mut onnx, &profile.head, options.classes, options.seed)?;
    if let Some(note) = head.note() {
        reporter.info(&note);
    }
    let net = Network::<B>::from_model(onnx, &device);
    let layer_names: Vec<String> = net.plan().layers.iter().map(|l| l.name.clone()).collect();
    let frozen: Vec<String> = if options.unfreeze_all {
        Vec::new()
    } else if let Some(list) = &options.freeze {
        list.clone()
    } else if let Some(until) = &options.freeze_until {
        let pos = layer_names.iter().position(|l| l == until).ok_or_else(|| {
            anyhow::anyhow!(
                "--freeze-until: no layer `{until}`; layers: {}",
                layer_names.join(", ")
            )
        })?;
        layer_names[..=pos].to_vec()
    } else {
        profile.freeze.clone()
    };
    if frozen.contains(&profile.head) {
        anyhow::bail!(
            "`{}` is the head: it is replaced and always trains; do not freeze it",
            profile.head
        );
    }
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
    reporter.info(&format!(
        "model: {} -> {} classes at `{}`; frozen: {}; trainable parameters: {}",
        profile.name,
        options.classes,
        profile.head,
        zoo_cards::describe_layers(&frozen),
        trainable_params
    ));

    // Frozen-feature cache: run the frozen prefix once, train the tail on its output.
    let cache_started = Instant::now();
    let cut = if options.feature_cache && !options.augment {
        net.feature_cut()
    } else {
        None
    };
    let (train_in, val_in) = match &cut {
        Some(cut) => {
            let inner = net.valid();
            let tf = cache_features(&inner, cut, &train_t, options.batch_size, &device)?;
            let vf = cache_features(&inner, cut, &val_t, options.batch_size, &device)?;
            reporter.info(&format!(
                "feature cache: frozen prefix run once per image up to `{}` ({:?} per image) in {:.1} s",
                cut.value,
                tf.1,
                cache_started.elapsed().as_secs_f64()
            ));
            // The decoded images are not needed once their features are cached.
            let (mut train_t, mut val_t) = (train_t, val_t);
            train_t.values = Vec::new();
            val_t.values = Vec::new();
            (
                Inputs {
                    tensors: train_t,
                    features: Some(tf),
                },
                Inputs {
                    tensors: val_t,
                    features: Some(vf),
                },
            )
        }
        None => (
            Inputs {
                tensors: train_t,
                features: None,
            },
            Inputs {
                tensors: val_t,
                features: None,
            },
        ),
    };
    let setup_seconds = cache_started.elapsed().as_secs_f64();

    let run_dir = context(
        rundir::create(options.out.as_deref(), &profile.name),
        "cannot create the run directory",
    )?;
    let trained = train(
        LoopInputs {
            net,
            cut: cut.clone(),
            train: &train_in,
            val: &val_in,
            head_params,
            options,
            stop,
            device: device.clone(),
            host_optimizer: device_kind == Device::Cpu,
            setup_seconds,
        },
        reporter,
    )?;
    if trained.interrupted {
        reporter.warn("interrupted: writing the best and last weights and the logs");
    }

    // Freeze audit, on both weight sets that are written.
    let unchanged = frozen_unchanged(&[&trained.last, &trained.best], &frozen_idx, &snapshot);

    let best_inner = trained.best.valid();
    let (final_loss, final_acc, preds) = evaluate(
        &best_inner,
        cut.as_ref(),
        &val_in,
        options.batch_size,
        &device,
    )?;
    let _ = final_loss;
    let best_row = trained.best_row.clone().unwrap_or(ValidationRow {
        epoch: trained.epoch_seconds.len(),
        iteration: trained.iterations.len(),
        elapsed_s: 0.0,
        train_loss: f64::NAN,
        train_accuracy: f64::NAN,
        val_loss: f64::NAN,
        val_accuracy: f64::NAN,
        lr: options.lr,
    });

    // Files.
    let labels_text: String = dataset.classes.iter().map(|c| format!("{c}\n")).collect();
    let io = |r: std::io::Result<()>| context(r, &format!("cannot write to {}", run_dir.display()));
    io(rundir::write(
        &run_dir,
        "labels.txt",
        labels_text.as_bytes(),
    ))?;
    let meta = crate::export::Metadata {
        card: profile.card.clone(),
        preprocessing: profile.preprocessing.clone(),
        labels: dataset.classes.clone(),
        base_sha256: base_sha256.clone(),
        freeze: profile.freeze.clone(),
        head: profile.head.clone(),
    };
    io(rundir::write(
        &run_dir,
        "best.onnx",
        &crate::export::encode(&trained.best, &meta),
    ))?;
    io(rundir::write(
        &run_dir,
        "last.onnx",
        &crate::export::encode(&trained.last, &meta),
    ))?;
    io(rundir::write(
        &run_dir,
        "metrics.csv",
        crate::report::metrics_csv(&trained.iterations, &trained.rows).as_bytes(),
    ))?;
    let confusion = crate::report::confusion(&preds, &val_in.tensors.labels, dataset.classes.len());
    io(rundir::write(
        &run_dir,
        "confusion.csv",
        crate::report::confusion_csv(&confusion, &dataset.classes).as_bytes(),
    ))?;
    io(crate::plot::training_progress(
        &run_dir.join("training-progress.png"),
        &trained.iterations,
        &trained.rows,
    ))?;
    io(crate::plot::confusion(
        &run_dir.join("confusion.png"),
        &confusion,
        &dataset.classes,
    ))?;
    let config = serde_json::json!({
        "model": profile.name,
        "model_path": base.describe(),
        "base_sha256": base_sha256,
        "profile": profile,
        "options": options,
        "split": { "plan": format!("{split_plan:?}"), "train": splits.train.len(), "val": splits.val.len() },
        "frozen_layers": frozen,
        "head": head,
        "seed": options.seed,
        "versions": { "zoo": env!("CARGO_PKG_VERSION"), "burn": "0.21", "backend": device_kind.backend_name() },
    });
    io(rundir::write_json(&run_dir, "config.json", &config))?;
    let wall = started.elapsed().as_secs_f64();
    let summary = Summary {
        run_dir: run_dir.clone(),
        model: profile.name.clone(),
        classes: dataset.classes.clone(),
        train_images: train_in.tensors.len(),
        val_images: val_in.tensors.len(),
        initial_val_accuracy: trained.initial_val_accuracy,
        best_val_accuracy: best_row.val_accuracy,
        best_val_loss: best_row.val_loss,
        best_epoch: best_row.epoch,
        best_iteration: best_row.iteration,
        final_val_accuracy: final_acc,
        epochs_run: trained.epoch_seconds.len(),
        stopped_early: trained.stopped_early,
        interrupted: trained.interrupted,
        images_per_s: trained.images_seen as f64
            / trained.epoch_seconds.iter().sum::<f64>().max(1e-9),
        epoch_seconds: trained.epoch_seconds.clone(),
        data_load_s,
        wall_time_s: wall,
        feature_cache: cut.as_ref().map(|c| c.value.clone()),
        skipped,
        warnings,
        head,
        freeze_audit: FreezeAudit {
            frozen_layers: frozen,
            frozen_params,
            trainable_params,
            frozen_params_unchanged: unchanged,
            frozen_batchnorm_running_stats: true,
        },
    };
    io(rundir::write_json(&run_dir, "summary.json", &summary))?;
    if options.out.is_none() {
        io(rundir::link_latest(&run_dir))?;
    }
    Ok(summary)
}

/// `zoo train ARCH`: builds the architecture with `options.classes` outputs and seeded
/// weights, then trains every layer with the finetuning loop.
pub fn train_from_scratch(
    arch: &str,
    options: &FinetuneOptions,
    stop: Option<Arc<AtomicBool>>,
    reporter: &dyn Reporter,
) -> anyhow::Result<Summary> {
    let built = crate::arch::build(arch, options.classes, options.seed)?;
    let profile = TrainProfile {
        name: arch.to_string(),
        card: None,
        preprocessing: built.preprocessing,
        freeze: built.freeze,
        head: built.head,
    };
    let options = FinetuneOptions {
        unfreeze_all: options.freeze.is_none() && options.freeze_until.is_none(),
        ..options.clone()
    };
    let base = BaseModel::Built {
        arch: arch.to_string(),
        model: Box::new(built.model),
    };
    finetune(&base, &profile, &options, stop, reporter)
}
