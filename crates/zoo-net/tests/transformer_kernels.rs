//! zoo's transpose on flex (a contiguous copy, merged axes, tiles) gives burn's permute's
//! values, and on `Autodiff<Flex>` its gradients (the inverse copy), over ranks 2 to 6,
//! permutations that keep runs contiguous, swap the last two axes, or move one axis, and
//! sizes around the tile edge.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};
use zoo_net::kernels::permute::permute;
use zoo_onnx::builder::SeededRng;

fn values<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

fn check<const D: usize>(dims: [usize; D], axes: [usize; D]) {
    let n: usize = dims.iter().product();
    let x = SeededRng::new(n as u64).values(n, 1.0);
    let device = Default::default();
    let flex = Tensor::<Flex, D>::from_data(TensorData::new(x.clone(), dims), &device);
    let fast = permute(&flex, axes).expect("flex is served");
    assert_eq!(
        fast.dims(),
        flex.clone().permute(axes).dims(),
        "{dims:?} {axes:?}"
    );
    assert_eq!(
        values(fast),
        values(flex.permute(axes)),
        "{dims:?} {axes:?}"
    );

    // Gradients of sum(y * w) with a different w per output value.
    let w = SeededRng::new(7).values(n, 1.0);
    let grad = |fast: bool| {
        let x = Tensor::<Autodiff<Flex>, D>::from_data(TensorData::new(x.clone(), dims), &device)
            .require_grad();
        let y = if fast {
            permute(&x, axes).expect("autodiff flex is served")
        } else {
            x.clone().permute(axes)
        };
        let w =
            Tensor::<Autodiff<Flex>, D>::from_data(TensorData::new(w.clone(), y.dims()), &device);
        let grads = (y * w).sum().backward();
        values(x.grad(&grads).unwrap())
    };
    assert_eq!(grad(true), grad(false), "gradient {dims:?} {axes:?}");
}

#[test]
fn transposes_match_burns_permute_in_values_and_gradients() {
    check([3, 5], [1, 0]);
    check([70, 130], [1, 0]);
    check([2, 3, 4], [0, 2, 1]);
    check([2, 3, 4], [2, 0, 1]);
    check([2, 65, 67], [0, 2, 1]);
    check([2, 5, 3, 4], [0, 2, 1, 3]);
    check([2, 5, 3, 4], [0, 2, 3, 1]);
    check([1, 3, 1, 4], [3, 1, 0, 2]);
    check([2, 5, 3, 2, 4], [2, 0, 3, 1, 4]);
    check([1, 2, 5, 3, 2, 4], [0, 3, 1, 4, 2, 5]);
    check([1, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]);
}
