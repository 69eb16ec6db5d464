//! `zoo features MODEL --layer L`: one row per image of a layer's activations.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use zoo_app::labeled::Images;
use zoo_app::model::run_dir;

use crate::args::{FeatureArgs, ModelOpts};
use crate::ui::{emit, note_recipe};

#[derive(Args)]
pub struct FeaturesArgs {
    #[command(flatten)]
    model: ModelOpts,
    #[command(flatten)]
    features: FeatureArgs,
    /// A layer name (see `zoo inspect`) or any node output, e.g. fc7 or a Concat's output.
    #[arg(long)]
    layer: String,
    /// Output file: .csv (path,label,f0,...) or .npy (float32 [N, width], with
    /// OUT.rows.csv beside it).
    #[arg(long, short, default_value = "features.csv")]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

impl FeaturesArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let (resolved, hints) = self.model.spec().resolve()?;
        let images = Images::choose(
            self.features.data,
            run_dir(&resolved),
            self.features.memory.memory_budget,
        )?;
        let report = zoo_app::features::write(
            &resolved.path,
            &hints,
            &images,
            &self.layer,
            self.features.pool,
            &self.out,
        )?;
        note_recipe(self.json, &report.preprocessing);
        emit(self.json, &report, zoo_app::features::render)?;
        Ok(ExitCode::SUCCESS)
    }
}
