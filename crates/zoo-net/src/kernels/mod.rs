//! zoo's own CPU kernels for burn's flex backend: each returns `None` (or `false`) where it
//! does not serve the backend or dtype, and the caller falls back to burn's generic ops.
//! `tests/fused_ops.rs` holds every kernel to the generic form's values and gradients.

pub mod attention;
pub mod batch_norm_train;
pub mod columns;
pub mod concat;
pub mod conv;
pub(crate) mod fast_math;
pub mod few_rows;
pub(crate) mod flex_autodiff;
pub mod gelu;
pub mod host;
pub mod linear;
pub(crate) mod matrix;
pub mod max_pool;
pub mod permute;
pub mod rows;
pub mod simd;
