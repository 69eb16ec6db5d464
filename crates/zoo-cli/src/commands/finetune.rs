//! `zoo finetune MODEL --data DIR`: freeze early layers, replace the head, train.

use std::process::ExitCode;

use clap::Args;
use zoo_app::train::Start;

use super::training::{resume, TrainingArgs};
use crate::args::{ModelOpts, RecipeArgs};
use crate::ui::run_training;

#[derive(Args)]
pub struct FinetuneArgs {
    /// A model card name (alexnet, lenet), an ONNX file, or a run directory.
    #[arg(required_unless_present = "resume", conflicts_with = "resume")]
    model: Option<String>,
    /// Use this card's preprocessing and freeze plan for a local file.
    #[arg(long, value_name = "CARD", conflicts_with = "resume")]
    like: Option<String>,
    /// Pick the card's file for this opset.
    #[arg(long, conflicts_with = "resume")]
    opset: Option<i64>,
    #[command(flatten)]
    recipe: RecipeArgs,
    #[command(flatten)]
    training: TrainingArgs,
}

impl FinetuneArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        if let Some(run) = &self.training.resume {
            if !self.recipe.changes().is_empty() {
                anyhow::bail!("--resume continues with the run's own preprocessing (config.json); leave the preprocessing flags out");
            }
            return resume(run, self.training.json);
        }
        let json = self.training.json;
        let (path, hints, name, options) = self.prepared()?;
        run_training(json, |stop, reporter| {
            zoo_app::train::run_finetune(&path, &hints, &name, &options, Some(stop), reporter)
        })
    }

    /// The model's file and hints, its run name, and the options (not for `--resume`).
    pub fn prepared(
        self,
    ) -> anyhow::Result<(
        std::path::PathBuf,
        zoo_app::profile::ModelHints,
        String,
        zoo_app::train::FinetuneOptions,
    )> {
        let model = ModelOpts {
            model: self.model.expect("clap requires MODEL without --resume"),
            like: self.like,
            opset: self.opset,
            recipe: self.recipe,
            labels: None,
        };
        let (resolved, hints) = model.spec().resolve()?;
        let name = zoo_app::model::run_name(&resolved);
        let options = self.training.options(Start::Pretrained, None)?;
        Ok((resolved.path, hints, name, options))
    }

    pub fn resuming(&self) -> bool {
        self.training.resume.is_some()
    }

    pub fn json(&self) -> bool {
        self.training.json
    }
}
