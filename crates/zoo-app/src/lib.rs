//! `zoo-app`: what each `zoo` command does, as library calls that return serialisable reports.
//! The `zoo` binary only parses arguments and prints these reports; a Rust program can make the
//! same calls. This crate is the entry point: the option and report types of the crates below
//! it (`zoo-train`, `zoo-fetch`, `zoo-cards`) are re-exported where the calls take them.
//!
//! | want to | call |
//! |---|---|
//! | name a model (card, file or run directory) | [`model::ModelSpec::resolve`] |
//! | download a card's model | [`fetch::fetch_model`] |
//! | finetune, train from scratch, resume | [`train::run_finetune`], [`train::train_from_scratch`], [`train::resume`] |
//! | export a run to ONNX, parity checked | [`export::export_run`] |
//! | evaluate, predict, features | [`evaluate::evaluate`], [`predict::predict`], [`features::write`] |
//! | check zoo against tract / ONNX Runtime | [`verify::verify_file`] |
//!
//! Finetune a model on a folder of class folders and export it (`examples/finetune.rs`):
//!
//! ```no_run
//! use std::path::Path;
//! use zoo_app::model::ModelSpec;
//! use zoo_app::train::{class_count, run_finetune, FinetuneOptions, StderrReporter};
//!
//! # fn main() -> anyhow::Result<()> {
//! let data = Path::new("few_hundred");
//! let (resolved, hints) = ModelSpec::named("alexnet").resolve()?;
//! let mut options = FinetuneOptions::new(data.to_path_buf(), class_count(data)?);
//! options.epochs = 5;
//! let summary = run_finetune(&resolved.path, &hints, "alexnet", &options, None, &StderrReporter)?;
//! let engines = ["tract".to_string()];
//! let export = zoo_app::export::export_run(&summary.run_dir, None, None, &engines, 1e-4)?;
//! println!("{} (parity {})", export.output.display(), export.pass);
//! # Ok(())
//! # }
//! ```

pub mod cam;
pub mod cards;
pub mod data;
pub mod demo;
pub mod engines;
pub mod evaluate;
pub mod export;
pub mod features;
pub mod fetch;
pub mod inspect;
pub mod labeled;
pub mod model;
pub mod pixels;
pub mod predict;
pub mod profile;
pub mod show;
pub mod standin;
pub mod train;
pub mod tta;
pub mod verify;

/// The CPU backend (burn's `flex`: measured faster than ndarray on these machines).
pub type CpuBackend = burn::backend::Flex;
