//! `zoo-train`: finetuning imported ONNX classifiers. The head layer is replaced with an
//! N-way one, the card's early layers are frozen, the frozen prefix can be run once and cached,
//! and each run leaves a directory with weights (ONNX), logs and a freeze audit.

pub mod arch;
pub mod checkpoint;
pub mod device;
pub mod ema;
pub mod export;
pub mod feature_cache;
pub mod host_sgd;
pub mod journal;
pub mod losses;
pub mod lr_find;
pub mod memory;
pub mod mixing;
pub mod options;
pub mod recipe;
pub mod report;
pub mod rows;
pub mod run;
pub mod rundir;
pub mod schedule;
pub mod split_inputs;
pub mod stages;
pub mod tensorboard;
pub mod trainer;
pub mod updater;

pub use arch::{Activation, ArchSpec};
pub use device::{Device, DeviceChoice};
pub use journal::RunStatus;
pub use options::{FinetuneOptions, FreezeChoice, LossKind, OptimizerKind, SplitChoice, Start};
pub use recipe::Recipe;
pub use run::{
    finetune, frozen_unchanged, lr_find, resume, run_data, run_options, train_from_scratch,
    BaseModel, CpuTrain, FreezeAudit, Summary, TrainProfile,
};
pub use schedule::{Schedule, Warmup};
pub use trainer::{Reporter, StderrReporter, ValidationRow};
