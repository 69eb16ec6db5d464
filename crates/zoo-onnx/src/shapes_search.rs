//! Shape inference as a search over readings of the batch. A Reshape of a file exported at
//! batch 1 may put the batch on either side of an axis boundary (`[L, 1, C]` to `[L, C]`: is
//! the 1 part of `L` or of `C`?), and shapes at batch 1 cannot tell. Most readings that are
//! wrong lose the batch a few nodes later (a matrix product summing over it, a softmax across
//! it), so the search takes the first reading, and when the batch is lost goes back to the
//! latest ambiguous Reshape at or before that node and tries its next reading. The readings
//! that survive are still proven by running (`zoo-net`'s batch proof).

use crate::error::Result;
use crate::graph::Graph;
use crate::shapes::{infer_node, ShapeInfo};

/// Replays allowed per ambiguous Reshape before the first reading is kept as it is.
const REPLAYS_PER_CHOICE: usize = 4;

/// Shapes and batch tracking of every node, searching the readings of ambiguous Reshapes
/// for one that keeps the batch to the output; the first reading when none does.
pub(crate) fn infer_searching(graph: &Graph) -> Result<ShapeInfo> {
    let n = graph.nodes.len();
    let mut picks = vec![0usize; n];
    let mut readings = vec![1usize; n];
    let (first, mut failed_at) = replay(graph, &picks, &mut readings, false)?;
    let choices = readings.iter().filter(|&&r| r > 1).count();
    let mut budget = 8 + REPLAYS_PER_CHOICE * choices;
    while let Some(at) = failed_at {
        // The latest node at or before the failure with a reading left to try.
        let Some(k) = (0..=at.min(n - 1))
            .rev()
            .find(|&k| picks[k] + 1 < readings[k])
        else {
            break;
        };
        if budget == 0 {
            break;
        }
        budget -= 1;
        picks[k] += 1;
        picks[k + 1..].iter_mut().for_each(|p| *p = 0);
        let (info, failed) = replay(graph, &picks, &mut readings, true)?;
        if failed.is_none() {
            return Ok(info);
        }
        failed_at = failed;
    }
    Ok(first)
}

/// Infers every node with the given readings and says the first node after which the graph
/// no longer follows the batch; with `stop_early`, stops there.
fn replay(
    graph: &Graph,
    picks: &[usize],
    readings: &mut [usize],
    stop_early: bool,
) -> Result<(ShapeInfo, Option<usize>)> {
    let mut info = ShapeInfo::start(graph);
    let mut failed = None;
    for (i, node) in graph.nodes.iter().enumerate() {
        readings[i] = infer_node(&graph.constants, &graph.folded, node, &mut info, picks[i])?;
        if failed.is_none() && info.fixed_batch.is_some() {
            failed = Some(i);
            if stop_early {
                return Ok((info, failed));
            }
        }
    }
    check_output_batched(graph, &mut info);
    if failed.is_none() && info.fixed_batch.is_some() {
        failed = Some(graph.nodes.len().saturating_sub(1));
    }
    Ok((info, failed))
}

/// The graph follows the batch only if its output carries it, on axis 0 as a whole axis.
pub(crate) fn check_output_batched(graph: &Graph, info: &mut ShapeInfo) {
    let out = &graph.output.name;
    let whole_first = info.batched.contains(out)
        && !info.batch_axes.contains_key(out)
        && !info.batch_outer.contains_key(out);
    if !whole_first {
        info.fixed_batch
            .get_or_insert_with(|| format!("output `{out}` does not carry the batch axis"));
    }
}
