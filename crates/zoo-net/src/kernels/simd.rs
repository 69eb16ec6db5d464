//! zoo's own CPU kernels (Winograd transforms, pooling, im2col, bias and ReLU, GELU, softmax)
//! compiled three times: for the baseline x86-64 target a portable binary may assume (SSE2, 4
//! lanes), for AVX2 with FMA (8 lanes) and for AVX-512 (16 lanes), the copy picked at run time
//! from what the CPU has. Built for the baseline only, those loops were a quarter of a
//! SqueezeNet evaluate. gemm already dispatches its own.
//!
//! Every copy is the same Rust compiled with different vector widths, and Rust never
//! reassociates or fuses float arithmetic (FMA is not contracted), so they give the same bits,
//! except in kernels that ask for fused multiply-adds (`fast_math::mul_add`: the direct
//! convolution, like gemm's own kernels), which round once where the baseline rounds twice;
//! `ZOO_CPU_KERNELS=baseline` (or `avx2`) caps the copy (to rule the wide ones out, or to test
//! them, as `tests/inference_paths.rs` and `tests/fused_ops.rs` do).

use std::mem::MaybeUninit;
use std::sync::OnceLock;

/// The environment variable that caps the kernels: `baseline` or `avx2`; any other value, or
/// none, lets the CPU decide.
pub const KERNELS_VARIABLE: &str = "ZOO_CPU_KERNELS";

/// Which copy of the kernels this process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuKernels {
    /// The baseline target's (SSE2 on x86-64; every other architecture).
    Baseline,
    /// AVX2 with FMA (x86-64 CPUs since 2013 without AVX-512).
    Avx2,
    /// AVX-512 (F, VL, BW, DQ) with AVX2 and FMA.
    Avx512,
}

/// The kernels in force: the widest copy the CPU runs, capped by [`KERNELS_VARIABLE`].
/// Decided once per process.
pub fn cpu_kernels() -> CpuKernels {
    static CHOSEN: OnceLock<CpuKernels> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let cap = std::env::var(KERNELS_VARIABLE).unwrap_or_default();
        if cap != "baseline" && cap != "avx2" && has_avx512() {
            CpuKernels::Avx512
        } else if cap != "baseline" && has_avx2() {
            CpuKernels::Avx2
        } else {
            CpuKernels::Baseline
        }
    })
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512vl")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512dq")
        && has_avx2()
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx2() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx512() -> bool {
    false
}

/// Defines `fn $name(args) -> ret` whose body is compiled for the baseline target, for AVX2 and
/// for AVX-512, running the copy [`cpu_kernels`] chose. The body sees `FUSED_MULTIPLY_ADD`,
/// whether its copy's target has FMA (for `fast_math::mul_add`). Functions the body calls are widened
/// too only when they inline into it: mark them `#[inline(always)]` (closures written in the
/// body are widened either way). Lifetimes may be named;
/// type parameters are not supported (each copy is one concrete function).
macro_rules! wide_kernel {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident $(<$($lt:lifetime),+>)? ($($arg:ident: $ty:ty),* $(,)?)
        $(-> $ret:ty)? $body:block
    ) => {
        $(#[$meta])*
        $vis fn $name $(<$($lt),+>)? ($($arg: $ty),*) $(-> $ret)? {
            // The body three times, not one inlined function: closures in it inherit the
            // features of the function they are written in, and are often not inlined.
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
                unsafe fn avx512 $(<$($lt),+>)? ($($arg: $ty),*) $(-> $ret)? {
                    #[allow(dead_code)]
                    const FUSED_MULTIPLY_ADD: bool = true;
                    $body
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2 $(<$($lt),+>)? ($($arg: $ty),*) $(-> $ret)? {
                    #[allow(dead_code)]
                    const FUSED_MULTIPLY_ADD: bool = true;
                    $body
                }
                match $crate::simd::cpu_kernels() {
                    // SAFETY: `cpu_kernels` found every feature `avx512` is compiled for.
                    $crate::simd::CpuKernels::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: `cpu_kernels` found every feature `avx2` is compiled for.
                    $crate::simd::CpuKernels::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::CpuKernels::Baseline => {}
                }
            }
            fn baseline $(<$($lt),+>)? ($($arg: $ty),*) $(-> $ret)? {
                #[allow(dead_code)]
                const FUSED_MULTIPLY_ADD: bool = false;
                $body
            }
            baseline($($arg),*)
        }
    };
}

pub(crate) use wide_kernel;

/// Asks the CPU to bring the cache line at `at` into its caches (a hint: no fault when `at`
/// lies outside any allocation, nothing on other architectures).
#[inline(always)]
pub(crate) fn prefetch(at: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing and never faults, whatever the address.
    #[allow(unused_unsafe)]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// `dst[i] = src[2 * i]`: the even cells of `src` (pass `&src[1..]` for the odd ones).
/// `src` holds at least `2 * dst.len() - 1` values. The compiler leaves a short stride-2 read
/// scalar; on AVX-512 it is two loads and a permute per 16 values, masked at the end.
#[inline(always)]
pub(crate) fn every_second(src: &[f32], dst: &mut [f32]) {
    let n = dst.len();
    assert!(
        n == 0 || src.len() > 2 * (n - 1),
        "every_second reads past its source"
    );
    #[cfg(target_arch = "x86_64")]
    if cpu_kernels() == CpuKernels::Avx512 {
        // SAFETY: the CPU has AVX-512F (checked); the kernel stays inside the slices.
        return unsafe { avx512::every_second(src, dst) };
    }
    for (i, d) in dst.iter_mut().enumerate() {
        *d = src[2 * i];
    }
}

/// `out[2 * i] = even[i]`, `out[2 * i + 1] = odd[i]` for every cell of `out`; `even` holds at
/// least `ceil(out.len() / 2)` values, `odd` at least `out.len() / 2`. Scalar to the compiler
/// too; on AVX-512, two loads, two permutes and two stores per 32 cells.
#[inline(always)]
pub(crate) fn interleave(even: &[f32], odd: &[f32], out: &mut [MaybeUninit<f32>]) {
    let pairs = out.len() / 2;
    assert!(
        even.len() >= out.len().div_ceil(2) && odd.len() >= pairs,
        "interleave reads past its inputs"
    );
    #[cfg(target_arch = "x86_64")]
    if cpu_kernels() == CpuKernels::Avx512 {
        // SAFETY: the CPU has AVX-512F (checked); the kernel stays inside the slices.
        return unsafe { avx512::interleave(even, odd, out) };
    }
    for (i, cell) in out.iter_mut().enumerate() {
        cell.write(if i % 2 == 0 { even[i / 2] } else { odd[i / 2] });
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// The first `n` (at most 16) lanes.
    #[inline(always)]
    fn lanes(n: usize) -> __mmask16 {
        ((1u32 << n.min(16)) - 1) as __mmask16
    }

    /// [`super::every_second`]: masked loads and stores touch only cells inside the slices
    /// (pointers past them are formed with `wrapping_add` and never read through).
    #[target_feature(enable = "avx512f")]
    pub(super) fn every_second(src: &[f32], dst: &mut [f32]) {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        for k in 0..dst.len().div_ceil(16) {
            let (outputs, reads) = ((dst.len() - 16 * k).min(16), (src.len() - 32 * k).min(32));
            let from = src.as_ptr().wrapping_add(32 * k);
            // SAFETY: each masked lane lies inside `src` / `dst` (counts above).
            unsafe {
                let lo = _mm512_maskz_loadu_ps(lanes(reads), from);
                let hi =
                    _mm512_maskz_loadu_ps(lanes(reads.saturating_sub(16)), from.wrapping_add(16));
                let picked = _mm512_permutex2var_ps(lo, even, hi);
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(16 * k), lanes(outputs), picked);
            }
        }
    }

    /// [`super::interleave`], masked like [`every_second`].
    #[target_feature(enable = "avx512f")]
    pub(super) fn interleave(even: &[f32], odd: &[f32], out: &mut [MaybeUninit<f32>]) {
        let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        let to = out.as_mut_ptr().cast::<f32>();
        for k in 0..out.len().div_ceil(32) {
            let cells = (out.len() - 32 * k).min(32);
            let at = to.wrapping_add(32 * k);
            // SAFETY: each masked lane lies inside the slices (the caller's lengths).
            unsafe {
                let e = _mm512_maskz_loadu_ps(
                    lanes(cells.div_ceil(2)),
                    even.as_ptr().wrapping_add(16 * k),
                );
                let o = _mm512_maskz_loadu_ps(lanes(cells / 2), odd.as_ptr().wrapping_add(16 * k));
                _mm512_mask_storeu_ps(at, lanes(cells), _mm512_permutex2var_ps(e, low, o));
                if cells > 16 {
                    let high_cells = lanes(cells - 16);
                    _mm512_mask_storeu_ps(
                        at.wrapping_add(16),
                        high_cells,
                        _mm512_permutex2var_ps(e, high, o),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    wide_kernel! {
        fn scaled_sum(values: &[f32], scale: f32) -> f32 {
            values.iter().map(|v| v * scale).sum()
        }
    }

    #[test]
    fn a_wide_kernel_computes_what_its_body_says() {
        let values: Vec<f32> = (0..1000).map(|i| (i as f32).sin()).collect();
        let expected: f32 = values.iter().map(|v| v * 0.5).sum();
        assert_eq!(scaled_sum(&values, 0.5).to_bits(), expected.to_bits());
        assert_eq!(cpu_kernels(), cpu_kernels(), "decided once");
    }

    #[test]
    fn every_second_and_interleave_move_every_value_to_its_place() {
        for n in [0usize, 1, 5, 16, 17, 31, 32, 33, 70] {
            let src: Vec<f32> = (0..2 * n + 1).map(|i| i as f32).collect();
            for len in [2 * n.max(1) - 1, 2 * n, 2 * n + 1] {
                let mut dst = vec![-1.0; n];
                every_second(&src[..len.min(src.len())], &mut dst);
                assert!(
                    dst.iter().enumerate().all(|(i, &v)| v == (2 * i) as f32),
                    "n {n}"
                );
            }
            let (even, odd): (Vec<f32>, Vec<f32>) =
                (0..n).map(|i| (i as f32, -(i as f32) - 0.5)).unzip();
            for len in [2 * n, (2 * n).saturating_sub(1)] {
                let mut out = vec![MaybeUninit::new(f32::NAN); len];
                interleave(&even, &odd, &mut out);
                // SAFETY: every cell was initialised above.
                let out: Vec<f32> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
                let expected: Vec<f32> = (0..len)
                    .map(|i| if i % 2 == 0 { even[i / 2] } else { odd[i / 2] })
                    .collect();
                assert_eq!(out, expected, "n {n}, len {len}");
            }
        }
    }
}
