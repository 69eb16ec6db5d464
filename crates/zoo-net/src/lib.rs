//! `zoo-net`: turns an ONNX classifier into a trainable burn network at run time.
//!
//! Parameters keep their ONNX initializer names and are grouped into named layers (`conv1`,
//! `fc8`, ...) that freeze plans refer to. The network is generic over burn's `Backend`, so
//! the same import trains on CPU (`Autodiff<Flex>`) or CUDA.
//!
//! Layout: `network`, `plan`, `head` and `export` hold the network and what is known about
//! it; `exec` walks the graph (and applies the plan's fusions); `ops` runs each op, one module
//! per family as in `zoo_onnx::ops`; `kernels` holds zoo's own CPU kernels for the flex backend.

mod batch_proof;
pub mod batchnorm;
mod error;
mod exec;
mod export;
pub mod head;
pub mod kernels;
mod network;
mod ops;
pub mod plan;

pub use error::NetError;
pub use head::{replace_head, HeadChange};
pub use kernels::{batch_norm_train, concat, conv, host, max_pool, simd};
pub use network::{Activation, FeatureCut, Network};
pub use plan::{Layer, ParamRole, ParamSpec, Plan};

pub(crate) use exec::image_parallel;
pub(crate) use kernels::flex_autodiff;
