use std::path::{Path, PathBuf};

use zoo_cards::{Card, CardError};

use crate::cache::HubCache;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Card(#[from] CardError),
    #[error("model `{name}` is not in the cache ({cache}); run `zoo fetch {name}` first")]
    NotFetched { name: String, cache: PathBuf },
    #[error("{0} is a directory without model.onnx or best.onnx (is it a zoo run directory?)")]
    EmptyDir(PathBuf),
    #[error("`{0}` is neither a file, a directory, nor a known model; known models: {1}")]
    NotFound(String, String),
    #[error("the file of user card `{name}` changed: {path} has sha256 {actual}, the card ({card}) says {expected}; make the card again with `zoo card new {path} --name {name} --replace`")]
    Changed {
        name: String,
        path: PathBuf,
        card: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("cannot read the file of user card `{name}` ({card}): {path}: {reason}")]
    LocalUnreadable {
        name: String,
        path: PathBuf,
        card: PathBuf,
        reason: String,
    },
}

/// A user card's local file, after its sha256 is checked against the card.
pub fn local_card_file(
    card: &Card,
    source: &zoo_cards::Source,
) -> Result<Option<PathBuf>, ResolveError> {
    let Some(path) = &source.local else {
        return Ok(None);
    };
    let card_file = card.user_file.clone().unwrap_or_default();
    let actual = crate::verify::sha256_file(path).map_err(|e| ResolveError::LocalUnreadable {
        name: card.name.clone(),
        path: path.clone(),
        card: card_file.clone(),
        reason: e.to_string(),
    })?;
    if actual != source.sha256 {
        return Err(ResolveError::Changed {
            name: card.name.clone(),
            path: path.clone(),
            card: card_file,
            expected: source.sha256.clone(),
            actual,
        });
    }
    Ok(Some(path.clone()))
}

/// What the user named.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelArg {
    Card(String),
    File(PathBuf),
    RunDir(PathBuf),
}

/// A model file and the card that describes it (from its name, or `--like`).
#[derive(Clone, Debug)]
pub struct ResolvedModel {
    pub arg: ModelArg,
    pub path: PathBuf,
    pub card: Option<Card>,
}

/// Resolves a card name, an ONNX file or a run directory. `like` names a card whose
/// preprocessing and freeze plan a local file borrows.
pub fn resolve_model(
    arg: &str,
    like: Option<&str>,
    opset: Option<i64>,
    cache: &HubCache,
) -> Result<ResolvedModel, ResolveError> {
    let like_card = like.map(zoo_cards::find).transpose()?;
    let path = Path::new(arg);
    if path.is_dir() {
        // A run directory: the exported model, else the best weights of the run.
        let model = ["model.onnx", "best.onnx"]
            .iter()
            .map(|f| path.join(f))
            .find(|p| p.is_file())
            .ok_or_else(|| ResolveError::EmptyDir(path.to_path_buf()))?;
        return Ok(ResolvedModel {
            arg: ModelArg::RunDir(path.to_path_buf()),
            path: model,
            card: like_card,
        });
    }
    if path.is_file() {
        return Ok(ResolvedModel {
            arg: ModelArg::File(path.to_path_buf()),
            path: path.to_path_buf(),
            card: like_card,
        });
    }
    let looks_like_path = arg.contains('/') || arg.ends_with(".onnx");
    let card = match zoo_cards::find(arg) {
        Ok(card) => card,
        Err(_) if looks_like_path => {
            return Err(ResolveError::NotFound(
                arg.to_string(),
                zoo_cards::names().join(", "),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let source = card.source_for_opset(opset)?;
    let file = match local_card_file(&card, source)? {
        Some(local) => local,
        None => cache
            .cached_file(source)
            .ok_or_else(|| ResolveError::NotFetched {
                name: arg.to_string(),
                cache: cache.root.clone(),
            })?,
    };
    Ok(ResolvedModel {
        arg: ModelArg::Card(arg.to_string()),
        path: file,
        card: Some(like_card.unwrap_or(card)),
    })
}
