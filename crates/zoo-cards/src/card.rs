use serde::{Deserialize, Serialize};

use crate::preprocessing::Preprocessing;

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("unknown model `{name}`{suggestion}; known models: {known}")]
    Unknown {
        name: String,
        /// ` (did you mean a, b?)` when known names contain the one asked for.
        suggestion: String,
        known: String,
    },
    #[error("invalid model card: {0}")]
    Invalid(String),
}

/// A file on the Hugging Face Hub, or (user cards) a local file, pinned by checksum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repo: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revision: String,
    /// The file's path in the Hub repo (for a local file, its file name).
    pub path: String,
    /// An absolute path on this machine, instead of a Hub repo (cards made by `zoo card new`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<std::path::PathBuf>,
    pub sha256: String,
    pub size: u64,
    pub opset: i64,
}

impl Source {
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// Axis order of an image input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    #[default]
    Nchw,
    /// TensorFlow exports (tf2onnx): channels last.
    Nhwc,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    pub shape: [usize; 4],
    #[serde(default, skip_serializing_if = "is_nchw")]
    pub layout: Layout,
}

fn is_nchw(l: &Layout) -> bool {
    *l == Layout::Nchw
}

impl InputSpec {
    /// `[C, H, W]` whatever the layout.
    pub fn chw(&self) -> [usize; 3] {
        let s = self.shape;
        match self.layout {
            Layout::Nchw => [s[1], s[2], s[3]],
            Layout::Nhwc => [s[3], s[1], s[2]],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputKind {
    Logits,
    Probabilities,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    pub kind: OutputKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelFormat {
    /// `<wnid> <names>` per line (ImageNet synset.txt); line i is class i.
    Synset,
    /// One label per line.
    Lines,
    /// Names listed in the card.
    Inline,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    pub format: LabelFormat,
    /// Path of the label file in the model's Hub repo (tried first: it honours mirrors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    pub count: usize,
}

/// Which layers stay frozen when finetuning, and which one is replaced by the new head.
/// Freeze entries are layer names or prefixes ending in `*` (`resnetv15_stage1_*`, or `*` for
/// every layer but the head); an empty head means the last layer with weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetunePlan {
    pub freeze: Vec<String>,
    pub head: String,
}

/// Card names are file names in the user card folder: letters, digits, `.`, `_`, `-`, not
/// starting with `.` (no path can hide in one).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a card name: use letters, digits, `.`, `_` and `-` (not first `.`), at most 100"
        ))
    }
}

/// Whether a freeze entry names `layer`: the layer itself, a module that contains it
/// (`blocks.9` names `blocks.9.attn.qkv`, as a PyTorch module prefix), or a prefix ending in
/// `*`.
pub fn layer_matches(pattern: &str, layer: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => layer.starts_with(prefix),
        None => {
            layer == pattern
                || layer
                    .strip_prefix(pattern)
                    .is_some_and(|rest| rest.starts_with('.'))
        }
    }
}

/// A list of layers for one line of output: all of them when few, else the count, the first
/// and the last (a ResNet's plan freezes over a hundred).
pub fn describe_layers(layers: &[String]) -> String {
    match layers {
        [] => "nothing".to_string(),
        few if few.len() <= 8 => few.join(", "),
        many => format!(
            "{} layers ({}, {}, ... {})",
            many.len(),
            many[0],
            many[1],
            many[many.len() - 1]
        ),
    }
}

/// The layers (in `layers` order) that freeze entries name, never the head. An entry that
/// names no layer is kept as written, so that the caller's unknown-layer error shows it.
pub fn resolve_freeze(patterns: &[String], layers: &[String], head: &str) -> Vec<String> {
    let mut out: Vec<String> = layers
        .iter()
        .filter(|l| *l != head && patterns.iter().any(|p| layer_matches(p, l)))
        .cloned()
        .collect();
    for p in patterns {
        if !layers.iter().any(|l| layer_matches(p, l)) {
            out.push(p.clone());
        }
    }
    out
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Card {
    pub name: String,
    /// Architecture family (`zoo list` groups by it).
    pub family: String,
    pub title: String,
    pub task: String,
    pub license: String,
    pub source: Source,
    #[serde(default)]
    pub variants: Vec<Source>,
    pub input: InputSpec,
    pub output: OutputSpec,
    pub preprocessing: Preprocessing,
    pub labels: Labels,
    pub finetune: FinetunePlan,
    /// The user card file this card was read from; `None` for a built-in card.
    #[serde(skip)]
    pub user_file: Option<std::path::PathBuf>,
}

impl Card {
    pub fn parse(text: &str) -> Result<Self, CardError> {
        let card: Card = toml::from_str(text).map_err(|e| CardError::Invalid(e.to_string()))?;
        card.validate()?;
        Ok(card)
    }

    fn validate(&self) -> Result<(), CardError> {
        let bad = |m: String| Err(CardError::Invalid(format!("{}: {m}", self.name)));
        if let Err(e) = check_name(&self.name) {
            return Err(CardError::Invalid(e));
        }
        for s in std::iter::once(&self.source).chain(&self.variants) {
            if s.sha256.len() != 64 || !s.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return bad(format!("sha256 of {} must be 64 hex digits", s.path));
            }
            match (&s.local, s.repo.is_empty()) {
                (Some(p), true) if p.is_absolute() => {}
                (Some(p), true) => {
                    return bad(format!(
                        "local file {} must be an absolute path",
                        p.display()
                    ))
                }
                (None, false) => {}
                _ => return bad("a source names either a Hub `repo` or a `local` file".into()),
            }
        }
        if let Err(e) = self.preprocessing.validate() {
            return bad(e);
        }
        let [c, h, w] = self.input.chw();
        if c != self.preprocessing.color.channels()
            || [h as u32, w as u32] != self.preprocessing.size
        {
            return bad("preprocessing does not produce the input shape".into());
        }
        if self.labels.format == LabelFormat::Inline && self.labels.names.len() != self.labels.count
        {
            return bad("inline labels must list `count` names".into());
        }
        if self.labels.format != LabelFormat::Inline
            && (self.labels.url.is_none() || self.labels.sha256.is_none())
        {
            return bad("downloaded labels need `url` and `sha256`".into());
        }
        Ok(())
    }

    /// A built-in card ships in the binary; a user card was made with `zoo card new`.
    pub fn is_user_card(&self) -> bool {
        self.user_file.is_some()
    }

    /// The source for an opset: the default one, or a variant.
    pub fn source_for_opset(&self, opset: Option<i64>) -> Result<&Source, CardError> {
        match opset {
            None => Ok(&self.source),
            Some(v) => std::iter::once(&self.source)
                .chain(&self.variants)
                .find(|s| s.opset == v)
                .ok_or_else(|| {
                    let have: Vec<String> = std::iter::once(&self.source)
                        .chain(&self.variants)
                        .map(|s| s.opset.to_string())
                        .collect();
                    CardError::Invalid(format!(
                        "{} has no opset {v} file (available: {})",
                        self.name,
                        have.join(", ")
                    ))
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_cards_parse_and_hold_the_reference_facts() {
        let alexnet = crate::find("alexnet").unwrap();
        assert_eq!(alexnet.source.size, 243_863_787);
        assert_eq!(alexnet.input.shape, [1, 3, 224, 224]);
        assert_eq!(alexnet.finetune.head, "fc8");
        assert_eq!(
            alexnet.source_for_opset(Some(7)).unwrap().file_name(),
            "bvlcalexnet-7.onnx"
        );
        let lenet = crate::find("lenet").unwrap();
        assert_eq!(lenet.source.file_name(), "mnist-8.onnx");
        assert_eq!(lenet.labels.names.len(), 10);
        assert!(lenet
            .source_for_opset(Some(5))
            .unwrap_err()
            .to_string()
            .contains("8, 12"));
    }

    #[test]
    fn unknown_names_list_known_cards() {
        let e = crate::find("resnet").unwrap_err().to_string();
        assert!(e.contains("alexnet, beit-base, caffenet"), "{e}");
        assert!(e.contains("resnet50-v1"), "{e}");
    }

    #[test]
    fn freeze_patterns_name_layers_in_order_and_never_the_head() {
        let layers: Vec<String> = [
            "conv0",
            "stage1_conv0",
            "stage1_conv1",
            "stage2_conv0",
            "dense0",
        ]
        .map(String::from)
        .to_vec();
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            resolve_freeze(&p(&["stage1_*", "conv0"]), &layers, "dense0"),
            p(&["conv0", "stage1_conv0", "stage1_conv1"])
        );
        assert_eq!(
            resolve_freeze(&p(&["*"]), &layers, "dense0"),
            p(&["conv0", "stage1_conv0", "stage1_conv1", "stage2_conv0"])
        );
        assert_eq!(
            resolve_freeze(&p(&["nope*"]), &layers, "dense0"),
            p(&["nope*"])
        );
        // Module prefixes name the layers inside the module, not its namesakes.
        let vit: Vec<String> = [
            "blocks.1.attn.qkv",
            "blocks.1.norm1",
            "blocks.10.mlp.fc1",
            "head",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            resolve_freeze(&p(&["blocks.1"]), &vit, "head"),
            p(&["blocks.1.attn.qkv", "blocks.1.norm1"])
        );
    }

    #[test]
    fn every_card_names_a_family_and_a_fetchable_file() {
        let cards = crate::all();
        let families: std::collections::BTreeSet<&str> =
            cards.iter().map(|c| c.family.as_str()).collect();
        assert!(families.len() >= 27, "{families:?}");
        for c in &cards {
            assert!(c.source.opset >= 7, "{}", c.name);
            assert!(c
                .variants
                .iter()
                .all(|v| v.opset >= 7 && v.sha256 != c.source.sha256 || v.opset != c.source.opset));
        }
        let lite = crate::find("efficientnet-lite4").unwrap();
        assert_eq!(lite.input.layout, Layout::Nhwc);
        assert_eq!(lite.input.chw(), [3, 224, 224]);
    }

    #[test]
    fn invalid_cards_are_refused() {
        let text = include_str!("../../../zoo/lenet.toml");
        assert!(Card::parse(&text.replace("color = \"gray\"", "color = \"rgb\"")).is_err());
        assert!(Card::parse(&text.replace("2f06e72de8", "zz06e72de8")).is_err());
        assert!(Card::parse(&text.replace("[finetune]", "[finetune]\nunknown = 1")).is_err());
    }
}
