//! Inference on flex with one image per task: each core runs the whole graph on its own images,
//! so an image's activations stay in that core's caches from layer to layer. Layer by layer
//! over a batch of 32, every activation (SqueezeNet's first one alone is 146 MB) went out to
//! memory and back, and the element-wise ops between the gemms waited on it.

use std::any::{Any, TypeId};
use std::cell::Cell;

use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::error::NetError;
use crate::exec::{Value, PADDED};
use crate::flex_autodiff::cast;
use crate::network::{Activation, Network};

/// Input values per image below which a batch runs layer by layer: small images' activations
/// stay in cache across a batch anyway, and the graph's per-run overhead (some 15 op
/// dispatches and allocations) would outweigh a LeNet-5 image's 4 MFLOP.
const MIN_IMAGE_VALUES: usize = 64 * 64 * 3;

/// Values of the largest fully connected weight up to which a batch runs image by image
/// (16 MB): a bigger one (AlexNet's fc6 is 151 MB) would be read from memory once per image
/// instead of once per batch.
const MAX_MATMUL_WEIGHT: usize = 1 << 22;

thread_local! {
    static IN_IMAGE_TASK: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread already runs one task of an image-parallel forward (its ops then keep
/// to this core). Marked by the task itself: being on one of rayon's workers is not enough,
/// since a whole inference pass runs on one (`exec::run_nodes_tapped`) and its ops should
/// still spread over the cores.
pub(crate) fn inside_image_task() -> bool {
    IN_IMAGE_TASK.with(Cell::get)
}

/// Marks this thread as running one image's task until dropped (then restores what was).
struct ImageTask(bool);

impl ImageTask {
    fn enter() -> Self {
        Self(IN_IMAGE_TASK.with(|c| c.replace(true)))
    }
}

impl Drop for ImageTask {
    fn drop(&mut self) {
        IN_IMAGE_TASK.with(|c| c.set(self.0));
    }
}

/// `net.forward_to(input, value)` image by image on all cores, when `B` is `Flex`, the batch
/// has more than one image of at least [`MIN_IMAGE_VALUES`], no fully connected weight is over
/// [`MAX_MATMUL_WEIGHT`], no task of this kind is running, and the value keeps the batch as
/// its first axis; `None` otherwise (the caller runs the batch layer by layer).
pub(crate) fn forward_to<B: Backend>(
    net: &Network<B>,
    input: &Tensor<B, 4>,
    value: &str,
) -> Option<Result<Activation<B>, NetError>> {
    let [n, c, h, w] = input.dims();
    let small = c * h * w < MIN_IMAGE_VALUES;
    if TypeId::of::<B>() != TypeId::of::<Flex>() || n < 2 || small || inside_image_task() {
        return None;
    }
    if net.plan().largest_matmul_weight > MAX_MATMUL_WEIGHT {
        return None;
    }
    let net = (net as &dyn Any).downcast_ref::<Network<Flex>>()?;
    let batch = cast::<B, Flex, 4>(input.clone());
    let images: Result<Vec<Activation<Flex>>, NetError> = (0..n)
        .into_par_iter()
        .map(|i| {
            let _task = ImageTask::enter();
            net.forward_to(batch.clone().slice(i..i + 1), value)
        })
        .collect();
    let images = match images {
        Ok(images) => images,
        Err(e) => return Some(Err(e)),
    };
    if images.iter().any(|a| a.dims().first() != Some(&1)) {
        return None;
    }
    let rank = images[0].value.rank;
    let parts = images.into_iter().map(|a| a.value.t).collect();
    let joined = crate::concat::concat(parts, PADDED - rank);
    let value = Value::new(cast::<Flex, B, PADDED>(joined), rank);
    Some(Ok(Activation { value }))
}

#[cfg(test)]
mod task_mark_tests {
    use super::{inside_image_task, ImageTask};

    #[test]
    fn only_an_image_task_keeps_its_ops_to_one_core() {
        // A whole inference pass runs on a rayon worker: that alone is not an image task.
        rayon::scope(|_| assert!(!inside_image_task()));
        assert!(!inside_image_task());
        {
            let _outer = ImageTask::enter();
            assert!(inside_image_task());
            {
                let _inner = ImageTask::enter();
                assert!(inside_image_task());
            }
            assert!(
                inside_image_task(),
                "leaving a nested task keeps the outer one"
            );
        }
        assert!(!inside_image_task());
    }
}
