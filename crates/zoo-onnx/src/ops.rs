//! Typed operators: each ONNX node the importer supports, with its attributes parsed and
//! normalised across opsets 7..current.

use crate::error::{bad_node, OnnxError, Result};
use tract_onnx::pb::{attribute_proto::AttributeType, AttributeProto, NodeProto};

/// Op types zoo imports (and re-exports unchanged).
pub const SUPPORTED_OPS: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "Div",
    "Dropout",
    "Elu",
    "Flatten",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LeakyRelu",
    "LRN",
    "MatMul",
    "Max",
    "MaxPool",
    "Mean",
    "Min",
    "Mul",
    "Pad",
    "PRelu",
    "ReduceMax",
    "ReduceMean",
    "Relu",
    "Reshape",
    "Selu",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Softplus",
    "Split",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Transpose",
    "Unsqueeze",
];

/// Element-wise functions of one tensor whose parameters are fixed at import.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// `min(max(x, min), max)`; ReLU6 is `Clip(0, 6)`. Opset 11 moved the bounds to inputs.
    Clip {
        min: f32,
        max: f32,
    },
    /// `max(0, min(1, alpha x + beta))`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x * HardSigmoid(x)` with alpha 1/6, beta 0.5.
    HardSwish,
    Elu {
        alpha: f32,
    },
    Selu {
        alpha: f32,
        gamma: f32,
    },
    /// `ln(1 + e^x)`.
    Softplus,
}

impl Unary {
    /// The function on one value (constant folding and tests use it; tensors use `exec`).
    pub fn apply(&self, x: f32) -> f32 {
        match *self {
            Unary::Clip { min, max } => x.max(min).min(max),
            Unary::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Unary::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Unary::Elu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha * (x.exp() - 1.0)
                }
            }
            Unary::Selu { alpha, gamma } => {
                gamma * if x > 0.0 { x } else { alpha * (x.exp() - 1.0) }
            }
            Unary::Softplus => x.exp().ln_1p(),
        }
    }
}

/// Element-wise reductions over any number of broadcast inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variadic {
    Sum,
    Mean,
    Max,
    Min,
}

/// Reductions over axes of one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    Mean,
    Max,
}

/// Pad modes (ONNX `Pad`'s `mode`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadKind {
    Constant(f32),
    Reflect,
    Edge,
}

/// Slice ranges per axis: `(axis, start, end, step)` with ONNX's clamping rules applied at
/// import (see [`crate::shapes::slice_range`]).
pub type SliceAxes = Vec<(i64, i64, i64, i64)>;

/// How a convolution or pooling window is padded.
#[derive(Clone, Debug, PartialEq)]
pub enum Padding {
    /// `[top, left, bottom, right]` in ONNX order `[h_begin, w_begin, h_end, w_end]`.
    Explicit([usize; 4]),
    /// Pads computed from the input size so that `out = ceil(in / stride)`; the odd pixel goes
    /// at the end (upper) or at the beginning (lower).
    SameUpper,
    SameLower,
}

impl Padding {
    /// Resolves to explicit `[top, left, bottom, right]` for a given input size.
    pub fn resolve(
        &self,
        input: [usize; 2],
        kernel: [usize; 2],
        strides: [usize; 2],
        dilations: [usize; 2],
    ) -> [usize; 4] {
        match self {
            Padding::Explicit(p) => *p,
            Padding::SameUpper | Padding::SameLower => {
                let mut begin = [0; 2];
                let mut end = [0; 2];
                for i in 0..2 {
                    let out = input[i].div_ceil(strides[i]);
                    let span = (kernel[i] - 1) * dilations[i] + 1;
                    let total = ((out - 1) * strides[i] + span).saturating_sub(input[i]);
                    let small = total / 2;
                    let large = total - small;
                    if *self == Padding::SameUpper {
                        (begin[i], end[i]) = (small, large);
                    } else {
                        (begin[i], end[i]) = (large, small);
                    }
                }
                [begin[0], begin[1], end[0], end[1]]
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConvSpec {
    /// Kernel size; `None` means "take it from the weight".
    pub kernel: Option<[usize; 2]>,
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub group: usize,
    pub padding: Padding,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PoolSpec {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub padding: Padding,
    pub ceil_mode: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Conv(ConvSpec),
    MaxPool(PoolSpec),
    AveragePool {
        pool: PoolSpec,
        count_include_pad: bool,
    },
    GlobalAveragePool,
    GlobalMaxPool,
    BatchNorm {
        epsilon: f32,
        /// Running statistics keep this much of their old value per training step.
        momentum: f32,
    },
    Lrn {
        size: usize,
        alpha: f32,
        beta: f32,
        bias: f32,
    },
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
    },
    MatMul,
    Add,
    Sub,
    Mul,
    Div,
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Sigmoid,
    Tanh,
    /// Target shape; `None` when it comes from the second input (resolved at import).
    Reshape {
        shape: Option<Vec<i64>>,
        allow_zero: bool,
    },
    Flatten {
        axis: i64,
    },
    Dropout {
        ratio: f32,
    },
    /// `legacy`: opset < 13, where softmax runs over all dims from `axis` on, flattened.
    Softmax {
        axis: i64,
        legacy: bool,
    },
    Identity,
    Concat {
        axis: i64,
    },
    Constant,
    ConstantOfShape,
    Unary(Unary),
    /// `x` where positive, `slope * x` elsewhere; the slope (input 1) is a learnable parameter.
    PRelu,
    Variadic(Variadic),
    /// `axes: None` reduces every axis (or none, with `noop_with_empty_axes`).
    Reduce {
        kind: Reduction,
        axes: Option<Vec<i64>>,
        keepdims: bool,
        noop_with_empty_axes: bool,
    },
    /// `perm: None` reverses the axes.
    Transpose {
        perm: Option<Vec<i64>>,
    },
    /// `axes: None` removes every axis of size 1.
    Squeeze {
        axes: Option<Vec<i64>>,
    },
    Unsqueeze {
        axes: Option<Vec<i64>>,
    },
    /// Ranges from attributes (opset < 10) or, once baked at import, from the inputs.
    Slice {
        axes: Option<SliceAxes>,
    },
    /// Output sizes along `axis`; `None` splits evenly into as many parts as outputs.
    Split {
        axis: i64,
        sizes: Option<Vec<i64>>,
    },
    Gather {
        axis: i64,
    },
    /// Target element type (`TensorProto` data type code).
    Cast {
        to: i32,
    },
    Shape {
        start: i64,
        end: Option<i64>,
    },
    /// `pads` in ONNX order (all begins, then all ends); `None` until baked from input 1.
    Pad {
        kind: PadKind,
        pads: Option<Vec<i64>>,
    },
}

impl Op {
    /// Inputs that carry settings rather than data (shapes, axes, bounds, ratios): they are
    /// read at import, never become parameters and never carry the batch.
    pub fn is_setting_input(&self, index: usize) -> bool {
        match self {
            Op::Reshape { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Split { .. }
            | Op::Reduce { .. }
            | Op::Gather { .. } => index >= 1,
            Op::Dropout { .. } | Op::Slice { .. } | Op::Pad { .. } => index >= 1,
            Op::Unary(Unary::Clip { .. }) => index >= 1,
            Op::ConstantOfShape => true,
            _ => false,
        }
    }

    /// Whether the op only moves or selects values (shape arithmetic folds through these).
    pub fn is_shape_arithmetic(&self) -> bool {
        matches!(
            self,
            Op::Shape { .. }
                | Op::Gather { .. }
                | Op::Unsqueeze { .. }
                | Op::Squeeze { .. }
                | Op::Concat { .. }
                | Op::Slice { .. }
                | Op::Cast { .. }
                | Op::Add
                | Op::Sub
                | Op::Mul
                | Op::Div
                | Op::Identity
                | Op::Reshape { .. }
                | Op::Transpose { .. }
                | Op::ConstantOfShape
                | Op::Constant
        )
    }

    pub fn onnx_type(&self) -> &'static str {
        match self {
            Op::Conv(_) => "Conv",
            Op::MaxPool(_) => "MaxPool",
            Op::AveragePool { .. } => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::GlobalMaxPool => "GlobalMaxPool",
            Op::BatchNorm { .. } => "BatchNormalization",
            Op::Lrn { .. } => "LRN",
            Op::Gemm { .. } => "Gemm",
            Op::MatMul => "MatMul",
            Op::Add => "Add",
            Op::Sub => "Sub",
            Op::Mul => "Mul",
            Op::Div => "Div",
            Op::Relu => "Relu",
            Op::LeakyRelu { .. } => "LeakyRelu",
            Op::Sigmoid => "Sigmoid",
            Op::Tanh => "Tanh",
            Op::Reshape { .. } => "Reshape",
            Op::Flatten { .. } => "Flatten",
            Op::Dropout { .. } => "Dropout",
            Op::Softmax { .. } => "Softmax",
            Op::Identity => "Identity",
            Op::Concat { .. } => "Concat",
            Op::Constant => "Constant",
            Op::ConstantOfShape => "ConstantOfShape",
            Op::Unary(Unary::Clip { .. }) => "Clip",
            Op::Unary(Unary::HardSigmoid { .. }) => "HardSigmoid",
            Op::Unary(Unary::HardSwish) => "HardSwish",
            Op::Unary(Unary::Elu { .. }) => "Elu",
            Op::Unary(Unary::Selu { .. }) => "Selu",
            Op::Unary(Unary::Softplus) => "Softplus",
            Op::PRelu => "PRelu",
            Op::Variadic(Variadic::Sum) => "Sum",
            Op::Variadic(Variadic::Mean) => "Mean",
            Op::Variadic(Variadic::Max) => "Max",
            Op::Variadic(Variadic::Min) => "Min",
            Op::Reduce {
                kind: Reduction::Mean,
                ..
            } => "ReduceMean",
            Op::Reduce {
                kind: Reduction::Max,
                ..
            } => "ReduceMax",
            Op::Transpose { .. } => "Transpose",
            Op::Squeeze { .. } => "Squeeze",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Slice { .. } => "Slice",
            Op::Split { .. } => "Split",
            Op::Gather { .. } => "Gather",
            Op::Cast { .. } => "Cast",
            Op::Shape { .. } => "Shape",
            Op::Pad { .. } => "Pad",
        }
    }
}

/// Attribute access for one node, with errors that name the node.
pub(crate) struct Attrs<'a> {
    node: &'a NodeProto,
    label: &'a str,
}

impl<'a> Attrs<'a> {
    pub fn new(node: &'a NodeProto, label: &'a str) -> Self {
        Self { node, label }
    }

    pub fn err(&self, reason: impl Into<String>) -> OnnxError {
        bad_node(self.label, &self.node.op_type, reason)
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    fn kind(a: &AttributeProto) -> AttributeType {
        AttributeType::try_from(a.r#type).unwrap_or(AttributeType::Undefined)
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64> {
        match self.get(name) {
            None => Ok(default),
            Some(a)
                if Self::kind(a) == AttributeType::Int
                    || Self::kind(a) == AttributeType::Undefined =>
            {
                Ok(a.i)
            }
            Some(_) => Err(self.err(format!("attribute `{name}` must be an integer"))),
        }
    }

    pub fn float(&self, name: &str, default: f32) -> Result<f32> {
        match self.get(name) {
            None => Ok(default),
            Some(a)
                if Self::kind(a) == AttributeType::Float
                    || Self::kind(a) == AttributeType::Undefined =>
            {
                Ok(a.f)
            }
            Some(_) => Err(self.err(format!("attribute `{name}` must be a float"))),
        }
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.get(name) {
            None => Ok(None),
            Some(a)
                if Self::kind(a) == AttributeType::Ints
                    || Self::kind(a) == AttributeType::Undefined =>
            {
                Ok(Some(a.ints.clone()))
            }
            Some(_) => Err(self.err(format!("attribute `{name}` must be a list of integers"))),
        }
    }

    pub fn string(&self, name: &str) -> Result<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => String::from_utf8(a.s.clone())
                .map(Some)
                .map_err(|_| self.err(format!("attribute `{name}` is not UTF-8"))),
        }
    }

    pub fn tensor(&self, name: &str) -> Option<&'a tract_onnx::pb::TensorProto> {
        self.get(name).and_then(|a| a.t.as_ref())
    }

    /// A pair of positive sizes (`kernel_shape`, `strides`, `dilations`) for 2-D windows.
    fn pair(&self, name: &str, default: Option<[usize; 2]>) -> Result<Option<[usize; 2]>> {
        match self.ints(name)? {
            None => Ok(default),
            Some(v) if v.len() == 2 && v.iter().all(|&x| (1..=1 << 16).contains(&x)) => {
                Ok(Some([v[0] as usize, v[1] as usize]))
            }
            Some(v) if v.len() != 2 => Err(self.err(format!(
                "`{name}` = {v:?}: only 2-D (NCHW) windows are supported"
            ))),
            Some(v) => Err(self.err(format!("`{name}` = {v:?} must hold positive sizes"))),
        }
    }

    fn padding(&self) -> Result<Padding> {
        let auto_pad = self.string("auto_pad")?.unwrap_or_default();
        // ONNX forbids `pads` beside `auto_pad`; tolerated only as four zeros (some exporters
        // write them).
        let explicit = !matches!(auto_pad.as_str(), "" | "NOTSET");
        if let (true, Some(p)) = (explicit, self.ints("pads")?) {
            if p.len() != 4 || p.iter().any(|&x| x != 0) {
                return Err(self.err(format!(
                    "`pads` = {p:?} cannot be combined with auto_pad `{auto_pad}`"
                )));
            }
        }
        match auto_pad.as_str() {
            "" | "NOTSET" => match self.ints("pads")? {
                None => Ok(Padding::Explicit([0; 4])),
                Some(p) if p.len() == 4 && p.iter().all(|&x| (0..=1 << 16).contains(&x)) => {
                    Ok(Padding::Explicit([
                        p[0] as usize,
                        p[1] as usize,
                        p[2] as usize,
                        p[3] as usize,
                    ]))
                }
                Some(p) => Err(self.err(format!(
                    "`pads` = {p:?}: expected 4 non-negative values for a 2-D window"
                ))),
            },
            "VALID" => Ok(Padding::Explicit([0; 4])),
            "SAME_UPPER" => Ok(Padding::SameUpper),
            "SAME_LOWER" => Ok(Padding::SameLower),
            other => Err(self.err(format!("unknown auto_pad `{other}`"))),
        }
    }

    fn pool(&self) -> Result<PoolSpec> {
        let kernel = self
            .pair("kernel_shape", None)?
            .ok_or_else(|| self.err("missing `kernel_shape`"))?;
        Ok(PoolSpec {
            kernel,
            strides: self.pair("strides", Some([1, 1]))?.unwrap_or([1, 1]),
            dilations: self.pair("dilations", Some([1, 1]))?.unwrap_or([1, 1]),
            padding: self.padding()?,
            ceil_mode: self.int("ceil_mode", 0)? != 0,
        })
    }
}

/// Parses one node of the default domain into a typed op. `label` names the node in errors.
pub fn parse_op(node: &NodeProto, label: &str, opset: i64) -> Result<Op> {
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Err(unsupported(node, label));
    }
    let a = Attrs::new(node, label);
    let op = match node.op_type.as_str() {
        "Conv" => Op::Conv(ConvSpec {
            kernel: a.pair("kernel_shape", None)?,
            strides: a.pair("strides", Some([1, 1]))?.unwrap_or([1, 1]),
            dilations: a.pair("dilations", Some([1, 1]))?.unwrap_or([1, 1]),
            group: usize::try_from(a.int("group", 1)?)
                .ok()
                .filter(|&g| g >= 1)
                .ok_or_else(|| a.err("`group` must be at least 1"))?,
            padding: a.padding()?,
        }),
        "MaxPool" => {
            if a.int("storage_order", 0)? != 0 {
                return Err(a.err("storage_order=1 (column-major indices) is not supported"));
            }
            Op::MaxPool(a.pool()?)
        }
        "AveragePool" => {
            let pool = a.pool()?;
            if pool.dilations != [1, 1] {
                return Err(a.err("dilated AveragePool is not supported"));
            }
            Op::AveragePool {
                pool,
                count_include_pad: a.int("count_include_pad", 0)? != 0,
            }
        }
        "GlobalAveragePool" => Op::GlobalAveragePool,
        "GlobalMaxPool" => Op::GlobalMaxPool,
        "BatchNormalization" => {
            if a.int("spatial", 1)? != 1 {
                return Err(a.err("spatial=0 (per-activation) batch norm is not supported"));
            }
            Op::BatchNorm {
                epsilon: a.float("epsilon", 1e-5)?,
                momentum: a.float("momentum", 0.9)?,
            }
        }
        "LRN" => {
            let size = a.int("size", 0)?;
            if !(1..=1024).contains(&size) {
                return Err(a.err(format!("`size` = {size} must be between 1 and 1024")));
            }
            Op::Lrn {
                size: size as usize,
                alpha: a.float("alpha", 1e-4)?,
                beta: a.float("beta", 0.75)?,
                bias: a.float("bias", 1.0)?,
            }
        }
        "Gemm" => Op::Gemm {
            alpha: a.float("alpha", 1.0)?,
            beta: a.float("beta", 1.0)?,
            trans_a: a.int("transA", 0)? != 0,
            trans_b: a.int("transB", 0)? != 0,
        },
        "MatMul" => Op::MatMul,
        "Add" | "Sub" | "Mul" | "Div" => {
            // Opsets before 7 needed `broadcast=1` + `axis`; from 7 on broadcasting is numpy-style.
            if node
                .attribute
                .iter()
                .any(|x| x.name == "axis" || x.name == "broadcast")
            {
                return Err(a.err("legacy `axis` broadcasting (opset < 7) is not supported"));
            }
            match node.op_type.as_str() {
                "Add" => Op::Add,
                "Sub" => Op::Sub,
                "Mul" => Op::Mul,
                _ => Op::Div,
            }
        }
        "Relu" => Op::Relu,
        "LeakyRelu" => Op::LeakyRelu {
            alpha: a.float("alpha", 0.01)?,
        },
        "Sigmoid" => Op::Sigmoid,
        "Tanh" => Op::Tanh,
        "Reshape" => Op::Reshape {
            shape: a.ints("shape")?,
            allow_zero: a.int("allowzero", 0)? != 0,
        },
        "Flatten" => Op::Flatten {
            axis: a.int("axis", 1)?,
        },
        "Dropout" => Op::Dropout {
            ratio: a.float("ratio", 0.5)?,
        },
        "Softmax" => Op::Softmax {
            axis: a.int("axis", if opset >= 13 { -1 } else { 1 })?,
            legacy: opset < 13,
        },
        "Identity" => Op::Identity,
        "Concat" => Op::Concat {
            axis: a.int("axis", 1)?,
        },
        "Constant" => Op::Constant,
        "ConstantOfShape" => Op::ConstantOfShape,
        other => match parse_more(other, &a, opset)? {
            Some(op) => op,
            None => return Err(unsupported(node, label)),
        },
    };
    Ok(op)
}

/// The activations, reductions and layout ops. Settings that later opsets moved from
/// attributes to inputs are read here in their attribute form and baked from the inputs at
/// import ([`crate::fold::bake_settings`]).
fn parse_more(op_type: &str, a: &Attrs, opset: i64) -> Result<Option<Op>> {
    let op = match op_type {
        "Clip" => Op::Unary(Unary::Clip {
            min: a.float("min", f32::NEG_INFINITY)?,
            max: a.float("max", f32::INFINITY)?,
        }),
        "HardSigmoid" => Op::Unary(Unary::HardSigmoid {
            alpha: a.float("alpha", 0.2)?,
            beta: a.float("beta", 0.5)?,
        }),
        "HardSwish" => Op::Unary(Unary::HardSwish),
        "Elu" => Op::Unary(Unary::Elu {
            alpha: a.float("alpha", 1.0)?,
        }),
        "Selu" => Op::Unary(Unary::Selu {
            alpha: a.float("alpha", 1.673_263_2)?,
            gamma: a.float("gamma", 1.050_701)?,
        }),
        "Softplus" => Op::Unary(Unary::Softplus),
        "PRelu" => Op::PRelu,
        "Sum" => Op::Variadic(Variadic::Sum),
        "Mean" => Op::Variadic(Variadic::Mean),
        "Max" => Op::Variadic(Variadic::Max),
        "Min" => Op::Variadic(Variadic::Min),
        "ReduceMean" | "ReduceMax" => Op::Reduce {
            kind: if op_type == "ReduceMean" {
                Reduction::Mean
            } else {
                Reduction::Max
            },
            axes: a.ints("axes")?,
            keepdims: a.int("keepdims", 1)? != 0,
            noop_with_empty_axes: a.int("noop_with_empty_axes", 0)? != 0,
        },
        "Transpose" => Op::Transpose {
            perm: a.ints("perm")?,
        },
        "Squeeze" => Op::Squeeze {
            axes: a.ints("axes")?,
        },
        "Unsqueeze" => Op::Unsqueeze {
            axes: a.ints("axes")?,
        },
        "Slice" => Op::Slice {
            axes: match (a.ints("starts")?, a.ints("ends")?) {
                (Some(starts), Some(ends)) if opset < 10 => {
                    let axes = a
                        .ints("axes")?
                        .unwrap_or_else(|| (0..starts.len() as i64).collect());
                    if starts.len() != ends.len() || axes.len() != starts.len() {
                        return Err(a.err("`starts`, `ends` and `axes` differ in length"));
                    }
                    Some(
                        axes.iter()
                            .zip(starts.iter().zip(&ends))
                            .map(|(&ax, (&s, &e))| (ax, s, e, 1))
                            .collect(),
                    )
                }
                _ => None,
            },
        },
        "Split" => Op::Split {
            axis: a.int("axis", 0)?,
            sizes: a.ints("split")?,
        },
        "Gather" => Op::Gather {
            axis: a.int("axis", 0)?,
        },
        "Cast" => Op::Cast {
            to: a.int("to", 0)? as i32,
        },
        "Shape" => Op::Shape {
            start: a.int("start", 0)?,
            end: Some(a.int("end", i64::MAX)?).filter(|&e| e != i64::MAX),
        },
        "Pad" => {
            let mode = a.string("mode")?.unwrap_or_else(|| "constant".into());
            let kind = match mode.as_str() {
                "constant" => PadKind::Constant(a.float("value", 0.0)?),
                "reflect" => PadKind::Reflect,
                "edge" => PadKind::Edge,
                other => return Err(a.err(format!("pad mode `{other}` is not supported"))),
            };
            Op::Pad {
                kind,
                pads: if opset < 11 { a.ints("pads")? } else { None },
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(op))
}

fn unsupported(node: &NodeProto, label: &str) -> OnnxError {
    OnnxError::UnsupportedOp {
        node: label.to_string(),
        op: node.op_type.clone(),
        domain: if node.domain.is_empty() {
            String::new()
        } else {
            format!(" (domain `{}`)", node.domain)
        },
        supported: SUPPORTED_OPS.join(", "),
    }
}
