//! Naming a model: a card (`alexnet`), an ONNX file or a run directory, resolved to a file
//! plus what the card and the caller say about it (preprocessing changes, labels).

use std::path::{Path, PathBuf};

use zoo_cards::RecipeChanges;
use zoo_fetch::{resolve_model, HubCache, ModelArg, ResolvedModel};

use crate::profile::ModelHints;

/// A model as a user names it.
#[derive(Clone, Debug, Default)]
pub struct ModelSpec {
    /// A card name, an ONNX file, or a run directory.
    pub model: String,
    /// Use this card's preprocessing and freeze plan for a local file.
    pub like: Option<String>,
    /// Pick the card's file for this opset.
    pub opset: Option<i64>,
    /// Preprocessing changes over the card's or the file's recipe.
    pub recipe: RecipeChanges,
    /// Class names, one a line (or synset.txt form).
    pub labels: Option<PathBuf>,
}

impl ModelSpec {
    /// A model by name, with nothing changed.
    pub fn named(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            ..Self::default()
        }
    }

    /// The model file (from the cache for a card), and the hints every command reads.
    pub fn resolve(&self) -> anyhow::Result<(ResolvedModel, ModelHints)> {
        let resolved = resolve_model(
            &self.model,
            self.like.as_deref(),
            self.opset,
            &HubCache::from_env(),
        )?;
        let hints = ModelHints {
            card: resolved.card.clone(),
            recipe: self.recipe.clone(),
            labels: read_labels(self.labels.as_deref())?,
        };
        Ok((resolved, hints))
    }
}

/// A label file's names, with its path.
pub fn read_labels(file: Option<&Path>) -> anyhow::Result<Option<(Vec<String>, PathBuf)>> {
    file.map(|f| {
        zoo_cards::read_label_file(f)
            .map(|names| (names, f.to_path_buf()))
            .map_err(anyhow::Error::msg)
    })
    .transpose()
}

/// The name a run takes from its model: the card's, else the file's stem.
pub fn run_name(resolved: &ResolvedModel) -> String {
    match &resolved.arg {
        ModelArg::Card(c) => c.clone(),
        _ => resolved
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into()),
    }
}

/// The run directory a model names, when it names one (its validation images and evaluation
/// folder are then the defaults).
pub fn run_dir(resolved: &ResolvedModel) -> Option<&Path> {
    match &resolved.arg {
        ModelArg::RunDir(run) => Some(run.as_path()),
        _ => None,
    }
}
