//! `zoo finetune`: data → split → import → new head → freeze → (feature cache) → train →
//! run directory with weights, logs and a freeze audit.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use prost::Message;
use serde::{Deserialize, Serialize};
use zoo_cards::Preprocessing;
use zoo_data::{split, Skipped, SplitPlan};
use zoo_net::{FeatureCut, HeadChange, Network, ParamRole};
use zoo_onnx::pb::ModelProto;

use crate::checkpoint::Checkpoint;
use crate::device::Device;
use crate::journal::{RunJournal, RunStatus};
use crate::options::FinetuneOptions;
use crate::rundir;
use crate::trainer::{cache_features, train, Inputs, LoopInputs, Reporter, Trained, ValidationRow};

/// The CPU training backend: burn's flex with autodiff.
pub type CpuTrain = Autodiff<Flex>;

/// How the base model is fed and finetuned (from its card, its metadata, or defaults).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainProfile {
    /// Card name or file name, used for the run directory's name.
    pub name: String,
    pub card: Option<String>,
    pub preprocessing: Preprocessing,
    /// Where the preprocessing came from, in words (printed with it when the run starts).
    #[serde(default)]
    pub preprocessing_from: String,
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
    /// `finished` or `interrupted` (Ctrl-C); while training, summary.json says `running`, and
    /// `failed` with the error when training failed.
    pub status: RunStatus,
    /// An interrupted run with a checkpoint: `zoo finetune --resume RUN` continues it.
    pub resumable: bool,
    pub run_dir: PathBuf,
    pub model: String,
    pub classes: Vec<String>,
    pub train_images: usize,
    pub val_images: usize,
    /// Validations run (none when interrupted before the first one: the best fields are NaN).
    pub validations: usize,
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

/// A run's images: `--data`, with `--val-data` as its validation set, or split by
/// [`split_plan`]. `zoo export` and `zoo evaluate RUN` rebuild a run's validation set with it.
pub fn run_data(options: &FinetuneOptions) -> anyhow::Result<(zoo_data::Dataset, SplitPlan)> {
    let open = |path: &Path| -> anyhow::Result<zoo_data::Dataset> {
        let dataset = zoo_data::open(path)?;
        Ok(match &options.keep_classes {
            Some(keep) => zoo_data::keep_classes(dataset, keep)?,
            None => dataset,
        })
    };
    let dataset = open(&options.data)?;
    Ok(match &options.val_data {
        Some(val) => (
            zoo_data::with_validation_set(dataset, open(val)?)?,
            SplitPlan::FromManifest,
        ),
        None => {
            let plan = split_plan(
                options.train_per_class,
                options.val_per_class,
                options.val_split,
                &dataset,
            );
            (dataset, plan)
        }
    })
}

/// Reads the options a run was started with (its config.json).
pub fn run_options(run: &Path) -> anyhow::Result<FinetuneOptions> {
    Ok(RunConfig::read(run)?.options)
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
        arch: crate::arch::ArchSpec,
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

    fn source(&self) -> BaseSource {
        match self {
            BaseModel::File(path) => BaseSource::File(path.clone()),
            BaseModel::Built { arch, .. } => BaseSource::Arch(arch.clone()),
        }
    }

    /// For config.json: the file, or the architecture.
    fn describe(&self) -> String {
        match self {
            BaseModel::File(path) => path.display().to_string(),
            BaseModel::Built { arch, .. } => format!("{} (built from scratch)", arch.label()),
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
    start(base, profile, options, None, stop, reporter)
}

/// Continues an interrupted or killed run from its last checkpoint, with the options, data and
/// base model its `config.json` names; the result equals an uninterrupted run's.
pub fn resume(
    run: &Path,
    stop: Option<Arc<AtomicBool>>,
    reporter: &dyn Reporter,
) -> anyhow::Result<Summary> {
    let config = RunConfig::read(run)?;
    let summary = std::fs::read_to_string(run.join("summary.json")).unwrap_or_default();
    let status = serde_json::from_str::<serde_json::Value>(&summary)
        .ok()
        .and_then(|v| v["status"].as_str().map(str::to_string));
    if status.as_deref() == Some("finished") {
        anyhow::bail!("{} has finished; there is nothing to resume", run.display());
    }
    if !run.join(crate::checkpoint::FILE).is_file() {
        anyhow::bail!(
            "{} has no checkpoint: it stopped before its first validation or epoch end; start it again",
            run.display()
        );
    }
    let checkpoint = Checkpoint::read(run).map_err(anyhow::Error::msg)?;
    let base = match &config.base {
        BaseSource::File(path) => BaseModel::File(path.clone()),
        BaseSource::Arch(arch) => BaseModel::Built {
            arch: arch.clone(),
            model: Box::new(
                crate::arch::build(arch, config.options.classes, config.options.seed)?.model,
            ),
        },
    };
    let options = FinetuneOptions {
        out: Some(run.to_path_buf()),
        ..config.options.clone()
    };
    reporter.info(&format!(
        "resuming {} at iteration {} of {}",
        run.display(),
        checkpoint.state.iteration,
        checkpoint
            .state
            .iterations
            .len()
            .max(checkpoint.state.iteration)
    ));
    let resume = Resume {
        checkpoint,
        base_sha256: config.base_sha256,
    };
    start(
        &base,
        &config.profile,
        &options,
        Some(resume),
        stop,
        reporter,
    )
}

/// What `resume` hands to the run: the checkpoint, and the base model it was trained from.
struct Resume {
    checkpoint: Checkpoint,
    base_sha256: String,
}

/// The base model as config.json records it, for a resume.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BaseSource {
    File(PathBuf),
    Arch(crate::arch::ArchSpec),
}

/// The parts of config.json a resume needs.
#[derive(Deserialize)]
struct RunConfig {
    base: BaseSource,
    base_sha256: String,
    profile: TrainProfile,
    options: FinetuneOptions,
}

impl RunConfig {
    fn read(run: &Path) -> anyhow::Result<Self> {
        let path = run.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a zoo run ({}: {e})",
                run.display(),
                path.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{}: {e} (written by another zoo version?)", path.display())
        })
    }
}

fn start(
    base: &BaseModel,
    profile: &TrainProfile,
    options: &FinetuneOptions,
    resume: Option<Resume>,
    stop: Option<Arc<AtomicBool>>,
    reporter: &dyn Reporter,
) -> anyhow::Result<Summary> {
    options.validate().map_err(anyhow::Error::msg)?;
    let (device, note) = crate::device::resolve(options.device).map_err(anyhow::Error::msg)?;
    reporter.info(&note.unwrap_or_else(|| format!("device: {}", device.backend_name())));
    let job = Job {
        base,
        profile,
        options,
        resume,
        stop,
        reporter,
    };
    match device {
        Device::Cpu => job.run::<CpuTrain>(Default::default(), Device::Cpu),
        #[cfg(feature = "cuda")]
        Device::Cuda => crate::device::on_cuda(|cuda| {
            job.run::<Autodiff<crate::device::CudaBackend>>(cuda, Device::Cuda)
        }),
    }
}

/// One finetune, new or resumed, in named phases: data, network, inputs, run directory,
/// training, results.
struct Job<'a> {
    base: &'a BaseModel,
    profile: &'a TrainProfile,
    options: &'a FinetuneOptions,
    resume: Option<Resume>,
    stop: Option<Arc<AtomicBool>>,
    reporter: &'a dyn Reporter,
}

/// The data phase's result.
struct Data {
    dataset: zoo_data::Dataset,
    split_plan: SplitPlan,
    train_count: usize,
    val_count: usize,
    skipped: Vec<Skipped>,
    warnings: Vec<String>,
    load_s: f64,
}

/// The network phase's result.
struct Model<B: AutodiffBackend> {
    net: Network<B>,
    base_sha256: String,
    head: HeadChange,
    frozen: Vec<String>,
    frozen_idx: Vec<usize>,
    snapshot: Vec<Vec<f32>>,
    head_params: Vec<usize>,
    trainable_params: usize,
    frozen_params: usize,
}

impl Job<'_> {
    fn run<B: AutodiffBackend>(
        mut self,
        device: B::Device,
        device_kind: Device,
    ) -> anyhow::Result<Summary> {
        // config.json records where the data is, absolutely, so `zoo export` finds the
        // validation images again from any working directory.
        let absolute = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let options = FinetuneOptions {
            data: absolute(&self.options.data),
            val_data: self.options.val_data.as_deref().map(absolute),
            ..self.options.clone()
        };
        let started = Instant::now();
        let (data, train_t, val_t) = self.load_data(&options)?;
        let model = self.build_model::<B>(&options, train_t.chw, &device)?;
        if let Some(r) = &self.resume {
            if r.base_sha256 != model.base_sha256 {
                anyhow::bail!(
                    "the base model changed since the run started (sha256 {} then, {} now): {}",
                    r.base_sha256,
                    model.base_sha256,
                    self.base.describe()
                );
            }
        }
        let (cut, train_in, val_in, setup_seconds) =
            self.prepare_inputs(&model.net, &options, train_t, val_t, &device)?;
        let run_dir = match &self.resume {
            Some(_) => options.out.clone().expect("a resume names its run"),
            None => {
                let dir = context(
                    rundir::create(options.out.as_deref(), &self.profile.name),
                    "cannot create the run directory",
                )?;
                self.write_config(&dir, &options, &data, &model, device_kind)?;
                dir
            }
        };
        let io =
            |r: std::io::Result<()>| context(r, &format!("cannot write to {}", run_dir.display()));
        let changing: Vec<usize> = (0..model.net.plan().params.len())
            .filter(|i| !model.frozen_idx.contains(i))
            .collect();
        let per_epoch = train_in.tensors.len().div_ceil(options.batch_size);
        let resume = self.resume.take();
        let mut journal = context(
            RunJournal::open(
                &run_dir,
                &self.profile.name,
                self.metadata(&data, &model),
                changing,
                per_epoch * options.epochs,
                resume.as_ref().map(|r| &r.checkpoint),
            ),
            &format!("cannot write to {}", run_dir.display()),
        )?;
        let resumed = resume.is_some();
        let trained = train(
            model.net.clone(),
            LoopInputs {
                cut: cut.clone(),
                train: &train_in,
                val: &val_in,
                head_params: model.head_params.clone(),
                options: &options,
                stop: self.stop.clone(),
                device: device.clone(),
                host_optimizer: device_kind == Device::Cpu,
                setup_seconds,
                resume: resume.map(|r| r.checkpoint),
            },
            &mut journal,
            self.reporter,
        );
        let outcome = trained.and_then(|trained| {
            if resumed {
                io(journal.write_best(&trained.best))?;
            }
            let results = Results {
                options: &options,
                preprocessing: &self.profile.preprocessing,
                data: &data,
                model: &model,
                cut: cut.as_ref(),
                val_in: &val_in,
                train_images: train_in.tensors.len(),
                started,
            };
            results.write(&journal, trained, &device, self.reporter)
        });
        if let Err(e) = &outcome {
            let _ = journal.progress(RunStatus::Failed, Some(format!("{e:#}")));
        }
        outcome
    }

    /// Data first: mistakes there are the cheapest to report.
    /// The data facts, and the training and validation images.
    fn load_data(
        &self,
        options: &FinetuneOptions,
    ) -> anyhow::Result<(Data, zoo_data::Tensors, zoo_data::Tensors)> {
        let reporter = self.reporter;
        let (dataset, split_plan) = run_data(options)?;
        if dataset.classes.len() != options.classes {
            anyhow::bail!(
                "--classes {} does not match the data: {} has {} classes ({})",
                options.classes,
                options.data.display(),
                dataset.classes.len(),
                dataset.classes.join(", ")
            );
        }
        let splits = split(&dataset, split_plan, options.seed)?;
        for w in &splits.warnings {
            reporter.warn(w);
        }
        if splits.val.is_empty() {
            reporter.warn("no validation images: the best model is the last one");
        }
        let load_started = Instant::now();
        let preprocessing = &self.profile.preprocessing;
        reporter.info(&format!(
            "preprocessing: {} ({})",
            preprocessing.describe(),
            self.profile.preprocessing_from
        ));
        let (train, mut skipped) = zoo_data::load(&dataset, &splits.train, preprocessing);
        let (val, skipped_val) = zoo_data::load(&dataset, &splits.val, preprocessing);
        skipped.extend(skipped_val);
        for s in &skipped {
            reporter.warn(&format!("skipped {}: {}", s.path, s.reason));
        }
        if train.is_empty() {
            anyhow::bail!("no training image could be decoded");
        }
        let mut warnings = splits.warnings;
        let readable = readable_per_class(&dataset, &train, &val, &skipped)?;
        if let Some(w) = zoo_data::imbalance_warning(&dataset.classes, &readable) {
            reporter.warn(&w);
            warnings.push(w);
        }
        let load_s = load_started.elapsed().as_secs_f64();
        reporter.info(&format!(
            "data: {} classes, {} training and {} validation images ({} skipped), loaded in {:.1} s",
            dataset.classes.len(),
            train.len(),
            val.len(),
            skipped.len(),
            load_s
        ));
        let data = Data {
            dataset,
            split_plan,
            train_count: splits.train.len(),
            val_count: splits.val.len(),
            skipped,
            warnings,
            load_s,
        };
        Ok((data, train, val))
    }

    /// Import, new head, freeze plan, and the snapshot the freeze audit compares against.
    fn build_model<B: AutodiffBackend>(
        &self,
        options: &FinetuneOptions,
        images_chw: [usize; 3],
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
        Ok(Model {
            net,
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

    /// The frozen-feature cache: runs the frozen prefix once and trains the tail on its output.
    /// Returns the cut, both splits' inputs and the seconds this took.
    #[allow(clippy::type_complexity)]
    fn prepare_inputs<B: AutodiffBackend>(
        &self,
        net: &Network<B>,
        options: &FinetuneOptions,
        train: zoo_data::Tensors,
        val: zoo_data::Tensors,
        device: &B::Device,
    ) -> anyhow::Result<(Option<FeatureCut>, Inputs, Inputs, f64)> {
        let cache_started = Instant::now();
        let cut = if options.feature_cache && !options.augment {
            net.feature_cut()
        } else {
            None
        };
        let Some(cut) = cut else {
            let inputs = |tensors| Inputs {
                tensors,
                features: None,
            };
            return Ok((None, inputs(train), inputs(val), 0.0));
        };
        let inner = net.valid();
        let tf = cache_features(&inner, &cut, &train, options.batch_size, device)?;
        let vf = cache_features(&inner, &cut, &val, options.batch_size, device)?;
        self.reporter.info(&format!(
            "feature cache: frozen prefix run once per image up to `{}` ({:?} per image) in {:.1} s",
            cut.value,
            tf.1,
            cache_started.elapsed().as_secs_f64()
        ));
        // The decoded images are not needed once their features are cached.
        let inputs = |mut tensors: zoo_data::Tensors, features| {
            tensors.values = Vec::new();
            Inputs {
                tensors,
                features: Some(features),
            }
        };
        Ok((
            Some(cut),
            inputs(train, tf),
            inputs(val, vf),
            cache_started.elapsed().as_secs_f64(),
        ))
    }

    fn metadata<B: AutodiffBackend>(
        &self,
        data: &Data,
        model: &Model<B>,
    ) -> crate::export::Metadata {
        crate::export::Metadata {
            card: self.profile.card.clone(),
            preprocessing: self.profile.preprocessing.clone(),
            labels: data.dataset.classes.clone(),
            base_sha256: model.base_sha256.clone(),
            freeze: self.profile.freeze.clone(),
            head: self.profile.head.clone(),
        }
    }

    /// config.json and labels.txt, before the first step: a killed run can be read and resumed.
    fn write_config<B: AutodiffBackend>(
        &self,
        dir: &Path,
        options: &FinetuneOptions,
        data: &Data,
        model: &Model<B>,
        device_kind: Device,
    ) -> anyhow::Result<()> {
        let io = |r: std::io::Result<()>| context(r, &format!("cannot write to {}", dir.display()));
        let labels: String = data
            .dataset
            .classes
            .iter()
            .map(|c| format!("{c}\n"))
            .collect();
        io(rundir::write(dir, "labels.txt", labels.as_bytes()))?;
        let config = serde_json::json!({
            "model": self.profile.name,
            "model_path": self.base.describe(),
            "base": self.base.source(),
            "base_sha256": model.base_sha256,
            "profile": self.profile,
            "options": options,
            "split": { "plan": format!("{:?}", data.split_plan), "train": data.train_count, "val": data.val_count },
            "frozen_layers": model.frozen,
            "head": model.head,
            "seed": options.seed,
            "versions": { "zoo": env!("CARGO_PKG_VERSION"), "burn": "0.21", "backend": device_kind.backend_name() },
        });
        io(rundir::write_json(dir, "config.json", &config))
    }
}

/// Decoded images per class; a class without any is an error (it would become an output the
/// network can never learn), named with why its files failed.
fn readable_per_class(
    dataset: &zoo_data::Dataset,
    train: &zoo_data::Tensors,
    val: &zoo_data::Tensors,
    skipped: &[Skipped],
) -> anyhow::Result<Vec<usize>> {
    let mut counts = vec![0usize; dataset.classes.len()];
    for &label in train.labels.iter().chain(&val.labels) {
        counts[label] += 1;
    }
    if let Some(c) = counts.iter().position(|&n| n == 0) {
        let name = &dataset.classes[c];
        let why = dataset
            .samples
            .iter()
            .filter(|s| s.label == c)
            .find_map(|s| skipped.iter().find(|k| k.path == s.image.name()))
            .map(|s| format!(" (e.g. {}: {})", s.path, s.reason))
            .unwrap_or_default();
        anyhow::bail!(
            "class `{name}` has no readable image{why}; fix or remove its files (see `zoo data check`)"
        );
    }
    Ok(counts)
}

/// The layers to freeze: `--unfreeze-all`, `--freeze`, `--freeze-until`, else the profile's.
fn frozen_layers<B: AutodiffBackend>(
    net: &Network<B>,
    options: &FinetuneOptions,
    profile: &TrainProfile,
) -> anyhow::Result<Vec<String>> {
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
    Ok(frozen)
}

/// The results phase: final evaluation, freeze audit, weights, logs, plots, summary.
struct Results<'a, B: AutodiffBackend> {
    options: &'a FinetuneOptions,
    preprocessing: &'a Preprocessing,
    data: &'a Data,
    model: &'a Model<B>,
    cut: Option<&'a FeatureCut>,
    val_in: &'a Inputs,
    train_images: usize,
    started: Instant,
}

impl<B: AutodiffBackend> Results<'_, B> {
    fn write(
        &self,
        journal: &RunJournal,
        trained: Trained<B>,
        device: &B::Device,
        reporter: &dyn Reporter,
    ) -> anyhow::Result<Summary> {
        let (options, data, model) = (self.options, self.data, self.model);
        let run_dir = journal.dir().to_path_buf();
        if trained.interrupted {
            reporter.warn("interrupted: writing the best and last weights and the logs");
        }
        // Freeze audit, on both weight sets that are written.
        let unchanged = frozen_unchanged(
            &[&trained.last, &trained.best],
            &model.frozen_idx,
            &model.snapshot,
        );
        let best_inner = trained.best.valid();
        // One pass over the validation set: accuracy, confusion and the mistakes gallery.
        let probabilities = crate::trainer::probabilities(
            &best_inner,
            self.cut,
            self.val_in,
            options.batch_size,
            device,
        )?;
        let preds: Vec<usize> = probabilities
            .iter()
            .map(|p| {
                (0..p.len())
                    .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                    .unwrap_or(0)
            })
            .collect();
        let labels = &self.val_in.tensors.labels;
        let final_acc = if preds.is_empty() {
            f64::NAN
        } else {
            preds.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / preds.len() as f64
        };
        let state = &trained.state;
        let best_row = state.best_row.clone().unwrap_or(ValidationRow {
            epoch: state.epoch_seconds.len(),
            iteration: state.iteration,
            elapsed_s: 0.0,
            train_loss: f64::NAN,
            train_accuracy: f64::NAN,
            val_loss: f64::NAN,
            val_accuracy: f64::NAN,
            lr: options.lr,
        });
        let io =
            |r: std::io::Result<()>| context(r, &format!("cannot write to {}", run_dir.display()));
        // The journal already wrote the best weights at their validation, and the last ones at
        // the final checkpoint unless Ctrl-C stopped the run between checkpoints.
        let meta = journal.meta();
        if !journal.best_is_written() {
            io(rundir::write(
                &run_dir,
                "best.onnx",
                &crate::export::encode(&trained.best, meta),
            ))?;
        }
        if trained.interrupted {
            io(rundir::write(
                &run_dir,
                "last.onnx",
                &crate::export::encode(&trained.last, meta),
            ))?;
        }
        io(rundir::write(
            &run_dir,
            "metrics.csv",
            crate::report::metrics_csv(&state.iterations, &state.rows).as_bytes(),
        ))?;
        let classes = &data.dataset.classes;
        let confusion =
            crate::report::confusion(&preds, &self.val_in.tensors.labels, classes.len());
        io(rundir::write(
            &run_dir,
            "confusion.csv",
            crate::report::confusion_csv(&confusion, classes).as_bytes(),
        ))?;
        io(crate::plot::training_progress(
            &run_dir.join(crate::plot::PROGRESS_PNG),
            &state.iterations,
            &state.rows,
        ))?;
        io(crate::plot::confusion(
            &run_dir.join("confusion.png"),
            &confusion,
            classes,
        ))?;
        io(self.pictures(&best_inner, &probabilities, &run_dir))?;
        let train_seconds: f64 = state.epoch_seconds.iter().sum();
        let summary = Summary {
            status: if trained.interrupted {
                RunStatus::Interrupted
            } else {
                RunStatus::Finished
            },
            resumable: trained.interrupted && run_dir.join(crate::checkpoint::FILE).is_file(),
            run_dir: run_dir.clone(),
            model: journal.model().to_string(),
            classes: classes.clone(),
            train_images: self.train_images,
            val_images: self.val_in.tensors.len(),
            validations: state.rows.len(),
            initial_val_accuracy: state.initial_val_accuracy,
            best_val_accuracy: best_row.val_accuracy,
            best_val_loss: best_row.val_loss,
            best_epoch: best_row.epoch,
            best_iteration: best_row.iteration,
            final_val_accuracy: final_acc,
            epochs_run: state.epoch_seconds.len(),
            stopped_early: trained.stopped_early,
            interrupted: trained.interrupted,
            // No time measured (stopped before the first step) is no rate, not a huge one.
            images_per_s: if train_seconds > 1e-3 {
                state.images_seen as f64 / train_seconds
            } else {
                0.0
            },
            epoch_seconds: state.epoch_seconds.clone(),
            data_load_s: data.load_s,
            wall_time_s: self.started.elapsed().as_secs_f64(),
            feature_cache: self.cut.map(|c| c.value.clone()),
            skipped: data.skipped.clone(),
            warnings: data.warnings.clone(),
            head: model.head.clone(),
            freeze_audit: FreezeAudit {
                frozen_layers: model.frozen.clone(),
                frozen_params: model.frozen_params,
                trainable_params: model.trainable_params,
                frozen_params_unchanged: unchanged,
                frozen_batchnorm_running_stats: true,
            },
        };
        io(rundir::write_json(&run_dir, "summary.json", &summary))?;
        io(crate::run_report::write(&run_dir).map(|_| ()))?;
        if options.out.is_none() {
            io(rundir::link_latest(&run_dir))?;
        }
        Ok(summary)
    }

    /// The report's pictures of the best weights: the first convolution's filters, and the
    /// misclassified validation images (decoded again: the feature cache dropped them).
    fn pictures(
        &self,
        best: &Network<B::InnerBackend>,
        probabilities: &[Vec<f64>],
        run_dir: &Path,
    ) -> std::io::Result<()> {
        use crate::pictures;
        if let Some(layer) = pictures::first_conv(best) {
            if let Ok((tiles, size)) = pictures::filter_tiles(best, layer, self.preprocessing.color)
            {
                pictures::save_grid(&tiles, size, &run_dir.join(crate::run_report::FILTERS_PNG))?;
            }
        }
        let val = &self.val_in.tensors;
        if val.is_empty() {
            return Ok(());
        }
        let mistakes = crate::report::mistakes(probabilities, &val.labels);
        let worst: Vec<usize> = mistakes
            .iter()
            .take(pictures::GALLERY_MAX)
            .map(|m| val.samples[m.index])
            .collect();
        let dataset = &self.data.dataset;
        let (images, _) = zoo_data::load(dataset, &worst, self.preprocessing);
        // The gallery's images, renumbered to the reloaded ones (all decoded before).
        let shown_mistakes: Vec<crate::report::Mistake> = mistakes
            .iter()
            .take(pictures::GALLERY_MAX)
            .filter_map(|m| {
                let at = images
                    .samples
                    .iter()
                    .position(|&s| s == val.samples[m.index])?;
                Some(crate::report::Mistake {
                    index: at,
                    ..m.clone()
                })
            })
            .collect();
        let paths: Vec<String> = images
            .samples
            .iter()
            .map(|&i| dataset.samples[i].image.name())
            .collect();
        pictures::misclassified(
            &shown_mistakes,
            mistakes.len(),
            &pictures::Shown {
                values: &images.values,
                chw: images.chw,
                preprocessing: self.preprocessing,
                names: &dataset.classes,
                paths: &paths,
            },
            &run_dir.join(pictures::MISCLASSIFIED_PNG),
        )
    }
}

/// `zoo train ARCH`: builds the architecture with `options.classes` outputs and seeded
/// weights, then trains every layer with the finetuning loop.
pub fn train_from_scratch(
    arch: &crate::arch::ArchSpec,
    options: &FinetuneOptions,
    stop: Option<Arc<AtomicBool>>,
    reporter: &dyn Reporter,
) -> anyhow::Result<Summary> {
    let built = crate::arch::build(arch, options.classes, options.seed)?;
    let profile = TrainProfile {
        name: arch.label(),
        card: None,
        preprocessing: built.preprocessing,
        preprocessing_from: format!("the {} architecture's", arch.name),
        freeze: built.freeze,
        head: built.head,
    };
    // Every layer trains, except an architecture's fixed ones (linear2d's features).
    let chosen = options.freeze.is_some() || options.freeze_until.is_some();
    let options = FinetuneOptions {
        unfreeze_all: !chosen && built.fixed.is_empty(),
        freeze: match (&options.freeze, chosen || built.fixed.is_empty()) {
            (_, true) => options.freeze.clone(),
            (None, false) => Some(built.fixed.clone()),
            (Some(f), false) => Some(f.clone()),
        },
        ..options.clone()
    };
    let base = BaseModel::Built {
        arch: arch.clone(),
        model: Box::new(built.model),
    };
    let summary = finetune(&base, &profile, &options, stop, reporter)?;
    if arch.name == "linear2d" && summary.validations > 0 {
        let picture = summary.run_dir.join(crate::plot::DECISION_PNG);
        crate::decision::draw(&summary.run_dir, &options, &profile.preprocessing, &picture)?;
        reporter.info(&format!(
            "the two features and the decision line: {}",
            picture.display()
        ));
    }
    Ok(summary)
}
