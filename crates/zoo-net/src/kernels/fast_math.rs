//! Arithmetic the kernels share, written so loops that call it vectorise: sums and maxima in
//! eight lanes (Rust never reorders float operations, so one running sum is one long chain)
//! and a branch-free exponential for non-positive arguments (softmax, GELU).

/// `f` summed over `values` in eight independent lanes (a single running sum keeps a loop
/// from vectorising: Rust does not reorder float additions).
#[inline(always)]
pub(crate) fn lanes_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = values.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `f(a[i], b[i])` summed over `a` (and as many values of `b`) in eight independent lanes.
#[inline(always)]
pub(crate) fn lanes_sum_pairs(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let b = &b[..a.len()];
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f(x, y))
        .sum();
    for (ca, cb) in ca.zip(cb) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(ca).zip(cb) {
            *lane += f(x, y);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The largest of `values` (negative infinity for none), in eight lanes.
#[inline(always)]
pub(crate) fn lanes_max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = values.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(v);
        }
    }
    lanes.iter().fold(tail, |m, &v| m.max(v))
}

/// `a * b + c`, one fused multiply-add when `FUSED` (pass the wide kernel's
/// `FUSED_MULTIPLY_ADD`: its copy's target has FMA), else a product and a sum (without FMA,
/// `f32::mul_add` is a call to libm's exact software fused multiply-add).
#[inline(always)]
pub(crate) fn mul_add<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `e^x` for `x <= 0` (flushed to the smallest normal below -87), as `2^n * p(r)`: `n` the
/// nearest integer to `x / ln 2`, `r` the rest (|r| <= ln 2 / 2), `p` its Taylor polynomial
/// of degree 6 (error below 1e-9). Branch-free, so loops calling it vectorise (libm's `expf`
/// is a call per value). `FUSED`: the products and sums as fused multiply-adds (pass the wide
/// kernel's `FUSED_MULTIPLY_ADD`): half the instructions of the polynomial.
#[inline(always)]
pub(crate) fn exp_nonpositive<const FUSED: bool>(x: f32) -> f32 {
    // Adding and taking away 1.5 * 2^23 rounds to the nearest integer without a call.
    const ROUND: f32 = 12_582_912.0;
    let fma = mul_add::<FUSED>;
    let x = x.max(-87.0);
    let shifted = fma(x, std::f32::consts::LOG2_E, ROUND);
    let n = shifted - ROUND;
    // ln 2 in two parts, so `n * LN2_HI` is exact.
    let r = fma(-n, 1.428_606_8e-6, fma(-n, 0.693_145_75, x));
    // Unfused, the innermost term divides as it always did (the same values, bit for bit).
    let inner = match FUSED {
        true => fma(r, 1.0 / 720.0, 1.0 / 120.0),
        false => 1.0 / 120.0 + r / 720.0,
    };
    let p = [1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0]
        .iter()
        .fold(inner, |acc, &c| fma(acc, r, c));
    // `shifted` lies in [2^23, 2^24), where one step of its bits is 1, so its bits less
    // ROUND's are `n` in two's complement: integer arithmetic that vectorises (`n as i32`, a
    // saturating conversion, compiled to one scalar conversion per lane: a third of the
    // GELU's and the softmax's time).
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    f32::from_bits(n_bits.wrapping_add(127) << 23) * p
}

#[cfg(test)]
mod tests {
    use super::exp_nonpositive;

    /// The exponent built by a float-to-integer conversion, as before the integer form.
    fn by_conversion(x: f32) -> f32 {
        const ROUND: f32 = 12_582_912.0;
        let x = x.max(-87.0);
        let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
        let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
        let p = 1.0
            + r * (1.0
                + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r / 720.0)))));
        f32::from_bits(((n as i32 + 127) << 23) as u32) * p
    }

    #[test]
    fn exponential_is_the_conversions_bits_and_within_f32_rounding_of_f64() {
        let mut checked = 0;
        for i in 0..=2_000_000u32 {
            let x = -(i as f32) * 5e-5;
            let e = exp_nonpositive::<false>(x);
            assert_eq!(e.to_bits(), by_conversion(x).to_bits(), "at {x}");
            if x > -80.0 {
                let exact = (x as f64).exp();
                for e in [e, exp_nonpositive::<true>(x)] {
                    assert!(
                        ((e as f64 - exact) / exact).abs() < 4e-7,
                        "at {x}: {e} vs {exact}"
                    );
                }
                checked += 1;
            }
        }
        for x in [
            0.0,
            -0.0,
            -86.9,
            -87.0,
            -88.0,
            -1e3,
            f32::MIN,
            f32::NEG_INFINITY,
        ] {
            assert_eq!(
                exp_nonpositive::<false>(x).to_bits(),
                by_conversion(x).to_bits(),
                "at {x}"
            );
            let fused = exp_nonpositive::<true>(x);
            assert!((0.0..=1.0).contains(&fused), "at {x}: {fused}");
        }
        assert!(checked > 1_000_000);
    }
}
