//! `zoo show filters|activations|cam|features`: pictures of what a network learned.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use zoo_app::labeled::Images;
use zoo_app::model::run_dir;

use crate::args::{FeatureArgs, ModelOpts};
use crate::ui::{emit, note_recipe};

#[derive(Subcommand)]
pub enum ShowCommand {
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

#[derive(Args)]
pub struct ShowArgs {
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

impl ShowCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let (show, image) = match self {
            ShowCommand::Features { show, features } => return feature_map(show, features),
            ShowCommand::Cam { show, image, class } => return grad_cam(show, image, class),
            ShowCommand::Filters(show) => (show, None),
            ShowCommand::Activations { show, image } => (show, Some(image)),
        };
        let (json, layer, output) = (show.json, show.layer, show.output);
        let (resolved, hints) = show.model.spec().resolve()?;
        let (path, layer) = (&resolved.path, layer.as_deref());
        let picture = match image {
            None => zoo_app::show::filters(path, &hints, layer, &output)?,
            Some(image) => zoo_app::show::activations(path, &hints, &image, layer, &output)?,
        };
        note_recipe(json, &picture.preprocessing);
        emit(json, &picture, zoo_app::show::render)?;
        Ok(ExitCode::SUCCESS)
    }
}

fn grad_cam(
    show: ShowArgs,
    image: PathBuf,
    class: Option<zoo_app::cam::ClassChoice>,
) -> anyhow::Result<ExitCode> {
    let (json, layer, output) = (show.json, show.layer, show.output);
    let (resolved, hints) = show.model.spec().resolve()?;
    let report = zoo_app::cam::grad_cam(
        &resolved.path,
        &hints,
        &image,
        class.as_ref(),
        layer.as_deref(),
        &output,
    )?;
    note_recipe(json, &report.preprocessing);
    emit(json, &report, zoo_app::cam::render)?;
    Ok(ExitCode::SUCCESS)
}

fn feature_map(show: ShowArgs, features: FeatureArgs) -> anyhow::Result<ExitCode> {
    let (json, output) = (show.json, show.output);
    let layer = show
        .layer
        .ok_or_else(|| anyhow::anyhow!("--layer is needed: which layer's map to draw"))?;
    let (resolved, hints) = show.model.spec().resolve()?;
    let images = Images::choose(
        features.data,
        run_dir(&resolved),
        features.memory.memory_budget,
    )?;
    let map = zoo_app::show::feature_map(
        &resolved.path,
        &hints,
        &images,
        &layer,
        features.pool,
        &output,
    )?;
    note_recipe(json, &map.preprocessing);
    emit(json, &map, zoo_app::show::render_map)?;
    Ok(ExitCode::SUCCESS)
}
