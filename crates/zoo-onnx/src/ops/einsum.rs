//! Einsum of two operands, the contractions classifiers write (`bhqd,bhkd->bhqk` attention,
//! MaxViT's relative-position terms `nhw,ixh->nixw`): every label is a batch label (both
//! operands and the output), a free label (one operand and the output) or a contracted one
//! (both operands, not the output). It runs as one batched matrix product between
//! permutations.

use super::{Attrs, Op, OpDef, Parsed};
use crate::error::Result;
use crate::shapes::ShapeCx;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Einsum {
    pub a: Vec<char>,
    pub b: Vec<char>,
    pub out: Vec<char>,
    /// The labels sorted by kind, once at import (the executor reads them every run).
    pub labels: Labels,
}

pub(crate) const OPS: &[OpDef] = &[OpDef::new("Einsum", parse).since(12)];

fn parse(a: &Attrs, _: i64) -> Result<Parsed> {
    let equation = a.string("equation")?.unwrap_or_default();
    let einsum =
        Einsum::parse(&equation).map_err(|e| a.err(format!("equation `{equation}`: {e}")))?;
    Ok(Parsed::Run(Op::Einsum(einsum)))
}

/// The labels of each kind, in the order the product uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labels {
    pub batch: Vec<char>,
    pub free_a: Vec<char>,
    pub free_b: Vec<char>,
    pub contracted: Vec<char>,
}

impl Einsum {
    pub fn parse(equation: &str) -> std::result::Result<Self, String> {
        let compact: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
        let (inputs, out) = compact
            .split_once("->")
            .ok_or("only explicit outputs (`->`) are supported")?;
        let (a, b) = inputs
            .split_once(',')
            .ok_or("only two operands are supported")?;
        let labels = |s: &str| -> std::result::Result<Vec<char>, String> {
            if s.contains('.') || s.contains(',') {
                return Err("ellipses and more than two operands are not supported".into());
            }
            let v: Vec<char> = s.chars().collect();
            if !v.iter().all(char::is_ascii_alphabetic) {
                return Err(format!("`{s}` has a label that is not a letter"));
            }
            let mut seen = v.clone();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() != v.len() {
                return Err(format!(
                    "`{s}` repeats a label (diagonals are not supported)"
                ));
            }
            Ok(v)
        };
        let (a, b, out) = (labels(a)?, labels(b)?, labels(out)?);
        let labels = sort_labels(&a, &b, &out)?;
        Ok(Einsum { a, b, out, labels })
    }

    /// The size of every label, checked to agree between the operands.
    pub fn sizes(
        &self,
        da: &[usize],
        db: &[usize],
    ) -> std::result::Result<Vec<(char, usize)>, String> {
        if da.len() != self.a.len() || db.len() != self.b.len() {
            return Err(format!(
                "operands {da:?} and {db:?} do not have the equation's ranks"
            ));
        }
        let mut sizes: Vec<(char, usize)> =
            self.a.iter().copied().zip(da.iter().copied()).collect();
        for (l, d) in self.b.iter().zip(db) {
            match sizes.iter().find(|(k, _)| k == l) {
                Some((_, s)) if s != d => {
                    return Err(format!(
                        "label `{l}` is {s} in one operand and {d} in the other"
                    ))
                }
                Some(_) => {}
                None => sizes.push((*l, *d)),
            }
        }
        Ok(sizes)
    }

    pub(crate) fn infer(&self, cx: &mut ShapeCx) -> Result<Vec<usize>> {
        let (da, db) = (cx.dims(0)?, cx.dims(1)?);
        let sizes = self.sizes(&da, &db).map_err(|e| cx.err(e))?;
        let size = |l: &char| sizes.iter().find(|(k, _)| k == l).map_or(1, |(_, s)| *s);
        // The batch is the label on a batched operand's batch axis; it must reach the output
        // and not be on the other operand unless that one is batched too.
        let (ba, bb) = (cx.is_batched(0), cx.is_batched(1));
        let label = match (ba, bb) {
            (true, _) => self.a.get(cx.axis_of(0)).copied(),
            (false, true) => self.b.get(cx.axis_of(1)).copied(),
            _ => None,
        };
        let other_has = |l: char| {
            if ba {
                self.b.contains(&l) && !bb
            } else {
                self.a.contains(&l) && !ba
            }
        };
        match label.and_then(|l| {
            self.out
                .iter()
                .position(|&o| o == l)
                .filter(|_| !other_has(l))
        }) {
            Some(axis) => {
                cx.batched = true;
                cx.batch_axis = axis;
                cx.batch_outer = cx.outer_of(if ba { 0 } else { 1 });
            }
            None => cx.drop_batch("Einsum contracts or shares the batch axis"),
        }
        Ok(self.out.iter().map(size).collect())
    }
}

/// Sorts the labels by kind; a label summed within one operand is refused.
fn sort_labels(a: &[char], b: &[char], out: &[char]) -> std::result::Result<Labels, String> {
    if let Some(l) = out.iter().find(|l| !a.contains(l) && !b.contains(l)) {
        return Err(format!("output label `{l}` is in no operand"));
    }
    let kept_or_contracted = |l: &&char| out.contains(l) || (a.contains(l) && b.contains(l));
    if let Some(l) = a.iter().chain(b).find(|l| !kept_or_contracted(l)) {
        return Err(format!(
            "label `{l}` is summed within one operand (not supported)"
        ));
    }
    Ok(Labels {
        batch: out
            .iter()
            .filter(|l| a.contains(l) && b.contains(l))
            .copied()
            .collect(),
        free_a: out
            .iter()
            .filter(|l| a.contains(l) && !b.contains(l))
            .copied()
            .collect(),
        free_b: out
            .iter()
            .filter(|l| b.contains(l) && !a.contains(l))
            .copied()
            .collect(),
        contracted: a
            .iter()
            .filter(|l| b.contains(l) && !out.contains(l))
            .copied()
            .collect(),
    })
}
