//! Normalisations computed from the sample itself (unlike batch norm's running statistics):
//! LayerNormalization (transformers, ConvNeXt), InstanceNormalization and GroupNormalization.
//! Their scale and bias are learnable parameters.

use super::chain::Chain;
use super::{Attrs, Math, Op, OpDef, Parsed, Reduction};
use crate::error::Result;
use crate::graph::Node;
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
    /// zoo's fusion, never read from a file: LayerNorm over the channels (axis 1) of each
    /// position of `[N, C, spatial...]`, scale and bias per channel; what ConvNeXt's
    /// `LayerNorm2d` exports as `Transpose` to channels last, `LayerNormalization` over the
    /// last axis, and `Transpose` back.
    OverChannels { epsilon: f32 },
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
            Norm::OverChannels { .. } => "LayerNormalization",
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
            Norm::Instance { .. } | Norm::Group { .. } | Norm::OverChannels { .. } => {
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
                    Norm::OverChannels { .. } if cx.node.input(2).is_none() => {
                        return Err(cx.err("LayerNorm over channels needs its bias"))
                    }
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
/// The fused node and the indices of the nodes it replaces, when node `k` starts the chain.
pub(super) fn match_written_out(chain: &Chain, k: usize) -> Option<(Node, Vec<usize>)> {
    let (nodes, constants) = (chain.nodes, chain.constants);
    let x = nodes[k].input(0)?.to_string();
    let axis = trailing_axis(&nodes[k].op, chain.rank_of(&x)?)?;
    let (mut matched, epsilon) = normalisation(chain, k, &x)?;
    // The affine part: a scale, then a bias (constants over the normalised axes).
    let div = *matched.last().expect("matched nodes");
    let scale_at = chain
        .only(chain.out(div))
        .filter(|&i| chain.is(i, &Math::Mul))?;
    let scale = chain
        .other(scale_at, chain.out(div))
        .filter(|s| constants.contains_key(s))?;
    let mut inputs = vec![x, scale];
    matched.push(scale_at);
    let mut out = chain.out(scale_at).to_string();
    if let Some(bias_at) = chain.only(&out).filter(|&i| chain.is(i, &Math::Add)) {
        if let Some(bias) = chain
            .other(bias_at, &out)
            .filter(|b| constants.contains_key(b))
        {
            inputs.push(bias);
            matched.push(bias_at);
            out = chain.out(bias_at).to_string();
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

/// The first normalised axis when `op` is a mean over trailing axes (never the batch's).
fn trailing_axis(op: &Op, rank: usize) -> Option<usize> {
    let Op::Math(Math::Reduce {
        kind: Reduction::Mean,
        axes: Some(axes),
        keepdims: true,
        ..
    }) = op
    else {
        return None;
    };
    let mut norm: Vec<usize> = axes
        .iter()
        .filter_map(|&a| crate::shapes::normalize_axis(a, rank))
        .collect();
    norm.sort_unstable();
    let axis = rank.checked_sub(norm.len())?;
    (norm == (axis..rank).collect::<Vec<_>>() && axis > 0).then_some(axis)
}

/// `d = x - mean; d / Sqrt(mean(Pow(d, 2)) + eps)` from the mean at `k`: the nodes in order
/// (the Div last) and eps.
fn normalisation(chain: &Chain, k: usize, x: &str) -> Option<(Vec<usize>, f32)> {
    let mean = chain.out(k);
    let sub = chain.only(mean)?;
    if !chain.is(sub, &Math::Sub) || chain.nodes[sub].inputs != [x, mean] {
        return None;
    }
    let d = chain.out(sub);
    let readers: Vec<usize> = (0..chain.nodes.len())
        .filter(|&i| chain.nodes[i].inputs.iter().any(|v| v == d))
        .collect();
    let [a, b] = readers[..] else { return None };
    let (pow, div) = if chain.is(a, &Math::Pow) {
        (a, b)
    } else {
        (b, a)
    };
    if !chain.is(pow, &Math::Pow) || chain.scalar(chain.nodes[pow].input(1)?) != Some(2.0) {
        return None;
    }
    let var = chain.only(chain.out(pow))?;
    let add = chain.only(chain.out(var))?;
    let sqrt = chain.only(chain.out(add))?;
    let epsilon = chain.scalar(&chain.other(add, chain.out(var))?)?;
    let shaped = chain.nodes[var].op == chain.nodes[k].op
        && chain.is(add, &Math::Add)
        && chain.is(sqrt, &Math::Unary(super::Unary::Sqrt))
        && chain.is(div, &Math::Div)
        && chain.nodes[div].inputs == [d, chain.out(sqrt)]
        && chain.only(chain.out(sqrt)) == Some(div);
    shaped.then(|| (vec![k, sub, pow, var, add, sqrt, div], epsilon))
}

/// ConvNeXt's `LayerNorm2d` as exporters write it, found from its LayerNormalization (node
/// `k`): `Transpose (0, 2, .., r-1, 1)` to channels last, LayerNormalization over the last
/// axis alone with a scale and a bias, `Transpose (0, r-1, 1, .., r-2)` back. One
/// `Norm::OverChannels` node (named after the LayerNormalization, so the layer keeps its
/// module name) replaces the three: the two transposes moved every value of the map, forward
/// and backward, and were 5 % of a ConvNeXt-atto training step. Exports keep the file's nodes.
pub(super) fn match_over_channels(chain: &Chain, k: usize) -> Option<(Node, Vec<usize>)> {
    let Op::Norm(Norm::Layer { axis, epsilon }) = chain.nodes[k].op else {
        return None;
    };
    let last = chain.nodes[k].input(0)?;
    let rank = chain.rank_of(last)?;
    let to_last = chain
        .producer(last)
        .filter(|_| chain.only(last) == Some(k))?;
    let back = chain.only(chain.out(k))?;
    let channels_last: Vec<i64> = std::iter::once(0)
        .chain(2..rank as i64)
        .chain(std::iter::once(1))
        .collect();
    let channels_first: Vec<i64> = [0, rank as i64 - 1]
        .into_iter()
        .chain(1..rank as i64 - 1)
        .collect();
    let perm_is = |i: usize, p: &[i64]| matches!(&chain.nodes[i].op, Op::Array(super::Array::Transpose { perm: Some(q) }) if q[..] == *p);
    let last_axis_only = axis == -1 || axis == rank as i64 - 1;
    let has_bias = chain.nodes[k].input(2).is_some();
    if rank < 3 || !last_axis_only || !has_bias {
        return None;
    }
    if !perm_is(to_last, &channels_last) || !perm_is(back, &channels_first) {
        return None;
    }
    let x = chain.nodes[to_last].input(0)?.to_string();
    let node = &chain.nodes[k];
    let fused = Node {
        name: node.name.clone(),
        label: node.label.clone(),
        op: Op::Norm(Norm::OverChannels { epsilon }),
        inputs: vec![x, node.inputs[1].clone(), node.inputs[2].clone()],
        outputs: vec![chain.out(back).to_string()],
    };
    Some((fused, vec![to_last, k, back]))
}
