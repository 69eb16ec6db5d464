//! Row-major matrix products through the `gemm` crate (its AVX-512/AVX2 kernels): the views
//! and destinations every zoo kernel multiplies with (convolutions, token-wise Linear layers).

use ::gemm::Parallelism;
use std::mem::MaybeUninit;

/// A row-major matrix view for gemm: its start and (row, column) strides.
#[derive(Clone, Copy)]
pub(crate) struct View {
    pub(crate) ptr: *const f32,
    pub(crate) row_step: isize,
    pub(crate) col_step: isize,
}

impl View {
    pub(crate) fn rows(values: &[f32], cols: usize) -> Self {
        Self {
            ptr: values.as_ptr(),
            row_step: cols as isize,
            col_step: 1,
        }
    }

    /// The transpose of a row-major `[_, cols]` matrix.
    pub(crate) fn transposed(values: &[f32], cols: usize) -> Self {
        Self {
            ptr: values.as_ptr(),
            row_step: 1,
            col_step: cols as isize,
        }
    }
}

/// `dst (+)= lhs @ rhs`, `dst` row-major `[m, n]`, `k` the inner size.
pub(crate) fn gemm_into(
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
pub(crate) fn gemm_write(
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

/// `dst = lhs @ rhs` through a raw destination (rows of other tasks may lie between its rows).
///
/// # Safety
/// `dst` points to `dst.len` values, and nothing else reads or writes its `m` rows of `n`
/// values during the call (what lies between them may be another task's).
pub(crate) unsafe fn gemm_to(
    dst: Destination,
    mnk: [usize; 3],
    lhs: View,
    rhs: View,
    parallelism: Parallelism,
) {
    // SAFETY: the caller's promise.
    unsafe { gemm_raw(dst, mnk, [lhs, rhs], false, parallelism) }
}

/// Where a gemm writes: `len` values from `ptr`, rows `row_step` apart.
pub(crate) struct Destination {
    pub(crate) ptr: *mut f32,
    pub(crate) len: usize,
    pub(crate) row_step: usize,
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
        ::gemm::gemm(
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
