//! `zoo verify FILE`: import the file, run it in burn and in independent engines on the same
//! inputs (real images preprocessed the model's way, or seeded random images), and report
//! agreement.

use std::path::{Path, PathBuf};

use serde::Serialize;
use zoo_cards::Preprocessing;
use zoo_onnx::builder::SeededRng;
use zoo_onnx::OnnxModel;
use zoo_parity::{compare_outputs, VerifyReport};
use zoo_train::{Device, DeviceChoice};

use crate::engines::{engine_rows, network_outputs, Engines};
use crate::pixels::Pixels;
use crate::profile::{model_labels, profile_of_model, recipe_of_model, ModelHints, ProfileSource};

#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Folder of images (searched recursively); random inputs when `None`.
    pub images: Option<PathBuf>,
    /// Check the file against this run's trained network instead of against its own import,
    /// on the run's validation images (or `data`).
    pub run: Option<PathBuf>,
    /// Labelled images (class folders, CSV, IDX) for a `run` check.
    pub data: Option<PathBuf>,
    /// Where zoo's side of the comparison runs.
    pub device: DeviceChoice,
    /// How many inputs: random ones to draw, or at most this many images (all when `None`).
    pub samples: Option<usize>,
    pub batch: usize,
    pub engines: Vec<String>,
    pub seed: u64,
    pub tolerance: f64,
}

/// Images per forward pass of zoo's network, unless asked otherwise.
pub const DEFAULT_BATCH: usize = 8;
/// The largest accepted max_rel_diff, unless asked otherwise.
pub use zoo_parity::DEFAULT_TOLERANCE;

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            images: None,
            run: None,
            data: None,
            device: DeviceChoice::Auto,
            samples: None,
            batch: DEFAULT_BATCH,
            engines: vec!["tract".into()],
            seed: 0,
            tolerance: DEFAULT_TOLERANCE,
        }
    }
}

/// The parity report plus where the inputs came from and what was skipped.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyOutcome {
    #[serde(flatten)]
    pub report: VerifyReport,
    pub model: String,
    /// What zoo's side ran: the file's own import, or a run's trained network.
    pub reference: String,
    /// The value compared (the logits, before any final Softmax).
    pub compared_at: String,
    pub device: Device,
    pub inputs: String,
    pub preprocessing_source: ProfileSource,
    /// The preprocessing in force, and where it came from.
    pub preprocessing: String,
    /// Where the class names of the per-class table came from.
    pub labels_from: String,
    pub skipped: Vec<String>,
    pub warnings: Vec<String>,
}

pub const RANDOM_SAMPLES: usize = 8;

/// Random images: uniform pixels pushed through the model's own preprocessing arithmetic, so
/// values land in the range real inputs have.
pub fn random_inputs(p: &Preprocessing, chw: [usize; 3], samples: usize, seed: u64) -> Vec<f32> {
    let mut rng = SeededRng::new(seed);
    let plane = chw[1] * chw[2];
    let mut out = Vec::with_capacity(samples * chw[0] * plane);
    for _ in 0..samples {
        for c in 0..chw[0] {
            let (mean, std) = (
                p.mean.get(c).copied().unwrap_or(0.0),
                p.std.get(c).copied().unwrap_or(1.0),
            );
            for _ in 0..plane {
                let pixel = (rng.symmetric() + 1.0) * 127.5;
                out.push((pixel * p.scale - mean) / std);
            }
        }
    }
    out
}

/// Loads and preprocesses images; unreadable files are skipped and listed.
pub fn image_inputs(
    dir: &Path,
    p: &Preprocessing,
    limit: Option<usize>,
) -> anyhow::Result<(Vec<f32>, usize, Vec<String>)> {
    let files = zoo_data::list_images(dir)?;
    let mut values = Vec::new();
    let mut used = 0;
    let mut skipped = Vec::new();
    for file in files {
        if limit.is_some_and(|l| used >= l) {
            break;
        }
        match zoo_data::decode(&file) {
            Ok(img) => {
                values.extend(zoo_data::preprocess(&img, p));
                used += 1;
            }
            Err(e) => skipped.push(e.to_string()),
        }
    }
    if used == 0 {
        anyhow::bail!("none of the images in {} could be decoded", dir.display());
    }
    Ok((values, used, skipped))
}

pub fn verify_file(
    path: &Path,
    hints: &ModelHints,
    options: &VerifyOptions,
) -> anyhow::Result<VerifyOutcome> {
    options.check()?;
    let proto = zoo_onnx::read_model(path)?;
    let model = OnnxModel::from_proto(proto.clone())?;
    let chw = model.graph.input_chw();
    let any_batch = model.graph.input.dims[0].is_none();
    // Random inputs take the model's own shape: only images must fit it.
    let profile = match options.images {
        Some(_) => profile_of_model(hints, &model)?,
        None => recipe_of_model(hints, &model)?,
    };
    let (names, mut labels_from) = model_labels(&model, hints)?;
    let model_logits = model.graph.logits_value().to_string();
    let mut warnings: Vec<String> = profile.warning.iter().cloned().collect();

    let (reference_model, reference, inputs) = match &options.run {
        Some(run) => {
            labels_from = "the run's classes".into();
            let (trained, inputs) = run_reference(run, options, &model, path)?;
            warnings.extend(inputs.warnings.iter().cloned());
            let reference = format!("trained network of run {}", run.display());
            (trained, reference, Inputs::Labeled(inputs))
        }
        None => {
            let inputs = file_inputs(options, &profile.preprocessing, chw)?;
            (model, "zoo's import of the file".to_string(), inputs)
        }
    };
    // Compared at the logits: a saturated final Softmax would hide differences.
    let compared_at = reference_model.graph.logits_value().to_string();
    let engines = Engines::open(
        proto,
        chw,
        any_batch,
        &options.engines,
        model_logits.as_str(),
    )?;
    warnings.extend(engines.warnings.iter().cloned());
    let (pixels, classes, source, skipped) = inputs.parts();
    let device = crate::engines::resolve_device(options.device)?;
    let plain = (options.batch, crate::tta::PLAIN);
    let ours = network_outputs(reference_model, pixels, plain, device)?;
    // Unlabelled images with names known: agreement per class zoo predicts.
    let predicted: Vec<usize> = ours
        .iter()
        .map(|r| zoo_parity::compare::argmax(r))
        .collect();
    let classes = classes.or_else(|| {
        names.as_deref().map(|names| zoo_parity::SampleClasses {
            of_sample: &predicted,
            names,
        })
    });
    let theirs = engine_rows(&engines.list(), pixels, options.batch)?;
    let report = compare_outputs(&ours, &theirs, classes, options.batch, options.tolerance);
    Ok(VerifyOutcome {
        report,
        model: path.display().to_string(),
        reference,
        compared_at,
        device,
        inputs: source.clone(),
        preprocessing_source: profile.source.clone(),
        preprocessing: profile.recipe_line(),
        labels_from,
        skipped: skipped.clone(),
        warnings,
    })
}

/// With `--run`: the run's trained network and its images (`--data`, or its validation set),
/// once the file is seen to have the run's interface.
fn run_reference(
    run: &Path,
    options: &VerifyOptions,
    model: &OnnxModel,
    path: &Path,
) -> anyhow::Result<(OnnxModel, crate::labeled::LabeledImages)> {
    let trained = OnnxModel::load(run.join("best.onnx"))?;
    let trained_profile = profile_of_model(&ModelHints::default(), &trained)?;
    let labels = model_labels(&trained, &ModelHints::default())?.0;
    let (recipe, labels) = (&trained_profile.preprocessing, labels.as_deref());
    let budget = zoo_train::memory::default_budget();
    let inputs = match &options.data {
        Some(data) => crate::labeled::dataset_images(data, recipe, labels, budget)?,
        None => crate::labeled::run_validation(run, recipe, labels, budget)?,
    };
    let chw = model.graph.input_chw();
    let (theirs, ours) = (
        model.graph.output.dims.last(),
        trained.graph.output.dims.last(),
    );
    if theirs != ours || trained.graph.input_chw() != chw {
        anyhow::bail!(
            "{} does not have the run's interface (input {:?}, {:?} outputs; the run has {:?}, {:?})",
            path.display(),
            chw,
            theirs.copied().flatten(),
            trained.graph.input_chw(),
            ours.copied().flatten()
        );
    }
    Ok((trained, inputs))
}

/// Without `--run`: `--images`, or seeded random inputs.
fn file_inputs(
    options: &VerifyOptions,
    preprocessing: &zoo_cards::Preprocessing,
    chw: [usize; 3],
) -> anyhow::Result<Inputs> {
    Ok(match &options.images {
        Some(dir) => {
            let (values, n, skipped) = image_inputs(dir, preprocessing, options.samples)?;
            Inputs::Unlabeled {
                values,
                chw,
                source: format!("{n} images from {}", dir.display()),
                skipped,
            }
        }
        None => {
            let n = options.samples.unwrap_or(RANDOM_SAMPLES).max(1);
            Inputs::Unlabeled {
                values: random_inputs(preprocessing, chw, n, options.seed),
                chw,
                source: format!("{n} random images (seed {})", options.seed),
                skipped: Vec::new(),
            }
        }
    })
}

impl VerifyOptions {
    /// Settings that cannot work together, refused before any work.
    fn check(&self) -> anyhow::Result<()> {
        if self.batch == 0 {
            anyhow::bail!("--batch must be at least 1");
        }
        if self.data.is_some() && self.run.is_none() {
            anyhow::bail!("--data needs --run (without a run, use --images)");
        }
        Ok(())
    }
}

impl Inputs {
    /// The values, the classes of labelled samples, where they came from, what was skipped.
    #[allow(clippy::type_complexity)]
    fn parts(
        &self,
    ) -> (
        Pixels<'_>,
        Option<zoo_parity::SampleClasses<'_>>,
        &String,
        &Vec<String>,
    ) {
        match self {
            Inputs::Labeled(l) => (l.pixels(), Some(l.sample_classes()), &l.source, &l.skipped),
            Inputs::Unlabeled {
                values,
                chw,
                source,
                skipped,
            } => (Pixels::Held(values, *chw), None, source, skipped),
        }
    }
}

enum Inputs {
    Labeled(crate::labeled::LabeledImages),
    Unlabeled {
        values: Vec<f32>,
        chw: [usize; 3],
        source: String,
        skipped: Vec<String>,
    },
}

pub fn render(o: &VerifyOutcome) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let r = &o.report;
    let _ = writeln!(
        s,
        "model     {}\nreference {} ({:?}), compared at `{}`\ninputs    {} at batch {}",
        o.model, o.reference, o.device, o.compared_at, o.inputs, r.batch
    );
    let _ = writeln!(
        s,
        "\n{:<8} {:>5} {:>14} {:>14} {:>8}  result",
        "engine", "batch", "max_abs_diff", "max_rel_diff", "top-1"
    );
    for e in &r.engines {
        let _ = writeln!(
            s,
            "{:<8} {:>5} {:>14.3e} {:>14.3e} {:>8.4}  {}",
            e.name,
            e.batch,
            e.agreement.max_abs_diff,
            e.agreement.max_rel_diff,
            e.agreement.top1_agreement,
            if e.pass { "pass" } else { "FAIL" }
        );
    }
    let _ = writeln!(
        s,
        "\n{}: max_rel_diff {:.3e} (tolerance {:.0e}), top-1 agreement {:.4} over {} samples",
        if r.pass { "PASS" } else { "FAIL" },
        r.max_rel_diff,
        r.tolerance,
        r.top1_agreement,
        r.samples
    );
    if !r.per_class.is_empty() {
        let _ = writeln!(
            s,
            "\ntop-1 agreement per class (worst engine; names from {}):",
            o.labels_from
        );
        for c in &r.per_class {
            let _ = writeln!(
                s,
                "  {:<20} {:>8.4} over {} images",
                c.class, c.top1_agreement, c.samples
            );
        }
    }
    for sk in &o.skipped {
        let _ = writeln!(s, "skipped: {sk}");
    }
    s
}
