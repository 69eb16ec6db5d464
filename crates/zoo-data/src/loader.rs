//! Parallel, batched loading: decode + preprocess with rayon, either once into one in-memory
//! tensor set, or (streamed, for datasets larger than memory) again each time a batch is
//! gathered, so memory no longer grows with the number of images.

use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;
use zoo_cards::Preprocessing;

use crate::dataset::{Dataset, ImageRef};
use crate::error::DataError;
use crate::preprocess::preprocess;

/// Preprocessed images of a dataset subset: held in memory as one `N*C*H*W` buffer, or
/// streamed (read, decoded and preprocessed from their files whenever gathered).
#[derive(Clone, Debug, Default)]
pub struct Tensors {
    pub chw: [usize; 3],
    /// The pixels when held in memory; empty when streamed.
    pub values: Vec<f32>,
    pub labels: Vec<usize>,
    /// Which dataset sample each image came from.
    pub samples: Vec<usize>,
    /// Set when streamed: where each image is read from, and its recipe.
    pub streamed: Option<Arc<Streamed>>,
}

/// The files of a streamed [`Tensors`], one per image, and the recipe they get.
#[derive(Debug)]
pub struct Streamed {
    images: Vec<ImageRef>,
    preprocessing: Preprocessing,
}

impl Tensors {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes the pixels take (held, or would take if held).
    pub fn pixel_bytes(&self) -> u64 {
        (self.len() * self.chw.iter().product::<usize>() * 4) as u64
    }

    /// Image `i` of an in-memory set (`None` when streamed).
    pub fn image(&self, i: usize) -> Option<&[f32]> {
        let size = self.chw.iter().product::<usize>();
        self.values.get(i * size..(i + 1) * size)
    }
}

/// One mini-batch: `N*C*H*W` values and `N` labels.
#[derive(Clone, Debug)]
pub struct Batch {
    pub values: Vec<f32>,
    pub labels: Vec<usize>,
}

impl Tensors {
    /// The images `picked`, one after another, each augmented per (seed, epoch, image) when
    /// `augment` is given. Streamed images are read and decoded here, on all cores; one that no
    /// longer decodes (changed or removed since the run checked it) is an error naming it.
    pub fn gather(
        &self,
        picked: &[usize],
        augment: Option<(crate::Augment, u64, usize)>,
    ) -> Result<Vec<f32>, DataError> {
        let size = self.chw.iter().product::<usize>();
        let mut values = vec![0.0f32; picked.len() * size];
        values
            .par_chunks_mut(size.max(1))
            .zip(picked)
            .try_for_each(|(dst, &i)| {
                self.read_into(i, dst)?;
                if let Some((aug, seed, epoch)) = augment {
                    aug.apply(dst, self.chw, crate::augment::sample_seed(seed, epoch, i));
                }
                Ok(())
            })?;
        Ok(values)
    }

    /// Image `i`'s pixels into `dst`, from memory or from its file.
    fn read_into(&self, i: usize, dst: &mut [f32]) -> Result<(), DataError> {
        match (&self.streamed, self.image(i)) {
            (None, Some(pixels)) => dst.copy_from_slice(pixels),
            (Some(streamed), _) => {
                let image = &streamed.images[i];
                let pixels = preprocess(&image.load()?, &streamed.preprocessing);
                dst.copy_from_slice(&pixels);
            }
            // Its pixels were dropped (their features cached instead).
            (None, None) => {
                return Err(DataError::Split(format!(
                    "image {i} of this set is no longer held in memory"
                )))
            }
        }
        Ok(())
    }

    /// Images `start..start + n` in order, unaugmented.
    pub fn range(&self, start: usize, n: usize) -> Result<Vec<f32>, DataError> {
        let picked: Vec<usize> = (start..start + n).collect();
        self.gather(&picked, None)
    }

    /// Mini-batches in a seeded shuffled order (or in order with `shuffle = None`), optionally
    /// augmented per (seed, epoch, image). The last batch may be smaller.
    pub fn batches(
        &self,
        batch_size: usize,
        shuffle: Option<u64>,
        augment: Option<(crate::Augment, u64, usize)>,
    ) -> impl Iterator<Item = Result<Batch, DataError>> + '_ {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut order: Vec<usize> = (0..self.len()).collect();
        if let Some(seed) = shuffle {
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        }
        let batch_size = batch_size.max(1);
        (0..order.len().div_ceil(batch_size)).map(move |b| {
            let picked = &order[b * batch_size..((b + 1) * batch_size).min(order.len())];
            Ok(Batch {
                values: self.gather(picked, augment)?,
                labels: picked.iter().map(|&i| self.labels[i]).collect(),
            })
        })
    }
}

/// Bytes one image preprocessed by `p` takes (f32 values).
pub fn image_bytes(p: &Preprocessing) -> u64 {
    4 * p.color.channels() as u64 * p.size[0] as u64 * p.size[1] as u64
}

/// Whether `images` preprocessed by `p` fit half of a memory budget of `budget` bytes (the
/// rule every command uses to hold images rather than stream them).
pub fn images_fit(p: &Preprocessing, images: usize, budget: u64) -> bool {
    image_bytes(p).saturating_mul(images as u64) <= budget / 2
}

/// A file that could not be used, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// Decodes and preprocesses `indices` of `dataset` in parallel. Unreadable images are skipped
/// and reported, never fatal.
pub fn load(dataset: &Dataset, indices: &[usize], p: &Preprocessing) -> (Tensors, Vec<Skipped>) {
    let chw = [p.color.channels(), p.size[0] as usize, p.size[1] as usize];
    let (decoded, skipped) = decode_each(dataset, indices, |img| preprocess(&img, p));
    // One allocation and a copy on all cores: growing the buffer image by image on one core
    // (reallocations and page faults of some 240 MB for 400 photos at 224x224) left the other
    // cores idle for a tenth of a second.
    let image_len: usize = chw.iter().product();
    let mut values = vec![0.0f32; decoded.len() * image_len];
    values
        .par_chunks_mut(image_len.max(1))
        .zip(&decoded)
        .for_each(|(dst, (_, image))| dst.copy_from_slice(image));
    (tensors_of(dataset, chw, values, &decoded, None), skipped)
}

/// Like [`load`], but nothing is kept: every image is decoded once to find the unreadable ones
/// (so a streamed run trains on exactly the images an in-memory one would), and the set reads
/// its images again whenever a batch is gathered.
pub fn stream(dataset: &Dataset, indices: &[usize], p: &Preprocessing) -> (Tensors, Vec<Skipped>) {
    let chw = [p.color.channels(), p.size[0] as usize, p.size[1] as usize];
    let (readable, skipped) = decode_each(dataset, indices, |_| ());
    let streamed = Streamed {
        images: readable
            .iter()
            .map(|&(i, _)| dataset.samples[i].image.clone())
            .collect(),
        preprocessing: p.clone(),
    };
    let tensors = tensors_of(dataset, chw, Vec::new(), &readable, Some(streamed));
    (tensors, skipped)
}

/// `keep` of every image of `indices` that decodes (in order), and the ones that do not.
fn decode_each<T: Send>(
    dataset: &Dataset,
    indices: &[usize],
    keep: impl Fn(image::DynamicImage) -> T + Sync,
) -> (Vec<(usize, T)>, Vec<Skipped>) {
    let results: Vec<Result<(usize, T), Skipped>> = indices
        .par_iter()
        .map(|&i| {
            let sample = &dataset.samples[i];
            sample
                .image
                .load()
                .map(|img| (i, keep(img)))
                .map_err(|e| Skipped {
                    path: sample.image.name(),
                    reason: e.to_string(),
                })
        })
        .collect();
    let mut skipped = Vec::new();
    let mut decoded = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(image) => decoded.push(image),
            Err(s) => skipped.push(s),
        }
    }
    (decoded, skipped)
}

fn tensors_of<T>(
    dataset: &Dataset,
    chw: [usize; 3],
    values: Vec<f32>,
    decoded: &[(usize, T)],
    streamed: Option<Streamed>,
) -> Tensors {
    Tensors {
        chw,
        values,
        labels: decoded
            .iter()
            .map(|(i, _)| dataset.samples[*i].label)
            .collect(),
        samples: decoded.iter().map(|(i, _)| *i).collect(),
        streamed: streamed.map(Arc::new),
    }
}
