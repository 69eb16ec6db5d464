//! `zoo train ARCH --data DIR`: an architecture from scratch (the lecture's networks).

use std::process::ExitCode;

use clap::Args;
use zoo_app::train::{Activation, ArchSpec, Start};

use super::training::{resume, TrainingArgs};
use crate::ui::run_training;

#[derive(Args)]
pub struct TrainArgs {
    /// Architecture: lenet5 (the lecture's MATLAB LeNet-5 with batch norm), mnist-cnn (the
    /// ONNX zoo's MNIST graph), mlp (fully connected on the pixels), linear2d (one neuron on
    /// two features of a digit: average intensity and symmetry).
    #[arg(required_unless_present = "resume", conflicts_with = "resume")]
    arch: Option<String>,
    /// mlp: hidden layer widths, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,30",
        conflicts_with = "resume"
    )]
    hidden: Vec<usize>,
    /// mlp: sigmoid, tanh or relu.
    #[arg(long, default_value = "relu", conflicts_with = "resume")]
    activation: Activation,
    /// Keep only these classes of the data (MNIST digits), e.g. `--digits 1,5` for linear2d.
    #[arg(long, value_delimiter = ',', conflicts_with = "resume")]
    digits: Option<Vec<String>>,
    #[command(flatten)]
    training: TrainingArgs,
}

impl TrainArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        if let Some(run) = &self.training.resume {
            return resume(run, self.training.json);
        }
        let name = self.arch.expect("clap requires ARCH without --resume");
        let arch = ArchSpec {
            hidden: if name == "mlp" {
                self.hidden
            } else {
                Vec::new()
            },
            activation: self.activation,
            ..ArchSpec::named(&name)
        };
        let json = self.training.json;
        let options = self.training.options(Start::Scratch, self.digits)?;
        run_training(json, |stop, reporter| {
            zoo_app::train::train_from_scratch(&arch, &options, Some(stop), reporter)
        })
    }
}
