//! `zoo inspect MODEL`: layers, shapes, parameters, the freeze plan and op support.

use std::process::ExitCode;

use clap::Args;
use zoo_app::inspect;

use crate::args::ModelOpts;
use crate::ui::{emit, warn};

#[derive(Args)]
pub struct InspectArgs {
    #[command(flatten)]
    model: ModelOpts,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

impl InspectArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let (resolved, hints) = self.model.spec().resolve()?;
        let report = inspect::inspect(&resolved.path, &hints)?;
        if let Some(w) = report.profile.as_ref().and_then(|p| p.warning.clone()) {
            warn(&[w]);
        }
        emit(self.json, &report, inspect::render)?;
        Ok(if report.import_error.is_some() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        })
    }
}
