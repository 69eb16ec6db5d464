//! The `zoo` command line: parses arguments, calls `zoo-app`, prints reports.
//! Exit status: 0 success, 1 a check failed (e.g. parity beyond tolerance), 2 an error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use zoo_app::{inspect, verify};
use zoo_fetch::{resolve_model, HubCache, ResolvedModel};

#[derive(Parser)]
#[command(
    name = "zoo",
    version,
    about = "Transfer learning for classic ONNX image classifiers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Layers, output shapes, parameter counts, the default freeze plan and op support.
    Inspect {
        #[command(flatten)]
        model: ModelOpts,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check that zoo's import computes what tract computes, on the same inputs.
    Verify {
        #[command(flatten)]
        model: ModelOpts,
        /// Folder of images (preprocessed per the card or the file's metadata); random inputs otherwise.
        #[arg(long)]
        images: Option<PathBuf>,
        /// Number of inputs (default: 8 random ones, or every image in --images).
        #[arg(long)]
        samples: Option<usize>,
        /// Batch size for zoo's forward pass.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Reference engines, comma separated: tract, ort.
        #[arg(long, value_delimiter = ',', default_value = "tract")]
        engines: Vec<String>,
        /// Seed for random inputs.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Largest accepted max_rel_diff.
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f64,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Fill a weight-stripped ONNX zoo file (light_*.onnx) with seeded random weights: a
    /// faithful stand-in of the real model for tests and benchmarks.
    Materialize {
        /// The light_*.onnx file (weights replaced by ConstantOfShape nodes).
        input: PathBuf,
        /// Where to write the stand-in.
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Move the graph to this opset (e.g. 12) after filling.
        #[arg(long)]
        opset: Option<i64>,
    },
}

#[derive(Args)]
struct ModelOpts {
    /// A model card name (alexnet, lenet), an ONNX file, or a run directory.
    model: String,
    /// Use this card's preprocessing and freeze plan for a local file.
    #[arg(long, value_name = "CARD")]
    like: Option<String>,
    /// Pick the card's file for this opset.
    #[arg(long)]
    opset: Option<i64>,
}

impl ModelOpts {
    fn resolve(&self) -> anyhow::Result<ResolvedModel> {
        Ok(resolve_model(
            &self.model,
            self.like.as_deref(),
            self.opset,
            &HubCache::from_env(),
        )?)
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn warn(messages: &[String]) {
    for m in messages {
        eprintln!("warning: {m}");
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Inspect { model, json } => {
            let resolved = model.resolve()?;
            let report = inspect::inspect(&resolved.path, resolved.card.as_ref())?;
            if let Some(w) = report.profile.as_ref().and_then(|p| p.warning.clone()) {
                warn(&[w]);
            }
            if json {
                print_json(&report)?;
            } else {
                print!("{}", inspect::render(&report));
            }
            Ok(if report.import_error.is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Verify {
            model,
            images,
            samples,
            batch,
            engines,
            seed,
            tolerance,
            json,
        } => {
            let resolved = model.resolve()?;
            let options = verify::VerifyOptions {
                images,
                samples,
                batch,
                engines,
                seed,
                tolerance,
            };
            let outcome = verify::verify_file(&resolved.path, resolved.card.as_ref(), &options)?;
            warn(&outcome.warnings);
            if json {
                print_json(&outcome)?;
            } else {
                print!("{}", verify::render(&outcome));
            }
            Ok(if outcome.report.pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Materialize {
            input,
            output,
            seed,
            opset,
        } => {
            zoo_app::standin::materialize_file(&input, &output, seed, opset)?;
            println!("{}", output.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
