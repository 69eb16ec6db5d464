//! Normalisations computed from the sample itself (unlike batch norm's running statistics):
//! LayerNormalization (transformers, ConvNeXt), InstanceNormalization and GroupNormalization.
//! Their scale and bias are learnable parameters.

use std::collections::BTreeMap;

use super::{Attrs, Math, Op, OpDef, Parsed, Reduction};
use crate::error::Result;
use crate::graph::Node;
use crate::shapes::{broadcast, ShapeCx};
use crate::tensor::Constant;

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

/// Opset 16 has no LayerNormalization: exporters write it out as
/// `d = x - ReduceMean(x); d / Sqrt(ReduceMean(Pow(d, 2)) + eps) * scale + bias` over the
/// trailing axes. Each such chain becomes one `Norm::Layer` node (named after its scale's
/// node, so the layer keeps its module name); exports keep the file's nodes.
pub(crate) fn fuse_written_out(
    nodes: &mut Vec<Node>,
    constants: &BTreeMap<String, Constant>,
    dims: &dyn Fn(&str) -> Option<usize>,
) {
    let mut k = 0;
    while k < nodes.len() {
        match match_written_out(nodes, k, constants, dims) {
            Some((fused, matched)) => {
                let last = *matched.iter().max().expect("matched nodes");
                nodes[last] = fused;
                let mut gone: Vec<usize> = matched.into_iter().filter(|&i| i != last).collect();
                gone.sort_unstable_by(|a, b| b.cmp(a));
                for i in gone {
                    nodes.remove(i);
                }
            }
            None => k += 1,
        }
    }
}

/// The fused node and the indices of the nodes it replaces, when node `k` starts the chain.
fn match_written_out(
    nodes: &[Node],
    k: usize,
    constants: &BTreeMap<String, Constant>,
    rank_of: &dyn Fn(&str) -> Option<usize>,
) -> Option<(Node, Vec<usize>)> {
    let only = |value: &str| -> Option<usize> {
        let mut readers = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.inputs.iter().any(|i| i == value));
        let first = readers.next()?.0;
        readers.next().is_none().then_some(first)
    };
    let scalar = |name: &str| {
        constants
            .get(name)
            .filter(|c| c.len() == 1)
            .and_then(|c| c.as_f32())
            .map(|v| v[0])
    };
    let other = |n: &Node, value: &str| n.inputs.iter().find(|i| *i != value).cloned();
    let mean = &nodes[k];
    let Op::Math(Math::Reduce {
        kind: Reduction::Mean,
        axes: Some(axes),
        keepdims: true,
        ..
    }) = &mean.op
    else {
        return None;
    };
    let x = mean.input(0)?.to_string();
    let rank = rank_of(&x)?;
    let mut norm: Vec<usize> = axes
        .iter()
        .filter_map(|&a| crate::shapes::normalize_axis(a, rank))
        .collect();
    norm.sort_unstable();
    let axis = rank.checked_sub(norm.len())?;
    if norm != (axis..rank).collect::<Vec<_>>() || axis == 0 {
        return None;
    }
    let sub = only(&mean.outputs[0])?;
    let (sub_node, d) = (&nodes[sub], nodes[sub].outputs[0].clone());
    if !matches!(sub_node.op, Op::Math(Math::Sub))
        || sub_node.inputs != [x.clone(), mean.outputs[0].clone()]
    {
        return None;
    }
    let readers: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].inputs.contains(&d))
        .collect();
    let [a, b] = readers[..] else { return None };
    let (pow, div) = if matches!(nodes[a].op, Op::Math(Math::Pow)) {
        (a, b)
    } else {
        (b, a)
    };
    if !matches!(nodes[pow].op, Op::Math(Math::Pow)) || scalar(nodes[pow].input(1)?) != Some(2.0) {
        return None;
    }
    let var = only(&nodes[pow].outputs[0])?;
    if nodes[var].op != mean.op {
        return None;
    }
    let add = only(&nodes[var].outputs[0])?;
    let epsilon = scalar(&other(&nodes[add], &nodes[var].outputs[0])?)?;
    let sqrt = only(&nodes[add].outputs[0])?;
    let is_sqrt = matches!(
        nodes[sqrt].op,
        Op::Math(crate::ops::Math::Unary(crate::ops::Unary::Sqrt))
    );
    let divides = matches!(nodes[div].op, Op::Math(Math::Div))
        && nodes[div].inputs == [d.clone(), nodes[sqrt].outputs[0].clone()];
    if !matches!(nodes[add].op, Op::Math(Math::Add))
        || !is_sqrt
        || !divides
        || only(&nodes[sqrt].outputs[0]) != Some(div)
    {
        return None;
    }
    // The affine part: a scale, then a bias (both constants over the normalised axes).
    let scale_at =
        only(&nodes[div].outputs[0]).filter(|&i| matches!(nodes[i].op, Op::Math(Math::Mul)))?;
    let scale =
        other(&nodes[scale_at], &nodes[div].outputs[0]).filter(|s| constants.contains_key(s))?;
    let mut inputs = vec![x, scale];
    let mut matched = vec![k, sub, pow, var, add, sqrt, div, scale_at];
    let mut out = nodes[scale_at].outputs[0].clone();
    if let Some(bias_at) = only(&out).filter(|&i| matches!(nodes[i].op, Op::Math(Math::Add))) {
        if let Some(bias) = other(&nodes[bias_at], &out).filter(|b| constants.contains_key(b)) {
            inputs.push(bias);
            matched.push(bias_at);
            out = nodes[bias_at].outputs[0].clone();
        }
    }
    let fused = Node {
        name: nodes[scale_at].name.clone(),
        label: nodes[scale_at].label.clone(),
        op: Op::Norm(Norm::Layer {
            axis: axis as i64,
            epsilon,
        }),
        inputs,
        outputs: vec![out],
    };
    Some((fused, matched))
}
