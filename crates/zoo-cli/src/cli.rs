//! The command tree: one variant per command, each with its own argument module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::*;

#[derive(Parser)]
#[command(
    name = "zoo",
    version,
    about = "Transfer learning for classic ONNX image classifiers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Every model card: input, size, source, licence, and whether it is cached.
    List(list::ListArgs),
    /// Download a pretrained model from the Hugging Face Hub, verify it, and check its import.
    Fetch(fetch::FetchArgs),
    /// Finetune a pretrained model on your images: freeze early layers, replace the head, train.
    Finetune(finetune::FinetuneArgs),
    /// Sweep the learning rate of a finetune (fastai's lr_find): the loss against the rate as
    /// a picture and JSON, and a suggested --lr; nothing is trained for real.
    LrFind(lr_find::LrFindArgs),
    /// The whole pipeline offline on embedded MNIST defaults: import, freeze, new head,
    /// finetune, export, parity, evaluate.
    Demo(demo::DemoArgs),
    /// Train an architecture from scratch (lenet5, mnist-cnn, mlp, linear2d) with the finetune
    /// options.
    Train(train::TrainArgs),
    /// Write a run's best weights as ONNX (dynamic batch, zoo metadata) and check it against
    /// tract (and ONNX Runtime) on the run's validation images; the receipt is parity.json.
    Export(export::ExportArgs),
    /// Rebuild a run's report.html (one self-contained page: progress, confusion, mistakes,
    /// filters, freeze audit, parity) from its files.
    Report(report::ReportArgs),
    /// Accuracy (95 % Wilson interval), per-class precision and recall, confusion matrix.
    Evaluate(evaluate::EvaluateArgs),
    /// Labels and probabilities for images (zoo's network by default, with the model's own
    /// preprocessing).
    Predict(predict::PredictArgs),
    /// One row per image of a layer's activations (any layer or node output, e.g. fc7), as
    /// CSV or .npy, computed by zoo's network.
    Features(features::FeaturesArgs),
    /// Pictures of what a network learned: conv filters, one image's feature maps, a dataset's
    /// map at a layer.
    Show {
        #[command(subcommand)]
        command: show::ShowCommand,
    },
    /// Datasets: health check.
    Data {
        #[command(subcommand)]
        command: data::DataCommand,
    },
    /// Your own cards: give a local ONNX file a name that every command accepts.
    Card {
        #[command(subcommand)]
        command: card::CardCommand,
    },
    /// Layers, output shapes, parameter counts, the default freeze plan and op support.
    Inspect(inspect::InspectArgs),
    /// Check that zoo computes what tract (and ONNX Runtime) compute on the same inputs: the
    /// file's own import, or with --run the run's trained network against the file.
    Verify(verify::VerifyArgs),
    /// Fill a weight-stripped ONNX zoo file (light_*.onnx) with seeded random weights: a
    /// faithful stand-in of the real model for tests and benchmarks.
    Materialize(materialize::MaterializeArgs),
}

impl Command {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::List(args) => args.run(),
            Command::Fetch(args) => args.run(),
            Command::Finetune(args) => args.run(),
            Command::LrFind(args) => args.run(),
            Command::Demo(args) => args.run(),
            Command::Train(args) => args.run(),
            Command::Export(args) => args.run(),
            Command::Report(args) => args.run(),
            Command::Evaluate(args) => args.run(),
            Command::Predict(args) => args.run(),
            Command::Features(args) => args.run(),
            Command::Show { command } => command.run(),
            Command::Data { command } => command.run(),
            Command::Card { command } => command.run(),
            Command::Inspect(args) => args.run(),
            Command::Verify(args) => args.run(),
            Command::Materialize(args) => args.run(),
        }
    }
}
