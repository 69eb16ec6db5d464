//! tract as the independent reference runtime: it parses the ONNX file itself, so agreement
//! with it checks our parser, our op semantics and our weights together.

use std::path::Path;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

#[derive(Debug, thiserror::Error)]
#[error("tract could not run the model: {0}")]
pub struct TractError(String);

/// Runs `f`, turning a panic into an error that names tract.
fn contained<T>(f: impl FnOnce() -> Result<T, TractError>) -> Result<T, TractError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into());
        Err(TractError(format!("tract panicked: {what}")))
    })
}

fn err(e: impl std::fmt::Display) -> TractError {
    TractError(format!("{e:#}"))
}

/// tract's optimiser patches the whole model once per rewrite, which grows with the square of
/// the node count (a 2,000-node chain took 5 s, 4,000 nodes 38 s): larger graphs run
/// unoptimised, which is linear and still an independent reference.
const OPTIMISE_MAX_NODES: usize = 1500;

/// An optimised tract plan: for one image at a time (`[1, C, H, W]`), or for any batch
/// (`[N, C, H, W]`, files with a dynamic batch axis such as zoo's exports). Where tract's
/// optimiser fails on a graph (LeViT's stepped slices) the plan runs unoptimised; where a
/// symbolic batch cannot be evaluated (a Resize whose sizes come from the input's shape) a
/// plan for the concrete batch is made for that run.
pub struct TractEngine {
    plan: Arc<TypedRunnableModel>,
    chw: [usize; 3],
    any_batch: bool,
    /// The file takes channels last: NCHW images are transposed before each run.
    nhwc: bool,
    /// The file, kept for plans at a concrete batch (dynamic-batch files only).
    bytes: Vec<u8>,
    concrete: std::sync::Mutex<std::collections::HashMap<usize, Arc<TypedRunnableModel>>>,
}

/// ONNX's ConstantOfShape makes float32 zeros when it has no `value`; tract 0.23 makes
/// float64 ones (and then refuses the graph, torchvision Swin's dynamo export): the default is
/// written out for it.
fn float32_zeros_by_default(proto: &mut tract_onnx::pb::ModelProto) {
    use tract_onnx::pb::{AttributeProto, TensorProto};
    let nodes = proto.graph.iter_mut().flat_map(|g| g.node.iter_mut());
    for node in nodes.filter(|n| n.op_type == "ConstantOfShape") {
        if node.attribute.iter().all(|a| a.name != "value") {
            node.attribute.push(AttributeProto {
                name: "value".into(),
                r#type: 4,
                t: Some(TensorProto {
                    dims: vec![1],
                    data_type: 1,
                    float_data: vec![0.0],
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
}

impl TractEngine {
    pub fn from_path(path: &Path, chw: [usize; 3], any_batch: bool) -> Result<Self, TractError> {
        let bytes = std::fs::read(path).map_err(err)?;
        Self::from_bytes(&bytes, chw, any_batch)
    }

    /// Loads and optimises the model. A panic inside tract (it has some on hostile files) is
    /// contained and reported as an error.
    pub fn from_bytes(bytes: &[u8], chw: [usize; 3], any_batch: bool) -> Result<Self, TractError> {
        contained(|| Self::load(bytes, chw, any_batch))
    }

    fn load(bytes: &[u8], chw: [usize; 3], any_batch: bool) -> Result<Self, TractError> {
        let (plan, nhwc) = Self::plan(bytes, chw, any_batch, None)?;
        Ok(Self {
            plan,
            chw,
            any_batch,
            nhwc,
            bytes: if any_batch {
                bytes.to_vec()
            } else {
                Vec::new()
            },
            concrete: Default::default(),
        })
    }

    /// A plan for one image at a time (`any_batch` false), for any batch, or for the
    /// `concrete` batch of a dynamic-batch file; and whether the file takes channels last.
    fn plan(
        bytes: &[u8],
        chw: [usize; 3],
        any_batch: bool,
        concrete: Option<usize>,
    ) -> Result<(Arc<TypedRunnableModel>, bool), TractError> {
        let [c, h, w] = chw;
        let onnx = tract_onnx::onnx();
        let mut proto = onnx.proto_model_for_read(&mut &bytes[..]).map_err(err)?;
        float32_zeros_by_default(&mut proto);
        let model = onnx.model_for_proto_model(&proto).map_err(err)?;
        // A concrete batch of a dynamic-batch file is the symbolic plan with N set: a file
        // that names its own batch symbol `N` in shape annotations then still agrees.
        let symbol = model.sym("N");
        let batch: TDim = match any_batch {
            true => symbol.clone().into(),
            false => 1.into(),
        };
        let declared: Vec<Option<i64>> = model
            .input_fact(0)
            .map(|f| {
                f.shape
                    .dims()
                    .map(|d| d.concretize().and_then(|x| x.to_i64().ok()))
                    .collect()
            })
            .unwrap_or_default();
        let nhwc = crate::layout::is_nhwc(&declared, chw);
        let fact = if nhwc {
            f32::fact([batch, h.into(), w.into(), c.into()])
        } else {
            f32::fact([batch, c.into(), h.into(), w.into()])
        };
        let large = model.nodes().len() > OPTIMISE_MAX_NODES;
        let mut typed = model
            .with_input_fact(0, fact.into())
            .map_err(err)?
            .into_typed()
            .map_err(err)?;
        if let Some(n) = concrete {
            let values = std::collections::HashMap::from([(symbol, TDim::from(n))]);
            typed = typed.set_symbols(&values).map_err(err)?;
        }
        let typed = match large {
            true => typed,
            false => typed.clone().into_optimized().unwrap_or(typed),
        };
        Ok((typed.into_runnable().map_err(err)?, nhwc))
    }

    /// The plan for a batch of `n` made on first use (see [`TractEngine`]).
    fn concrete_plan(&self, n: usize) -> Result<Arc<TypedRunnableModel>, TractError> {
        let mut plans = self.concrete.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(plan) = plans.get(&n) {
            return Ok(plan.clone());
        }
        let (plan, _) = Self::plan(&self.bytes, self.chw, true, Some(n))?;
        plans.insert(n, plan.clone());
        Ok(plan)
    }

    /// Runs one image (`C*H*W` values) and returns the flattened output.
    pub fn run_one(&self, image: &[f32]) -> Result<Vec<f32>, TractError> {
        Ok(self.run_chunk(image)?.pop().unwrap_or_default())
    }

    /// The batch size a request for `batch` really runs at.
    pub fn effective_batch(&self, batch: usize) -> usize {
        crate::verify::batch_for(self.any_batch, batch)
    }

    /// Runs images `batch` at a time (one at a time for a fixed-batch-1 plan).
    pub fn run_batch(&self, images: &[f32], batch: usize) -> Result<Vec<Vec<f32>>, TractError> {
        let size = self.chw.iter().product::<usize>();
        let mut rows = Vec::with_capacity(images.len() / size.max(1));
        for chunk in images.chunks(size * self.effective_batch(batch)) {
            rows.extend(self.run_chunk(chunk)?);
        }
        Ok(rows)
    }

    fn run_chunk(&self, chunk: &[f32]) -> Result<Vec<Vec<f32>>, TractError> {
        contained(|| self.run_contained(chunk))
    }

    fn run_contained(&self, chunk: &[f32]) -> Result<Vec<Vec<f32>>, TractError> {
        let [c, h, w] = self.chw;
        let n = chunk.len() / (c * h * w);
        let input = if self.nhwc {
            Tensor::from_shape(&[n, h, w, c], &crate::layout::to_nhwc(chunk, self.chw))
                .map_err(err)?
        } else {
            Tensor::from_shape(&[n, c, h, w], chunk).map_err(err)?
        };
        let outputs = match self.plan.run(tvec!(input.clone().into_tvalue())) {
            Ok(outputs) => outputs,
            Err(_) if self.any_batch => self
                .concrete_plan(n)?
                .run(tvec!(input.into_tvalue()))
                .map_err(err)?,
            Err(e) => return Err(err(e)),
        };
        let view = outputs[0].to_plain_array_view::<f32>().map_err(err)?;
        let flat: Vec<f32> = view.iter().copied().collect();
        let per = flat.len() / n.max(1);
        Ok(flat.chunks(per.max(1)).map(<[f32]>::to_vec).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_the_engine_is_an_error() {
        let r: Result<(), TractError> = contained(|| panic!("index out of bounds"));
        let e = r.unwrap_err().to_string();
        assert!(e.contains("tract panicked: index out of bounds"), "{e}");
    }
}
