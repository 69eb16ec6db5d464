//! Typed operators, one module per op family (tract's layout). A family owns everything zoo
//! knows about its ops: the enum of their run-time forms, parsing of every opset form, baking
//! of settings that later opsets give as inputs, the shape and batch rule, host evaluation
//! for import-time folding, and its registry rows. The supported-op list, ONNX type names and
//! the opset tables are read from those rows; nothing else lists op names.
//!
//! Adding an op: its variant, parser, shape rule (and host evaluation if shape arithmetic
//! folds through it) in its family file here, plus one registry row there; its execution in
//! the same family file of `zoo-net`; a parity test.

pub mod activation;
pub mod array;
pub mod attention;
mod attrs;
pub(crate) mod chain;
pub mod einsum;
pub mod import;
pub mod logic;
pub mod math;
pub mod nn;
pub mod norm;
pub mod repeat;
pub mod resize;

use std::sync::{Arc, LazyLock};

use tract_onnx::pb::NodeProto;

use crate::error::{OnnxError, Result};
use crate::shapes::ShapeCx;
use crate::tensor::Constant;

pub use activation::Activation;
pub use array::{Array, PadKind, SliceAxes};
pub use attention::{Attention, AttentionDims};
pub use attrs::{Attrs, Settings};
pub use einsum::Einsum;
pub use import::Import;
pub use logic::{Comparison, Logic};
pub use math::{Math, Reduction, Unary, Variadic};
pub use nn::{ConvSpec, Nn, Padding, PoolSpec};
pub use norm::Norm;
pub use repeat::Repeat;
pub use resize::Resize;

/// A run-time operator: what the executor sees. Import-only ops ([`Import`]) are folded away
/// before one exists, and settings given as inputs are baked into plain fields.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Nn(Nn),
    Math(Math),
    Activation(Activation),
    Array(Array),
    Logic(Logic),
    Norm(Norm),
    Repeat(Repeat),
    Einsum(Einsum),
    Resize(Resize),
    Attention(Attention),
}

/// What parsing one node gives.
pub enum Parsed {
    Run(Op),
    /// Computed at import (constants, shapes); never reaches the executor.
    Import(Import),
    /// An op whose settings are (or may be) inputs: made once the constants they come from are
    /// known, in graph order.
    Bake(Baker),
}

/// Makes an op from the settings its node gives as constant inputs.
pub type Baker = Arc<dyn Fn(&Settings) -> Result<Op> + Send + Sync>;

impl Parsed {
    /// The run-time op when it needs no baking.
    pub fn ready(&self) -> Option<&Op> {
        match self {
            Parsed::Run(op) => Some(op),
            _ => None,
        }
    }
}

/// A setting's name and whether it is a float scalar (else an integer list).
pub type Setting = (&'static str, bool);

/// One registry row: an ONNX op type of the default domain.
pub struct OpDef {
    pub name: &'static str,
    /// Parses a node of this type at the model's opset.
    pub parse: fn(&Attrs, i64) -> Result<Parsed>,
    /// The opset that moved settings from attributes to inputs, and those settings in input
    /// order (`opset::convert` moves them back and forth).
    pub moved: Option<(i64, &'static [Setting])>,
    /// The first opset that has the op.
    pub since: i64,
    /// The op's own rewrite when a graph moves between opsets (attributes whose meaning
    /// changed), after the general moves of `opset::convert`.
    pub convert: Option<ConvertFn>,
}

/// Rewrites one node for `zoo export --opset`.
pub type ConvertFn = fn(&mut NodeProto, &mut crate::opset::ConvertCx) -> Result<()>;

impl OpDef {
    /// A row for an op that exists in every opset zoo reads and keeps its settings in place.
    pub const fn new(name: &'static str, parse: fn(&Attrs, i64) -> Result<Parsed>) -> Self {
        Self {
            name,
            parse,
            moved: None,
            since: 1,
            convert: None,
        }
    }

    pub const fn convert(mut self, rewrite: ConvertFn) -> Self {
        self.convert = Some(rewrite);
        self
    }

    pub const fn moved(mut self, opset: i64, settings: &'static [Setting]) -> Self {
        self.moved = Some((opset, settings));
        self
    }

    pub const fn since(mut self, opset: i64) -> Self {
        self.since = opset;
        self
    }
}

/// Every family's rows.
const FAMILIES: [&[OpDef]; 11] = [
    nn::OPS,
    attention::OPS,
    einsum::OPS,
    resize::OPS,
    norm::OPS,
    math::OPS,
    logic::OPS,
    activation::OPS,
    array::OPS,
    repeat::OPS,
    import::OPS,
];

/// The registry row of an ONNX op type.
pub fn find(op_type: &str) -> Option<&'static OpDef> {
    FAMILIES
        .iter()
        .flat_map(|f| f.iter())
        .find(|d| d.name == op_type)
}

/// Op types zoo imports (and re-exports unchanged), in case-insensitive order.
pub static SUPPORTED_OPS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut names: Vec<&str> = FAMILIES
        .iter()
        .flat_map(|f| f.iter().map(|d| d.name))
        .collect();
    names.sort_by_key(|n| n.to_lowercase());
    names
});

/// Parses one node of the default domain. `label` names the node in errors.
pub fn parse_op(node: &NodeProto, label: &str, opset: i64) -> Result<Parsed> {
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Err(unsupported(node, label));
    }
    let def = find(&node.op_type).ok_or_else(|| unsupported(node, label))?;
    (def.parse)(&Attrs::new(node, label), opset)
}

fn unsupported(node: &NodeProto, label: &str) -> OnnxError {
    OnnxError::UnsupportedOp {
        node: label.to_string(),
        op: node.op_type.clone(),
        domain: if node.domain.is_empty() {
            String::new()
        } else {
            format!(" (domain `{}`)", node.domain)
        },
        supported: SUPPORTED_OPS.join(", "),
    }
}

/// Looks up constants (and, for folding, computed values) by name.
pub type ConstantOf<'a, 'c> = &'a dyn Fn(&str) -> Option<&'c Constant>;

impl Op {
    pub fn onnx_type(&self) -> &'static str {
        match self {
            Op::Nn(op) => op.onnx_type(),
            Op::Math(op) => op.onnx_type(),
            Op::Activation(op) => op.onnx_type(),
            Op::Array(op) => op.onnx_type(),
            Op::Logic(op) => op.onnx_type(),
            Op::Norm(op) => op.onnx_type(),
            Op::Repeat(op) => op.onnx_type(),
            Op::Einsum(_) => "Einsum",
            Op::Resize(op) => op.onnx_type(),
            Op::Attention(_) => "Attention",
        }
    }

    /// Inputs that carry settings rather than data (shapes, axes, bounds, ratios): they are
    /// read at import, never become parameters and never carry the batch.
    pub fn is_setting_input(&self, index: usize) -> bool {
        match self {
            Op::Nn(op) => op.is_setting_input(index),
            Op::Math(op) => op.is_setting_input(index),
            Op::Activation(op) => op.is_setting_input(index),
            Op::Array(op) => op.is_setting_input(index),
            Op::Logic(op) => op.is_setting_input(index),
            Op::Repeat(op) => op.is_setting_input(index),
            Op::Norm(_) | Op::Einsum(_) => false,
            // The mask is read at import.
            Op::Attention(_) => index == 3,
            // roi, scales, sizes
            Op::Resize(_) => index >= 1,
        }
    }

    /// Whether shape arithmetic folds through the op (it moves or selects values, or does
    /// integer arithmetic): then [`Op::evaluate`] computes it on the host.
    pub fn is_shape_arithmetic(&self) -> bool {
        match self {
            Op::Math(op) => op.is_shape_arithmetic(),
            Op::Array(op) => op.is_shape_arithmetic(),
            Op::Repeat(op) => op.is_shape_arithmetic(),
            Op::Activation(op) => op.is_shape_arithmetic(),
            Op::Logic(_) => true,
            Op::Nn(_) | Op::Norm(_) | Op::Einsum(_) | Op::Resize(_) | Op::Attention(_) => false,
        }
    }

    /// Whether input `index` may be a value computed from the batch size: a target shape
    /// whose axis 0 then follows the run-time batch.
    pub fn follows_batch_size(&self, index: usize) -> bool {
        match self {
            Op::Array(Array::Reshape { .. }) | Op::Repeat(_) => index == 1,
            // Resize's `sizes` `[N, C, H, W]` (MobileViT's `interpolate(size=...)` takes N
            // from the input); only H and W are read, checked not to follow the batch.
            Op::Resize(_) => index == 3,
            // Per-sample indices computed from the batch (see `follow_per_sample_gather`).
            Op::Array(Array::Gather { .. }) => index == 1,
            _ => false,
        }
    }

    /// Whether the shape rule follows a batch axis other than 0 (else such an input makes the
    /// graph run at its declared batch only).
    pub fn follows_moved_batch(&self) -> bool {
        match self {
            Op::Array(op) => op.follows_moved_batch(),
            Op::Math(Math::Reduce { .. } | Math::Variadic(_)) => false,
            Op::Math(_) | Op::Logic(_) | Op::Activation(_) => true,
            Op::Nn(op) => op.follows_moved_batch(),
            Op::Einsum(_) => true,
            Op::Norm(_) | Op::Repeat(_) | Op::Resize(_) | Op::Attention(_) => false,
        }
    }

    /// Whether each output element depends only on the elements at the same place in the
    /// inputs (broadcast) or along one row of them: what may lie between a classifier's head
    /// and the graph's output (LeViT averages two heads).
    pub fn is_row_wise(&self) -> bool {
        match self {
            Op::Math(op) => op.is_element_wise(),
            Op::Nn(op) => op.is_row_wise(),
            Op::Array(op) => *op == Array::Identity,
            _ => false,
        }
    }

    /// Validates a node of this op and gives its outputs' dims (see [`ShapeCx`]).
    pub(crate) fn infer(&self, cx: &mut ShapeCx) -> Result<Vec<Vec<usize>>> {
        let one = match self {
            Op::Nn(op) => op.infer(cx)?,
            Op::Math(op) => op.infer(cx)?,
            Op::Activation(op) => op.infer(cx)?,
            Op::Logic(op) => op.infer(cx)?,
            Op::Norm(op) => op.infer(cx)?,
            Op::Repeat(op) => op.infer(cx)?,
            Op::Einsum(op) => op.infer(cx)?,
            Op::Resize(op) => op.infer(cx)?,
            Op::Attention(op) => op.infer(cx)?,
            // Split has several outputs.
            Op::Array(op) => return op.infer(cx),
        };
        Ok(vec![one])
    }

    /// Computes a shape-arithmetic node on the host, at import.
    pub(crate) fn evaluate(&self, node: &crate::Node, constant: ConstantOf) -> Result<Constant> {
        let input = |i: usize| -> Result<&Constant> {
            node.input(i)
                .and_then(constant)
                .ok_or_else(|| node_err(node)(format!("input {i} is not a constant")))
        };
        let out = match self {
            Op::Math(op) => op.evaluate(node, &input),
            Op::Array(op) => op.evaluate(node, &input),
            Op::Logic(op) => op.evaluate(node, &input),
            Op::Repeat(op) => op.evaluate(node, &input),
            Op::Activation(op) => op.evaluate(node, &input),
            Op::Nn(_) | Op::Norm(_) | Op::Einsum(_) | Op::Resize(_) | Op::Attention(_) => None,
        };
        out.unwrap_or_else(|| {
            Err(node_err(node)(format!(
                "{} cannot be folded",
                self.onnx_type()
            )))
        })
    }
}

/// Input `i` of a node being folded, as a constant.
pub type InputOf<'a, 'c> = &'a dyn Fn(usize) -> Result<&'c Constant>;

/// Turns a reason into an error naming the node and its op.
pub(crate) fn node_err(node: &crate::Node) -> impl Fn(String) -> OnnxError + '_ {
    move |reason| crate::error::bad_node(&node.label, node.op.onnx_type(), reason)
}
