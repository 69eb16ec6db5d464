//! Decoding and the per-model preprocessing recipe (resize, channel order, scale, mean/std).

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, ImageReader, Limits};
use zoo_cards::{ColorOrder, Interpolation, Preprocessing, ResizeMode};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("no images found in {0} (looked for jpg, jpeg, png, gif, bmp, webp, tif, tiff)")]
    NoImages(PathBuf),
}

/// Largest decoded image accepted: 16384 x 16384 pixels; 512 MiB of decoder memory.
/// A small file claiming more is a decompression bomb.
const MAX_SIDE: u32 = 16_384;
const MAX_DECODE_BYTES: u64 = 512 << 20;

const EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff"];

/// Decodes an image by content (not extension), with decode limits.
pub fn decode(path: &Path) -> Result<DynamicImage, DataError> {
    let unreadable = |reason: String| DataError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = ImageReader::open(path)
        .map_err(|e| unreadable(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| unreadable(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|e| unreadable(e.to_string()))
}

/// Image files under `dir` (recursively), sorted for reproducibility.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| DataError::Unreadable {
            path: d.clone(),
            reason: e.to_string(),
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(DataError::NoImages(dir.to_path_buf()));
    }
    Ok(found)
}

fn filter(i: Interpolation) -> FilterType {
    match i {
        Interpolation::Nearest => FilterType::Nearest,
        Interpolation::Bilinear => FilterType::Triangle,
        Interpolation::Bicubic => FilterType::CatmullRom,
    }
}

/// Applies the recipe and returns `C*H*W` values in the model's channel order.
pub fn preprocess(image: &DynamicImage, p: &Preprocessing) -> Vec<f32> {
    let [h, w] = p.size;
    let f = filter(p.interpolation);
    let resized = match p.resize {
        ResizeMode::Direct => image.resize_exact(w, h, f),
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
            let big = image.resize_exact(rw, rh, f);
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
    fn undecodable_files_are_errors() {
        let dir = std::env::temp_dir().join(format!("zoo-data-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("broken.jpg");
        std::fs::write(&bad, b"\xff\xd8\xff not really a jpeg").unwrap();
        assert!(matches!(decode(&bad), Err(DataError::Unreadable { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
