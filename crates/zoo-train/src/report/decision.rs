//! `zoo train linear2d`'s picture: the validation digits at their two features (average
//! intensity, symmetry) and the line the single neuron learned.

use std::path::Path;

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use zoo_cards::Preprocessing;
use zoo_net::Network;

use crate::options::FinetuneOptions;
use crate::report::plot::{Line, Scatter};

/// Draws `picture` from the run's best weights and validation images.
pub fn draw(
    run: &Path,
    options: &FinetuneOptions,
    preprocessing: &Preprocessing,
    picture: &Path,
) -> anyhow::Result<()> {
    let device = Default::default();
    let net = Network::<Flex>::load(run.join("best.onnx"), &device)?;
    let (dataset, plan) = crate::run::run_data(options)?;
    let splits = zoo_data::split(&dataset, plan, options.seed)?;
    let (val, _) = zoo_data::load(&dataset, &splits.val, preprocessing);
    let [c, h, w] = val.chw;
    let mut points = Vec::with_capacity(val.len());
    for chunk in (0..val.len()).collect::<Vec<_>>().chunks(256) {
        let values = val.gather(chunk, None)?;
        let x =
            Tensor::<Flex, 4>::from_data(TensorData::new(values, [chunk.len(), c, h, w]), &device);
        let f = net.forward_to(x, crate::arch::FEATURES)?.to_vec();
        points.extend(
            chunk
                .iter()
                .zip(f.chunks(2))
                .map(|(&i, xy)| (xy[0] as f64, xy[1] as f64, val.labels[i])),
        );
    }
    let line = neuron_line(&net);
    let title = format!(
        "single neuron on two features: {} vs {}",
        dataset.classes[0],
        dataset.classes.get(1).map_or("", |s| s.as_str())
    );
    crate::report::plot::scatter(
        picture,
        &Scatter {
            title: &title,
            x_label: "average intensity",
            y_label: "symmetry (mean squared mirror difference)",
            points: &points,
            classes: &dataset.classes,
            line,
        },
    )
    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", picture.display()))
}

/// Where the two classes' scores are equal: `(w1 - w0) . f + (b1 - b0) = 0`.
fn neuron_line(net: &Network<Flex>) -> Option<Line> {
    let plan = net.plan();
    let layer = plan.layer("neuron")?;
    let (mut w, mut b) = (None, None);
    for &p in &layer.params {
        match plan.params[p].dims.len() {
            2 => w = Some(net.param_value(p)),
            1 => b = Some(net.param_value(p)),
            _ => {}
        }
    }
    let (w, b) = (w?, b?);
    if w.len() != 4 || b.len() != 2 {
        return None;
    }
    Some(Line {
        a: (w[2] - w[0]) as f64,
        b: (w[3] - w[1]) as f64,
        c: (b[1] - b[0]) as f64,
    })
}
