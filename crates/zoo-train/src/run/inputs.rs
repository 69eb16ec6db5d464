//! The inputs phase: with the frozen-feature cache, the frozen prefix runs once per image and
//! training runs on its output. The cache stays in memory while it fits half the memory budget;
//! past that it spills to `RUN/cache/` (see [`crate::feature_cache`]), and a resumed run
//! reuses the files it finds whole.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use zoo_net::{FeatureCut, Network};

use super::Job;
use crate::checkpoint::{fingerprint, Binding};
use crate::feature_cache::{FeatureCache, Placement};
use crate::memory::human;
use crate::options::FinetuneOptions;
use crate::trainer::Inputs;

/// The run directory's folder of spilled feature caches (removed when the run finishes).
pub const CACHE_DIR: &str = "cache";

/// Where the cache goes: rows that fit half the budget stay in memory; when not all of them do,
/// every row is also written to `dir`.
struct CachePlan<'a> {
    cut: &'a FeatureCut,
    dims: Vec<usize>,
    fits_rows: usize,
    spill_dir: Option<PathBuf>,
    binding: &'a Binding,
}

/// One split's images, and how many of their rows stay in memory.
struct CacheJob<'a> {
    split: &'a str,
    tensors: &'a zoo_data::Tensors,
    held_rows: usize,
}

impl Job<'_> {
    /// The frozen-feature cache: runs the frozen prefix once and trains the tail on its output.
    /// Returns the cut, both splits' inputs and the seconds this took.
    #[allow(clippy::type_complexity)]
    pub(super) fn prepare_inputs<B: AutodiffBackend>(
        &self,
        net: &Network<B>,
        options: &FinetuneOptions,
        (train, val): (zoo_data::Tensors, zoo_data::Tensors),
        (run_dir, binding): (&Path, &Binding),
        device: &B::Device,
    ) -> anyhow::Result<(Option<FeatureCut>, Inputs, Inputs, f64)> {
        let cache_started = Instant::now();
        // Two stages need the images again once the body unfreezes: no cache for them.
        let cut =
            if options.feature_cache && !options.varies_inputs() && options.fine_tune.is_none() {
                net.feature_cut()
            } else {
                None
            };
        let Some(cut) = cut else {
            let inputs = |tensors| Inputs {
                tensors,
                features: None,
            };
            return Ok((None, inputs(train), inputs(val), 0.0));
        };
        let plan = self.cache_plan(
            net,
            &cut,
            options,
            train.len() + val.len(),
            (run_dir, binding),
        );
        let inner = net.valid();
        let cache = |job: CacheJob| -> anyhow::Result<FeatureCache> {
            let placement = match self.reuse_or_place(&plan, &job) {
                Ok(found) => return Ok(found),
                Err(placement) => placement,
            };
            let batch = options.batch_size;
            FeatureCache::build(&inner, &cut, job.tensors, batch, device, placement)
        };
        let train_held = train.len().min(plan.fits_rows);
        let tf = cache(CacheJob {
            split: "train",
            tensors: &train,
            held_rows: train_held,
        })?;
        let vf = cache(CacheJob {
            split: "val",
            tensors: &val,
            held_rows: val.len().min(plan.fits_rows - train_held),
        })?;
        self.reporter.info(&format!(
            "feature cache: frozen prefix output at `{}` ({:?} per image) ready in {:.1} s",
            cut.value,
            tf.dims(),
            cache_started.elapsed().as_secs_f64()
        ));
        // The decoded images are not needed once their features are cached.
        let inputs = |mut tensors: zoo_data::Tensors, features| {
            tensors.values = Vec::new();
            Inputs {
                tensors,
                features: Some(features),
            }
        };
        Ok((
            Some(cut),
            inputs(train, tf),
            inputs(val, vf),
            cache_started.elapsed().as_secs_f64(),
        ))
    }

    /// How many rows fit half the budget, and whether all of them must spill (said once).
    fn cache_plan<'a, B: AutodiffBackend>(
        &self,
        net: &Network<B>,
        cut: &'a FeatureCut,
        options: &FinetuneOptions,
        images: usize,
        (run_dir, binding): (&Path, &'a Binding),
    ) -> CachePlan<'a> {
        let dims: Vec<usize> = (net.plan().graph.shapes.of(&cut.value))
            .map(|dims| dims[1..].to_vec())
            .unwrap_or_default();
        let row_bytes = 4 * dims.iter().product::<usize>() as u64;
        let budget = options.memory_budget();
        let fits_rows = (budget / 2)
            .checked_div(row_bytes)
            .map_or(usize::MAX, |rows| rows as usize);
        let spill_dir = (images > fits_rows).then(|| run_dir.join(CACHE_DIR));
        if let Some(dir) = &spill_dir {
            self.reporter.info(&format!(
                "feature cache: {images} images' features at `{}` take {}, over half the memory budget ({}); {fits_rows} of them stay in memory, and every row is kept in {} and read from there",
                cut.value,
                human(row_bytes * images as u64),
                human(budget),
                dir.display()
            ));
        }
        CachePlan {
            cut,
            dims,
            fits_rows,
            spill_dir,
            binding,
        }
    }

    /// A spilled split's cache file when a whole one of these images is there (a resumed
    /// run), else where to build it.
    fn reuse_or_place(&self, plan: &CachePlan, job: &CacheJob) -> Result<FeatureCache, Placement> {
        let Some(dir) = &plan.spill_dir else {
            return Err(Placement::Memory);
        };
        let fingerprint = self.cache_fingerprint(plan, job);
        let path = dir.join(format!("{}.features", job.split));
        let (rows, held_rows) = (job.tensors.len(), job.held_rows);
        match FeatureCache::reuse(&path, &fingerprint, rows, &plan.dims, held_rows) {
            Ok(found) => {
                let said = format!("feature cache: reusing {}", path.display());
                self.reporter.info(&said);
                return Ok(found);
            }
            Err(why) if path.exists() => self.reporter.info(&format!(
                "feature cache {} not reused ({why}); computing it again",
                path.display()
            )),
            Err(_) => {}
        }
        Err(Placement::Spill {
            path,
            fingerprint,
            held_rows,
        })
    }

    /// What a split's cached features are computed from: the run's base model, network and
    /// data, the recipe, the cut (every layer before it is frozen, so at its base weights) and
    /// which images the split holds.
    fn cache_fingerprint(&self, plan: &CachePlan, job: &CacheJob) -> String {
        let recipe = serde_json::to_string(&self.profile.preprocessing).unwrap_or_default();
        let samples: Vec<u8> = (job.tensors.samples.iter())
            .flat_map(|&s| (s as u64).to_le_bytes())
            .collect();
        let b = plan.binding;
        fingerprint([
            b.base_sha256.as_bytes(),
            b.params.as_bytes(),
            b.data.as_bytes(),
            recipe.as_bytes(),
            plan.cut.value.as_bytes(),
            job.split.as_bytes(),
            &samples,
        ])
    }
}
