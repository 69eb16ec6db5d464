//! The per-model preprocessing recipe: resize (direct, or shorter side + centre crop), channel
//! order, scale, mean and std, into CHW `f32` values.

use image::imageops::FilterType;
use image::DynamicImage;
use zoo_cards::{ColorOrder, Interpolation, Preprocessing, ResizeMode};

fn filter(i: Interpolation) -> FilterType {
    match i {
        Interpolation::Nearest => FilterType::Nearest,
        Interpolation::Bilinear => FilterType::Triangle,
        Interpolation::Bicubic => FilterType::CatmullRom,
    }
}

/// `image.resize_exact(width, height, ..)` with the recipe's filter: by
/// [`resize_bilinear`](crate::resize::resize_bilinear) for bilinear 8-bit RGB and gray images
/// (the same bytes, several times faster), by `image` otherwise.
fn resize_exact(image: &DynamicImage, width: u32, height: u32, i: Interpolation) -> DynamicImage {
    let size = [image.width() as usize, image.height() as usize];
    let new = [width as usize, height as usize];
    let ours = |raw: &[u8], channels: usize| {
        crate::resize::resize_bilinear(&raw[..size[0] * size[1] * channels], size, channels, new)
    };
    let resized = match image {
        DynamicImage::ImageRgb8(rgb) if i == Interpolation::Bilinear => {
            image::RgbImage::from_raw(width, height, ours(rgb.as_raw(), 3)).map(DynamicImage::from)
        }
        DynamicImage::ImageLuma8(gray) if i == Interpolation::Bilinear => {
            image::GrayImage::from_raw(width, height, ours(gray.as_raw(), 1))
                .map(DynamicImage::from)
        }
        _ => None,
    };
    resized.unwrap_or_else(|| image.resize_exact(width, height, filter(i)))
}

/// Applies the recipe and returns `C*H*W` values in the model's channel order.
pub fn preprocess(image: &DynamicImage, p: &Preprocessing) -> Vec<f32> {
    let [h, w] = p.size;
    let f = p.interpolation;
    let resized = match p.resize {
        ResizeMode::Direct => resize_exact(image, w, h, f),
        ResizeMode::ShorterSideCrop => {
            let shorter = p.resize_shorter.unwrap_or(h.max(w));
            let (iw, ih) = (image.width().max(1), image.height().max(1));
            let (rw, rh) = if iw <= ih {
                (
                    shorter,
                    ((ih as u64 * shorter as u64) / iw as u64).max(1) as u32,
                )
            } else {
                (
                    ((iw as u64 * shorter as u64) / ih as u64).max(1) as u32,
                    shorter,
                )
            };
            let big = resize_exact(image, rw, rh, f);
            big.crop_imm((rw.saturating_sub(w)) / 2, (rh.saturating_sub(h)) / 2, w, h)
        }
    };
    let plane = (h * w) as usize;
    match p.color {
        ColorOrder::Gray => {
            let gray = resized.to_luma8();
            gray.as_raw()
                .iter()
                .map(|&v| (v as f32 * p.scale - p.mean[0]) / p.std[0])
                .collect()
        }
        ColorOrder::Rgb | ColorOrder::Bgr => {
            let rgb = resized.to_rgb8();
            let mut out = vec![0.0f32; 3 * plane];
            for (i, px) in rgb.pixels().enumerate() {
                for (c, &v) in px.0.iter().enumerate() {
                    let channel = if p.color == ColorOrder::Bgr { 2 - c } else { c };
                    out[channel * plane + i] =
                        (v as f32 * p.scale - p.mean[channel]) / p.std[channel];
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn caffe() -> Preprocessing {
        zoo_cards::find("alexnet").unwrap().preprocessing
    }

    #[test]
    fn caffe_recipe_is_bgr_minus_means() {
        // A flat colour survives any resize exactly, so the values are known in closed form.
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(50, 30, Rgb([200, 100, 50])));
        let v = preprocess(&img, &caffe());
        let plane = 224 * 224;
        assert_eq!(v.len(), 3 * plane);
        assert!((v[0] - (50.0 - 103.939)).abs() < 1e-4, "B first: {}", v[0]);
        assert!((v[plane] - (100.0 - 116.779)).abs() < 1e-4);
        assert!((v[2 * plane + 777] - (200.0 - 123.68)).abs() < 1e-4);
    }

    #[test]
    fn mnist_recipe_is_gray_over_255() {
        let mut img = image::GrayImage::new(28, 28);
        img.put_pixel(3, 2, image::Luma([255]));
        img.put_pixel(4, 2, image::Luma([51]));
        let p = zoo_cards::find("lenet").unwrap().preprocessing;
        let v = preprocess(&DynamicImage::ImageLuma8(img), &p);
        assert_eq!(v.len(), 784);
        assert_eq!(v[2 * 28 + 3], 1.0);
        assert!((v[2 * 28 + 4] - 0.2).abs() < 1e-6);
        assert_eq!(v[0], 0.0);
    }

    #[test]
    fn identity_size_keeps_every_pixel_in_chw_order() {
        // At the model's own size no interpolation happens, so each value is known exactly.
        let img = RgbImage::from_fn(224, 224, |x, y| {
            Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
        });
        let v = preprocess(&DynamicImage::ImageRgb8(img), &caffe());
        let plane = 224 * 224;
        for &(x, y) in &[(0usize, 0usize), (5, 7), (223, 100), (17, 223)] {
            let i = y * 224 + x;
            assert_eq!(v[i], ((x + y) % 256) as f32 - 103.939, "B at ({x},{y})");
            assert_eq!(v[plane + i], y as f32 - 116.779, "G at ({x},{y})");
            assert_eq!(v[2 * plane + i], x as f32 - 123.68, "R at ({x},{y})");
        }
    }

    #[test]
    fn shorter_side_crop_takes_the_centre() {
        // Shorter side already at the target: only the crop acts, so the kept columns are known.
        let p = Preprocessing {
            resize: ResizeMode::ShorterSideCrop,
            size: [4, 4],
            resize_shorter: Some(4),
            interpolation: Interpolation::Bilinear,
            color: ColorOrder::Rgb,
            scale: 1.0,
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
        };
        let img = RgbImage::from_fn(10, 4, |x, _| Rgb([x as u8 * 10, 0, 0]));
        let v = preprocess(&DynamicImage::ImageRgb8(img), &p);
        assert_eq!(&v[..4], &[30.0, 40.0, 50.0, 60.0]);
    }

    #[test]
    fn mean_and_std_divide_per_channel() {
        let p = Preprocessing {
            resize: ResizeMode::Direct,
            size: [2, 2],
            resize_shorter: None,
            interpolation: Interpolation::Nearest,
            color: ColorOrder::Rgb,
            scale: 1.0 / 255.0,
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        };
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(2, 2, Rgb([255, 0, 51])));
        let v = preprocess(&img, &p);
        assert!((v[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
        assert!((v[4] - (0.0 - 0.456) / 0.224).abs() < 1e-5);
        assert!((v[8] - (0.2 - 0.406) / 0.225).abs() < 1e-5);
    }
}
