//! Ops that exporters write out as chains of nodes at opsets without them, matched at import
//! and replaced by the one node they spell: the normalisation opset 17 added (`norm`), GELU
//! before opset 20 (`activation`), attention before opset 23, and chains zoo runs as one op
//! (`norm`'s over channels, packed attention heads). Exports keep the file's own nodes.

use std::collections::BTreeMap;

use super::{Math, Op};
use crate::graph::Node;
use crate::tensor::Constant;

/// The dims of a value, where shape inference knows them.
pub(crate) type DimsOf<'a> = &'a dyn Fn(&str) -> Option<Vec<usize>>;

/// Every op written out as a chain, fused: `norm`'s (the written-out form, then the one
/// between two channel transposes), then GELU, then attention (whose scores' scale may
/// itself be written out). The nodes they replace go to `replaced`.
pub(crate) fn fuse_written_out(nodes: &mut Vec<Node>, lookups: Lookups, replaced: &mut Vec<Node>) {
    fuse_chains(nodes, lookups, super::norm::match_written_out, replaced);
    fuse_chains(nodes, lookups, super::norm::match_over_channels, replaced);
    fuse_chains(nodes, lookups, super::activation::match_erf_gelu, replaced);
    fuse_chains(
        nodes,
        lookups,
        super::attention::match_written_out,
        replaced,
    );
}

/// The head split and merge around attention fused into packed attention nodes. Run once the
/// shapes are final: the Reshapes it takes out keep their resolved targets, which a
/// dynamic-batch export still rewrites in the file (`Graph::fused_away`).
pub(crate) fn fuse_packed_heads(nodes: &mut Vec<Node>, lookups: Lookups, replaced: &mut Vec<Node>) {
    fuse_chains(
        nodes,
        lookups,
        super::attention::match_packed_heads,
        replaced,
    );
}

/// What matchers look up besides the nodes: the constants and the dims of values.
pub(crate) type Lookups<'a> = (&'a BTreeMap<String, Constant>, DimsOf<'a>);

/// Replaces every chain `matcher` finds (the fused node and the indices of the nodes it
/// replaces, from node `k`) by its fused node, at the place of the chain's last node; the
/// replaced nodes go to `replaced`.
fn fuse_chains(
    nodes: &mut Vec<Node>,
    (constants, dims_of): Lookups,
    matcher: impl Fn(&Chain, usize) -> Option<(Node, Vec<usize>)>,
    replaced: &mut Vec<Node>,
) {
    let mut k = 0;
    while k < nodes.len() {
        let chain = Chain {
            nodes,
            constants,
            dims_of,
        };
        match matcher(&chain, k) {
            Some((fused, matched)) => {
                let last = *matched.iter().max().expect("matched nodes");
                replaced.push(std::mem::replace(&mut nodes[last], fused));
                let mut gone: Vec<usize> = matched.into_iter().filter(|&i| i != last).collect();
                gone.sort_unstable_by(|a, b| b.cmp(a));
                for i in gone {
                    replaced.push(nodes.remove(i));
                }
            }
            None => k += 1,
        }
    }
}

/// Lookups over the graph's nodes while matching a chain.
pub(crate) struct Chain<'a> {
    pub(crate) nodes: &'a [Node],
    pub(crate) constants: &'a BTreeMap<String, Constant>,
    pub(crate) dims_of: DimsOf<'a>,
}

impl Chain<'_> {
    /// The rank of `value`, where shape inference knows it.
    pub(crate) fn rank_of(&self, value: &str) -> Option<usize> {
        (self.dims_of)(value).map(|d| d.len())
    }

    /// The one node that reads `value`.
    pub(crate) fn only(&self, value: &str) -> Option<usize> {
        let mut readers =
            (0..self.nodes.len()).filter(|&i| self.nodes[i].inputs.iter().any(|v| v == value));
        let first = readers.next()?;
        readers.next().is_none().then_some(first)
    }

    /// The node that writes `value`.
    pub(crate) fn producer(&self, value: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.outputs.iter().any(|o| o == value))
    }

    pub(crate) fn scalar(&self, name: &str) -> Option<f32> {
        let c = self.constants.get(name).filter(|c| c.len() == 1)?;
        c.as_f32().map(|v| v[0])
    }

    /// Node `i`'s input other than `value`.
    pub(crate) fn other(&self, i: usize, value: &str) -> Option<String> {
        self.nodes[i].inputs.iter().find(|v| *v != value).cloned()
    }

    pub(crate) fn is(&self, i: usize, op: &Math) -> bool {
        matches!(&self.nodes[i].op, Op::Math(m) if m == op)
    }

    pub(crate) fn out(&self, i: usize) -> &str {
        &self.nodes[i].outputs[0]
    }
}
