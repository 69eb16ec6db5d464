//! Labelled, preprocessed images for checks: a run's own validation set, or a dataset whose
//! classes are matched to a model's labels.

use std::path::{Path, PathBuf};

use zoo_cards::Preprocessing;
use zoo_parity::SampleClasses;

pub struct LabeledImages {
    /// The preprocessed images: held in memory while they fit half the memory budget, else
    /// streamed from their files (read through [`LabeledImages::pixels`]).
    pub images: zoo_data::Tensors,
    /// The model output each image should get.
    pub labels: Vec<usize>,
    /// The name of each model output.
    pub classes: Vec<String>,
    /// Each image's file (or `file#index` for IDX), in order.
    pub paths: Vec<String>,
    pub skipped: Vec<String>,
    pub warnings: Vec<String>,
    /// Where the images came from, in words.
    pub source: String,
}

impl LabeledImages {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn pixels(&self) -> crate::pixels::Pixels<'_> {
        crate::pixels::Pixels::Set(&self.images)
    }

    pub fn sample_classes(&self) -> SampleClasses<'_> {
        SampleClasses {
            of_sample: &self.labels,
            names: &self.classes,
        }
    }
}

/// Which labelled images a command runs on, and how much memory their preprocessed pixels may
/// take (more than half of `memory_budget` are streamed from disk, block by block).
#[derive(Clone, Debug)]
pub struct Images {
    pub source: ImageSource,
    pub memory_budget: u64,
}

#[derive(Clone, Debug)]
pub enum ImageSource {
    /// A labelled dataset (class folders, CSV, IDX).
    Dataset(PathBuf),
    /// A run's own validation images, split as in training.
    RunValidation(PathBuf),
}

impl Images {
    /// `--data` when given, else a run directory's validation images; `memory_budget` (bytes)
    /// defaults to half the memory available now, as in training.
    pub fn choose(
        data: Option<PathBuf>,
        run: Option<&Path>,
        memory_budget: Option<u64>,
    ) -> anyhow::Result<Self> {
        let source = match (data, run) {
            (Some(d), _) => ImageSource::Dataset(d),
            (None, Some(run)) => ImageSource::RunValidation(run.to_path_buf()),
            (None, None) => anyhow::bail!(
                "--data is needed (only a run directory brings its own validation images)"
            ),
        };
        Ok(Self {
            source,
            memory_budget: memory_budget.unwrap_or_else(zoo_train::memory::default_budget),
        })
    }

    /// The images preprocessed; a dataset's classes are matched to `model_labels` when given.
    pub fn load(
        &self,
        preprocessing: &Preprocessing,
        model_labels: Option<&[String]>,
    ) -> anyhow::Result<LabeledImages> {
        let budget = self.memory_budget;
        match &self.source {
            ImageSource::Dataset(dir) => dataset_images(dir, preprocessing, model_labels, budget),
            ImageSource::RunValidation(run) => {
                run_validation(run, preprocessing, model_labels, budget)
            }
        }
    }
}

/// A run's validation images (its `--val-data`, or its split of `--data`), preprocessed
/// exactly as in training, their classes matched to `model_labels` by name.
pub fn run_validation(
    run: &Path,
    preprocessing: &Preprocessing,
    model_labels: Option<&[String]>,
    budget: u64,
) -> anyhow::Result<LabeledImages> {
    let options = zoo_train::run_options(run)?;
    let (dataset, plan) = zoo_train::run_data(&options)?;
    let data = match options.split {
        zoo_train::SplitChoice::Separate(val) => val,
        _ => options.data,
    };
    let what = format!(
        "the run's data ({}; it changed since training: pass --data to evaluate on it)",
        data.display()
    );
    let mut warnings = Vec::new();
    let to_output = match_classes(&dataset.classes, model_labels, &what, &mut warnings)?;
    let splits = zoo_data::split(&dataset, plan, options.seed)?;
    let (tensors, skipped) = load_or_stream(&dataset, &splits.val, preprocessing, budget);
    if tensors.is_empty() {
        anyhow::bail!(
            "the run {} has no readable validation images to check on (use --data)",
            run.display()
        );
    }
    Ok(LabeledImages {
        source: format!(
            "{} validation images of run {} ({}){}",
            tensors.len(),
            run.display(),
            data.display(),
            streamed_note(&tensors)
        ),
        paths: names(&dataset, &tensors),
        labels: tensors.labels.iter().map(|&l| to_output[l]).collect(),
        images: tensors,
        classes: model_labels
            .map(<[String]>::to_vec)
            .unwrap_or_else(|| dataset.classes.clone()),
        skipped: skipped
            .iter()
            .map(|s| format!("{}: {}", s.path, s.reason))
            .collect(),
        warnings,
    })
}

/// The images `indices` of `dataset`: decoded and held while they take at most half of
/// `budget` bytes, else checked once and streamed from their files whenever read (as training
/// does).
fn load_or_stream(
    dataset: &zoo_data::Dataset,
    indices: &[usize],
    p: &Preprocessing,
    budget: u64,
) -> (zoo_data::Tensors, Vec<zoo_data::Skipped>) {
    if zoo_data::images_fit(p, indices.len(), budget) {
        zoo_data::load(dataset, indices, p)
    } else {
        zoo_data::stream(dataset, indices, p)
    }
}

fn streamed_note(tensors: &zoo_data::Tensors) -> &'static str {
    match tensors.streamed {
        Some(_) => ", streamed from disk",
        None => "",
    }
}

fn names(dataset: &zoo_data::Dataset, tensors: &zoo_data::Tensors) -> Vec<String> {
    tensors
        .samples
        .iter()
        .map(|&i| dataset.samples[i].image.name())
        .collect()
}

/// For each class of the data, the model's output of the same name; data class i is output i
/// (with a warning) when the model has no labels. A class the model does not know is refused:
/// matched by position, a class folder added since training shifted every label after it.
fn match_classes(
    classes: &[String],
    model_labels: Option<&[String]>,
    what: &str,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Vec<usize>> {
    let Some(labels) = model_labels else {
        warnings.push("the model has no labels: data class i is taken as output i".into());
        return Ok((0..classes.len()).collect());
    };
    classes
        .iter()
        .map(|c| {
            labels.iter().position(|l| l == c).ok_or_else(|| {
                anyhow::anyhow!(
                    "class `{c}` of {what} is not one of the model's labels ({})",
                    labels.join(", ")
                )
            })
        })
        .collect()
}

/// Every image of a dataset, its classes matched to the model's labels by name when the model
/// has labels (data class i is output i otherwise, with a warning).
pub fn dataset_images(
    data: &Path,
    preprocessing: &Preprocessing,
    model_labels: Option<&[String]>,
    budget: u64,
) -> anyhow::Result<LabeledImages> {
    let dataset = zoo_data::open(data)?;
    let mut warnings = Vec::new();
    let to_output = match_classes(&dataset.classes, model_labels, "the data", &mut warnings)?;
    let all: Vec<usize> = (0..dataset.samples.len()).collect();
    let (tensors, skipped) = load_or_stream(&dataset, &all, preprocessing, budget);
    if tensors.is_empty() {
        anyhow::bail!("none of the images in {} could be decoded", data.display());
    }
    Ok(LabeledImages {
        source: format!(
            "{} images from {}{}",
            tensors.len(),
            data.display(),
            streamed_note(&tensors)
        ),
        labels: tensors.labels.iter().map(|&l| to_output[l]).collect(),
        paths: names(&dataset, &tensors),
        images: tensors,
        classes: model_labels
            .map(<[String]>::to_vec)
            .unwrap_or_else(|| dataset.classes.clone()),
        skipped: skipped
            .iter()
            .map(|s| format!("{}: {}", s.path, s.reason))
            .collect(),
        warnings,
    })
}
