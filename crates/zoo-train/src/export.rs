//! Weights of a run as ONNX files carrying zoo metadata (labels, preprocessing, base model).

use burn::tensor::backend::Backend;
use prost::Message;
use zoo_cards::Preprocessing;
use zoo_net::Network;
use zoo_onnx::pb::StringStringEntryProto;

pub struct Metadata {
    pub card: Option<String>,
    pub preprocessing: Preprocessing,
    pub labels: Vec<String>,
    pub base_sha256: String,
    /// The default freeze plan and head for a later finetune of these weights.
    pub freeze: Vec<String>,
    pub head: String,
}

pub fn encode<B: Backend>(net: &Network<B>, meta: &Metadata) -> Vec<u8> {
    let mut proto = net.to_model_proto();
    let mut set = |key: &str, value: String| {
        proto.metadata_props.retain(|p| p.key != key);
        proto.metadata_props.push(StringStringEntryProto {
            key: key.into(),
            value,
        });
    };
    if let Some(card) = &meta.card {
        set("zoo.card", card.clone());
    }
    set(
        "zoo.preprocessing",
        serde_json::to_string(&meta.preprocessing).unwrap_or_default(),
    );
    set(
        "zoo.labels",
        serde_json::to_string(&meta.labels).unwrap_or_default(),
    );
    set("zoo.base_sha256", meta.base_sha256.clone());
    set(
        "zoo.freeze",
        serde_json::to_string(&meta.freeze).unwrap_or_default(),
    );
    set("zoo.head", meta.head.clone());
    proto.encode_to_vec()
}
