//! Architectures `zoo train` builds from scratch, as ONNX graphs with seeded initial weights:
//! training them is then the same code path as finetuning an imported file.

use serde::{Deserialize, Serialize};
use zoo_cards::Preprocessing;
use zoo_onnx::builder::{Attr, GraphBuilder, SeededRng};
use zoo_onnx::pb::ModelProto;

mod linear2d;

use linear2d::linear2d;
pub use linear2d::FEATURES;

/// The activation of an `mlp`'s hidden layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Sigmoid,
    Tanh,
    #[default]
    Relu,
}

impl Activation {
    fn onnx_op(self) -> &'static str {
        match self {
            Activation::Sigmoid => "Sigmoid",
            Activation::Tanh => "Tanh",
            Activation::Relu => "Relu",
        }
    }
}

impl std::str::FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sigmoid" => Ok(Activation::Sigmoid),
            "tanh" => Ok(Activation::Tanh),
            "relu" => Ok(Activation::Relu),
            _ => Err(format!("`{s}`: expected sigmoid, tanh or relu")),
        }
    }
}

/// An architecture and its knobs (`--hidden`, `--activation` for `mlp`). Recorded in a run's
/// config.json (older runs wrote just the name).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "SpecRecord")]
pub struct ArchSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden: Vec<usize>,
    #[serde(default)]
    pub activation: Activation,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SpecRecord {
    Name(String),
    Spec {
        name: String,
        #[serde(default)]
        hidden: Vec<usize>,
        #[serde(default)]
        activation: Activation,
    },
}

impl From<SpecRecord> for ArchSpec {
    fn from(r: SpecRecord) -> Self {
        match r {
            SpecRecord::Name(name) => ArchSpec::named(&name),
            SpecRecord::Spec {
                name,
                hidden,
                activation,
            } => ArchSpec {
                name,
                hidden,
                activation,
            },
        }
    }
}

impl ArchSpec {
    /// An architecture with its default knobs (`mlp`: 100 and 30 hidden units, ReLU).
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
            hidden: if name == "mlp" {
                vec![100, 30]
            } else {
                Vec::new()
            },
            activation: Activation::Relu,
        }
    }

    /// `mlp-100-30-relu`, `lenet5`: for run directory names and messages.
    pub fn label(&self) -> String {
        if self.name != "mlp" {
            return self.name.clone();
        }
        let widths: Vec<String> = self.hidden.iter().map(|h| h.to_string()).collect();
        format!(
            "mlp-{}-{}",
            widths.join("-"),
            self.activation.onnx_op().to_lowercase()
        )
    }
}

/// A freshly initialised network and how to feed and (later) finetune it.
pub struct Architecture {
    pub model: ModelProto,
    pub preprocessing: Preprocessing,
    /// Layers a later finetune freezes by default (its feature extractor).
    pub freeze: Vec<String>,
    /// The classifier layer a later finetune replaces.
    pub head: String,
    /// Layers that stay fixed even when trained from scratch (`linear2d`'s hand-made features).
    pub fixed: Vec<String>,
}

pub const ARCHITECTURES: &[&str] = &["lenet5", "mnist-cnn", "mlp", "linear2d"];

/// White digits on black, 28x28 grayscale, scaled to 0..1 (as the lenet card).
fn mnist_preprocessing() -> Preprocessing {
    Preprocessing {
        resize: zoo_cards::ResizeMode::Direct,
        size: [28, 28],
        resize_shorter: None,
        interpolation: zoo_cards::Interpolation::Bilinear,
        color: zoo_cards::ColorOrder::Gray,
        scale: 1.0 / 255.0,
        mean: vec![0.0],
        std: vec![1.0],
    }
}

/// The most parameters `zoo train` builds (1 GiB of f32 weights; training holds about four
/// times that with gradients and optimizer state).
pub const MAX_PARAMETERS: u128 = 1 << 28;

/// The parameters `spec` with `classes` outputs would have (exact for the hidden and output
/// layers, a bound for the fixed convolutional bodies), computed before anything is allocated.
pub fn parameter_count(spec: &ArchSpec, classes: usize) -> u128 {
    let layers = |widths: &[u128]| -> u128 { widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum() };
    let classes = classes as u128;
    match spec.name.as_str() {
        "mlp" => {
            let widths: Vec<u128> = std::iter::once(28 * 28)
                .chain(spec.hidden.iter().map(|&h| h as u128))
                .chain(std::iter::once(classes))
                .collect();
            layers(&widths)
        }
        // A fixed body (under 1 M parameters) and a last layer from 50 or 256 features.
        "lenet5" => (1 << 20) + layers(&[50, classes]),
        "mnist-cnn" => (1 << 20) + layers(&[256, classes]),
        _ => (1 << 20) + layers(&[28 * 28, classes]),
    }
}

pub fn build(spec: &ArchSpec, classes: usize, seed: u64) -> anyhow::Result<Architecture> {
    if classes < 2 {
        anyhow::bail!("a classifier needs at least 2 classes, not {classes}");
    }
    let parameters = parameter_count(spec, classes);
    if parameters > MAX_PARAMETERS {
        anyhow::bail!(
            "{} with {classes} classes would have about {parameters} parameters ({:.1} GiB of weights, about four times that to train); zoo trains up to {MAX_PARAMETERS} (fewer --classes or narrower --hidden)",
            spec.label(),
            parameters as f64 * 4.0 / (1u64 << 30) as f64
        );
    }
    match spec.name.as_str() {
        "lenet5" => Ok(lenet5(classes, seed)),
        "mnist-cnn" => Ok(mnist_cnn(classes, seed)),
        "mlp" => mlp(&spec.hidden, spec.activation, classes, seed),
        "linear2d" => Ok(linear2d(classes, seed)),
        other => anyhow::bail!(
            "unknown architecture `{other}`; architectures: {}",
            ARCHITECTURES.join(", ")
        ),
    }
}

/// He-uniform weights (ReLU networks), zero biases.
struct Init(SeededRng);

impl Init {
    fn weights(&mut self, n: usize, fan_in: usize) -> Vec<f32> {
        let bound = (6.0 / fan_in as f32).sqrt();
        self.0.values(n, bound)
    }
}

/// The lecture's MATLAB LeNet-5: three 3x3 conv + batch norm + ReLU blocks (16, 32, 64
/// channels, 2x2 max-pooling after the first two), fully connected 50 + ReLU, fully connected
/// `classes`, softmax.
fn lenet5(classes: usize, seed: u64) -> Architecture {
    let mut init = Init(SeededRng::new(seed));
    let mut b = GraphBuilder::new("input", &[Some(1), Some(1), Some(28), Some(28)]);
    let mut x = "input".to_string();
    let mut in_ch = 1;
    for (i, out_ch) in [16usize, 32, 64].into_iter().enumerate() {
        x = conv_bn_relu(&mut b, &mut init, i + 1, [in_ch, out_ch], &x);
        if i + 1 < 3 {
            let pool = format!("pool{}", i + 1);
            let out = format!("{pool}_out");
            let window = vec![
                ("kernel_shape", Attr::Ints(vec![2, 2])),
                ("strides", Attr::Ints(vec![2, 2])),
            ];
            b.node(&pool, "MaxPool", &[&x], &[&out], window);
            x = out;
        }
        in_ch = out_ch;
    }
    let flat = 64 * 7 * 7;
    b.node(
        "flatten",
        "Flatten",
        &[&x],
        &["flat"],
        vec![("axis", Attr::Int(1))],
    );
    b.init_f32("fc1_w_0", &[50, flat], init.weights(50 * flat, flat));
    b.init_f32("fc1_b_0", &[50], vec![0.0; 50]);
    b.init_f32("fc2_w_0", &[classes, 50], init.weights(classes * 50, 50));
    b.init_f32("fc2_b_0", &[classes], vec![0.0; classes]);
    let gemm = || vec![("transB", Attr::Int(1))];
    b.node(
        "fc1",
        "Gemm",
        &["flat", "fc1_w_0", "fc1_b_0"],
        &["fc1_out"],
        gemm(),
    );
    b.node("relu4", "Relu", &["fc1_out"], &["relu4_out"], vec![]);
    b.node(
        "fc2",
        "Gemm",
        &["relu4_out", "fc2_w_0", "fc2_b_0"],
        &["fc2_out"],
        gemm(),
    );
    b.node(
        "softmax",
        "Softmax",
        &["fc2_out"],
        &["prob"],
        vec![("axis", Attr::Int(1))],
    );
    b.output("prob", &[Some(1), Some(classes)]);
    Architecture {
        model: b.build(13),
        preprocessing: mnist_preprocessing(),
        freeze: ["conv1", "bn1", "conv2", "bn2", "conv3", "bn3"]
            .map(String::from)
            .to_vec(),
        head: "fc2".into(),
        fixed: Vec::new(),
    }
}

/// LeNet-5 block `n`: a 3x3 convolution (pads 1), batch norm and ReLU; the ReLU's output.
fn conv_bn_relu(
    b: &mut GraphBuilder,
    init: &mut Init,
    n: usize,
    [in_ch, out_ch]: [usize; 2],
    x: &str,
) -> String {
    let (conv, bn, relu) = (format!("conv{n}"), format!("bn{n}"), format!("relu{n}"));
    let (w, bias) = (format!("{conv}_w_0"), format!("{conv}_b_0"));
    b.init_f32(
        &w,
        &[out_ch, in_ch, 3, 3],
        init.weights(out_ch * in_ch * 9, in_ch * 9),
    );
    b.init_f32(&bias, &[out_ch], vec![0.0; out_ch]);
    for (suffix, value) in [("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", 1.0)] {
        b.init_f32(&format!("{bn}_{suffix}"), &[out_ch], vec![value; out_ch]);
    }
    let (c_out, bn_out, relu_out) = (
        format!("{conv}_out"),
        format!("{bn}_out"),
        format!("{relu}_out"),
    );
    let kernel = vec![
        ("kernel_shape", Attr::Ints(vec![3, 3])),
        ("pads", Attr::Ints(vec![1, 1, 1, 1])),
    ];
    b.node(&conv, "Conv", &[x, &w, &bias], &[&c_out], kernel);
    let stats = ["scale", "bias", "mean", "var"].map(|s| format!("{bn}_{s}"));
    let bn_inputs = [c_out.as_str(), &stats[0], &stats[1], &stats[2], &stats[3]];
    let bn_attrs = vec![
        ("epsilon", Attr::Float(1e-5)),
        ("momentum", Attr::Float(0.9)),
    ];
    b.node(&bn, "BatchNormalization", &bn_inputs, &[&bn_out], bn_attrs);
    b.node(&relu, "Relu", &[&bn_out], &[&relu_out], vec![]);
    relu_out
}

/// A 28x28 gray digit input, flattened to `flat` (`[N, 784]`).
fn flat_digits() -> GraphBuilder {
    let mut b = GraphBuilder::new("input", &[Some(1), Some(1), Some(28), Some(28)]);
    b.node(
        "flatten",
        "Flatten",
        &["input"],
        &["flat"],
        vec![("axis", Attr::Int(1))],
    );
    b
}

/// A multilayer perceptron on the flattened 28x28 pixels: `hidden` widths with `activation`,
/// then `classes` outputs and a softmax (the lecture's 784-100-30-10 by default).
fn mlp(
    hidden: &[usize],
    activation: Activation,
    classes: usize,
    seed: u64,
) -> anyhow::Result<Architecture> {
    if hidden.is_empty() || hidden.iter().any(|&h| h == 0 || h > 65_536) {
        anyhow::bail!("--hidden needs one or more widths from 1 to 65536, e.g. 100,30");
    }
    let mut init = Init(SeededRng::new(seed));
    let mut b = flat_digits();
    let widths: Vec<usize> = std::iter::once(28 * 28)
        .chain(hidden.iter().copied())
        .chain(std::iter::once(classes))
        .collect();
    let mut x = "flat".to_string();
    let layers = widths.len() - 1;
    for (i, pair) in widths.windows(2).enumerate() {
        let (fan_in, out) = (pair[0], pair[1]);
        let fc = format!("fc{}", i + 1);
        // Glorot-uniform for sigmoid/tanh, He for ReLU (what Keras and PyTorch users pick).
        let w = match activation {
            Activation::Relu => init.weights(out * fan_in, fan_in),
            _ => init
                .0
                .values(out * fan_in, (6.0 / (fan_in + out) as f32).sqrt()),
        };
        b.init_f32(&format!("{fc}_w_0"), &[out, fan_in], w);
        b.init_f32(&format!("{fc}_b_0"), &[out], vec![0.0; out]);
        let out_name = format!("{fc}_out");
        b.node(
            &fc,
            "Gemm",
            &[&x, &format!("{fc}_w_0"), &format!("{fc}_b_0")],
            &[&out_name],
            vec![("transB", Attr::Int(1))],
        );
        x = out_name;
        if i + 1 < layers {
            let act = format!("act{}", i + 1);
            b.node(
                &act,
                activation.onnx_op(),
                &[&x],
                &[&format!("{act}_out")],
                vec![],
            );
            x = format!("{act}_out");
        }
    }
    b.node(
        "softmax",
        "Softmax",
        &[&x],
        &["prob"],
        vec![("axis", Attr::Int(1))],
    );
    b.output("prob", &[Some(1), Some(classes)]);
    let head = format!("fc{layers}");
    Ok(Architecture {
        model: b.build(13),
        preprocessing: mnist_preprocessing(),
        freeze: (1..layers).map(|i| format!("fc{i}")).collect(),
        head,
        fixed: Vec::new(),
    })
}

/// The ONNX Model Zoo's MNIST CNN (mnist-8), with its node and initializer names, so the lenet
/// card's freeze plan and head apply: 5x5 conv 8 + ReLU + 2x2 pool, 5x5 conv 16 + ReLU + 3x3
/// pool, a 256 x `classes` matrix product.
fn mnist_cnn(classes: usize, seed: u64) -> Architecture {
    let mut init = Init(SeededRng::new(seed));
    let mut b = GraphBuilder::new("Input3", &[Some(1), Some(1), Some(28), Some(28)]);
    b.init_f32("Parameter5", &[8, 1, 5, 5], init.weights(200, 25));
    b.init_f32("Parameter6", &[8, 1, 1], vec![0.0; 8]);
    b.init_f32("Parameter87", &[16, 8, 5, 5], init.weights(3200, 200));
    b.init_f32("Parameter88", &[16, 1, 1], vec![0.0; 16]);
    b.init_f32(
        "Parameter193",
        &[16, 4, 4, classes],
        init.weights(256 * classes, 256),
    );
    b.init_f32("Parameter194", &[1, classes], vec![0.0; classes]);
    b.init_i64("Pooling160_Output_0_reshape0_shape", &[1, 256]);
    b.init_i64("Parameter193_reshape1_shape", &[256, classes as i64]);
    for (name, op, inputs, output, window) in MNIST_CNN_NODES {
        let attrs = match (*op, window) {
            ("Conv", Some(k)) => vec![
                ("kernel_shape", Attr::Ints(vec![*k, *k])),
                ("strides", Attr::Ints(vec![1, 1])),
                ("auto_pad", Attr::Str("SAME_UPPER")),
            ],
            (_, Some(k)) => vec![
                ("kernel_shape", Attr::Ints(vec![*k, *k])),
                ("strides", Attr::Ints(vec![*k, *k])),
            ],
            (_, None) => vec![],
        };
        b.node(name, op, inputs, &[output], attrs);
    }
    b.output("Plus214_Output_0", &[Some(1), Some(classes)]);
    Architecture {
        model: b.build(8),
        preprocessing: mnist_preprocessing(),
        freeze: vec!["Convolution28".into(), "Convolution110".into()],
        head: "Times212".into(),
        fixed: Vec::new(),
    }
}

/// The ONNX zoo's MNIST graph (mnist-8), node by node: name, op, inputs, output, and the
/// window of a Conv (SAME_UPPER, stride 1) or MaxPool (stride = window).
type NodeRow = (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
    Option<i64>,
);
const MNIST_CNN_NODES: &[NodeRow] = &[
    (
        "Times212_reshape1",
        "Reshape",
        &["Parameter193", "Parameter193_reshape1_shape"],
        "Parameter193_reshape1",
        None,
    ),
    (
        "Convolution28",
        "Conv",
        &["Input3", "Parameter5"],
        "Convolution28_Output_0",
        Some(5),
    ),
    (
        "Plus30",
        "Add",
        &["Convolution28_Output_0", "Parameter6"],
        "Plus30_Output_0",
        None,
    ),
    (
        "ReLU32",
        "Relu",
        &["Plus30_Output_0"],
        "ReLU32_Output_0",
        None,
    ),
    (
        "Pooling66",
        "MaxPool",
        &["ReLU32_Output_0"],
        "Pooling66_Output_0",
        Some(2),
    ),
    (
        "Convolution110",
        "Conv",
        &["Pooling66_Output_0", "Parameter87"],
        "Convolution110_Output_0",
        Some(5),
    ),
    (
        "Plus112",
        "Add",
        &["Convolution110_Output_0", "Parameter88"],
        "Plus112_Output_0",
        None,
    ),
    (
        "ReLU114",
        "Relu",
        &["Plus112_Output_0"],
        "ReLU114_Output_0",
        None,
    ),
    (
        "Pooling160",
        "MaxPool",
        &["ReLU114_Output_0"],
        "Pooling160_Output_0",
        Some(3),
    ),
    (
        "Times212_reshape0",
        "Reshape",
        &["Pooling160_Output_0", "Pooling160_Output_0_reshape0_shape"],
        "Pooling160_Output_0_reshape0",
        None,
    ),
    (
        "Times212",
        "MatMul",
        &["Pooling160_Output_0_reshape0", "Parameter193_reshape1"],
        "Times212_Output_0",
        None,
    ),
    (
        "Plus214",
        "Add",
        &["Times212_Output_0", "Parameter194"],
        "Plus214_Output_0",
        None,
    ),
];
