//! Import-time evaluation, so that the executor only ever sees data ops:
//! - settings that later opsets moved from attributes to inputs (Clip bounds, axes, pads, split
//!   sizes, slice ranges) are read from their constant inputs and baked into the op (each op's
//!   family says how: [`crate::ops::Parsed::Bake`]);
//! - shape arithmetic (`Shape`, then `Gather`, `Unsqueeze`, `Concat`, `Slice`, `Cast`, `Div`,
//!   ... on constants) is computed on the host. The batch dim of a `Shape` is the declared one;
//!   values derived from it are remembered as batch-dependent, so a `Reshape` target built from
//!   `Shape(x)[0]` still keeps the batch axis at any batch size (see `shapes.rs`).
//!
//! Folded shape values stay as nodes in exported files (their result depends on the batch);
//! an `Identity` of an initializer becomes a copy of it (written back as an initializer).

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Result;
use crate::graph::Node;
use crate::ops::{Array, Import, Op, Parsed, Settings};
use crate::tensor::{checked_dims, Constant};

/// What the fold pass learned about the constants it made. Batch dependence is found by
/// folding twice: at the declared batch and at a probe batch one larger; values that differ
/// depend on the batch size.
#[derive(Clone, Debug, Default)]
pub struct Folded {
    /// Values computed from nodes that stay in an exported file (not written as initializers).
    pub computed: BTreeSet<String>,
    /// Computed values that depend on the batch size (derived from a batched `Shape`).
    pub batch_dependent: BTreeSet<String>,
    /// Computed values at the probe batch (Reshape targets that grow with the batch say
    /// which axis holds it).
    pub probes: BTreeMap<String, Constant>,
}

/// A parsed node once its settings are known.
pub(crate) enum Baked {
    Run(Op),
    Import(Import),
}

/// The run-time op of a parsed node, its settings read from the constants known so far.
pub(crate) fn bake(
    parsed: Parsed,
    label: &str,
    op_type: &str,
    inputs: &[String],
    constants: &BTreeMap<String, Constant>,
) -> Result<Baked> {
    Ok(match parsed {
        Parsed::Run(op) => Baked::Run(op),
        Parsed::Import(import) => Baked::Import(import),
        Parsed::Bake(make) => Baked::Run(make(&Settings {
            label,
            op_type,
            inputs,
            constants,
        })?),
    })
}

/// Whether the node is computed at import: `Identity` of a constant, and shape arithmetic
/// whose data inputs are integer or already computed values. Float ops on weights (a weight's
/// Reshape) are left to run, so parameters keep their names.
pub(crate) fn is_foldable(
    node: &Node,
    constants: &BTreeMap<String, Constant>,
    folded: &Folded,
) -> bool {
    let data_inputs = || {
        node.inputs
            .iter()
            .enumerate()
            .filter(|(i, n)| !n.is_empty() && !node.op.is_setting_input(*i))
            .map(|(_, n)| n)
    };
    let all_known = || {
        node.inputs
            .iter()
            .filter(|n| !n.is_empty())
            .all(|n| constants.contains_key(n))
    };
    match &node.op {
        Op::Array(Array::Identity) => node.input(0).is_some_and(|i| constants.contains_key(i)),
        // Computed at import or not at all.
        Op::Array(Array::ScatterNd) => all_known(),
        op if op.is_shape_arithmetic() => {
            all_known()
                && data_inputs().all(|n| {
                    // Float scalars are part of the formula (TF-style padding divides the
                    // input's size by a float stride); float tensors are weights.
                    folded.computed.contains(n)
                        || constants
                            .get(n)
                            .is_some_and(|c| !c.is_float() || c.len() == 1)
                })
        }
        _ => false,
    }
}

/// Computes a foldable node's output, with its dims checked against zoo's limits.
pub(crate) fn evaluate<'a>(
    node: &Node,
    constant: &dyn Fn(&str) -> Option<&'a Constant>,
) -> Result<Constant> {
    checked(node.op.evaluate(node, constant)?, &node.label)
}

/// A folded value whose dims are within zoo's limits.
pub(crate) fn checked(value: Constant, label: &str) -> Result<Constant> {
    checked_dims(
        label,
        &value.dims.iter().map(|&d| d as i64).collect::<Vec<_>>(),
    )?;
    Ok(value)
}
