//! `zoo-onnx`: reads ONNX classifier graphs into a small typed IR that keeps every original
//! node and initializer name, validates them completely (no panics on hostile files), infers
//! shapes, and writes ONNX back. Protobuf types come from `tract-onnx`'s generated `pb` module.

pub mod error;
pub mod external;
pub mod fold;
pub mod graph;
mod host;
mod interface;
pub mod ops;
pub mod shapes;
mod shapes_search;
pub mod tensor;

pub use error::{OnnxError, Result};
pub use external::read_model;
pub use graph::{decode_proto, Graph, InputLayout, Node, OnnxModel, ValueSpec};
pub use ops::{Op, Padding, PoolSpec, SUPPORTED_OPS};
pub use shapes::{ReshapeTarget, ShapeInfo};
pub use tensor::{ConstData, Constant};
pub use tract_onnx::pb;
pub mod builder;
pub mod check;
pub mod opset;
pub mod standin;
pub mod write;
