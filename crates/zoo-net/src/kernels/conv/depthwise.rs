//! Depthwise convolutions (one filter per channel: groups = input = output channels; MobileNet,
//! EfficientNet, ConvNeXt's 7x7) computed directly, plane by plane: each kernel tap multiplies a
//! run of an input row into a run of an output row, the runs clipped to the image once per tap
//! so the inner loop has no bounds tests and vectorises at stride 1. Through im2col each channel
//! was its own gemm of one row (`1 x kh*kw` by `kh*kw x positions`), where gemm's packing and
//! thin micro-kernels cost more than the products; the gradients likewise.

use std::ops::Range;

use rayon::prelude::*;

use super::padded::Padded;
use super::Geometry;

mod dense;
use crate::flex_autodiff::{par_fill, par_zeroed, written};
use crate::kernels::fast_math::lanes_sum_pairs;

/// Output indices `o` along one axis whose input index `o * stride + tap * dilation - pad`
/// lies in `0..size`.
#[inline(always)]
fn valid(outputs: usize, size: usize, stride: usize, pad: usize, offset: usize) -> Range<usize> {
    let first = pad.saturating_sub(offset).div_ceil(stride).min(outputs);
    let end = if size + pad > offset {
        ((size + pad - offset - 1) / stride + 1).min(outputs)
    } else {
        0
    };
    first..end.max(first)
}

/// One tap's reach: the output rows and columns it touches, and the input row and column of
/// the first of each (`o * stride + start`, kept as a signed start: it may be negative before
/// the clipping).
struct Tap {
    weight_index: usize,
    rows: Range<usize>,
    cols: Range<usize>,
    row_offset: isize,
    col_offset: isize,
}

impl Geometry {
    /// Whether this is a depthwise convolution (one input and one output channel per group).
    pub(super) fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.c_in && self.groups == self.c_out
    }

    fn taps(&self) -> Vec<Tap> {
        let mut taps = Vec::with_capacity(self.kh * self.kw);
        for ki in 0..self.kh {
            for kj in 0..self.kw {
                let (dy, dx) = (ki * self.dilation[0], kj * self.dilation[1]);
                let tap = Tap {
                    weight_index: ki * self.kw + kj,
                    rows: valid(self.oh, self.h, self.stride[0], self.pad[0], dy),
                    cols: valid(self.ow, self.w, self.stride[1], self.pad[1], dx),
                    row_offset: dy as isize - self.pad[0] as isize,
                    col_offset: dx as isize - self.pad[1] as isize,
                };
                // A tap that reads only padding adds nothing (and has no first input index).
                if !tap.rows.is_empty() && !tap.cols.is_empty() {
                    taps.push(tap);
                }
            }
        }
        taps
    }
}

impl Tap {
    /// The tap's runs, one per output row it reaches: where that input row starts, the run's
    /// first input column, and where its output run starts (each `cols.len()` long).
    #[inline(always)]
    fn runs<'a>(&'a self, g: &'a Geometry) -> impl Iterator<Item = (usize, usize, usize)> + 'a {
        let from = at(self.cols.start, g.stride[1], self.col_offset);
        self.rows.clone().map(move |r| {
            let row = at(r, g.stride[0], self.row_offset) * g.w;
            (row, from, r * g.ow + self.cols.start)
        })
    }
}

/// The input index of output index `o` of a tap (inside the image: the tap's range says so).
#[inline(always)]
fn at(o: usize, stride: usize, offset: isize) -> usize {
    ((o * stride) as isize + offset) as usize
}

/// `out[o] += w * x[o * stride]` over a run.
#[inline(always)]
fn axpy(out: &mut [f32], w: f32, x: &[f32], stride: usize) {
    if stride == 1 {
        for (o, &v) in out.iter_mut().zip(x) {
            *o += w * v;
        }
    } else {
        for (i, o) in out.iter_mut().enumerate() {
            *o += w * x[i * stride];
        }
    }
}

/// `x[i * stride] += w * d[i]` over a run (the transpose of [`axpy`]).
#[inline(always)]
fn scatter_axpy(x: &mut [f32], w: f32, d: &[f32], stride: usize) {
    if stride == 1 {
        for (o, &v) in x.iter_mut().zip(d) {
            *o += w * v;
        }
    } else {
        for (i, &v) in d.iter().enumerate() {
            x[i * stride] += w * v;
        }
    }
}

crate::simd::wide_kernel! {
    /// One output plane (holding its bias): every tap's runs, then the ReLU if fused.
    fn forward_plane(out: &mut [f32], x: &[f32], weights: &[f32], taps: &[Tap], g: &Geometry) {
        let sw = g.stride[1];
        for tap in taps {
            let (wv, len) = (weights[tap.weight_index], tap.cols.len());
            for (row, from, o) in tap.runs(g) {
                axpy(&mut out[o..][..len], wv, &x[row..][..g.w][from..], sw);
            }
        }
        if g.relu {
            out.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }
}

crate::simd::wide_kernel! {
    /// One input plane's gradient (zeroed before): each tap's weight times the output
    /// gradient, added where the tap read.
    fn input_grad_plane(dx: &mut [f32], dy: &[f32], weights: &[f32], taps: &[Tap], g: &Geometry) {
        let sw = g.stride[1];
        for tap in taps {
            let (wv, len) = (weights[tap.weight_index], tap.cols.len());
            for (row, from, o) in tap.runs(g) {
                scatter_axpy(&mut dx[row..][..g.w][from..], wv, &dy[o..][..len], sw);
            }
        }
    }
}

crate::simd::wide_kernel! {
    /// Adds one plane's share to its channel's weight gradient `dw`: per tap, the output
    /// gradient times what the tap read.
    fn weight_grad_plane(dw: &mut [f32], x: &[f32], dy: &[f32], taps: &[Tap], g: &Geometry) {
        let sw = g.stride[1];
        for tap in taps {
            let len = tap.cols.len();
            let mut sum = 0.0f32;
            for (row, from, o) in tap.runs(g) {
                sum += dot(&dy[o..][..len], &x[row..][..g.w][from..], sw);
            }
            dw[tap.weight_index] += sum;
        }
    }
}

/// The forward of a depthwise convolution: bias, taps, then the ReLU if fused.
pub(super) fn forward(g: &Geometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (taps, plane_in, plane_out, per_filter) = (g.taps(), g.h * g.w, g.positions(), g.kh * g.kw);
    let dense = g.is_dense_stride_one().then(|| Padded::forward(g).len());
    // SAFETY: every value of every plane is written (filled with the bias first).
    unsafe {
        par_fill(
            g.batch * g.c_out * plane_out,
            plane_out.max(1),
            || vec![0.0f32; dense.unwrap_or(0)],
            |plane, scratch, out| {
                let c = plane % g.c_out;
                out.fill(std::mem::MaybeUninit::new(bias.map_or(0.0, |b| b[c])));
                let (x, out) = (&x[plane * plane_in..][..plane_in], written(out));
                let weights = &w[c * per_filter..][..per_filter];
                match dense {
                    Some(_) => dense::forward_plane(out, x, weights, g, scratch),
                    None => forward_plane(out, x, weights, &taps, g),
                }
            },
        )
    }
}

/// The input's gradient (one task a plane, so no two tasks add to one value).
pub(super) fn input_grad(g: &Geometry, w: &[f32], grad: &[f32]) -> Vec<f32> {
    let (taps, plane_in, plane_out, per_filter) = (g.taps(), g.h * g.w, g.positions(), g.kh * g.kw);
    let dense = g.is_dense_stride_one().then(|| Padded::input_grad(g).len());
    par_zeroed(
        g.batch * g.c_in * plane_in,
        plane_in.max(1),
        || vec![0.0f32; dense.unwrap_or(0)],
        |plane, scratch, dx| {
            let c = plane % g.c_in;
            let dy = &grad[plane * plane_out..][..plane_out];
            let weights = &w[c * per_filter..][..per_filter];
            match dense {
                Some(_) => dense::input_grad_plane(dx, dy, weights, g, scratch),
                None => input_grad_plane(dx, dy, weights, &taps, g),
            }
        },
    )
}

/// The weights' gradient: per channel (one task each), summed over the batch.
pub(super) fn weight_grad(g: &Geometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    let (taps, plane_in, plane_out) = (g.taps(), g.h * g.w, g.positions());
    let per_channel: Vec<Vec<f32>> = (0..g.c_out)
        .into_par_iter()
        .map(|c| {
            let mut dw = vec![0.0f32; g.kh * g.kw];
            for n in 0..g.batch {
                let plane = n * g.c_out + c;
                let x = &x[plane * plane_in..][..plane_in];
                let dy = &grad[plane * plane_out..][..plane_out];
                weight_grad_plane(&mut dw, x, dy, &taps, g);
            }
            dw
        })
        .collect();
    per_channel.concat()
}

/// `sum a[i] * b[i * stride]`, in eight lanes at stride 1 (so it vectorises).
#[inline(always)]
fn dot(a: &[f32], b: &[f32], stride: usize) -> f32 {
    if stride != 1 {
        return a.iter().enumerate().map(|(i, &v)| v * b[i * stride]).sum();
    }
    lanes_sum_pairs(a, b, |x, y| x * y)
}
