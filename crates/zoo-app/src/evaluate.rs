//! `zoo evaluate`: accuracy with a 95 % Wilson interval, per-class precision and recall, and the
//! confusion matrix (CSV and PNG) on a labelled dataset, computed by zoo's own network (or
//! tract / ONNX Runtime with `--engine`).

use std::path::{Path, PathBuf};

use serde::Serialize;
use zoo_parity::compare::argmax;
use zoo_train::DeviceChoice;

use crate::engines::Runtime;

use crate::profile::{model_labels, profile_of_model, ModelHints};

#[derive(Clone, Debug, Serialize)]
pub struct ClassScore {
    pub name: String,
    pub support: usize,
    pub precision: f64,
    pub recall: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvaluateReport {
    pub model: String,
    pub data: String,
    pub samples: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// 95 % Wilson score interval of the accuracy.
    pub accuracy_ci95: [f64; 2],
    pub classes: Vec<ClassScore>,
    pub confusion_csv: PathBuf,
    pub confusion_png: PathBuf,
    /// The class pairs mixed up most often, largest first.
    pub most_confused: Vec<zoo_train::report::ConfusedPair>,
    pub misclassified: usize,
    /// The worst misclassified images (lowest probability on the true class).
    pub worst: Vec<WorstImage>,
    pub misclassified_png: PathBuf,
    pub skipped: Vec<String>,
    /// What computed the predictions.
    pub engine: String,
    /// The preprocessing in force, and where it came from.
    pub preprocessing: String,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WorstImage {
    pub path: String,
    pub truth: String,
    pub predicted: String,
    pub p_predicted: f64,
    pub p_true: f64,
}

/// Wilson score interval for `k` successes in `n` trials at 95 %.
pub fn wilson95(k: usize, n: usize) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let (z, n_f, p) = (1.959964f64, n as f64, k as f64 / n as f64);
    let denom = 1.0 + z * z / n_f;
    let centre = (p + z * z / (2.0 * n_f)) / denom;
    let half = z * (p * (1.0 - p) / n_f + z * z / (4.0 * n_f * n_f)).sqrt() / denom;
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

pub fn evaluate(
    path: &Path,
    hints: &ModelHints,
    data: &crate::labeled::Images,
    out: &Path,
    runtime: Runtime,
    (device, tta): (DeviceChoice, bool),
) -> anyhow::Result<EvaluateReport> {
    let model = zoo_onnx::OnnxModel::load(path)?;
    let profile = profile_of_model(hints, &model)?;
    let mut warnings: Vec<String> = profile.warning.iter().cloned().collect();
    let (model_labels, _) = model_labels(&model, hints)?;
    let images = data.load(&profile.preprocessing, model_labels.as_deref())?;
    warnings.extend(images.warnings.iter().cloned());
    let (rows, probabilities, engine) = engine_rows(path, model, &images, runtime, (device, tta))?;
    let predicted: Vec<usize> = rows.iter().map(|r| argmax(r)).collect();
    let truth = &images.labels;
    let all_names = class_names(&images.classes, &predicted, truth);
    let m = zoo_train::report::confusion(&predicted, truth, all_names.len());
    let classes = class_scores(&m, truth, &all_names);
    let correct = predicted.iter().zip(truth).filter(|(p, t)| p == t).count();
    let pictures = Pictures {
        pixels: images.pixels(),
        chw: images.images.chw,
        preprocessing: &profile.preprocessing,
        paths: &images.paths,
    };
    let (confusion_csv, confusion_png, misclassified_png, mistakes) =
        write_files(out, &m, &all_names, &probabilities, truth, &pictures)?;
    let worst = mistakes
        .iter()
        .take(zoo_train::report::pictures::GALLERY_MAX)
        .map(|x| WorstImage {
            path: images.paths.get(x.index).cloned().unwrap_or_default(),
            truth: all_names[x.truth].clone(),
            predicted: all_names[x.predicted].clone(),
            p_predicted: x.p_predicted,
            p_true: x.p_true,
        })
        .collect();
    let n = truth.len();
    Ok(EvaluateReport {
        model: path.display().to_string(),
        data: images.source.clone(),
        samples: n,
        correct,
        accuracy: correct as f64 / n.max(1) as f64,
        accuracy_ci95: wilson95(correct, n),
        classes,
        confusion_csv,
        confusion_png,
        most_confused: zoo_train::report::most_confused(&m, &all_names, 5),
        misclassified: mistakes.len(),
        worst,
        misclassified_png,
        skipped: images.skipped.clone(),
        engine,
        preprocessing: profile.recipe_line(),
        warnings,
    })
}

/// The engine's rows for the images (averaged over the views with `--tta`), their class
/// probabilities (as the file gives them, or the softmax of its logits), and what computed
/// them.
#[allow(clippy::type_complexity)]
fn engine_rows(
    path: &Path,
    model: zoo_onnx::OnnxModel,
    images: &crate::labeled::LabeledImages,
    runtime: Runtime,
    (device, tta): (DeviceChoice, bool),
) -> anyhow::Result<(Vec<Vec<f32>>, Vec<Vec<f64>>, String)> {
    let ends_in_softmax = model.graph.logits_value() != model.graph.output.name;
    let views = crate::tta::views_for(tta, images.images.chw);
    let runner = crate::engines::Runner {
        batch: crate::engines::BATCH,
        runtime,
        device,
        views: &views,
    };
    let computed = crate::engines::outputs(path, model, images.pixels(), runner)?;
    let as_given = ends_in_softmax && !computed.logits;
    let probabilities: Vec<Vec<f64>> = (computed.rows.iter())
        .map(|r| match as_given {
            true => r.iter().map(|&p| p as f64).collect(),
            false => zoo_train::report::softmax(r),
        })
        .collect();
    let engine = crate::tta::described(computed.engine, views.len());
    Ok((computed.rows, probabilities, engine))
}

/// A name for every class index seen (the dataset's, or `class K` beyond them).
fn class_names(names: &[String], predicted: &[usize], truth: &[usize]) -> Vec<String> {
    let seen = predicted.iter().chain(truth).map(|&v| v + 1).max();
    let k = names.len().max(seen.unwrap_or(0));
    (0..k)
        .map(|i| {
            names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("class {i}"))
        })
        .collect()
}

/// Precision and recall of each class that occurs in the truth.
fn class_scores(m: &[Vec<usize>], truth: &[usize], all_names: &[String]) -> Vec<ClassScore> {
    (0..all_names.len())
        .filter(|&c| truth.contains(&c))
        .map(|c| {
            let tp = m[c][c];
            let support: usize = m[c].iter().sum();
            let predicted_c: usize = m.iter().map(|row| row[c]).sum();
            ClassScore {
                name: all_names[c].clone(),
                support,
                precision: if predicted_c == 0 {
                    0.0
                } else {
                    tp as f64 / predicted_c as f64
                },
                recall: tp as f64 / support.max(1) as f64,
            }
        })
        .collect()
}

/// The evaluated images, for the mistakes gallery.
struct Pictures<'a> {
    pixels: crate::pixels::Pixels<'a>,
    chw: [usize; 3],
    preprocessing: &'a zoo_cards::Preprocessing,
    paths: &'a [String],
}

/// confusion.csv, confusion.png and the misclassified gallery in `out`; their paths and the
/// mistakes, worst first.
fn write_files(
    out: &Path,
    m: &[Vec<usize>],
    all_names: &[String],
    probabilities: &[Vec<f64>],
    truth: &[usize],
    pictures: &Pictures,
) -> anyhow::Result<(PathBuf, PathBuf, PathBuf, Vec<zoo_train::report::Mistake>)> {
    use zoo_train::report::pictures as gallery;
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    let confusion_png = out.join("confusion.png");
    let confusion_csv = zoo_train::report::write_confusion(out, m, all_names).map_err(|e| {
        anyhow::anyhow!(
            "cannot write the confusion matrix in {}: {e}",
            out.display()
        )
    })?;
    zoo_train::report::plot::confusion(&confusion_png, m, all_names)?;
    let mistakes = zoo_train::report::mistakes(probabilities, truth);
    let misclassified_png = out.join(gallery::MISCLASSIFIED_PNG);
    // Only the gallery's images are read again, renumbered 0.. in the order shown.
    let shown_mistakes: Vec<_> = (mistakes.iter().take(gallery::GALLERY_MAX).enumerate())
        .map(|(k, m)| zoo_train::report::Mistake {
            index: k,
            ..m.clone()
        })
        .collect();
    let picked: Vec<usize> = (mistakes.iter().take(gallery::GALLERY_MAX))
        .map(|m| m.index)
        .collect();
    let paths: Vec<String> = (picked.iter())
        .map(|&i| pictures.paths.get(i).cloned().unwrap_or_default())
        .collect();
    let values = pictures.pixels.gather(&picked)?;
    let shown = gallery::Shown {
        values: &values,
        chw: pictures.chw,
        preprocessing: pictures.preprocessing,
        names: all_names,
        paths: &paths,
    };
    gallery::misclassified(&shown_mistakes, mistakes.len(), &shown, &misclassified_png)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", misclassified_png.display()))?;
    Ok((confusion_csv, confusion_png, misclassified_png, mistakes))
}

pub fn render(r: &EvaluateReport) -> String {
    use zoo_io::printable;
    let mut s = format!(
        "accuracy {:.2}% ({}/{}), 95% CI [{:.2}%, {:.2}%]\n\n{:<20} {:>8} {:>10} {:>8}\n",
        100.0 * r.accuracy,
        r.correct,
        r.samples,
        100.0 * r.accuracy_ci95[0],
        100.0 * r.accuracy_ci95[1],
        "class",
        "images",
        "precision",
        "recall"
    );
    for c in &r.classes {
        s += &format!(
            "{:<20} {:>8} {:>9.1}% {:>7.1}%\n",
            printable(&c.name),
            c.support,
            100.0 * c.precision,
            100.0 * c.recall
        );
    }
    if !r.most_confused.is_empty() {
        s += "\nmost confused (true -> predicted):\n";
        for p in &r.most_confused {
            let (truth, predicted) = (printable(&p.truth), printable(&p.predicted));
            s += &format!("  {truth} -> {predicted}: {}\n", p.count);
        }
    }
    s += &format!(
        "\nconfusion matrix: {} and {}\nmisclassified ({}, worst first): {}\n",
        r.confusion_csv.display(),
        r.confusion_png.display(),
        r.misclassified,
        r.misclassified_png.display()
    );
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn wilson_interval_matches_the_textbook_values() {
        // 81 of 100: Wilson 95 % interval [0.7222, 0.8749].
        let [lo, hi] = super::wilson95(81, 100);
        assert!(
            (lo - 0.7222).abs() < 1e-3 && (hi - 0.8749).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert_eq!(super::wilson95(0, 0), [0.0, 1.0]);
    }
}
