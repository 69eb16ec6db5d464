use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with momentum (MATLAB's `sgdm`, the PyTorch finetuning tutorial's choice).
    Sgdm,
    Adam,
}

/// What training minimises (`--loss`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// Mean negative log-likelihood of the softmax (the default everywhere).
    #[default]
    CrossEntropy,
    /// Half the squared error between the softmax and the one-hot target (the lecture's
    /// quadratic cost; its gradient vanishes when the softmax saturates on a wrong class).
    Quadratic,
}

impl OptimizerKind {
    /// The default body learning rate and head factor of each optimizer, chosen by measured
    /// transfer runs (README, "Optimizer defaults"): Adam's steps are normalised, so SGD's
    /// rates make it overshoot.
    pub fn default_lr(self) -> (f64, f64) {
        match self {
            OptimizerKind::Sgdm => (1e-3, 10.0),
            OptimizerKind::Adam => (3e-4, 10.0),
        }
    }
}

/// Every finetuning option; written to `config.json` as given.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinetuneOptions {
    pub data: PathBuf,
    pub classes: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// The new head learns this many times faster (MATLAB's WeightLearnRateFactor).
    pub head_lr_factor: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub optimizer: OptimizerKind,
    #[serde(default)]
    pub loss: LossKind,
    /// Explicit layers to freeze (replaces the card's plan).
    pub freeze: Option<Vec<String>>,
    /// Freeze every layer up to and including this one.
    pub freeze_until: Option<String>,
    pub unfreeze_all: bool,
    /// Keep only these classes of the data, in this order (`zoo train linear2d --digits 1,5`).
    #[serde(default)]
    pub keep_classes: Option<Vec<String>>,
    /// A separate validation set (class folders, CSV, IDX) instead of a split of `data`.
    #[serde(default)]
    pub val_data: Option<PathBuf>,
    pub val_split: Option<f64>,
    pub val_per_class: Option<usize>,
    /// Train on this many images per class; the rest validate.
    pub train_per_class: Option<usize>,
    /// Validate every this many iterations (default: once per epoch).
    pub val_every: Option<usize>,
    /// Stop after this many validations without a better accuracy.
    pub patience: Option<usize>,
    pub seed: u64,
    pub augment: bool,
    pub feature_cache: bool,
    pub device: crate::device::DeviceChoice,
    pub out: Option<PathBuf>,
}

impl FinetuneOptions {
    pub fn new(data: PathBuf, classes: usize) -> Self {
        Self {
            data,
            classes,
            epochs: 10,
            batch_size: 32,
            lr: 1e-3,
            head_lr_factor: 10.0,
            momentum: 0.9,
            weight_decay: 1e-4,
            optimizer: OptimizerKind::Sgdm,
            loss: LossKind::CrossEntropy,
            freeze: None,
            freeze_until: None,
            unfreeze_all: false,
            keep_classes: None,
            val_data: None,
            val_split: None,
            val_per_class: None,
            train_per_class: None,
            val_every: None,
            patience: None,
            seed: 0,
            augment: false,
            feature_cache: true,
            device: crate::device::DeviceChoice::Auto,
            out: None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.epochs == 0 || self.batch_size == 0 {
            return Err("--epochs and --batch-size must be at least 1".into());
        }
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.lr) || !positive(self.head_lr_factor) {
            return Err("--lr and --head-lr-factor must be positive".into());
        }
        if !(0.0..1.0).contains(&self.momentum) || self.weight_decay < 0.0 {
            return Err("--momentum must be in [0, 1) and --weight-decay non-negative".into());
        }
        let freezes = [
            self.freeze.is_some(),
            self.freeze_until.is_some(),
            self.unfreeze_all,
        ];
        if freezes.iter().filter(|&&b| b).count() > 1 {
            return Err("use only one of --freeze, --freeze-until, --unfreeze-all".into());
        }
        let splits = [
            self.val_data.is_some(),
            self.val_split.is_some(),
            self.val_per_class.is_some(),
            self.train_per_class.is_some(),
        ];
        if splits.iter().filter(|&&b| b).count() > 1 {
            return Err(
                "use only one of --val-data, --val-split, --val-per-class, --train-per-class"
                    .into(),
            );
        }
        Ok(())
    }
}
