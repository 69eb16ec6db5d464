//! The options `zoo finetune` and `zoo train` share, and `--resume`. Unset options take
//! `FinetuneOptions`' defaults (one place for each default value).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use zoo_app::train::{
    FinetuneOptions, FreezeChoice, LossKind, OptimizerKind, Recipe, Schedule, SplitChoice, Start,
    Warmup,
};

use crate::ui::run_training;

/// `--lr`: a rate, or `auto` (found by a sweep before training).
#[derive(Clone, Copy, Debug)]
enum LrArg {
    Rate(f64),
    Auto,
}

fn parse_lr(text: &str) -> Result<LrArg, String> {
    match text {
        "auto" => Ok(LrArg::Auto),
        _ => text
            .parse()
            .map(LrArg::Rate)
            .map_err(|_| format!("`{text}` is not a learning rate (a number, or auto)")),
    }
}

#[derive(Args)]
pub struct TrainingArgs {
    /// Training images: a folder of class folders, a CSV manifest, or MNIST IDX.
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Continue an interrupted or killed run from its last checkpoint; the model, data and
    /// every option are the run's own (config.json), so no other option goes with it.
    #[arg(long, value_name = "RUN", conflicts_with = "data")]
    pub resume: Option<PathBuf>,
    /// Number of classes; must match the data (default: the classes found in the data).
    #[arg(long, conflicts_with = "resume")]
    classes: Option<usize>,
    /// Passes over the training images [default: 10].
    #[arg(long, conflicts_with = "resume")]
    epochs: Option<usize>,
    /// Images per step [default: 32].
    #[arg(long, conflicts_with = "resume")]
    batch_size: Option<usize>,
    /// Learning rate of the body (the new head uses lr x head-lr-factor); finetune: 1e-3 for
    /// sgdm, 3e-4 for adam; train (from scratch): 0.03 for sgdm, 1e-3 for adam. `auto`: sweep
    /// it first (as `zoo lr-find`) and train at the suggestion (the valley rule).
    #[arg(long, value_parser = parse_lr, conflicts_with = "resume")]
    lr: Option<LrArg>,
    /// How many times faster the new head learns (default 10 for finetune, 1 for train).
    #[arg(long, conflicts_with = "resume")]
    head_lr_factor: Option<f64>,
    /// Momentum of sgdm [default: 0.9].
    #[arg(long, conflicts_with = "resume")]
    momentum: Option<f64>,
    /// L2 weight decay [default: 1e-4].
    #[arg(long, conflicts_with = "resume")]
    weight_decay: Option<f64>,
    /// The learning rate over the run: constant, step (x0.1 at 1/2 and 3/4 of the run),
    /// cosine (decay to zero), one-cycle (fastai's: up over the warm-up, then down)
    /// [default: constant].
    #[arg(long, value_enum, conflicts_with = "resume")]
    schedule: Option<Schedule>,
    /// Steps over which the rate rises linearly to --lr first: iterations (200) or epochs (2e)
    /// [default: none; one-cycle: the first quarter of the run].
    #[arg(long, value_parser = Warmup::parse, conflicts_with = "resume")]
    warmup: Option<Warmup>,
    /// Label smoothing of the cross-entropy: the target keeps 1 - E on the true class and
    /// spreads E over all classes (0.1 is usual; helps when labels are noisy or the model
    /// grows overconfident) [default: 0].
    #[arg(long, value_name = "E", conflicts_with = "resume")]
    label_smoothing: Option<f64>,
    /// Mixup: each training image blended with another of its batch, the two labels weighted
    /// alike; A is the Beta parameter of the weight (0.2-0.4 usual). Turns the feature cache
    /// off [default: 0, off].
    #[arg(long, value_name = "A", conflicts_with = "resume")]
    mixup: Option<f64>,
    /// CutMix: a box of another image of the batch pasted into each training image, the labels
    /// weighted by area; A is the Beta parameter (1 usual). With --mixup, each step picks one
    /// at even odds. Turns the feature cache off [default: 0, off].
    #[arg(long, value_name = "A", conflicts_with = "resume")]
    cutmix: Option<f64>,
    /// Two stages (fastai's fine_tune): the new head alone for E1 epochs (body frozen), then
    /// the body unfreezes (all of it, or what --freeze/--freeze-until leave) at rates spread
    /// by --lr-spread, the schedule starting again; E1 counts within --epochs.
    #[arg(long, value_name = "E1", conflicts_with_all = ["resume", "unfreeze_all"])]
    fine_tune: Option<usize>,
    /// Discriminative rates: the trainable body's earlier half learns at --lr / S, its later
    /// half at --lr (the head at --lr x --head-lr-factor) [default: 10 with --fine-tune, else 1].
    #[arg(long, value_name = "S", conflicts_with = "resume")]
    lr_spread: Option<f64>,
    /// Validate, keep (best.onnx) and export an exponential moving average of the weights,
    /// e = D e + (1 - D) w after each step (0.99 for a few hundred steps; last.onnx keeps the
    /// weights as trained) [default: off].
    #[arg(long, value_name = "D", conflicts_with = "resume")]
    ema: Option<f64>,
    /// How the options left out are filled: auto (by the run's size: two-stage for up to
    /// 10,000 training images on a model of up to 30 M parameters, else head-only), two-stage
    /// (20 epochs: the head alone for 2, then the body at a third of the default rate, one-cycle
    /// schedules, augmented), head-only (10 epochs of the head at the default rates, feature cache).
    /// Every option given keeps its value [default: auto; zoo train: none].
    #[arg(long, value_enum, conflicts_with = "resume")]
    recipe: Option<Recipe>,
    /// The optimizer [default: sgdm].
    #[arg(long, value_enum, conflicts_with = "resume")]
    optimizer: Option<OptimizerKind>,
    /// cross-entropy, or quadratic (half the squared error of the softmax against the one-hot
    /// target; the validation loss stays cross-entropy) [default: cross-entropy].
    #[arg(long, value_enum, conflicts_with = "resume")]
    loss: Option<LossKind>,
    /// Layers to freeze, comma separated (replaces the card's plan).
    #[arg(long, value_delimiter = ',', conflicts_with = "resume")]
    freeze: Option<Vec<String>>,
    /// Freeze every layer up to and including this one.
    #[arg(long, conflicts_with = "resume")]
    freeze_until: Option<String>,
    /// Train every layer.
    #[arg(long, conflicts_with = "resume")]
    unfreeze_all: bool,
    /// Validate on this set (class folders, CSV manifest, or MNIST IDX) instead of a split of
    /// --data; its class names must be those of --data.
    #[arg(long, value_name = "DIR|CSV|IDX", conflicts_with = "resume")]
    val_data: Option<PathBuf>,
    /// Fraction of each class held out for validation (default 0.2, or the manifest's split column).
    #[arg(long, conflicts_with = "resume")]
    val_split: Option<f64>,
    /// Images of each class held out for validation.
    #[arg(long, conflicts_with = "resume")]
    val_per_class: Option<usize>,
    /// Images of each class to train on; the rest validate.
    #[arg(long, conflicts_with = "resume")]
    train_per_class: Option<usize>,
    /// Validate every this many iterations (default: each epoch; at least 1).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), conflicts_with = "resume")]
    val_every: Option<usize>,
    /// Stop after this many validations without improvement.
    #[arg(long, conflicts_with = "resume")]
    patience: Option<usize>,
    /// Seed of the split, the shuffles, augmentation and the new head [default: 0].
    #[arg(long, conflicts_with = "resume")]
    seed: Option<u64>,
    /// auto (CUDA when usable, else CPU), cpu or cuda.
    #[arg(long, conflicts_with = "resume")]
    device: Option<zoo_app::train::DeviceChoice>,
    /// Random flips and shifts (disables the frozen-feature cache; the two-stage recipe's
    /// default).
    #[arg(long, conflicts_with = "resume")]
    augment: bool,
    /// No augmentation, whatever the recipe.
    #[arg(long, conflicts_with_all = ["resume", "augment"])]
    no_augment: bool,
    /// Run the frozen layers on every step instead of once per image.
    #[arg(long, conflicts_with = "resume")]
    no_feature_cache: bool,
    /// Memory the run's data may use, e.g. 400M or 2G (default: half the available memory).
    /// Images that do not fit half of it are streamed from disk, cached features that do not
    /// fit the other half spill to RUN/cache/. (A model too large for this machine is refused.)
    #[arg(long, value_name = "SIZE", value_parser = zoo_app::train::memory::parse_size, conflicts_with = "resume")]
    memory_budget: Option<u64>,
    /// Run directory (default runs/<model>-<timestamp>, with runs/latest pointing at it).
    #[arg(long, conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

impl TrainingArgs {
    /// The options, over `FinetuneOptions`' defaults for `start`; `keep_classes` for `zoo
    /// train --digits`.
    pub fn options(
        self,
        start: Start,
        keep_classes: Option<Vec<String>>,
    ) -> anyhow::Result<FinetuneOptions> {
        let data = self
            .data
            .clone()
            .expect("clap requires --data without --resume");
        let classes = match (self.classes, &keep_classes) {
            (Some(n), _) => n,
            (None, Some(keep)) => keep.len(),
            (None, None) => zoo_app::train::class_count(&data)?,
        };
        let mut o = FinetuneOptions::starting(data, classes, start);
        set(&mut o.epochs, self.epochs);
        set(&mut o.batch_size, self.batch_size);
        set(&mut o.optimizer, self.optimizer);
        set(&mut o.loss, self.loss);
        // An explicit --lr or --head-lr-factor wins over the optimizer's defaults.
        let (lr, head_lr_factor) = o.optimizer.default_lr(start);
        (o.lr, o.lr_auto) = match self.lr {
            Some(LrArg::Rate(rate)) => (rate, false),
            Some(LrArg::Auto) => (lr, true),
            None => (lr, false),
        };
        o.head_lr_factor = self.head_lr_factor.unwrap_or(head_lr_factor);
        set(&mut o.label_smoothing, self.label_smoothing);
        set(&mut o.mixup, self.mixup);
        set(&mut o.cutmix, self.cutmix);
        set(&mut o.schedule, self.schedule);
        o.warmup = self.warmup;
        o.fine_tune = self.fine_tune;
        o.lr_spread = self.lr_spread;
        o.ema = self.ema;
        set(&mut o.momentum, self.momentum);
        set(&mut o.weight_decay, self.weight_decay);
        set(&mut o.seed, self.seed);
        set(&mut o.device, self.device);
        o.freeze = self.freeze_choice()?;
        o.split = self.split_choice()?;
        o.keep_classes = keep_classes;
        o.val_every = self.val_every;
        o.patience = self.patience;
        o.augment = self.augment && !self.no_augment;
        o.recipe = match (start, self.recipe) {
            (Start::Pretrained, recipe) => Some(recipe.unwrap_or(Recipe::Auto)),
            (Start::Scratch, None) => None,
            (Start::Scratch, Some(_)) => anyhow::bail!(
                "--recipe fills a finetune's options; zoo train builds every layer anew and takes its options as given"
            ),
        };
        o.given = self.given();
        o.feature_cache = !self.no_feature_cache;
        o.out = self.out;
        o.memory_budget = self.memory_budget;
        Ok(o)
    }

    /// The options given that a recipe would set ([`zoo_app::train::RECIPE_OPTIONS`]).
    fn given(&self) -> Vec<String> {
        let given = [
            ("epochs", self.epochs.is_some()),
            ("lr", self.lr.is_some()),
            ("head_lr_factor", self.head_lr_factor.is_some()),
            ("fine_tune", self.fine_tune.is_some()),
            ("schedule", self.schedule.is_some()),
            ("augment", self.augment || self.no_augment),
        ];
        (given.into_iter())
            .filter(|(_, given)| *given)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    fn freeze_choice(&self) -> anyhow::Result<FreezeChoice> {
        Ok(
            match (&self.freeze, &self.freeze_until, self.unfreeze_all) {
                (None, None, false) => FreezeChoice::Card,
                (Some(layers), None, false) => FreezeChoice::Layers(layers.clone()),
                (None, Some(until), false) => FreezeChoice::Until(until.clone()),
                (None, None, true) => FreezeChoice::Nothing,
                _ => anyhow::bail!("use only one of --freeze, --freeze-until, --unfreeze-all"),
            },
        )
    }

    fn split_choice(&self) -> anyhow::Result<SplitChoice> {
        let given = [
            self.val_data.clone().map(SplitChoice::Separate),
            self.val_split.map(SplitChoice::Fraction),
            self.val_per_class.map(SplitChoice::ValPerClass),
            self.train_per_class.map(SplitChoice::TrainPerClass),
        ];
        let mut given = given.into_iter().flatten();
        match (given.next(), given.next()) {
            (None, _) => Ok(SplitChoice::Default),
            (Some(one), None) => Ok(one),
            _ => anyhow::bail!(
                "use only one of --val-data, --val-split, --val-per-class, --train-per-class"
            ),
        }
    }
}

/// A given value over the default.
fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

/// `--resume RUN`: the run's own model, data and options.
pub fn resume(run: &Path, json: bool) -> anyhow::Result<ExitCode> {
    run_training(json, |stop, reporter| {
        zoo_app::train::resume(run, Some(stop), reporter)
    })
}
