//! Runs a zoo network and reference engines on the same inputs and reports agreement.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::Serialize;
use zoo_net::{NetError, Network};

use crate::compare::{argmax, compare, Agreement};

/// Default tolerance on `max_rel_diff`.
pub const DEFAULT_TOLERANCE: f64 = 1e-4;

/// A reference runtime (tract, ONNX Runtime).
pub trait Engine {
    fn name(&self) -> &str;
    /// The batch size a request for `batch` really runs at (1 for files that fix it).
    fn effective_batch(&self, batch: usize) -> usize;
    /// Outputs for `images` (a flat run of `C*H*W` samples) run `batch` at a time, one row
    /// per sample.
    fn run(&self, images: &[f32], batch: usize) -> Result<Vec<Vec<f32>>, String>;
}

impl Engine for crate::TractEngine {
    fn name(&self) -> &str {
        "tract"
    }

    fn effective_batch(&self, batch: usize) -> usize {
        crate::TractEngine::effective_batch(self, batch)
    }

    fn run(&self, images: &[f32], batch: usize) -> Result<Vec<Vec<f32>>, String> {
        self.run_batch(images, batch).map_err(|e| e.to_string())
    }
}

/// The batch an engine really runs a request for `batch` at: files with a symbolic batch axis
/// take it, files that fix it run one image at a time.
pub(crate) fn batch_for(any_batch: bool, batch: usize) -> usize {
    if any_batch {
        batch.max(1)
    } else {
        1
    }
}

/// The true class of each sample, to report agreement per class.
#[derive(Clone, Copy, Debug)]
pub struct SampleClasses<'a> {
    pub of_sample: &'a [usize],
    pub names: &'a [String],
}

#[derive(Clone, Debug, Serialize)]
pub struct ClassAgreement {
    pub class: String,
    pub samples: usize,
    pub top1_agreement: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct EngineReport {
    pub name: String,
    pub pass: bool,
    /// The batch size this engine ran at.
    pub batch: usize,
    #[serde(flatten)]
    pub agreement: Agreement,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_class: Vec<ClassAgreement>,
}

fn per_class(
    ours: &[Vec<f32>],
    reference: &[Vec<f32>],
    classes: SampleClasses<'_>,
) -> Vec<ClassAgreement> {
    classes
        .names
        .iter()
        .enumerate()
        .filter_map(|(k, name)| {
            let picked: Vec<usize> = (0..ours.len())
                .filter(|&i| classes.of_sample.get(i) == Some(&k))
                .collect();
            // A class no sample has says nothing (a 1000-class model on a few photos).
            if picked.is_empty() {
                return None;
            }
            let same = picked
                .iter()
                .filter(|&&i| argmax(&ours[i]) == argmax(&reference[i]))
                .count();
            Some(ClassAgreement {
                class: name.clone(),
                samples: picked.len(),
                top1_agreement: same as f64 / picked.len() as f64,
            })
        })
        .collect()
}

#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub pass: bool,
    pub samples: usize,
    pub batch: usize,
    pub tolerance: f64,
    pub max_abs_diff: f64,
    pub max_rel_diff: f64,
    pub top1_agreement: f64,
    /// The lowest top-1 agreement of any engine, per true class (when classes are known).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_class: Vec<ClassAgreement>,
    pub engines: Vec<EngineReport>,
}

/// Runs `net` on `images` in batches of `batch` up to `value` (the graph output, or the logits)
/// and returns one row per sample.
pub fn run_network<B: Backend>(
    net: &Network<B>,
    images: &[f32],
    batch: usize,
    value: &str,
    device: &B::Device,
) -> Result<Vec<Vec<f32>>, NetError> {
    let [c, h, w] = net.plan().graph.input_chw();
    let size = c * h * w;
    let mut rows = Vec::with_capacity(images.len() / size);
    for chunk in images.chunks(size * batch.max(1)) {
        let n = chunk.len() / size;
        let input =
            Tensor::<B, 4>::from_data(TensorData::new(chunk.to_vec(), [n, c, h, w]), device);
        let out = net.forward_matrix(input, value)?;
        let [_, classes] = out.dims();
        let flat = out
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("float output");
        rows.extend(flat.chunks(classes).map(<[f32]>::to_vec));
    }
    Ok(rows)
}

/// Makes `value` the model's first graph output (its shape left to the engines), so engines
/// report it: the logits, which a saturated final Softmax would hide.
pub fn expose_first_output(model: &mut zoo_onnx::pb::ModelProto, value: &str) {
    use zoo_onnx::pb::{type_proto, TypeProto, ValueInfoProto};
    let Some(graph) = model.graph.as_mut() else {
        return;
    };
    if graph.output.first().is_some_and(|o| o.name == value) {
        return;
    }
    let float = 1; // TensorProto.DataType.FLOAT
    graph.output.insert(
        0,
        ValueInfoProto {
            name: value.to_string(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: float,
                    shape: None,
                })),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
}

/// One engine's outputs, one row per image, and the batch it ran at.
pub struct EngineRows {
    pub name: String,
    pub batch: usize,
    pub rows: Vec<Vec<f32>>,
}

/// Compares outputs already computed by zoo (`ours`, one row per image, at `batch`) with every
/// engine run on the same images.
pub fn verify_outputs(
    ours: &[Vec<f32>],
    engines: &[&dyn Engine],
    images: &[f32],
    classes: Option<SampleClasses<'_>>,
    batch: usize,
    tolerance: f64,
) -> Result<VerifyReport, String> {
    let theirs = (engines.iter())
        .map(|engine| {
            Ok(EngineRows {
                name: engine.name().to_string(),
                batch: engine.effective_batch(batch),
                rows: engine.run(images, batch)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(compare_outputs(ours, &theirs, classes, batch, tolerance))
}

/// Compares zoo's rows (`ours`, at `batch`) with each engine's rows for the same images.
pub fn compare_outputs(
    ours: &[Vec<f32>],
    theirs: &[EngineRows],
    classes: Option<SampleClasses<'_>>,
    batch: usize,
    tolerance: f64,
) -> VerifyReport {
    let mut reports = Vec::new();
    for engine in theirs {
        let reference = &engine.rows;
        let agreement = compare(ours, reference);
        reports.push(EngineReport {
            name: engine.name.clone(),
            pass: agreement.max_rel_diff <= tolerance && agreement.top1_agreement == 1.0,
            batch: engine.batch,
            per_class: classes
                .map(|c| per_class(ours, reference, c))
                .unwrap_or_default(),
            agreement,
        });
    }
    let worst_per_class: Vec<ClassAgreement> = match reports.first() {
        Some(first) => (0..first.per_class.len())
            .map(|k| {
                let mut worst = first.per_class[k].clone();
                for r in &reports[1..] {
                    worst.top1_agreement = worst.top1_agreement.min(r.per_class[k].top1_agreement);
                }
                worst
            })
            .collect(),
        None => Vec::new(),
    };
    let worst =
        |f: fn(&Agreement) -> f64| reports.iter().map(|r| f(&r.agreement)).fold(0.0, f64::max);
    VerifyReport {
        pass: !reports.is_empty() && reports.iter().all(|r| r.pass),
        samples: ours.len(),
        batch,
        tolerance,
        max_abs_diff: worst(|a| a.max_abs_diff),
        max_rel_diff: worst(|a| a.max_rel_diff),
        top1_agreement: reports
            .iter()
            .map(|r| r.agreement.top1_agreement)
            .fold(1.0, f64::min),
        per_class: worst_per_class,
        engines: reports,
    }
}
