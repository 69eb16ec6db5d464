//! Parallel, batched loading: decode + preprocess with rayon into one in-memory tensor set.

use rayon::prelude::*;
use serde::Serialize;
use zoo_cards::Preprocessing;

use crate::dataset::Dataset;
use crate::preprocess::preprocess;

/// Preprocessed images of a dataset subset, held in memory as one `N*C*H*W` buffer.
#[derive(Clone, Debug, Default)]
pub struct Tensors {
    pub chw: [usize; 3],
    pub values: Vec<f32>,
    pub labels: Vec<usize>,
    /// Which dataset sample each image came from.
    pub samples: Vec<usize>,
}

impl Tensors {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image(&self, i: usize) -> &[f32] {
        let size = self.chw.iter().product::<usize>();
        &self.values[i * size..(i + 1) * size]
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
    /// `augment` is given.
    pub fn gather(
        &self,
        picked: &[usize],
        augment: Option<(crate::Augment, u64, usize)>,
    ) -> Vec<f32> {
        let size = self.chw.iter().product::<usize>();
        let mut values = Vec::with_capacity(picked.len() * size);
        for &i in picked {
            let start = values.len();
            values.extend_from_slice(self.image(i));
            if let Some((aug, seed, epoch)) = augment {
                aug.apply(
                    &mut values[start..],
                    self.chw,
                    crate::augment::sample_seed(seed, epoch, i),
                );
            }
        }
        values
    }

    /// Mini-batches in a seeded shuffled order (or in order with `shuffle = None`), optionally
    /// augmented per (seed, epoch, image). The last batch may be smaller.
    pub fn batches(
        &self,
        batch_size: usize,
        shuffle: Option<u64>,
        augment: Option<(crate::Augment, u64, usize)>,
    ) -> impl Iterator<Item = Batch> + '_ {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut order: Vec<usize> = (0..self.len()).collect();
        if let Some(seed) = shuffle {
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        }
        let batch_size = batch_size.max(1);
        (0..order.len().div_ceil(batch_size)).map(move |b| {
            let picked = &order[b * batch_size..((b + 1) * batch_size).min(order.len())];
            let values = self.gather(picked, augment);
            Batch {
                values,
                labels: picked.iter().map(|&i| self.labels[i]).collect(),
            }
        })
    }
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
    let results: Vec<Result<(usize, Vec<f32>), Skipped>> = indices
        .par_iter()
        .map(|&i| {
            let sample = &dataset.samples[i];
            sample
                .image
                .load()
                .map(|img| (i, preprocess(&img, p)))
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
    // One allocation and a copy on all cores: growing the buffer image by image on one core
    // (reallocations and page faults of some 240 MB for 400 photos at 224x224) left the other
    // cores idle for a tenth of a second.
    let image_len: usize = chw.iter().product();
    let mut values = vec![0.0f32; decoded.len() * image_len];
    values
        .par_chunks_mut(image_len.max(1))
        .zip(&decoded)
        .for_each(|(dst, (_, image))| dst.copy_from_slice(image));
    let tensors = Tensors {
        chw,
        values,
        labels: decoded
            .iter()
            .map(|&(i, _)| dataset.samples[i].label)
            .collect(),
        samples: decoded.iter().map(|&(i, _)| i).collect(),
    };
    (tensors, skipped)
}
