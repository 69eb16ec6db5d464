//! The trainable network: parameters as burn `Param`s (named after the ONNX initializers) and
//! the plan that says how to run them.

use std::collections::HashSet;
use std::sync::Arc;
use zoo_onnx::ops::{Array, Nn};

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::error::NetError;
use crate::exec::{as_matrix, run_nodes, Value};
use crate::plan::{build_plan, ParamRole, Plan};

/// Where a frozen prefix ends: the value to cache, and the first node after it.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureCut {
    pub value: String,
    pub start: usize,
}

/// An intermediate value of the graph (e.g. cached features), with its ONNX dims.
#[derive(Clone, Debug)]
pub struct Activation<B: Backend> {
    pub(crate) value: Value<B>,
}

impl<B: Backend> Activation<B> {
    pub fn dims(&self) -> Vec<usize> {
        self.value.dims()
    }

    /// Host copy, row-major over `dims()`.
    pub fn to_vec(&self) -> Vec<f32> {
        self.value
            .t
            .clone()
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("float values")
    }

    pub fn from_vec(values: Vec<f32>, dims: &[usize], device: &B::Device) -> Self {
        let padded = crate::exec::pad_dims(dims);
        let t = Tensor::<B, { crate::exec::PADDED }>::from_data(
            TensorData::new(values, padded),
            device,
        );
        Self {
            value: Value::new(t, dims.len()),
        }
    }
}

#[derive(Module, Debug)]
pub struct Network<B: Backend> {
    /// Flattened parameter tensors, in `plan.params` order; reshaped to their ONNX dims when used.
    pub(crate) params: Vec<Param<Tensor<B, 1>>>,
    #[module(skip)]
    pub(crate) plan: Arc<Plan>,
    /// Which parameters train; kept here because backends without autodiff drop the flag.
    #[module(skip)]
    pub(crate) trainable: Vec<bool>,
    /// Set while training with batch statistics (see [`crate::batchnorm`]).
    #[module(skip)]
    pub(crate) batch_stats: Option<crate::batchnorm::Sink>,
}

/// Parameter ids follow plan order, so an optimizer's saved state (keyed by id) attaches to
/// the same parameters when a run is resumed in a new process.
fn param_id(index: usize) -> burn::module::ParamId {
    burn::module::ParamId::from(index as u64 + 1)
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
            .enumerate()
            .map(|(i, (v, spec))| {
                let len = v.len();
                let tensor = Tensor::<B, 1>::from_data(TensorData::new(v, [len]), device);
                Param::initialized(param_id(i), tensor)
                    .set_require_grad(spec.role == ParamRole::Learnable)
            })
            .collect();
        let trainable = plan
            .params
            .iter()
            .map(|p| p.role == ParamRole::Learnable)
            .collect();
        let mut net = Self {
            params,
            plan: Arc::new(plan),
            trainable,
            batch_stats: None,
        };
        if let Some(reason) = crate::batch_proof::disproved(&net, device) {
            eprintln!("warning: this model runs at batch size 1 only: {reason}");
            if let Some(plan) = Arc::get_mut(&mut net.plan) {
                plan.graph.shapes.fixed_batch = Some(reason);
            }
        }
        net
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Runs the graph on an NCHW batch and returns `[batch, outputs]`.
    pub fn forward(&self, input: Tensor<B, 4>) -> Result<Tensor<B, 2>, NetError> {
        let output = self.plan.graph.output.name.clone();
        self.forward_matrix(input, &output)
    }

    /// The logits, with the 4-D `value` passed through `tap` as soon as it is computed: how
    /// Grad-CAM makes a layer's feature maps a gradient leaf and reads their gradient.
    pub fn forward_logits_tapped(
        &self,
        input: Tensor<B, 4>,
        value: &str,
        tap: &mut dyn FnMut(Tensor<B, 4>) -> Tensor<B, 4>,
    ) -> Result<Tensor<B, 2>, NetError> {
        self.check_input(&input)?;
        let out = crate::exec::run_nodes_tapped(
            self,
            (&self.plan.graph.input.name, self.entry(input)),
            0,
            self.logits_value(),
            Some((value, tap)),
        );
        Ok(as_matrix(out))
    }

    /// Like [`forward`](Self::forward) but returns the pre-softmax logits when the graph ends
    /// in a Softmax (training needs them; the exported model keeps the Softmax).
    pub fn forward_logits(&self, input: Tensor<B, 4>) -> Result<Tensor<B, 2>, NetError> {
        let want = self.logits_value().to_string();
        self.forward_matrix(input, &want)
    }

    /// Runs to `value` and returns it as `[batch, features]`.
    pub fn forward_matrix(
        &self,
        input: Tensor<B, 4>,
        value: &str,
    ) -> Result<Tensor<B, 2>, NetError> {
        Ok(as_matrix(self.forward_to(input, value)?.value))
    }

    /// The value holding the logits: the Softmax input when the graph ends in a Softmax.
    pub fn logits_value(&self) -> &str {
        self.plan.graph.logits_value()
    }

    /// The NCHW batch as the graph's input value (channels last for an NHWC graph).
    fn entry(&self, input: Tensor<B, 4>) -> Value<B> {
        match self.plan.graph.layout {
            zoo_onnx::InputLayout::Nchw => Value::from4(input, 4),
            zoo_onnx::InputLayout::Nhwc => Value::from4(input.permute([0, 2, 3, 1]), 4),
        }
    }

    fn check_input(&self, input: &Tensor<B, 4>) -> Result<(), NetError> {
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
        if let Some(reason) = &self.plan.graph.shapes.fixed_batch {
            if n != self.plan.graph.shapes.declared_batch {
                return Err(NetError::FixedBatch {
                    batch: self.plan.graph.shapes.declared_batch,
                    reason: reason.clone(),
                });
            }
        }
        Ok(())
    }

    /// Runs from the input until `value` is computed.
    pub fn forward_to(&self, input: Tensor<B, 4>, value: &str) -> Result<Activation<B>, NetError> {
        self.check_input(&input)?;
        if let Some(activation) = crate::image_parallel::forward_to(self, &input, value) {
            return activation;
        }
        let v = run_nodes(
            self,
            (&self.plan.graph.input.name, self.entry(input)),
            0,
            value,
        );
        Ok(Activation { value: v })
    }

    /// Continues from a cached activation of `cut` (see [`feature_cut`](Self::feature_cut))
    /// to `until`, returning `[batch, features]`.
    pub fn forward_from(
        &self,
        cut: &FeatureCut,
        activation: Activation<B>,
        until: &str,
    ) -> Tensor<B, 2> {
        as_matrix(run_nodes(
            self,
            (&cut.value, activation.value),
            cut.start,
            until,
        ))
    }

    /// Where the frozen prefix ends: the single value through which everything trainable is
    /// reached, after the last frozen data node. `None` when the first data node trains, when
    /// no single value separates the two parts, or when the prefix is stochastic (Dropout).
    pub fn feature_cut(&self) -> Option<FeatureCut> {
        let graph = &self.plan.graph;
        let trains = |node: &zoo_onnx::Node| {
            node.inputs.iter().any(|i| {
                self.plan
                    .param_index
                    .get(i)
                    .is_some_and(|&p| self.trainable[p])
            }) || node.inputs.iter().any(|i| {
                graph
                    .nodes
                    .iter()
                    .find(|n| {
                        n.outputs[0] == *i
                            && matches!(
                                n.op,
                                zoo_onnx::Op::Array(Array::Reshape { .. })
                                    | zoo_onnx::Op::Array(Array::Identity)
                            )
                    })
                    .is_some_and(|n| {
                        n.inputs.iter().any(|j| {
                            self.plan
                                .param_index
                                .get(j)
                                .is_some_and(|&p| self.trainable[p])
                        })
                    })
            })
        };
        let data = &self.plan.data_dependent;
        let first_trainable =
            (0..graph.nodes.len()).find(|&i| data[i] && trains(&graph.nodes[i]))?;
        for k in (1..=first_trainable).rev() {
            if !data[k] {
                continue;
            }
            let produced_before: std::collections::HashSet<&str> = graph.nodes[..k]
                .iter()
                .enumerate()
                .filter(|(i, _)| data[*i])
                .map(|(_, n)| n.outputs[0].as_str())
                .chain(std::iter::once(graph.input.name.as_str()))
                .collect();
            let mut frontier: Vec<&str> = graph.nodes[k..]
                .iter()
                .flat_map(|n| n.inputs.iter().map(String::as_str))
                .filter(|i| produced_before.contains(i))
                .collect();
            frontier.sort_unstable();
            frontier.dedup();
            let stochastic = graph.nodes[..k]
                .iter()
                .any(|n| matches!(n.op, zoo_onnx::Op::Nn(Nn::Dropout { .. })));
            if frontier.len() == 1 && frontier[0] != graph.input.name && !stochastic {
                return Some(FeatureCut {
                    value: frontier[0].to_string(),
                    start: k,
                });
            }
        }
        None
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
            .enumerate()
            .map(|(i, spec)| (spec.name.clone(), spec.dims.clone(), self.param_value(i)))
            .collect()
    }

    /// burn's id of each parameter (optimizers and gradients are keyed by it), in plan order.
    pub fn param_ids(&self) -> Vec<burn::module::ParamId> {
        self.params.iter().map(|p| p.id).collect()
    }

    /// One parameter's current values, read back to the host.
    pub fn param_value(&self, index: usize) -> Vec<f32> {
        self.params[index]
            .val()
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("float parameters")
    }

    /// Replaces a parameter's tensor by `f` of it (same id and trainability). The tensor is
    /// moved, not cloned, so `f` can update it in place (see [`crate::host::update_values`]).
    pub fn map_param(&mut self, index: usize, f: impl FnOnce(Tensor<B, 1>) -> Tensor<B, 1>) {
        let device = self.params[index].val().device();
        let id = self.params[index].id;
        let empty = Param::initialized(id, Tensor::empty([0], &device));
        let tensor = f(std::mem::replace(&mut self.params[index], empty).into_value());
        self.params[index] = Param::initialized(id, tensor).set_require_grad(self.trainable[index]);
    }

    /// Replaces a parameter's values (same id, so optimizer state stays attached).
    pub fn set_param_values(&mut self, index: usize, values: Vec<f32>) {
        let device = self.params[index].val().device();
        let len = values.len();
        let tensor = Tensor::<B, 1>::from_data(TensorData::new(values, [len]), &device);
        let id = self.params[index].id;
        self.params[index] = Param::initialized(id, tensor).set_require_grad(self.trainable[index]);
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
