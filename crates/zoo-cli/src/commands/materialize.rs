//! `zoo materialize light.onnx -o out.onnx`: a weight-stripped zoo file filled with seeded
//! random weights.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Args)]
pub struct MaterializeArgs {
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
}

impl MaterializeArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        zoo_app::standin::materialize_file(&self.input, &self.output, self.seed, self.opset)?;
        println!("{}", self.output.display());
        Ok(ExitCode::SUCCESS)
    }
}
