//! Layers: convolution, pooling, normalisation, fully connected products, softmax, dropout.

use tract_onnx::pb::NodeProto;

use super::{Attrs, Op, OpDef, Parsed, Settings};
use crate::error::Result;
use crate::opset::{attr, float_attr, int_attr, remove_attr, ConvertCx};
use crate::shapes::{broadcast, window_dims, ShapeCx};
use crate::tensor::f32_proto;

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
pub enum Nn {
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
    /// `legacy`: opset < 13, where softmax runs over all dims from `axis` on, flattened.
    Softmax {
        axis: i64,
        legacy: bool,
    },
    /// `log(softmax(x))`, with Softmax's axis rules.
    LogSoftmax {
        axis: i64,
        legacy: bool,
    },
    /// Inference-style: identity at inference, dropped at `ratio` when training.
    Dropout {
        ratio: f32,
    },
}

pub(crate) const OPS: &[OpDef] = &[
    OpDef::new("Conv", conv),
    OpDef::new("MaxPool", max_pool).convert(pool_to_opset),
    OpDef::new("AveragePool", average_pool).convert(pool_to_opset),
    OpDef::new("GlobalAveragePool", |_, _| run(Nn::GlobalAveragePool)),
    OpDef::new("GlobalMaxPool", |_, _| run(Nn::GlobalMaxPool)),
    OpDef::new("BatchNormalization", batch_norm).convert(batch_norm_to_opset),
    OpDef::new("LRN", lrn),
    OpDef::new("Gemm", gemm),
    OpDef::new("MatMul", |_, _| run(Nn::MatMul)),
    OpDef::new("Softmax", softmax).convert(softmax_to_opset),
    OpDef::new("LogSoftmax", log_softmax).convert(softmax_to_opset),
    OpDef::new("Dropout", dropout).convert(dropout_to_opset),
];

fn run(op: Nn) -> Result<Parsed> {
    Ok(Parsed::Run(Op::Nn(op)))
}

fn conv(a: &Attrs, _: i64) -> Result<Parsed> {
    run(Nn::Conv(ConvSpec {
        kernel: pair(a, "kernel_shape", None)?,
        strides: pair(a, "strides", Some([1, 1]))?.unwrap_or([1, 1]),
        dilations: pair(a, "dilations", Some([1, 1]))?.unwrap_or([1, 1]),
        group: usize::try_from(a.int("group", 1)?)
            .ok()
            .filter(|&g| g >= 1)
            .ok_or_else(|| a.err("`group` must be at least 1"))?,
        padding: padding(a)?,
    }))
}

fn max_pool(a: &Attrs, _: i64) -> Result<Parsed> {
    if a.int("storage_order", 0)? != 0 {
        return Err(a.err("storage_order=1 (column-major indices) is not supported"));
    }
    run(Nn::MaxPool(pool(a)?))
}

fn average_pool(a: &Attrs, _: i64) -> Result<Parsed> {
    let pool = pool(a)?;
    if pool.dilations != [1, 1] {
        return Err(a.err("dilated AveragePool is not supported"));
    }
    run(Nn::AveragePool {
        pool,
        count_include_pad: a.int("count_include_pad", 0)? != 0,
    })
}

fn batch_norm(a: &Attrs, _: i64) -> Result<Parsed> {
    if a.int("spatial", 1)? != 1 {
        return Err(a.err("spatial=0 (per-activation) batch norm is not supported"));
    }
    run(Nn::BatchNorm {
        epsilon: a.float("epsilon", 1e-5)?,
        momentum: a.float("momentum", 0.9)?,
    })
}

fn lrn(a: &Attrs, _: i64) -> Result<Parsed> {
    let size = a.int("size", 0)?;
    if !(1..=1024).contains(&size) {
        return Err(a.err(format!("`size` = {size} must be between 1 and 1024")));
    }
    run(Nn::Lrn {
        size: size as usize,
        alpha: a.float("alpha", 1e-4)?,
        beta: a.float("beta", 0.75)?,
        bias: a.float("bias", 1.0)?,
    })
}

fn gemm(a: &Attrs, _: i64) -> Result<Parsed> {
    run(Nn::Gemm {
        alpha: a.float("alpha", 1.0)?,
        beta: a.float("beta", 1.0)?,
        trans_a: a.int("transA", 0)? != 0,
        trans_b: a.int("transB", 0)? != 0,
    })
}

fn softmax(a: &Attrs, opset: i64) -> Result<Parsed> {
    run(Nn::Softmax {
        axis: a.int("axis", if opset >= 13 { -1 } else { 1 })?,
        legacy: opset < 13,
    })
}

fn log_softmax(a: &Attrs, opset: i64) -> Result<Parsed> {
    run(Nn::LogSoftmax {
        axis: a.int("axis", if opset >= 13 { -1 } else { 1 })?,
        legacy: opset < 13,
    })
}

/// Opset 12 moved `ratio` to input 1; a constant there is baked in, anything else keeps the
/// attribute's value (dropout changes nothing at inference).
fn dropout(a: &Attrs, _: i64) -> Result<Parsed> {
    let attribute = a.float("ratio", 0.5)?;
    Ok(Parsed::Bake(std::sync::Arc::new(move |s: &Settings| {
        let ratio = s.scalar(1, "ratio").ok().flatten().unwrap_or(attribute);
        Ok(Op::Nn(Nn::Dropout { ratio }))
    })))
}

/// A pair of positive sizes (`kernel_shape`, `strides`, `dilations`) for 2-D windows.
fn pair(a: &Attrs, name: &str, default: Option<[usize; 2]>) -> Result<Option<[usize; 2]>> {
    match a.ints(name)? {
        None => Ok(default),
        Some(v) if v.len() == 2 && v.iter().all(|&x| (1..=1 << 16).contains(&x)) => {
            Ok(Some([v[0] as usize, v[1] as usize]))
        }
        Some(v) if v.len() != 2 => Err(a.err(format!(
            "`{name}` = {v:?}: only 2-D (NCHW) windows are supported"
        ))),
        Some(v) => Err(a.err(format!("`{name}` = {v:?} must hold positive sizes"))),
    }
}

fn padding(a: &Attrs) -> Result<Padding> {
    let auto_pad = a.string("auto_pad")?.unwrap_or_default();
    // ONNX forbids `pads` beside `auto_pad`; tolerated only as four zeros (some exporters
    // write them).
    let explicit = !matches!(auto_pad.as_str(), "" | "NOTSET");
    if let (true, Some(p)) = (explicit, a.ints("pads")?) {
        if p.len() != 4 || p.iter().any(|&x| x != 0) {
            return Err(a.err(format!(
                "`pads` = {p:?} cannot be combined with auto_pad `{auto_pad}`"
            )));
        }
    }
    match auto_pad.as_str() {
        "" | "NOTSET" => match a.ints("pads")? {
            None => Ok(Padding::Explicit([0; 4])),
            Some(p) if p.len() == 4 && p.iter().all(|&x| (0..=1 << 16).contains(&x)) => {
                Ok(Padding::Explicit([
                    p[0] as usize,
                    p[1] as usize,
                    p[2] as usize,
                    p[3] as usize,
                ]))
            }
            Some(p) => Err(a.err(format!(
                "`pads` = {p:?}: expected 4 non-negative values for a 2-D window"
            ))),
        },
        "VALID" => Ok(Padding::Explicit([0; 4])),
        "SAME_UPPER" => Ok(Padding::SameUpper),
        "SAME_LOWER" => Ok(Padding::SameLower),
        other => Err(a.err(format!("unknown auto_pad `{other}`"))),
    }
}

fn pool(a: &Attrs) -> Result<PoolSpec> {
    let kernel = pair(a, "kernel_shape", None)?.ok_or_else(|| a.err("missing `kernel_shape`"))?;
    Ok(PoolSpec {
        kernel,
        strides: pair(a, "strides", Some([1, 1]))?.unwrap_or([1, 1]),
        dilations: pair(a, "dilations", Some([1, 1]))?.unwrap_or([1, 1]),
        padding: padding(a)?,
        ceil_mode: a.int("ceil_mode", 0)? != 0,
    })
}

impl Nn {
    /// MatMul and the softmaxes follow a batch axis moved off axis 0.
    pub(crate) fn follows_moved_batch(&self) -> bool {
        matches!(
            self,
            Nn::MatMul | Nn::Gemm { .. } | Nn::Softmax { .. } | Nn::LogSoftmax { .. }
        )
    }

    /// The softmaxes work on one row at a time.
    pub(crate) fn is_row_wise(&self) -> bool {
        matches!(self, Nn::Softmax { .. } | Nn::LogSoftmax { .. })
    }

    pub fn onnx_type(&self) -> &'static str {
        match self {
            Nn::Conv(_) => "Conv",
            Nn::MaxPool(_) => "MaxPool",
            Nn::AveragePool { .. } => "AveragePool",
            Nn::GlobalAveragePool => "GlobalAveragePool",
            Nn::GlobalMaxPool => "GlobalMaxPool",
            Nn::BatchNorm { .. } => "BatchNormalization",
            Nn::Lrn { .. } => "LRN",
            Nn::Gemm { .. } => "Gemm",
            Nn::MatMul => "MatMul",
            Nn::Softmax { .. } => "Softmax",
            Nn::LogSoftmax { .. } => "LogSoftmax",
            Nn::Dropout { .. } => "Dropout",
        }
    }

    pub(crate) fn is_setting_input(&self, index: usize) -> bool {
        matches!(self, Nn::Dropout { .. }) && index >= 1
    }

    pub(crate) fn infer(&self, cx: &mut ShapeCx) -> Result<Vec<usize>> {
        match self {
            Nn::Conv(spec) => infer_conv(cx, spec),
            Nn::MaxPool(pool) | Nn::AveragePool { pool, .. } => infer_pool(cx, pool),
            Nn::GlobalAveragePool | Nn::GlobalMaxPool | Nn::Lrn { .. } => {
                let x = cx.dims(0)?;
                cx.rank4(&x, "input")?;
                Ok(match self {
                    Nn::Lrn { .. } => x,
                    _ => vec![x[0], x[1], 1, 1],
                })
            }
            Nn::BatchNorm { .. } => infer_batch_norm(cx),
            Nn::Gemm {
                trans_a, trans_b, ..
            } => infer_gemm(cx, *trans_a, *trans_b),
            Nn::MatMul => infer_matmul(cx),
            Nn::Softmax { axis, legacy } | Nn::LogSoftmax { axis, legacy } => {
                let x = cx.dims(0)?;
                let a = cx.axis(*axis, &x)?;
                // Before opset 13 every axis from `axis` on is one row.
                if a == cx.batch_axis || (*legacy && a < cx.batch_axis) {
                    cx.drop_batch("Softmax over the batch axis mixes the batch");
                }
                Ok(x)
            }
            Nn::Dropout { .. } => cx.dims(0),
        }
    }
}

fn infer_conv(cx: &mut ShapeCx, spec: &ConvSpec) -> Result<Vec<usize>> {
    let x = cx.dims(0)?;
    let w = cx.dims(1)?;
    cx.rank4(&x, "input")?;
    cx.rank4(&w, "weight")?;
    let g = spec.group;
    if x[1] % g != 0 || w[0] % g != 0 || w[1] * g != x[1] {
        return Err(cx.err(format!(
            "input {x:?} with {g} groups does not fit weight {w:?}"
        )));
    }
    let kernel = [w[2], w[3]];
    if spec.kernel.is_some_and(|k| k != kernel) {
        return Err(cx.err(format!(
            "kernel_shape {:?} disagrees with weight {w:?}",
            spec.kernel.unwrap_or_default()
        )));
    }
    if cx.node.input(2).is_some() {
        let b = cx.dims(2)?;
        if b != [w[0]] {
            return Err(cx.err(format!("bias {b:?} must be [{}]", w[0])));
        }
    }
    let pool = PoolSpec {
        kernel,
        strides: spec.strides,
        dilations: spec.dilations,
        padding: spec.padding.clone(),
        ceil_mode: false,
    };
    let [h, wd] = window_dims(&x, &pool).ok_or_else(|| {
        cx.err(format!(
            "a {kernel:?} kernel does not fit the padded input {x:?}"
        ))
    })?;
    Ok(vec![x[0], w[0], h, wd])
}

fn infer_pool(cx: &mut ShapeCx, pool: &PoolSpec) -> Result<Vec<usize>> {
    let x = cx.dims(0)?;
    cx.rank4(&x, "input")?;
    if let Padding::Explicit(p) = pool.padding {
        let span = [
            (pool.kernel[0] - 1) * pool.dilations[0] + 1,
            (pool.kernel[1] - 1) * pool.dilations[1] + 1,
        ];
        if p[0].max(p[2]) >= span[0] || p[1].max(p[3]) >= span[1] {
            return Err(cx.err(format!(
                "pads {p:?} must be smaller than the window {span:?}"
            )));
        }
    }
    let [h, w] = window_dims(&x, pool).ok_or_else(|| {
        cx.err(format!(
            "a {:?} window does not fit the input {x:?}",
            pool.kernel
        ))
    })?;
    Ok(vec![x[0], x[1], h, w])
}

fn infer_batch_norm(cx: &mut ShapeCx) -> Result<Vec<usize>> {
    let x = cx.dims(0)?;
    if x.len() < 2 {
        return Err(cx.err(format!("input {x:?} has no channel axis")));
    }
    for (i, what) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")] {
        let c = cx
            .constant(i)
            .ok_or_else(|| cx.err(format!("{what} must be a constant (initializer)")))?;
        if c.dims != [x[1]] || !c.is_float() {
            return Err(cx.err(format!("{what} {:?} must be float [{}]", c.dims, x[1])));
        }
    }
    if cx.node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(cx.err("training-mode outputs (running mean/var) are not supported"));
    }
    Ok(x)
}

fn infer_gemm(cx: &mut ShapeCx, trans_a: bool, trans_b: bool) -> Result<Vec<usize>> {
    let a = cx.dims(0)?;
    let b = cx.dims(1)?;
    if a.len() != 2 || b.len() != 2 {
        return Err(cx.err(format!("operands must be matrices, got {a:?} and {b:?}")));
    }
    let (m, k) = if trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
    let (k2, n) = if trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
    if k != k2 {
        return Err(cx.err(format!("inner sizes differ: A {a:?}, B {b:?}")));
    }
    if cx.node.input(2).is_some() {
        let c = cx.dims(2)?;
        if broadcast(&c, &[m, n]).as_deref() != Some(&[m, n][..]) {
            return Err(cx.err(format!("C {c:?} does not broadcast to [{m}, {n}]")));
        }
    }
    if trans_a || cx.batch_axis != 0 {
        cx.drop_batch("Gemm sums over the batch axis");
    }
    Ok(vec![m, n])
}

fn infer_matmul(cx: &mut ShapeCx) -> Result<Vec<usize>> {
    let a = cx.dims(0)?;
    let b = cx.dims(1)?;
    if a.len() < 2 || b.len() < 2 {
        return Err(cx.err(format!(
            "1-D MatMul operands are not supported, got {a:?} and {b:?}"
        )));
    }
    let (ra, rb) = (a.len(), b.len());
    if a[ra - 1] != b[rb - 2] {
        return Err(cx.err(format!("inner sizes differ: {a:?} x {b:?}")));
    }
    let mut lead = broadcast(&a[..ra - 2], &b[..rb - 2])
        .ok_or_else(|| cx.err(format!("batch dims of {a:?} and {b:?} do not broadcast")))?;
    lead.extend([a[ra - 2], b[rb - 1]]);
    // The batch axis survives only where the other operand's leading dims broadcast against
    // it as 1 (a [10, 8, 1, 1] right side turns a batch of 1 into 10), or on the rows of A or
    // the columns of B when only that operand has it (sequence-first `[L, B, C] @ W`).
    let (batched_a, batched_b) = (cx.is_batched(0), cx.is_batched(1));
    let from = usize::from(!batched_a);
    let (axis, outer) = (cx.axis_of(from), cx.outer_of(from));
    let rows_of_a = batched_a && !batched_b && axis == ra - 2;
    let columns_of_b = batched_b && !batched_a && axis == rb - 1;
    let batch_kept = if rows_of_a || columns_of_b {
        true
    } else if ra == 2 && rb == 2 {
        false
    } else {
        let same_axis = !(batched_a && batched_b)
            || (cx.axis_of(0) == cx.axis_of(1) && cx.outer_of(0) == cx.outer_of(1));
        same_axis
            && axis + 2 < lead.len()
            && crate::shapes::batch_follows(&[(&a, batched_a), (&b, batched_b)], &lead, axis)
    };
    cx.batch_axis = match (rows_of_a, columns_of_b) {
        (true, _) => lead.len() - 2,
        (_, true) => lead.len() - 1,
        _ => axis,
    };
    cx.batch_outer = outer;
    if !batch_kept {
        if batched_a || batched_b {
            cx.mark_fixed("the MatMul broadcast does not keep the batch axis first");
        }
        cx.batched = false;
    }
    Ok(lead)
}

/// BatchNormalization lost `is_test` (7) and `spatial` (9).
fn batch_norm_to_opset(node: &mut NodeProto, cx: &mut ConvertCx) -> Result<()> {
    remove_attr(node, "is_test");
    if cx.to >= 9 {
        if attr(node, "spatial").is_some_and(|a| a.i != 1) {
            let why = format!("spatial=0 batch norm has no equivalent in opset {}", cx.to);
            return Err(cx.refuse(node, why));
        }
        remove_attr(node, "spatial");
    }
    Ok(())
}

/// Dropout lost `is_test` (7) and took `ratio` as an input (12).
fn dropout_to_opset(node: &mut NodeProto, cx: &mut ConvertCx) -> Result<()> {
    remove_attr(node, "is_test");
    let to = cx.to;
    if to >= 12 {
        if let Some(ratio) = remove_attr(node, "ratio") {
            let input = format!("{}_ratio", node.output[0]);
            cx.new_initializers.push(f32_proto(&input, &[], &[ratio.f]));
            node.input.truncate(1);
            node.input.push(input);
        }
        return Ok(());
    }
    if node.input.len() <= 1 {
        return Ok(());
    }
    if node.input.len() > 2 && !node.input[2].is_empty() {
        let why = format!("a training_mode input cannot be written in opset {to}");
        return Err(cx.refuse(node, why));
    }
    let ratio_name = node.input[1].clone();
    if !ratio_name.is_empty() {
        let ratio = cx.constants.get(&ratio_name).and_then(|c| match &c.data {
            crate::ConstData::F32(v) if v.len() == 1 => Some(v[0]),
            _ => None,
        });
        let Some(ratio) = ratio else {
            let why = format!("its ratio `{ratio_name}` is not a constant, so it cannot become an attribute in opset {to}");
            return Err(cx.refuse(node, why));
        };
        node.attribute.push(float_attr("ratio", ratio));
    }
    node.input.truncate(1);
    Ok(())
}

/// Softmax's axis changed meaning and default at opset 13 (the same rows before, one axis
/// from). Both meanings agree on a matrix once the axis is explicit; other ranks are refused.
fn softmax_to_opset(node: &mut NodeProto, cx: &mut ConvertCx) -> Result<()> {
    let (from, to) = (cx.from, cx.to);
    if (from < 13) == (to < 13) {
        return Ok(());
    }
    let old_default = if from < 13 { 1 } else { -1 };
    let axis = attr(node, "axis").map_or(old_default, |a| a.i);
    let why = match node.input.first().and_then(|i| (cx.rank)(i)) {
        Some(2) => {
            remove_attr(node, "axis");
            let axis = if axis < 0 { axis + 2 } else { axis };
            node.attribute.push(int_attr("axis", axis));
            return Ok(());
        }
        Some(r) => format!(
            "{} on a rank-{r} tensor means something else below and above opset 13; export at opset {from} instead",
            node.op_type
        ),
        None => format!(
            "the rank of its input is unknown, so its meaning across opset 13 cannot be kept; export at opset {from}"
        ),
    };
    Err(cx.refuse(node, why))
}

/// MaxPool and AveragePool gained `ceil_mode` (10), MaxPool `dilations` (10).
fn pool_to_opset(node: &mut NodeProto, cx: &mut ConvertCx) -> Result<()> {
    let to = cx.to;
    if to >= 10 {
        return Ok(());
    }
    if attr(node, "ceil_mode").is_some_and(|a| a.i != 0) {
        let why = format!("ceil_mode=1 needs opset 10 or later, not {to}");
        return Err(cx.refuse(node, why));
    }
    remove_attr(node, "ceil_mode");
    if node.op_type == "MaxPool" {
        if attr(node, "dilations").is_some_and(|a| a.ints.iter().any(|&d| d != 1)) {
            let why = format!("dilations need opset 10 or later, not {to}");
            return Err(cx.refuse(node, why));
        }
        remove_attr(node, "dilations");
    }
    Ok(())
}
