//! A split's inputs as the loop reads them: preprocessed images (held or streamed), or the
//! frozen prefix's cached features; a batch of either becomes logits.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use zoo_data::{Augment, Tensors};
use zoo_net::{Activation, FeatureCut, Network};

use crate::feature_cache::FeatureCache;

/// Inputs of one split: either raw images or cached features of the frozen prefix.
pub struct Inputs {
    pub tensors: Tensors,
    /// Per-image features at the cut.
    pub features: Option<FeatureCache>,
}

impl Inputs {
    pub(crate) fn len(&self) -> usize {
        self.tensors.len()
    }

    pub(crate) fn batch<B: Backend>(
        &self,
        net: &Network<B>,
        cut: Option<&FeatureCut>,
        picked: &[usize],
        augment: Option<(Augment, u64, usize)>,
        device: &B::Device,
    ) -> anyhow::Result<Tensor<B, 2>> {
        let logits = net.logits_value().to_string();
        match (&self.features, cut) {
            (Some(features), Some(cut)) => {
                let mut full = vec![picked.len()];
                full.extend_from_slice(features.dims());
                let act = Activation::from_vec(features.gather(picked)?, &full, device);
                Ok(net.forward_from(cut, act, &logits))
            }
            _ => {
                let batch = self.tensors.gather(picked, augment)?;
                self.forward_pixels(net, batch, device)
            }
        }
    }

    /// The logits of images already read (`N*C*H*W` values).
    pub(crate) fn forward_pixels<B: Backend>(
        &self,
        net: &Network<B>,
        pixels: Vec<f32>,
        device: &B::Device,
    ) -> anyhow::Result<Tensor<B, 2>> {
        let [c, h, w] = self.tensors.chw;
        let n = pixels.len() / (c * h * w).max(1);
        let x = Tensor::<B, 4>::from_data(TensorData::new(pixels, [n, c, h, w]), device);
        Ok(net.forward_logits(x)?)
    }
}
