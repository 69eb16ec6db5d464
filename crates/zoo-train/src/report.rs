//! Logs of a run: metrics.csv and the confusion matrix.

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

pub fn confusion_csv(m: &[Vec<usize>], names: &[String]) -> String {
    let mut s = format!("true\\predicted,{}\n", names.join(","));
    for (name, row) in names.iter().zip(m) {
        let cells: Vec<String> = row.iter().map(|c| c.to_string()).collect();
        s += &format!("{name},{}\n", cells.join(","));
    }
    s
}
