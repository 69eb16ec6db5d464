use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("no images found in {0} (looked for jpg, jpeg, png, gif, bmp, webp, tif, tiff)")]
    NoImages(PathBuf),
    #[error("{path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("{path}: not an MNIST IDX file: {reason}")]
    Idx { path: PathBuf, reason: String },
    #[error("{0}")]
    Split(String),
}
