//! `zoo predict MODEL IMAGE...`: labels and probabilities.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::args::{ModelOpts, RuntimeArgs};
use crate::ui::{emit, note_recipe, warn};

#[derive(Args)]
pub struct PredictArgs {
    #[command(flatten)]
    model: ModelOpts,
    /// Image files.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[arg(long)]
    json: bool,
}

impl PredictArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let (resolved, hints) = self.model.spec().resolve()?;
        let RuntimeArgs {
            engine,
            device,
            tta,
        } = self.runtime;
        let report = zoo_app::predict::predict(
            &resolved.path,
            &hints,
            &self.images,
            self.top,
            engine,
            (device, tta),
        )?;
        warn(&report.warnings);
        note_recipe(self.json, &report.preprocessing);
        emit(self.json, &report, zoo_app::predict::render)?;
        Ok(ExitCode::SUCCESS)
    }
}
