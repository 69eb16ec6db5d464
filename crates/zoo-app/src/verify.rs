//! `zoo verify FILE`: import the file, run it in burn and in independent engines on the same
//! inputs (real images preprocessed the model's way, or seeded random images), and report
//! agreement.

use std::path::{Path, PathBuf};

use serde::Serialize;
use zoo_cards::{Card, Preprocessing};
use zoo_net::Network;
use zoo_onnx::builder::SeededRng;
use zoo_onnx::OnnxModel;
use zoo_parity::{verify, Engine, OrtEngine, TractEngine, VerifyReport};

use crate::profile::{profile, ProfileSource};
use crate::CpuBackend;

#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Folder of images (searched recursively); random inputs when `None`.
    pub images: Option<PathBuf>,
    /// How many inputs: random ones to draw, or at most this many images (all when `None`).
    pub samples: Option<usize>,
    pub batch: usize,
    pub engines: Vec<String>,
    pub seed: u64,
    pub tolerance: f64,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            images: None,
            samples: None,
            batch: 8,
            engines: vec!["tract".into()],
            seed: 0,
            tolerance: zoo_parity::DEFAULT_TOLERANCE,
        }
    }
}

/// The parity report plus where the inputs came from and what was skipped.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyOutcome {
    #[serde(flatten)]
    pub report: VerifyReport,
    pub model: String,
    pub inputs: String,
    pub preprocessing_source: ProfileSource,
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
    card: Option<&Card>,
    options: &VerifyOptions,
) -> anyhow::Result<VerifyOutcome> {
    if options.batch == 0 {
        anyhow::bail!("--batch must be at least 1");
    }
    let model = OnnxModel::load(path)?;
    let chw = model.graph.input_chw();
    let device = Default::default();
    let net = Network::<CpuBackend>::from_model(model, &device);
    let profile = profile(card, net.plan());
    let mut warnings: Vec<String> = profile.warning.iter().cloned().collect();

    let (images, samples, inputs, skipped) = match &options.images {
        Some(dir) => {
            let (values, n, skipped) = image_inputs(dir, &profile.preprocessing, options.samples)?;
            (
                values,
                n,
                format!("{n} images from {}", dir.display()),
                skipped,
            )
        }
        None => {
            let n = options.samples.unwrap_or(RANDOM_SAMPLES).max(1);
            let values = random_inputs(&profile.preprocessing, chw, n, options.seed);
            (
                values,
                n,
                format!("{n} random images (seed {})", options.seed),
                Vec::new(),
            )
        }
    };
    let mut tract = None;
    let mut ort = None;
    for name in &options.engines {
        match name.as_str() {
            "tract" => tract = Some(TractEngine::from_path(path, chw)?),
            "ort" => match OrtEngine::from_path(path, chw) {
                Ok(engine) => ort = Some(engine),
                Err(why) => warnings.push(format!("{why}; carrying on with tract")),
            },
            other => anyhow::bail!("unknown engine `{other}`; engines: tract, ort"),
        }
    }
    if tract.is_none() && ort.is_none() {
        tract = Some(TractEngine::from_path(path, chw)?);
    }
    let mut engines: Vec<&dyn Engine> = Vec::new();
    if let Some(t) = &tract {
        engines.push(t);
    }
    if let Some(o) = &ort {
        engines.push(o);
    }
    let report = verify(
        &net,
        &engines,
        &images,
        options.batch,
        options.tolerance,
        &device,
    )
    .map_err(anyhow::Error::msg)?;
    debug_assert_eq!(report.samples, samples);
    Ok(VerifyOutcome {
        report,
        model: path.display().to_string(),
        inputs,
        preprocessing_source: profile.source,
        skipped,
        warnings,
    })
}

pub fn render(o: &VerifyOutcome) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let r = &o.report;
    let _ = writeln!(
        s,
        "model   {}\ninputs  {} at batch {}",
        o.model, o.inputs, r.batch
    );
    let _ = writeln!(
        s,
        "\n{:<8} {:>14} {:>14} {:>8}  result",
        "engine", "max_abs_diff", "max_rel_diff", "top-1"
    );
    for e in &r.engines {
        let _ = writeln!(
            s,
            "{:<8} {:>14.3e} {:>14.3e} {:>8.4}  {}",
            e.name,
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
    for sk in &o.skipped {
        let _ = writeln!(s, "skipped: {sk}");
    }
    s
}
