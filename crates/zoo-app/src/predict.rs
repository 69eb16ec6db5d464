//! `zoo predict`: labels and probabilities for images, run by tract with the preprocessing and
//! labels from the file's zoo metadata or the model card.

use std::path::{Path, PathBuf};

use serde::Serialize;
use zoo_cards::{Card, OutputKind};
use zoo_parity::TractEngine;

use crate::profile::{model_labels, profile_of_model};

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
    pub labels_from: String,
    pub predictions: Vec<Prediction>,
    pub warnings: Vec<String>,
}

fn softmax(v: &[f32]) -> Vec<f64> {
    let max = v.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let exp: Vec<f64> = v.iter().map(|&x| (x as f64 - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

pub fn predict(
    path: &Path,
    card: Option<&Card>,
    images: &[PathBuf],
    top: usize,
) -> anyhow::Result<PredictReport> {
    let model = zoo_onnx::OnnxModel::load(path)?;
    let profile = profile_of_model(card, &model);
    let mut warnings: Vec<String> = profile.warning.iter().cloned().collect();
    let (names, labels_from) = model_labels(&model, card);
    let ends_in_softmax = model.graph.nodes.iter().any(|n| {
        n.outputs[0] == model.graph.output.name && matches!(n.op, zoo_onnx::Op::Softmax { .. })
    });
    let probabilities =
        ends_in_softmax || card.is_some_and(|c| c.output.kind == OutputKind::Probabilities);
    let chw = model.graph.input_chw();
    drop(model);
    let engine = TractEngine::from_path(path, chw, false)?;
    let mut predictions = Vec::new();
    for image in images {
        let decoded = match zoo_data::decode(image) {
            Ok(d) => d,
            Err(e) => {
                warnings.push(e.to_string());
                continue;
            }
        };
        let out = engine.run_one(&zoo_data::preprocess(&decoded, &profile.preprocessing))?;
        let p: Vec<f64> = if probabilities {
            out.iter().map(|&x| x as f64).collect()
        } else {
            softmax(&out)
        };
        let mut order: Vec<usize> = (0..p.len()).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        let top = order
            .into_iter()
            .take(top.max(1))
            .map(|i| Guess {
                index: i,
                label: names
                    .as_ref()
                    .and_then(|n| n.get(i).cloned())
                    .unwrap_or_else(|| format!("class {i}")),
                probability: p[i],
            })
            .collect();
        predictions.push(Prediction {
            image: image.clone(),
            top,
        });
    }
    if predictions.is_empty() {
        anyhow::bail!("none of the images could be read: {}", warnings.join("; "));
    }
    Ok(PredictReport {
        model: path.display().to_string(),
        labels_from,
        predictions,
        warnings,
    })
}

pub fn render(r: &PredictReport) -> String {
    let mut s = String::new();
    for p in &r.predictions {
        let guesses: Vec<String> = p
            .top
            .iter()
            .map(|g| format!("{} ({:.1}%)", g.label, 100.0 * g.probability))
            .collect();
        s += &format!("{}: {}\n", p.image.display(), guesses.join(", "));
    }
    s
}
