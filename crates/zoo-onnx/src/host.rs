//! Arithmetic on constant tensors, for folding shape computations at import: the host side of
//! the array and math families' `evaluate`.

use crate::shapes::{normalize_axis, slice_range};
use crate::tensor::{ConstData, Constant};

pub(crate) fn cast(x: &Constant, to: i32) -> std::result::Result<Constant, String> {
    use tract_onnx::pb::tensor_proto::DataType as T;
    let to = T::try_from(to).unwrap_or(T::Undefined);
    let float = matches!(to, T::Float | T::Double | T::Float16 | T::Bfloat16);
    let integer = matches!(
        to,
        T::Int64
            | T::Int32
            | T::Int16
            | T::Int8
            | T::Uint8
            | T::Uint16
            | T::Uint32
            | T::Uint64
            | T::Bool
    );
    let data = match (float, integer, &x.data) {
        (true, _, ConstData::F32(v)) => ConstData::F32(v.clone()),
        (true, _, ConstData::I64(v)) => ConstData::F32(v.iter().map(|&x| x as f32).collect()),
        (_, true, ConstData::I64(v)) => ConstData::I64(v.clone()),
        (_, true, ConstData::F32(v)) => {
            ConstData::I64(v.iter().map(|&x| x.trunc() as i64).collect())
        }
        _ => return Err(format!("Cast to {to:?} is not supported")),
    };
    Ok(Constant {
        dims: x.dims.clone(),
        data,
    })
}

/// Row-major strides of `dims`.
pub(crate) fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// For each element of the broadcast output, the flat index into an input of `dims`.
pub(crate) fn broadcast_indices(dims: &[usize], out: &[usize]) -> Vec<usize> {
    let offset = out.len() - dims.len();
    let in_strides = strides(dims);
    let total: usize = out.iter().product();
    let out_strides = strides(out);
    (0..total)
        .map(|flat| {
            (0..dims.len())
                .map(|k| {
                    let coord = flat / out_strides[k + offset] % out[k + offset];
                    if dims[k] == 1 {
                        0
                    } else {
                        coord * in_strides[k]
                    }
                })
                .sum()
        })
        .collect()
}

/// Output dims of `Unsqueeze`: axes count in the output's rank.
pub(crate) fn unsqueeze_dims(
    dims: &[usize],
    axes: &[i64],
) -> std::result::Result<Vec<usize>, String> {
    let rank = dims.len() + axes.len();
    let mut at: Vec<usize> = axes
        .iter()
        .map(|&a| normalize_axis(a, rank).ok_or_else(|| format!("axis {a} is out of range")))
        .collect::<std::result::Result<_, _>>()?;
    at.sort_unstable();
    if at.windows(2).any(|w| w[0] == w[1]) || axes.is_empty() {
        return Err(format!("axes {axes:?} must be distinct and not empty"));
    }
    let mut rest = dims.iter();
    Ok((0..rank)
        .map(|i| {
            if at.contains(&i) {
                1
            } else {
                *rest.next().unwrap_or(&1)
            }
        })
        .collect())
}

/// Output dims of `Squeeze`; without axes every size-1 axis goes.
pub(crate) fn squeeze_dims(
    dims: &[usize],
    axes: Option<&[i64]>,
) -> std::result::Result<Vec<usize>, String> {
    let drop: Vec<usize> = match axes {
        None => (0..dims.len()).filter(|&i| dims[i] == 1).collect(),
        Some(a) => a
            .iter()
            .map(|&x| {
                normalize_axis(x, dims.len())
                    .filter(|&i| dims[i] == 1)
                    .ok_or_else(|| format!("axis {x} of {dims:?} is out of range or not of size 1"))
            })
            .collect::<std::result::Result<_, _>>()?,
    };
    Ok((0..dims.len())
        .filter(|i| !drop.contains(i))
        .map(|i| dims[i])
        .collect())
}

pub(crate) fn concat(parts: &[&Constant], axis: i64) -> std::result::Result<Constant, String> {
    let first = parts.first().ok_or("no inputs")?;
    let a = normalize_axis(axis, first.dims.len()).ok_or("axis out of range")?;
    let outer: usize = first.dims[..a].iter().product();
    let mut dims = first.dims.clone();
    dims[a] = parts
        .iter()
        .map(|p| p.dims.get(a).copied().unwrap_or(0))
        .sum();
    for p in parts {
        let same = p.dims.len() == first.dims.len()
            && p.dims
                .iter()
                .zip(&first.dims)
                .enumerate()
                .all(|(k, (x, y))| k == a || x == y);
        if !same || p.is_float() != first.is_float() {
            return Err(format!(
                "{:?} does not concatenate with {:?}",
                p.dims, first.dims
            ));
        }
    }
    let chunks: Vec<usize> = parts.iter().map(|p| p.dims[a..].iter().product()).collect();
    // Interleaves the parts' slices of each outer index.
    fn join<T: Copy>(slices: &[&[T]], chunks: &[usize], outer: usize) -> Vec<T> {
        (0..outer)
            .flat_map(|o| {
                slices
                    .iter()
                    .zip(chunks)
                    .flat_map(move |(v, &c)| v[o * c..(o + 1) * c].iter().copied())
            })
            .collect()
    }
    let data = match first.data {
        ConstData::I64(_) => {
            let v: Vec<&[i64]> = parts
                .iter()
                .map(|p| p.as_i64().unwrap_or_default())
                .collect();
            ConstData::I64(join(&v, &chunks, outer))
        }
        ConstData::F32(_) => {
            let v: Vec<&[f32]> = parts
                .iter()
                .map(|p| p.as_f32().unwrap_or_default())
                .collect();
            ConstData::F32(join(&v, &chunks, outer))
        }
    };
    Ok(Constant { dims, data })
}

/// Picks flat element indices and builds a constant of `dims` from them.
fn pick(x: &Constant, dims: Vec<usize>, flat: &[usize]) -> Constant {
    let data = match &x.data {
        ConstData::I64(v) => ConstData::I64(flat.iter().map(|&i| v[i]).collect()),
        ConstData::F32(v) => ConstData::F32(flat.iter().map(|&i| v[i]).collect()),
    };
    Constant { dims, data }
}

pub(crate) fn gather(
    x: &Constant,
    indices: &Constant,
    axis: i64,
) -> std::result::Result<Constant, String> {
    let a = normalize_axis(axis, x.dims.len()).ok_or("axis out of range")?;
    let idx = indices.as_i64().ok_or("indices must be integers")?;
    let size = x.dims[a] as i64;
    let idx: Vec<usize> = idx
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + size } else { i };
            (0..size)
                .contains(&j)
                .then_some(j as usize)
                .ok_or_else(|| format!("index {i} is out of range for size {size}"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let outer: usize = x.dims[..a].iter().product();
    let inner: usize = x.dims[a + 1..].iter().product();
    let flat: Vec<usize> = (0..outer)
        .flat_map(|o| {
            idx.iter()
                .flat_map(move |&i| (0..inner).map(move |k| (o * x.dims[a] + i) * inner + k))
        })
        .collect();
    let mut dims = x.dims[..a].to_vec();
    dims.extend(&indices.dims);
    dims.extend(&x.dims[a + 1..]);
    Ok(pick(x, dims, &flat))
}

pub(crate) fn transpose(
    x: &Constant,
    perm: Option<&[i64]>,
) -> std::result::Result<Constant, String> {
    let perm = crate::shapes::transpose_perm(x.dims.len(), perm)?;
    let dims: Vec<usize> = perm.iter().map(|&p| x.dims[p]).collect();
    let st = strides(&x.dims);
    let mut flat = vec![0usize];
    for &p in &perm {
        flat = flat
            .iter()
            .flat_map(|&base| {
                let step = st[p];
                (0..x.dims[p]).map(move |i| base + i * step)
            })
            .collect();
    }
    Ok(pick(x, dims, &flat))
}

pub(crate) fn slice(
    x: &Constant,
    ranges: &[(i64, i64, i64, i64)],
) -> std::result::Result<Constant, String> {
    let mut per_axis: Vec<Vec<usize>> = x.dims.iter().map(|&d| (0..d).collect()).collect();
    for &(axis, start, end, step) in ranges {
        let a = normalize_axis(axis, x.dims.len()).ok_or("axis out of range")?;
        per_axis[a] = slice_range(x.dims[a], start, end, step)?;
    }
    let dims: Vec<usize> = per_axis.iter().map(Vec::len).collect();
    let st = strides(&x.dims);
    let mut flat = vec![0usize];
    for (k, picks) in per_axis.iter().enumerate() {
        flat = flat
            .iter()
            .flat_map(|&base| {
                let step = st[k];
                picks.iter().map(move |&i| base + i * step)
            })
            .collect();
    }
    Ok(pick(x, dims, &flat))
}

/// One element of a constant, for element-wise folding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Num {
    I(i64),
    F(f32),
}

impl Num {
    pub(crate) fn as_f32(self) -> f32 {
        match self {
            Num::I(v) => v as f32,
            Num::F(v) => v,
        }
    }
}

/// An element-wise function of broadcast constants. The result is integer when every element
/// `f` gives is, float when every one is; a mix is an error.
pub(crate) fn elementwise(
    parts: &[&Constant],
    f: impl Fn(&[Num]) -> std::result::Result<Num, String>,
) -> std::result::Result<Constant, String> {
    let mut out: Vec<usize> = Vec::new();
    for p in parts {
        out = crate::shapes::broadcast(&out, &p.dims)
            .ok_or_else(|| format!("{out:?} and {:?} do not broadcast", p.dims))?;
    }
    let indices: Vec<Vec<usize>> = parts
        .iter()
        .map(|p| broadcast_indices(&p.dims, &out))
        .collect();
    let total: usize = out.iter().product();
    let mut args = vec![Num::I(0); parts.len()];
    let mut values = Vec::with_capacity(total);
    for k in 0..total {
        for ((arg, p), picks) in args.iter_mut().zip(parts).zip(&indices) {
            let i = picks[k];
            *arg = match &p.data {
                ConstData::I64(v) => Num::I(v[i]),
                ConstData::F32(v) => Num::F(v[i]),
            };
        }
        values.push(f(&args)?);
    }
    let data = if values.iter().all(|v| matches!(v, Num::I(_))) {
        ConstData::I64(
            values
                .iter()
                .map(|v| match v {
                    Num::I(x) => *x,
                    Num::F(_) => 0,
                })
                .collect(),
        )
    } else if values.iter().all(|v| matches!(v, Num::F(_))) {
        ConstData::F32(values.iter().map(|v| v.as_f32()).collect())
    } else {
        return Err("operands have different element types".into());
    };
    Ok(Constant { dims: out, data })
}

/// ONNX ScatterND without reduction: `updates` written at the index tuples (the last axis of
/// `indices`) of a copy of `data`.
pub(crate) fn scatter_nd(
    data: &Constant,
    indices: &Constant,
    updates: &Constant,
) -> std::result::Result<Constant, String> {
    let idx = indices.as_i64().ok_or("indices must be integers")?;
    let k = *indices
        .dims
        .last()
        .ok_or("indices must have at least one axis")?;
    if k == 0 || k > data.dims.len() {
        return Err(format!("index tuples of {k} for data {:?}", data.dims));
    }
    let slice: usize = data.dims[k..].iter().product();
    let tuples = idx.len() / k;
    if updates.len() != tuples * slice {
        return Err(format!(
            "updates {:?} do not fit {tuples} slices of {slice}",
            updates.dims
        ));
    }
    let strides = strides(&data.dims);
    let mut offsets = Vec::with_capacity(tuples);
    for t in idx.chunks(k) {
        let mut offset = 0;
        for (j, &i) in t.iter().enumerate() {
            let n = data.dims[j] as i64;
            let i = if i < 0 { i + n } else { i };
            if !(0..n).contains(&i) {
                return Err(format!(
                    "index {i} is out of range for axis {j} of {:?}",
                    data.dims
                ));
            }
            offset += i as usize * strides[j];
        }
        offsets.push(offset);
    }
    let mut out = data.clone();
    match (&mut out.data, &updates.data) {
        (ConstData::F32(o), ConstData::F32(u)) => write_slices(o, u, &offsets, slice),
        (ConstData::I64(o), ConstData::I64(u)) => write_slices(o, u, &offsets, slice),
        _ => return Err("data and updates have different element types".into()),
    }
    Ok(out)
}

fn write_slices<T: Copy>(out: &mut [T], updates: &[T], offsets: &[usize], slice: usize) {
    for (t, &offset) in offsets.iter().enumerate() {
        out[offset..offset + slice].copy_from_slice(&updates[t * slice..(t + 1) * slice]);
    }
}
