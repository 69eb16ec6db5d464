//! 2-D convolution on burn's flex CPU backend, for inference (`Flex`) and for training
//! (`Autodiff<Flex>`, with gradients of its own), optionally with the ReLU after it fused in.
//!
//! burn's generic convolution gradients transpose and copy both operands, then run a
//! convolution with the output gradient as its kernel (weight gradient) and a transposed
//! convolution (input gradient): over a quarter of a LeNet-5 training step, mostly on one core.
//! Here each image's gradients are one gemm over its im2col matrix, images spread over all
//! cores. The forward is im2col + gemm straight into NCHW, in blocks of output rows that stay
//! in cache, with bias and ReLU applied to each block as it is made. Used only when the values
//! are f32 on flex; every other backend keeps burn's generic path, and `tests/fused_ops.rs`
//! holds the two to the same values and gradients.

use std::any::TypeId;
use std::ops::Range;

use ::gemm::Parallelism;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_flex::FlexTensor;

use std::mem::MaybeUninit;

use crate::flex_autodiff::{cast, contiguous, flex, par_fill, relu_backward, values, Trained};
use crate::simd::wide_kernel;

mod depthwise;
mod direct;
mod geometry;
mod padded;
mod products;
mod winograd;

use geometry::*;
use products::*;

/// A convolution's settings; the pads may differ per side (TensorFlow's SAME padding).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvSettings {
    pub stride: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    pub dilation: [usize; 2],
    pub groups: usize,
    /// A ReLU on the output (the graph's ReLU after the convolution, run in the same pass).
    pub relu: bool,
}

impl From<&ConvOptions<2>> for ConvSettings {
    fn from(o: &ConvOptions<2>) -> Self {
        let [ph, pw] = o.padding;
        Self {
            stride: o.stride,
            pads: [ph, pw, ph, pw],
            dilation: o.dilation,
            groups: o.groups,
            relu: false,
        }
    }
}

/// `conv2d(x, w) + bias` (then ReLU if `settings.relu`) on flex: with zoo's gradients when `B` is `Autodiff<Flex>`, forward
/// only when `B` is `Flex`; `None` (other backends, values not f32) sends the caller to burn's
/// generic convolution.
pub fn conv2d<B: Backend>(
    x: &Tensor<B, 4>,
    w: &Tensor<B, 4>,
    bias: Option<&Tensor<B, 1>>,
    settings: &ConvSettings,
) -> Option<Tensor<B, 4>> {
    if !all_f32(x, w, bias) {
        return None;
    }
    let geometry = Geometry::new(x.dims(), w.dims(), settings);
    if TypeId::of::<B>() == TypeId::of::<Flex>() {
        let primitive = |t: Tensor<Flex, 4>| t.into_primitive().tensor();
        let y = forward(
            primitive(cast(x.clone())),
            primitive(cast(w.clone())),
            bias.map(|b| cast::<B, Flex, 1>(b.clone()).into_primitive().tensor()),
            &geometry,
        );
        return Some(cast::<Flex, B, 4>(Tensor::from_primitive(
            TensorPrimitive::Float(y),
        )));
    }
    if TypeId::of::<B>() != TypeId::of::<Trained>() {
        return None;
    }
    let y = tracked_conv(
        cast::<B, Trained, 4>(x.clone()),
        cast::<B, Trained, 4>(w.clone()),
        bias.map(|b| cast::<B, Trained, 1>(b.clone())),
        geometry,
    );
    Some(cast::<Trained, B, 4>(y))
}

/// The convolution's output: per image and group, `w @ im2col(image)` written straight into
/// the NCHW output (flex's own convolution converts to NHWC and back around its gemm), then the
/// bias and ReLU per plane. Fewer images than cores (a single `predict`) run one image with
/// each gemm on every core; flex's convolution, which spread one image's tiles over the cores,
/// took 24.0-25.7 ms for AlexNet at batch 1 against 22.7-23.4 here (AVX-512 Xeon, 2 cores).
fn forward(x: FlexTensor, w: FlexTensor, bias: Option<FlexTensor>, g: &Geometry) -> FlexTensor {
    let bias = bias.map(contiguous);
    if g.is_depthwise() {
        let (x, w) = (contiguous(x), contiguous(w));
        let y = depthwise::forward(g, values(&x), values(&w), bias.as_ref().map(values));
        return flex(y, vec![g.batch, g.c_out, g.oh, g.ow]);
    }
    let (x, w) = (contiguous(x), contiguous(w));
    let y = forward_values(g, values(&x), values(&w), bias.as_ref().map(values));
    flex(y, vec![g.batch, g.c_out, g.oh, g.ow])
}

wide_kernel! {
/// The end of a convolution on one output plane of channel `channel`: its bias, then the
/// fused ReLU (one pass, while the plane is in cache).
fn finish_plane(plane: &mut [f32], bias: Option<&[f32]>, channel: usize, relu: bool) {
    let b = bias.map_or(0.0, |b| b[channel]);
    if relu {
        plane.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
    } else if bias.is_some() {
        plane.iter_mut().for_each(|v| *v += b);
    }
}
}

/// Values of one block of the inference convolution's columns (512 KB): a block of output
/// rows is unfolded, multiplied and finished while its im2col columns and its output are still
/// in the core's L2 cache (a whole image's unfolding is 7 MB for SqueezeNet's first layer).
const BLOCK_VALUES: usize = 1 << 17;

/// gemm multiplies a block without repacking its columns when their count is a multiple of
/// its 16 lanes (measured 85-89 GFLOP/s per core unaligned, 100-103 aligned).
const GEMM_LANES: usize = 16;

fn forward_values(g: &Geometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let conv = ImageConv::new(g, x, w, bias);
    // SAFETY: `ImageConv::write` writes every value of its image's output.
    unsafe {
        par_fill(
            g.batch * g.output_len(),
            g.output_len(),
            || (),
            |n, _, out| conv.write(n, out),
        )
    }
}

/// `conv2d(x, w) + bias` (then ReLU if `settings.relu`) of a flex batch written straight into
/// channels `first_channel..` of a concatenation's output (`target`, made here for the first
/// part as `[batch, channels, oh, ow]`). `false` (nothing written) where [`conv2d`] would not
/// run zoo's image-by-image kernel on flex, or the output does not fit the target.
pub(crate) fn conv2d_into<B: Backend>(
    x: &Tensor<B, 4>,
    w: &Tensor<B, 4>,
    bias: Option<&Tensor<B, 1>>,
    settings: &ConvSettings,
    target: &mut Option<crate::concat::ChannelConcat>,
    [first_channel, channels]: [usize; 2],
) -> bool {
    let g = Geometry::new(x.dims(), w.dims(), settings);
    let served = TypeId::of::<B>() == TypeId::of::<Flex>() && all_f32(x, w, bias);
    if !served || g.is_depthwise() {
        return false;
    }
    let dims = [g.batch, channels, g.oh, g.ow];
    let target = target.get_or_insert_with(|| crate::concat::ChannelConcat::new(dims));
    if target.dims() != dims || first_channel + g.c_out > channels {
        return false;
    }
    let values_of = |t: Tensor<B, 4>| contiguous(cast::<B, Flex, 4>(t).into_primitive().tensor());
    let (x, w) = (values_of(x.clone()), values_of(w.clone()));
    let bias = bias.map(|b| contiguous(cast::<B, Flex, 1>(b.clone()).into_primitive().tensor()));
    let conv = ImageConv::new(&g, values(&x), values(&w), bias.as_ref().map(values));
    // SAFETY: `ImageConv::write` writes every value of its image's output.
    unsafe { target.write_channels(first_channel, g.c_out, |n, out| conv.write(n, out)) };
    true
}

/// Whether the operands are all f32 (zoo's kernels serve no other dtype).
fn all_f32<B: Backend>(x: &Tensor<B, 4>, w: &Tensor<B, 4>, bias: Option<&Tensor<B, 1>>) -> bool {
    x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && bias.is_none_or(|b| b.dtype() == DType::F32)
}

/// The inference forward of one convolution, image by image: the direct kernel for few output
/// channels, Winograd's where it serves the geometry, else im2col + gemm in blocks of output
/// rows.
struct ImageConv<'a> {
    g: &'a Geometry,
    x: &'a [f32],
    w: &'a [f32],
    bias: Option<&'a [f32]>,
    method: Method,
    parallelism: Parallelism,
}

enum Method {
    Direct(direct::Direct),
    Winograd(winograd::Winograd),
    /// im2col + gemm per block; the values of the largest im2col block (none when pointwise).
    Blocks {
        blocks: Vec<Range<usize>>,
        block_len: usize,
    },
}

impl<'a> ImageConv<'a> {
    fn new(g: &'a Geometry, x: &'a [f32], w: &'a [f32], bias: Option<&'a [f32]>) -> Self {
        let parallelism = split(g.batch).1;
        let method = if let Some(direct) = direct::Direct::plan(g, w) {
            Method::Direct(direct)
        } else if let Some(winograd) = winograd::Winograd::plan(g, w) {
            Method::Winograd(winograd)
        } else {
            let mut blocks = g.blocks();
            // One image spread over the cores wants two (group, block) tasks per core; cut
            // the blocks smaller only where the usual ones are fewer (AlexNet's grouped 13x13
            // layers in blocks of 4, 4, 4 and 1 rows instead of 5, 5 and 3 were slower).
            let wanted = 2 * rayon::current_num_threads();
            let one_image = matches!(parallelism, Parallelism::Rayon(_));
            if one_image && g.groups * blocks.len() < wanted {
                blocks = g.blocks_at_least(wanted.div_ceil(g.groups));
            }
            let block_len = match g.is_pointwise() {
                true => 0,
                false => blocks.iter().map(|b| b.len()).max().unwrap_or(0) * g.patch(),
            };
            Method::Blocks { blocks, block_len }
        };
        Self {
            g,
            x,
            w,
            bias,
            method,
            parallelism,
        }
    }

    /// Image `n`'s output `[c_out, oh, ow]`, every value written.
    fn write(&self, n: usize, out: &mut [MaybeUninit<f32>]) {
        let g = self.g;
        let image = &self.x[n * g.image_len()..][..g.image_len()];
        match &self.method {
            Method::Direct(direct) => with_scratch(direct.scratch_len(g), |planes| {
                direct.image_output(g, image, self.bias, out, planes)
            }),
            Method::Winograd(winograd) => {
                winograd.image_output(g, image, self.bias, out, self.parallelism)
            }
            Method::Blocks { blocks, block_len } => self.blocks_of(blocks, *block_len, image, out),
        }
    }

    /// Per group and block of output positions: unfold (unless pointwise), multiply, finish.
    /// With fewer images than cores, the (group, block) pairs spread over the cores when there
    /// are enough of them (each gemm on one core: gemm's own threads split a small block's
    /// product finely and waited on each other, AlexNet's first layer at batch 1 ran at 107
    /// GFLOP/s on 2 cores); else each gemm uses every core.
    fn blocks_of(
        &self,
        blocks: &[Range<usize>],
        block_len: usize,
        image: &[f32],
        out: &mut [MaybeUninit<f32>],
    ) {
        let tasks = self.g.groups * blocks.len();
        let spread = matches!(self.parallelism, Parallelism::Rayon(_))
            && tasks >= 2 * rayon::current_num_threads();
        let shared = SharedOutput {
            ptr: out.as_mut_ptr().cast::<f32>(),
            len: out.len(),
        };
        let one = |task: usize, parallelism: Parallelism| {
            let (group, block) = (task / blocks.len(), &blocks[task % blocks.len()]);
            with_scratch(block_len, |matrix| {
                // SAFETY: each (group, block) pair writes only its own channels' cells of its
                // positions, and every pair runs once.
                unsafe {
                    self.block_output(group, block.clone(), image, matrix, &shared, parallelism)
                }
            })
        };
        if spread {
            use rayon::prelude::*;
            (0..tasks)
                .into_par_iter()
                .for_each(|t| one(t, Parallelism::None));
        } else {
            (0..tasks).for_each(|t| one(t, self.parallelism));
        }
    }

    /// Group `group`'s output channels at positions `block`: unfolded into `matrix` (unless
    /// pointwise), multiplied into the output, then bias and ReLU.
    ///
    /// # Safety
    /// No other call writes or reads these cells of `out` meanwhile.
    unsafe fn block_output(
        &self,
        group: usize,
        block: Range<usize>,
        image: &[f32],
        matrix: &mut [f32],
        out: &SharedOutput,
        parallelism: Parallelism,
    ) {
        let (g, bias) = (self.g, self.bias);
        let (patch, positions, cog) = (g.patch(), g.positions(), g.out_per_group());
        let weights = View::rows(&self.w[group * cog * patch..][..cog * patch], patch);
        let (start, count) = (block.start, block.len());
        let cols = if g.is_pointwise() {
            View::rows(&image[group * patch * positions + start..], positions)
        } else {
            let rows = start / g.ow..(start + count) / g.ow;
            im2col(g, image, group, matrix, rows, Padding::Write);
            View::rows(matrix, count)
        };
        let first_channel = group * cog;
        let offset = first_channel * positions + start;
        assert!(
            offset + (cog.max(1) - 1) * positions + count <= out.len,
            "inside the output"
        );
        let dst = Destination {
            ptr: out.ptr.wrapping_add(offset),
            len: out.len - offset,
            row_step: positions,
        };
        // SAFETY: the rows lie inside the output (asserted); the caller's promise.
        unsafe { gemm_to(dst, [cog, count, patch], weights, cols, parallelism) };
        if bias.is_none() && !g.relu {
            return;
        }
        for channel in first_channel..first_channel + cog {
            // SAFETY: inside the output (asserted above), written by the gemm, this call's own.
            let row = unsafe {
                std::slice::from_raw_parts_mut(out.ptr.add(channel * positions + start), count)
            };
            finish_plane(row, bias, channel, g.relu);
        }
    }
}

/// One image's output, written by several tasks at once, each to cells of its own.
struct SharedOutput {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: tasks write disjoint cells of one live buffer (see `ImageConv::blocks_of`).
unsafe impl Sync for SharedOutput {}

thread_local! {
    /// This thread's inference scratch buffers (im2col blocks, Winograd tiles and products),
    /// kept between convolutions and images (a fresh zeroed one per image and layer was 4 % of
    /// a SqueezeNet evaluate in `memset`).
    static SCRATCH: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `f` on `len` scratch values of unspecified contents. A buffer is taken out of the thread's
/// pool while `f` runs, so a nested call (a Winograd chunk inside its image's transform, or
/// another convolution rayon runs on this thread while a gemm waits) gets another one.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buffer = SCRATCH.with_borrow_mut(Vec::pop).unwrap_or_default();
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    let result = f(&mut buffer[..len]);
    SCRATCH.with_borrow_mut(|pool| pool.push(buffer));
    result
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    /// Input, weights, geometry, and the output when a ReLU was fused (its mask).
    type State = (FlexTensor, FlexTensor, Geometry, Option<FlexTensor>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, w_node, b_node] = ops.parents.map(|p| p.map(|node| node.id));
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let (x, w, g, relu_output) = ops.state;
        let masked = relu_output.map(|y| relu_backward(values(&grad), values(&contiguous(y))));
        let grad = masked.as_deref().unwrap_or(values(&grad));
        if let Some(id) = x_node {
            let w = contiguous(w);
            let dx = match g.is_depthwise() {
                true => depthwise::input_grad(&g, values(&w), grad),
                false => input_grad(&g, values(&w), grad),
            };
            grads.register::<Flex>(id, flex(dx, vec![g.batch, g.c_in, g.h, g.w]));
        }
        if let Some(id) = w_node {
            let x = contiguous(x);
            let dw = match g.is_depthwise() {
                true => depthwise::weight_grad(&g, values(&x), grad),
                false => weight_grad(&g, values(&x), grad),
            };
            let dims = vec![g.c_out, g.in_per_group(), g.kh, g.kw];
            grads.register::<Flex>(id, flex(dw, dims));
        }
        if let Some(id) = b_node {
            grads.register::<Flex>(id, flex(bias_grad(&g, grad), vec![g.c_out]));
        }
    }
}

fn tracked_conv(
    x: Tensor<Trained, 4>,
    w: Tensor<Trained, 4>,
    bias: Option<Tensor<Trained, 1>>,
    geometry: Geometry,
) -> Tensor<Trained, 4> {
    let has_bias = bias.is_some();
    // An untracked zero stands in for a missing bias: one op shape (three parents) for both.
    let bias = bias.unwrap_or_else(|| Tensor::zeros([geometry.c_out], &Default::default()));
    let (x, w, b) = (
        x.into_primitive().tensor(),
        w.into_primitive().tensor(),
        bias.into_primitive().tensor(),
    );
    let run = |x, w, b| forward(x, w, has_bias.then_some(b), &geometry);
    let nodes = [x.node.clone(), w.node.clone(), b.node.clone()];
    let out = match ConvBackward
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (x_kept, w_kept) = (x.primitive.clone(), w.primitive.clone());
            let y = run(x.primitive, w.primitive, b.primitive);
            let relu_output = geometry.relu.then(|| y.clone());
            prep.finish((x_kept, w_kept, geometry, relu_output), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(run(x.primitive, w.primitive, b.primitive)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_keeps_exactly_the_positions_that_read_the_image() {
        for (outputs, size, offset, stride) in
            [(5, 5, -1, 1), (3, 7, -2, 2), (4, 4, 2, 1), (2, 3, 5, 1)]
        {
            let (lo, hi) = inside(outputs, size, offset, stride);
            for o in 0..outputs {
                let i = o as isize * stride as isize + offset;
                let reads = (0..size as isize).contains(&i);
                assert_eq!(
                    reads,
                    (lo..hi).contains(&o),
                    "{outputs} {size} {offset} {stride} {o}"
                );
            }
        }
    }

    #[test]
    fn blocks_cover_every_position_once_in_whole_rows_aligned_where_they_can_be() {
        let settings = |pad| ConvSettings {
            stride: [1, 1],
            pads: [pad; 4],
            dilation: [1, 1],
            groups: 1,
            relu: false,
        };
        // SqueezeNet's 3x3 expand at 55x55 and 27x27, a pointwise 13x13, a small image.
        for (x, w, pad) in [
            ([1, 32, 55, 55], [128, 32, 3, 3], 1),
            ([1, 64, 27, 27], [256, 64, 3, 3], 1),
            ([1, 512, 13, 13], [1001, 512, 1, 1], 0),
            ([1, 1, 5, 5], [2, 1, 3, 3], 1),
        ] {
            let g = Geometry::new(x, w, &settings(pad));
            let blocks = g.blocks();
            covers_every_position_once(&g, &g.blocks_at_least(4));
            let mut next = 0;
            for (i, b) in blocks.iter().enumerate() {
                assert_eq!(b.start, next, "{x:?}: contiguous");
                next = b.end;
                if !g.is_pointwise() {
                    assert_eq!(b.start % g.ow + b.len() % g.ow, 0, "{x:?}: whole rows");
                }
                let last = i + 1 == blocks.len();
                if !last && blocks.len() > 1 {
                    assert_eq!(b.len() % GEMM_LANES, 0, "{x:?}: aligned block {b:?}");
                }
                assert!(b.len() * g.patch() <= 2 * BLOCK_VALUES + g.ow * g.patch());
            }
            assert_eq!(next, g.positions(), "{x:?}: every position");
        }
        // ViT's patch embedding at batch 1, its blocks spread over four tasks.
        let patches = ConvSettings {
            stride: [16, 16],
            ..settings(0)
        };
        let g = Geometry::new([1, 3, 224, 224], [192, 3, 16, 16], &patches);
        assert_eq!(g.blocks().len(), 1);
        let spread = g.blocks_at_least(4);
        assert_eq!(spread.len(), 4, "{spread:?}");
        covers_every_position_once(&g, &spread);
    }

    fn covers_every_position_once(g: &Geometry, blocks: &[Range<usize>]) {
        let mut next = 0;
        for b in blocks {
            assert_eq!(b.start, next, "contiguous");
            if !g.is_pointwise() {
                assert_eq!(b.start % g.ow + b.len() % g.ow, 0, "whole rows");
            }
            next = b.end;
        }
        assert_eq!(next, g.positions(), "every position");
    }
}
