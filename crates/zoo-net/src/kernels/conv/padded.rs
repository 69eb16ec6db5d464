//! Zero-padded copies of planes for the direct stride-1 kernels (depthwise `dense`, `direct`):
//! once a plane sits inside its padding, every register block of outputs reads a full
//! rectangle of it with no clipping, so the inner loops have no bounds tests.

use super::Geometry;

/// Outputs per row of a register block (two AVX2 vectors, one AVX-512 vector).
pub(super) const BLOCK: usize = 16;
/// Output rows per block of the depthwise kernel (four independent sums hide each add's
/// latency); the padded plane's rows are rounded up to it.
pub(super) const ROWS: usize = 2;

/// A zero-padded plane: `rows x cols`, wide and tall enough that every block reads inside it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Padded {
    pub(super) rows: usize,
    pub(super) cols: usize,
    top: usize,
    left: usize,
}

impl Padded {
    /// For an `oh x ow` correlation with a `kh x kw` filter, the source at (`top`, `left`).
    fn new([oh, ow]: [usize; 2], [kh, kw]: [usize; 2], top: usize, left: usize) -> Self {
        Self {
            rows: oh.div_ceil(ROWS) * ROWS + kh - 1,
            cols: ow.div_ceil(BLOCK) * BLOCK + kw - 1,
            top,
            left,
        }
    }

    /// The forward's: the input plane padded as the convolution pads it.
    pub(super) fn forward(g: &Geometry) -> Self {
        Self::new([g.oh, g.ow], [g.kh, g.kw], g.pad[0], g.pad[1])
    }

    /// The input gradient's: the output gradient padded by `k - 1 - pad`.
    pub(super) fn input_grad(g: &Geometry) -> Self {
        Self::new(
            [g.h, g.w],
            [g.kh, g.kw],
            g.kh - 1 - g.pad[0],
            g.kw - 1 - g.pad[1],
        )
    }

    pub(super) fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Writes `src` (`h x w`) into `dst` at (`top`, `left`), zeros around it (clipped).
    pub(super) fn fill(&self, dst: &mut [f32], src: &[f32], [h, w]: [usize; 2]) {
        dst.fill(0.0);
        let width = w.min(self.cols.saturating_sub(self.left));
        for r in 0..h.min(self.rows.saturating_sub(self.top)) {
            let at = (r + self.top) * self.cols + self.left;
            dst[at..at + width].copy_from_slice(&src[r * w..][..width]);
        }
    }
}

impl Geometry {
    /// Stride 1, no dilation, every pad smaller than the filter: the padded-plane kernels
    /// serve it (forward and input gradient).
    pub(super) fn is_dense_stride_one(&self) -> bool {
        self.stride == [1, 1]
            && self.dilation == [1, 1]
            && self.pad[0] < self.kh
            && self.pad[1] < self.kw
            && self.pad_end[0] < self.kh
            && self.pad_end[1] < self.kw
    }
}
