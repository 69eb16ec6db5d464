//! `zoo-net`: turns an ONNX classifier into a trainable burn network at run time.
//!
//! Parameters keep their ONNX initializer names and are grouped into named layers (`conv1`,
//! `fc8`, ...) that freeze plans refer to. The network is generic over burn's `Backend`, so
//! the same import trains on CPU (`Autodiff<Flex>`) or CUDA.

pub mod batch_norm_train;
pub mod batchnorm;
pub mod concat;
pub mod conv;
mod error;
mod exec;
mod exec_layout;
mod export;
mod flex_autodiff;
pub mod head;
pub mod host;
mod image_parallel;
pub mod max_pool;
mod network;
pub mod plan;
pub mod simd;

pub use error::NetError;
pub use head::{replace_head, HeadChange};
pub use network::{Activation, FeatureCut, Network};
pub use plan::{Layer, ParamRole, ParamSpec, Plan};
