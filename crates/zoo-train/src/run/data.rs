//! The data phase: open `--data` (and `--val-data`), split, decode and check what was read.
//! Data comes first: mistakes there are the cheapest to report.

use std::path::Path;
use std::time::Instant;

use zoo_data::{split, Skipped, SplitPlan};

use super::Job;
use crate::options::{FinetuneOptions, SplitChoice};

/// How a run splits its data: `--train-per-class`, else `--val-per-class`, else `--val-split`,
/// else the manifest's split column, else 20 % per class. `zoo export` rebuilds a run's
/// validation set with it.
pub fn split_plan(split: &SplitChoice, dataset: &zoo_data::Dataset) -> SplitPlan {
    match split {
        SplitChoice::TrainPerClass(k) => SplitPlan::TrainPerClass(*k),
        SplitChoice::ValPerClass(k) => SplitPlan::PerClass(*k),
        SplitChoice::Fraction(f) => SplitPlan::Fraction(*f),
        SplitChoice::Separate(_) => SplitPlan::FromManifest,
        SplitChoice::Default if dataset.samples.iter().any(|s| s.split.is_some()) => {
            SplitPlan::FromManifest
        }
        SplitChoice::Default => SplitPlan::Fraction(0.2),
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
    Ok(match &options.split {
        SplitChoice::Separate(val) => (
            zoo_data::with_validation_set(dataset, open(val)?)?,
            SplitPlan::FromManifest,
        ),
        split => {
            let plan = split_plan(split, &dataset);
            (dataset, plan)
        }
    })
}

/// The data phase's result.
pub(super) struct Data {
    pub(super) dataset: zoo_data::Dataset,
    pub(super) split_plan: SplitPlan,
    pub(super) train_count: usize,
    pub(super) val_count: usize,
    pub(super) skipped: Vec<Skipped>,
    pub(super) warnings: Vec<String>,
    pub(super) load_s: f64,
}

impl Job<'_> {
    /// Data first: mistakes there are the cheapest to report.
    /// The data facts, and the training and validation images.
    pub(super) fn load_data(
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
        let read = match self.image_storage(options, splits.train.len() + splits.val.len()) {
            Storage::Memory => zoo_data::load,
            Storage::Streamed => zoo_data::stream,
        };
        let (train, mut skipped) = read(&dataset, &splits.train, preprocessing);
        let (val, skipped_val) = read(&dataset, &splits.val, preprocessing);
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
}

/// Where a run's preprocessed images live.
enum Storage {
    /// Decoded once and held (fastest, while they fit).
    Memory,
    /// Read, decoded and preprocessed again for every batch (memory independent of the count).
    Streamed,
}

impl Job<'_> {
    /// Memory while the images take at most half the budget, else streamed, said once.
    fn image_storage(&self, options: &FinetuneOptions, images: usize) -> Storage {
        let recipe = &self.profile.preprocessing;
        let budget = options.memory_budget();
        if zoo_data::images_fit(recipe, images, budget) {
            return Storage::Memory;
        }
        let needed = zoo_data::image_bytes(recipe).saturating_mul(images as u64);
        use crate::memory::human;
        self.reporter.info(&format!(
            "streaming: {images} preprocessed images would take {}, over half the memory budget ({}); each batch is read and decoded from disk instead",
            human(needed),
            human(budget)
        ));
        Storage::Streamed
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
