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
    /// zoo's fusion, never read from a file: input 0 alone holds Q, K and V side by side on
    /// its last axis (`[batch, sequence, 3 * heads * head size]`, each of the three its heads
    /// one after another, as one projection writes them), and the output is 3-D.
    pub packed: bool,
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
        packed: false,
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

    /// The dims of each of Q, K and V in a packed input of dims `x`.
    pub fn packed_third(x: &[usize]) -> std::result::Result<Vec<usize>, String> {
        match x {
            [b, s, c] if c % 3 == 0 => Ok(vec![*b, *s, c / 3]),
            _ => Err(format!(
                "packed Q, K and V need a 3-D input whose last axis divides by 3, got {x:?}"
            )),
        }
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
        let (q, k, v) = match self.packed {
            true => {
                let third = Self::packed_third(&cx.dims(0)?).map_err(|e| cx.err(e))?;
                (third.clone(), third.clone(), third)
            }
            false => (cx.dims(0)?, cx.dims(1)?, cx.dims(2)?),
        };
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
        let inputs = if self.packed { 1 } else { 3 };
        let all = (0..inputs).all(|i| cx.is_batched(i));
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
    let rank_of = |v: &str| chain.rank_of(v);
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
            packed: false,
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

/// The head split and merge around a 4-D attention whose Q, K and V come from one packed
/// projection, found from the Attention node `k` (as `match_written_out` leaves it, or read
/// from a file): `x [B, T, 3*H*D] -> Reshape [B, T, 3, H, D] -> Transpose (2, 0, 3, 1, 4)`,
/// then Q, K and V taken apart on the first axis (Split and Squeeze, or three Gathers), and
/// after the attention `Transpose (0, 2, 1, 3) -> Reshape [B, T, H*D]` (timm's and
/// Hugging Face's ViT, DeiT and Swin blocks). One packed Attention node replaces them all: on
/// zoo's own kernel the heads are read and written in place, where the chain moved every
/// value three times (the transposes, and squeezes of strided parts) and, in training, as
/// often again backward. Every value in between must be read by the chain alone.
pub(super) fn match_packed_heads(chain: &Chain, k: usize) -> Option<(Node, Vec<usize>)> {
    let Op::Attention(att) = &chain.nodes[k].op else {
        return None;
    };
    let plain = att.q_heads == 0 && !att.causal && !att.packed && att.softcap == 0.0;
    if !plain || chain.nodes[k].inputs.len() != 3 {
        return None;
    }
    let mut matched = vec![k];
    let parts = packed_parts(chain, k, &mut matched)?;
    let transpose = chain.producer(&parts)?;
    let Op::Array(Array::Transpose { perm: Some(perm) }) = &chain.nodes[transpose].op else {
        return None;
    };
    let reshape = chain.producer(chain.nodes[transpose].input(0)?)?;
    let heads_dims = (chain.dims_of)(chain.out(reshape))?;
    let reshaped = matches!(chain.nodes[reshape].op, Op::Array(Array::Reshape { .. }));
    let x = chain.nodes[reshape].input(0)?.to_string();
    let x_dims = (chain.dims_of)(&x)?;
    // (`packed_parts` checked who reads the transposed value.)
    let one_reader = chain.only(chain.out(reshape)) == Some(transpose);
    let fits = matches!((&heads_dims[..], &x_dims[..]),
        ([b, t, 3, h, d], [xb, xt, c]) if [xb, xt, c] == [b, t, &(3 * h * d)]);
    if !reshaped || perm[..] != [2, 0, 3, 1, 4] || !one_reader || !fits {
        return None;
    }
    matched.extend([transpose, reshape]);
    let (merged, merge_nodes) = merged_heads(chain, k, &heads_dims)?;
    matched.extend(merge_nodes);
    let fused = Node {
        name: chain.nodes[k].name.clone(),
        label: chain.nodes[k].label.clone(),
        op: Op::Attention(Attention {
            q_heads: heads_dims[3],
            kv_heads: heads_dims[3],
            packed: true,
            ..att.clone()
        }),
        inputs: vec![x],
        outputs: vec![merged],
    };
    Some((fused, matched))
}

/// The value Q, K and V of Attention `k` are taken from (each its own part of the first
/// axis, in order: Q 0, K 1, V 2), the nodes that take them apart added to `matched`.
fn packed_parts(chain: &Chain, k: usize, matched: &mut Vec<usize>) -> Option<String> {
    let mut source: Option<String> = None;
    let mut split_node = None;
    for (part, input) in chain.nodes[k].inputs.iter().enumerate() {
        let taker = chain
            .producer(input)
            .filter(|_| chain.only(input) == Some(k))?;
        let node = &chain.nodes[taker];
        let from = match &node.op {
            Op::Array(Array::Gather { axis: 0 }) => {
                let index = chain.constants.get(node.input(1)?)?;
                let at = index
                    .as_i64()
                    .filter(|v| v.len() == 1 && index.dims.is_empty())?;
                (at[0] == part as i64).then(|| node.input(0))??.to_string()
            }
            Op::Array(Array::Squeeze { axes: Some(axes) }) if axes[..] == [0] => {
                let piece = node.input(0)?;
                let split = chain
                    .producer(piece)
                    .filter(|_| chain.only(piece) == Some(taker))?;
                let even = matches!(&chain.nodes[split].op,
                    Op::Array(Array::Split { axis: 0, sizes }) if sizes.as_ref().is_none_or(|s| s[..] == [1, 1, 1]));
                let place = chain.nodes[split].outputs.iter().position(|o| o == piece);
                if !even || place != Some(part) || chain.nodes[split].outputs.len() != 3 {
                    return None;
                }
                if split_node.replace(split).is_some_and(|s| s != split) {
                    return None;
                }
                chain.nodes[split].input(0)?.to_string()
            }
            _ => return None,
        };
        if source.get_or_insert_with(|| from.clone()) != &from {
            return None;
        }
        matched.push(taker);
    }
    matched.extend(split_node);
    let source = source?;
    // Three Gathers read the transposed value; a Split is its one reader.
    let readers = chain
        .nodes
        .iter()
        .filter(|n| n.inputs.contains(&source))
        .count();
    let expected = if split_node.is_some() { 1 } else { 3 };
    (readers == expected).then_some(source)
}

/// The value Attention `k`'s output becomes once its heads are merged back
/// (`Transpose (0, 2, 1, 3) -> Reshape [B, T, H*D]`), and those two nodes.
fn merged_heads(chain: &Chain, k: usize, heads_dims: &[usize]) -> Option<(String, [usize; 2])> {
    let swap = chain.only(chain.out(k))?;
    let swaps_heads = matches!(&chain.nodes[swap].op,
        Op::Array(Array::Transpose { perm: Some(p) }) if p[..] == [0, 2, 1, 3]);
    let reshape = chain.only(chain.out(swap))?;
    let reshaped = matches!(chain.nodes[reshape].op, Op::Array(Array::Reshape { .. }));
    let out = chain.out(reshape).to_string();
    let (b, t, h) = (heads_dims[0], heads_dims[1], heads_dims[3]);
    let y = (chain.dims_of)(chain.out(k))?;
    let merged = (chain.dims_of)(&out)? == [b, t, h * y[3]] && y[..3] == [b, h, t];
    (swaps_heads && reshaped && merged).then_some((out, [swap, reshape]))
}
