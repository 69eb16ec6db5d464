//! The trainable network: parameters as burn `Param`s (named after the ONNX initializers) and
//! the plan that says how to run them.

use std::collections::HashSet;
use std::sync::Arc;

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::error::NetError;
use crate::exec::run_graph;
use crate::plan::{build_plan, ParamRole, Plan};

#[derive(Module, Debug)]
pub struct Network<B: Backend> {
    /// Flattened parameter tensors, in `plan.params` order; reshaped to their ONNX dims when used.
    pub(crate) params: Vec<Param<Tensor<B, 1>>>,
    #[module(skip)]
    pub(crate) plan: Arc<Plan>,
    /// Which parameters train; kept here because backends without autodiff drop the flag.
    #[module(skip)]
    pub(crate) trainable: Vec<bool>,
}

impl<B: Backend> Network<B> {
    /// Imports an ONNX file.
    pub fn load(path: impl AsRef<std::path::Path>, device: &B::Device) -> Result<Self, NetError> {
        let model = zoo_onnx::OnnxModel::load(path)?;
        Ok(Self::from_model(model, device))
    }

    /// Builds the network from a parsed model; every parameter starts trainable except buffers.
    pub fn from_model(model: zoo_onnx::OnnxModel, device: &B::Device) -> Self {
        let (plan, values) = build_plan(model);
        let params = values
            .into_iter()
            .zip(&plan.params)
            .map(|(v, spec)| {
                let len = v.len();
                let tensor = Tensor::<B, 1>::from_data(TensorData::new(v, [len]), device);
                Param::from_tensor(tensor).set_require_grad(spec.role == ParamRole::Learnable)
            })
            .collect();
        let trainable = plan
            .params
            .iter()
            .map(|p| p.role == ParamRole::Learnable)
            .collect();
        Self {
            params,
            plan: Arc::new(plan),
            trainable,
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Runs the graph on an NCHW batch and returns `[batch, outputs]`.
    pub fn forward(&self, input: Tensor<B, 4>) -> Result<Tensor<B, 2>, NetError> {
        let [n, c, h, w] = input.dims();
        let expected = self.plan.graph.input_chw();
        if [c, h, w] != expected {
            return Err(NetError::InputShape {
                expected: format!("[N, {}, {}, {}]", expected[0], expected[1], expected[2]),
                found: format!("[{n}, {c}, {h}, {w}]"),
            });
        }
        if n == 0 {
            return Err(NetError::InputShape {
                expected: "a batch of at least one image".into(),
                found: "an empty batch".into(),
            });
        }
        let declared = self.plan.graph.shapes.declared_batch;
        if let Some(reason) = &self.plan.graph.shapes.fixed_batch {
            if n != declared {
                return Err(NetError::FixedBatch {
                    batch: declared,
                    reason: reason.clone(),
                });
            }
        }
        Ok(run_graph(self, input))
    }

    /// The current value of a parameter as a tensor of its ONNX dims (flattened).
    pub fn param_tensor(&self, index: usize) -> Tensor<B, 1> {
        self.params[index].val()
    }

    /// Parameter values by ONNX name, in plan order, read back to the host.
    pub fn param_values(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        self.plan
            .params
            .iter()
            .zip(&self.params)
            .map(|(spec, p)| {
                let values = p
                    .val()
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .expect("float parameters");
                (spec.name.clone(), spec.dims.clone(), values)
            })
            .collect()
    }

    /// Whether a parameter will receive gradients.
    pub fn is_trainable(&self, index: usize) -> bool {
        self.trainable[index]
    }

    /// Makes exactly the learnable parameters of `layers` trainable (or frozen, with
    /// `trainable = false`); unknown layer names are an error that lists the known ones.
    pub fn set_layers_trainable(
        mut self,
        layers: &[String],
        trainable: bool,
    ) -> Result<Self, NetError> {
        let known: HashSet<&str> = self.plan.layers.iter().map(|l| l.name.as_str()).collect();
        if let Some(unknown) = layers.iter().find(|l| !known.contains(l.as_str())) {
            return Err(NetError::UnknownLayer {
                name: unknown.clone(),
                known: self
                    .plan
                    .layers
                    .iter()
                    .map(|l| l.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let plan = self.plan.clone();
        let params = std::mem::take(&mut self.params);
        self.params = params
            .into_iter()
            .zip(&plan.params)
            .enumerate()
            .map(|(i, (p, spec))| {
                if spec.role == ParamRole::Learnable && layers.contains(&spec.layer) {
                    self.trainable[i] = trainable;
                    p.set_require_grad(trainable)
                } else {
                    p
                }
            })
            .collect();
        Ok(self)
    }
}
