//! `zoo card new`: a card for your own ONNX file, so that every command takes it by name.

use std::path::{Path, PathBuf};

use serde::Serialize;
pub use zoo_cards::RecipeChanges;
use zoo_cards::{
    Card, FinetunePlan, InputSpec, LabelFormat, Labels, Layout, OutputKind, OutputSpec, Source,
};

use crate::profile::{model_labels, profile_of_model, ModelHints};

/// The preprocessing vocabulary a caller names recipes with.
pub use zoo_cards::{
    parse_channel_values, parse_resize, parse_size, ColorOrder, Interpolation, Preset, ResizeMode,
};

/// What `zoo card new` is told besides the file.
#[derive(Clone, Debug, Default)]
pub struct NewCard {
    pub name: String,
    pub recipe: RecipeChanges,
    /// `--labels FILE`: names and file.
    pub labels: Option<(Vec<String>, PathBuf)>,
    /// The layer a finetune replaces (default: the file's last layer with weights).
    pub head: Option<String>,
    /// Layers (or `prefix*` patterns) to freeze (default: every layer but the head).
    pub freeze: Option<Vec<String>>,
    /// Overwrite an existing user card of that name.
    pub replace: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct NewCardReport {
    pub name: String,
    pub card_file: PathBuf,
    pub model: PathBuf,
    pub sha256: String,
    pub preprocessing: String,
    pub labels: usize,
    pub head: String,
    pub freeze: Vec<String>,
}

/// Reads the file, builds its card (input and output from the graph, the recipe from the file's
/// metadata or the defaults with the changes over it), and writes it to the user card folder.
pub fn new_user_card(file: &Path, new: &NewCard) -> anyhow::Result<NewCardReport> {
    zoo_cards::check_name(&new.name).map_err(anyhow::Error::msg)?;
    if zoo_cards::is_built_in(&new.name) {
        anyhow::bail!(
            "`{}` is the name of a built-in card (see `zoo list`); choose another --name",
            new.name
        );
    }
    let path = std::fs::canonicalize(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let sha256 = zoo_fetch::sha256_file(&path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let size = std::fs::metadata(&path)?.len();
    let model = zoo_onnx::OnnxModel::load(&path)?;
    let hints = ModelHints {
        card: None,
        recipe: new.recipe.clone(),
        labels: new.labels.clone(),
    };
    let profile = profile_of_model(&hints, &model)?;
    let (head, freeze) = finetune_plan(&model, new, &profile)?;
    let (names, _) = model_labels(&model, &hints)?;
    let names = names.unwrap_or_default();
    let file = UserFile {
        path: &path,
        sha256: &sha256,
        size,
    };
    let card = user_card(&new.name, &file, &model, &profile, names, (&head, &freeze));
    let card_file = zoo_cards::write_user_card(&card, new.replace)?;
    Ok(NewCardReport {
        name: card.name,
        card_file,
        model: path,
        sha256,
        preprocessing: profile.recipe_line(),
        labels: card.labels.count,
        head,
        freeze,
    })
}

/// `--head` and `--freeze` (or the profile's), checked against the file's layers.
fn finetune_plan(
    model: &zoo_onnx::OnnxModel,
    new: &NewCard,
    profile: &crate::profile::Profile,
) -> anyhow::Result<(String, Vec<String>)> {
    let layers = zoo_net::plan::layer_names(&model.graph);
    let head = new.head.clone().unwrap_or_else(|| profile.head.clone());
    if !layers.contains(&head) {
        anyhow::bail!(
            "--head: no layer `{head}` with weights; layers: {}",
            layers.join(", ")
        );
    }
    let freeze = new.freeze.clone().unwrap_or_else(|| profile.freeze.clone());
    let unknown: Vec<&str> = freeze
        .iter()
        .filter(|p| !layers.iter().any(|l| zoo_cards::layer_matches(p, l)))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        anyhow::bail!(
            "--freeze: {} name no layer; layers: {}",
            unknown.join(", "),
            layers.join(", ")
        );
    }
    Ok((head, freeze))
}

/// The file a user card names.
struct UserFile<'a> {
    path: &'a Path,
    sha256: &'a str,
    size: u64,
}

/// The card: the file, its interface, recipe, labels and finetune plan.
fn user_card(
    name: &str,
    file: &UserFile,
    model: &zoo_onnx::OnnxModel,
    profile: &crate::profile::Profile,
    names: Vec<String>,
    (head, freeze): (&str, &[String]),
) -> Card {
    let path = file.path;
    Card {
        name: name.to_string(),
        family: "user".into(),
        title: format!("{name} (your file {})", path.display()),
        task: "image-classification".into(),
        license: "as the file's own".into(),
        source: Source {
            repo: String::new(),
            revision: String::new(),
            path: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            local: Some(path.to_path_buf()),
            sha256: file.sha256.to_string(),
            size: file.size,
            opset: model.graph.opset,
        },
        variants: Vec::new(),
        input: input_spec(model),
        output: OutputSpec {
            name: model.graph.output.name.clone(),
            kind: if model.graph.logits_value() != model.graph.output.name {
                OutputKind::Probabilities
            } else {
                OutputKind::Logits
            },
        },
        preprocessing: profile.preprocessing.clone(),
        labels: Labels {
            format: LabelFormat::Inline,
            hub_path: None,
            url: None,
            sha256: None,
            size: None,
            count: names.len(),
            names,
        },
        finetune: FinetunePlan {
            freeze: freeze.to_vec(),
            head: head.to_string(),
        },
        user_file: None,
    }
}

fn input_spec(model: &zoo_onnx::OnnxModel) -> InputSpec {
    let [c, h, w] = model.graph.input_chw();
    let (shape, layout) = match model.graph.layout {
        zoo_onnx::InputLayout::Nchw => ([1, c, h, w], Layout::Nchw),
        zoo_onnx::InputLayout::Nhwc => ([1, h, w, c], Layout::Nhwc),
    };
    InputSpec {
        name: model.graph.input.name.clone(),
        shape,
        layout,
    }
}

pub fn render(r: &NewCardReport) -> String {
    format!(
        "user card `{}` written to {}\n  file           {} (sha256 {})\n  {}\n  labels         {}\n  finetune       freeze {}; replace {}\nUse it by name: zoo finetune {} --data DIR\n",
        r.name,
        r.card_file.display(),
        r.model.display(),
        r.sha256,
        r.preprocessing,
        if r.labels == 0 {
            "none (class numbers)".to_string()
        } else {
            format!("{} names", r.labels)
        },
        zoo_cards::describe_layers(&r.freeze),
        r.head,
        r.name
    )
}
