//! `linear2d`: the lecture's single neuron on two hand-made features of a digit.

use zoo_onnx::builder::{Attr, SeededRng};

use super::{flat_digits, mnist_preprocessing, Architecture, Init};

/// The lecture's single neuron: two hand-made features of a digit, its average intensity and
/// its symmetry (the mean squared difference between the image and its left-right mirror),
/// computed by fixed matrix products in the graph, then one linear layer. The feature layers
/// never train; only `neuron` does.
pub(super) fn linear2d(classes: usize, seed: u64) -> Architecture {
    const PIXELS: usize = 28 * 28;
    let mut init = Init(SeededRng::new(seed));
    let mut b = flat_digits();
    let mean = vec![1.0 / PIXELS as f32; PIXELS];
    b.init_f32("intensity_w", &[PIXELS, 1], mean.clone());
    b.init_f32("symmetry_w", &[PIXELS, 1], mean);
    // x (I - M): each pixel minus its mirror image in the same row.
    let mut mirror = vec![0f32; PIXELS * PIXELS];
    for r in 0..28 {
        for c in 0..28 {
            let (i, m) = (r * 28 + c, r * 28 + (27 - c));
            mirror[i * PIXELS + i] += 1.0;
            mirror[m * PIXELS + i] -= 1.0;
        }
    }
    b.init_f32("mirror_w", &[PIXELS, PIXELS], mirror);
    b.node(
        "intensity",
        "MatMul",
        &["flat", "intensity_w"],
        &["intensity_out"],
        vec![],
    );
    b.node(
        "mirror",
        "MatMul",
        &["flat", "mirror_w"],
        &["mirror_out"],
        vec![],
    );
    b.node(
        "squared",
        "Mul",
        &["mirror_out", "mirror_out"],
        &["squared_out"],
        vec![],
    );
    b.node(
        "symmetry",
        "MatMul",
        &["squared_out", "symmetry_w"],
        &["symmetry_out"],
        vec![],
    );
    b.node(
        "features",
        "Concat",
        &["intensity_out", "symmetry_out"],
        &[FEATURES],
        vec![("axis", Attr::Int(1))],
    );
    b.init_f32("neuron_w_0", &[classes, 2], init.0.values(classes * 2, 1.0));
    b.init_f32("neuron_b_0", &[classes], vec![0.0; classes]);
    b.node(
        "neuron",
        "Gemm",
        &[FEATURES, "neuron_w_0", "neuron_b_0"],
        &["neuron_out"],
        vec![("transB", Attr::Int(1))],
    );
    b.node(
        "softmax",
        "Softmax",
        &["neuron_out"],
        &["prob"],
        vec![("axis", Attr::Int(1))],
    );
    b.output("prob", &[Some(1), Some(classes)]);
    let fixed: Vec<String> = ["intensity", "mirror", "symmetry"]
        .map(String::from)
        .to_vec();
    Architecture {
        model: b.build(13),
        preprocessing: mnist_preprocessing(),
        freeze: fixed.clone(),
        head: "neuron".into(),
        fixed,
    }
}

/// The value holding `linear2d`'s two features, `[N, 2]`.
pub const FEATURES: &str = "features_out";
