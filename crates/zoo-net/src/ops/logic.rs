//! Comparisons and selection on data; masks are 0/1 floats.

use burn::tensor::backend::Backend;
use zoo_onnx::ops::{Comparison, Logic};

use super::{binary, broadcast_shape, Cx};
use crate::exec::{Value, PADDED};

pub(crate) fn run<B: Backend>(op: &Logic, cx: &Cx<B>) -> Value<B> {
    match op {
        Logic::Compare(c) => {
            let c = *c;
            binary(cx.get(0), cx.get(1), |a, b| {
                let shape = broadcast_shape(&a, &b);
                let (a, b) = (a.expand(shape), b.expand(shape));
                match c {
                    Comparison::Equal => a.equal(b),
                    Comparison::Less => a.lower(b),
                    Comparison::Greater => a.greater(b),
                }
                .float()
            })
        }
        Logic::Not => cx.get(0).map(|t| t.equal_elem(0.0).float()),
        Logic::Where => {
            let (mask, x, y) = (cx.get(0), cx.get(1), cx.get(2));
            let rank = mask.rank.max(x.rank).max(y.rank);
            let dims = [mask.t.dims(), x.t.dims(), y.t.dims()];
            let shape: [usize; PADDED] =
                std::array::from_fn(|i| dims.iter().map(|d| d[i]).max().unwrap_or(1));
            let keep_x = mask.t.expand(shape).not_equal_elem(0.0);
            let t = y.t.expand(shape).mask_where(keep_x, x.t.expand(shape));
            Value::new(t, rank)
        }
    }
}
