//! A run's config.json: written before the first step (a killed run can be read and resumed),
//! read back by `--resume`, `zoo export` and `zoo evaluate RUN`.

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::data::Data;
use super::model::Model;
use super::{context, Job, TrainProfile};
use crate::checkpoint::Checkpoint;
use crate::device::Device;
use crate::options::FinetuneOptions;
use crate::rundir;

/// What `resume` hands to the run: the checkpoint, and the base model it was trained from.
pub(super) struct Resume {
    pub(super) checkpoint: Checkpoint,
    pub(super) base_sha256: String,
}

/// The base model as config.json records it, for a resume.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum BaseSource {
    File(PathBuf),
    Arch(crate::arch::ArchSpec),
}

/// The parts of config.json a resume needs.
#[derive(Deserialize)]
pub(super) struct RunConfig {
    pub(super) base: BaseSource,
    pub(super) base_sha256: String,
    pub(super) profile: TrainProfile,
    pub(super) options: FinetuneOptions,
}

impl RunConfig {
    pub(super) fn read(run: &Path) -> anyhow::Result<Self> {
        let path = run.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a zoo run ({}: {e})",
                run.display(),
                path.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{}: {e} (written by another zoo version?)", path.display())
        })
    }
}

/// Reads the options a run was started with (its config.json).
pub fn run_options(run: &Path) -> anyhow::Result<FinetuneOptions> {
    Ok(RunConfig::read(run)?.options)
}

impl Job<'_> {
    pub(super) fn metadata<B: AutodiffBackend>(
        &self,
        data: &Data,
        model: &Model<B>,
    ) -> crate::export::Metadata {
        crate::export::Metadata {
            card: self.profile.card.clone(),
            preprocessing: self.profile.preprocessing.clone(),
            labels: data.dataset.classes.clone(),
            base_sha256: model.base_sha256.clone(),
            freeze: self.profile.freeze.clone(),
            head: self.profile.head.clone(),
        }
    }

    /// config.json and labels.txt, before the first step: a killed run can be read and resumed.
    pub(super) fn write_config<B: AutodiffBackend>(
        &self,
        dir: &Path,
        options: &FinetuneOptions,
        data: &Data,
        model: &Model<B>,
        device_kind: Device,
    ) -> anyhow::Result<()> {
        let io = |r: std::io::Result<()>| context(r, &format!("cannot write to {}", dir.display()));
        let labels: String = data
            .dataset
            .classes
            .iter()
            .map(|c| format!("{c}\n"))
            .collect();
        io(rundir::write(dir, "labels.txt", labels.as_bytes()))?;
        let config = serde_json::json!({
            "model": self.profile.name,
            "model_path": self.base.describe(),
            "base": self.base.source(),
            "base_sha256": model.base_sha256,
            "profile": self.profile,
            "options": options,
            "split": { "plan": format!("{:?}", data.split_plan), "train": data.train_count, "val": data.val_count },
            "frozen_layers": model.frozen,
            "head": model.head,
            "seed": options.seed,
            "versions": { "zoo": env!("CARGO_PKG_VERSION"), "burn": "0.21", "backend": device_kind.backend_name() },
        });
        io(rundir::write_json(dir, "config.json", &config))
    }
}
