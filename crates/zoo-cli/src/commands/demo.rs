//! `zoo demo`: the whole pipeline offline on embedded MNIST defaults.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::ui::{emit, passed, CliReporter};

#[derive(Args)]
pub struct DemoArgs {
    /// Where the demo's files go.
    #[arg(long, default_value = "zoo-demo")]
    out: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

impl DemoArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let reporter = CliReporter::new(self.json);
        let report = zoo_app::demo::run_demo(&self.out, None, &reporter)?;
        reporter.finish();
        emit(self.json, &report, zoo_app::demo::render)?;
        Ok(passed(report.parity_pass && report.import_parity_pass))
    }
}
