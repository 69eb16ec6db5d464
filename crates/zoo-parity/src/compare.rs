//! Agreement between two sets of outputs, one row per sample.

use serde::Serialize;

/// How far `ours` is from `reference`: the worst sample decides.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Agreement {
    pub samples: usize,
    pub max_abs_diff: f64,
    /// max over samples of `max|a - b| / max(1, max|b|)`.
    pub max_rel_diff: f64,
    /// Fraction of samples whose arg-max class is the same.
    pub top1_agreement: f64,
}

pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// Rows that do not pair up (another count, another width) and non-finite values on either
/// side are disagreements, never a silent pass.
pub fn compare(ours: &[Vec<f32>], reference: &[Vec<f32>]) -> Agreement {
    if ours.len() != reference.len() {
        return Agreement {
            samples: ours.len(),
            max_abs_diff: f64::INFINITY,
            max_rel_diff: f64::INFINITY,
            top1_agreement: 0.0,
        };
    }
    let mut max_abs: f64 = 0.0;
    let mut max_rel: f64 = 0.0;
    let mut same_top1 = 0;
    for (a, b) in ours.iter().zip(reference) {
        let scale = b.iter().fold(1.0f64, |m, &v| m.max((v as f64).abs()));
        let finite = a.iter().chain(b).all(|v| v.is_finite());
        let diff = if a.len() != b.len() || !finite {
            f64::INFINITY
        } else {
            a.iter()
                .zip(b)
                .map(|(&x, &y)| {
                    let d = (x as f64 - y as f64).abs();
                    // NaN on either side is a disagreement, not a silent pass.
                    if d.is_nan() {
                        f64::INFINITY
                    } else {
                        d
                    }
                })
                .fold(0.0, f64::max)
        };
        max_abs = max_abs.max(diff);
        max_rel = max_rel.max(if diff.is_finite() {
            diff / scale
        } else {
            f64::INFINITY
        });
        if a.len() == b.len() && argmax(a) == argmax(b) {
            same_top1 += 1;
        }
    }
    Agreement {
        samples: ours.len(),
        max_abs_diff: max_abs,
        max_rel_diff: max_rel,
        top1_agreement: if ours.is_empty() {
            0.0
        } else {
            same_top1 as f64 / ours.len() as f64
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_difference_uses_reference_scale() {
        let a = compare(&[vec![10.0, 1.0]], &[vec![10.5, 1.0]]);
        assert!((a.max_abs_diff - 0.5).abs() < 1e-9);
        assert!((a.max_rel_diff - 0.5 / 10.5).abs() < 1e-9);
        assert_eq!(a.top1_agreement, 1.0);
    }

    #[test]
    fn nan_and_top1_flip_are_caught() {
        let a = compare(
            &[vec![f32::NAN, 0.0], vec![0.0, 1.0]],
            &[vec![0.0, 1.0], vec![1.0, 0.0]],
        );
        assert!(a.max_abs_diff.is_infinite());
        assert_eq!(a.top1_agreement, 0.5);
    }

    #[test]
    fn infinite_outputs_on_both_sides_and_missing_rows_fail() {
        let inf = compare(&[vec![f32::INFINITY, 0.0]], &[vec![f32::INFINITY, 0.0]]);
        assert!(inf.max_rel_diff.is_infinite(), "{inf:?}");
        let nan = compare(&[vec![f32::NAN]], &[vec![f32::NAN]]);
        assert!(nan.max_rel_diff.is_infinite(), "{nan:?}");
        let short = compare(&[vec![1.0], vec![2.0]], &[vec![1.0]]);
        assert!(short.max_rel_diff.is_infinite() && short.top1_agreement == 0.0);
    }
}
