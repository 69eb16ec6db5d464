//! `zoo inspect`: layers, shapes, parameter counts, what trains, and op support per engine.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use zoo_net::{ParamRole, Plan};
use zoo_onnx::{OnnxModel, SUPPORTED_OPS};

use crate::profile::{profile, Profile};

#[derive(Clone, Debug, Serialize)]
pub struct LayerRow {
    /// The layer name (for nodes with parameters) or the node's label.
    pub name: String,
    pub node: String,
    pub op: String,
    /// Shape at the declared batch; `batched` says whether it carries the batch, on axis
    /// `batch_axis`, where `batch_outer` values of another axis come before it (1 when the
    /// batch leads that axis: `[B * windows, ...]`).
    pub output_shape: Vec<usize>,
    pub batched: bool,
    pub batch_axis: usize,
    pub batch_outer: usize,
    pub params: usize,
    pub trainable: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct OpSupport {
    pub op: String,
    pub count: usize,
    pub import: bool,
    pub export: bool,
    pub tract: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct InspectReport {
    pub model: String,
    pub opset: i64,
    pub producer: String,
    pub input: String,
    pub input_shape: Vec<Option<usize>>,
    pub output: String,
    pub layers: Vec<LayerRow>,
    pub total_params: usize,
    pub trainable_params: usize,
    pub ops: Vec<OpSupport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// The class names the outputs have (`--labels`, the file's metadata, the card), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    pub labels_from: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_error: Option<String>,
}

/// Whether tract's ONNX front end knows an op type.
pub fn tract_supports(op: &str) -> bool {
    tract_onnx::onnx().op_register.0.contains_key(op)
}

fn op_table(counts: BTreeMap<String, usize>) -> Vec<OpSupport> {
    counts
        .into_iter()
        .map(|(op, count)| {
            let ours = SUPPORTED_OPS.contains(&op.as_str());
            OpSupport {
                tract: tract_supports(&op),
                import: ours,
                // Export writes untouched nodes back as they were read.
                export: ours,
                op,
                count,
            }
        })
        .collect()
}

/// Inspects a file. An import failure still yields the op-support table (from the raw
/// protobuf) plus the error, so users see exactly which op blocks them.
pub fn inspect(path: &Path, hints: &crate::profile::ModelHints) -> anyhow::Result<InspectReport> {
    let raw = zoo_onnx::read_model(path).map_err(|e| match e {
        zoo_onnx::OnnxError::Decode(why) => {
            anyhow::anyhow!("{} is not a valid ONNX file: {why}", path.display())
        }
        other => other.into(),
    })?;
    let mut counts = BTreeMap::new();
    for node in raw.graph.iter().flat_map(|g| &g.node) {
        *counts.entry(node.op_type.clone()).or_insert(0) += 1;
    }
    let producer = format!("{} {}", raw.producer_name, raw.producer_version)
        .trim()
        .to_string();
    let ops = op_table(counts);
    let model = match OnnxModel::from_proto(raw) {
        Ok(m) => m,
        Err(e) => {
            return Ok(InspectReport {
                model: path.display().to_string(),
                opset: 0,
                producer,
                input: String::new(),
                input_shape: Vec::new(),
                output: String::new(),
                layers: Vec::new(),
                total_params: 0,
                trainable_params: 0,
                ops,
                profile: None,
                labels: None,
                labels_from: String::new(),
                import_error: Some(e.to_string()),
            })
        }
    };
    let (labels, labels_from) = crate::profile::model_labels(&model, hints)?;
    let (plan, weights) = zoo_net::plan::build_plan(model);
    drop(weights);
    let plan = &plan;
    let profile = profile(hints, plan)?;
    let layers = layer_rows(plan, &profile);
    let trainable_params = plan
        .params
        .iter()
        .filter(|p| p.role == ParamRole::Learnable && !profile.is_frozen(&p.layer))
        .map(|p| p.numel())
        .sum();
    Ok(InspectReport {
        model: path.display().to_string(),
        opset: plan.graph.opset,
        producer,
        input: plan.graph.input.name.clone(),
        input_shape: plan.graph.input.dims.clone(),
        output: plan.graph.output.name.clone(),
        layers,
        total_params: plan.total_params(),
        trainable_params,
        ops,
        profile: Some(profile),
        labels,
        labels_from,
        import_error: None,
    })
}

fn layer_rows(plan: &Plan, profile: &Profile) -> Vec<LayerRow> {
    let shapes = &plan.graph.shapes;
    plan.graph
        .nodes
        .iter()
        .map(|node| {
            let owned = plan.layers.iter().find(|l| l.node == node.label);
            let params: usize = owned
                .map(|l| l.params.iter().map(|&p| plan.params[p].numel()).sum())
                .unwrap_or(0);
            let learnable = owned.is_some_and(|l| {
                l.params
                    .iter()
                    .any(|&p| plan.params[p].role == ParamRole::Learnable)
            });
            let out = &node.outputs[0];
            LayerRow {
                name: owned.map_or_else(|| node.label.clone(), |l| l.name.clone()),
                node: node.label.clone(),
                op: node.op.onnx_type().to_string(),
                output_shape: shapes.of(out).map(<[usize]>::to_vec).unwrap_or_default(),
                batched: shapes.batched.contains(out),
                batch_axis: shapes.batch_axes.get(out).copied().unwrap_or(0),
                batch_outer: shapes.batch_outer.get(out).copied().unwrap_or(1),
                params,
                trainable: learnable && owned.is_some_and(|l| !profile.is_frozen(&l.name)),
            }
        })
        .collect()
}

/// The report as an aligned text table.
pub fn render(report: &InspectReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "model    {}", report.model);
    match &report.import_error {
        Some(e) => {
            let _ = writeln!(s, "import   FAILED: {e}");
        }
        None => render_import(report, &mut s),
    }
    let _ = writeln!(
        s,
        "\n{:<20} {:>5}  {:<6} {:<6} {:<6}",
        "op", "count", "import", "export", "tract"
    );
    let yes = |b: bool| if b { "yes" } else { "no" };
    for o in &report.ops {
        let _ = writeln!(
            s,
            "{:<20} {:>5}  {:<6} {:<6} {:<6}",
            o.op,
            o.count,
            yes(o.import),
            yes(o.export),
            yes(o.tract)
        );
    }
    s
}

/// The interface, the layer table, the totals, the profile and the labels of an import.
fn render_import(report: &InspectReport, s: &mut String) {
    use std::fmt::Write;
    let producer = if report.producer.is_empty() {
        "-"
    } else {
        &report.producer
    };
    let _ = writeln!(
        s,
        "opset    {}    producer {producer}\ninput    {} {}    output {}",
        report.opset,
        report.input,
        zoo_onnx::graph::format_dims(&report.input_shape),
        report.output
    );
    s.push_str(&layer_table(report));
    let _ = writeln!(
        s,
        "\ntotal parameters      {}\ntrainable by default  {}",
        group_digits(report.total_params),
        group_digits(report.trainable_params)
    );
    if let Some(p) = &report.profile {
        let source = match &p.source {
            crate::profile::ProfileSource::Card(c) => format!("card `{c}`"),
            crate::profile::ProfileSource::Metadata => "zoo metadata in the file".into(),
            crate::profile::ProfileSource::Default => "defaults".into(),
        };
        let _ = writeln!(
            s,
            "freeze plan           freeze {}; replace {} ({source})\npreprocessing         {} ({})",
            zoo_cards::describe_layers(&p.freeze),
            p.head,
            p.preprocessing.describe(),
            p.preprocessing_from
        );
    }
    let labels = match &report.labels {
        Some(names) => {
            let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
            let more = if names.len() > 3 { "; ..." } else { "" };
            format!(
                "{} names from {} ({}{more})",
                names.len(),
                report.labels_from,
                shown.join("; ")
            )
        }
        None => report.labels_from.clone(),
    };
    let _ = writeln!(s, "labels                {labels}");
}

/// A layer's output dims with the batch written `N`: `Nx197x768`, `17xNx16`, or a factor of
/// an axis (`N*4x49x32` for windows, `17*Nx16` for sequence-first attention).
fn shown_dims(l: &LayerRow, declared_batch: usize) -> Vec<String> {
    let mut dims: Vec<String> = l.output_shape.iter().map(|d| d.to_string()).collect();
    if let (true, Some(&size)) = (l.batched, l.output_shape.get(l.batch_axis)) {
        let inner = size / (l.batch_outer * declared_batch.max(1)).max(1);
        let mut factors = Vec::new();
        if l.batch_outer != 1 {
            factors.push(l.batch_outer.to_string());
        }
        factors.push("N".into());
        if inner != 1 {
            factors.push(inner.to_string());
        }
        dims[l.batch_axis] = factors.join("*");
    }
    dims
}

/// One row per layer: name, op, output shape, parameters, whether it trains.
fn layer_table(report: &InspectReport) -> String {
    let rows: Vec<[String; 5]> = report
        .layers
        .iter()
        .map(|l| {
            let declared = report.input_shape.first().copied().flatten().unwrap_or(1);
            let dims = shown_dims(l, declared);
            let params = if l.params > 0 {
                group_digits(l.params)
            } else {
                "-".into()
            };
            let trains = match (l.params > 0, l.trainable) {
                (false, _) => "-".into(),
                (true, true) => "yes".into(),
                (true, false) => "frozen".into(),
            };
            // Cells are cut for the table (a hostile file can have names of any length); the
            // JSON report keeps them whole.
            [l.name.clone(), l.op.clone(), dims.join("x"), params, trains].map(|c| shorten(&c, 60))
        })
        .collect();
    let header = ["layer", "op", "output", "params", "trains"];
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            let longest = rows.iter().map(|r| r[i].len()).max().unwrap_or(0);
            longest.max(header[i].len())
        })
        .collect();
    let line = |cells: [&str; 5]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {}\n",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        )
    };
    let mut table = format!("\n{}", line(header));
    for r in &rows {
        table += &line([&r[0], &r[1], &r[2], &r[3], &r[4]]);
    }
    table
}

pub fn group_digits(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `text` cut to at most `max` characters, the middle replaced by `...`.
fn shorten(text: &str, max: usize) -> String {
    let n = text.chars().count();
    if n <= max {
        return text.to_string();
    }
    let keep = (max - 3) / 2;
    let head: String = text.chars().take(keep).collect();
    let tail: String = text.chars().skip(n - keep).collect();
    format!("{head}...{tail}")
}
