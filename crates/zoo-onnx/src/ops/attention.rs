//! Attention (opset 23): `softmax(Q K^T * scale + mask) V` for every head, as PyTorch's
//! exporter writes `scaled_dot_product_attention` from opset 23 on. Q, K and V are 4-D
//! `[batch, heads, sequence, head size]`, or 3-D `[batch, sequence, heads * head size]` with
//! the head counts as attributes; fewer K/V heads than Q heads are shared by groups of Q heads
//! (grouped-query attention). The mask, when given, is a constant: boolean (false = not
//! attended) or added to the scores. Key/value caches (`past_key`, `past_value`,
//! `nonpad_kv_seqlen`) are for generation, not classifiers, and are refused.

use super::chain::Chain;
use super::{Array, Attrs, Math, Nn, Op, OpDef, Parsed};
use crate::error::Result;
use crate::graph::Node;
use crate::shapes::{broadcast, ShapeCx};

#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    /// Heads of 3-D Q and of 3-D K/V (0 for 4-D inputs, which give them as an axis).
    pub q_heads: usize,
    pub kv_heads: usize,
    /// Multiplies the scores; `None` means `1 / sqrt(head size)`.
    pub scale: Option<f32>,
    /// A query attends only keys at or before its own position.
    pub causal: bool,
    /// Scores become `softcap * tanh(scores / softcap)` when positive.
    pub softcap: f32,
}

pub(crate) const OPS: &[OpDef] = &[OpDef::new("Attention", parse).since(23)];

fn parse(a: &Attrs, _: i64) -> Result<Parsed> {
    for window in ["left_window_size", "right_window_size"] {
        if a.int(window, -1)? != -1 {
            return Err(a.err(format!(
                "`{window}` (sliding-window attention) is not supported"
            )));
        }
    }
    let heads = |name: &str| -> Result<usize> {
        let v = a.int(name, 0)?;
        usize::try_from(v).map_err(|_| a.err(format!("`{name}` is {v}; it must be positive")))
    };
    let scale = a.has("scale").then(|| a.float("scale", 1.0)).transpose()?;
    Ok(Parsed::Run(Op::Attention(Attention {
        q_heads: heads("q_num_heads")?,
        kv_heads: heads("kv_num_heads")?,
        scale,
        causal: a.int("is_causal", 0)? != 0,
        softcap: a.float("softcap", 0.0)?,
    })))
}

/// The sizes one Attention node works with, from its input dims.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionDims {
    pub batch: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub q_len: usize,
    pub kv_len: usize,
    pub head: usize,
    pub v_head: usize,
}

impl Attention {
    /// The sizes of a node with inputs `q`, `k`, `v`, checked to fit together.
    pub fn dims(
        &self,
        q: &[usize],
        k: &[usize],
        v: &[usize],
    ) -> std::result::Result<AttentionDims, String> {
        let d = match (q.len(), k.len(), v.len()) {
            (4, 4, 4) => AttentionDims {
                batch: q[0],
                q_heads: q[1],
                kv_heads: k[1],
                q_len: q[2],
                kv_len: k[2],
                head: q[3],
                v_head: v[3],
            },
            (3, 3, 3) => {
                let (hq, hkv) = (self.q_heads, self.kv_heads);
                if hq == 0
                    || hkv == 0
                    || !q[2].is_multiple_of(hq)
                    || !k[2].is_multiple_of(hkv)
                    || !v[2].is_multiple_of(hkv)
                {
                    return Err(format!(
                        "3-D inputs need `q_num_heads` and `kv_num_heads` that divide their last axes (got {hq} and {hkv} for {q:?}, {k:?}, {v:?})"
                    ));
                }
                AttentionDims {
                    batch: q[0],
                    q_heads: hq,
                    kv_heads: hkv,
                    q_len: q[1],
                    kv_len: k[1],
                    head: q[2] / hq,
                    v_head: v[2] / hkv,
                }
            }
            _ => {
                return Err(format!(
                    "Q, K and V must all be 3-D or all 4-D, got {q:?}, {k:?}, {v:?}"
                ))
            }
        };
        let k_fits = |x: &[usize], size: usize| match x.len() {
            4 => x[0] == d.batch && x[1] == d.kv_heads && x[3] == size,
            _ => x[0] == d.batch,
        };
        let same_keys = (k.len() == 4 && v[2] == d.kv_len) || (k.len() == 3 && v[1] == d.kv_len);
        if !k_fits(k, d.head) || !k_fits(v, d.v_head) || !same_keys {
            return Err(format!("K {k:?} and V {v:?} do not fit Q {q:?}"));
        }
        if d.kv_heads == 0 || d.q_heads % d.kv_heads != 0 {
            return Err(format!(
                "{} query heads cannot share {} key/value heads",
                d.q_heads, d.kv_heads
            ));
        }
        Ok(d)
    }

    pub(crate) fn infer(&self, cx: &mut ShapeCx) -> Result<Vec<usize>> {
        if (4..7).any(|i| cx.node.input(i).is_some()) {
            return Err(cx.err(
                "key/value caches (`past_key`, `past_value`, `nonpad_kv_seqlen`) are not supported",
            ));
        }
        if cx.node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
            return Err(
                cx.err("only the attention output is supported (not the caches or the scores)")
            );
        }
        let (q, k, v) = (cx.dims(0)?, cx.dims(1)?, cx.dims(2)?);
        let d = self.dims(&q, &k, &v).map_err(|e| cx.err(e))?;
        if cx.node.input(3).is_some() {
            let mask = cx.dims(3)?;
            let scores = [d.batch, d.q_heads, d.q_len, d.kv_len];
            if cx.constant(3).is_none()
                || mask.len() > 4
                || broadcast(&mask, &scores).as_deref() != Some(&scores[..])
            {
                return Err(cx.err(format!(
                    "the mask must be a constant that broadcasts to the scores {scores:?}, got {mask:?}"
                )));
            }
        }
        let all = (0..3).all(|i| cx.is_batched(i));
        if !all {
            cx.drop_batch("Q, K and V do not all carry the batch");
        }
        Ok(match q.len() {
            4 => vec![d.batch, d.q_heads, d.q_len, d.v_head],
            _ => vec![d.batch, d.q_len, d.q_heads * d.v_head],
        })
    }
}

/// Attention written out as nodes (what exporters write before opset 23, and what models
/// built from `q @ k.transpose(-2, -1)` always write), found from its Softmax (node `k`):
/// `MatMul(Q', K') -> [Mul|Div by a scalar] -> Softmax(last axis) -> MatMul(_, V)`, where `Q'`
/// is Q or Q times a scalar and `K'` is K transposed on its last two axes, with or without a
/// scalar factor on either side of the Transpose (PyTorch's `scaled_dot_product_attention` at
/// opset 17 scales both by the root of the scale). Q, K and V must be 4-D, and every node in
/// between read by the chain alone. Gives one `Attention` node and the nodes it replaces;
/// exports keep the file's own nodes.
pub(super) fn match_written_out(chain: &Chain, k: usize) -> Option<(Node, Vec<usize>)> {
    let rank_of = chain.rank_of;
    let Op::Nn(Nn::Softmax { axis, .. }) = chain.nodes[k].op else {
        return None;
    };
    let scores = chain.nodes[k].input(0)?;
    if rank_of(scores) != Some(4) || !(axis == -1 || axis == 3) {
        return None;
    }
    let mut matched = vec![k];
    let mut scale = 1.0f32;
    // The scores, maybe scaled after the product.
    let mut product = chain.producer(scores)?;
    if let Some((input, factor)) = scaled(chain, product) {
        matched.push(product);
        scale *= factor;
        product = chain.producer(&input)?;
    }
    if !is_matmul(chain, product) || chain.only(chain.out(product)) != matched.last().copied() {
        return None;
    }
    matched.push(product);
    let q = unscaled(
        chain,
        chain.nodes[product].input(0)?,
        &mut matched,
        &mut scale,
    )?;
    let k_t = unscaled(
        chain,
        chain.nodes[product].input(1)?,
        &mut matched,
        &mut scale,
    )?;
    let transpose = chain.producer(&k_t)?;
    let swaps_last_two = matches!(
        &chain.nodes[transpose].op,
        Op::Array(Array::Transpose { perm: Some(p) }) if p[..] == [0, 1, 3, 2]
    );
    if !swaps_last_two || chain.only(&k_t).is_none() {
        return None;
    }
    matched.push(transpose);
    let key = unscaled(
        chain,
        chain.nodes[transpose].input(0)?,
        &mut matched,
        &mut scale,
    )?;
    let weighted = chain
        .only(chain.out(k))
        .filter(|&i| is_matmul(chain, i) && chain.nodes[i].input(0) == Some(chain.out(k)))?;
    let value = chain.nodes[weighted].input(1)?.to_string();
    if [&q, &key, &value].iter().any(|v| rank_of(v) != Some(4)) || !scale.is_finite() {
        return None;
    }
    matched.push(weighted);
    let fused = Node {
        name: chain.nodes[weighted].name.clone(),
        label: chain.nodes[weighted].label.clone(),
        op: Op::Attention(Attention {
            q_heads: 0,
            kv_heads: 0,
            scale: Some(scale),
            causal: false,
            softcap: 0.0,
        }),
        inputs: vec![q, key, value],
        outputs: vec![chain.out(weighted).to_string()],
    };
    Some((fused, matched))
}

fn is_matmul(chain: &Chain, i: usize) -> bool {
    matches!(chain.nodes[i].op, Op::Nn(Nn::MatMul))
}

/// `(input, factor)` when node `i` multiplies its one non-constant input by a scalar constant
/// (or divides it by one).
fn scaled(chain: &Chain, i: usize) -> Option<(String, f32)> {
    let node = &chain.nodes[i];
    let (a, b) = (node.input(0)?, node.input(1)?);
    if chain.is(i, &Math::Mul) {
        match (chain.scalar(a), chain.scalar(b)) {
            (Some(f), None) => Some((b.to_string(), f)),
            (None, Some(f)) => Some((a.to_string(), f)),
            _ => None,
        }
    } else if chain.is(i, &Math::Div) {
        chain.scalar(b).map(|f| (a.to_string(), 1.0 / f))
    } else {
        None
    }
}

/// What `value` is before a scalar factor the chain alone reads (the factor is taken into
/// `scale`, its node into `matched`), or `value` itself.
fn unscaled(
    chain: &Chain,
    value: &str,
    matched: &mut Vec<usize>,
    scale: &mut f32,
) -> Option<String> {
    let Some(i) = chain.producer(value) else {
        return Some(value.to_string());
    };
    match scaled(chain, i) {
        Some((input, factor)) if chain.only(value).is_some() => {
            matched.push(i);
            *scale *= factor;
            Some(input)
        }
        _ => Some(value.to_string()),
    }
}
