//! `zoo list`: every model card.

use std::process::ExitCode;

use clap::Args;

use crate::ui::{emit, warn};

#[derive(Args)]
pub struct ListArgs {
    #[arg(long)]
    json: bool,
}

impl ListArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let (rows, problems) = zoo_app::fetch::list_models();
        warn(&problems);
        emit(self.json, &rows, |r| zoo_app::fetch::render_list(r))?;
        Ok(ExitCode::SUCCESS)
    }
}
