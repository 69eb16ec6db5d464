//! Einsum as one batched matrix product: each operand permuted to `[batch, free, contracted]`
//! (the second to `[batch, contracted, free]`), multiplied, then permuted to the output order.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use zoo_onnx::ops::Einsum;

use super::Cx;
use crate::exec::{Value, PADDED};

pub(crate) fn run<B: Backend>(op: &Einsum, cx: &Cx<B>) -> Value<B> {
    let (a, b) = (cx.get(0), cx.get(1));
    let plan = &op.labels;
    let sizes = op.sizes(&a.dims(), &b.dims()).expect("validated at import");
    let size = |l: &char| sizes.iter().find(|(k, _)| k == l).map_or(1, |(_, s)| *s);
    let product = |ls: &[char]| ls.iter().map(size).product::<usize>();
    let (batch, m, n, k) = (
        product(&plan.batch),
        product(&plan.free_a),
        product(&plan.free_b),
        product(&plan.contracted),
    );
    let a_order: Vec<char> = [&plan.batch[..], &plan.free_a, &plan.contracted].concat();
    let b_order: Vec<char> = [&plan.batch[..], &plan.contracted, &plan.free_b].concat();
    let a3: Tensor<B, 3> = permuted(a, &op.a, &a_order).reshape([batch, m, k]);
    let b3: Tensor<B, 3> = permuted(b, &op.b, &b_order).reshape([batch, k, n]);
    let product_order: Vec<char> = [&plan.batch[..], &plan.free_a, &plan.free_b].concat();
    let dims: Vec<usize> = product_order.iter().map(size).collect();
    let y = Value::reshaped(a3.matmul(b3).reshape(crate::exec::pad_dims(&dims)), &dims);
    let rank = y.rank;
    Value::new(permuted(y, &product_order, &op.out), rank)
}

/// The value with its axes (labelled `from`) in the order `to`.
fn permuted<B: Backend>(x: Value<B>, from: &[char], to: &[char]) -> Tensor<B, PADDED> {
    let lead = PADDED - x.rank;
    let axes: [usize; PADDED] = std::array::from_fn(|i| {
        if i < lead {
            i
        } else {
            lead + from
                .iter()
                .position(|l| *l == to[i - lead])
                .expect("same labels")
        }
    });
    x.t.permute(axes)
}
