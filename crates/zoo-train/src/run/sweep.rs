//! The learning-rate phase: `zoo finetune --lr auto` runs the finder (see [`crate::lr_find`])
//! on the run's own inputs (the feature cache included) before training and trains at its
//! suggestion; `zoo lr-find` runs the same phases up to the inputs, then the finder alone.

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use zoo_net::FeatureCut;

use super::{binding_of, context, model::Model, CpuTrain, Job, TrainProfile};
use crate::device::Device;
use crate::lr_find::{LrFind, Sweep, SweepJob};
use crate::options::FinetuneOptions;
use crate::trainer::{Inputs, Reporter};

/// Where the finder writes its record and its picture.
pub const LR_FIND_JSON: &str = "lr-find.json";
pub const LR_FIND_PNG: &str = "lr-find.png";

/// The inputs a sweep trains on.
pub(super) struct SweepInputs<'a> {
    pub(super) cut: Option<&'a FeatureCut>,
    pub(super) train: &'a Inputs,
}

impl Job<'_> {
    /// Sweeps on a copy of `model`'s network and writes the record and picture into `dir`.
    pub(super) fn sweep_lr<B: AutodiffBackend>(
        &self,
        model: &Model<B>,
        options: &FinetuneOptions,
        inputs: SweepInputs,
        (dir, device, device_kind): (&Path, &B::Device, Device),
    ) -> anyhow::Result<LrFind> {
        let sweep = Sweep::default();
        self.reporter.info(&format!(
            "lr-find: {} steps from {:e} to {:e}, one mini-batch each, on a copy of the network",
            sweep.steps, sweep.start, sweep.end
        ));
        let found = crate::lr_find::run(
            SweepJob {
                net: model.net.clone(),
                cut: inputs.cut,
                train: inputs.train,
                head_params: &model.head_params,
                options,
                host_optimizer: device_kind == Device::Cpu,
                device: device.clone(),
            },
            sweep,
        )?;
        let io = |r: std::io::Result<()>| context(r, &format!("cannot write to {}", dir.display()));
        io(crate::rundir::write_json(dir, LR_FIND_JSON, &found))?;
        io(crate::report::plot::lr_find(&dir.join(LR_FIND_PNG), &found))?;
        let said: Vec<String> = (found.suggestions.iter())
            .map(|s| format!("{} {:.2e}", s.rule, s.lr))
            .collect();
        self.reporter.info(&format!(
            "lr-find: suggested {} ({}); the curve: {}",
            said.join(", "),
            found.stopped.as_deref().unwrap_or("every rate swept"),
            dir.join(LR_FIND_PNG).display()
        ));
        Ok(found)
    }

    /// `zoo lr-find`: data, network and inputs as a run would have them, then the sweep, its
    /// files in `out`; nothing else is written.
    fn find_lr<B: AutodiffBackend>(
        self,
        device: B::Device,
        device_kind: Device,
        out: &Path,
    ) -> anyhow::Result<LrFind> {
        let mut options = self.run_options();
        let (data, train, val) = self.load_data(&options)?;
        let model = self.build_model::<B>(&mut options, (train.len(), train.chw), &device)?;
        self.check_model_fits(&model)?;
        context(
            std::fs::create_dir_all(out),
            &format!("cannot create {}", out.display()),
        )?;
        let binding = binding_of(&data, &model);
        let (cut, train_in, _, _) =
            self.prepare_inputs(&model.net, &options, (train, val), (out, &binding), &device)?;
        let inputs = SweepInputs {
            cut: cut.as_ref(),
            train: &train_in,
        };
        let found = self.sweep_lr(&model, &options, inputs, (out, &device, device_kind));
        // A spilled cache is of no use once the sweep is done.
        let _ = std::fs::remove_dir_all(out.join(super::inputs::CACHE_DIR));
        found
    }
}

/// `zoo lr-find`: sweeps the learning rate for finetuning `base` with `options` (its data,
/// freeze plan, optimizer, head factor and batch size), writing `lr-find.json` and
/// `lr-find.png` into `out`.
pub fn lr_find(
    base: &super::BaseModel,
    profile: &TrainProfile,
    options: &FinetuneOptions,
    out: &Path,
    reporter: &dyn Reporter,
) -> anyhow::Result<LrFind> {
    options.validate().map_err(anyhow::Error::msg)?;
    let (device, note) = crate::device::resolve(options.device).map_err(anyhow::Error::msg)?;
    reporter.info(&note.unwrap_or_else(|| format!("device: {}", device.backend_name())));
    let job = Job {
        base,
        profile,
        options,
        resume: None,
        stop: None,
        reporter,
    };
    match device {
        Device::Cpu => job.find_lr::<CpuTrain>(Default::default(), Device::Cpu, out),
        #[cfg(feature = "cuda")]
        Device::Cuda => crate::device::on_cuda(|cuda| {
            job.find_lr::<burn::backend::Autodiff<crate::device::CudaBackend>>(
                cuda,
                Device::Cuda,
                out,
            )
        }),
    }
}
