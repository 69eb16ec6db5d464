//! `zoo report RUN`: rebuilds a run's report.html from its files.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Args)]
pub struct ReportArgs {
    /// Run directory (default runs/latest).
    #[arg(default_value = "runs/latest")]
    run: PathBuf,
}

impl ReportArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let page = zoo_app::train::write_report(&self.run)?;
        println!("{}", page.display());
        Ok(ExitCode::SUCCESS)
    }
}
