//! `zoo data check`: what is in a dataset, before anyone trains on it.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use serde::Serialize;
use zoo_cards::{ColorOrder, Preprocessing};

use crate::dataset::{Dataset, ImageRef, SourceKind};

#[derive(Clone, Debug, Serialize)]
pub struct ClassCount {
    pub name: String,
    pub count: usize,
    pub unreadable: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SizeStats {
    pub min_width: u32,
    pub max_width: u32,
    pub min_height: u32,
    pub max_height: u32,
    /// Most common `WxH` first, at most 5.
    pub common: Vec<(String, usize)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub source: SourceKind,
    pub root: String,
    /// Readable images.
    pub total: usize,
    pub classes: Vec<ClassCount>,
    pub unreadable: Vec<String>,
    pub unreadable_reasons: Vec<String>,
    /// Non-image files that were left out.
    pub ignored: Vec<String>,
    /// Groups of files with identical content.
    pub duplicates: Vec<Vec<String>>,
    /// Duplicate groups whose files carry different labels.
    pub duplicates_across_classes: usize,
    pub sizes: SizeStats,
    pub formats: BTreeMap<String, usize>,
    pub grayscale: usize,
    pub color: usize,
    pub with_alpha: usize,
    /// With `--model`: the model and the preprocessing its images get.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_preprocessing: Option<String>,
    pub warnings: Vec<String>,
}

struct Seen {
    index: usize,
    result: Result<(u32, u32, String, bool, bool, String), String>,
}

fn format_of(image: &ImageRef) -> String {
    match image {
        ImageRef::Idx { .. } => "idx".into(),
        ImageRef::File(p) => image::ImageReader::open(p)
            .ok()
            .and_then(|r| r.with_guessed_format().ok())
            .and_then(|r| r.format())
            .map(|f| format!("{f:?}").to_lowercase())
            .unwrap_or_else(|| "unknown".into()),
    }
}

/// Decodes every image (in parallel) and summarises. With `model`, also says what the model's
/// preprocessing will do to these images.
pub fn check(dataset: &Dataset, model: Option<(&str, &Preprocessing)>) -> CheckReport {
    let seen = decode_all(dataset);
    let mut report = empty_report(dataset, model);
    let mut classes: Vec<ClassCount> = dataset
        .classes
        .iter()
        .map(|n| ClassCount {
            name: n.clone(),
            count: 0,
            unreadable: 0,
        })
        .collect();
    let mut by_hash: HashMap<String, Vec<usize>> = HashMap::new();
    let mut size_counts: HashMap<String, usize> = HashMap::new();
    for s in &seen {
        let sample = &dataset.samples[s.index];
        match &s.result {
            Ok((w, h, format, gray, alpha, hash)) => {
                report.total += 1;
                classes[sample.label].count += 1;
                let st = &mut report.sizes;
                st.min_width = st.min_width.min(*w);
                st.max_width = st.max_width.max(*w);
                st.min_height = st.min_height.min(*h);
                st.max_height = st.max_height.max(*h);
                *size_counts.entry(format!("{w}x{h}")).or_default() += 1;
                *report.formats.entry(format.clone()).or_default() += 1;
                if *gray {
                    report.grayscale += 1;
                } else {
                    report.color += 1;
                }
                if *alpha {
                    report.with_alpha += 1;
                }
                by_hash.entry(hash.clone()).or_default().push(s.index);
            }
            Err(reason) => {
                classes[sample.label].unreadable += 1;
                report.unreadable.push(sample.image.name());
                report.unreadable_reasons.push(reason.clone());
            }
        }
    }
    if report.total == 0 {
        report.sizes = SizeStats::default();
    }
    let mut common: Vec<(String, usize)> = size_counts.into_iter().collect();
    common.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    common.truncate(5);
    report.sizes.common = common;
    record_duplicates(&mut report, dataset, by_hash);
    report.classes = classes;
    warn_about_data(&mut report);
    if let Some((name, p)) = model {
        warn_about_preprocessing(&mut report, &seen, name, p);
    }
    report
}

/// Every image decoded (on all cores): its size, format, colour, alpha and content hash.
fn decode_all(dataset: &Dataset) -> Vec<Seen> {
    dataset
        .samples
        .par_iter()
        .enumerate()
        .map(|(index, s)| {
            let result = s.image.load().map_err(|e| e.to_string()).and_then(|img| {
                let color = img.color();
                let hash = s.image.content_hash().map_err(|e| e.to_string())?;
                Ok((
                    img.width(),
                    img.height(),
                    format_of(&s.image),
                    color.channel_count() <= 2,
                    color.has_alpha(),
                    hash,
                ))
            });
            Seen { index, result }
        })
        .collect()
}

/// A report with nothing counted yet.
fn empty_report(dataset: &Dataset, model: Option<(&str, &Preprocessing)>) -> CheckReport {
    CheckReport {
        source: dataset.kind,
        root: dataset.root.display().to_string(),
        total: 0,
        classes: Vec::new(),
        unreadable: Vec::new(),
        unreadable_reasons: Vec::new(),
        ignored: dataset
            .ignored
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        duplicates: Vec::new(),
        duplicates_across_classes: 0,
        sizes: SizeStats {
            min_width: u32::MAX,
            min_height: u32::MAX,
            ..Default::default()
        },
        formats: BTreeMap::new(),
        grayscale: 0,
        color: 0,
        with_alpha: 0,
        model_preprocessing: model.map(|(name, p)| format!("{name}: {}", p.describe())),
        warnings: Vec::new(),
    }
}

/// Groups of identical images, and how many of them carry different labels.
fn record_duplicates(
    report: &mut CheckReport,
    dataset: &Dataset,
    by_hash: HashMap<String, Vec<usize>>,
) {
    let mut groups: Vec<Vec<usize>> = by_hash.into_values().filter(|g| g.len() > 1).collect();
    groups.sort();
    for g in &groups {
        let first = dataset.samples[g[0]].label;
        if g.iter().any(|&i| dataset.samples[i].label != first) {
            report.duplicates_across_classes += 1;
        }
    }
    report.duplicates = groups
        .iter()
        .map(|g| g.iter().map(|&i| dataset.samples[i].image.name()).collect())
        .collect();
}

/// Empty classes, undecodable files, identical images with different labels.
fn warn_about_data(report: &mut CheckReport) {
    for c in &report.classes {
        if c.count == 0 {
            report
                .warnings
                .push(format!("class `{}` has no readable image", c.name));
        }
    }
    if !report.unreadable.is_empty() {
        report.warnings.push(format!(
            "{} files cannot be decoded and will be skipped",
            report.unreadable.len()
        ));
    }
    if report.duplicates_across_classes > 0 {
        report.warnings.push(format!(
            "{} groups of identical images carry different labels",
            report.duplicates_across_classes
        ));
    }
}

/// What the model's preprocessing will do to these images: colour, alpha, stretching.
fn warn_about_preprocessing(
    report: &mut CheckReport,
    seen: &[Seen],
    name: &str,
    p: &Preprocessing,
) {
    if p.color != ColorOrder::Gray && report.grayscale > 0 {
        report.warnings.push(format!(
            "{} grayscale images will be replicated to 3 channels for `{name}`",
            report.grayscale
        ));
    }
    if p.color == ColorOrder::Gray && report.color > 0 {
        report.warnings.push(format!(
            "{} colour images will be converted to grayscale for `{name}`",
            report.color
        ));
    }
    if report.with_alpha > 0 {
        report.warnings.push(format!(
            "{} images have an alpha channel; it is dropped",
            report.with_alpha
        ));
    }
    let target = p.size[1] as f64 / p.size[0] as f64;
    let stretched = seen
        .iter()
        .filter_map(|s| s.result.as_ref().ok())
        .filter(|(w, h, ..)| ((*w as f64 / (*h).max(1) as f64) / target - 1.0).abs() > 0.25)
        .count();
    if stretched > 0 && p.resize == zoo_cards::ResizeMode::Direct {
        report.warnings.push(format!(
            "{stretched} images differ from `{name}`'s {}x{} aspect ratio by more than 25 % and will be stretched",
            p.size[1], p.size[0]
        ));
    }
}

pub fn render(r: &CheckReport) -> String {
    use std::fmt::Write;
    use zoo_io::printable;
    let mut s = String::new();
    let _ = writeln!(s, "{} ({:?})", printable(&r.root), r.source);
    if let Some(p) = &r.model_preprocessing {
        let _ = writeln!(s, "preprocessing for {p}");
    }
    let _ = writeln!(s, "\n{:<24} {:>7} {:>11}", "class", "images", "unreadable");
    for c in &r.classes {
        let name = printable(&c.name);
        let _ = writeln!(s, "{name:<24} {:>7} {:>11}", c.count, c.unreadable);
    }
    let _ = writeln!(
        s,
        "{:<24} {:>7} {:>11}",
        "total",
        r.total,
        r.unreadable.len()
    );
    if r.total > 0 {
        let common: Vec<String> = r
            .sizes
            .common
            .iter()
            .map(|(k, n)| format!("{k} ({n})"))
            .collect();
        let _ = writeln!(
            s,
            "\nsizes     {}..{} x {}..{}; most common {}",
            r.sizes.min_width,
            r.sizes.max_width,
            r.sizes.min_height,
            r.sizes.max_height,
            common.join(", ")
        );
    }
    let formats: Vec<String> = r.formats.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(s, "formats   {}", formats.join(", "));
    let _ = writeln!(
        s,
        "colour    {} colour, {} grayscale, {} with alpha",
        r.color, r.grayscale, r.with_alpha
    );
    let _ = writeln!(
        s,
        "duplicates {} groups ({} across classes)",
        r.duplicates.len(),
        r.duplicates_across_classes
    );
    for (p, why) in r.unreadable.iter().zip(&r.unreadable_reasons) {
        let _ = writeln!(s, "unreadable {}: {}", printable(p), printable(why));
    }
    for p in &r.ignored {
        let _ = writeln!(s, "ignored    {} (not an image name)", printable(p));
    }
    for w in &r.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}
