//! Image grids: conv filters, feature maps and captioned galleries (misclassified images),
//! as PNG; shared by `zoo show`, `zoo evaluate` and the run report.

use std::path::Path;

use burn::tensor::backend::Backend;
use plotters::prelude::*;
use zoo_cards::{ColorOrder, Preprocessing};
use zoo_net::Network;

/// One tile: `channels` planes of `h*w` values (1 = gray, 3 = RGB).
pub struct Tile {
    pub planes: Vec<Vec<f32>>,
}

/// What a grid picture holds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Grid {
    pub tiles: usize,
    /// Each tile's source size `[height, width]` before upscaling.
    pub tile_size: [usize; 2],
    pub rgb: bool,
    /// `[rows, columns]`.
    pub grid: [usize; 2],
    pub image_size: [u32; 2],
}

/// The kernels of a conv layer as tiles: RGB when it reads 3 channels (in RGB order whatever
/// the model's colour order), else the mean over its input channels; and the kernel size.
pub fn filter_tiles<B: Backend>(
    net: &Network<B>,
    layer: &zoo_net::Layer,
    color: ColorOrder,
) -> Result<(Vec<Tile>, [usize; 2]), String> {
    if layer.op != "Conv" {
        return Err(format!(
            "`{}` is a {} layer; filters are shown for Conv layers",
            layer.name, layer.op
        ));
    }
    let plan = net.plan();
    let weight = layer
        .params
        .iter()
        .copied()
        .find(|&i| plan.params[i].dims.len() == 4)
        .ok_or_else(|| format!("`{}` has no 4-D weight", layer.name))?;
    let [o, i, kh, kw] = <[usize; 4]>::try_from(plan.params[weight].dims.as_slice())
        .map_err(|_| format!("`{}` has no 4-D weight", layer.name))?;
    let values = net.param_value(weight);
    let plane = kh * kw;
    let order = if color == ColorOrder::Bgr {
        [2, 1, 0]
    } else {
        [0, 1, 2]
    };
    let tiles = (0..o)
        .map(|f| {
            let kernel = &values[f * i * plane..(f + 1) * i * plane];
            let planes = if i == 3 {
                order
                    .iter()
                    .map(|&c| kernel[c * plane..(c + 1) * plane].to_vec())
                    .collect()
            } else {
                vec![(0..plane)
                    .map(|p| (0..i).map(|c| kernel[c * plane + p]).sum::<f32>() / i as f32)
                    .collect()]
            };
            Tile { planes }
        })
        .collect();
    Ok((tiles, [kh, kw]))
}

/// The first convolution of a network.
pub fn first_conv<B: Backend>(net: &Network<B>) -> Option<&zoo_net::Layer> {
    net.plan().layers.iter().find(|l| l.op == "Conv")
}

/// Lays tiles out in a near-square grid, each normalised to its own min..max and upscaled
/// (nearest) to at least 32 pixels, with 2-pixel gaps; writes the PNG atomically.
pub fn save_grid(tiles: &[Tile], [th, tw]: [usize; 2], output: &Path) -> std::io::Result<Grid> {
    let n = tiles.len();
    let cols = (n as f64).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols.max(1));
    let scale = (32usize.div_ceil(th.min(tw).max(1))).max(1);
    let gap = 2;
    let (cell_h, cell_w) = (th * scale + gap, tw * scale + gap);
    let (width, height) = ((cols * cell_w + gap) as u32, (rows * cell_h + gap) as u32);
    let mut img = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let rgb = tiles.first().is_some_and(|t| t.planes.len() == 3);
    for (k, tile) in tiles.iter().enumerate() {
        let (lo, hi) = tile
            .planes
            .iter()
            .flatten()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let span = if hi > lo { hi - lo } else { 1.0 };
        let to_u8 = |v: f32| (((v - lo) / span) * 255.0).round().clamp(0.0, 255.0) as u8;
        let (r0, c0) = ((k / cols) * cell_h + gap, (k % cols) * cell_w + gap);
        for y in 0..th * scale {
            for x in 0..tw * scale {
                let p = (y / scale) * tw + x / scale;
                let px = if rgb {
                    [0, 1, 2].map(|c| to_u8(tile.planes[c][p]))
                } else {
                    [to_u8(tile.planes[0][p]); 3]
                };
                img.put_pixel((c0 + x) as u32, (r0 + y) as u32, image::Rgb(px));
            }
        }
    }
    write_png(&img, output)?;
    Ok(Grid {
        tiles: n,
        tile_size: [th, tw],
        rgb,
        grid: [rows, cols],
        image_size: [width, height],
    })
}

fn write_png(img: &image::RgbImage, output: &Path) -> std::io::Result<()> {
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(std::io::Error::other)?;
    zoo_io::write_atomic(output, &png)
}

/// A preprocessed image (`C*H*W` values) back as RGB pixels for display: the preprocessing
/// undone (`pixel = (v * std + mean) / scale`), BGR put back in RGB order, gray replicated.
pub fn displayable(values: &[f32], chw: [usize; 3], p: &Preprocessing) -> image::RgbImage {
    let [c, h, w] = chw;
    let plane = h * w;
    let channel = |ch: usize, i: usize| {
        let ch = ch.min(c - 1);
        let v = values[ch * plane + i] * p.std[ch.min(p.std.len() - 1)]
            + p.mean[ch.min(p.mean.len() - 1)];
        (v / p.scale).round().clamp(0.0, 255.0) as u8
    };
    let order = match p.color {
        ColorOrder::Bgr => [2, 1, 0],
        ColorOrder::Rgb => [0, 1, 2],
        ColorOrder::Gray => [0, 0, 0],
    };
    image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        image::Rgb(order.map(|ch| channel(ch, i)))
    })
}

/// One gallery entry: a picture and the lines of text under it.
pub struct Captioned {
    pub image: image::RgbImage,
    pub lines: Vec<String>,
}

/// Pictures in a grid (4 columns), each scaled to 128 pixels on its longer side, with its
/// caption lines under it. Nothing to show draws one line saying so.
pub fn gallery(entries: &[Captioned], title: &str, output: &Path) -> std::io::Result<()> {
    crate::report::plot::register_font();
    let (cols, cell, text_h) = (4usize, 128u32, 16u32);
    let lines = entries.iter().map(|e| e.lines.len()).max().unwrap_or(0) as u32;
    let rows = entries.len().div_ceil(cols).max(1) as u32;
    let (cell_w, cell_h) = (cell + 60, cell + 8 + lines * text_h + 10);
    let size = (cols as u32 * cell_w + 10, 34 + rows * cell_h);
    // Written beside the target and renamed into place; plotters picks the format by extension.
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "gallery.png".into());
    let tmp = output.with_file_name(format!(".{name}.{}.tmp.png", std::process::id()));
    {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let font = ("sans-serif", 14).into_font();
        root.draw(&Text::new(
            title.to_string(),
            (8, 8),
            font.clone().color(&BLACK),
        ))
        .map_err(|e| err(&e))?;
        for (k, e) in entries.iter().enumerate() {
            let (x0, y0) = (
                8 + (k % cols) as i32 * cell_w as i32,
                34 + (k / cols) as i32 * cell_h as i32,
            );
            let (w, h) = e.image.dimensions();
            let s = cell as f32 / w.max(h).max(1) as f32;
            let (sw, sh) = ((w as f32 * s) as u32, (h as f32 * s) as u32);
            let scaled = image::imageops::resize(
                &e.image,
                sw.max(1),
                sh.max(1),
                image::imageops::FilterType::Triangle,
            );
            for (x, y, px) in scaled.enumerate_pixels() {
                root.draw_pixel(
                    (x0 + x as i32, y0 + y as i32),
                    &RGBColor(px.0[0], px.0[1], px.0[2]),
                )
                .map_err(|e| err(&e))?;
            }
            for (l, line) in e.lines.iter().enumerate() {
                root.draw(&Text::new(
                    line.clone(),
                    (x0, y0 + cell as i32 + 4 + (l as u32 * text_h) as i32),
                    ("sans-serif", 12).into_font().color(&BLACK),
                ))
                .map_err(|e| err(&e))?;
            }
        }
        root.present().map_err(|e| err(&e))?;
    }
    std::fs::rename(&tmp, output)
}

/// Where `zoo evaluate` and the run report draw the misclassified images.
pub const MISCLASSIFIED_PNG: &str = "misclassified.png";

/// The most this gallery shows.
pub const GALLERY_MAX: usize = 16;

/// Preprocessed images and what they are, for a gallery.
pub struct Shown<'a> {
    /// `C*H*W` values per image.
    pub values: &'a [f32],
    pub chw: [usize; 3],
    pub preprocessing: &'a Preprocessing,
    pub names: &'a [String],
    /// A file name per image, or empty.
    pub paths: &'a [String],
}

/// The worst misclassified images (up to [`GALLERY_MAX`] of `mistakes`, out of `total`), each
/// with its true and predicted class and their probabilities.
pub fn misclassified(
    mistakes: &[crate::report::Mistake],
    total: usize,
    shown: &Shown<'_>,
    output: &Path,
) -> std::io::Result<()> {
    let size: usize = shown.chw.iter().product();
    let name = |i: usize| {
        shown
            .names
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("class {i}"))
    };
    let short = |s: String| {
        if s.chars().count() > 20 {
            s.chars().take(19).collect::<String>() + "…"
        } else {
            s
        }
    };
    let entries: Vec<Captioned> = mistakes
        .iter()
        .take(GALLERY_MAX)
        .map(|m| {
            let file = shown
                .paths
                .get(m.index)
                .and_then(|p| p.rsplit('/').next())
                .unwrap_or("")
                .to_string();
            Captioned {
                image: displayable(
                    &shown.values[m.index * size..(m.index + 1) * size],
                    shown.chw,
                    shown.preprocessing,
                ),
                lines: vec![
                    short(format!("true {} {:.0}%", name(m.truth), 100.0 * m.p_true)),
                    short(format!(
                        "pred {} {:.0}%",
                        name(m.predicted),
                        100.0 * m.p_predicted
                    )),
                    short(file),
                ],
            }
        })
        .collect();
    let title = if total == 0 {
        "no misclassified images".to_string()
    } else {
        format!(
            "{total} misclassified, worst first (lowest probability on the true class){}",
            if total > entries.len() {
                format!("; the first {}", entries.len())
            } else {
                String::new()
            }
        )
    };
    gallery(&entries, &title, output)
}
