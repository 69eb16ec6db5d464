//! Resize: the taps each output row and column reads (known from the static sizes), applied
//! along H and then along W as gathers and weighted sums (which autodiff follows).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use zoo_onnx::ops::resize::Taps;
use zoo_onnx::ops::Resize;

use super::Cx;
use crate::exec::Value;

pub(crate) fn run<B: Backend>(op: &Resize, cx: &Cx<B>) -> Value<B> {
    let x = cx.get(0).t4();
    let [_, _, h, w] = x.dims();
    let [oh, ow] = op.output([h, w]);
    let y = along(x, 2, &op.taps(h, oh, 0));
    Value::from4(along(y, 3, &op.taps(w, ow, 1)), 4)
}

/// Output position `i` along `axis` is the sum of its taps' weighted input positions.
fn along<B: Backend>(x: Tensor<B, 4>, axis: usize, taps: &[Taps]) -> Tensor<B, 4> {
    let device = x.device();
    let width = taps.iter().map(Vec::len).max().unwrap_or(1);
    let mut sum: Option<Tensor<B, 4>> = None;
    for k in 0..width {
        let tap = |t: &Taps| t.get(k).copied().unwrap_or((t[0].0, 0.0));
        let index: Vec<i64> = taps.iter().map(|t| tap(t).0 as i64).collect();
        let weights: Vec<f32> = taps.iter().map(|t| tap(t).1).collect();
        let n = taps.len();
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [n]), &device);
        let picked = x.clone().select(axis, index);
        let term = if weights.iter().all(|&w| w == 1.0) {
            picked
        } else {
            let mut shape = [1; 4];
            shape[axis] = n;
            let weights = Tensor::<B, 1>::from_data(TensorData::new(weights, [n]), &device);
            picked * weights.reshape(shape)
        };
        sum = Some(match sum {
            None => term,
            Some(s) => s + term,
        });
    }
    sum.expect("at least one tap")
}
