//! `zoo finetune`: resolves the model and its profile, then hands over to `zoo-train`.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use zoo_train::{FinetuneOptions, Reporter, Summary, TrainProfile};

use crate::profile::{profile_of_model, ModelHints, ProfileSource};

/// Builds the training profile of a model file (card, zoo metadata, or stated defaults, with
/// the command line's preprocessing changes), and a warning about what was assumed.
pub fn train_profile(
    path: &Path,
    hints: &ModelHints,
    name: &str,
) -> anyhow::Result<(TrainProfile, Option<String>)> {
    let onnx = zoo_onnx::OnnxModel::load(path)?;
    let p = profile_of_model(hints, &onnx)?;

    let card_name = match &p.source {
        ProfileSource::Card(c) => Some(c.clone()),
        _ => onnx.metadata.get(crate::profile::META_CARD).cloned(),
    };
    Ok((
        TrainProfile {
            name: name.to_string(),
            card: card_name,
            preprocessing: p.preprocessing,
            preprocessing_from: p.preprocessing_from,
            freeze: p.freeze,
            head: p.head,
        },
        p.warning,
    ))
}

pub fn run_finetune(
    path: &Path,
    hints: &ModelHints,
    name: &str,
    options: &FinetuneOptions,
    stop: Option<Arc<AtomicBool>>,
    reporter: &dyn Reporter,
) -> anyhow::Result<Summary> {
    let (profile, warning) = train_profile(path, hints, name)?;
    if let Some(w) = warning {
        reporter.warn(&w);
    }
    zoo_train::finetune(
        &zoo_train::BaseModel::File(path.to_path_buf()),
        &profile,
        options,
        stop,
        reporter,
    )
}
