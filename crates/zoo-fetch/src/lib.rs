//! `zoo-fetch`: where pretrained models live on disk (the Hugging Face Hub cache layout, shared
//! with Python's `huggingface_hub`), and turning a model argument (card name, ONNX file or run
//! directory) into a file plus the card that describes it.

mod cache;
mod resolve;

pub use cache::HubCache;
pub use resolve::{resolve_model, ModelArg, ResolveError, ResolvedModel};
