//! Writing ONNX files, atomically and safely through `zoo_io::write_atomic`.

use std::path::Path;

use prost::Message;
use tract_onnx::pb::ModelProto;

pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

pub fn save_atomic(model: &ModelProto, path: &Path) -> std::io::Result<()> {
    zoo_io::write_atomic(path, &encode(model))
}
