//! What a run shows: its logs (metrics.csv, the confusion matrix, the mistakes) here, and in
//! the submodules its pictures, shared with `zoo show` and `zoo evaluate`: `plot` (training
//! progress, confusion), `pictures` (filters, feature maps, galleries), `decision` (linear2d's
//! decision line) and `html` (the run's report.html).

pub mod decision;
pub mod html;
pub mod pictures;
pub mod plot;

use crate::trainer::{IterationRow, ValidationRow};

pub const METRICS_HEADER: &str =
    "epoch,iteration,elapsed_s,train_loss,train_accuracy,val_loss,val_accuracy,lr\n";

/// One row per iteration; validation columns are filled where a validation ran.
pub fn metrics_csv(iterations: &[IterationRow], validations: &[ValidationRow]) -> String {
    let mut s = String::from(METRICS_HEADER);
    for it in iterations {
        let val = validations.iter().find(|v| v.iteration == it.iteration);
        s += &metrics_line(it, val);
    }
    s
}

pub fn metrics_line(it: &IterationRow, val: Option<&ValidationRow>) -> String {
    format!(
        "{},{},{:.3},{:.6},{:.4},{},{},{}\n",
        it.epoch,
        it.iteration,
        it.elapsed_s,
        it.train_loss,
        it.train_accuracy,
        val.map_or(String::new(), |v| format!("{:.6}", v.val_loss)),
        val.map_or(String::new(), |v| format!("{:.4}", v.val_accuracy)),
        val.map_or(String::new(), |v| format!("{}", v.lr)),
    )
}

/// `m[true][predicted]` counts.
pub fn confusion(predicted: &[usize], truth: &[usize], classes: usize) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0; classes]; classes];
    for (&p, &t) in predicted.iter().zip(truth) {
        if p < classes && t < classes {
            m[t][p] += 1;
        }
    }
    m
}

/// The confusion matrix as RFC 4180 CSV: the classes across and down (names quoted and
/// formula-guarded by `zoo_io::csv`), counts in the cells.
pub fn confusion_csv(m: &[Vec<usize>], names: &[String]) -> String {
    use zoo_io::csv;
    let header =
        std::iter::once(csv::text("true\\predicted")).chain(names.iter().map(|n| csv::text(n)));
    let mut s = csv::row(header);
    for (name, row) in names.iter().zip(m) {
        let cells =
            std::iter::once(csv::text(name).into_owned()).chain(row.iter().map(csv::number));
        s += &csv::row(cells);
    }
    s
}

/// The confusion matrix as the report reads it (`confusion.json` beside `confusion.csv`):
/// numbers from structured data, not from re-splitting a CSV.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Confusion {
    pub classes: Vec<String>,
    /// `counts[truth][predicted]`.
    pub counts: Vec<Vec<usize>>,
}

pub const CONFUSION_CSV: &str = "confusion.csv";
pub const CONFUSION_JSON: &str = "confusion.json";

/// Writes `dir/confusion.csv` and `dir/confusion.json` (atomically); the CSV's path.
pub fn write_confusion(
    dir: &std::path::Path,
    m: &[Vec<usize>],
    names: &[String],
) -> std::io::Result<std::path::PathBuf> {
    let confusion = Confusion {
        classes: names.to_vec(),
        counts: m.to_vec(),
    };
    crate::rundir::write_json(dir, CONFUSION_JSON, &confusion)?;
    crate::rundir::write(dir, CONFUSION_CSV, confusion_csv(m, names).as_bytes())?;
    Ok(dir.join(CONFUSION_CSV))
}

/// Two classes the network mixes up: how often `truth` was predicted as `predicted`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ConfusedPair {
    pub truth: String,
    pub predicted: String,
    pub count: usize,
}

/// The `top` largest off-diagonal cells of the confusion matrix, largest first (fastai's
/// `most_confused`).
pub fn most_confused(m: &[Vec<usize>], names: &[String], top: usize) -> Vec<ConfusedPair> {
    let mut cells: Vec<(usize, usize, usize)> = m
        .iter()
        .enumerate()
        .flat_map(|(t, row)| {
            row.iter()
                .enumerate()
                .filter(move |&(p, &c)| p != t && c > 0)
                .map(move |(p, &c)| (t, p, c))
        })
        .collect();
    cells.sort_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
    let name = |i: usize| {
        names
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("class {i}"))
    };
    cells
        .into_iter()
        .take(top)
        .map(|(t, p, count)| ConfusedPair {
            truth: name(t),
            predicted: name(p),
            count,
        })
        .collect()
}

/// A misclassified image: which one, its true and predicted class, and the probabilities the
/// network gave both.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Mistake {
    pub index: usize,
    pub truth: usize,
    pub predicted: usize,
    pub p_predicted: f64,
    pub p_true: f64,
}

/// The misclassified images, worst first: lowest probability on the true class (fastai's
/// `plot_top_losses` order: the highest cross-entropy).
pub fn mistakes(probabilities: &[Vec<f64>], truth: &[usize]) -> Vec<Mistake> {
    let mut out: Vec<Mistake> = probabilities
        .iter()
        .zip(truth)
        .enumerate()
        .filter_map(|(index, (p, &t))| {
            let predicted = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b]))?;
            (predicted != t).then(|| Mistake {
                index,
                truth: t,
                predicted,
                p_predicted: p[predicted],
                p_true: p.get(t).copied().unwrap_or(0.0),
            })
        })
        .collect();
    out.sort_by(|a, b| a.p_true.total_cmp(&b.p_true).then(a.index.cmp(&b.index)));
    out
}

pub fn softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let exp: Vec<f64> = row.iter().map(|&x| (x as f64 - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistakes_come_worst_first_and_confusions_largest_first() {
        let p = vec![
            vec![0.9, 0.1, 0.0],   // right
            vec![0.2, 0.7, 0.1],   // true 0, predicted 1, p_true 0.2
            vec![0.05, 0.9, 0.05], // true 0, predicted 1, p_true 0.05
            vec![0.1, 0.3, 0.6],   // true 1, predicted 2
        ];
        let m = mistakes(&p, &[0, 0, 0, 1]);
        assert_eq!(m.iter().map(|x| x.index).collect::<Vec<_>>(), [2, 1, 3]);
        assert_eq!((m[0].truth, m[0].predicted), (0, 1));
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let conf = confusion(&[0, 1, 1, 2], &[0, 0, 0, 1], 3);
        let top = most_confused(&conf, &names, 5);
        assert_eq!(
            (
                top[0].truth.as_str(),
                top[0].predicted.as_str(),
                top[0].count
            ),
            ("a", "b", 2)
        );
        assert_eq!(top.len(), 2);
    }
}
