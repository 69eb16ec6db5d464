//! A seeded, bounded mutation test of the importer and of `verify`'s path (import, zoo's
//! forward at batch 1 and 2, tract on the same file, the comparison). Byte-level mutations
//! (flips, cuts, interesting values, deleted and repeated ranges) and structure-level ones
//! (ops swapped, inputs rewired or dropped, attributes, shapes, data types and opsets set to
//! edge values, nodes removed or reordered, outputs moved) of small classifiers. Every case
//! must end in a result or an error: a panic fails the test, and the address space is capped
//! so an unbounded allocation aborts it instead of passing.
//!
//! `cargo test --test fuzz` runs 4,000 cases (about 4 s); with `--ignored` (CI's
//! `--include-ignored`) 20,000 more with another seed; `ZOO_FUZZ_CASES=100000 ZOO_FUZZ_SEED=7
//! cargo test --test fuzz -- --ignored` runs a longer campaign.

use std::panic::{catch_unwind, AssertUnwindSafe};

use burn::backend::Flex;
use prost::Message;
use zoo_onnx::builder::{head_shape_classifier, SeededRng};
use zoo_onnx::pb::{attribute_proto::AttributeType, ModelProto};
use zoo_onnx::OnnxModel;
use zoo_parity::{run_network, Engine, TractEngine};

/// The virtual memory a case may use (the test binary's whole address space).
const ADDRESS_SPACE: u64 = 16 << 30;
/// Inputs above this many values per sample are imported but not run (the harness allocates
/// the inputs itself).
const MAX_RUN_INPUT: usize = 1 << 20;

fn seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = ["gemm-1001", "conv-flatten", "conv-softmax", "pool-conv"]
        .iter()
        .map(|k| head_shape_classifier(k, 10).encode_to_vec())
        .collect();
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/exporters");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the exporter fixtures are committed")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    // One opset of each family keeps the run short; the families differ in their ops.
    let mut families = std::collections::BTreeSet::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let family = name.split("-opset").next().unwrap().to_string();
        let size = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(u64::MAX);
        if size < 64 << 10 && families.insert(family) {
            out.push(std::fs::read(&f).unwrap());
        }
    }
    out
}

const INTERESTING: [i64; 10] = [0, 1, -1, 2, 3, -2, 255, 1 << 16, i32::MAX as i64, i64::MAX];
const OPS: [&str; 24] = [
    "Conv",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "BatchNormalization",
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "Relu",
    "Reshape",
    "Flatten",
    "Softmax",
    "Concat",
    "Clip",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Slice",
    "Split",
    "Gather",
    "Pad",
    "ReduceMean",
    "Shape",
];

fn pick<'a, T>(rng: &mut SeededRng, items: &'a [T]) -> Option<&'a T> {
    (!items.is_empty()).then(|| &items[rng.next_u64() as usize % items.len()])
}

fn byte_mutation(rng: &mut SeededRng, mut bytes: Vec<u8>) -> (Vec<u8>, String) {
    let n = bytes.len().max(1);
    let at = rng.next_u64() as usize % n;
    match rng.next_u64() % 5 {
        0 => {
            let k = 1 + rng.next_u64() as usize % 8;
            for _ in 0..k {
                let i = rng.next_u64() as usize % n;
                if i < bytes.len() {
                    bytes[i] ^= 1 << (rng.next_u64() % 8);
                }
            }
            (bytes, format!("{k} bit flips"))
        }
        1 => {
            bytes.truncate(at);
            (bytes, format!("cut at {at}"))
        }
        2 => {
            let v = *pick(rng, &INTERESTING).unwrap();
            for (k, b) in v.to_le_bytes().iter().take(4).enumerate() {
                if at + k < bytes.len() {
                    bytes[at + k] = *b;
                }
            }
            (bytes, format!("{v} written at {at}"))
        }
        3 => {
            let len = (rng.next_u64() as usize % 64).min(bytes.len() - at.min(bytes.len()));
            bytes.drain(at..at + len);
            (bytes, format!("{len} bytes deleted at {at}"))
        }
        _ => {
            let len = (rng.next_u64() as usize % 256).min(bytes.len() - at.min(bytes.len()));
            let piece = bytes[at..at + len].to_vec();
            let to = rng.next_u64() as usize % n;
            let to = to.min(bytes.len());
            bytes.splice(to..to, piece);
            (bytes, format!("{len} bytes from {at} repeated at {to}"))
        }
    }
}

fn structure_mutation(rng: &mut SeededRng, mut model: ModelProto) -> (ModelProto, String) {
    let graph = model.graph.get_or_insert_with(Default::default);
    let mut values: Vec<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    values.extend(graph.input.iter().map(|v| v.name.clone()));
    values.extend(graph.node.iter().flat_map(|n| n.output.clone()));
    values.push("no_such_value".into());
    let nodes = graph.node.len().max(1);
    let ni = rng.next_u64() as usize % nodes;
    let what = match rng.next_u64() % 12 {
        0 if !graph.node.is_empty() => {
            let op = pick(rng, &OPS).unwrap().to_string();
            graph.node[ni].op_type = op.clone();
            format!("node {ni} became {op}")
        }
        1 if !graph.node.is_empty() && !graph.node[ni].input.is_empty() => {
            let k = rng.next_u64() as usize % graph.node[ni].input.len();
            let v = pick(rng, &values).unwrap().clone();
            graph.node[ni].input[k] = v.clone();
            format!("node {ni} input {k} reads {v}")
        }
        2 if !graph.node.is_empty() && !graph.node[ni].input.is_empty() => {
            graph.node[ni].input.pop();
            format!("node {ni} lost its last input")
        }
        3 if !graph.node.is_empty() && !graph.node[ni].attribute.is_empty() => {
            let k = rng.next_u64() as usize % graph.node[ni].attribute.len();
            let v = *pick(rng, &INTERESTING).unwrap();
            let a = &mut graph.node[ni].attribute[k];
            match rng.next_u64() % 3 {
                0 => {
                    a.i = v;
                    a.r#type = AttributeType::Int as i32;
                }
                1 if !a.ints.is_empty() => {
                    let j = rng.next_u64() as usize % a.ints.len();
                    a.ints[j] = v;
                }
                _ => {
                    a.ints.push(v);
                    a.f = v as f32;
                }
            }
            format!("node {ni} attribute {} set to {v}", a.name)
        }
        4 if !graph.node.is_empty() => {
            graph.node.remove(ni);
            format!("node {ni} removed")
        }
        5 if !graph.node.is_empty() && !graph.node[ni].output.is_empty() => {
            let out = graph.node[ni].output[0].clone();
            graph.node[ni].input.push(out.clone());
            format!("node {ni} reads its own output {out}")
        }
        6 if !graph.initializer.is_empty() => {
            let k = rng.next_u64() as usize % graph.initializer.len();
            let v = *pick(rng, &INTERESTING).unwrap();
            let t = &mut graph.initializer[k];
            if t.dims.is_empty() {
                t.dims.push(v);
            } else {
                let j = rng.next_u64() as usize % t.dims.len();
                t.dims[j] = v;
            }
            format!("initializer {} dims {:?}", t.name, t.dims)
        }
        7 if !graph.initializer.is_empty() => {
            let k = rng.next_u64() as usize % graph.initializer.len();
            let ty = (rng.next_u64() % 17) as i32;
            graph.initializer[k].data_type = ty;
            format!("initializer {k} data type {ty}")
        }
        8 if !graph.input.is_empty() => {
            let v = *pick(rng, &INTERESTING).unwrap();
            let input = &mut graph.input[0];
            if let Some(zoo_onnx::pb::type_proto::Value::TensorType(t)) =
                input.r#type.as_mut().and_then(|t| t.value.as_mut())
            {
                if let Some(shape) = t.shape.as_mut() {
                    if !shape.dim.is_empty() {
                        let j = rng.next_u64() as usize % shape.dim.len();
                        shape.dim[j].value =
                            Some(zoo_onnx::pb::tensor_shape_proto::dimension::Value::DimValue(v));
                    }
                }
            }
            format!("input dim set to {v}")
        }
        9 => {
            let v = (rng.next_u64() % 26) as i64;
            for o in &mut model.opset_import {
                o.version = v;
            }
            format!("opset {v}")
        }
        10 if graph.node.len() > 1 => {
            let j = rng.next_u64() as usize % graph.node.len();
            graph.node.swap(ni, j);
            format!("nodes {ni} and {j} swapped")
        }
        _ if !graph.output.is_empty() => {
            let v = pick(rng, &values).unwrap().clone();
            graph.output[0].name = v.clone();
            format!("output moved to {v}")
        }
        _ => "unchanged".into(),
    };
    (model, what)
}

/// Import, zoo's forward at batch 1 and 2, tract, comparison; errors are fine, panics are not.
fn exercise(bytes: &[u8], with_tract: bool) {
    let Ok(onnx) = OnnxModel::from_bytes(bytes.to_vec()) else {
        return;
    };
    let chw = onnx.graph.input_chw();
    let size: usize = chw.iter().product();
    let device = Default::default();
    let net = zoo_net::Network::<Flex>::from_model(onnx, &device);
    if size == 0 || size > MAX_RUN_INPUT {
        return;
    }
    let mut rng = SeededRng::new(size as u64);
    let images = rng.values(2 * size, 1.0);
    let value = net.logits_value().to_string();
    let Ok(ours) = run_network(&net, &images, 2, &value, &device) else {
        return;
    };
    let _ = run_network(&net, &images[..size], 1, &value, &device);
    if with_tract {
        let any_batch = net.plan().graph.input.dims[0].is_none();
        if let Ok(tract) = TractEngine::from_bytes(bytes, chw, any_batch) {
            if let Ok(reference) = tract.run(&images, 2) {
                let _ = zoo_parity::compare(&ours, &reference);
            }
        }
    }
}

fn cap_address_space() {
    #[cfg(target_os = "linux")]
    // SAFETY: setrlimit only lowers this process's own limit.
    unsafe {
        let limit = libc::rlimit {
            rlim_cur: ADDRESS_SPACE,
            rlim_max: libc::RLIM_INFINITY,
        };
        libc::setrlimit(libc::RLIMIT_AS, &limit);
    }
}

fn campaign(cases: usize, seed: u64) {
    cap_address_space();
    let location = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    {
        let location = location.clone();
        std::panic::set_hook(Box::new(move |info| {
            *location.lock().unwrap() = format!("{info}");
        }));
    }
    let seeds = seeds();
    let decoded: Vec<ModelProto> = seeds
        .iter()
        .map(|b| ModelProto::decode(b.as_slice()).unwrap())
        .collect();
    let mut rng = SeededRng::new(seed);
    let mut failures = Vec::new();
    for case in 0..cases {
        let s = rng.next_u64() as usize % seeds.len();
        let (bytes, what) = if case % 2 == 0 {
            byte_mutation(&mut rng, seeds[s].clone())
        } else {
            let (m, what) = structure_mutation(&mut rng, decoded[s].clone());
            (m.encode_to_vec(), what)
        };
        let with_tract = case % 8 == 0;
        if catch_unwind(AssertUnwindSafe(|| exercise(&bytes, with_tract))).is_err() {
            // ZOO_FUZZ_DUMP=DIR keeps the failing files for `zoo inspect` / `zoo verify`.
            if let Some(dir) = std::env::var_os("ZOO_FUZZ_DUMP") {
                let _ = std::fs::write(
                    std::path::Path::new(&dir).join(format!("case-{case}.onnx")),
                    &bytes,
                );
            }
            failures.push(format!(
                "case {case} (seed graph {s}, {what}): {}",
                location.lock().unwrap()
            ));
        }
    }
    let _ = std::panic::take_hook();
    assert!(
        failures.is_empty(),
        "{} of {cases} mutated graphs panicked:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn mutated_graphs_give_results_or_errors_never_panics() {
    campaign(4000, 0x5eed);
}

#[test]
#[ignore = "long campaign for local use: ZOO_FUZZ_CASES, ZOO_FUZZ_SEED"]
fn long_mutation_campaign() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    campaign(
        env("ZOO_FUZZ_CASES", 20_000) as usize,
        env("ZOO_FUZZ_SEED", 1),
    );
}
