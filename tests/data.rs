//! `zoo data check` end to end: mixed formats, broken files, duplicates, manifests, IDX; and
//! commands that read a whole data set streaming it when it does not fit their memory budget.

mod common;

use std::path::{Path, PathBuf};

use common::{shared, small_rgb_classifier, write_images, zoo, TempDir};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/images")
        .join(name)
}

fn copy(name: &str, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(fixture(name), to).unwrap();
}

#[test]
fn mixed_folder_loads_everything_loadable_and_names_the_rest() {
    let t = TempDir::new("data-mixed");
    let root = t.path().join("data");
    for name in [
        "plain.jpeg",
        "palette.gif",
        "sixteen-bit.png",
        "rgba.png",
        "corrupt.jpg",
        "text.jpg",
    ] {
        copy(name, &root.join("cats").join(name));
    }
    for name in [
        "progressive.jpg",
        "cmyk.jpg",
        "image.bmp",
        "image.webp",
        "image.tiff",
        "exif-rotated.jpg",
    ] {
        copy(name, &root.join("dogs").join(name));
    }
    copy("plain.jpeg", &root.join("dogs/same-as-a-cat.jpeg"));
    std::fs::write(root.join("dogs/notes.txt"), "not an image").unwrap();

    let run = zoo(
        &[
            "data",
            "check",
            root.to_str().unwrap(),
            "--model",
            "alexnet",
            "--json",
        ],
        t.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["total"], 11);
    assert_eq!(j["classes"][0]["name"], "cats");
    assert_eq!(j["classes"][0]["count"], 4);
    assert_eq!(j["classes"][1]["count"], 7);
    let unreadable: Vec<&str> = j["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(unreadable.len(), 2);
    assert!(unreadable.iter().any(|p| p.ends_with("cats/corrupt.jpg")));
    assert!(unreadable.iter().any(|p| p.ends_with("cats/text.jpg")));
    let dups = j["duplicates"].as_array().unwrap();
    assert_eq!(dups.len(), 1);
    assert_eq!(dups[0].as_array().unwrap().len(), 2);
    assert_eq!(j["duplicates_across_classes"], 1);
    assert!(j["ignored"][0].as_str().unwrap().ends_with("notes.txt"));
    assert_eq!(j["grayscale"], 1, "the 16-bit PNG is grayscale");
    let formats = &j["formats"];
    for f in ["jpeg", "png", "gif", "bmp", "webp", "tiff"] {
        assert!(formats[f].as_u64().unwrap() >= 1, "{f}: {formats}");
    }
    let warnings = j["warnings"].to_string();
    assert!(
        warnings.contains("grayscale images will be replicated")
            && warnings.contains("different labels"),
        "{warnings}"
    );

    let table = zoo(&["data", "check", root.to_str().unwrap()], t.path());
    assert!(
        table.stdout.contains("unreadable ") && table.stdout.contains("corrupt.jpg"),
        "{}",
        table.stdout
    );
}

#[test]
fn csv_manifest_with_splits_and_escape_protection() {
    let t = TempDir::new("data-csv");
    let root = t.path().join("set");
    copy("plain.jpeg", &root.join("img/a.jpeg"));
    copy("progressive.jpg", &root.join("img/b.jpg"));
    copy("image.bmp", &root.join("img/c.bmp"));
    let csv = root.join("manifest.csv");
    std::fs::write(
        &csv,
        "path,label,split\nimg/a.jpeg,rose,train\nimg/b.jpg,tulip,val\nimg/c.bmp,rose,\n",
    )
    .unwrap();
    let run = zoo(
        &["data", "check", csv.to_str().unwrap(), "--json"],
        t.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["total"], 3);
    assert_eq!(
        j["classes"],
        serde_json::json!([{"name": "rose", "count": 2, "unreadable": 0}, {"name": "tulip", "count": 1, "unreadable": 0}])
    );

    std::fs::write(&csv, "path,label\nimg/a.jpeg,rose\n../outside.png,tulip\n").unwrap();
    let run = zoo(&["data", "check", csv.to_str().unwrap()], t.path());
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("line 3") && run.stderr.contains("escapes"),
        "{}",
        run.stderr
    );

    std::fs::write(&csv, "file,class\nimg/a.jpeg,rose\n").unwrap();
    let run = zoo(&["data", "check", csv.to_str().unwrap()], t.path());
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("`path` and `label`"), "{}", run.stderr);
}

#[test]
fn the_documented_example_manifest_is_valid() {
    let t = TempDir::new("data-example");
    let csv =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data-manifests/example/manifest.csv");
    let run = zoo(
        &["data", "check", csv.to_str().unwrap(), "--json"],
        t.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["total"], 4);
}

#[test]
fn a_folder_without_class_folders_is_explained() {
    let t = TempDir::new("data-flat");
    copy("plain.jpeg", &t.path().join("flat/a.jpeg"));
    let run = zoo(
        &["data", "check", t.path().join("flat").to_str().unwrap()],
        t.path(),
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("sub-folder named after the class"),
        "{}",
        run.stderr
    );
}

#[test]
#[ignore = "needs ../shared"]
fn flowers5_has_400_images_in_5_classes() {
    let t = TempDir::new("flowers");
    let run = zoo(
        &[
            "data",
            "check",
            shared("data/flowers5").to_str().unwrap(),
            "--json",
        ],
        t.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["total"], 400);
    let classes: Vec<(&str, u64)> = j["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        classes,
        [
            ("daisy", 80),
            ("dandelion", 80),
            ("rose", 80),
            ("sunflower", 80),
            ("tulip", 80)
        ]
    );
    assert_eq!(j["unreadable"].as_array().unwrap().len(), 0);
}

#[test]
#[ignore = "needs ../shared"]
fn mnist_test_set_has_the_published_digit_counts() {
    let t = TempDir::new("mnist");
    for path in ["data/mnist", "data/mnist/t10k-images-idx3-ubyte.gz"] {
        let run = zoo(
            &["data", "check", shared(path).to_str().unwrap(), "--json"],
            t.path(),
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        let j = run.json();
        assert_eq!(j["total"], 10_000);
        let counts: Vec<u64> = j["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["count"].as_u64().unwrap())
            .collect();
        assert_eq!(
            counts,
            [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        );
        assert_eq!(j["classes"][7]["name"], "7");
    }
}

/// 300 images (more than one 256-image block): `zoo evaluate` (zoo's network and tract, with
/// and without `--tta`) and `zoo features` give the same figures, gallery and rows streamed
/// under a 1 KB budget as held.
#[test]
fn evaluate_and_features_stream_a_set_over_the_budget_to_the_same_results() {
    let t = TempDir::new("streaming");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    let data = t.path().join("data");
    for class in ["cat", "dog", "fox"] {
        write_images(&data.join(class), 100);
    }
    let (model, data) = (model.to_str().unwrap(), data.to_str().unwrap());
    let evaluate = |engine: &str, budget: Option<&str>, out: &str| {
        let mut args = vec!["evaluate", model, "--data", data, "--engine", engine];
        args.extend(["--out", out, "--json"]);
        if let Some(budget) = budget {
            args.extend(["--memory-budget", budget]);
        }
        if out.starts_with("tta") {
            args.push("--tta");
        }
        let run = zoo(&args, t.path());
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.json()
    };
    for engine in ["zoo", "tract"] {
        let held = evaluate(engine, None, "held");
        let streamed = evaluate(engine, Some("1K"), "streamed");
        assert!(
            !held["data"].as_str().unwrap().contains("streamed"),
            "{held}"
        );
        assert!(
            streamed["data"]
                .as_str()
                .unwrap()
                .contains("streamed from disk"),
            "{streamed}"
        );
        assert_eq!(streamed["samples"], 300);
        for key in [
            "correct",
            "classes",
            "worst",
            "misclassified",
            "most_confused",
        ] {
            assert_eq!(held[key], streamed[key], "{engine}: {key}");
        }
        let gallery = |dir: &str| std::fs::read(t.path().join(dir).join("misclassified.png"));
        assert_eq!(
            gallery("held").unwrap(),
            gallery("streamed").unwrap(),
            "{engine}"
        );
        // Test-time augmentation: four views averaged, streamed or held alike.
        let tta = evaluate(engine, None, "tta-held");
        let tta_streamed = evaluate(engine, Some("1K"), "tta-streamed");
        assert!(
            tta["engine"].as_str().unwrap().contains("4 views averaged"),
            "{tta}"
        );
        assert_eq!(tta["worst"], tta_streamed["worst"], "{engine}");
        assert_ne!(
            tta["worst"], held["worst"],
            "{engine}: the views change the outputs"
        );
    }
    let features = |budget: Option<&str>, out: &str| {
        let mut args = vec![
            "features", model, "--data", data, "--layer", "fc6", "--out", out,
        ];
        if let Some(budget) = budget {
            args.extend(["--memory-budget", budget]);
        }
        let run = zoo(&args, t.path());
        assert_eq!(run.code, 0, "{}", run.stderr);
        std::fs::read_to_string(t.path().join(out)).unwrap()
    };
    let held = features(None, "held.csv");
    assert_eq!(held.lines().count(), 301, "a header and a row per image");
    assert_eq!(held, features(Some("1K"), "streamed.csv"));
}
