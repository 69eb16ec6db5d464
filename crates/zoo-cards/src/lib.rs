//! `zoo-cards`: model cards. A card says where a pretrained model lives (Hub repo, path,
//! revision, sha256, size), what input it takes, how images must be preprocessed, where its
//! labels are, and how to finetune it (freeze plan, head layer). Cards ship inside the binary.

mod card;
mod preprocessing;

mod embedded;

pub use card::{
    describe_layers, layer_matches, resolve_freeze, Card, CardError, FinetunePlan, InputSpec,
    LabelFormat, Labels, Layout, OutputKind, OutputSpec, Source,
};
pub use preprocessing::{ColorOrder, Interpolation, Preprocessing, ResizeMode};

use embedded::EMBEDDED;

/// All built-in cards, sorted by name.
pub fn all() -> Vec<Card> {
    EMBEDDED
        .iter()
        .map(|(name, text)| {
            Card::parse(text).unwrap_or_else(|e| panic!("built-in card {name} is invalid: {e}"))
        })
        .collect()
}

/// Names of the built-in cards.
pub fn names() -> Vec<&'static str> {
    EMBEDDED.iter().map(|(n, _)| *n).collect()
}

/// Looks a card up by name; the error lists the known names.
pub fn find(name: &str) -> Result<Card, CardError> {
    all().into_iter().find(|c| c.name == name).ok_or_else(|| {
        let close: Vec<&str> = names()
            .into_iter()
            .filter(|n| !name.is_empty() && n.contains(&name.to_lowercase()))
            .collect();
        CardError::Unknown {
            name: name.to_string(),
            suggestion: if close.is_empty() {
                String::new()
            } else {
                format!(" (did you mean {}?)", close.join(", "))
            },
            known: names().join(", "),
        }
    })
}
