//! The shape rules of the ops that regroup values between axes (Flatten, Reshape, Concat):
//! where the batch goes when axis 0 holds it as its outer factor, and when a part without the
//! batch is repeated along it.

use crate::error::Result;
use crate::shapes::{resolve_reshape, ShapeCx};

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
    let keeps_batch = !out.is_empty()
        && !x.is_empty()
        && out[0] == x[0]
        && out[1..].iter().product::<usize>() == x[1..].iter().product::<usize>();
    // Axis 0 holds the batch as its outer factor (batch-major); a target whose trailing axes
    // fit within one sample keeps that (Swin's `[B * windows, ...]`), and axis 0 scales with
    // the batch. Not provable from shapes alone: the network proves it by running.
    let sample: usize = x.iter().product::<usize>() / cx.info.declared_batch.max(1);
    let scales_batch = !out.is_empty()
        && out[1..].iter().product::<usize>() > 0
        && sample.is_multiple_of(out[1..].iter().product::<usize>());
    let resolved = if cx.batched && (keeps_batch || scales_batch) {
        if !keeps_batch {
            cx.rewrote_batch();
        }
        crate::ReshapeTarget::KeepBatch(out[1..].to_vec())
    } else {
        cx.drop_batch("Reshape moves the batch axis");
        crate::ReshapeTarget::Fixed(out.clone())
    };
    let label = cx.node.label.clone();
    cx.info.reshape_targets.insert(label, resolved);
    Ok(out)
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
