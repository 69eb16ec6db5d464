//! Normalisations computed from the sample itself (unlike batch norm's running statistics):
//! LayerNormalization (transformers, ConvNeXt), InstanceNormalization and GroupNormalization.
//! Their scale and bias are learnable parameters.

use super::{Attrs, Op, OpDef, Parsed};
use crate::error::Result;
use crate::shapes::{broadcast, ShapeCx};

#[derive(Clone, Debug, PartialEq)]
pub enum Norm {
    /// Normalises over the axes from `axis` on; scale (and bias) broadcast to those axes.
    Layer { axis: i64, epsilon: f32 },
    /// Normalises each channel of each sample over its spatial axes; scale and bias per channel.
    Instance { epsilon: f32 },
    /// Normalises each group of channels of each sample; scale and bias per channel (opset 21)
    /// or per group (opset 18).
    Group { groups: usize, epsilon: f32 },
}

pub(crate) const OPS: &[OpDef] = &[
    OpDef::new("LayerNormalization", layer).since(17),
    OpDef::new("InstanceNormalization", |a, _| {
        run(Norm::Instance {
            epsilon: a.float("epsilon", 1e-5)?,
        })
    })
    .since(6),
    OpDef::new("GroupNormalization", group).since(18),
];

fn run(op: Norm) -> Result<Parsed> {
    Ok(Parsed::Run(Op::Norm(op)))
}

fn layer(a: &Attrs, _: i64) -> Result<Parsed> {
    run(Norm::Layer {
        axis: a.int("axis", -1)?,
        epsilon: a.float("epsilon", 1e-5)?,
    })
}

fn group(a: &Attrs, _: i64) -> Result<Parsed> {
    let groups = a.int("num_groups", 0)?;
    if groups < 1 {
        return Err(a.err("`num_groups` must be a positive integer"));
    }
    run(Norm::Group {
        groups: groups as usize,
        epsilon: a.float("epsilon", 1e-5)?,
    })
}

impl Norm {
    pub fn onnx_type(&self) -> &'static str {
        match self {
            Norm::Layer { .. } => "LayerNormalization",
            Norm::Instance { .. } => "InstanceNormalization",
            Norm::Group { .. } => "GroupNormalization",
        }
    }

    pub(crate) fn infer(&self, cx: &mut ShapeCx) -> Result<Vec<usize>> {
        if cx.node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
            return Err(cx.err(
                "its mean and inverse-deviation outputs are used; only the normalised output is supported",
            ));
        }
        let x = cx.dims(0)?;
        match self {
            Norm::Layer { axis, .. } => {
                let a = cx.axis(*axis, &x)?;
                if a == 0 {
                    cx.drop_batch("LayerNormalization over axis 0 mixes the batch");
                }
                for i in [1, 2] {
                    if cx.node.input(i).is_none() {
                        continue;
                    }
                    let p = cx.dims(i)?;
                    if broadcast(&p, &x[a..]).as_deref() != Some(&x[a..]) {
                        return Err(cx.err(format!(
                            "input {i} {p:?} does not broadcast to the normalised axes {:?}",
                            &x[a..]
                        )));
                    }
                }
            }
            Norm::Instance { .. } | Norm::Group { .. } => {
                if x.len() < 3 {
                    return Err(cx.err(format!("needs [N, C, spatial...], got {x:?}")));
                }
                let per = match self {
                    Norm::Group { groups, .. } if x[1] % groups != 0 => {
                        return Err(cx.err(format!(
                            "{} channels do not split into {groups} groups",
                            x[1]
                        )))
                    }
                    Norm::Group { groups, .. } => vec![x[1], *groups],
                    _ => vec![x[1]],
                };
                for i in [1, 2] {
                    let n: usize = cx.dims(i)?.iter().product();
                    if !per.contains(&n) {
                        return Err(cx.err(format!(
                            "input {i} has {n} values; expected one per channel ({})",
                            x[1]
                        )));
                    }
                }
            }
        }
        Ok(x)
    }
}
