//! Weights of a run as ONNX files carrying zoo metadata (labels, preprocessing, base model).

use std::path::Path;

use burn::tensor::backend::Backend;
use zoo_cards::Preprocessing;
use zoo_net::Network;
use zoo_onnx::pb::StringStringEntryProto;

/// The metadata keys zoo writes into ONNX files and reads back (a model's profile, `zoo
/// inspect`): defined here only.
pub const META_CARD: &str = "zoo.card";
pub const META_PREPROCESSING: &str = "zoo.preprocessing";
pub const META_LABELS: &str = "zoo.labels";
pub const META_BASE_SHA256: &str = "zoo.base_sha256";
pub const META_FREEZE: &str = "zoo.freeze";
pub const META_HEAD: &str = "zoo.head";
/// The run's summary.json, added by `zoo export`.
pub const META_TRAINING_SUMMARY: &str = "zoo.training_summary";

/// Sets `key` to `value` in a model's metadata (replacing an earlier value).
pub fn set_metadata(proto: &mut zoo_onnx::pb::ModelProto, key: &str, value: String) {
    proto.metadata_props.retain(|p| p.key != key);
    proto.metadata_props.push(StringStringEntryProto {
        key: key.into(),
        value,
    });
}

pub struct Metadata {
    pub card: Option<String>,
    pub preprocessing: Preprocessing,
    pub labels: Vec<String>,
    pub base_sha256: String,
    /// The default freeze plan and head for a later finetune of these weights.
    pub freeze: Vec<String>,
    pub head: String,
}

/// Writes `net` with `meta` as an ONNX file at `path`, atomically, streamed tensor by tensor
/// ([`Network::write_model_proto`]).
pub fn write<B: Backend>(net: &Network<B>, meta: &Metadata, path: &Path) -> std::io::Result<()> {
    zoo_io::write_atomic_with(path, |out| {
        net.write_model_proto(|proto| set_all(proto, meta), out)
    })
}

/// Every zoo metadata key of `meta` set on `proto`.
fn set_all(proto: &mut zoo_onnx::pb::ModelProto, meta: &Metadata) {
    let mut set = |key: &str, value: String| set_metadata(proto, key, value);
    if let Some(card) = &meta.card {
        set(META_CARD, card.clone());
    }
    set(META_PREPROCESSING, to_json(&meta.preprocessing));
    set(META_LABELS, to_json(&meta.labels));
    set(META_BASE_SHA256, meta.base_sha256.clone());
    set(META_FREEZE, to_json(&meta.freeze));
    set(META_HEAD, meta.head.clone());
}

fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
