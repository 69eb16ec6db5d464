//! Training: `zoo finetune` (the model's profile, then `zoo-train`), `zoo train` (an
//! architecture from scratch), `--resume`, and a run's report page. The option types are
//! `zoo-train`'s, re-exported so that callers need this crate only.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use zoo_train::memory;
pub use zoo_train::recipe::RECIPE_OPTIONS;
pub use zoo_train::run::{LR_FIND_JSON, LR_FIND_PNG};
use zoo_train::TrainProfile;
pub use zoo_train::{
    Activation, ArchSpec, DeviceChoice, FinetuneOptions, FreezeChoice, LossKind, OptimizerKind,
    Recipe, Reporter, Schedule, SplitChoice, Start, StderrReporter, Summary, ValidationRow, Warmup,
};

use crate::profile::{profile_of_model, ModelHints, ProfileSource};

/// Builds the training profile of a model file (card, zoo metadata, or stated defaults, with
/// the command line's preprocessing changes), and a warning about what was assumed.
pub fn train_profile(
    onnx: &zoo_onnx::OnnxModel,
    hints: &ModelHints,
    name: &str,
) -> anyhow::Result<(TrainProfile, Option<String>)> {
    let p = profile_of_model(hints, onnx)?;

    let card_name = match &p.source {
        ProfileSource::Card(c) => Some(c.clone()),
        _ => onnx.metadata.get(crate::profile::META_CARD).cloned(),
    };
    Ok((
        TrainProfile {
            name: name.to_string(),
            card: card_name,
            preprocessing: p.preprocessing,
            preprocessing_from: p.preprocessing_from,
            freeze: p.freeze,
            head: p.head,
        },
        p.warning,
    ))
}

pub fn run_finetune(
    path: &Path,
    hints: &ModelHints,
    name: &str,
    options: &FinetuneOptions,
    stop: Option<Arc<AtomicBool>>,
    reporter: &dyn Reporter,
) -> anyhow::Result<Summary> {
    // Parsed once: for the profile here, then handed to the run.
    let onnx = zoo_onnx::OnnxModel::load(path)?;
    let (profile, warning) = train_profile(&onnx, hints, name)?;
    if let Some(w) = warning {
        reporter.warn(&w);
    }
    zoo_train::finetune(
        &zoo_train::BaseModel::parsed(path.to_path_buf(), onnx),
        &profile,
        options,
        stop,
        reporter,
    )
}

/// `zoo lr-find`: the learning-rate sweep for finetuning the model at `path` with `options`,
/// its record and picture written into `out`.
pub fn lr_find(
    path: &Path,
    hints: &ModelHints,
    name: &str,
    options: &FinetuneOptions,
    out: &Path,
    reporter: &dyn Reporter,
) -> anyhow::Result<zoo_train::lr_find::LrFind> {
    let onnx = zoo_onnx::OnnxModel::load(path)?;
    let (profile, warning) = train_profile(&onnx, hints, name)?;
    if let Some(w) = warning {
        reporter.warn(&w);
    }
    let base = zoo_train::BaseModel::parsed(path.to_path_buf(), onnx);
    zoo_train::lr_find(&base, &profile, options, out, reporter)
}

/// `zoo train ARCH`: an architecture from scratch on `options.data`.
pub fn train_from_scratch(
    arch: &ArchSpec,
    options: &FinetuneOptions,
    stop: Option<Arc<AtomicBool>>,
    reporter: &dyn Reporter,
) -> anyhow::Result<Summary> {
    zoo_train::train_from_scratch(arch, options, stop, reporter)
}

/// `--resume RUN`: an interrupted or killed run continues from its last checkpoint with its
/// own model, data and options (config.json).
pub fn resume(
    run: &Path,
    stop: Option<Arc<AtomicBool>>,
    reporter: &dyn Reporter,
) -> anyhow::Result<Summary> {
    zoo_train::resume(run, stop, reporter)
}

/// `zoo report RUN`: rebuilds the run's report.html from its files; the page's path.
pub fn write_report(run: &Path) -> anyhow::Result<std::path::PathBuf> {
    if !run.join("config.json").is_file() {
        anyhow::bail!("{} is not a zoo run (it has no config.json)", run.display());
    }
    zoo_train::report::html::write(run)
        .map_err(|e| anyhow::anyhow!("cannot write to {}: {e}", run.display()))
}

/// How many classes a dataset has (class folders, CSV manifest or MNIST IDX).
pub fn class_count(data: &Path) -> anyhow::Result<usize> {
    Ok(zoo_data::open(data)?.classes.len())
}
