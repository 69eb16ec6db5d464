//! How a model is to be fed and finetuned: from its card, from zoo metadata inside the file,
//! or (with a warning) from stated defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use zoo_cards::{Card, LabelFormat, Preprocessing, RecipeChanges};
use zoo_net::Plan;

/// Metadata keys zoo writes into exported ONNX files (defined with the writer).
pub use zoo_train::export::{META_CARD, META_FREEZE, META_HEAD, META_LABELS, META_PREPROCESSING};

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProfileSource {
    Card(String),
    Metadata,
    Default,
}

/// What the command line adds to a model file: the card (by name or `--like`), changes to its
/// preprocessing (`--preprocessing`, `--mean`, ...), and a label file (`--labels`).
#[derive(Clone, Debug, Default)]
pub struct ModelHints {
    pub card: Option<Card>,
    pub recipe: RecipeChanges,
    /// The names of `--labels FILE`, and the file.
    pub labels: Option<(Vec<String>, PathBuf)>,
}

impl ModelHints {
    pub fn card(card: Option<Card>) -> Self {
        Self {
            card,
            ..Self::default()
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    pub source: ProfileSource,
    pub preprocessing: Preprocessing,
    /// Where the preprocessing came from, in words (the card, the file's metadata, the
    /// defaults, and the command line's changes).
    pub preprocessing_from: String,
    /// Layers frozen by default when finetuning.
    pub freeze: Vec<String>,
    /// The layer a finetune replaces.
    pub head: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl Profile {
    pub fn is_frozen(&self, layer: &str) -> bool {
        self.freeze.iter().any(|f| f == layer)
    }

    /// The one line every command prints: the recipe in force and where it came from.
    pub fn recipe_line(&self) -> String {
        format!(
            "preprocessing: {} ({})",
            self.preprocessing.describe(),
            self.preprocessing_from
        )
    }
}

/// Card first (by name or `--like`), then the file's zoo metadata, then defaults; the command
/// line's preprocessing changes over whichever applies.
pub fn profile(hints: &ModelHints, plan: &Plan) -> anyhow::Result<Profile> {
    let layers: Vec<String> = plan.layers.iter().map(|l| l.name.clone()).collect();
    profile_for(hints, &plan.metadata, plan.graph.input_chw(), &layers)
}

/// The same, from a parsed file (no network is built), refused when its images would not fit
/// the model's input.
pub fn profile_of_model(
    hints: &ModelHints,
    model: &zoo_onnx::OnnxModel,
) -> anyhow::Result<Profile> {
    let profile = recipe_of_model(hints, model)?;
    check_fits_input(&profile.preprocessing, model.graph.input_chw())?;
    Ok(profile)
}

/// [`profile_of_model`] without the fit check, for a command that preprocesses no image
/// (`verify` on random inputs still names the recipe).
pub fn recipe_of_model(hints: &ModelHints, model: &zoo_onnx::OnnxModel) -> anyhow::Result<Profile> {
    let layers = zoo_net::plan::layer_names(&model.graph);
    profile_for(hints, &model.metadata, model.graph.input_chw(), &layers)
}

/// The most values one preprocessed image may have (4096 x 4096 x 3, 192 MiB as f32).
const MAX_IMAGE_VALUES: u64 = 4096 * 4096 * 3;

/// Refuses a recipe whose images do not fit the model's fixed input (a `--size` or `--color`
/// the model cannot take): every command would fail on the first image, or write misaligned
/// rows. Axes the file leaves free (0) take any size.
fn check_fits_input(p: &Preprocessing, [c, h, w]: [usize; 3]) -> anyhow::Result<()> {
    let [ph, pw] = p.size.map(|v| v as usize);
    let channels = p.color.channels();
    let fits = |want: usize, have: usize| want == 0 || want == have;
    let values = channels as u64 * ph as u64 * pw as u64;
    if values > MAX_IMAGE_VALUES {
        anyhow::bail!(
            "--size {ph}x{pw} makes images of {values} values; zoo takes up to {MAX_IMAGE_VALUES} per image (4096x4096 RGB)"
        );
    }
    if fits(c, channels) && fits(h, ph) && fits(w, pw) {
        return Ok(());
    }
    let axis = |v: usize| {
        if v == 0 {
            "any".to_string()
        } else {
            v.to_string()
        }
    };
    anyhow::bail!(
        "the preprocessing makes [{channels}, {ph}, {pw}] images (channels, height, width) but the model takes [{}, {}, {}]; match --size and --color to the model's input (or leave them out)",
        axis(c),
        axis(h),
        axis(w)
    )
}

fn profile_for(
    hints: &ModelHints,
    metadata: &BTreeMap<String, String>,
    chw: [usize; 3],
    layers: &[String],
) -> anyhow::Result<Profile> {
    with_recipe(
        profile_from(hints.card.as_ref(), metadata, chw, layers),
        &hints.recipe,
    )
}

fn with_recipe(mut profile: Profile, recipe: &RecipeChanges) -> anyhow::Result<Profile> {
    if recipe.is_empty() {
        return Ok(profile);
    }
    profile.preprocessing = recipe
        .apply(&profile.preprocessing)
        .map_err(|e| anyhow::anyhow!("preprocessing: {e}"))?;
    profile.preprocessing_from =
        format!("{} over {}", recipe.describe(), profile.preprocessing_from);
    if profile.source == ProfileSource::Default {
        // The recipe is the user's now; the freeze plan a finetune assumes is in its own
        // "model:" line.
        profile.warning = None;
    }
    Ok(profile)
}

fn profile_from(
    card: Option<&Card>,
    metadata: &BTreeMap<String, String>,
    chw: [usize; 3],
    layers: &[String],
) -> Profile {
    let head = layers.last().cloned().unwrap_or_default();
    // A card's plan: freeze patterns expanded to this file's layers; no head name means the
    // last layer.
    let card_plan = |c: &Card| {
        let head = Some(c.finetune.head.clone())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| head.clone());
        (
            zoo_cards::resolve_freeze(&c.finetune.freeze, layers, &head),
            head,
        )
    };
    if let Some(card) = card {
        let (freeze, head) = card_plan(card);
        let kind = if card.is_user_card() {
            "user card"
        } else {
            "card"
        };
        return Profile {
            source: ProfileSource::Card(card.name.clone()),
            preprocessing: card.preprocessing.clone(),
            preprocessing_from: format!("{kind} `{}`", card.name),
            freeze,
            head,
            warning: None,
        };
    }
    let default_freeze: Vec<String> = layers[..layers.len().saturating_sub(1)].to_vec();
    if let Some(p) = from_metadata(metadata) {
        let card = metadata
            .get(META_CARD)
            .and_then(|n| zoo_cards::find(n).ok());
        let recorded_freeze = metadata
            .get(META_FREEZE)
            .and_then(|f| serde_json::from_str::<Vec<String>>(f).ok());
        let recorded_head = metadata.get(META_HEAD).filter(|h| layers.contains(h));
        let (freeze, head) = match (card, recorded_freeze, recorded_head) {
            (Some(c), _, _) => card_plan(&c),
            (None, Some(f), Some(h)) => (f, h.clone()),
            _ => (default_freeze, head),
        };
        return Profile {
            source: ProfileSource::Metadata,
            preprocessing: p,
            preprocessing_from: "the file's zoo metadata".into(),
            freeze,
            head,
            warning: None,
        };
    }
    let preprocessing = Preprocessing::default_for(chw);
    let warning = format!(
        "no model card and no zoo metadata: assuming preprocessing \"{}\" and freeze plan \"freeze {}; replace {}\". Pass --preprocessing imagenet|caffe|inception|unit|raw (or --mean, --std, ...), or --like CARD (a card of the same family, e.g. --like alexnet or --like resnet18-v1; `zoo list` shows them all) to use a card's instead.",
        preprocessing.describe(),
        zoo_cards::describe_layers(&default_freeze),
        if head.is_empty() { "nothing" } else { &head },
    );
    Profile {
        source: ProfileSource::Default,
        preprocessing,
        preprocessing_from: "zoo's default for a file without card or metadata".into(),
        freeze: default_freeze,
        head,
        warning: Some(warning),
    }
}

fn from_metadata(meta: &BTreeMap<String, String>) -> Option<Preprocessing> {
    let text = meta.get(META_PREPROCESSING)?;
    let p: Preprocessing = serde_json::from_str(text).ok()?;
    p.validate().ok().map(|_| p)
}

/// The number of classes a classifier's output has, when its shape says.
pub fn output_classes(model: &zoo_onnx::OnnxModel) -> Option<usize> {
    model.graph.output.dims.last().copied().flatten()
}

/// Labels: `--labels FILE` (its count must be the output's), else the file's metadata, else the
/// card (inline names, or its verified label file in zoo's cache after `zoo fetch`), else class
/// numbers.
pub fn model_labels(
    model: &zoo_onnx::OnnxModel,
    hints: &ModelHints,
) -> anyhow::Result<(Option<Vec<String>>, String)> {
    if let Some((names, file)) = &hints.labels {
        if let Some(outputs) = output_classes(model).filter(|&n| n != names.len()) {
            anyhow::bail!(
                "the label file {} has {} names but the model has {outputs} outputs (line i names output i)",
                file.display(),
                names.len()
            );
        }
        return Ok((Some(names.clone()), format!("{}", file.display())));
    }
    Ok(known_labels(model, hints.card.as_ref()))
}

fn known_labels(model: &zoo_onnx::OnnxModel, card: Option<&Card>) -> (Option<Vec<String>>, String) {
    if let Some(list) = model
        .metadata
        .get(META_LABELS)
        .and_then(|t| serde_json::from_str::<Vec<String>>(t).ok())
    {
        return (Some(list), "the file's zoo metadata".into());
    }
    let Some(card) = card else {
        return (None, "class numbers (no labels known)".into());
    };
    match card.labels.format {
        LabelFormat::Inline if card.labels.names.is_empty() => {
            (None, "class numbers (no labels known)".into())
        }
        LabelFormat::Inline => (
            Some(card.labels.names.clone()),
            format!("card `{}`", card.name),
        ),
        LabelFormat::Synset | LabelFormat::Lines => {
            let path = card
                .labels
                .sha256
                .as_deref()
                .map(|s| zoo_fetch::ZooCache::from_env().labels_path(s));
            let limit = zoo_cards::MAX_LABEL_FILE_BYTES;
            match path.and_then(|p| zoo_io::read_text_limited(&p, limit).ok()) {
                Some(text) => {
                    let names = text
                        .lines()
                        .map(|l| match card.labels.format {
                            // "n01440764 tench, Tinca tinca" -> "tench, Tinca tinca"
                            LabelFormat::Synset => {
                                l.split_once(' ').map_or(l, |(_, rest)| rest).to_string()
                            }
                            _ => l.to_string(),
                        })
                        .collect();
                    (
                        Some(names),
                        format!("card `{}` (cached label file)", card.name),
                    )
                }
                None => (
                    None,
                    format!(
                        "class numbers (run `zoo fetch {}` for its labels)",
                        card.name
                    ),
                ),
            }
        }
    }
}
