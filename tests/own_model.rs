//! Your own model and your own folders: preprocessing flags, label files, a separate
//! validation set, optimizer defaults and user cards, end to end through the binary.

mod common;

use std::path::Path;

use common::{read_json, small_rgb_classifier, write_images, zoo, TempDir};

const CLASSES: [&str; 3] = ["cat", "dog", "fox"];

/// `train/` and `val/` class folders (the PyTorch tutorial's layout); returns how many
/// validation images were written.
fn train_val(root: &Path) -> usize {
    let mut val = 0;
    for (i, class) in CLASSES.iter().enumerate() {
        write_images(&root.join("train").join(class), 5 + i);
        write_images(&root.join("val").join(class), 2 + i);
        val += 2 + i;
    }
    val
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_bare_file_with_a_preset_finetunes_on_its_val_folder_and_later_commands_need_no_flags() {
    let t = TempDir::new("own-preset");
    let model = t.path().join("mine.onnx");
    small_rgb_classifier(&model);
    let val_count = train_val(t.path());
    let run_dir = t.path().join("run");
    let (train, val) = (t.path().join("train"), t.path().join("val"));
    let ft = zoo(
        &[
            "finetune",
            s(&model),
            "--data",
            s(&train),
            "--val-data",
            s(&val),
            "--preprocessing",
            "imagenet",
            "--std",
            "0.25",
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--optimizer",
            "adam",
            "--out",
            s(&run_dir),
        ],
        t.path(),
    );
    assert_eq!(ft.code, 0, "{}", ft.stderr);
    assert!(
        ft.stderr.contains("preprocessing: ")
            && ft
                .stderr
                .contains("--preprocessing imagenet --std 0.25 over zoo's default"),
        "the recipe in force is printed with where it came from: {}",
        ft.stderr
    );
    assert!(
        !ft.stderr.contains("warning: no model card"),
        "{}",
        ft.stderr
    );
    let summary = read_json(&run_dir.join("summary.json"));
    assert_eq!(summary["val_images"], val_count, "exactly the val/ images");
    assert_eq!(summary["train_images"], 5 + 6 + 7);
    let config = read_json(&run_dir.join("config.json"));
    let recipe = &config["profile"]["preprocessing"];
    let values = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let close = |a: Vec<f64>, b: [f64; 3]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
    assert!(
        close(values(&recipe["mean"]), [0.485, 0.456, 0.406]),
        "{recipe}"
    );
    assert!(close(values(&recipe["std"]), [0.25; 3]), "{recipe}");
    assert_eq!(recipe["resize"], "shorter-side-crop");
    assert!(config["options"]["val_data"]
        .as_str()
        .unwrap()
        .ends_with("val"));
    // Adam without --lr takes Adam's defaults, not SGD's: the two-stage recipe (18 images)
    // moves the body at a third of Adam's 3e-4 and keeps the head at 3e-4 x 10.
    assert_eq!(config["options"]["recipe"], "two-stage");
    let lr = config["options"]["lr"].as_f64().unwrap();
    let head = lr * config["options"]["head_lr_factor"].as_f64().unwrap();
    assert!(
        (lr - 1e-4).abs() < 1e-12 && (head - 3e-3).abs() < 1e-12,
        "{config}"
    );

    // Export rebuilds the same validation set and checks parity on it.
    let export = zoo(
        &[
            "export",
            s(&run_dir),
            "--onnx",
            "--engines",
            "tract",
            "--json",
        ],
        t.path(),
    );
    assert_eq!(export.code, 0, "{}", export.stderr);
    let e = export.json();
    assert_eq!(e["samples"], val_count);
    assert_eq!(e["batch_1"]["samples"], val_count);
    // Evaluate and predict on the run read the recipe from its files: no flags.
    let eval = zoo(&["evaluate", s(&run_dir), "--json"], t.path());
    assert_eq!(eval.code, 0, "{}", eval.stderr);
    let ev = eval.json();
    assert_eq!(ev["samples"], val_count);
    // Mistakes: the gallery, and the count the accuracy implies.
    assert!(Path::new(ev["misclassified_png"].as_str().unwrap()).is_file());
    assert_eq!(
        ev["misclassified"].as_u64().unwrap() + ev["correct"].as_u64().unwrap(),
        val_count as u64
    );
    assert!(ev["most_confused"].as_array().unwrap().len() <= 5);
    assert!(
        ev["preprocessing"]
            .as_str()
            .unwrap()
            .contains("std [0.25, 0.25, 0.25]")
            && ev["preprocessing"]
                .as_str()
                .unwrap()
                .contains("zoo metadata"),
        "{}",
        ev["preprocessing"]
    );
    let image = val.join("dog/img00.png");
    let predict = zoo(&["predict", s(&run_dir), s(&image), "--json"], t.path());
    assert_eq!(predict.code, 0, "{}", predict.stderr);
    let p = predict.json();
    assert!(p["preprocessing"].as_str().unwrap().contains("mean [0.485"));
    assert!(CLASSES.contains(&p["predictions"][0]["top"][0]["label"].as_str().unwrap()));
}

#[test]
fn val_data_with_other_classes_and_bad_recipes_are_refused_with_both_sides() {
    let t = TempDir::new("own-refusals");
    let model = t.path().join("mine.onnx");
    small_rgb_classifier(&model);
    train_val(t.path());
    write_images(&t.path().join("other/cat"), 2);
    write_images(&t.path().join("other/owl"), 2);
    let train = t.path().join("train");
    let base = ["finetune", s(&model), "--data", s(&train), "--epochs", "1"];
    let other = t.path().join("other");
    let run = zoo(&[&base[..], &["--val-data", s(&other)]].concat(), t.path());
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("cat, dog, fox") && run.stderr.contains("cat, owl"),
        "{}",
        run.stderr
    );
    let val = t.path().join("val");
    let both = zoo(
        &[&base[..], &["--val-data", s(&val), "--val-split", "0.3"]].concat(),
        t.path(),
    );
    assert!(
        both.stderr.contains("only one of --val-data"),
        "{}",
        both.stderr
    );
    let gray = zoo(&[&base[..], &["--color", "gray"]].concat(), t.path());
    assert!(gray.stderr.contains("--mean and --std"), "{}", gray.stderr);
    let preset = zoo(
        &[&base[..], &["--preprocessing", "torch"]].concat(),
        t.path(),
    );
    assert!(
        preset
            .stderr
            .contains("imagenet, caffe, inception, unit or raw"),
        "{}",
        preset.stderr
    );
    // data check applies the same flags to a model's recipe, and needs the model for them.
    let check = zoo(
        &[
            "data",
            "check",
            s(&train),
            "--model",
            s(&model),
            "--preprocessing",
            "caffe",
            "--json",
        ],
        t.path(),
    );
    assert_eq!(check.code, 0, "{}", check.stderr);
    let recipe = check.json()["model_preprocessing"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        recipe.contains("bgr") && recipe.contains("103.939"),
        "{recipe}"
    );
    let no_model = zoo(&["data", "check", s(&train), "--mean", "0.5"], t.path());
    assert!(
        no_model.stderr.contains("need --model"),
        "{}",
        no_model.stderr
    );
    let size = zoo(&[&base[..], &["--size", "32x32"]].concat(), t.path());
    assert!(
        size.code == 2 && size.stderr.contains("the model takes [3, 20, 18]"),
        "{}",
        size.stderr
    );
}

fn label_file(dir: &Path, names: &[&str]) -> std::path::PathBuf {
    let path = dir.join(format!("labels{}.txt", names.len()));
    let text: String = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("n0{i:07} {n}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn predict_inspect_and_verify_name_outputs_from_a_label_file_of_the_right_length() {
    let t = TempDir::new("own-labels");
    let model = t.path().join("mine.onnx");
    small_rgb_classifier(&model);
    write_images(&t.path().join("photos"), 3);
    let names = [
        "tench",
        "goldfish",
        "great white shark",
        "tiger shark",
        "hammerhead",
    ];
    let labels = label_file(t.path(), &names);
    let photo = t.path().join("photos/img01.png");
    let predict = zoo(
        &[
            "predict",
            s(&model),
            "--labels",
            s(&labels),
            s(&photo),
            "--json",
        ],
        t.path(),
    );
    assert_eq!(predict.code, 0, "{}", predict.stderr);
    let top = &predict.json()["predictions"][0]["top"];
    let label = top[0]["label"].as_str().unwrap();
    assert_eq!(label, names[top[0]["index"].as_u64().unwrap() as usize]);
    assert!(predict.json()["labels_from"]
        .as_str()
        .unwrap()
        .ends_with("labels5.txt"));
    // Text output prints the names.
    let text = zoo(
        &["predict", s(&model), "--labels", s(&labels), s(&photo)],
        t.path(),
    );
    assert!(
        names.iter().any(|n| text.stdout.contains(n)),
        "{}",
        text.stdout
    );

    let short = label_file(t.path(), &names[..4]);
    let wrong = zoo(
        &["predict", s(&model), "--labels", s(&short), s(&photo)],
        t.path(),
    );
    assert_eq!(wrong.code, 2);
    assert!(
        wrong
            .stderr
            .contains("has 4 names but the model has 5 outputs"),
        "{}",
        wrong.stderr
    );
    let inspect = zoo(
        &["inspect", s(&model), "--labels", s(&labels), "--json"],
        t.path(),
    );
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    assert_eq!(inspect.json()["labels"][4], "hammerhead");
    let photos = t.path().join("photos");
    let verify = zoo(
        &[
            "verify",
            s(&model),
            "--images",
            s(&photos),
            "--labels",
            s(&labels),
            "--json",
        ],
        t.path(),
    );
    assert_eq!(verify.code, 0, "{}", verify.stderr);
    let per_class = verify.json()["per_class"].as_array().unwrap().clone();
    let counted: u64 = per_class
        .iter()
        .map(|c| c["samples"].as_u64().unwrap())
        .sum();
    assert_eq!(
        counted, 3,
        "every photo is counted under the class zoo predicts"
    );
    assert!(per_class
        .iter()
        .all(|c| names.contains(&c["class"].as_str().unwrap())));
}

#[test]
fn a_user_card_names_your_file_for_every_command_and_refuses_it_once_changed() {
    let t = TempDir::new("own-card");
    let model = t.path().join("mine.onnx");
    small_rgb_classifier(&model);
    train_val(t.path());
    let names = ["a", "b", "c", "d", "e"];
    let labels = label_file(t.path(), &names);
    let new = zoo(
        &[
            "card",
            "new",
            s(&model),
            "--name",
            "mynet",
            "--preprocessing",
            "caffe",
            "--labels",
            s(&labels),
            "--head",
            "fc7",
            "--json",
        ],
        t.path(),
    );
    assert_eq!(new.code, 0, "{}", new.stderr);
    let card_file = t.path().join("zoo-home/cards/mynet.toml");
    assert_eq!(new.json()["card_file"], s(&card_file));
    let text = std::fs::read_to_string(&card_file).unwrap();
    assert!(
        text.contains("local = ") && text.contains("color = \"bgr\""),
        "{text}"
    );

    let list = zoo(&["list", "--json"], t.path());
    let rows = list.json();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "mynet")
        .expect("zoo list shows the user card")
        .clone();
    assert_eq!(row["user_card"], s(&card_file));
    assert_eq!(row["cached"], true);
    let listed = zoo(&["list"], t.path());
    assert!(listed.stdout.contains("Your cards"), "{}", listed.stdout);

    let inspect = zoo(&["inspect", "mynet", "--json"], t.path());
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    let profile = &inspect.json()["profile"];
    assert_eq!(profile["source"]["card"], "mynet");
    assert_eq!(profile["preprocessing"]["color"], "bgr");
    assert_eq!(profile["head"], "fc7");
    let photo = t.path().join("val/cat/img00.png");
    let predict = zoo(&["predict", "mynet", s(&photo), "--json"], t.path());
    assert_eq!(predict.code, 0, "{}", predict.stderr);
    assert!(names.contains(
        &predict.json()["predictions"][0]["top"][0]["label"]
            .as_str()
            .unwrap()
    ));
    let train = t.path().join("train");
    let run_dir = t.path().join("run");
    let ft = zoo(
        &[
            "finetune",
            "mynet",
            "--data",
            s(&train),
            "--epochs",
            "1",
            "--out",
            s(&run_dir),
        ],
        t.path(),
    );
    assert_eq!(ft.code, 0, "{}", ft.stderr);
    assert!(ft.stderr.contains("user card `mynet`"), "{}", ft.stderr);
    assert_eq!(
        read_json(&run_dir.join("config.json"))["profile"]["card"],
        "mynet"
    );

    // Refusals: a built-in name, a name that is a path, an existing card without --replace.
    for (name, expect) in [
        ("alexnet", "built-in"),
        ("../escape", "not a card name"),
        ("mynet", "--replace"),
    ] {
        let r = zoo(&["card", "new", s(&model), "--name", name], t.path());
        assert_eq!(r.code, 2, "{name}");
        assert!(r.stderr.contains(expect), "{name}: {}", r.stderr);
    }
    assert!(!t.path().join("zoo-home/escape.toml").exists());

    // The file changes: every use of the card is refused with both checksums.
    let sha = |bytes: &[u8]| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    };
    let mut bytes = std::fs::read(&model).unwrap();
    let old = sha(&bytes);
    assert!(text.contains(&old), "the card pins the file's sha256");
    bytes.extend_from_slice(b"\n");
    std::fs::write(&model, &bytes).unwrap();
    for args in [&["inspect", "mynet"][..], &["predict", "mynet", s(&photo)]] {
        let changed = zoo(args, t.path());
        assert_eq!(changed.code, 2, "{args:?}");
        assert!(
            changed.stderr.contains(&old) && changed.stderr.contains(&sha(&bytes)),
            "{}",
            changed.stderr
        );
    }
}
