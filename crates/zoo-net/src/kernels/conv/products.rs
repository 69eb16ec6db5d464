//! The matrix products of the convolution: the forward's gemm into NCHW, and the weight,
//! input and bias gradients, images spread over the cores.

use ::gemm::Parallelism;
use rayon::prelude::*;

use crate::flex_autodiff::par_zeroed;
use crate::image_parallel::inside_image_task;

use super::*;

pub(super) use crate::kernels::matrix::{gemm_into, gemm_to, Destination, View};

/// How to spread `images` over the cores: by image when there are enough of them (each gemm
/// on one core), else image by image with each gemm using every core.
pub(super) fn split(images: usize) -> (usize, Parallelism) {
    let threads = rayon::current_num_threads().max(1);
    if images >= threads || inside_image_task() {
        (images.div_ceil(threads), Parallelism::None)
    } else {
        (1, Parallelism::Rayon(0))
    }
}

/// Gradient of the weights, `[c_out, patch]` per group stacked: sum over images of
/// `grad_image @ im2col(image)^T`.
pub(super) fn weight_grad(g: &Geometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    let (per_task, parallelism) = split(g.batch);
    let (patch, positions, cog) = (g.patch(), g.positions(), g.out_per_group());
    let weights = g.c_out * patch;
    let partial = |images: std::ops::Range<usize>| {
        let mut sum = vec![0.0f32; weights];
        let mut matrix = vec![0.0f32; g.matrix_len()];
        for n in images {
            let image = &x[n * g.image_len()..][..g.image_len()];
            for group in 0..g.groups {
                let cols = if g.is_pointwise() {
                    &image[group * patch * positions..][..patch * positions]
                } else {
                    im2col(g, image, group, &mut matrix, 0..g.oh, Padding::Zero);
                    &matrix[..]
                };
                let out = &grad[n * g.output_len() + group * cog * positions..][..cog * positions];
                gemm_into(
                    &mut sum[group * cog * patch..][..cog * patch],
                    [cog, patch, positions],
                    View::rows(out, positions),
                    View::transposed(cols, positions),
                    true,
                    parallelism,
                );
            }
        }
        sum
    };
    let tasks: Vec<_> = (0..g.batch)
        .step_by(per_task)
        .map(|start| start..(start + per_task).min(g.batch))
        .collect();
    tasks.into_par_iter().map(partial).reduce(
        || vec![0.0f32; weights],
        |mut a, b| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        },
    )
}

/// Gradient of the input: per image and group, `w^T @ grad_image` scattered back (col2im).
pub(super) fn input_grad(g: &Geometry, w: &[f32], grad: &[f32]) -> Vec<f32> {
    let (_, parallelism) = split(g.batch);
    let (patch, positions, cog) = (g.patch(), g.positions(), g.out_per_group());
    // Each image's gradient is zeroed by the task that adds onto it (col2im).
    let scratch = || vec![0.0f32; g.matrix_len()];
    par_zeroed(
        g.batch * g.image_len(),
        g.image_len(),
        scratch,
        |n, matrix, image| {
            let out = &grad[n * g.output_len()..][..g.output_len()];
            for group in 0..g.groups {
                let lhs = View::transposed(&w[group * cog * patch..][..cog * patch], patch);
                let rhs = View::rows(
                    &out[group * cog * positions..][..cog * positions],
                    positions,
                );
                if g.is_pointwise() {
                    let dst = &mut image[group * patch * positions..][..patch * positions];
                    gemm_into(dst, [patch, positions, cog], lhs, rhs, false, parallelism);
                } else {
                    gemm_into(
                        matrix,
                        [patch, positions, cog],
                        lhs,
                        rhs,
                        false,
                        parallelism,
                    );
                    col2im_add(g, &mut matrix[..], group, image);
                }
            }
        },
    )
}

/// Gradient of the bias: the output gradient summed over images and positions, each plane
/// summed in lanes on some core (one running sum on one core was 3 % of a ConvNeXt-atto
/// training step, perf).
pub(super) fn bias_grad(g: &Geometry, grad: &[f32]) -> Vec<f32> {
    let positions = g.positions().max(1);
    let plane_sums: Vec<f32> = grad
        .par_chunks(positions)
        .with_min_len((1 << 14) / positions)
        .map(plane_sum)
        .collect();
    let mut sums = vec![0.0f32; g.c_out];
    for (i, s) in plane_sums.iter().enumerate() {
        sums[i % g.c_out] += s;
    }
    sums
}

crate::simd::wide_kernel! {
    /// The sum of one plane's values.
    fn plane_sum(values: &[f32]) -> f32 {
        crate::kernels::fast_math::lanes_sum(values, |v| v)
    }
}
