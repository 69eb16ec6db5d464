//! `zoo-fetch`: pretrained models from the Hugging Face Hub, verified by size and sha256 and
//! cached in the Hub's own layout (shared with Python's `huggingface_hub`); plain-URL models and
//! label files in zoo's cache; and turning a model argument (card name, ONNX file or run
//! directory) into a file plus the card that describes it.

mod cache;
mod download;
mod error;
mod fetch;
mod limits;
mod names;
mod resolve;
mod verify;

pub use cache::{HubCache, ZooCache};
pub use download::download_url;
pub use error::FetchError;
pub use fetch::{
    ensure_writable, fetch_card, fetch_url, FetchOptions, FetchStatus, Fetched, ProgressFn,
};
pub use limits::NetLimits;
pub use names::{check_file_name, check_revision};
pub use resolve::{local_card_file, resolve_model, ModelArg, ResolveError, ResolvedModel};
pub use verify::{check_file, sha256_file, Check};
