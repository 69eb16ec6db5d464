//! A convolution's sizes ([`Geometry`]) and its lowering to matrices: im2col (with zero
//! padding cells written once), col2im for the input gradient.

use std::ops::Range;

use crate::simd::{every_second, wide_kernel};

use super::*;

/// Sizes of one convolution. `c_in`/`c_out` are totals; each group sees `c_in / groups`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Geometry {
    pub(super) batch: usize,
    pub(super) c_in: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) c_out: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) stride: [usize; 2],
    /// Top and left pads (the bottom and right ones only shape the output).
    pub(super) pad: [usize; 2],
    pub(super) pad_end: [usize; 2],
    pub(super) dilation: [usize; 2],
    pub(super) groups: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) relu: bool,
}

impl Geometry {
    pub(super) fn new(x: [usize; 4], w: [usize; 4], s: &ConvSettings) -> Self {
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

    pub(super) fn in_per_group(&self) -> usize {
        self.c_in / self.groups
    }

    pub(super) fn out_per_group(&self) -> usize {
        self.c_out / self.groups
    }

    /// Rows of a group's im2col matrix (one per weight of an output channel).
    pub(super) fn patch(&self) -> usize {
        self.in_per_group() * self.kh * self.kw
    }

    /// Columns of the im2col matrix (one per output position).
    pub(super) fn positions(&self) -> usize {
        self.oh * self.ow
    }

    pub(super) fn image_len(&self) -> usize {
        self.c_in * self.h * self.w
    }

    pub(super) fn output_len(&self) -> usize {
        self.c_out * self.positions()
    }

    /// The inference forward's blocks of output positions: about [`BLOCK_VALUES`] columns or
    /// outputs each, their counts multiples of [`GEMM_LANES`] where the geometry allows (a
    /// pointwise convolution reads any positions; im2col unfolds whole output rows, so a
    /// block takes as many rows as alignment needs, up to twice the size).
    pub(super) fn blocks(&self) -> Vec<Range<usize>> {
        self.blocks_at_least(1)
    }

    /// [`blocks`](Self::blocks), unfolded ones cut smaller where needed for about `count` of
    /// them (one image's blocks spread over the cores: a batch-1 ViT's patch embedding was one
    /// block, multiplied by gemm's own threads at 105 GFLOP/s on two cores).
    pub(super) fn blocks_at_least(&self, count: usize) -> Vec<Range<usize>> {
        let positions = self.positions();
        let target = (BLOCK_VALUES / self.patch().max(self.out_per_group()).max(1)).max(1);
        let step = if self.is_pointwise() {
            target.next_multiple_of(GEMM_LANES)
        } else {
            // The rows `count` blocks need, unaligned: aligning them could undo the cut.
            let spread = self.oh.div_ceil(count.max(1)).max(1);
            aligned_rows(target, self.ow, self.oh).min(spread) * self.ow
        };
        (0..positions)
            .step_by(step.max(1))
            .map(|start| start..(start + step).min(positions))
            .collect()
    }

    /// Values of one im2col matrix (none for a pointwise convolution, which reads the image).
    pub(super) fn matrix_len(&self) -> usize {
        if self.is_pointwise() {
            0
        } else {
            self.patch() * self.positions()
        }
    }

    /// A 1x1 convolution with unit stride and no padding: the image is its own im2col matrix.
    pub(super) fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride == [1, 1]
            && self.pad == [0, 0]
            && [self.oh, self.ow] == [self.h, self.w]
    }

    /// Stride 1 with output rows as wide as the image ("same" padding across): each matrix
    /// row is the image channel shifted, so its cells over many output rows are one run.
    pub(super) fn is_shifted_image(&self) -> bool {
        self.stride == [1, 1] && self.ow == self.w
    }

    /// For a [`is_shifted_image`](Self::is_shifted_image) geometry, every matrix row of group
    /// `group` over output rows `rows` (a matrix of those rows only), as a [`ShiftedRow`].
    #[inline(always)]
    pub(super) fn shifted_rows(
        &self,
        group: usize,
        rows: Range<usize>,
        mut visit: impl FnMut(ShiftedRow),
    ) {
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
    pub(super) fn walk(
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
pub(super) struct ShiftedRow {
    /// Offset of the matrix row.
    pub(super) start: usize,
    /// The output rows asked for, and those among them whose input row is in the image.
    pub(super) rows: Range<usize>,
    pub(super) inside: Range<usize>,
    /// The output columns whose input column is in the image.
    pub(super) columns: Range<usize>,
    /// The matrix cells from the first inside cell to the last, and the image offset of the
    /// first: one contiguous run of the image, the wrapped cells between rows included.
    pub(super) reads: Option<(Range<usize>, usize)>,
}

impl ShiftedRow {
    /// Calls `pad(offset, len)` for every run of padding cells of the row.
    #[inline(always)]
    pub(super) fn padding(&self, ow: usize, mut pad: impl FnMut(usize, usize)) {
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
pub(super) fn aligned_rows(target: usize, row_len: usize, total: usize) -> usize {
    let rows = (target / row_len.max(1)).max(1);
    let aligned = rows.next_multiple_of(GEMM_LANES / gcd(row_len, GEMM_LANES));
    let rows = if aligned * row_len <= 2 * target {
        aligned
    } else {
        rows
    };
    rows.min(total)
}

pub(super) fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a.max(1)
    } else {
        gcd(b, a % b)
    }
}

/// Zeroes `len` cells; the common single cell without a `memset` call.
#[inline(always)]
pub(super) fn zero(cells: &mut [f32]) {
    match cells {
        [one] => *one = 0.0,
        many => many.fill(0.0),
    }
}

/// Output positions `lo..hi` (of `outputs`) whose input index `o * stride + offset` lies in
/// `0..size`.
#[inline(always)]
pub(super) fn inside(outputs: usize, size: usize, offset: isize, stride: usize) -> (usize, usize) {
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
pub(super) enum Padding {
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
pub(super) fn im2col(
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
pub(super) fn col2im_add(g: &Geometry, matrix: &mut [f32], group: usize, image: &mut [f32]) {
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
