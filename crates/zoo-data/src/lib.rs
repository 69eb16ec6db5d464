//! `zoo-data`: image datasets (class folders, CSV manifests, MNIST IDX), decoding with limits,
//! the per-model preprocessing recipe, stratified seeded splits, augmentation, parallel
//! loading, and the dataset health check.

pub mod augment;
pub mod check;
pub mod dataset;
mod decode;
mod error;
pub mod idx;
pub mod loader;
pub mod preprocess;
pub mod resize;
pub mod split;

pub use augment::{transform, Augment};
pub use dataset::{open, Dataset, ImageRef, Sample, SourceKind, Split};
pub use decode::{decode, list_images, EXTENSIONS};
pub use error::DataError;
pub use loader::{image_bytes, images_fit, load, stream, Skipped, Streamed, Tensors};
pub use preprocess::preprocess;
pub use split::{imbalance_warning, keep_classes, split, with_validation_set, SplitPlan, Splits};
