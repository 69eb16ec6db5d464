//! The inputs phase: with the frozen-feature cache, the frozen prefix runs once per image and
//! training runs on its output.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use zoo_net::{FeatureCut, Network};

use super::Job;
use crate::options::FinetuneOptions;
use crate::trainer::{cache_features, Inputs};

impl Job<'_> {
    /// Whether the cached features of `images` fit half the memory budget; said when not (the
    /// frozen layers then run at every step).
    fn cache_fits<B: AutodiffBackend>(
        &self,
        net: &Network<B>,
        cut: &FeatureCut,
        options: &FinetuneOptions,
        images: usize,
    ) -> bool {
        let per_image: usize = net
            .plan()
            .graph
            .shapes
            .of(&cut.value)
            .map_or(0, |dims| dims.iter().skip(1).product());
        let needed = 4 * (per_image * images) as u64;
        let budget = options.memory_budget();
        if needed <= budget / 2 {
            return true;
        }
        use crate::memory::human;
        self.reporter.info(&format!(
            "feature cache off: {images} images' features at `{}` would take {}, over half the memory budget ({}); the frozen layers run at every step",
            cut.value,
            human(needed),
            human(budget)
        ));
        false
    }

    /// The frozen-feature cache: runs the frozen prefix once and trains the tail on its output.
    /// Returns the cut, both splits' inputs and the seconds this took.
    #[allow(clippy::type_complexity)]
    pub(super) fn prepare_inputs<B: AutodiffBackend>(
        &self,
        net: &Network<B>,
        options: &FinetuneOptions,
        train: zoo_data::Tensors,
        val: zoo_data::Tensors,
        device: &B::Device,
    ) -> anyhow::Result<(Option<FeatureCut>, Inputs, Inputs, f64)> {
        let cache_started = Instant::now();
        let cut = if options.feature_cache && !options.augment {
            net.feature_cut()
        } else {
            None
        };
        let cut = cut.filter(|cut| self.cache_fits(net, cut, options, train.len() + val.len()));
        let Some(cut) = cut else {
            let inputs = |tensors| Inputs {
                tensors,
                features: None,
            };
            return Ok((None, inputs(train), inputs(val), 0.0));
        };
        let inner = net.valid();
        let tf = cache_features(&inner, &cut, &train, options.batch_size, device)?;
        let vf = cache_features(&inner, &cut, &val, options.batch_size, device)?;
        self.reporter.info(&format!(
            "feature cache: frozen prefix run once per image up to `{}` ({:?} per image) in {:.1} s",
            cut.value,
            tf.1,
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
}
