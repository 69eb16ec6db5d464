//! Expand and Tile: copies along axes, to targets resolved at import. A target whose axis 0
//! was the batch size takes the run-time batch.

use burn::tensor::backend::Backend;
use zoo_onnx::ops::Repeat;

use super::Cx;
use crate::exec::{pad_dims, Value};

pub(crate) fn run<B: Backend>(op: &Repeat, cx: &Cx<B>) -> Value<B> {
    let x = cx.get(0);
    let mut out = op.output_dims(&x.dims()).expect("validated at import");
    let batch_sized = cx
        .net
        .plan
        .graph
        .shapes
        .batch_sized
        .contains(&cx.node.label);
    if batch_sized {
        out[0] = cx.batch;
    }
    let t = match op {
        Repeat::Expand { .. } => x.t.expand(pad_dims(&out)),
        Repeat::Tile { .. } => {
            let from = pad_dims(&x.dims());
            let to = pad_dims(&out);
            let times: Vec<usize> = from.iter().zip(&to).map(|(f, t)| t / f).collect();
            x.t.repeat(&times)
        }
    };
    Value::new(t, out.len())
}
