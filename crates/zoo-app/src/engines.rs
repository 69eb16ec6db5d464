//! The reference engines a parity check runs (tract always, ONNX Runtime when asked and
//! available), and zoo's own outputs on the device the user picked.

use prost::Message;
use zoo_net::Network;
use zoo_onnx::pb::ModelProto;
use zoo_onnx::OnnxModel;
use zoo_parity::{run_network, Engine, EngineRows, OrtEngine, TractEngine};

use crate::pixels::{rows_by_block, Pixels};
use crate::tta::{averaged, View};
use zoo_train::{Device, DeviceChoice};

pub struct Engines {
    tract: Option<TractEngine>,
    ort: Option<OrtEngine>,
    /// Why an asked-for engine is missing (ONNX Runtime not installed, say).
    pub warnings: Vec<String>,
}

impl Engines {
    /// Opens the named engines (`tract`, `ort`) on a model, reporting the value `compared_at`
    /// (the logits). tract is used when nothing else could be opened, so a check always has a
    /// reference.
    pub fn open(
        mut model: ModelProto,
        chw: [usize; 3],
        any_batch: bool,
        names: &[String],
        compared_at: &str,
    ) -> anyhow::Result<Self> {
        zoo_parity::expose_first_output(&mut model, compared_at);
        let bytes = &model.encode_to_vec()[..];
        drop(model);
        let mut engines = Self {
            tract: None,
            ort: None,
            warnings: Vec::new(),
        };
        for name in names {
            match name.as_str() {
                "tract" => engines.tract = Some(TractEngine::from_bytes(bytes, chw, any_batch)?),
                "ort" => match OrtEngine::from_bytes(bytes, chw) {
                    Ok(o) => engines.ort = Some(o),
                    Err(why) => engines
                        .warnings
                        .push(format!("{why}; carrying on with tract")),
                },
                other => anyhow::bail!("unknown engine `{other}`; engines: tract, ort"),
            }
        }
        if engines.tract.is_none() && engines.ort.is_none() {
            engines.tract = Some(TractEngine::from_bytes(bytes, chw, any_batch)?);
        }
        Ok(engines)
    }

    pub fn list(&self) -> Vec<&dyn Engine> {
        let mut list: Vec<&dyn Engine> = Vec::new();
        if let Some(t) = &self.tract {
            list.push(t);
        }
        if let Some(o) = &self.ort {
            list.push(o);
        }
        list
    }
}

/// zoo's logits for `images` (see [`zoo_onnx::Graph::logits_value`]), run `batch` at a time
/// on `device`.
pub fn network_outputs(
    model: OnnxModel,
    images: Pixels,
    (batch, views): (usize, &[View]),
    device: Device,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let value = model.graph.logits_value().to_string();
    let chw = model.graph.input_chw();
    let rows = match device {
        Device::Cpu => {
            let d = Default::default();
            let net = Network::<crate::CpuBackend>::from_model(model, &d);
            let run = |block: &[f32]| Ok(run_network(&net, block, batch, &value, &d)?);
            viewed_rows(images, chw, (batch, views), run)?
        }
        #[cfg(feature = "cuda")]
        Device::Cuda => zoo_train::device::on_cuda(|d| {
            let net = Network::<zoo_train::device::CudaBackend>::from_model(model, &d);
            let run = |block: &[f32]| Ok(run_network(&net, block, batch, &value, &d)?);
            viewed_rows(images, chw, (batch, views), run)
        })?,
    };
    Ok(rows)
}

/// Rows of `run` over `images` block by block, averaged over `views` (see [`crate::tta`]).
fn viewed_rows(
    images: Pixels,
    chw: [usize; 3],
    (batch, views): (usize, &[View]),
    mut run: impl FnMut(&[f32]) -> anyhow::Result<Vec<Vec<f32>>>,
) -> anyhow::Result<Vec<Vec<f32>>> {
    rows_by_block(images, batch, |block| averaged(block, chw, views, &mut run))
}

/// Every engine's rows for `images`, the engines run side by side on each block.
pub fn engine_rows(
    engines: &[&dyn Engine],
    images: Pixels,
    batch: usize,
) -> anyhow::Result<Vec<EngineRows>> {
    let mut theirs: Vec<EngineRows> = (engines.iter())
        .map(|e| EngineRows {
            name: e.name().to_string(),
            batch: e.effective_batch(batch),
            rows: Vec::with_capacity(images.len()),
        })
        .collect();
    images.for_each_block(batch, |block| {
        for (engine, theirs) in engines.iter().zip(&mut theirs) {
            let rows = engine.run(block, batch).map_err(anyhow::Error::msg)?;
            theirs.rows.extend(rows);
        }
        Ok(())
    })?;
    Ok(theirs)
}

/// The device `choice` stands for. What `auto` picked is reported as the report's device or
/// engine, not as a warning: falling back to the CPU is the normal case.
pub fn resolve_device(choice: DeviceChoice) -> anyhow::Result<Device> {
    Ok(zoo_train::device::resolve(choice)
        .map_err(anyhow::Error::msg)?
        .0)
}

/// Images per forward call in `zoo evaluate` and `zoo predict`.
pub const BATCH: usize = 32;

/// What computes the predictions of `zoo evaluate` and `zoo predict`: zoo's own network
/// (the default: the fast path, on CPU or CUDA), or an independent runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Runtime {
    #[default]
    Zoo,
    Tract,
    Ort,
}

impl std::str::FromStr for Runtime {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zoo" => Ok(Self::Zoo),
            "tract" => Ok(Self::Tract),
            "ort" => Ok(Self::Ort),
            other => Err(format!("--engine must be zoo, tract or ort, not `{other}`")),
        }
    }
}

/// Rows of outputs for `images` (one per image, `batch` at a time where the file allows it)
/// and a description of what computed them. zoo's rows are the logits; tract's and ONNX
/// Runtime's are the file's output (`logits` says which).
pub struct Outputs {
    pub rows: Vec<Vec<f32>>,
    pub engine: String,
    pub logits: bool,
}

/// How [`outputs`] runs: images per call, the engine, the device, and the views averaged
/// (`tta::PLAIN`, or `tta::views` for `--tta`).
pub struct Runner<'a> {
    pub batch: usize,
    pub runtime: Runtime,
    pub device: DeviceChoice,
    pub views: &'a [View],
}

pub fn outputs(
    path: &std::path::Path,
    model: OnnxModel,
    images: Pixels,
    runner: Runner,
) -> anyhow::Result<Outputs> {
    let Runner {
        batch,
        runtime,
        device,
        views,
    } = runner;
    let chw = model.graph.input_chw();
    let any_batch = model.graph.input.dims[0].is_none() && model.graph.shapes.fixed_batch.is_none();
    if runtime != Runtime::Zoo && device == DeviceChoice::Cuda {
        anyhow::bail!("--device cuda runs zoo's own network; tract and ONNX Runtime run on the CPU here (leave --engine out)");
    }
    match runtime {
        Runtime::Zoo => {
            let device = resolve_device(device)?;
            let batch = if any_batch { batch } else { 1 };
            let rows = network_outputs(model, images, (batch, views), device)?;
            Ok(Outputs {
                rows,
                engine: format!("zoo network on {}", device.backend_name()),
                logits: true,
            })
        }
        Runtime::Tract => {
            drop(model);
            let tract = TractEngine::from_path(path, chw, any_batch)?;
            Ok(Outputs {
                rows: viewed_rows(images, chw, (batch, views), |block| {
                    Ok(tract.run_batch(block, batch)?)
                })?,
                engine: "tract (CPU)".into(),
                logits: false,
            })
        }
        Runtime::Ort => {
            drop(model);
            let ort = OrtEngine::from_path(path, chw).map_err(anyhow::Error::msg)?;
            let run = |block: &[f32]| ort.run_batch(block, batch).map_err(anyhow::Error::msg);
            Ok(Outputs {
                rows: viewed_rows(images, chw, (batch, views), run)?,
                engine: "ONNX Runtime (CPU)".into(),
                logits: false,
            })
        }
    }
}
