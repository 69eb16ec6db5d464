use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Card(#[from] zoo_cards::CardError),
    #[error("checksum mismatch for {what}: expected sha256 {expected}, got {actual}; the bad file was removed from the cache")]
    Checksum {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}; the bad file was removed from the cache")]
    Size {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("download of {url} failed: {reason}")]
    Download { url: String, reason: String },
    #[error("`{name}` is not in the cache ({cache}) and --offline forbids downloading it")]
    Offline { name: String, cache: PathBuf },
    #[error("cannot write to the cache {path}: {reason}")]
    Cache { path: PathBuf, reason: String },
    /// A user card's local file is missing or changed.
    #[error("{0}")]
    LocalFile(String),
    #[error("invalid {what} `{name}`: {reason}")]
    BadName {
        what: String,
        name: String,
        reason: String,
    },
}
