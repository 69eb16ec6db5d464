//! One training run (`zoo finetune`, `zoo train`, `--resume`) in named phases, each in its
//! module: `data` (open, split, decode), `model` (import, new head, freeze), `inputs` (the
//! frozen-feature cache), `config` (config.json, resume), then the training loop
//! (`crate::trainer`) and `results` (evaluation, freeze audit, files). [`Job::run`] reads top
//! to bottom through them.

mod config;
mod data;
mod inputs;
mod model;
mod results;
mod sweep;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use zoo_cards::Preprocessing;
use zoo_data::Skipped;
use zoo_net::HeadChange;

pub use config::run_options;
pub use data::{run_data, split_plan};
pub use model::{frozen_unchanged, BaseModel};
pub use sweep::{lr_find, LR_FIND_JSON, LR_FIND_PNG};

use crate::checkpoint::Checkpoint;
use crate::device::Device;
use crate::journal::{RunJournal, RunStatus};
use crate::options::{FinetuneOptions, FreezeChoice, SplitChoice};
use crate::rundir;
use crate::trainer::{self, train, LoopInputs, Reporter};
use config::{BaseSource, Resume, RunConfig};
use results::Results;

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
    /// Classes whose output was the same for every validation image at some validation
    /// (no gradient reaches them: they cannot be learned), in the order found.
    pub dead_classes: Vec<String>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
    pub head: HeadChange,
    #[serde(flatten)]
    pub freeze_audit: FreezeAudit,
}

fn context<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!("{what}: {e}"))
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

impl Job<'_> {
    fn run<B: AutodiffBackend>(
        mut self,
        device: B::Device,
        device_kind: Device,
    ) -> anyhow::Result<Summary> {
        let mut options = self.run_options();
        let started = Instant::now();
        let (data, train_t, val_t) = self.load_data(&options)?;
        let model = self.build_model::<B>(&mut options, (train_t.len(), train_t.chw), &device)?;
        self.check_model_fits(&model)?;
        if let Some(r) = &self.resume {
            self.check_resume(r, &binding_of(&data, &model), &model)?;
        }
        let resume = self.resume.take();
        let checkpoint = resume.as_ref().map(|r| &r.checkpoint);
        let (steps, lr_plan) = self.lr_plan(&options, train_t.len(), checkpoint)?;
        let mut journal = self.open_run(&options, &data, &model, device_kind, steps, checkpoint)?;
        let run_dir = journal.dir().to_path_buf();
        let io =
            |r: std::io::Result<()>| context(r, &format!("cannot write to {}", run_dir.display()));
        let prepared = self.inputs_and_rate(
            &mut options,
            (&data, &model),
            (train_t, val_t),
            (&run_dir, resume.is_some()),
            (&device, device_kind),
        );
        let (cut, train_in, val_in, setup_seconds) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                let _ = journal.progress(RunStatus::Failed, Some(format!("{e:#}")));
                return Err(e);
            }
        };
        let resumed = resume.is_some();
        let trained = train(
            model.net.clone(),
            LoopInputs {
                classes: &data.dataset.classes,
                cut: cut.clone(),
                train: &train_in,
                val: &val_in,
                head_params: model.head_params.clone(),
                options: &options,
                stop: self.stop.clone(),
                device: device.clone(),
                host_optimizer: device_kind == Device::Cpu,
                lr_plan,
                setup_seconds,
                resume: resume.map(|r| r.checkpoint),
                head_stage: model.head_stage(&options),
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

    /// The options as the run records them: paths absolute (so `zoo export` finds the
    /// validation images again from any working directory) and the memory budget read once
    /// (the memory available changes as the run loads).
    fn run_options(&self) -> FinetuneOptions {
        let absolute = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let split = match &self.options.split {
            SplitChoice::Separate(val) => SplitChoice::Separate(absolute(val)),
            other => other.clone(),
        };
        FinetuneOptions {
            data: absolute(&self.options.data),
            split,
            memory_budget: Some(self.options.memory_budget()),
            ..self.options.clone()
        }
    }

    /// The run's steps and the rate of each (said when not constant), and where a resumed
    /// run stands among them.
    fn lr_plan(
        &self,
        options: &FinetuneOptions,
        train_images: usize,
        checkpoint: Option<&Checkpoint>,
    ) -> anyhow::Result<(usize, crate::schedule::LrPlan)> {
        let per_epoch = train_images.div_ceil(options.batch_size);
        let steps = per_epoch * options.epochs;
        if let (Some(c), Some(run)) = (checkpoint, &options.out) {
            let done = c.state.iteration;
            let at = format!("resuming {} at iteration {done} of {steps}", run.display());
            self.reporter.info(&at);
        }
        let (schedule, warmup) = (options.schedule, options.warmup);
        let plan = match options.fine_tune {
            Some(epochs) => {
                let stages = (epochs * per_epoch, steps);
                crate::schedule::LrPlan::staged(schedule, warmup, per_epoch, stages)
            }
            None => crate::schedule::LrPlan::new(schedule, warmup, per_epoch, steps),
        };
        let plan = plan.map_err(anyhow::Error::msg)?;
        let shaped = options.schedule != crate::schedule::Schedule::Constant;
        if plan.warmup() > 0 || shaped || options.fine_tune.is_some() {
            self.reporter
                .info(&format!("learning rate: {}", plan.describe()));
        }
        Ok((steps, plan))
    }

    /// The inputs phase, then with `--lr auto` (not when resuming: the run's rate is in its
    /// config.json) the sweep that sets the rate, recorded in config.json.
    #[allow(clippy::type_complexity)]
    fn inputs_and_rate<B: AutodiffBackend>(
        &self,
        options: &mut FinetuneOptions,
        (data, model): (&data::Data, &model::Model<B>),
        images: (zoo_data::Tensors, zoo_data::Tensors),
        (run_dir, resumed): (&Path, bool),
        (device, device_kind): (&B::Device, Device),
    ) -> anyhow::Result<(
        Option<zoo_net::FeatureCut>,
        trainer::Inputs,
        trainer::Inputs,
        f64,
    )> {
        let binding = binding_of(data, model);
        let prepared =
            self.prepare_inputs(&model.net, options, images, (run_dir, &binding), device)?;
        if options.lr_auto && !resumed {
            let inputs = sweep::SweepInputs {
                cut: prepared.0.as_ref(),
                train: &prepared.1,
            };
            let found = self.sweep_lr(model, options, inputs, (run_dir, device, device_kind))?;
            options.lr = found.lr;
            self.reporter.info(&format!(
                "learning rate: {:.3e} (lr-find, {} rule)",
                found.lr, found.rule
            ));
            self.write_config(run_dir, options, data, model, device_kind)?;
        }
        Ok(prepared)
    }

    /// The run directory (new, with its config.json, or the resumed one) and its journal.
    fn open_run<B: AutodiffBackend>(
        &self,
        options: &FinetuneOptions,
        data: &data::Data,
        model: &model::Model<B>,
        device_kind: Device,
        steps: usize,
        checkpoint: Option<&Checkpoint>,
    ) -> anyhow::Result<RunJournal> {
        let run_dir = match checkpoint {
            Some(_) => options.out.clone().expect("a resume names its run"),
            None => {
                let dir = context(
                    rundir::create(options.out.as_deref(), &self.profile.name),
                    "cannot create the run directory",
                )?;
                self.write_config(&dir, options, data, model, device_kind)?;
                dir
            }
        };
        let changing: Vec<usize> = (0..model.net.plan().params.len())
            .filter(|i| !model.frozen_idx.contains(i))
            .collect();
        let meta = self.metadata(data, model);
        let journal = RunJournal::open(
            &run_dir,
            &self.profile.name,
            meta,
            changing,
            steps,
            checkpoint,
            binding_of(data, model),
        );
        context(journal, &format!("cannot write to {}", run_dir.display()))
    }

    /// A resume goes on only from its own run's checkpoint: the same base model, network and
    /// data (else the weights would not fit, or training would go on with other images), with
    /// weights that fit the network and are finite.
    fn check_resume<B: AutodiffBackend>(
        &self,
        resume: &Resume,
        binding: &crate::checkpoint::Binding,
        model: &model::Model<B>,
    ) -> anyhow::Result<()> {
        if resume.base_sha256 != model.base_sha256 {
            anyhow::bail!(
                "the base model changed since the run started (sha256 {} then, {} now): {}",
                resume.base_sha256,
                model.base_sha256,
                self.base.describe()
            );
        }
        let refuse = |why: String| anyhow::anyhow!("cannot resume from this checkpoint: {why}");
        if let Some(why) = resume
            .checkpoint
            .binding
            .as_ref()
            .and_then(|b| b.mismatch(binding))
        {
            return Err(refuse(why));
        }
        let sizes: Vec<usize> = model.net.plan().params.iter().map(|p| p.numel()).collect();
        resume.checkpoint.check_weights(&sizes).map_err(refuse)
    }
}

/// What this run's checkpoints belong to: its base model, its network's parameters (names and
/// shapes) and its data (classes, and each image's name and class).
fn binding_of<B: AutodiffBackend>(
    data: &data::Data,
    model: &model::Model<B>,
) -> crate::checkpoint::Binding {
    use crate::checkpoint::fingerprint;
    let params: Vec<String> = (model.net.plan().params.iter())
        .map(|p| format!("{}:{:?}", p.name, p.dims))
        .collect();
    let dataset = &data.dataset;
    let samples: Vec<String> = (dataset.samples.iter())
        .map(|s| format!("{}\t{}", s.image.name(), s.label))
        .collect();
    let classes = dataset.classes.iter().chain(&samples);
    crate::checkpoint::Binding {
        base_sha256: model.base_sha256.clone(),
        params: fingerprint(params.iter().map(String::as_bytes)),
        data: fingerprint(classes.map(String::as_bytes)),
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
    let freeze = match &options.freeze {
        FreezeChoice::Layers(_) | FreezeChoice::Until(_) => options.freeze.clone(),
        _ if built.fixed.is_empty() => FreezeChoice::Nothing,
        _ => FreezeChoice::Layers(built.fixed.clone()),
    };
    let options = FinetuneOptions {
        freeze,
        ..options.clone()
    };
    let base = BaseModel::Built {
        arch: arch.clone(),
        model: Box::new(built.model),
    };
    let summary = finetune(&base, &profile, &options, stop, reporter)?;
    if arch.name == "linear2d" && summary.validations > 0 {
        let picture = summary.run_dir.join(crate::report::plot::DECISION_PNG);
        crate::report::decision::draw(
            &summary.run_dir,
            &options,
            &profile.preprocessing,
            &picture,
        )?;
        reporter.info(&format!(
            "the two features and the decision line: {}",
            picture.display()
        ));
    }
    Ok(summary)
}
