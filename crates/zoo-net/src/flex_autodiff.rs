//! Plumbing shared by zoo's own training ops on `Autodiff<Flex>` (`conv`, `batch_norm`): the
//! backend check by type, and flex tensors to and from host values.

use std::any::Any;

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use burn_flex::FlexTensor;

/// The training backend zoo's own ops serve.
pub(crate) type Trained = Autodiff<Flex>;

/// The same tensor seen as a tensor of backend `To` (the caller checked `From` is `To`).
pub(crate) fn cast<From: Backend, To: Backend, const D: usize>(
    t: Tensor<From, D>,
) -> Tensor<To, D> {
    let boxed: Box<dyn Any> = Box::new(t);
    *boxed
        .downcast::<Tensor<To, D>>()
        .expect("checked: the two backends are one type")
}

/// The f32 values of a flex tensor, contiguous (copied only when it is a strided view).
pub(crate) fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The values of a tensor made `contiguous`.
pub(crate) fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("made contiguous")
}

pub(crate) fn flex(values: Vec<f32>, dims: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, dims))
}
