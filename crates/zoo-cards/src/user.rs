//! User cards: TOML cards for your own files, made by `zoo card new`, in the user card folder
//! (`$ZOO_HOME/cards`, else `$XDG_CONFIG_HOME/zoo/cards`, else `~/.config/zoo/cards`) and in
//! the folders `ZOO_CARDS` lists (separated like `PATH`). A card is found by its file name,
//! `NAME.toml`.

use std::path::{Path, PathBuf};

use crate::card::{check_name, Card, CardError};

/// Where `zoo card new` writes.
pub fn user_card_home() -> PathBuf {
    if let Some(home) = zoo_io::env_folder("ZOO_HOME") {
        return home.join("cards");
    }
    let config = zoo_io::env_folder("XDG_CONFIG_HOME")
        .unwrap_or_else(|| zoo_io::home_folder().join(".config"));
    config.join("zoo").join("cards")
}

/// The user card home, then every folder in `ZOO_CARDS`.
pub fn user_card_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![user_card_home()];
    if let Some(extra) = std::env::var_os("ZOO_CARDS") {
        dirs.extend(std::env::split_paths(&extra).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs
}

/// Reads one user card file; its `name` must be its file name and not a built-in name.
pub fn read_user_card(path: &Path) -> Result<Card, CardError> {
    let invalid = |m: String| CardError::Invalid(format!("{}: {m}", path.display()));
    // A card with 21k inline labels is about 1 MB.
    let text = zoo_io::read_text_limited(path, 16 << 20).map_err(|e| invalid(e.to_string()))?;
    let mut card = Card::parse(&text).map_err(|e| invalid(e.to_string()))?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if card.name != stem {
        return Err(invalid(format!(
            "the card is named `{}` but its file is {stem}.toml; names and files must agree",
            card.name
        )));
    }
    if crate::is_built_in(&card.name) {
        return Err(invalid(format!(
            "`{}` is a built-in card's name; rename the user card",
            card.name
        )));
    }
    card.user_file = Some(path.to_path_buf());
    Ok(card)
}

/// The user card `name`, from the first folder that has `name.toml`.
pub fn find_user_card(name: &str) -> Result<Option<Card>, CardError> {
    if check_name(name).is_err() {
        return Ok(None);
    }
    for dir in user_card_dirs() {
        let path = dir.join(format!("{name}.toml"));
        if path.is_file() {
            return read_user_card(&path).map(Some);
        }
    }
    Ok(None)
}

/// Every user card (first folder wins for a name), and one line for each file that is not a
/// valid card.
pub fn user_cards() -> (Vec<Card>, Vec<String>) {
    let mut cards: Vec<Card> = Vec::new();
    let mut problems = Vec::new();
    for dir in user_card_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            match read_user_card(&path) {
                Ok(card) if cards.iter().any(|c| c.name == card.name) => {}
                Ok(card) => cards.push(card),
                Err(e) => problems.push(e.to_string()),
            }
        }
    }
    cards.sort_by(|a, b| a.name.cmp(&b.name));
    (cards, problems)
}

/// Writes `card` as `NAME.toml` into the user card home (atomically). A built-in name is
/// refused; an existing user card is replaced only with `replace`.
pub fn write_user_card(card: &Card, replace: bool) -> Result<PathBuf, CardError> {
    check_name(&card.name).map_err(CardError::Invalid)?;
    if crate::is_built_in(&card.name) {
        return Err(CardError::Invalid(format!(
            "`{}` is the name of a built-in card; choose another --name",
            card.name
        )));
    }
    let text = toml::to_string(card).map_err(|e| CardError::Invalid(e.to_string()))?;
    // What is written must read back as the same card.
    Card::parse(&text)?;
    let dir = user_card_home();
    let path = dir.join(format!("{}.toml", card.name));
    if path.exists() && !replace {
        return Err(CardError::Invalid(format!(
            "a user card `{}` exists ({}); pass --replace to overwrite it",
            card.name,
            path.display()
        )));
    }
    let io =
        |e: std::io::Error| CardError::Invalid(format!("cannot write {}: {e}", path.display()));
    std::fs::create_dir_all(&dir).map_err(io)?;
    zoo_io::write_atomic(&path, text.as_bytes()).map_err(io)?;
    Ok(path)
}
