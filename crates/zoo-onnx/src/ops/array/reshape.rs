//! The shape rules of the ops that regroup values between axes (Flatten, Reshape, Concat,
//! GatherND): where the batch goes when an axis holds it as a factor, and when a part without
//! the batch is repeated along it.

use crate::error::Result;
use crate::shapes::{resolve_reshape, ReshapeTarget, ShapeCx};

pub(super) fn infer_flatten(cx: &mut ShapeCx, x: &[usize], axis: i64) -> Result<Vec<usize>> {
    let a = if axis < 0 {
        axis + x.len() as i64
    } else {
        axis
    };
    if !(0..=x.len() as i64).contains(&a) {
        return Err(cx.err(format!("axis {axis} is out of range for {x:?}")));
    }
    let a = a as usize;
    if a == 0 {
        cx.drop_batch("Flatten with axis 0 mixes the batch");
    } else if a > 1 && cx.batched {
        // `[B, N, C]` to `[B * N, C]`: axis 0 still holds the batch as its outer factor.
        cx.rewrote_batch();
    }
    Ok(vec![x[..a].iter().product(), x[a..].iter().product()])
}

pub(super) fn infer_reshape(
    cx: &mut ShapeCx,
    x: &[usize],
    shape: Option<&[i64]>,
    allow_zero: bool,
) -> Result<Vec<usize>> {
    let target: Vec<i64> = match (shape, cx.node.input(1)) {
        (Some(s), None) => s.to_vec(),
        (_, Some(name)) => cx.constants.get(name).and_then(|c| c.as_i64()).map(<[i64]>::to_vec).ok_or_else(|| {
            cx.err(format!(
                "the target shape `{name}` must be a constant int64 tensor (computed shapes are not supported)"
            ))
        })?,
        (None, None) => return Err(cx.err("missing target shape")),
    };
    let out = resolve_reshape(x, &target, allow_zero).map_err(|e| cx.err(e))?;
    let resolved = match cx.batched.then(|| batch_target(cx, x, &out, allow_zero)) {
        Some(Some(axis)) => ReshapeTarget::Batch {
            dims: out.clone(),
            axis,
        },
        _ => {
            cx.drop_batch("Reshape moves the batch axis");
            ReshapeTarget::Fixed(out.clone())
        }
    };
    let label = cx.node.label.clone();
    cx.info.reshape_targets.insert(label, resolved);
    Ok(out)
}

/// Where a batched input's batch lands in a Reshape's output `out`: the output axis (the
/// rule's batch axis and factor are set). Values keep their row-major order, so the batch
/// is the block of the flat order with `before` values ahead of it and `after` behind; an
/// output axis can hold it when that block fits inside it. A target computed from the batch
/// size says which axis at the probe batch; otherwise (a batch-1 file) several axes may fit,
/// and the search over readings picks one (see `shapes_search`).
fn batch_target(cx: &mut ShapeCx, x: &[usize], out: &[usize], allow_zero: bool) -> Option<usize> {
    let declared = cx.info.declared_batch.max(1);
    let (a, outer) = (cx.batch_axis, cx.batch_outer);
    let unit = outer.checked_mul(declared)?;
    if a >= x.len() || !x[a].is_multiple_of(unit) {
        return None;
    }
    let before = x[..a].iter().product::<usize>() * outer;
    let after = x[a] / unit * x[a + 1..].iter().product::<usize>();
    let fits = placements(out, before, after, declared);
    let pick = match probed_axis(cx, out, allow_zero) {
        Some(axis) => *fits.iter().find(|p| p.axis == axis)?,
        None => {
            cx.alternatives = fits.len();
            let pick = *fits.get(cx.choice.min(fits.len().saturating_sub(1)))?;
            // Only the batch axis kept whole, as the first reading, is certain by shapes.
            let kept = pick.is_whole()
                && outer == 1
                && x[a] == declared
                && before == out[..pick.axis].iter().product::<usize>();
            if !(kept && cx.choice == 0) {
                cx.rewrote_batch();
            }
            pick
        }
    };
    cx.batch_axis = pick.axis;
    cx.batch_outer = pick.outer;
    Some(pick.axis)
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Placement {
    axis: usize,
    outer: usize,
    inner: usize,
}

impl Placement {
    fn is_whole(&self) -> bool {
        self.outer == 1 && self.inner == 1
    }
}

/// The output axes that can hold a batch block of `batch` values with `before` values ahead
/// of it and `after` behind, most natural first: the batch as a whole axis, then as an
/// axis's outer factor (batch-major, `[B * windows, ...]`), then inside one (`[L * B, C]`).
fn placements(out: &[usize], before: usize, after: usize, batch: usize) -> Vec<Placement> {
    let mut fits: Vec<Placement> = (0..out.len())
        .filter_map(|axis| {
            let behind: usize = out[axis + 1..].iter().product();
            if behind == 0 || !after.is_multiple_of(behind) {
                return None;
            }
            let inner = after / behind;
            let unit = batch.checked_mul(inner)?;
            if unit == 0 || !out[axis].is_multiple_of(unit) {
                return None;
            }
            let outer = out[axis] / unit;
            let ahead: usize = out[..axis].iter().product();
            (ahead.checked_mul(outer)? == before).then_some(Placement { axis, outer, inner })
        })
        .collect();
    fits.sort_by_key(|p| (!p.is_whole(), p.outer != 1));
    fits
}

/// The output axis that grows when the batch does, for a target computed from the batch
/// size (the exporter's own shape arithmetic, evaluated at a probe batch one larger).
fn probed_axis(cx: &ShapeCx, out: &[usize], allow_zero: bool) -> Option<usize> {
    if !cx.is_batch_dependent(1) {
        return None;
    }
    let probe = cx.folded.probes.get(cx.node.input(1)?)?.as_i64()?.to_vec();
    let grown = cx.info.probe_dims(cx.node.input(0)?)?;
    let probe_out = resolve_reshape(&grown, &probe, allow_zero).ok()?;
    let differs: Vec<usize> = (0..out.len().min(probe_out.len()))
        .filter(|&j| probe_out[j] != out[j])
        .collect();
    (probe_out.len() == out.len() && differs.len() == 1).then(|| differs[0])
}

pub(super) fn infer_concat(cx: &mut ShapeCx, first: &[usize], axis: i64) -> Result<Vec<usize>> {
    let a = cx.axis(axis, first)?;
    let mut out = first.to_vec();
    out[a] = 0;
    for i in 0..cx.node.inputs.len() {
        let d = cx.dims(i)?;
        let other_axes_match = d
            .iter()
            .zip(first)
            .enumerate()
            .all(|(j, (p, q))| j == a || p == q);
        if d.len() != first.len() || !other_axes_match {
            return Err(cx.err(format!(
                "{d:?} does not concatenate with {first:?} on axis {a}"
            )));
        }
        out[a] += d[a];
    }
    let inputs = cx.node.inputs.len();
    let batched = (0..inputs).filter(|&i| cx.is_batched(i)).count();
    // Parts without the batch but with a leading 1 (a class token expanded to batch 1 in a
    // fixed-batch export) are repeated along the batch at run time.
    let broadcast_ok = (0..inputs).all(|i| cx.is_batched(i) || cx.dims(i).is_ok_and(|d| d[0] == 1));
    cx.batched = batched > 0 && broadcast_ok;
    if cx.batched && batched < inputs {
        cx.rewrote_batch();
    }
    if a == 0 {
        cx.drop_batch("Concat along axis 0 mixes the batch");
    } else if batched > 0 && !cx.batched {
        cx.mark_fixed("Concat joins batched and unbatched values");
    }
    Ok(out)
}

/// GatherND (batch_dims 0): index tuples of length `k` (the last axis of the constant
/// indices) pick from the first `k` axes of `x`.
pub(super) fn infer_gather_nd(cx: &mut ShapeCx, x: &[usize]) -> Result<Vec<usize>> {
    let idx = cx
        .constant(1)
        .filter(|c| !c.is_float())
        .ok_or_else(|| cx.err("indices must be a constant integer tensor"))?;
    let k = *idx.dims.last().unwrap_or(&0);
    if k == 0 || k > x.len() {
        return Err(cx.err(format!("index tuples of length {k} do not fit {x:?}")));
    }
    let values = idx.as_i64().unwrap_or_default();
    let fits = values.chunks(k).all(|tuple| {
        tuple
            .iter()
            .zip(x)
            .all(|(&i, &size)| (-(size as i64)..size as i64).contains(&i))
    });
    let mut out = idx.dims[..idx.dims.len() - 1].to_vec();
    out.extend(&x[k..]);
    if !fits {
        return Err(cx.err(format!("indices are out of range for {x:?}")));
    }
    cx.drop_batch("GatherND selects from the batch axis");
    Ok(out)
}

/// A Gather along the batch axis whose indices are computed from the batch size: it keeps
/// the batch when, at the declared and at the probe batch alike, sample `n`'s block of
/// indices is the first sample's shifted by `n` blocks of the axis (`n * per_sample + i`);
/// then each sample gathers from its own block, and the indices' axis 0 is the batch.
pub(super) fn follow_per_sample_gather(cx: &mut ShapeCx, x: &[usize], axis: usize, rank: usize) {
    let declared = cx.info.declared_batch.max(1);
    let per_sample = x[axis] / declared;
    let blocks_shift = |c: Option<&crate::tensor::Constant>, samples: usize| {
        let (Some(c), true) = (c, axis == cx.batch_axis && cx.batch_outer == 1) else {
            return None;
        };
        let v = c.as_i64()?;
        let block = v.len() / samples;
        let first = &v[..block];
        let shifted = (c.dims.first() == Some(&samples) && block * samples == v.len())
            && (0..samples).all(|n| {
                let offset = (n * per_sample) as i64;
                v[n * block..(n + 1) * block]
                    .iter()
                    .zip(first)
                    .all(|(p, q)| *p == q + offset && (0..per_sample as i64).contains(q))
            });
        shifted.then_some(first.len())
    };
    let probe = cx.node.input(1).and_then(|n| cx.folded.probes.get(n));
    let follows = cx.batched
        && rank > 0
        && blocks_shift(cx.constant(1), declared).is_some()
        && blocks_shift(probe, declared + 1).is_some();
    if follows {
        let label = cx.node.label.clone();
        cx.info.per_sample_gathers.insert(label, per_sample);
    } else {
        cx.mark_fixed("Gather picks across samples with indices computed from the batch size");
        cx.batched = false;
    }
}
