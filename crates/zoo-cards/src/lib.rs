//! `zoo-cards`: model cards. A card says where a pretrained model lives (Hub repo, path,
//! revision, sha256, size), what input it takes, how images must be preprocessed, where its
//! labels are, and how to finetune it (freeze plan, head layer). Built-in cards ship inside
//! the binary; user cards (`zoo card new`) live in the user card folder.

mod card;
mod label_file;
mod preprocessing;
mod user;

mod embedded;

pub use card::{
    check_name, describe_layers, layer_matches, resolve_freeze, Card, CardError, FinetunePlan,
    InputSpec, LabelFormat, Labels, Layout, OutputKind, OutputSpec, Source,
};
pub use label_file::{parse_labels, read_label_file, MAX_LABEL_FILE_BYTES};
pub use preprocessing::{
    parse_channel_values, parse_resize, parse_size, ColorOrder, Interpolation, Preprocessing,
    Preset, RecipeChanges, ResizeMode,
};
pub use user::{
    find_user_card, read_user_card, user_card_dirs, user_card_home, user_cards, write_user_card,
};

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

pub fn is_built_in(name: &str) -> bool {
    EMBEDDED.iter().any(|(n, _)| *n == name)
}

/// Looks a card up by name: built-in cards first, then user cards; the error lists the
/// known names.
pub fn find(name: &str) -> Result<Card, CardError> {
    if let Some(card) = all().into_iter().find(|c| c.name == name) {
        return Ok(card);
    }
    if let Some(card) = find_user_card(name)? {
        return Ok(card);
    }
    let mut known: Vec<String> = names().into_iter().map(String::from).collect();
    known.extend(user_cards().0.into_iter().map(|c| c.name));
    let close: Vec<&str> = known
        .iter()
        .map(String::as_str)
        .filter(|n| !name.is_empty() && n.contains(&name.to_lowercase()))
        .collect();
    Err(CardError::Unknown {
        name: name.to_string(),
        suggestion: if close.is_empty() {
            String::new()
        } else {
            format!(" (did you mean {}?)", close.join(", "))
        },
        known: known.join(", "),
    })
}
