//! Mixing augmentations of a training batch (`--mixup`, `--cutmix`): each image is blended with
//! (mixup) or gets a box pasted from (cutmix) its partner, the image at the mirrored position of
//! the batch, and the loss weighs both labels by the share each image has. The draws depend on
//! the run's seed and the step alone, so `--resume` stays exact.

use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution};

/// How a batch was mixed: the first label's weight and each image's partner label.
pub struct Mix {
    pub lambda: f64,
    pub partner_labels: Vec<usize>,
}

/// Mixes `pixels` (`N*C*H*W`) in place for step `seed` (`mixup`, `cutmix`: Beta parameters, 0 =
/// off; with both, each step picks one at even odds). `None` when neither is on.
pub fn mix(
    pixels: &mut [f32],
    chw: [usize; 3],
    labels: &[usize],
    (mixup, cutmix): (f64, f64),
    seed: u64,
) -> Option<Mix> {
    if mixup <= 0.0 && cutmix <= 0.0 {
        return None;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x4D49_5855_505F_4355);
    let use_cutmix = cutmix > 0.0 && (mixup <= 0.0 || rng.random_bool(0.5));
    let alpha = if use_cutmix { cutmix } else { mixup };
    let lambda = Beta::new(alpha, alpha).map_or(0.5, |b| b.sample(&mut rng));
    let size = chw.iter().product::<usize>();
    let n = labels.len();
    let source = pixels.to_vec();
    let partner = |i: usize| &source[(n - 1 - i) * size..(n - i) * size];
    let lambda = if use_cutmix {
        let b = cut_box(chw, lambda, &mut rng);
        for i in 0..n {
            paste(&mut pixels[i * size..(i + 1) * size], partner(i), chw, b);
        }
        1.0 - ((b.2 - b.0) * (b.3 - b.1)) as f64 / (chw[1] * chw[2]) as f64
    } else {
        for i in 0..n {
            let image = &mut pixels[i * size..(i + 1) * size];
            for (v, &p) in image.iter_mut().zip(partner(i)) {
                *v = lambda as f32 * *v + (1.0 - lambda as f32) * p;
            }
        }
        lambda
    };
    Some(Mix {
        lambda,
        partner_labels: (0..n).map(|i| labels[n - 1 - i]).collect(),
    })
}

/// A box `(y0, x0, y1, x1)` of about `1 - lambda` of the image, centred at random, clipped.
fn cut_box([_, h, w]: [usize; 3], lambda: f64, rng: &mut impl Rng) -> (usize, usize, usize, usize) {
    let side = (1.0 - lambda).max(0.0).sqrt();
    let (bh, bw) = ((h as f64 * side) as usize, (w as f64 * side) as usize);
    let (cy, cx) = (rng.random_range(0..h), rng.random_range(0..w));
    let (y0, x0) = (cy.saturating_sub(bh / 2), cx.saturating_sub(bw / 2));
    (
        y0,
        x0,
        (cy + bh.div_ceil(2)).min(h),
        (cx + bw.div_ceil(2)).min(w),
    )
}

/// The partner's pixels inside the box, every channel.
fn paste(
    image: &mut [f32],
    partner: &[f32],
    [c, h, w]: [usize; 3],
    b: (usize, usize, usize, usize),
) {
    for ch in 0..c {
        for y in b.0..b.2 {
            let row = ch * h * w + y * w;
            image[row + b.1..row + b.3].copy_from_slice(&partner[row + b.1..row + b.3]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two one-pixel-wide images of constant values 0 and 1: mixup gives each the blend of both
    /// with the drawn weight; cutmix gives each a box of the other whose area matches lambda.
    #[test]
    fn mixup_blends_and_cutmix_pastes_a_box_of_the_partner() {
        let chw = [1, 8, 8];
        let batch = || [vec![0.0f32; 64], vec![1.0f32; 64]].concat();
        assert!(mix(&mut batch(), chw, &[0, 1], (0.0, 0.0), 3).is_none());
        let mut mixed = batch();
        let m = mix(&mut mixed, chw, &[0, 1], (0.4, 0.0), 3).unwrap();
        assert_eq!(m.partner_labels, [1, 0]);
        assert!((0.0..=1.0).contains(&m.lambda));
        let l = m.lambda as f32;
        assert!(mixed[..64].iter().all(|&v| (v - (1.0 - l)).abs() < 1e-6));
        assert!(mixed[64..].iter().all(|&v| (v - l).abs() < 1e-6));
        for seed in 0..20 {
            let mut cut = batch();
            let m = mix(&mut cut, chw, &[0, 1], (0.0, 1.0), seed).unwrap();
            let pasted = cut[..64].iter().filter(|&&v| v == 1.0).count();
            assert!(
                (m.lambda - (1.0 - pasted as f64 / 64.0)).abs() < 1e-12,
                "seed {seed}"
            );
            assert_eq!(cut[64..].iter().filter(|&&v| v == 0.0).count(), pasted);
        }
        let draw = |seed| {
            mix(&mut batch(), chw, &[0, 1], (0.4, 1.0), seed)
                .unwrap()
                .lambda
        };
        assert_eq!(draw(7), draw(7), "the same step draws the same");
    }
}
