//! Bilinear resizing of 8-bit RGB (and gray) images with the arithmetic of `image`'s `Triangle`
//! filter: the same taps and normalised weights, sums in the same order, the same clamping and
//! rounding, so the same bytes. It runs in two separable passes along whole rows with the
//! weights computed once per output row and column; `image::imageops::resize` reads and
//! writes pixel by pixel through accessors and calls `roundf` per value (6 % of a SqueezeNet
//! evaluate of 400 photos).

/// The input cells one output cell reads: `weights[i]` applies to cell `first + i`.
struct Taps {
    first: usize,
    weights: Vec<f32>,
}

/// The triangle filter's taps for resizing an axis of `input` cells to `output` cells, as
/// `image` computes them (`imageops::sample`, support 1 widened by the downscaling ratio).
fn taps(input: usize, output: usize) -> Vec<Taps> {
    let ratio = input as f32 / output as f32;
    let sratio = if ratio < 1.0 { 1.0 } else { ratio };
    let support = sratio;
    (0..output)
        .map(|o| {
            let centre = (o as f32 + 0.5) * ratio;
            let left = ((centre - support).floor() as i64).clamp(0, input as i64 - 1);
            let right = ((centre + support).ceil() as i64).clamp(left + 1, input as i64);
            let centre = centre - 0.5;
            let mut weights: Vec<f32> = (left..right)
                .map(|i| triangle((i as f32 - centre) / sratio))
                .collect();
            let mut sum = 0.0f32;
            for &w in &weights {
                sum += w;
            }
            weights.iter_mut().for_each(|w| *w /= sum);
            Taps {
                first: left as usize,
                weights,
            }
        })
        .collect()
}

fn triangle(x: f32) -> f32 {
    if x.abs() < 1.0 {
        1.0 - x.abs()
    } else {
        0.0
    }
}

/// `round(clamp(t, 0, 255))` as a byte, half away from zero as `f32::round` (without its
/// library call: `t` is non-negative once clamped, so truncation and the fraction decide).
fn to_byte(t: f32) -> u8 {
    let t = t.clamp(0.0, 255.0);
    let whole = t as u32;
    (whole + u32::from(t - whole as f32 >= 0.5)) as u8
}

/// Resizes an interleaved 8-bit image of `channels` values per pixel (`width` x `height`) to
/// `new_width` x `new_height`: the rows first (into f32), then the columns, as `image` does.
/// Equal sizes copy.
pub fn resize_bilinear(
    pixels: &[u8],
    [width, height]: [usize; 2],
    channels: usize,
    [new_width, new_height]: [usize; 2],
) -> Vec<u8> {
    assert_eq!(
        pixels.len(),
        width * height * channels,
        "pixels of the stated size"
    );
    if [width, height] == [new_width, new_height] {
        return pixels.to_vec();
    }
    if width == 0 || height == 0 {
        return vec![0; new_width * new_height * channels];
    }
    let stride = width * channels;
    let mut rows = vec![0.0f32; new_height * stride];
    for (row, taps) in rows.chunks_exact_mut(stride).zip(taps(height, new_height)) {
        for (i, &w) in taps.weights.iter().enumerate() {
            let source = &pixels[(taps.first + i) * stride..][..stride];
            for (t, &v) in row.iter_mut().zip(source) {
                *t += v as f32 * w;
            }
        }
    }
    let columns = taps(width, new_width);
    let mut out = vec![0u8; new_width * new_height * channels];
    for (out_row, row) in out
        .chunks_exact_mut(new_width * channels)
        .zip(rows.chunks_exact(stride))
    {
        for (pixel, taps) in out_row.chunks_exact_mut(channels).zip(&columns) {
            let cells = &row[taps.first * channels..];
            for (c, value) in pixel.iter_mut().enumerate() {
                let mut t = 0.0f32;
                for (i, &w) in taps.weights.iter().enumerate() {
                    t += cells[i * channels + c] * w;
                }
                *value = to_byte(t);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::{resize, FilterType};
    use image::{GrayImage, RgbImage};

    /// Deterministic pixel values with edges and flat areas.
    fn pixel(x: u32, y: u32, c: u32) -> u8 {
        let v = (x * 37 + y * 101 + c * 59) ^ (x * y);
        if (x / 7 + y / 5).is_multiple_of(3) {
            255
        } else {
            (v % 256) as u8
        }
    }

    #[test]
    fn rgb_and_gray_resizes_equal_image_s_triangle_filter_byte_for_byte() {
        let sizes = [
            ([128, 128], [224, 224]),
            ([500, 375], [224, 224]),
            ([31, 17], [224, 224]),
            ([300, 200], [64, 100]),
            ([7, 640], [28, 28]),
            ([224, 224], [224, 224]),
            ([1, 1], [3, 5]),
        ];
        for ([w, h], [nw, nh]) in sizes {
            let check = |raw: &[u8], channels: usize, expected: &[u8], kind: &str| {
                let size = [w as usize, h as usize];
                let ours = resize_bilinear(raw, size, channels, [nw as usize, nh as usize]);
                assert_eq!(ours, expected, "{kind} {w}x{h} -> {nw}x{nh}");
            };
            let rgb = RgbImage::from_fn(w, h, |x, y| image::Rgb([0, 1, 2].map(|c| pixel(x, y, c))));
            let expected = resize(&rgb, nw, nh, FilterType::Triangle);
            check(rgb.as_raw(), 3, expected.as_raw(), "rgb");
            let gray = GrayImage::from_fn(w, h, |x, y| image::Luma([pixel(x, y, 1)]));
            let expected = resize(&gray, nw, nh, FilterType::Triangle);
            check(gray.as_raw(), 1, expected.as_raw(), "gray");
        }
    }

    #[test]
    fn bytes_round_half_away_from_zero_and_clamp() {
        for t in [
            0.0f32, 0.49999997, 0.5, 1.5, 2.5, 254.5, 254.49998, 255.0, 300.0, -3.0,
        ] {
            let expected = t.clamp(0.0, 255.0).round() as u8;
            assert_eq!(to_byte(t), expected, "{t}");
        }
    }
}
