//! Argument groups several commands share: how a model is named, preprocessing changes, which
//! engine computes, which images feed features, and the training options.

use std::path::PathBuf;

use clap::Args;
use zoo_app::cards::{ColorOrder, Interpolation, Preset, RecipeChanges, ResizeMode};
use zoo_app::model::ModelSpec;

#[derive(Args)]
pub struct ModelOpts {
    /// A model card name (alexnet, lenet), an ONNX file, or a run directory.
    pub model: String,
    /// Use this card's preprocessing and freeze plan for a local file.
    #[arg(long, value_name = "CARD")]
    pub like: Option<String>,
    /// Pick the card's file for this opset.
    #[arg(long)]
    pub opset: Option<i64>,
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Class names: one a line, or synset.txt form `<wnid> <name>`; line i names output i.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
}

impl ModelOpts {
    pub fn spec(self) -> ModelSpec {
        ModelSpec {
            model: self.model,
            like: self.like,
            opset: self.opset,
            recipe: self.recipe.changes(),
            labels: self.labels,
        }
    }
}

/// Preprocessing from the command line: a preset, then single fields over it; both override
/// the card or the file's metadata. A run records the recipe in force.
#[derive(Args, Default)]
pub struct RecipeArgs {
    /// Named recipe: imagenet (torchvision mean/std on x/255, RGB, shorter-side crop), caffe
    /// (BGR, 0..255 minus the ImageNet means), inception ((x/255-0.5)/0.5), unit (x/255), raw
    /// (0..255).
    #[arg(long, value_name = "PRESET", help_heading = "Preprocessing")]
    preprocessing: Option<Preset>,
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
    color: Option<ColorOrder>,
    /// Input size: H,W or HxW.
    #[arg(long, value_name = "HxW", value_parser = zoo_app::cards::parse_size, help_heading = "Preprocessing")]
    size: Option<[u32; 2]>,
    /// direct (stretch to the size) or shorter-side-crop[:SHORTER] (shorter side to SHORTER,
    /// then the centre crop).
    #[arg(long, value_name = "MODE", value_parser = zoo_app::cards::parse_resize, help_heading = "Preprocessing")]
    resize: Option<(ResizeMode, Option<u32>)>,
    /// nearest, bilinear or bicubic.
    #[arg(long, value_name = "FILTER", help_heading = "Preprocessing")]
    interpolation: Option<Interpolation>,
}

/// One `--mean`/`--std` value list (a newtype: clap reads a bare `Vec` as repeated flags).
#[derive(Clone)]
struct Channels(Vec<f32>);

fn channels(s: &str) -> Result<Channels, String> {
    zoo_app::cards::parse_channel_values(s).map(Channels)
}

impl RecipeArgs {
    pub fn changes(&self) -> RecipeChanges {
        RecipeChanges {
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

/// What computes a model's outputs (`evaluate`, `predict`).
#[derive(Args)]
pub struct RuntimeArgs {
    /// zoo (its own network, the fast path), tract or ort (independent runtimes, CPU).
    #[arg(long, default_value = "zoo")]
    pub engine: zoo_app::engines::Runtime,
    /// For zoo's network: auto (CUDA when usable), cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: zoo_app::train::DeviceChoice,
    /// Test-time augmentation: each image also run mirrored and shifted (4 views), the outputs
    /// averaged; costs 4x the time, usually a little more accuracy.
    #[arg(long)]
    pub tta: bool,
}

/// Which images and how their activations become rows.
#[derive(Args)]
pub struct FeatureArgs {
    /// Labelled images: class folders, CSV manifest, or MNIST IDX (default for a run directory:
    /// its validation images).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// none (the activations flattened) or avg (each channel's mean over its map).
    #[arg(long, default_value = "none")]
    pub pool: zoo_app::features::Pool,
    #[command(flatten)]
    pub memory: MemoryArg,
}

#[derive(Args)]
pub struct MemoryArg {
    /// Memory the preprocessed images may take, e.g. 400M or 2G (default: half the available
    /// memory); more than half of it are streamed from disk, a block at a time.
    #[arg(long, value_name = "SIZE", value_parser = zoo_app::train::memory::parse_size)]
    pub memory_budget: Option<u64>,
}
