//! `zoo card new FILE --name NAME`: a card for your own ONNX file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::args::RecipeArgs;
use crate::ui::emit;

#[derive(Subcommand)]
pub enum CardCommand {
    /// Write a card for a local ONNX file (its path and sha256, preprocessing, labels, head
    /// and freeze plan) into the user card folder; then every command takes NAME.
    New {
        /// The ONNX file.
        file: PathBuf,
        /// The card's name (letters, digits, `.`, `_`, `-`; not a built-in card's).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        recipe: RecipeArgs,
        /// Class names: one a line, or synset.txt form `<wnid> <name>`; line i names output i.
        #[arg(long, value_name = "FILE")]
        labels: Option<PathBuf>,
        /// The layer a finetune replaces (default: the last layer with weights).
        #[arg(long, value_name = "LAYER")]
        head: Option<String>,
        /// Layers or `prefix*` patterns to freeze, comma separated (default: all but the head).
        #[arg(long, value_delimiter = ',')]
        freeze: Option<Vec<String>>,
        /// Overwrite a user card of the same name.
        #[arg(long)]
        replace: bool,
        #[arg(long)]
        json: bool,
    },
}

impl CardCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let CardCommand::New {
            file,
            name,
            recipe,
            labels,
            head,
            freeze,
            replace,
            json,
        } = self;
        let new = zoo_app::cards::NewCard {
            name,
            recipe: recipe.changes(),
            labels: zoo_app::model::read_labels(labels.as_deref())?,
            head,
            freeze,
            replace,
        };
        let report = zoo_app::cards::new_user_card(&file, &new)?;
        emit(json, &report, zoo_app::cards::render)?;
        Ok(ExitCode::SUCCESS)
    }
}
