//! Train/validation splits: stratified per class and seeded, by fraction or by count per class
//! (MATLAB's splitEachLabel), or from a manifest's split column.

use std::collections::HashMap;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::dataset::{Dataset, Split};
use crate::error::DataError;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SplitPlan {
    /// This fraction of each class goes to validation.
    Fraction(f64),
    /// This many images of each class go to validation.
    PerClass(usize),
    /// This many images of each class train; the rest validate (`--train-per-class`).
    TrainPerClass(usize),
    /// The manifest's split column (rows without one train).
    FromManifest,
}

/// Indices into `dataset.samples`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Splits {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub warnings: Vec<String>,
}

/// Only the samples of the classes `keep`, in `keep`'s order (`--digits 1,5`); a name the
/// data does not have is an error that lists the classes.
pub fn keep_classes(mut dataset: Dataset, keep: &[String]) -> Result<Dataset, DataError> {
    if let Some((i, k)) = keep
        .iter()
        .enumerate()
        .find(|(i, k)| keep[..*i].contains(k))
    {
        return Err(DataError::Split(format!(
            "class `{k}` is listed twice (entries {} and {}); name each class once",
            keep.iter().position(|x| x == k).unwrap_or(0) + 1,
            i + 1
        )));
    }
    let index: Vec<usize> = keep
        .iter()
        .map(|k| {
            dataset.classes.iter().position(|c| c == k).ok_or_else(|| {
                DataError::Split(format!(
                    "no class `{k}` in {}; its classes: {}",
                    dataset.root.display(),
                    dataset.classes.join(", ")
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    dataset.samples.retain(|s| index.contains(&s.label));
    for s in &mut dataset.samples {
        s.label = index.iter().position(|&i| i == s.label).unwrap_or(0);
    }
    dataset.classes = keep.to_vec();
    Ok(dataset)
}

/// A training set and a separate validation set (`--val-data`) as one dataset whose split
/// column says which is which: every sample of `train` trains (its manifest's test rows stay
/// out), every sample of `val` validates. The class names must be the same; the validation
/// labels are renumbered to the training set's order.
pub fn with_validation_set(mut train: Dataset, val: Dataset) -> Result<Dataset, DataError> {
    let names = |d: &Dataset| {
        let mut n = d.classes.clone();
        n.sort();
        n
    };
    if names(&train) != names(&val) {
        return Err(DataError::Split(format!(
            "the validation set's classes differ from the training set's: {} has {} ({}), {} has {} ({})",
            train.root.display(),
            train.classes.len(),
            train.classes.join(", "),
            val.root.display(),
            val.classes.len(),
            val.classes.join(", ")
        )));
    }
    let to_train: Vec<usize> = val
        .classes
        .iter()
        .map(|c| train.classes.iter().position(|t| t == c).unwrap_or(0))
        .collect();
    train.samples.retain(|s| s.split != Some(Split::Test));
    for s in &mut train.samples {
        s.split = Some(Split::Train);
    }
    train.samples.extend(val.samples.into_iter().map(|mut s| {
        s.label = to_train[s.label];
        s.split = Some(Split::Val);
        s
    }));
    train.ignored.extend(val.ignored);
    Ok(train)
}

/// A class with more than this many times the images of another draws a warning.
pub const IMBALANCE_RATIO: f64 = 3.0;

pub fn split(dataset: &Dataset, plan: SplitPlan, seed: u64) -> Result<Splits, DataError> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); dataset.classes.len()];
    for (i, s) in dataset.samples.iter().enumerate() {
        by_class[s.label].push(i);
    }
    for (c, members) in by_class.iter().enumerate() {
        if members.is_empty() {
            return Err(DataError::Split(format!(
                "class `{}` has no images; remove its folder or add images",
                dataset.classes[c]
            )));
        }
    }
    let mut out = Splits::default();
    match plan {
        SplitPlan::FromManifest => {
            for (i, s) in dataset.samples.iter().enumerate() {
                match s.split {
                    Some(Split::Val) => out.val.push(i),
                    Some(Split::Test) => {}
                    Some(Split::Train) | None => out.train.push(i),
                }
            }
        }
        SplitPlan::Fraction(_) | SplitPlan::PerClass(_) | SplitPlan::TrainPerClass(_) => {
            for (c, members) in by_class.iter().enumerate() {
                let mut members = members.clone();
                // One stream per class, so adding a class does not reshuffle the others.
                let mut rng = rand::rngs::StdRng::seed_from_u64(
                    seed ^ (c as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                members.shuffle(&mut rng);
                let n_val = validation_count(plan, members.len(), &dataset.classes[c])?;
                out.val.extend_from_slice(&members[..n_val]);
                out.train.extend_from_slice(&members[n_val..]);
            }
            out.train.sort_unstable();
            out.val.sort_unstable();
        }
    }
    let mut train_counts = vec![0usize; dataset.classes.len()];
    for &i in &out.train {
        train_counts[dataset.samples[i].label] += 1;
    }
    if let Some(c) = train_counts.iter().position(|&n| n == 0) {
        return Err(DataError::Split(format!(
            "class `{}` has no training image",
            dataset.classes[c]
        )));
    }
    out.warnings.extend(leak_warning(dataset, &out));
    Ok(out)
}

/// How many of a class's `members` images validate under `plan` (not `FromManifest`).
fn validation_count(plan: SplitPlan, members: usize, class: &str) -> Result<usize, DataError> {
    let n_val = match plan {
        SplitPlan::Fraction(f) if !(0.0..1.0).contains(&f) => {
            return Err(DataError::Split(format!(
                "--val-split {f} must be in [0, 1)"
            )));
        }
        SplitPlan::Fraction(f) => (f * members as f64).round() as usize,
        SplitPlan::PerClass(k) => k,
        SplitPlan::TrainPerClass(k) if k == 0 || k >= members => {
            return Err(DataError::Split(format!(
                "class `{class}` has {members} images: --train-per-class {k} must be between 1 and {} to leave images for validation",
                members.saturating_sub(1)
            )));
        }
        SplitPlan::TrainPerClass(k) => members - k,
        SplitPlan::FromManifest => 0,
    };
    if n_val >= members {
        return Err(DataError::Split(format!(
            "class `{class}` has {members} images: none would be left for training after taking {n_val} for validation"
        )));
    }
    Ok(n_val)
}

/// Warns when one class has more than [`IMBALANCE_RATIO`] times the images of another;
/// `counts` are per class, of the images that will really be used (readable ones).
pub fn imbalance_warning(classes: &[String], counts: &[usize]) -> Option<String> {
    let min_c = (0..counts.len()).min_by_key(|&c| counts[c])?;
    let max_c = (0..counts.len()).max_by_key(|&c| counts[c])?;
    (counts[max_c] as f64 > IMBALANCE_RATIO * counts[min_c] as f64).then(|| {
        format!(
            "classes are imbalanced: `{}` has {} readable images, `{}` only {}; accuracy will favour the larger classes",
            classes[max_c], counts[max_c], classes[min_c], counts[min_c]
        )
    })
}

/// The same file content in both train and validation inflates validation accuracy.
fn leak_warning(dataset: &Dataset, splits: &Splits) -> Option<String> {
    let hash = |i: usize| dataset.samples[i].image.content_hash().ok();
    let train: HashMap<String, usize> = splits
        .train
        .iter()
        .filter_map(|&i| hash(i).map(|h| (h, i)))
        .collect();
    let leaks: Vec<String> = splits
        .val
        .iter()
        .filter_map(|&i| {
            let h = hash(i)?;
            train.get(&h).map(|&t| {
                format!(
                    "{} = {}",
                    dataset.samples[i].image.name(),
                    dataset.samples[t].image.name()
                )
            })
        })
        .collect();
    if leaks.is_empty() {
        return None;
    }
    Some(format!(
        "{} validation images also appear (same content) in training, e.g. {}",
        leaks.len(),
        leaks.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
    ))
}
