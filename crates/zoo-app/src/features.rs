//! `zoo features`: one row per image of a layer's activations (any layer or node output),
//! run on zoo's own network, for k-NN, linear probes, or a 2-D map (`zoo show features`).

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use serde::Serialize;
use zoo_net::Network;

use crate::labeled::{ImageSource, Images};
use crate::profile::{profile_of_model, ModelHints};
use crate::CpuBackend;

/// The most values `features` holds in its rows (2^28, 1 GiB of f32), checked before they are
/// computed; `--pool avg` makes a conv layer's maps one value per channel. (The images are
/// held only while they fit half the memory budget, else streamed.)
pub const MAX_VALUES: usize = 1 << 28;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// The activations as they are, flattened.
    #[default]
    None,
    /// Each channel's mean over its feature map (for `[N, C, H, W]` layers).
    Avg,
}

impl std::str::FromStr for Pool {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Pool::None),
            "avg" => Ok(Pool::Avg),
            _ => Err(format!("`{s}`: expected none or avg")),
        }
    }
}

/// The rows: image paths, class names, and `width` values per image.
pub struct Features {
    pub paths: Vec<String>,
    pub labels: Vec<usize>,
    pub classes: Vec<String>,
    pub values: Vec<f32>,
    pub width: usize,
    /// The layer's output dims per image, before pooling.
    pub dims: Vec<usize>,
    /// The graph value the rows were taken at.
    pub value: String,
    pub skipped: Vec<String>,
    pub preprocessing: String,
}

/// The graph value a layer name (or a node output name) stands for.
pub fn value_of<B: burn::tensor::backend::Backend>(
    net: &Network<B>,
    layer: &str,
) -> anyhow::Result<String> {
    let plan = net.plan();
    let graph = &plan.graph;
    if let Some(node) = plan.layer(layer).and_then(|l| graph.node(&l.node)) {
        return Ok(node.outputs[0].clone());
    }
    if let Some(node) = graph.node(layer) {
        return Ok(node.outputs[0].clone());
    }
    if graph
        .nodes
        .iter()
        .any(|n| n.outputs.iter().any(|o| o == layer))
    {
        return Ok(layer.to_string());
    }
    let names: Vec<&str> = plan.layers.iter().map(|l| l.name.as_str()).collect();
    anyhow::bail!(
        "no layer or node output `{layer}`; layers: {} (node outputs are accepted too; see `zoo inspect`)",
        names.join(", ")
    )
}

/// Computes the rows, `crate::engines::BATCH` images at a time.
pub fn compute(
    path: &Path,
    hints: &ModelHints,
    images: &Images,
    layer: &str,
    pool: Pool,
) -> anyhow::Result<Features> {
    let model = zoo_onnx::OnnxModel::load(path)?;
    let profile = profile_of_model(hints, &model)?;
    // A dataset's classes are its own here (features need no model outputs to match).
    let labels = match images.source {
        ImageSource::Dataset(_) => None,
        ImageSource::RunValidation(_) => crate::profile::model_labels(&model, hints)?.0,
    };
    let labeled = images.load(&profile.preprocessing, labels.as_deref())?;
    let net = Network::<CpuBackend>::from_model(model, &Default::default());
    let value = value_of(&net, layer)?;
    if !net.plan().depends_on_input(&value) {
        anyhow::bail!(
            "`{layer}` ({value}) does not depend on the image (it only transforms weights): pick a layer's output, see `zoo inspect`"
        );
    }
    let dims: Vec<usize> = net
        .plan()
        .graph
        .shapes
        .of(&value)
        .map(|d| d[1..].to_vec())
        .unwrap_or_default();
    let width = match (pool, dims.as_slice()) {
        (Pool::Avg, [c, _, _]) => *c,
        (Pool::Avg, _) => anyhow::bail!(
            "--pool avg needs a layer with feature maps ([N, C, H, W]); `{layer}` gives {dims:?}"
        ),
        _ => dims.iter().product(),
    };
    let n = labeled.len();
    if n.saturating_mul(width) > MAX_VALUES {
        anyhow::bail!(
            "{n} images x {width} values at `{layer}` is over {MAX_VALUES} values held at once; use --pool avg or fewer images"
        );
    }
    let values = rows(&net, labeled.pixels(), (&value, layer), &dims, pool)?;
    Ok(Features {
        paths: labeled.paths,
        labels: labeled.labels,
        classes: labeled.classes,
        values,
        width,
        dims,
        value,
        skipped: labeled.skipped,
        preprocessing: profile.recipe_line(),
    })
}

/// Every image's row at `value` (named `layer` in messages), `crate::engines::BATCH` images at a
/// time, averaged per channel with `Pool::Avg`.
fn rows(
    net: &Network<CpuBackend>,
    images: crate::pixels::Pixels,
    (value, layer): (&str, &str),
    dims: &[usize],
    pool: Pool,
) -> anyhow::Result<Vec<f32>> {
    let device = Default::default();
    let [c, h, w] = net.plan().graph.input_chw();
    let per_image: usize = dims.iter().product();
    let mut values = Vec::new();
    images.for_each_block(crate::engines::BATCH, |block| {
        for chunk in block.chunks(crate::engines::BATCH * c * h * w) {
            let n = chunk.len() / (c * h * w).max(1);
            let x = Tensor::<CpuBackend, 4>::from_data(
                TensorData::new(chunk.to_vec(), [n, c, h, w]),
                &device,
            );
            let raw = net.forward_to(x, value)?.to_vec();
            // Checked before pooling (a pooled row is shorter).
            if raw.len() != n * per_image {
                anyhow::bail!(
                    "`{layer}` gave {} values for {n} images, not {per_image} per image: it has no batch axis to split into rows",
                    raw.len()
                );
            }
            match pool {
                Pool::None => values.extend(raw),
                Pool::Avg => {
                    let plane = dims[1] * dims[2];
                    let means = raw.chunks(plane).map(|m| m.iter().sum::<f32>() / plane as f32);
                    values.extend(means);
                }
            }
        }
        Ok(())
    })?;
    Ok(values)
}

#[derive(Clone, Debug, Serialize)]
pub struct FeatureReport {
    pub model: String,
    pub layer: String,
    pub value: String,
    pub pool: Pool,
    pub images: usize,
    pub width: usize,
    pub dims: Vec<usize>,
    pub out: PathBuf,
    pub rows_csv: Option<PathBuf>,
    pub skipped: Vec<String>,
    pub preprocessing: String,
}

/// Writes the rows as CSV (`path,label,f0,...`) or, for a `.npy` path, as a float32 `[N, width]`
/// array with the paths and labels beside it in `<out>.rows.csv`.
pub fn write(
    path: &Path,
    hints: &ModelHints,
    images: &Images,
    layer: &str,
    pool: Pool,
    out: &Path,
) -> anyhow::Result<FeatureReport> {
    // Refused before the work, not after: a device, link or folder is never replaced.
    zoo_io::check_replaceable(out).map_err(|e| anyhow::anyhow!("cannot write there: {e}"))?;
    let f = compute(path, hints, images, layer, pool)?;
    let io = |p: &Path, bytes: &[u8]| {
        zoo_io::write_atomic(p, bytes)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))
    };
    let npy = out.extension().is_some_and(|e| e == "npy");
    let rows_csv = if npy {
        io(out, &npy_bytes(&f.values, f.paths.len(), f.width))?;
        let rows = PathBuf::from(format!("{}.rows.csv", out.display()));
        io(&rows, rows_text(&f, false).as_bytes())?;
        Some(rows)
    } else {
        io(out, rows_text(&f, true).as_bytes())?;
        None
    };
    Ok(FeatureReport {
        model: path.display().to_string(),
        layer: layer.to_string(),
        value: f.value,
        pool,
        images: f.paths.len(),
        width: f.width,
        dims: f.dims,
        out: out.to_path_buf(),
        rows_csv,
        skipped: f.skipped,
        preprocessing: f.preprocessing,
    })
}

fn rows_text(f: &Features, with_values: bool) -> String {
    let mut s = String::from("path,label");
    if with_values {
        for k in 0..f.width {
            s += &format!(",f{k}");
        }
    }
    s.push('\n');
    for (i, p) in f.paths.iter().enumerate() {
        s += &zoo_io::csv::text(p);
        s.push(',');
        s += &zoo_io::csv::text(&f.classes[f.labels[i]]);
        if with_values {
            for v in &f.values[i * f.width..(i + 1) * f.width] {
                s += &format!(",{v}");
            }
        }
        s.push('\n');
    }
    s
}

/// NumPy's `.npy` format, version 1.0: little-endian float32, C order.
fn npy_bytes(values: &[f32], rows: usize, width: usize) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {width}), }}");
    // Magic (6) + version (2) + length (2) + header + newline, padded to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + values.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

pub fn render(r: &FeatureReport) -> String {
    let mut s = format!(
        "{} images x {} values at `{}` ({}{}): {}\n",
        r.images,
        r.width,
        r.layer,
        r.value,
        if r.pool == Pool::Avg {
            ", averaged per channel"
        } else {
            ""
        },
        r.out.display()
    );
    if let Some(rows) = &r.rows_csv {
        s += &format!("paths and labels: {}\n", rows.display());
    }
    for k in &r.skipped {
        s += &format!("skipped: {k}\n");
    }
    s
}

/// The first two principal components of the rows (power iteration on the centred matrix,
/// never forming the covariance), and the fraction of the variance each explains.
pub fn pca2(values: &[f32], rows: usize, width: usize) -> (Vec<[f64; 2]>, [f64; 2]) {
    let mut mean = vec![0f64; width];
    for r in values.chunks(width) {
        for (m, &v) in mean.iter_mut().zip(r) {
            *m += v as f64 / rows as f64;
        }
    }
    let centred: Vec<f64> = values
        .chunks(width)
        .flat_map(|r| r.iter().zip(&mean).map(|(&v, m)| v as f64 - m))
        .collect();
    let total: f64 = centred.iter().map(|v| v * v).sum::<f64>().max(1e-300);
    let project = |v: &[f64]| -> Vec<f64> {
        centred
            .chunks(width)
            .map(|r| r.iter().zip(v).map(|(a, b)| a * b).sum())
            .collect()
    };
    let mut components: Vec<Vec<f64>> = Vec::new();
    let mut explained = [0.0; 2];
    for (k, share) in explained.iter_mut().enumerate() {
        // A deterministic start that is not orthogonal to typical data.
        let mut v: Vec<f64> = (0..width)
            .map(|i| 1.0 + ((i * 7 + k * 3) % 11) as f64 / 11.0)
            .collect();
        let mut norm_sq = 0.0;
        for _ in 0..200 {
            for c in &components {
                let d: f64 = v.iter().zip(c).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(c).for_each(|(a, b)| *a -= d * b);
            }
            let xv = project(&v);
            let mut next = vec![0f64; width];
            for (r, s) in centred.chunks(width).zip(&xv) {
                next.iter_mut().zip(r).for_each(|(n, a)| *n += a * s);
            }
            let norm = next.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm < 1e-300 {
                break;
            }
            norm_sq = xv.iter().map(|a| a * a).sum();
            v = next.into_iter().map(|a| a / norm).collect();
        }
        *share = norm_sq / total;
        components.push(v);
    }
    let a = project(&components[0]);
    let b = project(&components[1]);
    (
        a.into_iter().zip(b).map(|(x, y)| [x, y]).collect(),
        explained,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_holds_the_shape() {
        let bytes = npy_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'shape': (2, 3)") && header.ends_with('\n'));
        let data = &bytes[10 + header_len..];
        assert_eq!(f32::from_le_bytes(data[20..24].try_into().unwrap()), 6.0);
    }

    #[test]
    fn pca_finds_the_direction_of_largest_spread() {
        // Points along (1, 1, 0) with small noise in z: the first component carries ~all variance.
        let mut values = Vec::new();
        for i in 0..50 {
            let t = i as f32 - 25.0;
            values.extend([t, t, if i % 2 == 0 { 0.1 } else { -0.1 }]);
        }
        let (points, explained) = pca2(&values, 50, 3);
        assert!(explained[0] > 0.99, "{explained:?}");
        let spread = |k: usize| points.iter().map(|p| p[k].abs()).fold(0.0, f64::max);
        // t runs over -25..=24: centred, the farthest point is 24.5 along (1, 1).
        assert!(
            (spread(0) - 24.5 * 2f64.sqrt()).abs() < 1e-4,
            "{}",
            spread(0)
        );
        assert!(spread(1) < 0.11);
    }
}
