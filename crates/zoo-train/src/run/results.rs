//! The results phase: final evaluation, freeze audit, weights, logs, plots and the summary.

use std::path::Path;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use zoo_cards::Preprocessing;
use zoo_net::{FeatureCut, Network};

use super::data::Data;
use super::model::{frozen_unchanged, Model};
use super::{context, FreezeAudit, Summary};
use crate::journal::{RunJournal, RunStatus};
use crate::options::FinetuneOptions;
use crate::rundir;
use crate::trainer::{Inputs, Reporter, Trained, ValidationRow};

/// The results phase: final evaluation, freeze audit, weights, logs, plots, summary.
pub(super) struct Results<'a, B: AutodiffBackend> {
    pub(super) options: &'a FinetuneOptions,
    pub(super) preprocessing: &'a Preprocessing,
    pub(super) data: &'a Data,
    pub(super) model: &'a Model<B>,
    pub(super) cut: Option<&'a FeatureCut>,
    pub(super) val_in: &'a Inputs,
    pub(super) train_images: usize,
    pub(super) started: Instant,
}
impl<B: AutodiffBackend> Results<'_, B> {
    /// Evaluates the best weights, writes every file of the run and its summary.
    pub(super) fn write(
        &self,
        journal: &RunJournal,
        trained: Trained<B>,
        device: &B::Device,
        reporter: &dyn Reporter,
    ) -> anyhow::Result<Summary> {
        let run_dir = journal.dir().to_path_buf();
        if trained.interrupted {
            reporter.warn("interrupted: writing the best and last weights and the logs");
        }
        // Freeze audit, on both weight sets that are written.
        let model = self.model;
        let unchanged = frozen_unchanged(
            &[&trained.last, &trained.best],
            &model.frozen_idx,
            &model.snapshot,
        );
        let best_inner = trained.best.valid();
        // One pass over the validation set: accuracy, confusion and the mistakes gallery.
        let probabilities = crate::trainer::probabilities(
            &best_inner,
            self.cut,
            self.val_in,
            self.options.batch_size,
            device,
        )?;
        let preds: Vec<usize> = probabilities.iter().map(|p| argmax(p)).collect();
        let io =
            |r: std::io::Result<()>| context(r, &format!("cannot write to {}", run_dir.display()));
        io(self.write_files(journal, &trained, &preds))?;
        io(self.pictures(&best_inner, &probabilities, &run_dir))?;
        let summary = self.summary(journal, &trained, &preds, unchanged);
        io(rundir::write_json(&run_dir, "summary.json", &summary))?;
        io(crate::report::html::write(&run_dir).map(|_| ()))?;
        if !trained.interrupted {
            remove_spilled_cache(&run_dir, reporter);
        }
        if self.options.out.is_none() {
            io(rundir::link_latest(&run_dir))?;
        }
        Ok(summary)
    }

    /// Weights not yet written, metrics.csv, the confusion matrix and the progress plot.
    fn write_files(
        &self,
        journal: &RunJournal,
        trained: &Trained<B>,
        preds: &[usize],
    ) -> std::io::Result<()> {
        let run_dir = journal.dir();
        let state = &trained.state;
        // The journal already wrote the best weights at their validation, and the last ones at
        // the final checkpoint unless Ctrl-C stopped the run between checkpoints.
        let meta = journal.meta();
        if !journal.best_is_written() {
            crate::export::write(&trained.best, meta, &run_dir.join("best.onnx"))?;
        }
        if trained.interrupted {
            crate::export::write(&trained.last, meta, &run_dir.join("last.onnx"))?;
        }
        let metrics = crate::report::metrics_csv(&state.iterations, &state.rows);
        rundir::write(run_dir, "metrics.csv", metrics.as_bytes())?;
        let classes = &self.data.dataset.classes;
        let confusion = crate::report::confusion(preds, &self.val_in.tensors.labels, classes.len());
        crate::report::write_confusion(run_dir, &confusion, classes)?;
        crate::report::plot::training_progress(
            &run_dir.join(crate::report::plot::PROGRESS_PNG),
            &state.iterations,
            &state.rows,
        )?;
        crate::report::plot::confusion(&run_dir.join("confusion.png"), &confusion, classes)
    }

    /// summary.json's content.
    fn summary(
        &self,
        journal: &RunJournal,
        trained: &Trained<B>,
        preds: &[usize],
        unchanged: bool,
    ) -> Summary {
        let (data, model, state) = (self.data, self.model, &trained.state);
        let run_dir = journal.dir().to_path_buf();
        let labels = &self.val_in.tensors.labels;
        let final_acc = if preds.is_empty() {
            f64::NAN
        } else {
            preds.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / preds.len() as f64
        };
        let best_row = state.best_row.clone().unwrap_or(ValidationRow {
            epoch: state.epoch_seconds.len(),
            iteration: state.iteration,
            elapsed_s: 0.0,
            train_loss: f64::NAN,
            train_accuracy: f64::NAN,
            val_loss: f64::NAN,
            val_accuracy: f64::NAN,
            lr: self.options.lr,
        });
        let train_seconds: f64 = state.epoch_seconds.iter().sum();
        Summary {
            status: if trained.interrupted {
                RunStatus::Interrupted
            } else {
                RunStatus::Finished
            },
            resumable: trained.interrupted && run_dir.join(crate::checkpoint::FILE).is_file(),
            run_dir,
            model: journal.model().to_string(),
            classes: data.dataset.classes.clone(),
            train_images: self.train_images,
            val_images: self.val_in.tensors.len(),
            validations: state.rows.len(),
            initial_val_accuracy: state.initial_val_accuracy,
            best_val_accuracy: best_row.val_accuracy,
            best_val_loss: best_row.val_loss,
            best_epoch: best_row.epoch,
            best_iteration: best_row.iteration,
            final_val_accuracy: final_acc,
            epochs_run: state.epoch_seconds.len(),
            stopped_early: trained.stopped_early,
            interrupted: trained.interrupted,
            // No time measured (stopped before the first step) is no rate, not a huge one.
            images_per_s: if train_seconds > 1e-3 {
                state.images_seen as f64 / train_seconds
            } else {
                0.0
            },
            epoch_seconds: state.epoch_seconds.clone(),
            data_load_s: data.load_s,
            wall_time_s: self.started.elapsed().as_secs_f64(),
            feature_cache: self.cut.map(|c| c.value.clone()),
            dead_classes: (state.dead_classes.iter())
                .map(|&k| {
                    data.dataset
                        .classes
                        .get(k)
                        .cloned()
                        .unwrap_or_else(|| format!("output {k}"))
                })
                .collect(),
            skipped: data.skipped.clone(),
            warnings: data.warnings.clone(),
            head: model.head.clone(),
            freeze_audit: FreezeAudit {
                frozen_layers: model.frozen.clone(),
                frozen_params: model.frozen_params,
                trainable_params: model.trainable_params,
                frozen_params_unchanged: unchanged,
                frozen_batchnorm_running_stats: true,
            },
        }
    }

    /// The report's pictures of the best weights: the first convolution's filters, and the
    /// misclassified validation images (decoded again: the feature cache dropped them).
    fn pictures(
        &self,
        best: &Network<B::InnerBackend>,
        probabilities: &[Vec<f64>],
        run_dir: &Path,
    ) -> std::io::Result<()> {
        use crate::report::pictures;
        if let Some(layer) = pictures::first_conv(best) {
            if let Ok((tiles, size)) = pictures::filter_tiles(best, layer, self.preprocessing.color)
            {
                pictures::save_grid(
                    &tiles,
                    size,
                    &run_dir.join(crate::report::html::FILTERS_PNG),
                )?;
            }
        }
        let val = &self.val_in.tensors;
        if val.is_empty() {
            return Ok(());
        }
        let mistakes = crate::report::mistakes(probabilities, &val.labels);
        let worst: Vec<usize> = mistakes
            .iter()
            .take(pictures::GALLERY_MAX)
            .map(|m| val.samples[m.index])
            .collect();
        let dataset = &self.data.dataset;
        let (images, _) = zoo_data::load(dataset, &worst, self.preprocessing);
        // The gallery's images, renumbered to the reloaded ones (all decoded before).
        let shown_mistakes: Vec<crate::report::Mistake> = mistakes
            .iter()
            .take(pictures::GALLERY_MAX)
            .filter_map(|m| {
                let at = images
                    .samples
                    .iter()
                    .position(|&s| s == val.samples[m.index])?;
                Some(crate::report::Mistake {
                    index: at,
                    ..m.clone()
                })
            })
            .collect();
        let paths: Vec<String> = images
            .samples
            .iter()
            .map(|&i| dataset.samples[i].image.name())
            .collect();
        pictures::misclassified(
            &shown_mistakes,
            mistakes.len(),
            &pictures::Shown {
                values: &images.values,
                chw: images.chw,
                preprocessing: self.preprocessing,
                names: &dataset.classes,
                paths: &paths,
            },
            &run_dir.join(pictures::MISCLASSIFIED_PNG),
        )
    }
}

/// A finished run cannot be resumed, so its spilled feature cache (as large as the frozen
/// prefix's output for every image) is only taking disk space.
fn remove_spilled_cache(run_dir: &Path, reporter: &dyn Reporter) {
    let cache = run_dir.join(super::inputs::CACHE_DIR);
    if std::fs::symlink_metadata(&cache).is_err() {
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(&cache) {
        reporter.warn(&format!(
            "cannot remove the finished run's feature cache {}: {e}",
            cache.display()
        ));
    }
}

/// The index of the largest value (0 for none).
fn argmax(p: &[f64]) -> usize {
    (0..p.len())
        .max_by(|&a, &b| p[a].total_cmp(&p[b]))
        .unwrap_or(0)
}
