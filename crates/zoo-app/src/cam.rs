//! `zoo show cam`: Grad-CAM. The gradient of one class's score with respect to a conv layer's
//! feature maps (through zoo's autodiff), averaged per map, weights the maps; their ReLU'd sum
//! is where the network looks for that class, drawn over the image.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use zoo_onnx::ops::{Activation, Nn};

use burn::backend::{Autodiff, Flex};
use burn::tensor::activation::softmax;
use burn::tensor::{Tensor, TensorData};
use serde::Serialize;
use zoo_net::Network;

use crate::profile::{model_labels, profile_of_model, ModelHints};

type Ad = Autodiff<Flex>;

/// Which class the map is for: by name (from the model's labels or `--labels`) or by index.
#[derive(Clone, Debug)]
pub enum ClassChoice {
    Name(String),
    Index(usize),
}

impl std::str::FromStr for ClassChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.parse::<usize>() {
            Ok(k) => ClassChoice::Index(k),
            Err(_) => ClassChoice::Name(s.to_string()),
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CamReport {
    pub output: PathBuf,
    pub image: PathBuf,
    pub layer: String,
    pub class: String,
    pub class_index: usize,
    pub probability: f64,
    /// The map's `[height, width]` (the layer's spatial size).
    pub map_size: [usize; 2],
    /// Where the map peaks, as fractions of the image's height and width (0 = top / left).
    pub peak: [f64; 2],
    pub preprocessing: String,
}

/// The default layer: the last convolution whose maps are larger than 1x1, taken after its
/// activation when one follows (Grad-CAM's usual choice).
fn default_layer(net: &Network<Ad>) -> anyhow::Result<String> {
    let graph = &net.plan().graph;
    let conv = graph
        .nodes
        .iter()
        .rev()
        .find(|n| {
            matches!(n.op, zoo_onnx::Op::Nn(Nn::Conv { .. }))
                && graph
                    .shapes
                    .of(&n.outputs[0])
                    .is_some_and(|d| d.len() == 4 && d[2] * d[3] > 1)
        })
        .ok_or_else(|| {
            anyhow::anyhow!("the model has no convolution with maps larger than 1x1; pass --layer")
        })?;
    let out = &conv.outputs[0];
    let mut consumers = graph.consumers(out);
    Ok(match (consumers.next(), consumers.next()) {
        (Some(n), None)
            if matches!(
                n.op,
                zoo_onnx::Op::Activation(Activation::Relu)
                    | zoo_onnx::Op::Activation(Activation::Clip { .. })
            ) =>
        {
            n.outputs[0].clone()
        }
        _ => out.clone(),
    })
}

fn pick_class(
    choice: Option<&ClassChoice>,
    probabilities: &[f32],
    names: Option<&[String]>,
) -> anyhow::Result<usize> {
    let k = probabilities.len();
    match choice {
        None => Ok(zoo_parity::compare::argmax(probabilities)),
        Some(ClassChoice::Index(i)) if *i < k => Ok(*i),
        Some(ClassChoice::Index(i)) => {
            anyhow::bail!("--class {i}: the model has {k} classes (0 to {})", k - 1)
        }
        Some(ClassChoice::Name(n)) => names
            .and_then(|names| names.iter().position(|x| x == n))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--class `{n}` is not one of the model's labels{}",
                    names.map_or(
                        " (it has none: give --labels or a class number)".into(),
                        |l| format!(
                            ": {}",
                            l.iter().take(20).cloned().collect::<Vec<_>>().join(", ")
                        )
                    )
                )
            }),
    }
}

/// Grad-CAM of `image` for `class` (default: the predicted one) at `layer` (default: the last
/// conv), overlaid on the image as a heat map, with the class and its probability under it.
pub fn grad_cam(
    path: &Path,
    hints: &ModelHints,
    image: &Path,
    class: Option<&ClassChoice>,
    layer: Option<&str>,
    output: &Path,
) -> anyhow::Result<CamReport> {
    let model = zoo_onnx::OnnxModel::load(path)?;
    let profile = profile_of_model(hints, &model)?;
    let (names, _) = model_labels(&model, hints)?;
    let device = Default::default();
    let net = Network::<Ad>::from_model(model, &device);
    let value = match layer {
        Some(l) => crate::features::value_of(&net, l)?,
        None => default_layer(&net)?,
    };
    let decoded = zoo_data::decode(image)?;
    let pixels = zoo_data::preprocess(&decoded, &profile.preprocessing);
    let [c, h, w] = net.plan().graph.input_chw();
    let input = Tensor::<Ad, 4>::from_data(TensorData::new(pixels, [1, c, h, w]), &device);
    let leaf: RefCell<Option<Tensor<Ad, 4>>> = RefCell::new(None);
    let mut tap = |a: Tensor<Ad, 4>| {
        let a = a.detach().require_grad();
        *leaf.borrow_mut() = Some(a.clone());
        a
    };
    let logits = net.forward_logits_tapped(input, &value, &mut tap)?;
    let maps = leaf.into_inner().ok_or_else(|| {
        anyhow::anyhow!(
            "`{value}` is not a 4-D feature map the network computes; pick a conv or pooling layer"
        )
    })?;
    let probabilities: Vec<f32> = softmax(logits.clone().inner(), 1).into_data().to_vec()?;
    let k = pick_class(class, &probabilities, names.as_deref())?;
    let score = logits.slice([0..1, k..k + 1]).sum();
    let grads = score.backward();
    let [_, channels, mh, mw] = maps.dims();
    let gradient: Vec<f32> = maps
        .grad(&grads)
        .map(|g| g.into_data().to_vec().unwrap_or_default())
        .unwrap_or_else(|| vec![0.0; channels * mh * mw]);
    let activations: Vec<f32> = maps.inner().into_data().to_vec()?;
    let cam = weighted_maps(&activations, &gradient, channels, mh * mw);
    let peak = zoo_parity::compare::argmax(&cam);
    let class_name = names
        .as_ref()
        .and_then(|n| n.get(k).cloned())
        .unwrap_or_else(|| format!("class {k}"));
    let caption = format!(
        "Grad-CAM at {value}: {class_name} ({:.1}%)",
        100.0 * probabilities[k]
    );
    let (rgb, size) = overlay(&decoded, &cam, [mh, mw], [h, w]);
    zoo_train::report::plot::captioned(output, &rgb, size, &caption)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", output.display()))?;
    Ok(CamReport {
        output: output.to_path_buf(),
        image: image.to_path_buf(),
        layer: value,
        class: class_name,
        class_index: k,
        probability: probabilities[k] as f64,
        map_size: [mh, mw],
        peak: [
            ((peak / mw) as f64 + 0.5) / mh as f64,
            ((peak % mw) as f64 + 0.5) / mw as f64,
        ],
        preprocessing: profile.recipe_line(),
    })
}

/// `ReLU(sum_c alpha_c A_c)` with `alpha_c` the mean gradient of map `c`, scaled to 0..1.
fn weighted_maps(activations: &[f32], gradient: &[f32], channels: usize, plane: usize) -> Vec<f32> {
    let mut cam = vec![0f32; plane];
    for ch in 0..channels {
        let g = &gradient[ch * plane..(ch + 1) * plane];
        let alpha = g.iter().sum::<f32>() / plane as f32;
        let a = &activations[ch * plane..(ch + 1) * plane];
        cam.iter_mut().zip(a).for_each(|(m, v)| *m += alpha * v);
    }
    let max = cam.iter().fold(0f32, |m, &v| m.max(v));
    cam.iter()
        .map(|&v| if max > 0.0 { v.max(0.0) / max } else { 0.0 })
        .collect()
}

/// The image at the model's aspect ratio, 320 pixels on its shorter side (or the input size
/// when larger), with the map upsampled bilinearly and blended over it in the jet colours.
fn overlay(
    decoded: &image::DynamicImage,
    cam: &[f32],
    [mh, mw]: [usize; 2],
    [h, w]: [usize; 2],
) -> (Vec<u8>, (u32, u32)) {
    let scale = (320.0 / h.min(w).max(1) as f64).max(1.0);
    let (ph, pw) = (
        (h as f64 * scale).round() as u32,
        (w as f64 * scale).round() as u32,
    );
    let base = decoded
        .resize_exact(pw, ph, image::imageops::FilterType::Triangle)
        .to_rgb8();
    let sample = |y: f32, x: f32| {
        let fy = (y * mh as f32 - 0.5).clamp(0.0, (mh - 1) as f32);
        let fx = (x * mw as f32 - 0.5).clamp(0.0, (mw - 1) as f32);
        let (y0, x0) = (fy.floor() as usize, fx.floor() as usize);
        let (y1, x1) = ((y0 + 1).min(mh - 1), (x0 + 1).min(mw - 1));
        let (ty, tx) = (fy - y0 as f32, fx - x0 as f32);
        let at = |r: usize, c: usize| cam[r * mw + c];
        (at(y0, x0) * (1.0 - tx) + at(y0, x1) * tx) * (1.0 - ty)
            + (at(y1, x0) * (1.0 - tx) + at(y1, x1) * tx) * ty
    };
    let mut rgb = Vec::with_capacity((ph * pw * 3) as usize);
    for y in 0..ph {
        for x in 0..pw {
            let heat = zoo_train::report::plot::jet(sample(
                (y as f32 + 0.5) / ph as f32,
                (x as f32 + 0.5) / pw as f32,
            ));
            let px = base.get_pixel(x, y).0;
            for ch in 0..3 {
                rgb.push((0.5 * px[ch] as f32 + 0.5 * heat[ch] as f32) as u8);
            }
        }
    }
    (rgb, (pw, ph))
}

pub fn render(r: &CamReport) -> String {
    format!(
        "Grad-CAM of {} for {} ({:.1}%) at `{}` ({}x{} map, peak at {:.0}% down, {:.0}% across): {}\n",
        r.image.display(),
        r.class,
        100.0 * r.probability,
        r.layer,
        r.map_size[0],
        r.map_size[1],
        100.0 * r.peak[0],
        100.0 * r.peak[1],
        r.output.display()
    )
}
