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
    let file = cache
        .cached_file(source)
        .ok_or_else(|| ResolveError::NotFetched {
            name: arg.to_string(),
            cache: cache.root.clone(),
        })?;
    Ok(ResolvedModel {
        arg: ModelArg::Card(arg.to_string()),
        path: file,
        card: Some(like_card.unwrap_or(card)),
    })
}
