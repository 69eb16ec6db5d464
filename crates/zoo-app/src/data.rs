//! `zoo data check`.

use std::path::Path;

use zoo_cards::Preprocessing;
use zoo_data::check::{check, CheckReport};

/// The preprocessing a `--model` argument implies: a card's directly (no download needed),
/// otherwise the file's profile.
pub fn model_preprocessing(model: &str) -> anyhow::Result<(String, Preprocessing)> {
    if let Ok(card) = zoo_cards::find(model) {
        return Ok((card.name, card.preprocessing));
    }
    let resolved = zoo_fetch::resolve_model(model, None, None, &zoo_fetch::HubCache::from_env())?;
    let onnx = zoo_onnx::OnnxModel::load(&resolved.path)?;
    let profile = crate::profile::profile_of_model(resolved.card.as_ref(), &onnx);
    Ok((model.to_string(), profile.preprocessing))
}

pub fn check_dataset(path: &Path, model: Option<&str>) -> anyhow::Result<CheckReport> {
    let dataset = zoo_data::open(path)?;
    let model = model.map(model_preprocessing).transpose()?;
    Ok(check(
        &dataset,
        model.as_ref().map(|(n, p)| (n.as_str(), p)),
    ))
}
