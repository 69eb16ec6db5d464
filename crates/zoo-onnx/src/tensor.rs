//! Constant tensors (initializers and folded constants) decoded from `TensorProto`, with
//! size limits so that a hostile file cannot make us allocate absurd memory.

use crate::error::{OnnxError, Result};
use tract_onnx::pb::{tensor_proto::DataType, TensorProto};

/// Largest number of elements one tensor may have (1 Gi elements = 4 GiB of f32).
/// Real classifiers stay far below: AlexNet's largest weight has 37.7 M elements.
pub const MAX_ELEMENTS: usize = 1 << 30;

#[derive(Clone, Debug, PartialEq)]
pub enum ConstData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A constant tensor: shape plus values.
#[derive(Clone, Debug, PartialEq)]
pub struct Constant {
    pub dims: Vec<usize>,
    pub data: ConstData,
}

impl Constant {
    pub fn f32(dims: Vec<usize>, values: Vec<f32>) -> Self {
        Self {
            dims,
            data: ConstData::F32(values),
        }
    }

    pub fn i64(dims: Vec<usize>, values: Vec<i64>) -> Self {
        Self {
            dims,
            data: ConstData::I64(values),
        }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            ConstData::F32(v) => v.len(),
            ConstData::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            ConstData::F32(v) => Some(v),
            ConstData::I64(_) => None,
        }
    }

    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            ConstData::I64(v) => Some(v),
            ConstData::F32(_) => None,
        }
    }

    pub fn is_float(&self) -> bool {
        matches!(self.data, ConstData::F32(_))
    }
}

/// Converts ONNX dims to sizes, refusing negative sizes, overflow and absurd element counts.
pub fn checked_dims(name: &str, dims: &[i64]) -> Result<(Vec<usize>, usize)> {
    let bad = |reason: String| OnnxError::BadTensor {
        name: name.to_string(),
        reason,
    };
    let mut sizes = Vec::with_capacity(dims.len());
    let mut count: usize = 1;
    for &d in dims {
        let d =
            usize::try_from(d).map_err(|_| bad(format!("negative dimension {d} in {dims:?}")))?;
        count = count
            .checked_mul(d)
            .ok_or_else(|| bad(format!("shape {dims:?} overflows")))?;
        sizes.push(d);
    }
    if count > MAX_ELEMENTS {
        return Err(bad(format!(
            "shape {dims:?} has {count} elements, more than the limit of {MAX_ELEMENTS}"
        )));
    }
    Ok((sizes, count))
}

/// A tensor's values from its raw bytes (little endian) or its typed field, as zoo holds them:
/// floats as f32, integers as i64.
fn decode_values(
    proto: &mut TensorProto,
    raw: &[u8],
    data_type: DataType,
) -> std::result::Result<ConstData, String> {
    Ok(match data_type {
        DataType::Float if raw.is_empty() => ConstData::F32(std::mem::take(&mut proto.float_data)),
        DataType::Float => ConstData::F32(decode_le::<4, f32>(raw, f32::from_le_bytes)),
        DataType::Double if raw.is_empty() => {
            ConstData::F32(proto.double_data.iter().map(|&v| v as f32).collect())
        }
        DataType::Double => ConstData::F32(
            (decode_le::<8, f64>(raw, f64::from_le_bytes).into_iter())
                .map(|v| v as f32)
                .collect(),
        ),
        DataType::Int64 if raw.is_empty() => ConstData::I64(std::mem::take(&mut proto.int64_data)),
        DataType::Int64 => ConstData::I64(decode_le::<8, i64>(raw, i64::from_le_bytes)),
        // Masks of comparisons (Equal, Where) that constant folding wrote out.
        DataType::Bool | DataType::Uint8 | DataType::Int8 if raw.is_empty() => {
            ConstData::I64(proto.int32_data.iter().map(|&v| v as i64).collect())
        }
        DataType::Bool | DataType::Uint8 => ConstData::I64(raw.iter().map(|&b| b as i64).collect()),
        DataType::Int8 => ConstData::I64(raw.iter().map(|&b| b as i8 as i64).collect()),
        DataType::Int32 if raw.is_empty() => {
            ConstData::I64(proto.int32_data.iter().map(|&v| v as i64).collect())
        }
        DataType::Int32 => ConstData::I64(
            (decode_le::<4, i32>(raw, i32::from_le_bytes).into_iter())
                .map(i64::from)
                .collect(),
        ),
        other => {
            return Err(format!(
                "element type {other:?} is not supported (zoo imports float32/float64 weights and int32/int64 shapes)"
            ))
        }
    })
}

/// Decodes a tensor, taking its payload out of the proto so that large weights exist once.
pub fn take_constant(proto: &mut TensorProto) -> Result<Constant> {
    let name = proto.name.clone();
    let bad = |reason: String| OnnxError::BadTensor {
        name: name.clone(),
        reason,
    };
    if !proto.external_data.is_empty() || proto.data_location == Some(1) {
        return Err(bad(
            "its weights are in another file: load the model from its path, with that file beside it"
                .into(),
        ));
    }
    if proto.segment.is_some() {
        return Err(bad("segmented tensors are not supported".into()));
    }
    let (dims, count) = checked_dims(&name, &proto.dims)?;
    let raw = std::mem::take(&mut proto.raw_data);
    let data_type = DataType::try_from(proto.data_type).unwrap_or(DataType::Undefined);
    let data = decode_values(proto, &raw, data_type).map_err(&bad)?;
    let len = match &data {
        ConstData::F32(v) => v.len(),
        ConstData::I64(v) => v.len(),
    };
    if len != count {
        return Err(bad(format!(
            "holds {len} values but its shape {:?} needs {count}",
            proto.dims
        )));
    }
    let elem_bytes = match data_type {
        DataType::Bool | DataType::Uint8 | DataType::Int8 => 1,
        DataType::Float | DataType::Int32 => 4,
        _ => 8,
    };
    if !raw.is_empty() && raw.len() != count * elem_bytes {
        return Err(bad(format!(
            "raw data has {} bytes but its shape needs {}",
            raw.len(),
            count * elem_bytes
        )));
    }
    Ok(Constant { dims, data })
}

fn decode_le<const N: usize, T>(raw: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    // A trailing partial element is dropped here and then caught by the length check.
    raw.chunks_exact(N)
        .map(|c| from(c.try_into().expect("chunks_exact yields N bytes")))
        .collect()
}

/// Encodes a float constant back into a `TensorProto` (raw little-endian data).
pub fn f32_proto(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// Encodes an int64 constant into a `TensorProto`.
pub fn i64_proto(name: &str, dims: &[usize], values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Int64 as i32,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}
