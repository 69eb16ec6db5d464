//! `zoo show filters` and `zoo show activations`: what conv layers learned, as PNG grids.

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use serde::Serialize;
use zoo_net::Network;
use zoo_train::report::pictures::Tile;

use crate::profile::{model_labels, profile_of_model, ModelHints};
use crate::CpuBackend;

#[derive(Clone, Debug, Serialize)]
pub struct Picture {
    pub output: PathBuf,
    pub layer: String,
    /// Tiles in the grid (filters or feature maps).
    pub tiles: usize,
    /// Each tile's source size `[height, width]` before upscaling.
    pub tile_size: [usize; 2],
    pub rgb: bool,
    pub grid: [usize; 2],
    pub image_size: [u32; 2],
    /// For feature maps: what the network makes of the image (top class and probability).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction: Option<String>,
    /// The preprocessing in force, and where it came from.
    pub preprocessing: String,
}

/// A model ready to show: its profile, network, and class names.
struct Shown {
    profile: crate::profile::Profile,
    net: Network<CpuBackend>,
    names: Option<Vec<String>>,
}

fn load(path: &Path, hints: &ModelHints) -> anyhow::Result<Shown> {
    let model = zoo_onnx::OnnxModel::load(path)?;
    let profile = profile_of_model(hints, &model)?;
    let (names, _) = model_labels(&model, hints)?;
    Ok(Shown {
        profile,
        net: Network::from_model(model, &Default::default()),
        names,
    })
}

/// The layer to show: the one named, else the first convolution.
fn pick_layer<'a>(
    net: &'a Network<CpuBackend>,
    name: Option<&str>,
) -> anyhow::Result<&'a zoo_net::Layer> {
    let plan = net.plan();
    let convs: Vec<&str> = plan
        .layers
        .iter()
        .filter(|l| l.op == "Conv")
        .map(|l| l.name.as_str())
        .collect();
    match name {
        Some(n) => plan.layer(n).ok_or_else(|| {
            anyhow::anyhow!(
                "no layer `{n}`; layers: {}",
                plan.layers
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }),
        None => convs
            .first()
            .and_then(|n| plan.layer(n))
            .ok_or_else(|| anyhow::anyhow!("the model has no convolution layer")),
    }
}

/// The kernels of a conv layer: RGB tiles when it reads 3 channels (in the model's colour
/// order, shown as RGB), else the mean over its input channels.
pub fn filters(
    path: &Path,
    hints: &ModelHints,
    layer: Option<&str>,
    output: &Path,
) -> anyhow::Result<Picture> {
    let Shown { profile, net, .. } = load(path, hints)?;
    let layer = pick_layer(&net, layer)?;
    let (tiles, size) =
        zoo_train::report::pictures::filter_tiles(&net, layer, profile.preprocessing.color)
            .map_err(anyhow::Error::msg)?;
    let picture = save_grid(&tiles, size, &layer.name, output)?;
    Ok(Picture {
        preprocessing: profile.recipe_line(),
        ..picture
    })
}

/// The feature maps of one image after a layer.
pub fn activations(
    path: &Path,
    hints: &ModelHints,
    image: &Path,
    layer: Option<&str>,
    output: &Path,
) -> anyhow::Result<Picture> {
    let Shown {
        profile,
        net,
        names,
    } = load(path, hints)?;
    // A named layer, node or node output (pooling and activation nodes are not layers), else
    // the first convolution.
    let (shown, value) = match layer {
        Some(name) => (name.to_string(), crate::features::value_of(&net, name)?),
        None => {
            let layer = pick_layer(&net, None)?;
            let node = net.plan().graph.node(&layer.node);
            let value = node.map(|n| n.outputs[0].clone());
            let value =
                value.ok_or_else(|| anyhow::anyhow!("layer `{}` has no node", layer.name))?;
            (layer.name.clone(), value)
        }
    };
    let decoded = zoo_data::decode(image)?;
    let pixels = zoo_data::preprocess(&decoded, &profile.preprocessing);
    let [c, h, w] = net.plan().graph.input_chw();
    let input = Tensor::<CpuBackend, 4>::from_data(
        TensorData::new(pixels, [1, c, h, w]),
        &Default::default(),
    );
    let prediction = top_class(&net, input.clone(), names.as_deref())?;
    let act = net.forward_to(input, &value)?;
    let dims = act.dims();
    if dims.len() != 4 {
        anyhow::bail!(
            "`{shown}` outputs {dims:?}, not feature maps; pick a conv or pooling layer (any node whose output is [N, C, H, W]; see `zoo inspect`)"
        );
    }
    let (maps, mh, mw) = (dims[1], dims[2], dims[3]);
    let values = act.to_vec();
    let plane = mh * mw;
    let tiles: Vec<Tile> = (0..maps)
        .map(|m| Tile {
            planes: vec![values[m * plane..(m + 1) * plane].to_vec()],
        })
        .collect();
    let picture = save_grid(&tiles, [mh, mw], &shown, output)?;
    Ok(Picture {
        prediction: Some(prediction),
        preprocessing: profile.recipe_line(),
        ..picture
    })
}

/// `NAME (p %)` of the network's most probable class for one image.
fn top_class(
    net: &Network<CpuBackend>,
    input: Tensor<CpuBackend, 4>,
    names: Option<&[String]>,
) -> anyhow::Result<String> {
    let logits = net.forward_logits(input)?.into_data().to_vec::<f32>()?;
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let sum: f32 = logits.iter().map(|&x| (x - max).exp()).sum();
    let best = zoo_parity::compare::argmax(&logits);
    let name = names
        .and_then(|n| n.get(best).cloned())
        .unwrap_or_else(|| format!("class {best}"));
    Ok(format!("{name} ({:.1}%)", 100.0 / sum))
}

fn save_grid(
    tiles: &[Tile],
    size: [usize; 2],
    layer: &str,
    output: &Path,
) -> anyhow::Result<Picture> {
    let grid = zoo_train::report::pictures::save_grid(tiles, size, output)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", output.display()))?;
    Ok(Picture {
        output: output.to_path_buf(),
        layer: layer.to_string(),
        tiles: grid.tiles,
        tile_size: grid.tile_size,
        rgb: grid.rgb,
        grid: grid.grid,
        image_size: grid.image_size,
        prediction: None,
        preprocessing: String::new(),
    })
}

pub fn render(p: &Picture) -> String {
    let seen = p
        .prediction
        .as_ref()
        .map(|t| {
            format!(
                "network's top class for the image: {}\n",
                zoo_io::printable(t)
            )
        })
        .unwrap_or_default();
    seen + &format!(
        "{}: {} {} tiles of {}x{} in a {}x{} grid ({}x{} pixels): {}\n",
        p.layer,
        p.tiles,
        if p.rgb { "RGB" } else { "gray" },
        p.tile_size[0],
        p.tile_size[1],
        p.grid[0],
        p.grid[1],
        p.image_size[0],
        p.image_size[1],
        p.output.display()
    )
}

/// A 2-D map of a dataset at one layer.
#[derive(Clone, Debug, Serialize)]
pub struct FeatureMap {
    pub output: PathBuf,
    pub layer: String,
    pub images: usize,
    pub width: usize,
    /// The fraction of the variance the two axes explain.
    pub explained: [f64; 2],
    pub preprocessing: String,
}

/// The images of a dataset at `layer`, projected on their first two principal components, one
/// colour per class with a legend: do the classes separate there?
pub fn feature_map(
    path: &Path,
    hints: &ModelHints,
    images: &crate::labeled::Images,
    layer: &str,
    pool: crate::features::Pool,
    output: &Path,
) -> anyhow::Result<FeatureMap> {
    let f = crate::features::compute(path, hints, images, layer, pool)?;
    if f.paths.len() < 3 {
        anyhow::bail!("a map needs at least 3 images, not {}", f.paths.len());
    }
    let (points, explained) = crate::features::pca2(&f.values, f.paths.len(), f.width);
    let points: Vec<(f64, f64, usize)> = points
        .iter()
        .zip(&f.labels)
        .map(|(p, &l)| (p[0], p[1], l))
        .collect();
    let title = format!(
        "{layer}: {} images, {} values each, first two principal components",
        f.paths.len(),
        f.width
    );
    let x_label = format!("PC 1 ({:.0} % of the variance)", 100.0 * explained[0]);
    let y_label = format!("PC 2 ({:.0} %)", 100.0 * explained[1]);
    zoo_train::report::plot::scatter(
        output,
        &zoo_train::report::plot::Scatter {
            title: &title,
            x_label: &x_label,
            y_label: &y_label,
            points: &points,
            classes: &f.classes,
            line: None,
        },
    )
    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", output.display()))?;
    Ok(FeatureMap {
        output: output.to_path_buf(),
        layer: layer.to_string(),
        images: f.paths.len(),
        width: f.width,
        explained,
        preprocessing: f.preprocessing,
    })
}

pub fn render_map(m: &FeatureMap) -> String {
    format!(
        "{}: {} images x {} values, PCA (axes explain {:.0} % and {:.0} % of the variance): {}\n",
        m.layer,
        m.images,
        m.width,
        100.0 * m.explained[0],
        100.0 * m.explained[1],
        m.output.display()
    )
}
