//! `zoo-train`: finetuning imported ONNX classifiers. The head layer is replaced with an
//! N-way one, the card's early layers are frozen, the frozen prefix can be run once and cached,
//! and each run leaves a directory with weights (ONNX), logs and a freeze audit.

pub mod arch;
pub mod checkpoint;
pub mod decision;
pub mod device;
pub mod export;
pub mod finetune;
pub mod host_sgd;
pub mod journal;
pub mod options;
pub mod pictures;
pub mod plot;
pub mod report;
pub mod run_report;
pub mod rundir;
pub mod trainer;
pub mod updater;

pub use arch::{Activation, ArchSpec};
pub use device::{Device, DeviceChoice};
pub use finetune::{
    finetune, frozen_unchanged, resume, run_data, run_options, train_from_scratch, BaseModel,
    CpuTrain, FreezeAudit, Summary, TrainProfile,
};
pub use journal::RunStatus;
pub use options::{FinetuneOptions, LossKind, OptimizerKind};
pub use trainer::{Reporter, ValidationRow};
