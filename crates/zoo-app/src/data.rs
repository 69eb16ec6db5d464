//! `zoo data check`.

use std::path::Path;

use zoo_cards::{Preprocessing, RecipeChanges};
use zoo_data::check::{check, CheckReport};

/// The preprocessing a `--model` argument implies, with the command line's changes: a card's
/// directly (no download needed), otherwise the file's profile.
pub fn model_preprocessing(
    model: &str,
    recipe: &RecipeChanges,
) -> anyhow::Result<(String, Preprocessing)> {
    let name_and_recipe = |name: String, base: &Preprocessing| {
        recipe
            .apply(base)
            .map(|p| (name, p))
            .map_err(|e| anyhow::anyhow!("preprocessing: {e}"))
    };
    if let Ok(card) = zoo_cards::find(model) {
        return name_and_recipe(card.name, &card.preprocessing);
    }
    let resolved = zoo_fetch::resolve_model(model, None, None, &zoo_fetch::HubCache::from_env())?;
    let onnx = zoo_onnx::OnnxModel::load(&resolved.path)?;
    let profile =
        crate::profile::profile_of_model(&crate::profile::ModelHints::card(resolved.card), &onnx)?;
    name_and_recipe(model.to_string(), &profile.preprocessing)
}

/// The text rendering of a data check.
pub use zoo_data::check::render;

pub fn check_dataset(
    path: &Path,
    model: Option<&str>,
    recipe: &RecipeChanges,
) -> anyhow::Result<CheckReport> {
    let dataset = zoo_data::open(path)?;
    let model = model.map(|m| model_preprocessing(m, recipe)).transpose()?;
    Ok(check(
        &dataset,
        model.as_ref().map(|(n, p)| (n.as_str(), p)),
    ))
}
