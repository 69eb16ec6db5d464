//! `zoo data check DATA`: a dataset's health.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::args::RecipeArgs;
use crate::ui::emit;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Class counts, image sizes, formats, unreadable files, duplicates, grayscale vs colour.
    Check {
        /// A folder of class folders, a CSV manifest (path,label[,split]), or MNIST IDX.
        data: PathBuf,
        /// Also say what this model's preprocessing will do to the images.
        #[arg(long, value_name = "MODEL")]
        model: Option<String>,
        #[command(flatten)]
        recipe: RecipeArgs,
        #[arg(long)]
        json: bool,
    },
}

impl DataCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let DataCommand::Check {
            data,
            model,
            recipe,
            json,
        } = self;
        let changes = recipe.changes();
        if model.is_none() && !changes.is_empty() {
            anyhow::bail!("preprocessing flags need --model (they change its recipe)");
        }
        let report = zoo_app::data::check_dataset(&data, model.as_deref(), &changes)?;
        emit(json, &report, zoo_app::data::render)?;
        Ok(ExitCode::SUCCESS)
    }
}
