//! `zoo predict`: labels and probabilities for images, run by zoo's own network (or tract /
//! ONNX Runtime with `--engine`) with the preprocessing and labels from the file's zoo
//! metadata or the model card.

use std::path::{Path, PathBuf};
use zoo_onnx::ops::Nn;

use serde::Serialize;
use zoo_cards::OutputKind;
use zoo_train::DeviceChoice;

use crate::engines::Runtime;
use crate::profile::{model_labels, profile_of_model, ModelHints};

#[derive(Clone, Debug, Serialize)]
pub struct Guess {
    pub index: usize,
    pub label: String,
    pub probability: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    pub image: PathBuf,
    pub top: Vec<Guess>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PredictReport {
    pub model: String,
    /// What computed the predictions.
    pub engine: String,
    pub labels_from: String,
    /// The preprocessing in force, and where it came from.
    pub preprocessing: String,
    pub predictions: Vec<Prediction>,
    pub warnings: Vec<String>,
}

/// The `top` most probable classes, named by `names` where known.
fn top_guesses(p: &[f64], top: usize, names: Option<&[String]>) -> Vec<Guess> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    order
        .into_iter()
        .take(top.max(1))
        .map(|i| Guess {
            index: i,
            label: names
                .and_then(|n| n.get(i).cloned())
                .unwrap_or_else(|| format!("class {i}")),
            probability: p[i],
        })
        .collect()
}

pub fn predict(
    path: &Path,
    hints: &ModelHints,
    images: &[PathBuf],
    top: usize,
    runtime: Runtime,
    (device, tta): (DeviceChoice, bool),
) -> anyhow::Result<PredictReport> {
    let model = zoo_onnx::OnnxModel::load(path)?;
    let profile = profile_of_model(hints, &model)?;
    let mut warnings: Vec<String> = profile.warning.iter().cloned().collect();
    let (names, labels_from) = model_labels(&model, hints)?;
    let ends_in_softmax = model.graph.nodes.iter().any(|n| {
        n.outputs[0] == model.graph.output.name
            && matches!(n.op, zoo_onnx::Op::Nn(Nn::Softmax { .. }))
    });
    let probabilities = ends_in_softmax
        || hints
            .card
            .as_ref()
            .is_some_and(|c| c.output.kind == OutputKind::Probabilities);
    let mut decoded = Vec::new();
    let mut read = Vec::new();
    for image in images {
        match zoo_data::decode(image) {
            Ok(d) => {
                decoded.extend(zoo_data::preprocess(&d, &profile.preprocessing));
                read.push(image.clone());
            }
            Err(e) => warnings.push(e.to_string()),
        }
    }
    if read.is_empty() {
        anyhow::bail!("none of the images could be read: {}", warnings.join("; "));
    }
    let chw = model.graph.input_chw();
    let views = crate::tta::views_for(tta, chw);
    let out = crate::engines::outputs(
        path,
        model,
        crate::pixels::Pixels::Held(&decoded, chw),
        crate::engines::Runner {
            batch: crate::engines::BATCH,
            runtime,
            device,
            views: &views,
        },
    )?;
    let predictions = read
        .into_iter()
        .zip(&out.rows)
        .map(|(image, row)| {
            let p: Vec<f64> = if probabilities && !out.logits {
                row.iter().map(|&x| x as f64).collect()
            } else {
                zoo_train::report::softmax(row)
            };
            Prediction {
                image,
                top: top_guesses(&p, top, names.as_deref()),
            }
        })
        .collect();
    Ok(PredictReport {
        model: path.display().to_string(),
        engine: crate::tta::described(out.engine, views.len()),
        labels_from,
        preprocessing: profile.recipe_line(),
        predictions,
        warnings,
    })
}

pub fn render(r: &PredictReport) -> String {
    use zoo_io::printable;
    let mut s = String::new();
    for p in &r.predictions {
        let guesses: Vec<String> = p
            .top
            .iter()
            .map(|g| format!("{} ({:.1}%)", printable(&g.label), 100.0 * g.probability))
            .collect();
        let image = p.image.display().to_string();
        s += &format!("{}: {}\n", printable(&image), guesses.join(", "));
    }
    s
}
