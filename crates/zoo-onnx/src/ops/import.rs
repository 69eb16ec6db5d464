//! Import-only ops: `Constant`, `ConstantOfShape`, `Shape` and `Range` are computed when the
//! graph is read (dims are static) and never reach the executor. Values computed from a `Shape` stay as
//! nodes in exported files, since they depend on the batch size.

use super::{Attrs, OpDef, Parsed};
use crate::error::{bad_node, Result};
use crate::tensor::{checked_dims, take_constant, ConstData, Constant};

#[derive(Clone, Debug, PartialEq)]
pub enum Import {
    Constant(Constant),
    /// A tensor of the shape given by input 0, every element `fill`.
    ConstantOfShape {
        fill: ConstData,
    },
    /// Dims `start..end` of input 0.
    Shape {
        start: i64,
        end: Option<i64>,
    },
    /// `start, start + delta, ...` up to `limit` (inputs 0-2, constant scalars).
    Range,
}

/// The most elements a `Range` may make.
const RANGE_LIMIT: usize = 1 << 24;

pub(crate) const OPS: &[OpDef] = &[
    OpDef::new("Constant", |a, _| {
        constant(a).map(|c| import(Import::Constant(c)))
    }),
    OpDef::new("ConstantOfShape", constant_of_shape),
    OpDef::new("Shape", |a, _| {
        Ok(import(Import::Shape {
            start: a.int("start", 0)?,
            end: Some(a.int("end", i64::MAX)?).filter(|&e| e != i64::MAX),
        }))
    }),
    OpDef::new("Range", |_, _| Ok(import(Import::Range))).since(11),
];

fn import(op: Import) -> Parsed {
    Parsed::Import(op)
}

fn constant(a: &Attrs) -> Result<Constant> {
    if let Some(t) = a.tensor("value") {
        let mut t = t.clone();
        if t.name.is_empty() {
            t.name = a.label().to_string();
        }
        return take_constant(&mut t);
    }
    if let Ok(Some(v)) = a.ints("value_ints") {
        return Ok(Constant::i64(vec![v.len()], v));
    }
    for attr in a.all() {
        match attr.name.as_str() {
            "value_int" => return Ok(Constant::i64(vec![], vec![attr.i])),
            "value_float" => return Ok(Constant::f32(vec![], vec![attr.f])),
            "value_floats" => {
                return Ok(Constant::f32(vec![attr.floats.len()], attr.floats.clone()))
            }
            _ => {}
        }
    }
    Err(a.err("has no supported `value*` attribute"))
}

fn constant_of_shape(a: &Attrs, _: i64) -> Result<Parsed> {
    let fill = match a.tensor("value") {
        None => ConstData::F32(vec![0.0]),
        Some(t) => take_constant(&mut t.clone())?.data,
    };
    let one = match &fill {
        ConstData::F32(v) => v.len() == 1,
        ConstData::I64(v) => v.len() == 1,
    };
    if !one {
        return Err(a.err("`value` must hold exactly one element"));
    }
    Ok(import(Import::ConstantOfShape { fill }))
}

impl Import {
    pub fn onnx_type(&self) -> &'static str {
        match self {
            Import::Constant(_) => "Constant",
            Import::ConstantOfShape { .. } => "ConstantOfShape",
            Import::Shape { .. } => "Shape",
            Import::Range => "Range",
        }
    }

    /// The node's value. `inputs` names its inputs; `constant` and `dims` look up values and
    /// inferred dims by name.
    pub(crate) fn evaluate<'c>(
        &self,
        label: &str,
        inputs: &[String],
        constant: &dyn Fn(&str) -> Option<&'c Constant>,
        dims: &dyn Fn(&str) -> Option<Vec<usize>>,
    ) -> Result<Constant> {
        let err = |reason: String| bad_node(label, self.onnx_type(), reason);
        let input = inputs.first().map(String::as_str).filter(|s| !s.is_empty());
        match self {
            Import::Constant(c) => Ok(c.clone()),
            Import::ConstantOfShape { fill } => {
                let name = input.ok_or_else(|| err("missing shape input".into()))?;
                let shape = constant(name).and_then(Constant::as_i64).ok_or_else(|| {
                    err(format!("shape `{name}` must be a constant int64 tensor"))
                })?;
                let (dims, count) = checked_dims(label, shape)?;
                Ok(match fill {
                    ConstData::F32(v) => Constant::f32(dims, vec![v[0]; count]),
                    ConstData::I64(v) => Constant::i64(dims, vec![v[0]; count]),
                })
            }
            Import::Shape { start, end } => {
                let name = input.ok_or_else(|| err("missing input".into()))?;
                let d =
                    dims(name).ok_or_else(|| err(format!("the shape of `{name}` is unknown")))?;
                let r = d.len() as i64;
                let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                let (s, e) = (clamp(*start), clamp(end.unwrap_or(r)));
                let v: Vec<i64> = d[s..e.max(s)].iter().map(|&x| x as i64).collect();
                Ok(Constant::i64(vec![v.len()], v))
            }
            Import::Range => {
                let scalar = |i: usize| {
                    inputs
                        .get(i)
                        .and_then(|n| constant(n))
                        .filter(|c| c.len() == 1)
                        .ok_or_else(|| err(format!("input {i} must be a constant scalar")))
                };
                range(scalar(0)?, scalar(1)?, scalar(2)?).map_err(err)
            }
        }
    }
}

/// ONNX Range: `max(ceil((limit - start) / delta), 0)` elements.
fn range(
    start: &Constant,
    limit: &Constant,
    delta: &Constant,
) -> std::result::Result<Constant, String> {
    let as_f64 = |c: &Constant| match &c.data {
        ConstData::F32(v) => v[0] as f64,
        ConstData::I64(v) => v[0] as f64,
    };
    let (s, l, d) = (as_f64(start), as_f64(limit), as_f64(delta));
    if d == 0.0 {
        return Err("a delta of 0".into());
    }
    let count = ((l - s) / d).ceil().max(0.0);
    if count > RANGE_LIMIT as f64 {
        return Err(format!(
            "{count} elements, more than the limit of {RANGE_LIMIT}"
        ));
    }
    let n = count as usize;
    Ok(match (&start.data, &delta.data) {
        (ConstData::I64(a), ConstData::I64(b)) => {
            Constant::i64(vec![n], (0..n as i64).map(|k| a[0] + k * b[0]).collect())
        }
        _ => Constant::f32(vec![n], (0..n).map(|k| (s + k as f64 * d) as f32).collect()),
    })
}
