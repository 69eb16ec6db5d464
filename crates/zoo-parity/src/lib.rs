//! `zoo-parity`: proves a zoo network computes what an independent ONNX runtime computes.

pub mod compare;
pub mod layout;
mod ort_engine;
mod tract_engine;
pub mod verify;

pub use compare::{compare, Agreement};
pub use ort_engine::{find_onnxruntime, OrtEngine};
pub use tract_engine::{TractEngine, TractError};
pub use verify::{
    compare_outputs, expose_first_output, run_network, verify_outputs, ClassAgreement, Engine,
    EngineReport, EngineRows, SampleClasses, VerifyReport, DEFAULT_TOLERANCE,
};
