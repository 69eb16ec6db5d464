//! A large image folder made from a small one, for the large-dataset benchmark and tests:
//! every output image is a random crop (30-100 % of the shorter side, anywhere in the photo) of
//! a random photo of its class, maybe mirrored, resized to SIZE x SIZE and saved as its own
//! JPEG, so no two files are alike and decoding costs what real photos cost.
//!
//!     cargo run --release -p zoo-data --example synthetic_folder -- SOURCE OUT COUNT [SIZE] [SEED]
//!
//! SOURCE is a folder of class folders (`../shared/data/flowers5`); OUT gets the same classes
//! with COUNT images in all (spread evenly), SIZE defaults to 128, SEED to 0. Seeded: the same
//! arguments give the same files.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(3..=5).contains(&args.len()) {
        return Err("usage: synthetic_folder SOURCE OUT COUNT [SIZE] [SEED]".into());
    }
    let number = |i: usize, default: u64| -> Result<u64, String> {
        args.get(i).map_or(Ok(default), |a| {
            a.parse().map_err(|_| format!("`{a}` is not a number"))
        })
    };
    let (source, out) = (Path::new(&args[0]), Path::new(&args[1]));
    let (count, size, seed) = (
        number(2, 0)? as usize,
        number(3, 128)? as u32,
        number(4, 0)?,
    );
    let dataset = zoo_data::open(source).map_err(|e| e.to_string())?;
    let classes = dataset.classes.len();
    let by_class: Vec<Vec<PathBuf>> = (0..classes)
        .map(|c| {
            dataset
                .samples
                .iter()
                .filter(|s| s.label == c)
                .filter_map(|s| match &s.image {
                    zoo_data::ImageRef::File(p) => Some(p.clone()),
                    zoo_data::ImageRef::Idx { .. } => None,
                })
                .collect()
        })
        .collect();
    if by_class.iter().any(Vec::is_empty) || size == 0 {
        return Err("SOURCE needs image files in every class folder, SIZE at least 1".into());
    }
    for class in &dataset.classes {
        std::fs::create_dir_all(out.join(class)).map_err(|e| e.to_string())?;
    }
    (0..count).into_par_iter().try_for_each(|i| {
        let class = i % classes;
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let photos = &by_class[class];
        let photo = &photos[rng.random_range(0..photos.len())];
        let image = zoo_data::decode(photo).map_err(|e| e.to_string())?;
        let (w, h) = (image.width(), image.height());
        let side = ((w.min(h) as f64) * rng.random_range(0.3..=1.0)).max(1.0) as u32;
        let (x, y) = (
            rng.random_range(0..=w - side),
            rng.random_range(0..=h - side),
        );
        let mut crop =
            image
                .crop_imm(x, y, side, side)
                .resize_exact(size, size, FilterType::Triangle);
        if rng.random_bool(0.5) {
            crop = crop.fliph();
        }
        let path = out
            .join(&dataset.classes[class])
            .join(format!("{i:07}.jpg"));
        crop.to_rgb8()
            .save(&path)
            .map_err(|e| format!("{}: {e}", path.display()))
    })?;
    println!(
        "{count} images of {size}x{size} in {} ({classes} classes)",
        out.display()
    );
    Ok(())
}
