//! The `zoo` command line: parses arguments, calls `zoo-app`, prints reports.
//! Exit status: 0 success, 1 a check failed (e.g. parity beyond tolerance), 2 an error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use zoo_app::{inspect, verify};
use zoo_fetch::{resolve_model, HubCache, ResolvedModel};

#[derive(Parser)]
#[command(
    name = "zoo",
    version,
    about = "Transfer learning for classic ONNX image classifiers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every model card: input, size, source, licence, and whether it is cached.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Download a pretrained model from the Hugging Face Hub, verify it, and check its import.
    Fetch(FetchArgs),
    /// Finetune a pretrained model on your images: freeze early layers, replace the head, train.
    Finetune(FinetuneArgs),
    /// The whole pipeline offline on embedded MNIST defaults: import, freeze, new head,
    /// finetune, export, parity, evaluate.
    Demo {
        /// Where the demo's files go.
        #[arg(long, default_value = "zoo-demo")]
        out: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Train an architecture from scratch (lenet5, mnist-cnn, mlp, linear2d) with the finetune
    /// options.
    Train(TrainArgs),
    /// Write a run's best weights as ONNX (dynamic batch, zoo metadata) and check it against
    /// tract (and ONNX Runtime) on the run's validation images; the receipt is parity.json.
    Export {
        /// Run directory (default runs/latest).
        #[arg(default_value = "runs/latest")]
        run: PathBuf,
        /// Export as ONNX (the only format).
        #[arg(long, required = true)]
        onnx: bool,
        /// Output file (default RUN/model.onnx).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Write this ONNX opset (default: the base model's).
        #[arg(long)]
        opset: Option<i64>,
        /// Reference engines, comma separated: tract, ort.
        #[arg(long, value_delimiter = ',', default_value = "tract,ort")]
        engines: Vec<String>,
        /// Largest accepted max_rel_diff.
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f64,
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a run's report.html (one self-contained page: progress, confusion, mistakes,
    /// filters, freeze audit, parity) from its files.
    Report {
        /// Run directory (default runs/latest).
        #[arg(default_value = "runs/latest")]
        run: PathBuf,
    },
    /// Accuracy (95 % Wilson interval), per-class precision and recall, confusion matrix.
    Evaluate {
        #[command(flatten)]
        model: ModelOpts,
        /// Labelled images: class folders, CSV manifest, or MNIST IDX (default for a run
        /// directory: the run's own validation images).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Where confusion.csv and confusion.png go (default RUN/evaluation or ./evaluation).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        runtime: RuntimeArgs,
        #[arg(long)]
        json: bool,
    },
    /// Labels and probabilities for images (zoo's network by default, with the model's own
    /// preprocessing).
    Predict {
        #[command(flatten)]
        model: ModelOpts,
        /// Image files.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// How many classes to show per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        #[command(flatten)]
        runtime: RuntimeArgs,
        #[arg(long)]
        json: bool,
    },
    /// One row per image of a layer's activations (any layer or node output, e.g. fc7), as
    /// CSV or .npy, computed by zoo's network.
    Features {
        #[command(flatten)]
        model: ModelOpts,
        #[command(flatten)]
        features: FeatureArgs,
        /// A layer name (see `zoo inspect`) or any node output, e.g. fc7 or a Concat's output.
        #[arg(long)]
        layer: String,
        /// Output file: .csv (path,label,f0,...) or .npy (float32 [N, width], with
        /// OUT.rows.csv beside it).
        #[arg(long, short, default_value = "features.csv")]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Pictures of what a network learned: conv filters, one image's feature maps, a dataset's
    /// map at a layer.
    Show {
        #[command(subcommand)]
        command: ShowCommand,
    },
    /// Datasets: health check.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Your own cards: give a local ONNX file a name that every command accepts.
    Card {
        #[command(subcommand)]
        command: CardCommand,
    },
    /// Layers, output shapes, parameter counts, the default freeze plan and op support.
    Inspect {
        #[command(flatten)]
        model: ModelOpts,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check that zoo computes what tract (and ONNX Runtime) compute on the same inputs: the
    /// file's own import, or with --run the run's trained network against the file.
    Verify {
        #[command(flatten)]
        model: ModelOpts,
        /// Folder of images (preprocessed per the card or the file's metadata); random inputs otherwise.
        #[arg(long, conflicts_with = "run")]
        images: Option<PathBuf>,
        /// Compare the file with this run's trained network, on the run's validation images.
        #[arg(long, value_name = "RUN_DIR")]
        run: Option<PathBuf>,
        /// With --run: check on these labelled images (class folders, CSV, IDX) instead.
        #[arg(long, requires = "run")]
        data: Option<PathBuf>,
        /// Where zoo's side runs: auto, cpu or cuda.
        #[arg(long, default_value = "auto")]
        device: zoo_train::DeviceChoice,
        /// Number of inputs (default: 8 random ones, or every image in --images), 1 to 100000.
        #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
        samples: Option<usize>,
        /// Batch size for zoo's forward pass (1 to 4096).
        #[arg(long, default_value_t = 8, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
        batch: usize,
        /// Reference engines, comma separated: tract, ort.
        #[arg(long, value_delimiter = ',', default_value = "tract")]
        engines: Vec<String>,
        /// Seed for random inputs.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Largest accepted max_rel_diff.
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f64,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Fill a weight-stripped ONNX zoo file (light_*.onnx) with seeded random weights: a
    /// faithful stand-in of the real model for tests and benchmarks.
    Materialize {
        /// The light_*.onnx file (weights replaced by ConstantOfShape nodes).
        input: PathBuf,
        /// Where to write the stand-in.
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Move the graph to this opset (e.g. 12) after filling.
        #[arg(long)]
        opset: Option<i64>,
    },
}

#[derive(Subcommand)]
enum ShowCommand {
    /// A grid of a conv layer's kernels (RGB when it reads 3 channels), each normalised.
    Filters(ShowArgs),
    /// A grid of the feature maps one image produces after a layer.
    Activations {
        #[command(flatten)]
        show: ShowArgs,
        #[arg(long)]
        image: PathBuf,
    },
    /// Grad-CAM: where the network looks for a class in one image (the class score's gradient
    /// at a conv layer's maps, through zoo's autodiff), as a heat map over the image.
    Cam {
        #[command(flatten)]
        show: ShowArgs,
        #[arg(long)]
        image: PathBuf,
        /// The class: a label name or an output number (default: the predicted class).
        #[arg(long)]
        class: Option<zoo_app::cam::ClassChoice>,
    },
    /// A 2-D map (first two principal components) of a dataset's images at a layer, one colour
    /// per class: where the classes separate, from conv1 to fc7.
    Features {
        #[command(flatten)]
        show: ShowArgs,
        #[command(flatten)]
        features: FeatureArgs,
    },
}

/// What computes a model's outputs (`evaluate`, `predict`).
#[derive(Args)]
struct RuntimeArgs {
    /// zoo (its own network, the fast path), tract or ort (independent runtimes, CPU).
    #[arg(long, default_value = "zoo")]
    engine: zoo_app::engines::Runtime,
    /// For zoo's network: auto (CUDA when usable), cpu or cuda.
    #[arg(long, default_value = "auto")]
    device: zoo_train::DeviceChoice,
}

/// Which images and how their activations become rows.
#[derive(Args)]
struct FeatureArgs {
    /// Labelled images: class folders, CSV manifest, or MNIST IDX (default for a run directory:
    /// its validation images).
    #[arg(long)]
    data: Option<PathBuf>,
    /// none (the activations flattened) or avg (each channel's mean over its map).
    #[arg(long, default_value = "none")]
    pool: zoo_app::features::Pool,
}

/// `--data`, or a run directory's own validation images.
fn labeled_images(
    data: Option<PathBuf>,
    arg: &zoo_fetch::ModelArg,
) -> anyhow::Result<zoo_app::labeled::Images> {
    let run = match arg {
        zoo_fetch::ModelArg::RunDir(run) => Some(run.as_path()),
        _ => None,
    };
    zoo_app::labeled::Images::choose(data, run)
}

#[derive(Args)]
struct ShowArgs {
    #[command(flatten)]
    model: ModelOpts,
    /// Layer (default: the first conv).
    #[arg(long)]
    layer: Option<String>,
    #[arg(long, short)]
    output: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct FinetuneArgs {
    /// A model card name (alexnet, lenet), an ONNX file, or a run directory.
    #[arg(required_unless_present = "resume")]
    model: Option<String>,
    /// Use this card's preprocessing and freeze plan for a local file.
    #[arg(long, value_name = "CARD")]
    like: Option<String>,
    /// Pick the card's file for this opset.
    #[arg(long)]
    opset: Option<i64>,
    #[command(flatten)]
    recipe: RecipeArgs,
    #[command(flatten)]
    training: TrainingArgs,
}

/// Preprocessing from the command line: a preset, then single fields over it; both override
/// the card or the file's metadata. A run records the recipe in force.
#[derive(Args, Default)]
struct RecipeArgs {
    /// Named recipe: imagenet (torchvision mean/std on x/255, RGB, shorter-side crop), caffe
    /// (BGR, 0..255 minus the ImageNet means), inception ((x/255-0.5)/0.5), unit (x/255), raw
    /// (0..255).
    #[arg(long, value_name = "PRESET", help_heading = "Preprocessing")]
    preprocessing: Option<zoo_cards::Preset>,
    /// Per-channel mean subtracted after scaling: R,G,B (or one value for gray).
    #[arg(long, value_name = "R,G,B", value_parser = channels, help_heading = "Preprocessing")]
    mean: Option<Channels>,
    /// Per-channel std divided by after the mean: R,G,B (or one value).
    #[arg(long, value_name = "R,G,B", value_parser = channels, help_heading = "Preprocessing")]
    std: Option<Channels>,
    /// Pixel values 0..255 are multiplied by this first (1/255 = 0.00392156862745098).
    #[arg(long, value_name = "X", help_heading = "Preprocessing")]
    scale: Option<f32>,
    /// Channel order: rgb, bgr or gray.
    #[arg(long, value_name = "ORDER", help_heading = "Preprocessing")]
    color: Option<zoo_cards::ColorOrder>,
    /// Input size: H,W or HxW.
    #[arg(long, value_name = "HxW", value_parser = zoo_cards::parse_size, help_heading = "Preprocessing")]
    size: Option<[u32; 2]>,
    /// direct (stretch to the size) or shorter-side-crop[:SHORTER] (shorter side to SHORTER,
    /// then the centre crop).
    #[arg(long, value_name = "MODE", value_parser = zoo_cards::parse_resize, help_heading = "Preprocessing")]
    resize: Option<(zoo_cards::ResizeMode, Option<u32>)>,
    /// nearest, bilinear or bicubic.
    #[arg(long, value_name = "FILTER", help_heading = "Preprocessing")]
    interpolation: Option<zoo_cards::Interpolation>,
}

/// One `--mean`/`--std` value list (a newtype: clap reads a bare `Vec` as repeated flags).
#[derive(Clone)]
struct Channels(Vec<f32>);

fn channels(s: &str) -> Result<Channels, String> {
    zoo_cards::parse_channel_values(s).map(Channels)
}

impl RecipeArgs {
    fn changes(&self) -> zoo_cards::RecipeChanges {
        zoo_cards::RecipeChanges {
            preset: self.preprocessing,
            mean: self.mean.as_ref().map(|c| c.0.clone()),
            std: self.std.as_ref().map(|c| c.0.clone()),
            scale: self.scale,
            color: self.color,
            size: self.size,
            resize: self.resize.map(|r| r.0),
            resize_shorter: self.resize.and_then(|r| r.1),
            interpolation: self.interpolation,
        }
    }
}

#[derive(Args)]
struct TrainArgs {
    /// Architecture: lenet5 (the lecture's MATLAB LeNet-5 with batch norm), mnist-cnn (the
    /// ONNX zoo's MNIST graph), mlp (fully connected on the pixels), linear2d (one neuron on
    /// two features of a digit: average intensity and symmetry).
    #[arg(required_unless_present = "resume")]
    arch: Option<String>,
    /// mlp: hidden layer widths, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "100,30")]
    hidden: Vec<usize>,
    /// mlp: sigmoid, tanh or relu.
    #[arg(long, default_value = "relu")]
    activation: zoo_train::Activation,
    /// Keep only these classes of the data (MNIST digits), e.g. `--digits 1,5` for linear2d.
    #[arg(long, value_delimiter = ',')]
    digits: Option<Vec<String>>,
    #[command(flatten)]
    training: TrainingArgs,
}

/// Options shared by `zoo finetune` and `zoo train`.
#[derive(Args)]
struct TrainingArgs {
    /// Training images: a folder of class folders, a CSV manifest, or MNIST IDX.
    #[arg(long, required_unless_present = "resume")]
    data: Option<PathBuf>,
    /// Continue an interrupted or killed run from its last checkpoint; the model, data and
    /// every option are the run's own (config.json).
    #[arg(long, value_name = "RUN", conflicts_with = "data")]
    resume: Option<PathBuf>,
    /// Number of classes; must match the data (default: the classes found in the data).
    #[arg(long)]
    classes: Option<usize>,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Learning rate of the body (the new head uses lr x head-lr-factor); default 1e-3 for
    /// sgdm, 3e-4 for adam.
    #[arg(long)]
    lr: Option<f64>,
    /// How many times faster the new head learns (default 10).
    #[arg(long)]
    head_lr_factor: Option<f64>,
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    /// sgdm or adam.
    #[arg(long, default_value = "sgdm", value_parser = ["sgdm", "adam"])]
    optimizer: String,
    /// cross-entropy, or quadratic (half the squared error of the softmax against the one-hot
    /// target; the validation loss stays cross-entropy).
    #[arg(long, default_value = "cross-entropy", value_parser = ["cross-entropy", "quadratic"])]
    loss: String,
    /// Layers to freeze, comma separated (replaces the card's plan).
    #[arg(long, value_delimiter = ',')]
    freeze: Option<Vec<String>>,
    /// Freeze every layer up to and including this one.
    #[arg(long)]
    freeze_until: Option<String>,
    /// Train every layer.
    #[arg(long)]
    unfreeze_all: bool,
    /// Validate on this set (class folders, CSV manifest, or MNIST IDX) instead of a split of
    /// --data; its class names must be those of --data.
    #[arg(long, value_name = "DIR|CSV|IDX")]
    val_data: Option<PathBuf>,
    /// Fraction of each class held out for validation (default 0.2, or the manifest's split column).
    #[arg(long)]
    val_split: Option<f64>,
    /// Images of each class held out for validation.
    #[arg(long)]
    val_per_class: Option<usize>,
    /// Images of each class to train on; the rest validate.
    #[arg(long)]
    train_per_class: Option<usize>,
    /// Validate every this many iterations (default: each epoch; at least 1).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    val_every: Option<usize>,
    /// Stop after this many validations without improvement.
    #[arg(long)]
    patience: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto (CUDA when usable, else CPU), cpu or cuda.
    #[arg(long, default_value = "auto")]
    device: zoo_train::DeviceChoice,
    /// Random flips and shifts (disables the frozen-feature cache).
    #[arg(long)]
    augment: bool,
    /// Run the frozen layers on every step instead of once per image.
    #[arg(long)]
    no_feature_cache: bool,
    /// Run directory (default runs/<model>-<timestamp>, with runs/latest pointing at it).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// Progress bar plus the MATLAB-style table, on stderr.
struct CliReporter {
    bar: indicatif::ProgressBar,
    header: std::sync::Once,
}

impl CliReporter {
    fn new(quiet: bool) -> Self {
        let bar = if quiet {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(0)
        };
        bar.set_draw_target(if quiet {
            indicatif::ProgressDrawTarget::hidden()
        } else {
            indicatif::ProgressDrawTarget::stderr()
        });
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} iteration {pos}/{len} {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Self {
            bar,
            header: std::sync::Once::new(),
        }
    }
}

impl zoo_train::Reporter for CliReporter {
    fn info(&self, message: &str) {
        self.bar.suspend(|| eprintln!("{message}"));
    }

    fn warn(&self, message: &str) {
        self.bar.suspend(|| eprintln!("warning: {message}"));
    }

    fn row(&self, r: &zoo_train::ValidationRow) {
        self.bar.suspend(|| {
            self.header.call_once(|| {
                eprintln!("| epoch | iteration | elapsed (s) | mini-batch loss | mini-batch acc | val loss | val acc |    lr    |");
                eprintln!("|-------|-----------|-------------|-----------------|----------------|----------|---------|----------|");
            });
            eprintln!(
                "| {:>5} | {:>9} | {:>11.1} | {:>15.4} | {:>13.2}% | {:>8.4} | {:>6.2}% | {:>8.2e} |",
                r.epoch,
                r.iteration,
                r.elapsed_s,
                r.train_loss,
                100.0 * r.train_accuracy,
                r.val_loss,
                100.0 * r.val_accuracy,
                r.lr
            );
        });
    }

    fn progress(&self, iteration: usize, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(iteration as u64);
    }
}

impl TrainingArgs {
    fn options(
        self,
        keep_classes: Option<Vec<String>>,
    ) -> anyhow::Result<(zoo_train::FinetuneOptions, bool)> {
        let data = self.data.expect("clap requires --data without --resume");
        let classes = match (self.classes, &keep_classes) {
            (Some(n), _) => n,
            (None, Some(keep)) => keep.len(),
            (None, None) => zoo_data::open(&data)?.classes.len(),
        };
        let mut options = zoo_train::FinetuneOptions::new(data, classes);
        options.epochs = self.epochs;
        options.batch_size = self.batch_size;
        options.optimizer = if self.optimizer == "adam" {
            zoo_train::OptimizerKind::Adam
        } else {
            zoo_train::OptimizerKind::Sgdm
        };
        // An explicit --lr or --head-lr-factor wins over the optimizer's defaults.
        let (lr, head_lr_factor) = options.optimizer.default_lr();
        options.lr = self.lr.unwrap_or(lr);
        options.head_lr_factor = self.head_lr_factor.unwrap_or(head_lr_factor);
        options.momentum = self.momentum;
        options.weight_decay = self.weight_decay;
        options.val_data = self.val_data;
        options.keep_classes = keep_classes;
        options.loss = if self.loss == "quadratic" {
            zoo_train::LossKind::Quadratic
        } else {
            zoo_train::LossKind::CrossEntropy
        };
        options.freeze = self.freeze;
        options.freeze_until = self.freeze_until;
        options.unfreeze_all = self.unfreeze_all;
        options.val_split = self.val_split;
        options.val_per_class = self.val_per_class;
        options.train_per_class = self.train_per_class;
        options.val_every = self.val_every;
        options.patience = self.patience;
        options.seed = self.seed;
        options.device = self.device;
        options.augment = self.augment;
        options.feature_cache = !self.no_feature_cache;
        options.out = self.out;
        Ok((options, self.json))
    }
}

/// The one line a finished or interrupted run ends with.
fn summary_line(s: &zoo_train::Summary) -> String {
    let audit = s.freeze_audit.frozen_params_unchanged;
    let mut line = if s.validations == 0 {
        format!(
            "no validation ran (stopped at iteration {})",
            s.best_iteration
        )
    } else {
        format!(
            "best validation accuracy {:.2}% (epoch {}, iteration {})",
            100.0 * s.best_val_accuracy,
            s.best_epoch,
            s.best_iteration
        )
    };
    if s.images_per_s > 0.0 {
        line += &format!("; {:.1} images/s", s.images_per_s);
    }
    line += &format!("; frozen parameters unchanged: {audit}");
    if s.resumable {
        line += &format!(
            "\ninterrupted: continue with `zoo finetune --resume {}`",
            s.run_dir.display()
        );
    }
    line
}

/// Runs a training job with Ctrl-C handling, the progress table, and the summary printout.
fn run_training(
    json: bool,
    job: impl FnOnce(
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        &CliReporter,
    ) -> anyhow::Result<zoo_train::Summary>,
) -> anyhow::Result<ExitCode> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second Ctrl-C while saving still exits at once.
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, std::sync::atomic::Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    }
    let reporter = CliReporter::new(json);
    let summary = job(stop, &reporter)?;
    reporter.bar.finish_and_clear();
    if json {
        print_json(&summary)?;
    } else {
        eprintln!("{}", summary_line(&summary));
        println!("{}", summary.run_dir.display());
    }
    Ok(if summary.interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--resume RUN`: the run's own model, data and options.
fn resume(run: &Path, json: bool) -> anyhow::Result<ExitCode> {
    run_training(json, |stop, reporter| {
        zoo_train::resume(run, Some(stop), reporter)
    })
}

fn finetune(args: FinetuneArgs) -> anyhow::Result<ExitCode> {
    if let Some(run) = &args.training.resume {
        if !args.recipe.changes().is_empty() {
            anyhow::bail!("--resume continues with the run's own preprocessing (config.json); leave the preprocessing flags out");
        }
        return resume(run, args.training.json);
    }
    let model = ModelOpts {
        model: args
            .model
            .clone()
            .expect("clap requires MODEL without --resume"),
        like: args.like.clone(),
        opset: args.opset,
        recipe: args.recipe,
        labels: None,
    };
    let (resolved, hints) = model.resolve()?;
    let name = match &resolved.arg {
        zoo_fetch::ModelArg::Card(c) => c.clone(),
        _ => resolved
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into()),
    };
    let (options, json) = args.training.options(None)?;
    run_training(json, |stop, reporter| {
        zoo_app::finetune::run_finetune(
            &resolved.path,
            &hints,
            &name,
            &options,
            Some(stop),
            reporter,
        )
    })
}

fn train(args: TrainArgs) -> anyhow::Result<ExitCode> {
    if let Some(run) = &args.training.resume {
        return resume(run, args.training.json);
    }
    let name = args.arch.expect("clap requires ARCH without --resume");
    let arch = zoo_train::ArchSpec {
        hidden: if name == "mlp" {
            args.hidden
        } else {
            Vec::new()
        },
        activation: args.activation,
        ..zoo_train::ArchSpec::named(&name)
    };
    let (options, json) = args.training.options(args.digits)?;
    run_training(json, |stop, reporter| {
        zoo_train::train_from_scratch(&arch, &options, Some(stop), reporter)
    })
}

#[derive(Subcommand)]
enum DataCommand {
    /// Class counts, image sizes, formats, unreadable files, duplicates, grayscale vs colour.
    Check {
        /// A folder of class folders, a CSV manifest (path,label[,split]), or MNIST IDX.
        data: PathBuf,
        /// Also say what this model's preprocessing will do to the images.
        #[arg(long, value_name = "MODEL")]
        model: Option<String>,
        #[command(flatten)]
        recipe: RecipeArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum CardCommand {
    /// Write a card for a local ONNX file (its path and sha256, preprocessing, labels, head
    /// and freeze plan) into the user card folder; then every command takes NAME.
    New {
        /// The ONNX file.
        file: PathBuf,
        /// The card's name (letters, digits, `.`, `_`, `-`; not a built-in card's).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        recipe: RecipeArgs,
        /// Class names: one a line, or synset.txt form `<wnid> <name>`; line i names output i.
        #[arg(long, value_name = "FILE")]
        labels: Option<PathBuf>,
        /// The layer a finetune replaces (default: the last layer with weights).
        #[arg(long, value_name = "LAYER")]
        head: Option<String>,
        /// Layers or `prefix*` patterns to freeze, comma separated (default: all but the head).
        #[arg(long, value_delimiter = ',')]
        freeze: Option<Vec<String>>,
        /// Overwrite a user card of the same name.
        #[arg(long)]
        replace: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct FetchArgs {
    /// Model card name (see `zoo list`); omit with --url.
    #[arg(required_unless_present = "url")]
    model: Option<String>,
    /// Git revision (branch, tag or commit) on the Hub.
    #[arg(long)]
    revision: Option<String>,
    /// Fetch the card's file for this opset.
    #[arg(long)]
    opset: Option<i64>,
    /// Download again even if a verified copy is cached.
    #[arg(long)]
    force: bool,
    /// Never touch the network: use the cache or fail.
    #[arg(long)]
    offline: bool,
    /// Print nothing but the resulting path.
    #[arg(long, short)]
    quiet: bool,
    /// Hub mirror URL (default: HF_ENDPOINT, else https://huggingface.co).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Skip the import check (zoo vs tract on random inputs) after downloading.
    #[arg(long)]
    no_check: bool,
    /// A model without a card: download this URL (needs --sha256).
    #[arg(long, requires = "sha256", conflicts_with = "model")]
    url: Option<String>,
    /// Expected sha256 of the --url file.
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
    /// File name for the --url model in the cache.
    #[arg(long)]
    name: Option<String>,
    /// Seconds to connect, and without any data before a download is given up (default 30,
    /// or ZOO_FETCH_TIMEOUT).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Give up when fewer than this many bytes per second arrive over --low-speed-time
    /// (default 1024, or ZOO_LOW_SPEED_LIMIT; 0 turns it off).
    #[arg(long, value_name = "BYTES")]
    low_speed_limit: Option<u64>,
    /// Seconds over which --low-speed-limit is measured (default 30, or ZOO_LOW_SPEED_TIME).
    #[arg(long, value_name = "SECS")]
    low_speed_time: Option<f64>,
    /// Print one JSON object (the path is in it).
    #[arg(long)]
    json: bool,
}

impl FetchArgs {
    /// Flags override the environment, which overrides the defaults.
    fn limits(&self) -> zoo_fetch::NetLimits {
        let mut limits = zoo_fetch::NetLimits::from_env();
        let secs = |v: f64| std::time::Duration::from_secs_f64(v.clamp(0.001, 86_400.0));
        if let Some(t) = self.timeout {
            limits.connect = secs(t);
            limits.stall = secs(t);
        }
        if let Some(b) = self.low_speed_limit {
            limits.low_speed_bytes = b;
        }
        if let Some(t) = self.low_speed_time {
            limits.low_speed_window = secs(t);
        }
        limits
    }
}

#[derive(Args)]
struct ModelOpts {
    /// A model card name (alexnet, lenet), an ONNX file, or a run directory.
    model: String,
    /// Use this card's preprocessing and freeze plan for a local file.
    #[arg(long, value_name = "CARD")]
    like: Option<String>,
    /// Pick the card's file for this opset.
    #[arg(long)]
    opset: Option<i64>,
    #[command(flatten)]
    recipe: RecipeArgs,
    /// Class names: one a line, or synset.txt form `<wnid> <name>`; line i names output i.
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
}

impl ModelOpts {
    /// The model file, and what the card and the command line say about it.
    fn resolve(self) -> anyhow::Result<(ResolvedModel, zoo_app::profile::ModelHints)> {
        let resolved = resolve_model(
            &self.model,
            self.like.as_deref(),
            self.opset,
            &HubCache::from_env(),
        )?;
        let hints = zoo_app::profile::ModelHints {
            card: resolved.card.clone(),
            recipe: self.recipe.changes(),
            labels: read_labels(self.labels.as_deref())?,
        };
        Ok((resolved, hints))
    }
}

fn read_labels(file: Option<&Path>) -> anyhow::Result<Option<(Vec<String>, PathBuf)>> {
    file.map(|f| {
        zoo_cards::read_label_file(f)
            .map(|names| (names, f.to_path_buf()))
            .map_err(anyhow::Error::msg)
    })
    .transpose()
}

/// The recipe line, on stderr (stdout stays the report).
fn note_recipe(json: bool, line: &str) {
    if !json && !line.is_empty() {
        eprintln!("{line}");
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints a report as one JSON object, or as its text rendering.
fn emit<T: serde::Serialize>(
    json: bool,
    report: &T,
    render: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        print_json(report)
    } else {
        print!("{}", render(report));
        Ok(())
    }
}

fn warn(messages: &[String]) {
    for m in messages {
        eprintln!("warning: {m}");
    }
}

fn progress_bar(quiet: bool) -> Option<zoo_fetch::ProgressFn> {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(std::sync::Arc::new(move |done, total| {
        if total > 0 {
            bar.set_length(total);
        }
        bar.set_position(done);
        if total > 0 && done >= total {
            bar.finish_and_clear();
        }
    }))
}

fn fetch(args: FetchArgs) -> anyhow::Result<ExitCode> {
    let limits = args.limits();
    let options = zoo_fetch::FetchOptions {
        revision: args.revision,
        opset: args.opset,
        force: args.force,
        offline: args.offline,
        endpoint: args.endpoint,
        progress: progress_bar(args.quiet || args.json),
        limits,
    };
    let check = !args.no_check;
    let report = match (&args.model, &args.url) {
        (_, Some(url)) => zoo_app::fetch::fetch_by_url(
            url,
            args.sha256.as_deref().unwrap_or(""),
            args.name.as_deref(),
            &options,
            check,
        )?,
        (Some(model), None) => zoo_app::fetch::fetch_model(model, &options, check)?,
        (None, None) => anyhow::bail!("name a model (see `zoo list`) or pass --url"),
    };
    let passed = report.import_check.as_ref().is_none_or(|c| c.pass);
    if args.json {
        print_json(&report)?;
    } else {
        if !args.quiet {
            let f = &report.fetched;
            match f.status {
                zoo_fetch::FetchStatus::Cached => eprintln!(
                    "{}: already in the cache, sha256 verified ({}); nothing downloaded",
                    report.model, f.sha256
                ),
                zoo_fetch::FetchStatus::Downloaded => eprintln!(
                    "{}: downloaded {} bytes in {:.1} s, sha256 verified ({})",
                    report.model, f.size, f.seconds, f.sha256
                ),
            }
            if let Some(labels) = &f.labels {
                eprintln!("labels: {}", labels.display());
            }
            if let Some(c) = &report.import_check {
                eprintln!(
                    "import check: zoo vs tract on {} random inputs, max_rel_diff {:.2e}, top-1 agreement {:.2}: {}",
                    c.samples,
                    c.max_rel_diff,
                    c.top1_agreement,
                    if c.pass { "pass" } else { "FAIL" }
                );
            }
        }
        println!("{}", report.fetched.path.display());
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `zoo show filters|activations|features`.
fn show(command: ShowCommand) -> anyhow::Result<ExitCode> {
    let (show, image) = match command {
        ShowCommand::Features { show, features } => return show_features(show, features),
        ShowCommand::Cam { show, image, class } => {
            let (resolved, hints) = show.model.resolve()?;
            let report = zoo_app::cam::grad_cam(
                &resolved.path,
                &hints,
                &image,
                class.as_ref(),
                show.layer.as_deref(),
                &show.output,
            )?;
            note_recipe(show.json, &report.preprocessing);
            emit(show.json, &report, zoo_app::cam::render)?;
            return Ok(ExitCode::SUCCESS);
        }
        ShowCommand::Filters(show) => (show, None),
        ShowCommand::Activations { show, image } => (show, Some(image)),
    };
    let (resolved, hints) = show.model.resolve()?;
    let (path, layer) = (&resolved.path, show.layer.as_deref());
    let picture = match image {
        None => zoo_app::show::filters(path, &hints, layer, &show.output)?,
        Some(image) => zoo_app::show::activations(path, &hints, &image, layer, &show.output)?,
    };
    note_recipe(show.json, &picture.preprocessing);
    emit(show.json, &picture, zoo_app::show::render)?;
    Ok(ExitCode::SUCCESS)
}

fn show_features(show: ShowArgs, features: FeatureArgs) -> anyhow::Result<ExitCode> {
    let layer = show
        .layer
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--layer is needed: which layer's map to draw"))?;
    let (resolved, hints) = show.model.resolve()?;
    let images = labeled_images(features.data.clone(), &resolved.arg)?;
    let map = zoo_app::show::feature_map(
        &resolved.path,
        &hints,
        &images,
        &layer,
        features.pool,
        &show.output,
    )?;
    note_recipe(show.json, &map.preprocessing);
    emit(show.json, &map, zoo_app::show::render_map)?;
    Ok(ExitCode::SUCCESS)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::List { json } => {
            let (rows, problems) = zoo_app::fetch::list_models();
            warn(&problems);
            emit(json, &rows, |r| zoo_app::fetch::render_list(r))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Card {
            command:
                CardCommand::New {
                    file,
                    name,
                    recipe,
                    labels,
                    head,
                    freeze,
                    replace,
                    json,
                },
        } => {
            let new = zoo_app::cards::NewCard {
                name,
                recipe: recipe.changes(),
                labels: read_labels(labels.as_deref())?,
                head,
                freeze,
                replace,
            };
            let report = zoo_app::cards::new_user_card(&file, &new)?;
            emit(json, &report, zoo_app::cards::render)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Fetch(args) => fetch(args),
        Command::Report { run } => {
            if !run.join("config.json").is_file() {
                anyhow::bail!("{} is not a zoo run (it has no config.json)", run.display());
            }
            let page = zoo_train::run_report::write(&run)
                .map_err(|e| anyhow::anyhow!("cannot write to {}: {e}", run.display()))?;
            println!("{}", page.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Finetune(args) => finetune(args),
        Command::Train(args) => train(args),
        Command::Demo { out, json } => {
            let reporter = CliReporter::new(json);
            let report = zoo_app::demo::run_demo(&out, None, &reporter)?;
            reporter.bar.finish_and_clear();
            emit(json, &report, zoo_app::demo::render)?;
            Ok(if report.parity_pass && report.import_parity_pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Export {
            run,
            onnx: _,
            output,
            opset,
            engines,
            tolerance,
            json,
        } => {
            let report =
                zoo_app::export::export_run(&run, output.as_deref(), opset, &engines, tolerance)?;
            warn(&report.warnings);
            for m in &report.shape_mismatches {
                eprintln!("error: the written file's declared shape is wrong: {m}");
            }
            if json {
                print_json(&report)?;
            } else {
                for (batch, r) in [(1, &report.batch_1), (7, &report.batch_7)] {
                    for e in &r.engines {
                        eprintln!(
                            "batch {batch}, {:<5}: max_abs_diff {:.2e}, max_rel_diff {:.2e}, top-1 agreement {:.4} over {} validation images: {}",
                            e.name,
                            e.agreement.max_abs_diff,
                            e.agreement.max_rel_diff,
                            e.agreement.top1_agreement,
                            e.agreement.samples,
                            if e.pass { "pass" } else { "FAIL" }
                        );
                    }
                }
                println!("{}", report.output.display());
            }
            Ok(if report.pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Evaluate {
            model,
            data,
            out,
            runtime: RuntimeArgs { engine, device },
            json,
        } => {
            let (resolved, hints) = model.resolve()?;
            let out = out.unwrap_or_else(|| match &resolved.arg {
                zoo_fetch::ModelArg::RunDir(run) => run.join("evaluation"),
                _ => PathBuf::from("evaluation"),
            });
            let data = labeled_images(data, &resolved.arg)?;
            let report =
                zoo_app::evaluate::evaluate(&resolved.path, &hints, &data, &out, engine, device)?;
            warn(&report.warnings);
            note_recipe(json, &report.preprocessing);
            emit(json, &report, zoo_app::evaluate::render)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Predict {
            model,
            images,
            top,
            runtime: RuntimeArgs { engine, device },
            json,
        } => {
            let (resolved, hints) = model.resolve()?;
            let report =
                zoo_app::predict::predict(&resolved.path, &hints, &images, top, engine, device)?;
            warn(&report.warnings);
            note_recipe(json, &report.preprocessing);
            emit(json, &report, zoo_app::predict::render)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Features {
            model,
            features,
            layer,
            out,
            json,
        } => {
            let (resolved, hints) = model.resolve()?;
            let images = labeled_images(features.data.clone(), &resolved.arg)?;
            let report = zoo_app::features::write(
                &resolved.path,
                &hints,
                &images,
                &layer,
                features.pool,
                &out,
            )?;
            note_recipe(json, &report.preprocessing);
            emit(json, &report, zoo_app::features::render)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { command } => show(command),
        Command::Data {
            command:
                DataCommand::Check {
                    data,
                    model,
                    recipe,
                    json,
                },
        } => {
            let changes = recipe.changes();
            if model.is_none() && !changes.is_empty() {
                anyhow::bail!("preprocessing flags need --model (they change its recipe)");
            }
            let report = zoo_app::data::check_dataset(&data, model.as_deref(), &changes)?;
            emit(json, &report, zoo_data::check::render)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { model, json } => {
            let (resolved, hints) = model.resolve()?;
            let report = inspect::inspect(&resolved.path, &hints)?;
            if let Some(w) = report.profile.as_ref().and_then(|p| p.warning.clone()) {
                warn(&[w]);
            }
            emit(json, &report, inspect::render)?;
            Ok(if report.import_error.is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Verify {
            model,
            images,
            run,
            data,
            device,
            samples,
            batch,
            engines,
            seed,
            tolerance,
            json,
        } => {
            let (resolved, hints) = model.resolve()?;
            let options = verify::VerifyOptions {
                images,
                run,
                data,
                device,
                samples,
                batch,
                engines,
                seed,
                tolerance,
            };
            let outcome = verify::verify_file(&resolved.path, &hints, &options)?;
            warn(&outcome.warnings);
            note_recipe(json, &outcome.preprocessing);
            emit(json, &outcome, verify::render)?;
            Ok(if outcome.report.pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Materialize {
            input,
            output,
            seed,
            opset,
        } => {
            zoo_app::standin::materialize_file(&input, &output, seed, opset)?;
            println!("{}", output.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Keeps freed memory in the process instead of returning it to the OS. Training frees and
/// re-allocates the same large buffers (gradients, activations, 150 MB for AlexNet's fc6) every
/// step; with glibc's defaults each one comes back as fresh pages, and the page faults cost
/// more than the arithmetic (measured: 8.1 s vs 3.4 s per cached AlexNet epoch on 2 cores).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator tuning; called before any threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

/// Where the last panic happened, for the one-line error: the default hook's text (thread
/// name, backtrace hint) never reaches the user, also for panics that a library contains and
/// turns into an error itself. `RUST_BACKTRACE` set keeps the default hook for debugging.
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn quiet_panics() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(at);
        }
    }));
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown cause".into())
}

fn main() -> ExitCode {
    keep_freed_memory();
    quiet_panics();
    let cli = Cli::parse();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli))) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(panic) => {
            let at = LAST_PANIC
                .lock()
                .ok()
                .and_then(|l| l.clone())
                .unwrap_or_default();
            eprintln!(
                "error: internal error (a bug in zoo or a library it uses): {}{at}; please report it with the command line",
                panic_message(panic.as_ref())
            );
            ExitCode::from(2)
        }
    }
}
