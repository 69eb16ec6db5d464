//! Writing ONNX files atomically: a temp file in the same folder, fsync, then rename, so a
//! crash or a full disk never leaves a truncated model under the final name.

use std::io::Write;
use std::path::Path;

use prost::Message;
use tract_onnx::pb::ModelProto;

pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

pub fn save_atomic(model: &ModelProto, path: &Path) -> std::io::Result<()> {
    write_atomic(path, &encode(model))
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
