//! Every way an ONNX file can be refused, each naming what was found and what is supported.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a valid ONNX protobuf (truncated or corrupt file?): {0}")]
    Decode(String),
    #[error("the model has no graph")]
    NoGraph,
    #[error("opset {found} of the default ONNX domain is not supported (zoo imports opsets {min} to {max})")]
    Opset { found: i64, min: i64, max: i64 },
    #[error("tensor `{name}`: {reason}")]
    BadTensor { name: String, reason: String },
    #[error(
        "node `{node}` has op type `{op}`{domain}, which zoo cannot import; supported ops: {supported}"
    )]
    UnsupportedOp {
        node: String,
        op: String,
        domain: String,
        supported: String,
    },
    #[error("node `{node}` ({op}): {reason}")]
    BadNode {
        node: String,
        op: String,
        reason: String,
    },
    #[error("node `{node}` reads `{value}`, which no node, initializer or graph input produces")]
    DanglingEdge { node: String, value: String },
    #[error("the graph has a cycle through node `{0}`")]
    Cycle(String),
    #[error("graph input/output: {0}")]
    BadInterface(String),
}

pub type Result<T> = std::result::Result<T, OnnxError>;

pub(crate) fn bad_node(node: &str, op: &str, reason: impl Into<String>) -> OnnxError {
    OnnxError::BadNode {
        node: node.to_string(),
        op: op.to_string(),
        reason: reason.into(),
    }
}
