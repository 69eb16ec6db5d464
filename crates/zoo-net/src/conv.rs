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

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, ModuleOps};
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_flex::FlexTensor;
use gemm::Parallelism;
use rayon::prelude::*;

use std::mem::MaybeUninit;

use crate::flex_autodiff::{
    cast, contiguous, flex, par_fill, par_zeroed, relu_backward, values, written, Trained,
};
use crate::image_parallel::inside_image_task;
use crate::simd::{every_second, wide_kernel};

mod winograd;

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
/// bias and ReLU per plane. Fewer images than cores (a single `predict`), outside an
/// image-by-image task, go to flex's convolution, which spreads one image's tiles over the
/// cores.
fn forward(x: FlexTensor, w: FlexTensor, bias: Option<FlexTensor>, g: &Geometry) -> FlexTensor {
    let bias = bias.map(contiguous);
    if g.on_flex_convolution() {
        let options = ConvOptions::new(g.stride, g.pad, g.dilation, g.groups);
        let mut y = contiguous(<Flex as ModuleOps<Flex>>::conv2d(x, w, None, options));
        if bias.is_some() || g.relu {
            // The fresh output is not shared: copy-on-write writes in place.
            let len = g.batch * g.output_len();
            let bias = bias.as_ref().map(values);
            y.storage_mut::<f32>()[..len]
                .par_chunks_mut(g.positions().max(1))
                .enumerate()
                .for_each(|(plane, values)| finish_plane(values, bias, plane % g.c_out, g.relu));
        }
        return y;
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
    if TypeId::of::<B>() != TypeId::of::<Flex>() || !all_f32(x, w, bias) || g.on_flex_convolution()
    {
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

/// The inference forward of one convolution, image by image: Winograd's when it serves the
/// geometry, else im2col + gemm in blocks of output rows.
struct ImageConv<'a> {
    g: &'a Geometry,
    x: &'a [f32],
    w: &'a [f32],
    bias: Option<&'a [f32]>,
    winograd: Option<winograd::Winograd>,
    blocks: Vec<Range<usize>>,
    /// Values of the largest im2col block (none for a pointwise convolution).
    block_len: usize,
    parallelism: Parallelism,
}

impl<'a> ImageConv<'a> {
    fn new(g: &'a Geometry, x: &'a [f32], w: &'a [f32], bias: Option<&'a [f32]>) -> Self {
        let winograd = winograd::Winograd::plan(g, w);
        let blocks = if winograd.is_some() {
            Vec::new()
        } else {
            g.blocks()
        };
        let block_len = if g.is_pointwise() {
            0
        } else {
            blocks.iter().map(|b| b.len()).max().unwrap_or(0) * g.patch()
        };
        Self {
            g,
            x,
            w,
            bias,
            winograd,
            blocks,
            block_len,
            parallelism: split(g.batch).1,
        }
    }

    /// Image `n`'s output `[c_out, oh, ow]`, every value written.
    fn write(&self, n: usize, out: &mut [MaybeUninit<f32>]) {
        let g = self.g;
        let image = &self.x[n * g.image_len()..][..g.image_len()];
        match &self.winograd {
            Some(winograd) => winograd.image_output(g, image, self.bias, out),
            None => with_scratch(self.block_len, |matrix| self.blocks_of(image, matrix, out)),
        }
    }

    /// Per group and block of output positions: unfold (unless pointwise), multiply, finish.
    fn blocks_of(&self, image: &[f32], matrix: &mut [f32], out: &mut [MaybeUninit<f32>]) {
        let (g, bias) = (self.g, self.bias);
        let (patch, positions, cog) = (g.patch(), g.positions(), g.out_per_group());
        for group in 0..g.groups {
            let weights = View::rows(&self.w[group * cog * patch..][..cog * patch], patch);
            for block in &self.blocks {
                let (start, count) = (block.start, block.len());
                let cols = if g.is_pointwise() {
                    View::rows(&image[group * patch * positions + start..], positions)
                } else {
                    let rows = start / g.ow..(start + count) / g.ow;
                    im2col(g, image, group, matrix, rows, Padding::Write);
                    View::rows(matrix, count)
                };
                let first_channel = group * cog;
                gemm_write(
                    &mut out[first_channel * positions + start..],
                    [cog, count, patch],
                    weights,
                    cols,
                    positions,
                    self.parallelism,
                );
                if bias.is_none() && !g.relu {
                    continue;
                }
                for channel in first_channel..first_channel + cog {
                    let block = &mut out[channel * positions + start..][..count];
                    // SAFETY: the gemm above wrote this row of the block.
                    finish_plane(unsafe { written(block) }, bias, channel, g.relu);
                }
            }
        }
    }
}

thread_local! {
    /// This thread's inference scratch (im2col block, Winograd tiles), kept between
    /// convolutions and images (a fresh zeroed one per image and layer was 4 % of a SqueezeNet
    /// evaluate in `memset`).
    static BLOCK: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `f` on `len` scratch values of unspecified contents. The buffer is taken out while `f`
/// runs, so a nested call (rayon may run another convolution on this thread while a gemm
/// waits) gets a fresh one instead of the same.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buffer = BLOCK.take();
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    let result = f(&mut buffer[..len]);
    BLOCK.set(buffer);
    result
}

/// Sizes of one convolution. `c_in`/`c_out` are totals; each group sees `c_in / groups`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Geometry {
    batch: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    stride: [usize; 2],
    /// Top and left pads (the bottom and right ones only shape the output).
    pad: [usize; 2],
    pad_end: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
    oh: usize,
    ow: usize,
    relu: bool,
}

impl Geometry {
    fn new(x: [usize; 4], w: [usize; 4], s: &ConvSettings) -> Self {
        let [batch, c_in, h, wd] = x;
        let [c_out, _, kh, kw] = w;
        let out = |axis: usize, size: usize, k: usize| {
            (size + s.pads[axis] + s.pads[axis + 2] - s.dilation[axis] * (k - 1) - 1)
                / s.stride[axis]
                + 1
        };
        Self {
            batch,
            c_in,
            h,
            w: wd,
            c_out,
            kh,
            kw,
            stride: s.stride,
            pad: [s.pads[0], s.pads[1]],
            pad_end: [s.pads[2], s.pads[3]],
            dilation: s.dilation,
            groups: s.groups,
            oh: out(0, h, kh),
            ow: out(1, wd, kw),
            relu: s.relu,
        }
    }

    fn in_per_group(&self) -> usize {
        self.c_in / self.groups
    }

    fn out_per_group(&self) -> usize {
        self.c_out / self.groups
    }

    /// Rows of a group's im2col matrix (one per weight of an output channel).
    fn patch(&self) -> usize {
        self.in_per_group() * self.kh * self.kw
    }

    /// Columns of the im2col matrix (one per output position).
    fn positions(&self) -> usize {
        self.oh * self.ow
    }

    fn image_len(&self) -> usize {
        self.c_in * self.h * self.w
    }

    fn output_len(&self) -> usize {
        self.c_out * self.positions()
    }

    /// Whether inference goes to flex's own convolution, which spreads one image's tiles over
    /// the cores: fewer images than cores outside an image-by-image task, symmetric pads.
    fn on_flex_convolution(&self) -> bool {
        self.batch < rayon::current_num_threads()
            && !inside_image_task()
            && self.pad == self.pad_end
    }

    /// The inference forward's blocks of output positions: about [`BLOCK_VALUES`] columns or
    /// outputs each, their counts multiples of [`GEMM_LANES`] where the geometry allows (a
    /// pointwise convolution reads any positions; im2col unfolds whole output rows, so a
    /// block takes as many rows as alignment needs, up to twice the size).
    fn blocks(&self) -> Vec<Range<usize>> {
        let positions = self.positions();
        let target = (BLOCK_VALUES / self.patch().max(self.out_per_group()).max(1)).max(1);
        let step = if self.is_pointwise() {
            target.next_multiple_of(GEMM_LANES)
        } else {
            aligned_rows(target, self.ow, self.oh) * self.ow
        };
        (0..positions)
            .step_by(step.max(1))
            .map(|start| start..(start + step).min(positions))
            .collect()
    }

    /// Values of one im2col matrix (none for a pointwise convolution, which reads the image).
    fn matrix_len(&self) -> usize {
        if self.is_pointwise() {
            0
        } else {
            self.patch() * self.positions()
        }
    }

    /// A 1x1 convolution with unit stride and no padding: the image is its own im2col matrix.
    fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride == [1, 1]
            && self.pad == [0, 0]
            && [self.oh, self.ow] == [self.h, self.w]
    }

    /// Stride 1 with output rows as wide as the image ("same" padding across): each matrix
    /// row is the image channel shifted, so its cells over many output rows are one run.
    fn is_shifted_image(&self) -> bool {
        self.stride == [1, 1] && self.ow == self.w
    }

    /// For a [`is_shifted_image`](Self::is_shifted_image) geometry, every matrix row of group
    /// `group` over output rows `rows` (a matrix of those rows only), as a [`ShiftedRow`].
    #[inline(always)]
    fn shifted_rows(&self, group: usize, rows: Range<usize>, mut visit: impl FnMut(ShiftedRow)) {
        let (row_len, plane) = (rows.len() * self.ow, self.h * self.w);
        for c in 0..self.in_per_group() {
            let channel = (group * self.in_per_group() + c) * plane;
            for ki in 0..self.kh {
                let row_offset = (ki * self.dilation[0]) as isize - self.pad[0] as isize;
                let (top, bottom) = inside(self.oh, self.h, row_offset, 1);
                let (top, bottom) = (top.max(rows.start), bottom.min(rows.end));
                for kj in 0..self.kw {
                    let col_offset = (kj * self.dilation[1]) as isize - self.pad[1] as isize;
                    let (lo, hi) = inside(self.ow, self.w, col_offset, 1);
                    let row = ((c * self.kh + ki) * self.kw + kj) * row_len;
                    let reads = (top < bottom && lo < hi).then(|| {
                        let first = row + (top - rows.start) * self.ow + lo;
                        let last = row + (bottom - 1 - rows.start) * self.ow + hi;
                        let from = channel as isize
                            + (top as isize + row_offset) * self.w as isize
                            + lo as isize
                            + col_offset;
                        (first..last, from as usize)
                    });
                    visit(ShiftedRow {
                        start: row,
                        rows: rows.clone(),
                        inside: top..bottom,
                        columns: lo..hi,
                        reads,
                    });
                }
            }
        }
    }

    /// Walks the im2col matrix of group `group` over output rows `rows` (a matrix of those rows
    /// only) in runs along each row: `visit(matrix_offset, len, Some((image_offset,
    /// image_step)))` for output columns whose input cell lies inside the image,
    /// `visit(matrix_offset, len, None)` for the padding.
    #[inline(always)]
    fn walk(
        &self,
        group: usize,
        rows: Range<usize>,
        mut visit: impl FnMut(usize, usize, Option<(usize, usize)>),
    ) {
        let (row_len, plane) = (rows.len() * self.ow, self.h * self.w);
        for c in 0..self.in_per_group() {
            let channel = (group * self.in_per_group() + c) * plane;
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    let row = ((c * self.kh + ki) * self.kw + kj) * row_len;
                    let col_offset = (kj * self.dilation[1]) as isize - self.pad[1] as isize;
                    let (lo, hi) = inside(self.ow, self.w, col_offset, self.stride[1]);
                    for oy in rows.clone() {
                        let at = row + (oy - rows.start) * self.ow;
                        let iy = (oy * self.stride[0] + ki * self.dilation[0]) as isize
                            - self.pad[0] as isize;
                        if iy < 0 || iy >= self.h as isize || lo >= hi {
                            visit(at, self.ow, None);
                            continue;
                        }
                        let ix = (lo * self.stride[1]) as isize + col_offset;
                        let from = channel + iy as usize * self.w + ix as usize;
                        visit(at, lo, None);
                        visit(at + lo, hi - lo, Some((from, self.stride[1])));
                        visit(at + hi, self.ow - hi, None);
                    }
                }
            }
        }
    }
}

/// One matrix row of a stride-1 "same"-width convolution over some output rows.
struct ShiftedRow {
    /// Offset of the matrix row.
    start: usize,
    /// The output rows asked for, and those among them whose input row is in the image.
    rows: Range<usize>,
    inside: Range<usize>,
    /// The output columns whose input column is in the image.
    columns: Range<usize>,
    /// The matrix cells from the first inside cell to the last, and the image offset of the
    /// first: one contiguous run of the image, the wrapped cells between rows included.
    reads: Option<(Range<usize>, usize)>,
}

impl ShiftedRow {
    /// Calls `pad(offset, len)` for every run of padding cells of the row.
    #[inline(always)]
    fn padding(&self, ow: usize, mut pad: impl FnMut(usize, usize)) {
        let at = |oy: usize| self.start + (oy - self.rows.start) * ow;
        if self.inside.is_empty() || self.columns.is_empty() {
            pad(at(self.rows.start), self.rows.len() * ow);
            return;
        }
        if self.rows.start < self.inside.start {
            pad(
                at(self.rows.start),
                (self.inside.start - self.rows.start) * ow,
            );
        }
        for oy in self.inside.clone() {
            if self.columns.start > 0 {
                pad(at(oy), self.columns.start);
            }
            if self.columns.end < ow {
                pad(at(oy) + self.columns.end, ow - self.columns.end);
            }
        }
        if self.inside.end < self.rows.end {
            pad(at(self.inside.end), (self.rows.end - self.inside.end) * ow);
        }
    }
}

/// Rows of `row_len` items per block for about `target` items (at least one row, at most
/// `total`): rounded up to make the block a multiple of [`GEMM_LANES`] items where that costs
/// at most twice the target.
fn aligned_rows(target: usize, row_len: usize, total: usize) -> usize {
    let rows = (target / row_len.max(1)).max(1);
    let aligned = rows.next_multiple_of(GEMM_LANES / gcd(row_len, GEMM_LANES));
    let rows = if aligned * row_len <= 2 * target {
        aligned
    } else {
        rows
    };
    rows.min(total)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a.max(1)
    } else {
        gcd(b, a % b)
    }
}

/// Zeroes `len` cells; the common single cell without a `memset` call.
#[inline(always)]
fn zero(cells: &mut [f32]) {
    match cells {
        [one] => *one = 0.0,
        many => many.fill(0.0),
    }
}

/// Output positions `lo..hi` (of `outputs`) whose input index `o * stride + offset` lies in
/// `0..size`.
#[inline(always)]
fn inside(outputs: usize, size: usize, offset: isize, stride: usize) -> (usize, usize) {
    let stride = stride as isize;
    let lo = if offset >= 0 {
        0
    } else {
        (-offset + stride - 1) / stride
    };
    let room = size as isize - offset;
    let hi = if room <= 0 {
        0
    } else {
        ((room + stride - 1) / stride).min(outputs as isize)
    };
    (lo.min(outputs as isize) as usize, hi.max(0) as usize)
}

/// What an im2col matrix holds at its padding cells before [`im2col`] fills it.
#[derive(Clone, Copy, PartialEq)]
enum Padding {
    /// Zeros: a zeroed buffer, reused only for this geometry's whole-image matrices, whose
    /// padding cells are the same for every image. Filling them for each image was a `memset`
    /// call per output row and side, 7 % of a LeNet-5 step.
    Zero,
    /// Anything (a reused block buffer): they are written.
    Write,
}

wide_kernel! {
/// Group `group`'s im2col matrix of one image over output rows `rows`: `[patch, rows.len() *
/// ow]`, row-major. A stride-1 "same"-width geometry writes every cell (a copy per matrix
/// row, then its few padding cells); otherwise `padding` says whether the padding cells are
/// written.
fn im2col(
    g: &Geometry,
    image: &[f32],
    group: usize,
    matrix: &mut [f32],
    rows: Range<usize>,
    padding: Padding,
) {
    if g.is_shifted_image() {
        // One copy per matrix row, then the wrapped and padding cells zeroed (all written).
        return g.shifted_rows(group, rows, |row| {
            if let Some((cells, from)) = &row.reads {
                matrix[cells.clone()].copy_from_slice(&image[*from..][..cells.len()]);
            }
            row.padding(g.ow, |at, len| zero(&mut matrix[at..at + len]));
        });
    }
    g.walk(group, rows, |at, len, source| {
        let dst = &mut matrix[at..at + len];
        match source {
            None if padding == Padding::Write => zero(dst),
            None => debug_assert!(dst.iter().all(|&v| v == 0.0), "padding cells stay zero"),
            Some((from, 1)) => dst.copy_from_slice(&image[from..from + len]),
            // Stride 2: a vector permute per 16 cells (an indexed gather was most of a
            // stride-2 first layer's unfolding).
            Some((from, 2)) => every_second(&image[from..from + 2 * len - 1], dst),
            Some((from, step)) => {
                let cells = image[from..from + step * (len - 1) + 1].chunks(step);
                dst.iter_mut().zip(cells).for_each(|(d, cell)| *d = cell[0]);
            }
        }
    });
}
}

wide_kernel! {
/// Adds a group's im2col-shaped gradient back onto the image cells it was read from. The
/// padding cells of `matrix` may be zeroed on the way.
fn col2im_add(g: &Geometry, matrix: &mut [f32], group: usize, image: &mut [f32]) {
    if g.is_shifted_image() {
        // Padding cells zeroed, each matrix row is one contiguous add onto the image.
        return g.shifted_rows(group, 0..g.oh, |row| {
            row.padding(g.ow, |at, len| zero(&mut matrix[at..at + len]));
            if let Some((cells, to)) = &row.reads {
                let target = &mut image[*to..][..cells.len()];
                target
                    .iter_mut()
                    .zip(&matrix[cells.clone()])
                    .for_each(|(t, v)| *t += v);
            }
        });
    }
    g.walk(group, 0..g.oh, |at, len, source| {
        if let Some((to, step)) = source {
            for (i, v) in matrix[at..at + len].iter().enumerate() {
                image[to + i * step] += v;
            }
        }
    });
}
}

/// A row-major matrix view for gemm: its start and (row, column) strides.
#[derive(Clone, Copy)]
struct View {
    ptr: *const f32,
    row_step: isize,
    col_step: isize,
}

impl View {
    fn rows(values: &[f32], cols: usize) -> Self {
        Self {
            ptr: values.as_ptr(),
            row_step: cols as isize,
            col_step: 1,
        }
    }

    /// The transpose of a row-major `[_, cols]` matrix.
    fn transposed(values: &[f32], cols: usize) -> Self {
        Self {
            ptr: values.as_ptr(),
            row_step: 1,
            col_step: cols as isize,
        }
    }
}

/// `dst (+)= lhs @ rhs`, `dst` row-major `[m, n]`, `k` the inner size.
fn gemm_into(
    dst: &mut [f32],
    mnk: [usize; 3],
    lhs: View,
    rhs: View,
    accumulate: bool,
    parallelism: Parallelism,
) {
    let dst = Destination {
        ptr: dst.as_mut_ptr(),
        len: dst.len(),
        row_step: mnk[1],
    };
    // SAFETY: `dst` is a slice of initialised values, its length passed with it.
    unsafe { gemm_raw(dst, mnk, [lhs, rhs], accumulate, parallelism) }
}

/// `dst = lhs @ rhs` into values not yet written, `dst` rows `dst_row_step` apart: gemm
/// writes all `m x n` of them.
fn gemm_write(
    dst: &mut [MaybeUninit<f32>],
    mnk: [usize; 3],
    lhs: View,
    rhs: View,
    dst_row_step: usize,
    parallelism: Parallelism,
) {
    let dst = Destination {
        ptr: dst.as_mut_ptr().cast::<f32>(),
        len: dst.len(),
        row_step: dst_row_step,
    };
    // SAFETY: `dst` is a slice, its length passed with it; gemm without `accumulate` only
    // writes the destination.
    unsafe { gemm_raw(dst, mnk, [lhs, rhs], false, parallelism) }
}

/// Where a gemm writes: `len` values from `ptr`, rows `row_step` apart.
struct Destination {
    ptr: *mut f32,
    len: usize,
    row_step: usize,
}

/// # Safety
/// `dst` points to `dst.len` values this call may write (and read when `accumulate`).
unsafe fn gemm_raw(
    dst: Destination,
    [m, n, k]: [usize; 3],
    [lhs, rhs]: [View; 2],
    accumulate: bool,
    parallelism: Parallelism,
) {
    let reach = if m == 0 || n == 0 {
        0
    } else {
        (m - 1) * dst.row_step + n
    };
    assert!(
        dst.len >= reach && dst.row_step >= n,
        "gemm destination too small"
    );
    // SAFETY: `dst` holds the m rows of n values at its row step (asserted, and the caller's
    // promise); `lhs` and `rhs` were built from slices covering m x k and k x n values at
    // their strides (every caller sizes them from one `Geometry`), and nothing else touches
    // these buffers during the call.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            1,
            dst.row_step as isize,
            accumulate,
            lhs.ptr,
            lhs.col_step,
            lhs.row_step,
            rhs.ptr,
            rhs.col_step,
            rhs.row_step,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// How to spread `images` over the cores: by image when there are enough of them (each gemm
/// on one core), else image by image with each gemm using every core.
fn split(images: usize) -> (usize, Parallelism) {
    let threads = rayon::current_num_threads().max(1);
    if images >= threads || inside_image_task() {
        (images.div_ceil(threads), Parallelism::None)
    } else {
        (1, Parallelism::Rayon(0))
    }
}

/// Gradient of the weights, `[c_out, patch]` per group stacked: sum over images of
/// `grad_image @ im2col(image)^T`.
fn weight_grad(g: &Geometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
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
fn input_grad(g: &Geometry, w: &[f32], grad: &[f32]) -> Vec<f32> {
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

/// Gradient of the bias: the output gradient summed over images and positions.
fn bias_grad(g: &Geometry, grad: &[f32]) -> Vec<f32> {
    let mut sums = vec![0.0f32; g.c_out];
    for (i, plane) in grad.chunks(g.positions()).enumerate() {
        sums[i % g.c_out] += plane.iter().sum::<f32>();
    }
    sums
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
            let dx = input_grad(&g, values(&w), grad);
            grads.register::<Flex>(id, flex(dx, vec![g.batch, g.c_in, g.h, g.w]));
        }
        if let Some(id) = w_node {
            let x = contiguous(x);
            let dw = weight_grad(&g, values(&x), grad);
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
    }
}
