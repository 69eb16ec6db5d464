//! In-place host updates must never change a tensor that something else still holds (the
//! trainer keeps the best weights as a clone that shares storage with the live network).

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use zoo_net::host::{update_values, with_values};

fn values<B: Backend>(t: &Tensor<B, 1>) -> Vec<f32> {
    with_values(t, |v| v.to_vec())
}

fn check<B: Backend>() {
    let device = Default::default();
    let original = Tensor::<B, 1>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0], [3]), &device);
    let kept = original.clone();
    let updated = update_values(original, |v| v.iter_mut().for_each(|x| *x *= 10.0));
    assert_eq!(values(&updated), [10.0, 20.0, 30.0]);
    assert_eq!(
        values(&kept),
        [1.0, 2.0, 3.0],
        "a shared tensor was changed"
    );

    // Unshared: updated again, in place, and the result is what was asked.
    let again = update_values(updated, |v| v[0] = -1.0);
    assert_eq!(values(&again), [-1.0, 20.0, 30.0]);

    // A strided view is updated as its logical values.
    let matrix = Tensor::<B, 2>::from_data(
        TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]),
        &device,
    );
    let transposed = matrix.clone().transpose();
    let bumped = update_values(transposed, |v| v.iter_mut().for_each(|x| *x += 0.5));
    assert_eq!(
        bumped.into_data().to_vec::<f32>().unwrap(),
        [1.5, 4.5, 2.5, 5.5, 3.5, 6.5]
    );
    assert_eq!(
        matrix.into_data().to_vec::<f32>().unwrap(),
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    );
}

#[test]
fn flex_updates_in_place_but_copies_shared_tensors() {
    check::<Flex>();
}

#[test]
fn other_backends_take_the_host_round_trip() {
    check::<Autodiff<Flex>>();
}
