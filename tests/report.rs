//! The run report: one self-contained page per run, rebuilt by `zoo report`, and rendered by a
//! real browser (headless Chromium, when installed) with every image visible.

mod common;

use std::path::Path;

use common::{small_rgb_classifier, write_images, zoo, TempDir};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A finished finetune of the small classifier, exported (so the page has a parity receipt).
fn finished_run(t: &TempDir) -> std::path::PathBuf {
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    for (i, class) in ["cat", "dog", "fox"].iter().enumerate() {
        write_images(&t.path().join("data").join(class), 6 + i);
    }
    let run = t.path().join("run");
    let data = t.path().join("data");
    let ft = zoo(
        &[
            "finetune",
            s(&model),
            "--data",
            s(&data),
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--out",
            s(&run),
        ],
        t.path(),
    );
    assert_eq!(ft.code, 0, "{}", ft.stderr);
    let ex = zoo(
        &["export", s(&run), "--onnx", "--engines", "tract"],
        t.path(),
    );
    assert_eq!(ex.code, 0, "{}", ex.stderr);
    run
}

/// Every embedded image, base64-decoded.
fn embedded_pngs(page: &str) -> Vec<Vec<u8>> {
    let decode = |text: &str| -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            _ => 63,
        };
        let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
        bytes
            .chunks(4)
            .flat_map(|q| {
                let n = q
                    .iter()
                    .enumerate()
                    .fold(0u32, |n, (i, &v)| n | (u32::from(v) << (18 - 6 * i)));
                let out = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
                out[..q.len() - 1].to_vec()
            })
            .collect()
    };
    page.split("src=\"data:image/png;base64,")
        .skip(1)
        .map(|rest| decode(&rest[..rest.find('"').unwrap()]))
        .collect()
}

#[test]
fn a_finished_run_has_a_self_contained_page_that_zoo_report_rebuilds() {
    let t = TempDir::new("report");
    let run = finished_run(&t);
    let page = std::fs::read_to_string(run.join("report.html")).unwrap();
    for section in [
        "Training progress",
        "confusion matrix",
        "Misclassified",
        "filters",
        "Freeze audit",
        "Parity receipt",
        "Options",
    ] {
        assert!(page.contains(section), "{section} missing");
    }
    assert!(
        !page.contains("http-equiv"),
        "a finished run does not reload"
    );
    assert!(!page.contains("<script"), "readable without JavaScript");
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "nothing from the network"
    );
    let pngs = embedded_pngs(&page);
    assert_eq!(pngs.len(), 4, "progress, confusion, misclassified, filters");
    for png in &pngs {
        let img = image::load_from_memory(png).expect("each embedded image is a PNG");
        assert!(img.width() > 50 && img.height() > 20);
    }
    assert!(page.contains("<td>pass</td>"), "the parity receipt");
    std::fs::remove_file(run.join("report.html")).unwrap();
    let rebuilt = zoo(&["report", s(&run)], t.path());
    assert_eq!(rebuilt.code, 0, "{}", rebuilt.stderr);
    assert_eq!(rebuilt.stdout.trim(), s(&run.join("report.html")));
    assert_eq!(
        std::fs::read_to_string(run.join("report.html")).unwrap(),
        page
    );
    let not_run = zoo(&["report", s(t.path())], t.path());
    assert!(
        not_run.code == 2 && not_run.stderr.contains("not a zoo run"),
        "{}",
        not_run.stderr
    );
}

const CHROMIUM: &str = "/usr/bin/chromium";

fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    std::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(args)
        .output()
        .expect("chromium runs")
}

/// Needs Debian's `chromium` (`.ci/run` installs it); skips without it.
#[test]
fn the_report_renders_in_headless_chromium_with_every_image_visible() {
    if !Path::new(CHROMIUM).exists() {
        eprintln!("skipped: {CHROMIUM} is not installed (apt-get install chromium)");
        return;
    }
    let t = TempDir::new("report-browser");
    let run = finished_run(&t);
    let page = std::fs::read_to_string(run.join("report.html")).unwrap();
    // A copy with a probe that writes each image's load state and sizes into the title.
    let probe = page.replace(
        "</body>",
        "<script>window.addEventListener('load',()=>{document.title='IMAGES '+JSON.stringify([...document.images].map(i=>[i.complete,i.naturalWidth,i.naturalHeight,Math.round(i.getBoundingClientRect().width)]))})</script></body>",
    );
    let probe_file = run.join("probe.html");
    std::fs::write(&probe_file, probe).unwrap();
    let url = format!("file://{}", probe_file.display());
    let dom = chromium(
        &["--virtual-time-budget=10000", "--dump-dom", &url],
        &t.path().join("profile"),
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    let title = dom
        .split("<title>IMAGES ")
        .nth(1)
        .and_then(|r| r.split("</title>").next())
        .unwrap_or_else(|| panic!("the probe ran: {dom}"));
    let images: Vec<(bool, u64, u64, u64)> =
        serde_json::from_str::<Vec<(bool, u64, u64, u64)>>(title).unwrap();
    assert_eq!(images.len(), 4, "{title}");
    for (complete, w, h, shown) in images {
        assert!(
            complete && w > 50 && h > 20 && shown > 50,
            "an image did not render: {title}"
        );
    }
    // And the page itself (no probe) as a screenshot: drawn, not blank.
    let shot = t.path().join("page.png");
    let page_url = format!("file://{}", run.join("report.html").display());
    chromium(
        &[
            "--window-size=1200,2400",
            &format!("--screenshot={}", shot.display()),
            &page_url,
        ],
        &t.path().join("profile2"),
    );
    let img = image::open(&shot).expect("a screenshot").to_rgb8();
    let dark = img
        .pixels()
        .filter(|p| p.0.iter().map(|&c| c as u32).sum::<u32>() < 300)
        .count();
    assert!(
        dark > 10_000,
        "the screenshot shows text and pictures ({dark} dark pixels)"
    );
}
