//! Training-time augmentation on preprocessed CHW images: random horizontal flip and random
//! translation (crop-and-pad), seeded per (seed, epoch, sample) so runs are reproducible.

use rand::{Rng, SeedableRng};

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Augment {
    pub flip: bool,
    /// Largest shift in pixels along each axis; vacated pixels become 0 (the mean after
    /// normalisation).
    pub max_shift: usize,
}

impl Augment {
    /// Flip and shifts of up to 1/8 of the image side: the usual random-crop strength.
    pub fn standard(chw: [usize; 3]) -> Self {
        Self {
            flip: true,
            max_shift: chw[1].min(chw[2]) / 8,
        }
    }

    pub fn apply(&self, image: &mut [f32], chw: [usize; 3], seed: u64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let flip = self.flip && rng.random_bool(0.5);
        let s = self.max_shift as i64;
        let (dy, dx) = if s > 0 {
            (rng.random_range(-s..=s), rng.random_range(-s..=s))
        } else {
            (0, 0)
        };
        transform(image, chw, flip, (dy, dx));
    }
}

/// Mirrors `image` (CHW) left to right when `flip`, then moves it by `(dy, dx)` pixels; vacated
/// pixels become 0 (the mean after normalisation).
pub fn transform(image: &mut [f32], [c, h, w]: [usize; 3], flip: bool, (dy, dx): (i64, i64)) {
    if !flip && dx == 0 && dy == 0 {
        return;
    }
    let source = image.to_vec();
    for ch in 0..c {
        let plane = &source[ch * h * w..(ch + 1) * h * w];
        let out = &mut image[ch * h * w..(ch + 1) * h * w];
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                let sy = y - dy;
                let sx0 = x - dx;
                let sx = if flip { w as i64 - 1 - sx0 } else { sx0 };
                out[(y * w as i64 + x) as usize] =
                    if (0..h as i64).contains(&sy) && (0..w as i64).contains(&sx) {
                        plane[(sy * w as i64 + sx) as usize]
                    } else {
                        0.0
                    };
            }
        }
    }
}

/// Seed for one sample in one epoch.
pub fn sample_seed(seed: u64, epoch: usize, index: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((epoch as u64) << 32) ^ index as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flip_only_mirrors_rows_and_is_seeded() {
        let chw = [1, 2, 3];
        let a = Augment {
            flip: true,
            max_shift: 0,
        };
        let flipped_seed = (0..100).find(|&s| {
            let mut v = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
            a.apply(&mut v, chw, s);
            v != [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        });
        let s = flipped_seed.expect("some seed flips");
        let mut v = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        a.apply(&mut v, chw, s);
        assert_eq!(v, [3.0, 2.0, 1.0, 6.0, 5.0, 4.0]);
        let mut again = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        a.apply(&mut again, chw, s);
        assert_eq!(v, again);
    }

    #[test]
    fn shifts_move_content_and_pad_with_zero() {
        let chw = [1, 4, 4];
        let a = Augment {
            flip: false,
            max_shift: 1,
        };
        let original: Vec<f32> = (1..=16).map(|v| v as f32).collect();
        let mut seen_shift = false;
        for s in 0..50 {
            let mut v = original.clone();
            a.apply(&mut v, chw, s);
            let zeros = v.iter().filter(|&&x| x == 0.0).count();
            assert!(
                zeros == 0 || zeros == 4 || zeros == 7,
                "one row and/or column vacated: {v:?}"
            );
            seen_shift |= zeros > 0;
            assert!(v.iter().all(|x| *x == 0.0 || original.contains(x)));
        }
        assert!(seen_shift);
    }
}
