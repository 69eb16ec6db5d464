use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with momentum (MATLAB's `sgdm`, the PyTorch finetuning tutorial's choice).
    #[default]
    Sgdm,
    /// Adam: per-parameter steps from running moments of the gradient.
    Adam,
}

/// What training minimises (`--loss`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// Mean negative log-likelihood of the softmax (the default everywhere).
    #[default]
    CrossEntropy,
    /// Half the squared error between the softmax and the one-hot target (the lecture's
    /// quadratic cost; its gradient vanishes when the softmax saturates on a wrong class).
    Quadratic,
}

/// Where training starts: a pretrained body to keep close to, or nothing learned yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// `zoo finetune`: pretrained layers move slowly, the new head faster.
    Pretrained,
    /// `zoo train`: every layer is new, so one rate for all, and a higher one.
    Scratch,
}

impl OptimizerKind {
    /// The default body learning rate and head factor of each optimizer, chosen by measured
    /// runs (README, "Optimizer defaults"): Adam's steps are normalised, so SGD's rates make it
    /// overshoot a pretrained body. From scratch no head is new: a head factor above 1 would
    /// only train the last layer faster than the rest (the MLP reached 93.0 % with it, 95.9 %
    /// with one rate of 0.03 for all layers).
    pub fn default_lr(self, start: Start) -> (f64, f64) {
        match (self, start) {
            (OptimizerKind::Sgdm, Start::Pretrained) => (1e-3, 10.0),
            (OptimizerKind::Adam, Start::Pretrained) => (3e-4, 10.0),
            (OptimizerKind::Sgdm, Start::Scratch) => (0.03, 1.0),
            (OptimizerKind::Adam, Start::Scratch) => (1e-3, 1.0),
        }
    }
}

/// Which layers train. One choice, so that two cannot be asked for at once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "FreezeFields", into = "FreezeFields")]
pub enum FreezeChoice {
    /// The card's plan (or the file's metadata): the layers before the head freeze.
    #[default]
    Card,
    /// Exactly these layers (`--freeze`; replaces the card's plan).
    Layers(Vec<String>),
    /// Every layer up to and including this one (`--freeze-until`).
    Until(String),
    /// Every layer trains (`--unfreeze-all`).
    Nothing,
}

/// How `config.json` spells a [`FreezeChoice`] (the flags' names; older runs wrote these).
#[derive(Default, Serialize, Deserialize)]
struct FreezeFields {
    freeze: Option<Vec<String>>,
    freeze_until: Option<String>,
    #[serde(default)]
    unfreeze_all: bool,
}

impl From<FreezeFields> for FreezeChoice {
    fn from(f: FreezeFields) -> Self {
        match (f.unfreeze_all, f.freeze, f.freeze_until) {
            (true, _, _) => FreezeChoice::Nothing,
            (_, Some(layers), _) => FreezeChoice::Layers(layers),
            (_, None, Some(until)) => FreezeChoice::Until(until),
            (false, None, None) => FreezeChoice::Card,
        }
    }
}

impl From<FreezeChoice> for FreezeFields {
    fn from(c: FreezeChoice) -> Self {
        let mut f = FreezeFields::default();
        match c {
            FreezeChoice::Card => {}
            FreezeChoice::Layers(layers) => f.freeze = Some(layers),
            FreezeChoice::Until(until) => f.freeze_until = Some(until),
            FreezeChoice::Nothing => f.unfreeze_all = true,
        }
        f
    }
}

/// Which images validate. One choice, so that two cannot be asked for at once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "SplitFields", into = "SplitFields")]
pub enum SplitChoice {
    /// A fifth of each class (or a CSV manifest's split column).
    #[default]
    Default,
    /// This fraction of each class (`--val-split`).
    Fraction(f64),
    /// This many images of each class (`--val-per-class`).
    ValPerClass(usize),
    /// This many images of each class train; the rest validate (`--train-per-class`).
    TrainPerClass(usize),
    /// A separate set: class folders, CSV or IDX (`--val-data`).
    Separate(PathBuf),
}

/// How `config.json` spells a [`SplitChoice`] (the flags' names; older runs wrote these).
#[derive(Default, Serialize, Deserialize)]
struct SplitFields {
    #[serde(default)]
    val_data: Option<PathBuf>,
    val_split: Option<f64>,
    val_per_class: Option<usize>,
    train_per_class: Option<usize>,
}

impl From<SplitFields> for SplitChoice {
    fn from(f: SplitFields) -> Self {
        match f {
            SplitFields {
                val_data: Some(p), ..
            } => SplitChoice::Separate(p),
            SplitFields {
                val_split: Some(v), ..
            } => SplitChoice::Fraction(v),
            SplitFields {
                val_per_class: Some(n),
                ..
            } => SplitChoice::ValPerClass(n),
            SplitFields {
                train_per_class: Some(n),
                ..
            } => SplitChoice::TrainPerClass(n),
            _ => SplitChoice::Default,
        }
    }
}

impl From<SplitChoice> for SplitFields {
    fn from(c: SplitChoice) -> Self {
        let mut f = SplitFields::default();
        match c {
            SplitChoice::Default => {}
            SplitChoice::Fraction(v) => f.val_split = Some(v),
            SplitChoice::ValPerClass(n) => f.val_per_class = Some(n),
            SplitChoice::TrainPerClass(n) => f.train_per_class = Some(n),
            SplitChoice::Separate(p) => f.val_data = Some(p),
        }
        f
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
    /// Which layers train (written as `freeze`, `freeze_until`, `unfreeze_all`).
    #[serde(flatten)]
    pub freeze: FreezeChoice,
    /// Keep only these classes of the data, in this order (`zoo train linear2d --digits 1,5`).
    #[serde(default)]
    pub keep_classes: Option<Vec<String>>,
    /// Which images validate (written as `val_data`, `val_split`, `val_per_class`,
    /// `train_per_class`).
    #[serde(flatten)]
    pub split: SplitChoice,
    /// Validate every this many iterations (default: once per epoch).
    pub val_every: Option<usize>,
    /// Stop after this many validations without a better accuracy.
    pub patience: Option<usize>,
    pub seed: u64,
    pub augment: bool,
    pub feature_cache: bool,
    pub device: crate::device::DeviceChoice,
    pub out: Option<PathBuf>,
    /// Bytes of decoded images and cached features the run may hold in memory
    /// (`--memory-budget`; more streams from disk or spills to `RUN/cache/`); `None`: half the
    /// memory available when the run starts ([`crate::memory`]).
    #[serde(default)]
    pub memory_budget: Option<u64>,
    /// The rate over the run (`--schedule`), after `warmup` steps rising to it.
    #[serde(default)]
    pub schedule: crate::schedule::Schedule,
    #[serde(default)]
    pub warmup: Option<crate::schedule::Warmup>,
    /// `--lr auto`: the run first sweeps the rate ([`crate::lr_find`]) and trains at its
    /// suggestion (then recorded as `lr`).
    #[serde(default)]
    pub lr_auto: bool,
    /// Label smoothing of the cross-entropy (`--label-smoothing`, 0 = none; timm uses 0.1).
    #[serde(default)]
    pub label_smoothing: f64,
    /// Mixup's and cutmix's Beta parameter (`--mixup`, `--cutmix`; 0 = off): see
    /// [`crate::mixing`]. Either turns the feature cache off, as `--augment` does.
    #[serde(default)]
    pub mixup: f64,
    #[serde(default)]
    pub cutmix: f64,
    /// `--fine-tune E1` (fastai's `fine_tune`): the first E1 epochs train the new head alone
    /// with the body frozen; then the body unfreezes (all of it, or what `--freeze`/
    /// `--freeze-until` leave) at discriminative rates ([`Self::lr_spread`]) and the schedule
    /// starts again. The optimizer state starts afresh at the switch, as fastai's `unfreeze`.
    #[serde(default)]
    pub fine_tune: Option<usize>,
    /// `--lr-spread S`: the trainable body's earlier layers learn at `--lr / S`, its later ones
    /// at `--lr` (the head at `--lr * --head-lr-factor`). Default: 10 with `--fine-tune`, else 1.
    #[serde(default)]
    pub lr_spread: Option<f64>,
    /// `--ema D`: validate, keep and export an exponential moving average of the trainable
    /// weights, `e = D e + (1 - D) w` after each step ([`crate::ema`]).
    #[serde(default)]
    pub ema: Option<f64>,
    /// The recipe that fills the options a user left out when the run starts
    /// ([`crate::recipe`]; `zoo finetune` passes `auto`): after it ran, the one it chose.
    /// `None`: the options are final as they are (the library's default).
    #[serde(default)]
    pub recipe: Option<crate::recipe::Recipe>,
    /// The options the user gave ([`crate::recipe::RECIPE_OPTIONS`] names), which the recipe
    /// leaves alone.
    #[serde(default)]
    pub given: Vec<String>,
}

impl FinetuneOptions {
    /// Finetuning's defaults (`zoo finetune`).
    pub fn new(data: PathBuf, classes: usize) -> Self {
        Self::starting(data, classes, Start::Pretrained)
    }

    /// The defaults for `start`: the optimizer's rates for it ([`OptimizerKind::default_lr`]).
    pub fn starting(data: PathBuf, classes: usize, start: Start) -> Self {
        let optimizer = OptimizerKind::Sgdm;
        let (lr, head_lr_factor) = optimizer.default_lr(start);
        Self {
            data,
            classes,
            epochs: 10,
            batch_size: 32,
            lr,
            head_lr_factor,
            momentum: 0.9,
            weight_decay: 1e-4,
            optimizer,
            loss: LossKind::CrossEntropy,
            freeze: FreezeChoice::Card,
            keep_classes: None,
            split: SplitChoice::Default,
            val_every: None,
            patience: None,
            seed: 0,
            augment: false,
            feature_cache: true,
            device: crate::device::DeviceChoice::Auto,
            out: None,
            memory_budget: None,
            schedule: crate::schedule::Schedule::Constant,
            warmup: None,
            lr_auto: false,
            label_smoothing: 0.0,
            mixup: 0.0,
            cutmix: 0.0,
            fine_tune: None,
            lr_spread: None,
            ema: None,
            recipe: None,
            given: Vec::new(),
        }
    }

    /// The body's rate spread ([`Self::lr_spread`]): given, or 10 with `--fine-tune` (the head's
    /// default factor of 10 above that makes fastai's 100 from the first layer to the head).
    pub fn lr_spread(&self) -> f64 {
        self.lr_spread
            .unwrap_or(if self.fine_tune.is_some() { 10.0 } else { 1.0 })
    }

    /// Whether training images change from step to step (`--augment`, `--mixup`, `--cutmix`):
    /// then no feature cache, since the frozen layers see new inputs every time.
    pub fn varies_inputs(&self) -> bool {
        self.augment || self.mixes()
    }

    /// Whether batches are mixed (`--mixup`, `--cutmix`).
    pub fn mixes(&self) -> bool {
        self.mixup > 0.0 || self.cutmix > 0.0
    }

    /// The memory budget in bytes: the one given, else the default for this machine now.
    pub fn memory_budget(&self) -> u64 {
        self.memory_budget
            .unwrap_or_else(crate::memory::default_budget)
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
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err("--label-smoothing must be in [0, 1) (0.1 is usual)".into());
        }
        let alpha = |a: f64| a.is_finite() && a >= 0.0;
        if !alpha(self.mixup) || !alpha(self.cutmix) {
            return Err("--mixup and --cutmix take a Beta parameter >= 0 (0.2-0.4 for mixup, 1 for cutmix are usual)".into());
        }
        if let Some(head_epochs) = self.fine_tune {
            if head_epochs == 0 || head_epochs >= self.epochs {
                return Err(format!(
                    "--fine-tune {head_epochs}: the head-only epochs must be at least 1 and fewer than --epochs ({})",
                    self.epochs
                ));
            }
            if self.freeze == FreezeChoice::Nothing {
                return Err("--fine-tune unfreezes the whole body after its head-only epochs; leave out --unfreeze-all (or use --freeze-until to keep early layers frozen)".into());
            }
        }
        if self.ema.is_some_and(|d| !(0.0..1.0).contains(&d)) {
            return Err(
                "--ema takes a decay in [0, 1) (0.99 for a few hundred steps, 0.999 for thousands)"
                    .into(),
            );
        }
        if self.lr_spread.is_some_and(|s| !(s.is_finite() && s >= 1.0)) {
            return Err("--lr-spread must be at least 1 (1: one rate for the whole body)".into());
        }
        if self.label_smoothing > 0.0 && self.loss != LossKind::CrossEntropy {
            return Err(
                "--label-smoothing smooths the cross-entropy; leave it out with --loss quadratic"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_label_smoothing_and_mixing_parameters_are_refused() {
        let mut o = FinetuneOptions::new(PathBuf::from("data"), 3);
        assert_eq!(o.validate(), Ok(()));
        for bad in [-0.1, 1.0, f64::NAN] {
            o.label_smoothing = bad;
            assert!(o.validate().unwrap_err().contains("[0, 1)"), "{bad}");
        }
        o.label_smoothing = 0.1;
        assert_eq!(o.validate(), Ok(()));
        o.loss = LossKind::Quadratic;
        assert!(o.validate().unwrap_err().contains("--loss quadratic"));
        let mut o = FinetuneOptions::new(PathBuf::from("data"), 3);
        assert!(!o.varies_inputs());
        o.cutmix = 1.0;
        assert!(o.varies_inputs() && o.validate().is_ok());
        o.mixup = -0.2;
        assert!(o.validate().unwrap_err().contains("Beta parameter"));
    }

    #[test]
    fn fine_tune_needs_fewer_head_epochs_than_the_run_and_spreads_rates_by_default() {
        let mut o = FinetuneOptions::new(PathBuf::from("data"), 3);
        assert_eq!(o.lr_spread(), 1.0);
        o.fine_tune = Some(2);
        assert_eq!((o.validate(), o.lr_spread()), (Ok(()), 10.0));
        for bad in [0, 10, 11] {
            o.fine_tune = Some(bad);
            assert!(
                o.validate().unwrap_err().contains("fewer than --epochs"),
                "{bad}"
            );
        }
        o.fine_tune = Some(1);
        o.freeze = FreezeChoice::Nothing;
        assert!(o.validate().unwrap_err().contains("--unfreeze-all"));
        o.freeze = FreezeChoice::Until("conv1".into());
        o.lr_spread = Some(0.5);
        assert!(o.validate().unwrap_err().contains("--lr-spread"));
        o.lr_spread = Some(3.0);
        assert_eq!((o.validate(), o.lr_spread()), (Ok(()), 3.0));
    }
}
