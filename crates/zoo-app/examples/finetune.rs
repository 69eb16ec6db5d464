//! zoo as a library: open a model (a card name such as `alexnet`, or an ONNX file), finetune
//! it on a folder of class folders, and export it to ONNX with its parity checked by tract.
//!
//! cargo run --release -p zoo-app --example finetune -- MODEL DATA_DIR OUT_DIR

use std::path::{Path, PathBuf};

use zoo_app::export::{export_run, ExportReport};
use zoo_app::model::ModelSpec;
use zoo_app::train::{class_count, run_finetune, FinetuneOptions, StderrReporter, Summary};

/// Finetunes `model` on `data` for `epochs` into the run directory `out`, then exports it.
pub fn finetune_and_export(
    model: &str,
    data: &Path,
    out: &Path,
    epochs: usize,
) -> anyhow::Result<(Summary, ExportReport)> {
    let (resolved, hints) = ModelSpec::named(model).resolve()?;
    let mut options = FinetuneOptions::new(data.to_path_buf(), class_count(data)?);
    options.epochs = epochs;
    options.out = Some(out.to_path_buf());
    let name = zoo_app::model::run_name(&resolved);
    let summary = run_finetune(
        &resolved.path,
        &hints,
        &name,
        &options,
        None,
        &StderrReporter,
    )?;
    let engines = ["tract".to_string()];
    let export = export_run(&summary.run_dir, None, None, &engines, 1e-4)?;
    Ok((summary, export))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, data, out] = args.as_slice() else {
        anyhow::bail!("usage: finetune MODEL DATA_DIR OUT_DIR");
    };
    let (summary, export) = finetune_and_export(model, Path::new(data), &PathBuf::from(out), 5)?;
    println!(
        "best validation accuracy {:.1}%; {} (parity: {})",
        100.0 * summary.best_val_accuracy,
        export.output.display(),
        if export.pass { "pass" } else { "FAIL" }
    );
    Ok(())
}
