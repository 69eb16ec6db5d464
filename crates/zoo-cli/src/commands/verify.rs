//! `zoo verify MODEL`: zoo against tract (and ONNX Runtime) on the same inputs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::RangedU64ValueParser;
use clap::Args;
use zoo_app::verify::{self, VerifyOptions};

use crate::args::ModelOpts;
use crate::ui::{emit, note_recipe, passed, warn};

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    model: ModelOpts,
    /// Folder of images (preprocessed per the card or the file's metadata); random inputs otherwise.
    #[arg(long, conflicts_with = "run")]
    images: Option<PathBuf>,
    /// Compare the file with this run's trained network, on the run's validation images.
    #[arg(long, value_name = "RUN_DIR")]
    run: Option<PathBuf>,
    /// With --run: check on these labelled images (class folders, CSV, IDX) instead.
    #[arg(long, requires = "run")]
    data: Option<PathBuf>,
    /// Where zoo's side runs: auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    device: zoo_app::train::DeviceChoice,
    /// Number of inputs (default: 8 random ones, or every image in --images), 1 to 100000.
    #[arg(long, value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    samples: Option<usize>,
    /// Batch size for zoo's forward pass (1 to 4096).
    #[arg(long, default_value_t = verify::DEFAULT_BATCH, value_parser = RangedU64ValueParser::<usize>::new().range(1..=4096))]
    batch: usize,
    /// Reference engines, comma separated: tract, ort.
    #[arg(long, value_delimiter = ',', default_value = "tract")]
    engines: Vec<String>,
    /// Seed for random inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Largest accepted max_rel_diff.
    #[arg(long, default_value_t = verify::DEFAULT_TOLERANCE)]
    tolerance: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

impl VerifyArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let (resolved, hints) = self.model.spec().resolve()?;
        let options = VerifyOptions {
            images: self.images,
            run: self.run,
            data: self.data,
            device: self.device,
            samples: self.samples,
            batch: self.batch,
            engines: self.engines,
            seed: self.seed,
            tolerance: self.tolerance,
        };
        let outcome = verify::verify_file(&resolved.path, &hints, &options)?;
        warn(&outcome.warnings);
        note_recipe(self.json, &outcome.preprocessing);
        emit(self.json, &outcome, verify::render)?;
        Ok(passed(outcome.report.pass))
    }
}
