//! `zoo export RUN --onnx`: the run's best weights as ONNX, checked against tract and ORT.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::ui::{describe_export, passed, print_json, warn};

#[derive(Args)]
pub struct ExportArgs {
    /// Run directory (default runs/latest).
    #[arg(default_value = "runs/latest")]
    run: PathBuf,
    /// Export as ONNX (the only format).
    #[arg(long, required = true)]
    onnx: bool,
    /// Output file (default RUN/model.onnx).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Write this ONNX opset (default: the base model's).
    #[arg(long)]
    opset: Option<i64>,
    /// Reference engines, comma separated: tract, ort.
    #[arg(long, value_delimiter = ',', default_value = "tract,ort")]
    engines: Vec<String>,
    /// Largest accepted max_rel_diff.
    #[arg(long, default_value_t = zoo_app::verify::DEFAULT_TOLERANCE)]
    tolerance: f64,
    #[arg(long)]
    json: bool,
}

impl ExportArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let report = zoo_app::export::export_run(
            &self.run,
            self.output.as_deref(),
            self.opset,
            &self.engines,
            self.tolerance,
        )?;
        warn(&report.warnings);
        for m in &report.shape_mismatches {
            eprintln!("error: the written file's declared shape is wrong: {m}");
        }
        if self.json {
            print_json(&report)?;
        } else {
            describe_export(&report);
            println!("{}", report.output.display());
        }
        Ok(passed(report.pass))
    }
}
