//! `zoo export RUN --onnx`: the run's best weights as ONNX, checked against tract and ORT.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use zoo_app::export::ExportReport;

use crate::ui::{passed, print_json, warn};

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
    #[arg(long, default_value_t = 1e-4)]
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
            describe(&report);
            println!("{}", report.output.display());
        }
        Ok(passed(report.pass))
    }
}

/// Each engine's agreement at batch 1 and 7, on stderr.
fn describe(report: &ExportReport) {
    for (batch, r) in [(1, &report.batch_1), (7, &report.batch_7)] {
        for e in &r.engines {
            eprintln!(
                "batch {batch}, {:<5}: max_abs_diff {:.2e}, max_rel_diff {:.2e}, top-1 agreement {:.4} over {} validation images: {}",
                e.name,
                e.agreement.max_abs_diff,
                e.agreement.max_rel_diff,
                e.agreement.top1_agreement,
                e.agreement.samples,
                if e.pass { "pass" } else { "FAIL" }
            );
        }
    }
}
