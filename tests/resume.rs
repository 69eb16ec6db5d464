//! Runs survive a crash: `kill -9` mid-run leaves a run that `zoo evaluate` reads and
//! `zoo finetune --resume` completes, with the weights of an uninterrupted run.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{read_json, small_rgb_classifier, write_images, zoo, TempDir};

/// A run that validates every 4 iterations with 6 iterations per epoch, so checkpoints
/// come both from validations and from epoch ends, with augmentation drawing per epoch, mixup
/// and cutmix drawing per step, a one-cycle schedule changing the rate at every step, and two
/// stages (the head alone for the first epoch, then every layer: killed after the switch), and
/// an average of the weights (`--ema`) validating, on a smoothed loss.
fn finetune_args<'a>(
    model: &'a str,
    data: &'a str,
    optimizer: &'a str,
    out: &'a str,
) -> Vec<&'a str> {
    vec![
        "finetune",
        model,
        "--data",
        data,
        "--classes",
        "3",
        "--epochs",
        "40",
        "--batch-size",
        "4",
        "--val-every",
        "4",
        "--fine-tune",
        "1",
        "--augment",
        "--optimizer",
        optimizer,
        "--seed",
        "3",
        "--device",
        "cpu",
        "--schedule",
        "one-cycle",
        "--mixup",
        "0.4",
        "--cutmix",
        "1",
        "--label-smoothing",
        "0.1",
        "--ema",
        "0.9",
        "--out",
        out,
    ]
}

fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let model = zoo_onnx::OnnxModel::load(path).unwrap();
    let mut w: Vec<_> = model
        .graph
        .constants
        .iter()
        .filter_map(|(name, t)| t.as_f32().map(|v| (name.clone(), v.to_vec())))
        .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

fn max_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|((na, va), (nb, vb))| {
            assert_eq!(na, nb);
            assert_eq!(va.len(), vb.len());
            va.iter().zip(vb).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

/// Starts a finetune and kills it with SIGKILL once `checkpoint.bin` holds at least two
/// validations; returns whether it was still running when killed.
fn kill_after_checkpoints(args: &[&str], home: &Path, run: &Path) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zoo"))
        .args(args)
        .env("ZOO_CACHE", home.join("zoo"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let validations = std::fs::read_to_string(run.join("metrics.csv"))
            .map(|m| {
                m.lines()
                    .filter(|l| !l.ends_with(",,"))
                    .count()
                    .saturating_sub(1)
            })
            .unwrap_or(0);
        if validations >= 2 && run.join("checkpoint.bin").is_file() {
            break;
        }
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL on unix
    child.wait().unwrap();
    running
}

/// The small classifier and 9, 10 and 11 images of three classes in `t`: their paths.
fn small_model_and_data(t: &TempDir) -> (String, String) {
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    for (i, class) in ["cat", "dog", "fox"].iter().enumerate() {
        write_images(&t.path().join("data").join(class), 9 + i);
    }
    let data = t.path().join("data");
    (model.display().to_string(), data.display().to_string())
}

#[test]
fn a_killed_sgdm_finetune_resumes_to_the_weights_of_an_uninterrupted_run() {
    killed_run_resumes_exactly("sgdm");
}

#[test]
fn a_killed_adam_finetune_resumes_to_the_weights_of_an_uninterrupted_run() {
    killed_run_resumes_exactly("adam");
}

fn killed_run_resumes_exactly(optimizer: &str) {
    let t = TempDir::new(&format!("resume-{optimizer}"));
    let (model, data) = small_model_and_data(&t);
    let (model, data) = (model.as_str(), data.as_str());
    let whole = t.path().join("whole");
    let run = zoo(
        &finetune_args(model, data, optimizer, whole.to_str().unwrap()),
        t.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(read_json(&whole.join("summary.json"))["status"], "finished");

    let killed = t.path().join("killed");
    let args = finetune_args(model, data, optimizer, killed.to_str().unwrap());
    assert!(
        kill_after_checkpoints(&args, t.path(), &killed),
        "the run ended before it could be killed"
    );
    let progress = read_json(&killed.join("summary.json"));
    assert_eq!(progress["status"], "running", "{progress}");
    assert_eq!(progress["resumable"], true, "{progress}");
    for file in [
        "config.json",
        "labels.txt",
        "best.onnx",
        "last.onnx",
        "metrics.csv",
    ] {
        assert!(killed.join(file).is_file(), "{file} missing after kill -9");
    }
    // The live page: written at each validation, reloading itself while the run trains.
    let page = std::fs::read_to_string(killed.join("report.html")).unwrap();
    assert!(
        page.contains("http-equiv=\"refresh\""),
        "a running run's page reloads"
    );
    assert!(
        page.contains("data:image/png;base64,"),
        "with the training curves so far"
    );
    // What a killed run holds is usable as it is.
    let eval = zoo(
        &[
            "evaluate",
            killed.to_str().unwrap(),
            "--data",
            data,
            "--json",
        ],
        t.path(),
    );
    assert_eq!(eval.code, 0, "{}", eval.stderr);
    assert_eq!(eval.json()["samples"], 9 + 10 + 11);

    let resumed = zoo(
        &["finetune", "--resume", killed.to_str().unwrap(), "--json"],
        t.path(),
    );
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(resumed.stderr.contains("resuming"), "{}", resumed.stderr);
    let summary = resumed.json();
    assert_eq!(summary["status"], "finished");
    let page = std::fs::read_to_string(killed.join("report.html")).unwrap();
    assert!(
        !page.contains("http-equiv"),
        "a finished run's page stays still"
    );
    let whole_summary = read_json(&whole.join("summary.json"));
    assert_eq!(summary["best_iteration"], whole_summary["best_iteration"]);
    assert_eq!(
        summary["best_val_accuracy"],
        whole_summary["best_val_accuracy"]
    );
    for file in ["last.onnx", "best.onnx"] {
        let d = max_difference(&weights(&whole.join(file)), &weights(&killed.join(file)));
        assert!(d < 1e-6, "{file}: resumed weights differ by {d}");
    }
    // metrics.csv has each iteration once, as the uninterrupted run's.
    let rows = |dir: &Path| {
        std::fs::read_to_string(dir.join("metrics.csv"))
            .unwrap()
            .lines()
            .map(|l| l.split(',').nth(1).unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(&whole), rows(&killed));
    // So has the TensorBoard file (rewritten from the checkpoint on resume), with
    // metrics.csv's values.
    for dir in [&whole, &killed] {
        assert_tensorboard_matches_metrics(dir);
    }

    let again = zoo(
        &["finetune", "--resume", killed.to_str().unwrap()],
        t.path(),
    );
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(
        again.stderr.contains("nothing to resume"),
        "{}",
        again.stderr
    );
}

/// Head-only training whose feature cache spills (a 1 KB budget): a run killed with SIGKILL
/// keeps its cache files, the resumed run reuses the whole one and computes the damaged one
/// again, reaches the weights of an uninterrupted run, and a finished run's cache is removed.
#[test]
fn a_killed_run_reuses_its_spilled_feature_cache_and_rebuilds_a_damaged_one() {
    let t = TempDir::new("resume-spilled");
    let (model, data) = small_model_and_data(&t);
    let (model, data) = (model.as_str(), data.as_str());
    let args = |out: &Path| -> Vec<String> {
        let out = out.to_str().unwrap();
        let mut args = finetune_args(model, data, "sgdm", out);
        // Head only, on the same images every step: no mixing, no augmentation.
        let mixing = args.iter().position(|a| *a == "--mixup").unwrap();
        args.drain(mixing..mixing + 4);
        let stages = args.iter().position(|a| *a == "--fine-tune").unwrap();
        args.drain(stages..stages + 2);
        args.retain(|a| *a != "--augment");
        args[7] = "150"; // epochs: long enough to be killed mid-run
        args.extend(["--memory-budget", "1K", "--recipe", "head-only"]);
        args.into_iter().map(String::from).collect()
    };
    let whole = t.path().join("whole");
    let whole_args = args(&whole);
    let run = zoo(
        &whole_args.iter().map(String::as_str).collect::<Vec<_>>(),
        t.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("every row is kept in"),
        "{}",
        run.stderr
    );
    assert!(
        !whole.join("cache").exists(),
        "a finished run keeps no cache"
    );

    let killed = t.path().join("killed");
    let killed_args = args(&killed);
    let killed_args: Vec<&str> = killed_args.iter().map(String::as_str).collect();
    assert!(
        kill_after_checkpoints(&killed_args, t.path(), &killed),
        "the run ended before it could be killed"
    );
    let cache = killed.join("cache");
    assert!(cache.join("train.features").is_file() && cache.join("val.features").is_file());
    let mut val = std::fs::read(cache.join("val.features")).unwrap();
    let middle = val.len() / 2;
    val[middle] ^= 1;
    std::fs::write(cache.join("val.features"), val).unwrap();
    let resumed = zoo(
        &["finetune", "--resume", killed.to_str().unwrap()],
        t.path(),
    );
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let said = &resumed.stderr;
    assert!(
        said.contains("feature cache: reusing") && said.contains("train.features"),
        "{said}"
    );
    assert!(
        said.contains("val.features not reused (its checksum does not match"),
        "{said}"
    );
    for file in ["last.onnx", "best.onnx"] {
        let d = max_difference(&weights(&whole.join(file)), &weights(&killed.join(file)));
        assert!(d < 1e-6, "{file}: resumed weights differ by {d}");
    }
    assert!(!cache.exists(), "a finished run keeps no cache");
}

#[test]
fn resume_refuses_a_folder_that_is_not_a_run_and_a_damaged_checkpoint() {
    let t = TempDir::new("resume-bad");
    let not_run = zoo(
        &["finetune", "--resume", t.path().to_str().unwrap()],
        t.path(),
    );
    assert_eq!(not_run.code, 2, "{}", not_run.stderr);
    assert!(
        not_run.stderr.contains("is not a zoo run"),
        "{}",
        not_run.stderr
    );
    assert!(!not_run.stderr.contains("panicked"), "{}", not_run.stderr);

    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    for (i, class) in ["cat", "dog", "fox"].iter().enumerate() {
        write_images(&t.path().join("data").join(class), 6 + i);
    }
    let out = t.path().join("run");
    let data = t.path().join("data");
    let mut args = finetune_args(
        model.to_str().unwrap(),
        data.to_str().unwrap(),
        "sgdm",
        out.to_str().unwrap(),
    );
    args[7] = "2"; // two epochs (the first trains the head alone)
    assert_eq!(zoo(&args, t.path()).code, 0);
    // Pretend it was killed: status running, checkpoint cut short.
    let summary = out.join("summary.json");
    let text = std::fs::read_to_string(&summary).unwrap();
    std::fs::write(&summary, text.replace("\"finished\"", "\"running\"")).unwrap();
    let ckpt = std::fs::read(out.join("checkpoint.bin")).unwrap();
    std::fs::write(out.join("checkpoint.bin"), &ckpt[..ckpt.len() / 2]).unwrap();
    let damaged = zoo(&["finetune", "--resume", out.to_str().unwrap()], t.path());
    assert_eq!(damaged.code, 2, "{}", damaged.stderr);
    assert!(
        damaged.stderr.contains("checkpoint.bin"),
        "{}",
        damaged.stderr
    );
    // The checksum finds the cut before any section is read.
    assert!(damaged.stderr.contains("damaged"), "{}", damaged.stderr);
}

/// The run's TensorBoard file, read back with its checksums, holds every row of metrics.csv
/// once: the same losses and accuracies (to metrics.csv's decimals), the validations' learning
/// rate, and a positive images/s at every iteration.
fn assert_tensorboard_matches_metrics(run: &Path) {
    use zoo_train::tensorboard::{file_of, read_scalars};
    let scalars = read_scalars(&file_of(run)).unwrap();
    let value = |step: i64, tag: &str| {
        let found: Vec<f32> = scalars
            .iter()
            .filter(|s| s.step == step && s.tag == tag)
            .map(|s| s.value)
            .collect();
        assert!(
            found.len() <= 1,
            "step {step} {tag} written {} times",
            found.len()
        );
        found.first().copied()
    };
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let mut rows = 0;
    for line in metrics.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let step: i64 = cells[1].parse().unwrap();
        for (column, tag, decimals) in [
            (3, "train/loss", 6),
            (4, "train/accuracy", 4),
            (5, "val/loss", 6),
            (6, "val/accuracy", 4),
            (7, "lr", 9),
        ] {
            let logged = value(step, tag);
            if cells[column].is_empty() {
                assert_eq!(logged, None, "step {step}: {tag} without a validation");
                continue;
            }
            let expected: f64 = cells[column].parse().unwrap();
            let logged = logged.unwrap_or_else(|| panic!("step {step}: no {tag}")) as f64;
            let tolerance = 0.5 * 10f64.powi(-decimals) + 1e-6 * expected.abs();
            assert!(
                (logged - expected).abs() <= tolerance,
                "step {step} {tag}: {logged} vs {expected}"
            );
        }
        let rate = value(step, "train/images_per_second").expect("images/s");
        assert!(rate.is_finite() && rate > 0.0, "step {step}: {rate}");
        rows += 1;
    }
    assert!(rows > 0);
    let steps: std::collections::BTreeSet<i64> = scalars.iter().map(|s| s.step).collect();
    assert_eq!(
        steps.len(),
        rows,
        "every step once, none beyond metrics.csv"
    );
}
