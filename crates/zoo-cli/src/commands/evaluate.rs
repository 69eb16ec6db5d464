//! `zoo evaluate MODEL --data DIR`: accuracy with its interval, per-class figures, confusion.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use zoo_app::labeled::Images;
use zoo_app::model::run_dir;

use crate::args::{MemoryArg, ModelOpts, RuntimeArgs};
use crate::ui::{emit, note_recipe, warn};

#[derive(Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    model: ModelOpts,
    /// Labelled images: class folders, CSV manifest, or MNIST IDX (default for a run
    /// directory: the run's own validation images).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where confusion.csv and confusion.png go (default RUN/evaluation or ./evaluation).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    memory: MemoryArg,
    #[arg(long)]
    json: bool,
}

impl EvaluateArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let (resolved, hints) = self.model.spec().resolve()?;
        let run = run_dir(&resolved);
        let out =
            (self.out).unwrap_or_else(|| run.map_or("evaluation".into(), |r| r.join("evaluation")));
        let data = Images::choose(self.data, run, self.memory.memory_budget)?;
        let RuntimeArgs {
            engine,
            device,
            tta,
        } = self.runtime;
        let report = zoo_app::evaluate::evaluate(
            &resolved.path,
            &hints,
            &data,
            &out,
            engine,
            (device, tta),
        )?;
        warn(&report.warnings);
        note_recipe(self.json, &report.preprocessing);
        emit(self.json, &report, zoo_app::evaluate::render)?;
        Ok(ExitCode::SUCCESS)
    }
}
