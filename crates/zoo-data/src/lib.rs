//! `zoo-data`: images in, model-ready tensors out.

pub mod preprocess;

pub use preprocess::{decode, list_images, preprocess, DataError};
