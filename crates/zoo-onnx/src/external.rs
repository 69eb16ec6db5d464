//! Reading a model file, with weights the exporter kept beside it. PyTorch's default
//! (dynamo) exporter writes `model.onnx` plus `model.onnx.data` and points each initializer
//! at a byte range of the second file; zoo reads those ranges into the model so everything
//! after loading sees one self-contained graph. A location is a file inside the model's
//! folder: absolute paths, `..` and links that lead out are refused, and every range is
//! checked against the file and the tensor's shape before anything is allocated.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{ModelProto, TensorProto};

use crate::error::{OnnxError, Result};
use crate::graph::{decode_proto, MAX_FILE_BYTES};
use crate::tensor::checked_dims;

/// Reads and decodes a model file (a regular file of at most [`MAX_FILE_BYTES`], checked
/// before anything is read), with external weights read in.
pub fn read_model(path: &Path) -> Result<ModelProto> {
    let bytes = read_checked(path, MAX_FILE_BYTES)?;
    if bytes.is_empty() {
        return Err(OnnxError::Decode("the file is empty (0 bytes)".into()));
    }
    let mut proto = decode_proto(bytes)?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    inline_external_data(&mut proto, folder)?;
    Ok(proto)
}

/// Whether any initializer keeps its values in another file.
pub fn has_external_data(proto: &ModelProto) -> bool {
    initializers(proto).any(is_external)
}

fn initializers(proto: &ModelProto) -> impl Iterator<Item = &TensorProto> {
    proto.graph.iter().flat_map(|g| &g.initializer)
}

fn is_external(t: &TensorProto) -> bool {
    t.data_location == Some(1) || !t.external_data.is_empty()
}

fn io_error(path: &Path, why: impl Into<String>) -> OnnxError {
    OnnxError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, why.into()),
    }
}

fn read_checked(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let io = |source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(io_error(
            path,
            "not a regular file (a device, FIFO or folder)",
        ));
    }
    if meta.len() > limit {
        return Err(io_error(
            path,
            format!(
                "{} bytes, more than the {limit}-byte limit (protobuf files are at most 2 GiB)",
                meta.len()
            ),
        ));
    }
    std::fs::read(path).map_err(io)
}

/// Moves every external initializer's bytes into the model (`raw_data`).
fn inline_external_data(proto: &mut ModelProto, folder: &Path) -> Result<()> {
    let Some(graph) = proto.graph.as_mut() else {
        return Ok(());
    };
    let mut files: HashMap<String, (PathBuf, File, u64)> = HashMap::new();
    let mut total = 0u64;
    for tensor in graph.initializer.iter_mut().filter(|t| is_external(t)) {
        let range = ExternalRange::of(tensor)?;
        let bad = |reason: String| OnnxError::BadTensor {
            name: tensor.name.clone(),
            reason,
        };
        if !files.contains_key(&range.location) {
            let opened = open_inside(folder, &range.location).map_err(&bad)?;
            files.insert(range.location.clone(), opened);
        }
        let (path, file, size) = files.get_mut(&range.location).expect("opened above");
        let expected = expected_bytes(tensor).map_err(&bad)?;
        let length = range.length.unwrap_or(expected);
        if length != expected {
            return Err(bad(format!(
                "its external range holds {length} bytes but its shape needs {expected}"
            )));
        }
        let end = range.offset.checked_add(length).filter(|&e| e <= *size);
        if end.is_none() {
            return Err(bad(format!(
                "bytes {}..{} lie past the end of {} ({size} bytes)",
                range.offset,
                range.offset.saturating_add(length),
                path.display()
            )));
        }
        total += length;
        if total > MAX_FILE_BYTES {
            return Err(bad(format!(
                "the external weights exceed {MAX_FILE_BYTES} bytes; zoo handles models up to 2 GiB"
            )));
        }
        let mut raw = vec![0u8; length as usize];
        file.seek(SeekFrom::Start(range.offset))
            .and_then(|_| file.read_exact(&mut raw))
            .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        tensor.raw_data = raw;
        tensor.external_data.clear();
        tensor.data_location = None;
    }
    Ok(())
}

/// Where an initializer's values are: a file name and a byte range of it.
struct ExternalRange {
    location: String,
    offset: u64,
    length: Option<u64>,
}

impl ExternalRange {
    fn of(tensor: &TensorProto) -> Result<Self> {
        let bad = |reason: String| OnnxError::BadTensor {
            name: tensor.name.clone(),
            reason,
        };
        let get = |key: &str| {
            tensor
                .external_data
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.value.as_str())
        };
        let number = |key: &str| -> Result<Option<u64>> {
            get(key)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| bad(format!("external `{key}` is `{v}`, not a byte count")))
                })
                .transpose()
        };
        let location = get("location")
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad("its values are external but no `location` names the file".into()))?
            .to_string();
        Ok(Self {
            location,
            offset: number("offset")?.unwrap_or(0),
            length: number("length")?,
        })
    }
}

/// Opens `location` relative to the model's folder, refusing names and links that lead out
/// of it and anything but a regular file.
fn open_inside(folder: &Path, location: &str) -> std::result::Result<(PathBuf, File, u64), String> {
    let relative = Path::new(location);
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !plain {
        return Err(format!(
            "its external file `{location}` is not a plain name inside the model's folder"
        ));
    }
    let path = folder.join(relative);
    let escapes = || format!("its external file `{location}` leads out of the model's folder");
    let real_folder = folder
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", folder.display()))?;
    let real = path.canonicalize().map_err(|e| {
        format!(
            "cannot open its external file {}: {e} (keep the `.data` file the exporter wrote beside the model)",
            path.display()
        )
    })?;
    if !real.starts_with(&real_folder) {
        return Err(escapes());
    }
    let file = File::open(&real).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    Ok((path, file, meta.len()))
}

/// The bytes a tensor's shape and type need.
fn expected_bytes(tensor: &TensorProto) -> std::result::Result<u64, String> {
    let (_, count) = checked_dims(&tensor.name, &tensor.dims).map_err(|e| match e {
        OnnxError::BadTensor { reason, .. } => reason,
        other => other.to_string(),
    })?;
    let element = match DataType::try_from(tensor.data_type).unwrap_or(DataType::Undefined) {
        DataType::Bool | DataType::Uint8 | DataType::Int8 => 1,
        DataType::Float | DataType::Int32 => 4,
        DataType::Double | DataType::Int64 => 8,
        other => return Err(format!("element type {other:?} is not supported")),
    };
    Ok(count as u64 * element)
}
