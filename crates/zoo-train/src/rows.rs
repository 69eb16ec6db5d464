//! What the training loop tells its caller: messages, progress, and the rows of the
//! validation table and of metrics.csv.

use serde::{Deserialize, Serialize};

/// What the caller sees while training runs.
pub trait Reporter {
    fn info(&self, message: &str);
    fn warn(&self, message: &str);
    fn row(&self, row: &ValidationRow);
    fn progress(&self, iteration: usize, total: usize);
}

/// A [`Reporter`] for programs that use zoo as a library: messages and one line per
/// validation on stderr, no progress bar.
pub struct StderrReporter;

impl Reporter for StderrReporter {
    fn info(&self, message: &str) {
        eprintln!("{message}");
    }

    fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }

    fn row(&self, r: &ValidationRow) {
        eprintln!(
            "epoch {} iteration {}: validation accuracy {:.2}%, loss {:.4}",
            r.epoch,
            r.iteration,
            100.0 * r.val_accuracy,
            r.val_loss
        );
    }

    fn progress(&self, _: usize, _: usize) {}
}

/// One validation: a row of the MATLAB-style verbose table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ValidationRow {
    pub epoch: usize,
    pub iteration: usize,
    #[serde(with = "crate::checkpoint::nan_as_null")]
    pub elapsed_s: f64,
    #[serde(with = "crate::checkpoint::nan_as_null")]
    pub train_loss: f64,
    #[serde(with = "crate::checkpoint::nan_as_null")]
    pub train_accuracy: f64,
    #[serde(with = "crate::checkpoint::nan_as_null")]
    pub val_loss: f64,
    #[serde(with = "crate::checkpoint::nan_as_null")]
    pub val_accuracy: f64,
    #[serde(with = "crate::checkpoint::nan_as_null")]
    pub lr: f64,
}

/// One training iteration (for metrics.csv and the progress plot).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IterationRow {
    pub epoch: usize,
    pub iteration: usize,
    #[serde(with = "crate::checkpoint::nan_as_null")]
    pub elapsed_s: f64,
    #[serde(with = "crate::checkpoint::nan_as_null")]
    pub train_loss: f64,
    #[serde(with = "crate::checkpoint::nan_as_null")]
    pub train_accuracy: f64,
    /// Images in this iteration's batch (0 in checkpoints written before it was recorded).
    #[serde(default)]
    pub images: usize,
}
