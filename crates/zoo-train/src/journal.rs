//! What a run writes while it trains, so that a crash (kill -9, OOM, power loss) leaves a run
//! that can be read and resumed: metrics.csv appended at every iteration, best.onnx and
//! summary.json at every new best, last.onnx and checkpoint.bin at every validation and epoch
//! end. summary.json always says where the run stands (`status`). The TensorBoard file
//! (`tensorboard/`) gets metrics.csv's rows as they are written.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use zoo_net::Network;

use crate::checkpoint::{Checkpoint, CheckpointSource, LoopState, OptimizerState, WeightSource};
use crate::export::Metadata;
use crate::report::{metrics_line, METRICS_HEADER};
use crate::rundir;
use crate::tensorboard::{EventWriter, Step};
use crate::trainer::{IterationRow, Journal, ValidationRow};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Finished,
    Interrupted,
    Failed,
}

/// summary.json while the run is not finished (the final summary replaces it).
#[derive(Serialize)]
struct Progress<'a> {
    status: RunStatus,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    iteration: usize,
    total_iterations: usize,
    epochs_done: usize,
    best: Option<&'a ValidationRow>,
    /// `zoo finetune --resume RUN` continues from here.
    resumable: bool,
    /// Training seconds so far, and the seconds left at the rate so far (validations included).
    #[serde(skip_serializing_if = "Option::is_none")]
    elapsed_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eta_s: Option<f64>,
}

/// Seconds left at the mean rate so far: the last row's elapsed time per iteration done, times
/// the iterations to go.
fn eta_seconds(state: &LoopState, total_iterations: usize) -> Option<f64> {
    let last = state.iterations.last()?;
    let done = last.iteration.max(1) as f64;
    let left = total_iterations.saturating_sub(last.iteration) as f64;
    Some(last.elapsed_s / done * left)
}

pub struct RunJournal {
    dir: PathBuf,
    model: String,
    meta: Metadata,
    /// Parameters whose values can change in training (the rest come from the base model).
    changing: Vec<usize>,
    total_iterations: usize,
    metrics: std::fs::File,
    has_checkpoint: bool,
    /// What every checkpoint of this run belongs to.
    binding: crate::checkpoint::Binding,
    /// This process trains the run (released when the journal is dropped).
    _lock: rundir::RunLock,
    /// best.onnx holds the current best weights (so the results phase need not write it again).
    best_written: bool,
    last_state: LoopState,
    /// The same rows as metrics.csv, for TensorBoard.
    events: Events,
}

/// The run's TensorBoard file and what its rates and wall times are computed from.
struct Events {
    writer: EventWriter,
    /// Unix time at which the run's clock (`elapsed_s`) read zero.
    origin: f64,
    /// The previous iteration's `elapsed_s`, for images/s.
    previous_elapsed: f64,
}

impl Events {
    /// Starts the file afresh with the rows up to a resumed run's checkpoint.
    fn open(dir: &Path, resumed: Option<&LoopState>) -> std::io::Result<Self> {
        let empty = LoopState::default();
        let state = resumed.unwrap_or(&empty);
        let last_elapsed = state.iterations.last().map_or(0.0, |it| it.elapsed_s);
        let origin = crate::tensorboard::unix_now() - last_elapsed;
        let mut previous_elapsed = 0.0;
        let mut earlier = Vec::new();
        for it in &state.iterations {
            let val = state.rows.iter().find(|v| v.iteration == it.iteration);
            let values = event_values(it, val, previous_elapsed);
            earlier.push(Step {
                step: it.iteration as i64,
                wall_time: origin + it.elapsed_s,
                values,
            });
            previous_elapsed = it.elapsed_s;
        }
        Ok(Self {
            writer: EventWriter::create(dir, &earlier)?,
            origin,
            previous_elapsed,
        })
    }

    fn write(&mut self, it: &IterationRow, val: Option<&ValidationRow>) -> std::io::Result<()> {
        let values = event_values(it, val, self.previous_elapsed);
        self.previous_elapsed = it.elapsed_s;
        self.writer.write(&Step {
            step: it.iteration as i64,
            wall_time: self.origin + it.elapsed_s,
            values,
        })
    }
}

/// metrics.csv's values of one row as TensorBoard scalars, with the iteration's images/s.
fn event_values(
    it: &IterationRow,
    val: Option<&ValidationRow>,
    previous_elapsed: f64,
) -> Vec<(String, f32)> {
    let mut values = vec![
        ("train/loss".to_string(), it.train_loss as f32),
        ("train/accuracy".to_string(), it.train_accuracy as f32),
    ];
    let seconds = it.elapsed_s - previous_elapsed;
    if it.images > 0 && seconds > 0.0 {
        let rate = it.images as f64 / seconds;
        values.push(("train/images_per_second".to_string(), rate as f32));
    }
    if let Some(v) = val {
        values.push(("val/loss".to_string(), v.val_loss as f32));
        values.push(("val/accuracy".to_string(), v.val_accuracy as f32));
        values.push(("lr".to_string(), v.lr as f32));
    }
    values
}

impl RunJournal {
    /// Starts metrics.csv afresh, or, when resuming, with the rows up to the checkpoint (a
    /// killed run may have logged iterations after it, which are run again).
    pub fn open(
        dir: &Path,
        model: &str,
        meta: Metadata,
        changing: Vec<usize>,
        total_iterations: usize,
        resumed: Option<&Checkpoint>,
        binding: crate::checkpoint::Binding,
    ) -> std::io::Result<Self> {
        let lock = rundir::lock(dir)?;
        let mut text = String::from(METRICS_HEADER);
        if let Some(c) = resumed {
            for it in &c.state.iterations {
                let val = c.state.rows.iter().find(|v| v.iteration == it.iteration);
                text += &metrics_line(it, val);
            }
        }
        rundir::write(dir, "metrics.csv", text.as_bytes())?;
        let metrics = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("metrics.csv"))?;
        let mut journal = Self {
            dir: dir.to_path_buf(),
            model: model.to_string(),
            meta,
            changing,
            total_iterations,
            metrics,
            has_checkpoint: resumed.is_some(),
            binding,
            _lock: lock,
            best_written: false,
            last_state: resumed.map(|c| c.state.clone()).unwrap_or_default(),
            events: Events::open(dir, resumed.map(|c| &c.state))?,
        };
        journal.progress(RunStatus::Running, None)?;
        Ok(journal)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn meta(&self) -> &Metadata {
        &self.meta
    }

    /// Writes a best.onnx (used when resuming, where the checkpoint holds the best weights).
    pub fn write_best<B: AutodiffBackend>(&mut self, best: &Network<B>) -> std::io::Result<()> {
        crate::export::write(best, &self.meta, &self.dir.join("best.onnx"))?;
        self.best_written = true;
        Ok(())
    }

    pub fn best_is_written(&self) -> bool {
        self.best_written
    }

    /// summary.json while no final summary exists: running, or failed with the error.
    pub fn progress(&mut self, status: RunStatus, error: Option<String>) -> std::io::Result<()> {
        let s = &self.last_state;
        let progress = Progress {
            status,
            model: &self.model,
            error,
            iteration: s.iteration,
            total_iterations: self.total_iterations,
            epochs_done: s.epoch_seconds.len(),
            best: s.best_row.as_ref(),
            resumable: self.has_checkpoint,
            elapsed_s: s.iterations.last().map(|it| it.elapsed_s),
            eta_s: eta_seconds(s, self.total_iterations),
        };
        rundir::write_json(&self.dir, "summary.json", &progress)?;
        // The live view: the curves so far and the page that shows them.
        if !s.iterations.is_empty() {
            crate::report::plot::training_progress(
                &self.dir.join(crate::report::plot::PROGRESS_PNG),
                &s.iterations,
                &s.rows,
            )?;
        }
        crate::report::html::write(&self.dir).map(|_| ())
    }
}

impl<B: AutodiffBackend> Journal<B> for RunJournal {
    fn iteration(
        &mut self,
        row: &IterationRow,
        validation: Option<&ValidationRow>,
    ) -> std::io::Result<()> {
        // One write per row: the line reaches the OS at once (a kill loses nothing), and a
        // power loss at most the rows since the last checkpoint, which a resume runs again.
        self.metrics
            .write_all(metrics_line(row, validation).as_bytes())?;
        self.events.write(row, validation)
    }

    fn new_best(&mut self, best: &Network<B>, state: &LoopState) -> std::io::Result<()> {
        self.write_best(best)?;
        self.last_state = state.clone();
        self.progress(RunStatus::Running, None)
    }

    fn checkpoint(
        &mut self,
        last: &Network<B>,
        best: &Network<B>,
        state: &LoopState,
        optimizer: &OptimizerState,
    ) -> std::io::Result<()> {
        crate::export::write(last, &self.meta, &self.dir.join("last.onnx"))?;
        // Each changing tensor is fetched from its network as it is written.
        let params: Vec<(usize, usize)> = self
            .changing
            .iter()
            .map(|&i| (i, last.plan().params[i].numel()))
            .collect();
        let checkpoint = CheckpointSource {
            binding: &self.binding,
            state,
            last: WeightSource {
                params: params.clone(),
                values: Box::new(|i| Cow::Owned(last.param_value(i))),
            },
            best: WeightSource {
                params,
                values: Box::new(|i| Cow::Owned(best.param_value(i))),
            },
            optimizer,
        };
        let path = self.dir.join(crate::checkpoint::FILE);
        zoo_io::write_atomic_with(&path, |out| checkpoint.write_to(out))?;
        drop(checkpoint);
        self.has_checkpoint = true;
        self.last_state = state.clone();
        self.progress(RunStatus::Running, None)
    }
}
