//! Reliability round 3 (issue #30), end to end: class names that carry terminal escapes,
//! commas, quotes and spreadsheet formulas travel through training, evaluation, CSV and HTML
//! unchanged in the files and never raw on the terminal; outputs never replace a device, a
//! link or a folder, and a link planted under the temp name is not followed.

mod common;

use std::path::{Path, PathBuf};

use common::{small_rgb_classifier, write_images, zoo, TempDir};

/// Folder names a downloaded dataset could carry: a terminal title sequence, a comma, quotes,
/// a formula, a leading `@`.
const HOSTILE: [&str; 3] = ["esc\u{1b}]0;pwned\u{7}", "a,\"b\"", "=1+1@x"];

fn no_raw_escape(what: &str, text: &str) {
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{what} printed a raw control character: {text:?}"
    );
}

/// The small RGB classifier (`small.onnx`) and a folder `data` of class folders with
/// `per_class` images each, in `t`: the model's and the folder's paths.
fn model_and_data(
    t: &TempDir,
    data: &str,
    classes: &[&str],
    per_class: usize,
) -> (PathBuf, PathBuf) {
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    for class in classes {
        write_images(&t.path().join(data).join(class), per_class);
    }
    (model, t.path().join(data))
}

/// `zoo finetune MODEL --data DATA --classes N --epochs 1 --out RUN`, which must succeed.
fn finetune_one_epoch(t: &TempDir, model: &Path, data: &Path, run: &Path) -> common::Run {
    let classes = std::fs::read_dir(data).unwrap().count().to_string();
    let args = [
        "finetune",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--classes",
        &classes,
        "--epochs",
        "1",
        "--out",
        run.to_str().unwrap(),
    ];
    let out = zoo(&args, t.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    out
}

#[cfg(unix)]
#[test]
fn hostile_class_names_round_trip_through_files_and_never_reach_the_terminal_raw() {
    let t = TempDir::new("hostile");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    for (i, class) in HOSTILE.iter().enumerate() {
        write_images(&t.path().join("data").join(class), 6 + i);
    }
    let data = t.path().join("data");
    let run = t.path().join("run");
    let train = finetune_one_epoch(&t, &model, &data, &run);
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());
    no_raw_escape("finetune", &(train.stdout.clone() + &train.stderr));

    // The run's CSV reads back (RFC 4180) to the exact names, formula guard taken off.
    let csv = std::fs::read_to_string(run.join("confusion.csv")).unwrap();
    let header: Vec<String> = zoo_io::csv::split(csv.lines().next().unwrap());
    let names: Vec<&str> = header[1..]
        .iter()
        .map(|c| zoo_io::csv::unguard(c))
        .collect();
    let mut sorted = HOSTILE.to_vec();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(
        header.iter().any(|c| c == "'=1+1@x"),
        "a formula stays text: {csv}"
    );
    assert_eq!(
        csv.lines().count(),
        4,
        "one row per class, no phantom columns: {csv}"
    );
    let confusion = common::read_json(&run.join("confusion.json"));
    assert_eq!(confusion["classes"].as_array().unwrap().len(), 3);

    // The report's class table has three rows, names escaped for HTML and the terminal.
    let report = zoo(&["report", r], t.path());
    assert_eq!(report.code, 0, "{}", report.stderr);
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    no_raw_escape("report.html", &html);
    assert!(
        html.contains("a,&quot;b&quot;") || html.contains("a,\"b\""),
        "comma name shown whole"
    );
    assert!(html.contains("=1+1@x"));

    // Evaluate (text and JSON): matched by name, terminal output escaped, JSON exact.
    let eval = zoo(&["evaluate", r, "--data", d], t.path());
    assert_eq!(eval.code, 0, "{}", eval.stderr);
    no_raw_escape("evaluate", &(eval.stdout.clone() + &eval.stderr));
    assert!(
        eval.stdout.contains("esc\\u{1b}]0;pwned\\u{7}"),
        "{}",
        eval.stdout
    );
    let json = zoo(&["evaluate", r, "--data", d, "--json"], t.path());
    let classes: Vec<String> = json.json()["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(classes, sorted);

    // data check and predict print the names escaped too.
    let check = zoo(&["data", "check", d], t.path());
    assert_eq!(check.code, 0, "{}", check.stderr);
    no_raw_escape("data check", &(check.stdout.clone() + &check.stderr));
    let image = data.join(HOSTILE[0]).join("img00.png");
    let predict = zoo(&["predict", r, image.to_str().unwrap()], t.path());
    assert_eq!(predict.code, 0, "{}", predict.stderr);
    no_raw_escape("predict", &(predict.stdout.clone() + &predict.stderr));
}

#[cfg(unix)]
#[test]
fn outputs_never_replace_devices_links_or_folders() {
    let t = TempDir::new("outputs");
    let (model, d) = model_and_data(&t, "data", &["cat", "dog"], 4);
    let m = model.to_str().unwrap();
    let victim = t.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let link = t.path().join("features.csv");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let folder = t.path().join("a-folder");
    std::fs::create_dir(&folder).unwrap();
    for (out, kind) in [
        ("/dev/null", "a device"),
        (link.to_str().unwrap(), "a symbolic link"),
        (folder.to_str().unwrap(), "a folder"),
    ] {
        let args = [
            "features",
            m,
            "--data",
            d.to_str().unwrap(),
            "--layer",
            "fc6",
            "-o",
            out,
        ];
        let run = zoo(&args, t.path());
        assert_eq!(run.code, 2, "{out}: {}", run.stderr);
        assert!(run.stderr.contains(kind), "{out}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    let dev_null = std::fs::symlink_metadata("/dev/null").unwrap();
    assert!(
        !dev_null.file_type().is_file(),
        "/dev/null is still a device"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(folder.is_dir());

    // A link planted under the temp name of a real output is not followed.
    let out = t.path().join("real.csv");
    let planted = |pid: u32| t.path().join(format!(".real.csv.tmp-{pid}-0"));
    // The child's pid is unknown ahead: plant for a range around this process's.
    let me = std::process::id();
    for pid in me..me + 64 {
        let _ = std::os::unix::fs::symlink(&victim, planted(pid));
    }
    let args = [
        "features",
        m,
        "--data",
        d.to_str().unwrap(),
        "--layer",
        "fc6",
        "-o",
        out.to_str().unwrap(),
    ];
    let run = zoo(&args, t.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .starts_with("path,label,"));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

/// `zoo evaluate RUN` (the run's own data, re-read) matches classes by name: a class folder
/// added since training (sorting first, so every position shifts) is refused with the way out;
/// with one class fewer, the remaining class keeps its own output.
#[test]
fn evaluate_of_a_run_matches_classes_by_name() {
    let t = TempDir::new("byname");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    let data = t.path().join("data");
    for (i, class) in ["cat", "dog"].iter().enumerate() {
        write_images(&data.join(class), 8 + i);
    }
    let run = t.path().join("run");
    finetune_one_epoch(&t, &model, &data, &run);
    let r = run.to_str().unwrap();
    let before = zoo(&["evaluate", r, "--json"], t.path());
    assert_eq!(before.code, 0, "{}", before.stderr);

    write_images(&data.join("ant"), 5);
    let added = zoo(&["evaluate", r, "--json"], t.path());
    assert_eq!(added.code, 2, "{}", added.stdout);
    assert!(
        added.stderr.contains("class `ant`") && added.stderr.contains("--data"),
        "{}",
        added.stderr
    );
    std::fs::remove_dir_all(data.join("ant")).unwrap();
    std::fs::remove_dir_all(data.join("cat")).unwrap();
    let fewer = zoo(&["evaluate", r, "--json"], t.path());
    assert_eq!(fewer.code, 0, "{}", fewer.stderr);
    let classes = fewer.json()["classes"].clone();
    let dog = classes
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "dog")
        .expect("dog is reported under its own name");
    assert!(dog["support"].as_u64().unwrap() > 0, "{classes}");
}

/// A manifest named by its bare file name (`--data m.csv` from its own folder) gets the same
/// escape check as one named by a path: a symlink out of its folder is refused, in `data check`
/// and in `features`.
#[cfg(unix)]
#[test]
fn a_manifest_named_bare_still_refuses_links_out_of_its_folder() {
    let t = TempDir::new("bare-manifest");
    let root = t.path().join("set");
    write_images(&root.join("a"), 2);
    write_images(&t.path().join("secret"), 1);
    let secret = t.path().join("secret/img00.png");
    std::os::unix::fs::symlink(&secret, root.join("leak.png")).unwrap();
    std::fs::write(
        root.join("m.csv"),
        "path,label\nleak.png,x\na/img00.png,a\n",
    )
    .unwrap();
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    let features = [
        "features",
        model.to_str().unwrap(),
        "--data",
        "m.csv",
        "--layer",
        "fc6",
    ];
    for args in [&["data", "check", "m.csv"][..], &features[..]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_zoo"))
            .args(args)
            .current_dir(&root)
            .env("ZOO_HOME", t.path().join("zoo-home"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("escapes the manifest's folder"), "{stderr}");
    }
    assert!(!root.join("features.csv").exists());
}

/// An empty `ZOO_HOME` (or `XDG_CONFIG_HOME`) means unset, not the current folder: `card new`
/// writes into `~/.config/zoo/cards`, nothing lands where the command ran.
#[test]
fn empty_folder_variables_mean_unset() {
    let t = TempDir::new("empty-env");
    let (home, cwd) = (t.path().join("home"), t.path().join("cwd"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zoo"))
        .args(["card", "new", model.to_str().unwrap(), "--name", "mine"])
        .current_dir(&cwd)
        .env("ZOO_HOME", "")
        .env("XDG_CONFIG_HOME", "")
        .env("HOME", &home)
        .env("ZOO_CACHE", t.path().join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        home.join(".config/zoo/cards/mine.toml").is_file(),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(&cwd).unwrap().count(),
        0,
        "nothing in the current folder"
    );
}

/// A finished run made resumable again (its summary set back to "running"), as a killed run
/// would be.
fn unfinish(run: &Path) {
    let path = run.join("summary.json");
    let mut summary = common::read_json(&path);
    summary["status"] = "running".into();
    std::fs::write(&path, summary.to_string()).unwrap();
}

/// `--resume` trusts nothing in the checkpoint it has not checked: a flipped bit, another
/// run's checkpoint (another network) and data changed since (a renamed class folder) are each
/// refused with the reason and exit 2; the untouched checkpoint resumes.
#[test]
fn resume_refuses_damaged_foreign_and_stale_checkpoints() {
    let t = TempDir::new("resume-checks");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    let train = |data: &str, classes: &[&str], run: &str| {
        for class in classes {
            write_images(&t.path().join(data).join(class), 6);
        }
        let (d, r) = (t.path().join(data), t.path().join(run));
        finetune_one_epoch(&t, &model, &d, &r);
        unfinish(&r);
        r
    };
    let run = train("data", &["cat", "dog"], "run");
    let other = train("other", &["ant", "bee", "cow"], "other-run");
    let resume = |what: &str| {
        let out = zoo(&["finetune", "--resume", run.to_str().unwrap()], t.path());
        assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
        out
    };
    let checkpoint = run.join("checkpoint.bin");
    let good = std::fs::read(&checkpoint).unwrap();

    for bit in [
        3usize,
        8 * 40 + 1,
        8 * (good.len() / 2) + 5,
        8 * good.len() - 1,
    ] {
        let mut flipped = good.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&checkpoint, &flipped).unwrap();
        let out = resume("bit flip");
        assert_eq!(out.code, 2, "bit {bit}: {}", out.stderr);
        assert!(
            out.stderr.contains("damaged") || out.stderr.contains("not a zoo checkpoint"),
            "bit {bit}: {}",
            out.stderr
        );
    }

    std::fs::copy(other.join("checkpoint.bin"), &checkpoint).unwrap();
    let out = resume("foreign");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("another network"), "{}", out.stderr);

    std::fs::write(&checkpoint, &good).unwrap();
    let data = t.path().join("data");
    std::fs::rename(data.join("dog"), data.join("dogs")).unwrap();
    let out = resume("renamed class");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("the data changed"), "{}", out.stderr);

    std::fs::rename(data.join("dogs"), data.join("dog")).unwrap();
    // A run another live process trains (this test process stands in) is not resumed; a lock
    // left by a process that is gone is taken over.
    let lock = run.join(".zoo-lock");
    std::fs::write(&lock, std::process::id().to_string()).unwrap();
    let out = resume("locked");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("another zoo process"), "{}", out.stderr);
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(&lock, gone_pid.to_string()).unwrap();
    let out = resume("untouched");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !lock.exists(),
        "the lock goes with the process that took it"
    );
}

/// Special files never get past a size limit: `--labels /dev/zero` is refused at once (it
/// reads 0 bytes of size and never ends), and a FIFO among the user cards does not hang
/// `zoo list` (it is named as a problem).
#[cfg(unix)]
#[test]
fn special_files_are_named_not_read() {
    let t = TempDir::new("special");
    let model = t.path().join("small.onnx");
    small_rgb_classifier(&model);
    write_images(&t.path().join("img"), 1);
    let image = t.path().join("img/img00.png");
    let started = std::time::Instant::now();
    let args = [
        "predict",
        model.to_str().unwrap(),
        image.to_str().unwrap(),
        "--labels",
        "/dev/zero",
    ];
    let out = zoo(&args, t.path());
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("not a regular file"), "{}", out.stderr);
    assert!(started.elapsed().as_secs_f64() < 10.0);

    let cards = t.path().join("zoo-home/cards");
    std::fs::create_dir_all(&cards).unwrap();
    let fifo = cards.join("stuck.toml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zoo"))
        .arg("list")
        .env("ZOO_HOME", t.path().join("zoo-home"))
        .env("ZOO_CACHE", t.path().join("zoo"))
        .env("HF_HOME", t.path().join("hf"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("zoo list hangs on a FIFO among the user cards");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("stuck.toml") && stderr.contains("not a regular file"),
        "{stderr}"
    );
}

/// `zoo train` checks the network's size before building it: absurd `--classes` or `--hidden`
/// (inside the per-option ranges) are refused with the parameter count, not an abort.
#[test]
fn train_refuses_networks_too_big_to_build() {
    let t = TempDir::new("train-size");
    write_images(&t.path().join("d/0"), 1);
    write_images(&t.path().join("d/1"), 1);
    let d = t.path().join("d");
    for extra in [
        vec!["lenet5", "--classes", "1000000000000000"],
        vec!["mlp", "--hidden", "65536,65536", "--classes", "10"],
    ] {
        let mut args = vec!["train"];
        args.extend(extra.iter().copied());
        args.extend(["--data", d.to_str().unwrap(), "--epochs", "1"]);
        let out = zoo(&args, t.path());
        assert_eq!(out.code, 2, "{extra:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("parameters"),
            "{extra:?}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked") && !out.stderr.contains("memory allocation"));
    }
}

/// A `--size` or `--color` the model's fixed input cannot take is refused by every command
/// with the shapes (predict and features panicked or wrote misaligned rows), and a size too
/// large to hold is refused before any image is made.
#[test]
fn recipes_that_do_not_fit_the_model_are_refused() {
    let t = TempDir::new("recipe-fit");
    let (model, d) = model_and_data(&t, "d", &["a", "b"], 2);
    let m = model.to_str().unwrap();
    let image = d.join("a/img00.png");
    let (d, i) = (d.to_str().unwrap(), image.to_str().unwrap());
    let commands: [&[&str]; 4] = [
        &["predict", m, i],
        &["evaluate", m, "--data", d],
        &["features", m, "--data", d, "--layer", "fc6"],
        &["finetune", m, "--data", d, "--classes", "2"],
    ];
    for command in commands {
        for (flags, expect) in [
            (&["--size", "16x16"][..], "the model takes [3, 20, 18]"),
            (
                &["--color", "gray", "--mean", "0", "--std", "1"][..],
                "[1, 20, 18]",
            ),
            (&["--size", "16384x16384"][..], "per image"),
        ] {
            let args = [command, flags].concat();
            let out = zoo(&args, t.path());
            assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
            assert!(out.stderr.contains(expect), "{args:?}: {}", out.stderr);
            assert!(
                !out.stderr.contains("internal error"),
                "{args:?}: {}",
                out.stderr
            );
        }
    }
    assert!(!t.path().join("features.csv").exists());
}

/// `features` at a value computed from weights alone (a Transpose of a weight, which `inspect`
/// lists among node outputs) is refused: it has no batch axis, and every image's row was the
/// weight matrix.
#[test]
fn features_of_a_weight_only_value_are_refused() {
    use prost::Message;
    use zoo_onnx::builder::{Attr, GraphBuilder, SeededRng};
    let t = TempDir::new("weight-value");
    let mut b = GraphBuilder::new("x", &[Some(1), Some(3), Some(4), Some(4)]);
    b.init_f32("w", &[2, 48], SeededRng::new(3).values(96, 0.1));
    b.node(
        "t",
        "Transpose",
        &["w"],
        &["wt"],
        vec![("perm", Attr::Ints(vec![1, 0]))],
    );
    b.node(
        "flat",
        "Flatten",
        &["x"],
        &["f"],
        vec![("axis", Attr::Int(1))],
    );
    b.node("mm", "MatMul", &["f", "wt"], &["y"], vec![]);
    b.output("y", &[Some(1), Some(2)]);
    let model = t.path().join("tiny.onnx");
    std::fs::write(&model, b.build(13).encode_to_vec()).unwrap();
    for class in ["a", "b"] {
        write_images(&t.path().join("d").join(class), 2);
    }
    let d = t.path().join("d");
    let (m, d) = (model.to_str().unwrap(), d.to_str().unwrap());
    let out = zoo(&["features", m, "--data", d, "--layer", "wt"], t.path());
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("does not depend on the image"),
        "{}",
        out.stderr
    );
    let csv = t.path().join("f.csv");
    let args = ["features", m, "--data", d, "--layer", "f", "--json", "-o"];
    let ok = zoo(&[&args[..], &[csv.to_str().unwrap()]].concat(), t.path());
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(ok.json()["width"], 48);
    assert!(csv.is_file());
}

/// The messages round 3 named: `--resume` with other options is refused (they were ignored),
/// `show activations` takes the pooling layer its error suggests, and `--digits 1,1` says a
/// class is listed twice (it said "class 1 has no images").
#[test]
fn resume_options_pooling_layers_and_repeated_digits_get_the_right_answer() {
    let t = TempDir::new("messages");
    let (model, d) = model_and_data(&t, "d", &["0", "1"], 2);
    let m = model.to_str().unwrap();
    let run = t.path().join("some-run");
    let out = zoo(
        &[
            "finetune",
            "--resume",
            run.to_str().unwrap(),
            "--epochs",
            "3",
        ],
        t.path(),
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("cannot be used with"), "{}", out.stderr);

    let image = d.join("0/img00.png");
    let png = t.path().join("pool.png");
    let args = [
        "show",
        "activations",
        m,
        "--image",
        image.to_str().unwrap(),
        "--layer",
        "n3",
        "-o",
        png.to_str().unwrap(),
    ];
    let out = zoo(&args, t.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(png.is_file());

    let args = [
        "train",
        "linear2d",
        "--digits",
        "1,1",
        "--data",
        d.to_str().unwrap(),
    ];
    let out = zoo(&args, t.path());
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("listed twice"), "{}", out.stderr);
}
