//! Stratified, seeded splits and their refusals.

use std::path::Path;

use zoo_data::{open, split, SplitPlan};

fn folder(root: &Path, counts: &[(&str, usize)]) {
    for (class, n) in counts {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..*n {
            // Distinct content per file, so no duplicate warnings unless a test wants them.
            let img =
                image::RgbImage::from_pixel(4, 4, image::Rgb([i as u8, class.len() as u8, 7]));
            img.save(dir.join(format!("{i:03}.png"))).unwrap();
        }
    }
}

fn tmp(tag: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("zoo-split-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

#[test]
fn fraction_is_stratified_seeded_and_disjoint() {
    let root = tmp("fraction");
    folder(&root, &[("a", 10), ("b", 20)]);
    let d = open(&root).unwrap();
    let s = split(&d, SplitPlan::Fraction(0.2), 7).unwrap();
    let val_per_class =
        |s: &zoo_data::Splits, c| s.val.iter().filter(|&&i| d.samples[i].label == c).count();
    assert_eq!((val_per_class(&s, 0), val_per_class(&s, 1)), (2, 4));
    assert_eq!(s.train.len() + s.val.len(), 30);
    assert!(s.train.iter().all(|i| !s.val.contains(i)));
    let again = split(&d, SplitPlan::Fraction(0.2), 7).unwrap();
    assert_eq!(s.val, again.val, "same seed, same split");
    let other = split(&d, SplitPlan::Fraction(0.2), 8).unwrap();
    assert_ne!(s.val, other.val, "another seed, another split");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn per_class_count_and_refusals() {
    let root = tmp("per-class");
    folder(&root, &[("a", 3), ("b", 12)]);
    let d = open(&root).unwrap();
    let s = split(&d, SplitPlan::PerClass(2), 1).unwrap();
    assert_eq!(s.val.len(), 4);
    let classes = d.classes.clone();
    let w = zoo_data::imbalance_warning(&classes, &[3, 12]).unwrap();
    assert!(w.contains("`b` has 12 readable images, `a` only 3"), "{w}");
    assert!(zoo_data::imbalance_warning(&classes, &[6, 12]).is_none());
    let err = split(&d, SplitPlan::PerClass(3), 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("class `a` has 3 images"), "{err}");
    std::fs::create_dir_all(root.join("empty")).unwrap();
    let d = open(&root).unwrap();
    let err = split(&d, SplitPlan::Fraction(0.2), 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("class `empty` has no images"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn duplicates_across_train_and_val_are_warned() {
    let root = tmp("leak");
    folder(&root, &[("a", 6)]);
    for i in 0..6 {
        std::fs::copy(
            root.join(format!("a/{i:03}.png")),
            root.join(format!("a/copy{i}.png")),
        )
        .unwrap();
    }
    let d = open(&root).unwrap();
    let s = split(&d, SplitPlan::Fraction(0.5), 3).unwrap();
    assert!(
        s.warnings.iter().any(|w| w.contains("also appear")),
        "{:?}",
        s.warnings
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn manifest_split_column_decides() {
    let root = tmp("manifest");
    folder(&root, &[("a", 2), ("b", 2)]);
    std::fs::write(
        root.join("m.csv"),
        "path,label,split\na/000.png,a,train\na/001.png,a,val\nb/000.png,b,\nb/001.png,b,test\n",
    )
    .unwrap();
    let d = open(&root.join("m.csv")).unwrap();
    let s = split(&d, SplitPlan::FromManifest, 0).unwrap();
    assert_eq!(s.train.len(), 2);
    assert_eq!(s.val.len(), 1);
    assert!(d.samples[s.val[0]].image.name().ends_with("a/001.png"));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn loader_skips_and_reports_unreadable_images() {
    let root = tmp("loader");
    folder(&root, &[("a", 3)]);
    std::fs::write(root.join("a/broken.png"), b"\x89PNG garbage").unwrap();
    let d = open(&root).unwrap();
    let all: Vec<usize> = (0..d.samples.len()).collect();
    let p = zoo_cards::find("lenet").unwrap().preprocessing;
    let (t, skipped) = zoo_data::load(&d, &all, &p);
    assert_eq!(t.len(), 3);
    assert_eq!(t.values.len(), 3 * 28 * 28);
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].path.ends_with("broken.png"));
    std::fs::remove_dir_all(&root).unwrap();
}

/// A streamed set holds no pixels, skips what an in-memory one skips, and gathers the same
/// values (augmented too); a file removed after the check is an error naming it.
#[test]
fn a_streamed_set_gathers_what_the_loaded_one_holds() {
    let root = tmp("streamed");
    folder(&root, &[("a", 4), ("b", 3)]);
    std::fs::write(root.join("a/broken.png"), b"\x89PNG garbage").unwrap();
    let d = open(&root).unwrap();
    let all: Vec<usize> = (0..d.samples.len()).collect();
    let p = zoo_cards::find("lenet").unwrap().preprocessing;
    let (held, held_skipped) = zoo_data::load(&d, &all, &p);
    let (streamed, skipped) = zoo_data::stream(&d, &all, &p);
    assert!(streamed.values.is_empty() && streamed.streamed.is_some());
    assert_eq!(streamed.pixel_bytes(), held.pixel_bytes());
    assert_eq!((streamed.len(), skipped.len()), (7, 1));
    assert_eq!(skipped[0].path, held_skipped[0].path);
    assert_eq!(
        (&streamed.labels, &streamed.samples),
        (&held.labels, &held.samples)
    );
    let aug = zoo_data::Augment {
        flip: true,
        max_shift: 3,
    };
    let picked = [6, 0, 3, 3];
    for augment in [None, Some((aug, 5, 2))] {
        assert_eq!(
            streamed.gather(&picked, augment).unwrap(),
            held.gather(&picked, augment).unwrap()
        );
    }
    assert_eq!(streamed.range(2, 3).unwrap(), held.range(2, 3).unwrap());
    let gone = d.samples[streamed.samples[1]].image.name();
    std::fs::remove_file(&gone).unwrap();
    let err = streamed.gather(&[0, 1], None).unwrap_err().to_string();
    assert!(err.contains(&gone), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn batches_cover_every_image_once_per_epoch() {
    let root = tmp("batches");
    folder(&root, &[("a", 5), ("b", 4)]);
    let d = open(&root).unwrap();
    let all: Vec<usize> = (0..d.samples.len()).collect();
    let p = zoo_cards::find("lenet").unwrap().preprocessing;
    let (t, _) = zoo_data::load(&d, &all, &p);
    let batches: Vec<_> = t.batches(4, Some(3), None).map(Result::unwrap).collect();
    assert_eq!(
        batches.iter().map(|b| b.labels.len()).collect::<Vec<_>>(),
        [4, 4, 1]
    );
    let mut labels: Vec<usize> = batches.iter().flat_map(|b| b.labels.clone()).collect();
    labels.sort();
    assert_eq!(labels, [0, 0, 0, 0, 0, 1, 1, 1, 1]);
    let first = |aug| t.batches(9, None, aug).next().unwrap().unwrap();
    let in_order: Vec<usize> = first(None).labels;
    assert_eq!(in_order, t.labels);
    let aug = zoo_data::Augment {
        flip: true,
        max_shift: 3,
    };
    let a: Vec<f32> = first(Some((aug, 1, 0))).values;
    let b: Vec<f32> = first(Some((aug, 1, 0))).values;
    assert_eq!(a, b, "augmentation is seeded");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_manifest_with_a_header_and_no_rows_is_an_error() {
    let root = tmp("empty-manifest");
    std::fs::create_dir_all(&root).unwrap();
    let csv = root.join("m.csv");
    std::fs::write(&csv, "path,label\n").unwrap();
    let e = open(&csv).unwrap_err().to_string();
    assert!(e.contains("no rows"), "{e}");
}

/// Special files are never opened (a FIFO blocks a reader forever) and a symlink loop is read
/// once: a folder of 3 images stays 3 images.
#[cfg(unix)]
#[test]
fn fifos_are_skipped_and_symlink_loops_are_not_followed() {
    let root = tmp("special-files");
    folder(&root, &[("a", 3), ("b", 2)]);
    let fifo = root.join("a").join("x.jpg");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    std::os::unix::fs::symlink(root.join("a"), root.join("a").join("loop")).unwrap();
    let d = open(&root).unwrap();
    assert_eq!(d.samples.len(), 5, "{:?}", d.samples);
    let _ = std::fs::remove_dir_all(&root);
}

/// A link inside a class folder back up to the dataset (`..`), to the class folder itself or
/// to another class is not followed: those images are other classes', and were counted as
/// this class's. A link to images outside the dataset still is.
#[cfg(unix)]
#[test]
fn links_to_the_dataset_or_other_classes_are_not_counted_as_this_class() {
    let root = tmp("class-links");
    folder(&root, &[("a", 3), ("b", 2)]);
    let outside = tmp("class-links-pool");
    folder(&outside, &[("pool", 4)]);
    let a = root.join("a");
    std::os::unix::fs::symlink("..", a.join("up")).unwrap();
    std::os::unix::fs::symlink("../b", a.join("other")).unwrap();
    std::os::unix::fs::symlink(".", a.join("self")).unwrap();
    std::os::unix::fs::symlink(outside.join("pool"), a.join("pool")).unwrap();
    let d = open(&root).unwrap();
    let count = |label: usize| d.samples.iter().filter(|s| s.label == label).count();
    assert_eq!((count(0), count(1)), (3 + 4, 2), "{:?}", d.samples);
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&outside);
}

fn idx_header(count: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [count, rows, cols] {
        v.extend(d.to_be_bytes());
    }
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Counts are checked against the limits and the payload before anything is allocated.
#[test]
fn idx_files_with_absurd_or_wrong_counts_are_refused() {
    let root = tmp("idx-limits");
    std::fs::create_dir_all(&root).unwrap();
    let images = root.join("x-images-idx3-ubyte.gz");
    let labels = root.join("x-labels-idx1-ubyte.gz");
    let mut label_file = vec![0, 0, 8, 1];
    label_file.extend(500_000_000u32.to_be_bytes());
    std::fs::write(&labels, gzip(&label_file)).unwrap();
    std::fs::write(&images, gzip(&idx_header(500_000_000, 1, 1))).unwrap();
    let e = open(&images).unwrap_err().to_string();
    assert!(e.contains("more than the limit"), "{e}");
    // A header that promises more pixels than the file holds.
    let mut short = idx_header(3, 2, 2);
    short.extend([1u8; 7]);
    std::fs::write(&images, gzip(&short)).unwrap();
    let mut three = vec![0, 0, 8, 1];
    three.extend(3u32.to_be_bytes());
    three.extend([0u8, 1, 0]);
    std::fs::write(&labels, gzip(&three)).unwrap();
    let e = open(&images).unwrap_err().to_string();
    assert!(e.contains("holds 7 data bytes, its header says 12"), "{e}");
    let mut good = idx_header(3, 2, 2);
    good.extend([9u8; 12]);
    std::fs::write(&images, gzip(&good)).unwrap();
    assert_eq!(open(&images).unwrap().samples.len(), 3);
}

#[test]
fn a_separate_validation_set_validates_and_its_classes_follow_the_training_order() {
    let root = tmp("valdata");
    folder(&root.join("train"), &[("a", 4), ("b", 3)]);
    // A manifest lists its classes in first-seen order: b before a.
    let val = root.join("val");
    folder(&val, &[("a", 2), ("b", 1)]);
    let csv = root.join("val.csv");
    std::fs::write(
        &csv,
        "path,label\nval/b/000.png,b\nval/a/000.png,a\nval/a/001.png,a\n",
    )
    .unwrap();
    let train = open(&root.join("train")).unwrap();
    let manifest = open(&csv).unwrap();
    let merged = zoo_data::with_validation_set(train, manifest).unwrap();
    let s = split(&merged, SplitPlan::FromManifest, 0).unwrap();
    assert_eq!((s.train.len(), s.val.len()), (7, 3));
    let val_labels: Vec<(String, usize)> = s
        .val
        .iter()
        .map(|&i| (merged.samples[i].image.name(), merged.samples[i].label))
        .collect();
    for (name, label) in &val_labels {
        let class = if name.contains("/b/") { 1 } else { 0 };
        assert_eq!(
            *label, class,
            "{name} keeps its class under the training numbering"
        );
    }
    // Other class names: refused, both lists named.
    folder(&root.join("other"), &[("a", 1), ("c", 1)]);
    let e = zoo_data::with_validation_set(
        open(&root.join("train")).unwrap(),
        open(&root.join("other")).unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("a, b") && e.contains("a, c"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}
