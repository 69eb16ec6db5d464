//! `RUN/report.html`: one self-contained page per run (images embedded as data URIs, no
//! network, no JavaScript): model, data and options, training progress, confusion matrix and
//! per-class table, misclassified gallery, conv1 filters, freeze audit and parity receipt.
//! Rewritten at every validation (it reloads itself while the run trains) and at the end;
//! `zoo report RUN` rebuilds it from the run's files.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub const REPORT_HTML: &str = "report.html";
/// The first convolution's kernels of the best weights, drawn at the end of a run.
pub const FILTERS_PNG: &str = "filters.png";

/// Seconds between reloads while the run trains.
const REFRESH_S: u32 = 5;

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Standard base64 (RFC 4648) for data URIs.
fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(TABLE[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A value of a JSON object for a table cell.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => escape(s),
        Value::Null => "-".into(),
        other => escape(&other.to_string()),
    }
}

/// A number in a readable form: `digits` significant decimals (scientific when tiny).
fn number(v: &Value, digits: usize) -> String {
    match v.as_f64() {
        Some(x) if x != 0.0 && x.abs() < 1e-3 => format!("{x:.digits$e}"),
        Some(x) if v.is_f64() => format!("{x:.digits$}"),
        _ => cell(v),
    }
}

/// An `<img>` of a PNG in the run directory, or nothing when the file is not there yet.
fn picture(run: &Path, file: &str, alt: &str) -> String {
    match std::fs::read(run.join(file)) {
        Ok(png) => format!(
            "<figure><img src=\"data:image/png;base64,{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>\n",
            base64(&png),
            escape(alt),
            escape(file)
        ),
        Err(_) => String::new(),
    }
}

/// Per-class images, precision and recall from a `confusion.csv` (`true\predicted,a,b,...`).
fn class_table(confusion: &crate::report::Confusion) -> String {
    let counts = &confusion.counts;
    let mut s = String::from(
        "<table><tr><th>class</th><th>images</th><th>precision</th><th>recall</th></tr>\n",
    );
    for (c, name) in confusion.classes.iter().enumerate() {
        let support: usize = counts.get(c).map_or(0, |r| r.iter().sum());
        let predicted: usize = counts.iter().map(|r| r.get(c).copied().unwrap_or(0)).sum();
        let tp = counts.get(c).and_then(|r| r.get(c)).copied().unwrap_or(0);
        let pct = |num: usize, den: usize| {
            if den == 0 {
                "-".to_string()
            } else {
                format!("{:.1} %", 100.0 * num as f64 / den as f64)
            }
        };
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{support}</td><td>{}</td><td>{}</td></tr>",
            escape(&zoo_io::printable(name)),
            pct(tp, predicted),
            pct(tp, support)
        );
    }
    s + "</table>\n"
}

fn key_values(title: &str, pairs: &[(&str, String)]) -> String {
    let mut s = format!("<h2>{title}</h2>\n<table>\n");
    for (k, v) in pairs {
        let _ = writeln!(s, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    s + "</table>\n"
}

fn options_table(config: &Value) -> String {
    let mut pairs: Vec<(&str, String)> = vec![
        ("model", cell(&config["model_path"])),
        ("base sha256", cell(&config["base_sha256"])),
        ("split", cell(&config["split"])),
        (
            "frozen layers",
            cell(&Value::from(
                config["frozen_layers"].as_array().map_or(0, |a| a.len()),
            )),
        ),
        ("head", cell(&config["head"])),
        ("backend", cell(&config["versions"]["backend"])),
    ];
    if let Some(p) = config["profile"]["preprocessing"].as_object() {
        pairs.push((
            "preprocessing",
            escape(&Value::Object(p.clone()).to_string()),
        ));
    }
    let mut s = key_values("Model and data", &pairs);
    s += "<h2>Options</h2>\n<table>\n";
    if let Some(o) = config["options"].as_object() {
        for (k, v) in o {
            let _ = writeln!(s, "<tr><th>{}</th><td>{}</td></tr>", escape(k), cell(v));
        }
    }
    s + "</table>\n"
}

fn summary_section(summary: &Value) -> String {
    let status = summary["status"].as_str().unwrap_or("unknown");
    let pct = |v: &Value| {
        v.as_f64()
            .map_or("-".into(), |a| format!("{:.2} %", 100.0 * a))
    };
    let best = if summary["best_val_accuracy"].is_number() {
        pct(&summary["best_val_accuracy"])
    } else {
        pct(&summary["best"]["val_accuracy"])
    };
    let mut pairs = vec![
        ("status", escape(status)),
        ("best validation accuracy", best),
        ("best epoch", cell(&summary["best_epoch"])),
        ("epochs run", cell(&summary["epochs_run"])),
        ("training images", cell(&summary["train_images"])),
        ("validation images", cell(&summary["val_images"])),
        ("images/s", number(&summary["images_per_s"], 1)),
        ("wall time (s)", number(&summary["wall_time_s"], 1)),
    ];
    if status == "running" {
        pairs.push((
            "iteration",
            format!(
                "{} of {}",
                cell(&summary["iteration"]),
                cell(&summary["total_iterations"])
            ),
        ));
        if let Some(eta) = summary["eta_s"].as_f64() {
            pairs.push(("time left (estimate)", duration(eta)));
        }
    }
    if let Some(e) = summary["error"].as_str() {
        pairs.push(("error", escape(e)));
    }
    let dead: Vec<&str> = (summary["dead_classes"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    if !dead.is_empty() {
        let names = escape(&dead.join(", "));
        pairs.push((
            "dead classes (same output for every image: not learned)",
            names,
        ));
    }
    key_values("Run", &pairs)
}

/// The learning rate and its schedule, from the run's options (nothing for older runs).
fn schedule_line(options: &Value) -> String {
    let Some(lr) = options["lr"].as_f64() else {
        return String::new();
    };
    let schedule = options["schedule"].as_str().unwrap_or("constant");
    let warmup = match &options["warmup"] {
        Value::Object(w) => match (w.get("iterations"), w.get("epochs")) {
            (Some(n), _) => format!(", warm-up {n} iterations"),
            (_, Some(e)) => format!(", warm-up {e} epochs"),
            _ => String::new(),
        },
        _ => String::new(),
    };
    let head = options["head_lr_factor"].as_f64().unwrap_or(1.0);
    let mut extra = String::new();
    if let Some(recipe) = options["recipe"].as_str() {
        extra += &format!("; recipe {recipe}");
    }
    if let Some(head_epochs) = options["fine_tune"].as_u64() {
        let spread = options["lr_spread"].as_f64().unwrap_or(10.0);
        extra += &format!(
            "; the head alone for {head_epochs} epoch(s), then the body, its earlier half at lr/{spread}"
        );
    }
    if let Some(decay) = options["ema"].as_f64() {
        extra += &format!("; validated on the weights' average (EMA {decay})");
    }
    format!(
        "<p>Learning rate {lr:e} ({}{}; the new head x{head}{})</p>\n",
        escape(schedule),
        escape(&warmup),
        escape(&extra)
    )
}

/// `1 h 02 min`, `3 min 05 s`, `42 s`.
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

fn audit_section(summary: &Value) -> String {
    if summary["frozen_params_unchanged"].is_null() {
        return String::new();
    }
    key_values(
        "Freeze audit",
        &[
            (
                "frozen parameters unchanged (bit for bit)",
                cell(&summary["frozen_params_unchanged"]),
            ),
            (
                "frozen layers",
                cell(&Value::from(
                    summary["frozen_layers"].as_array().map_or(0, |a| a.len()),
                )),
            ),
            ("frozen parameters", cell(&summary["frozen_params"])),
            ("trainable parameters", cell(&summary["trainable_params"])),
        ],
    )
}

fn parity_section(parity: &Value) -> String {
    let mut s = String::from("<h2>Parity receipt (zoo export)</h2>\n<table><tr><th>batch</th><th>engine</th><th>max_rel_diff</th><th>top-1 agreement</th><th>images</th><th>result</th></tr>\n");
    for batch in ["batch_1", "batch_7"] {
        for e in parity[batch]["engines"].as_array().into_iter().flatten() {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                batch.trim_start_matches("batch_"),
                cell(&e["name"]),
                number(&e["max_rel_diff"], 2),
                number(&e["top1_agreement"], 4),
                cell(&e["samples"]),
                if e["pass"].as_bool() == Some(true) {
                    "pass"
                } else {
                    "FAIL"
                }
            );
        }
    }
    s + "</table>\n"
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}figcaption{color:#666;font-size:.85em}\
.running{background:#fff6d5;padding:.5em 1em;border:1px solid #e8d27a}";

/// The page, from whatever the run directory holds now.
pub fn render(run: &Path) -> String {
    let config = read_json(&run.join("config.json")).unwrap_or(Value::Null);
    let summary = read_json(&run.join("summary.json")).unwrap_or(Value::Null);
    let running = summary["status"].as_str() == Some("running");
    let model = summary["model"]
        .as_str()
        .or(config["model"].as_str())
        .unwrap_or("run");
    let mut s = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    if running {
        let _ = writeln!(s, "<meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">");
    }
    let _ = writeln!(
        s,
        "<title>zoo run {}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n<p>{}</p>",
        escape(model),
        escape(model),
        escape(&run.display().to_string())
    );
    if running {
        let _ = writeln!(s, "<p class=\"running\">Training: this page reloads every {REFRESH_S} s until the run ends.</p>");
    }
    s += &summary_section(&summary);
    s += &schedule_line(&config["options"]);
    s += "<h2>Training progress</h2>\n";
    s += &picture(
        run,
        crate::report::plot::PROGRESS_PNG,
        "accuracy and loss against iteration",
    );
    if crate::tensorboard::file_of(run).is_file() {
        let _ = writeln!(
            s,
            "<p>The same values, with images/s, for TensorBoard: <code>tensorboard --logdir {}</code></p>",
            escape(&run.join(crate::tensorboard::DIR).display().to_string())
        );
    }
    let confusion = std::fs::read(run.join(crate::report::CONFUSION_JSON))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<crate::report::Confusion>(&bytes).ok());
    if let Some(confusion) = confusion {
        s += "<h2>Validation: confusion matrix and classes</h2>\n";
        s += &picture(
            run,
            "confusion.png",
            "confusion matrix of the validation set",
        );
        s += &class_table(&confusion);
    }
    let gallery = picture(
        run,
        crate::report::pictures::MISCLASSIFIED_PNG,
        "misclassified validation images",
    );
    if !gallery.is_empty() {
        s += "<h2>Misclassified validation images</h2>\n";
        s += &gallery;
    }
    let filters = picture(run, FILTERS_PNG, "first convolution's kernels");
    if !filters.is_empty() {
        s += "<h2>First convolution's filters (best weights)</h2>\n";
        s += &filters;
    }
    s += &audit_section(&summary);
    if let Some(parity) = read_json(&run.join("parity.json")) {
        s += &parity_section(&parity);
    }
    if !config.is_null() {
        s += &options_table(&config);
    }
    s + "</body></html>\n"
}

/// Writes `RUN/report.html` (atomically) and returns its path.
pub fn write(run: &Path) -> std::io::Result<PathBuf> {
    crate::rundir::write(run, REPORT_HTML, render(run).as_bytes())?;
    Ok(run.join(REPORT_HTML))
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(plain.as_bytes()), coded);
        }
    }
}
