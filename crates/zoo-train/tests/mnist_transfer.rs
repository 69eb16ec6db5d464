//! Transfer on real data (needs ../shared): LeNet-5 trained with zoo on MNIST digits 0-4, then
//! finetuned (new head, every layer trained) on 50 images per digit of 5-9, against the same
//! architecture trained from scratch on those 250 images. Both are validated on held-out 5-9.

use std::path::{Path, PathBuf};

use zoo_train::{
    finetune, train_from_scratch, BaseModel, FinetuneOptions, Reporter, TrainProfile, ValidationRow,
};

struct Log;

impl Reporter for Log {
    fn info(&self, m: &str) {
        eprintln!("{m}");
    }
    fn warn(&self, m: &str) {
        eprintln!("warning: {m}");
    }
    fn row(&self, r: &ValidationRow) {
        eprintln!(
            "epoch {} iteration {} loss {:.4} val acc {:.4}",
            r.epoch, r.iteration, r.train_loss, r.val_accuracy
        );
    }
    fn progress(&self, _: usize, _: usize) {}
}

fn shared(path: &str) -> PathBuf {
    std::env::var_os("ZOO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join(path)
}

/// Writes MNIST test digits as PNGs plus a manifest. `train_per_digit`: how many of each digit
/// get split=train (the rest split=val); `None` lets the trainer split.
fn write_digits(root: &Path, digits: &[usize], train_per_digit: Option<usize>) -> PathBuf {
    let dataset = zoo_data::open(&shared("data/mnist")).unwrap();
    let mut seen = [0usize; 10];
    let mut csv = String::from("path,label,split\n");
    for (i, s) in dataset.samples.iter().enumerate() {
        let digit: usize = dataset.classes[s.label].parse().unwrap();
        if !digits.contains(&digit) {
            continue;
        }
        let rel = format!("{digit}/{i:05}.png");
        std::fs::create_dir_all(root.join(digit.to_string())).unwrap();
        s.image.load().unwrap().save(root.join(&rel)).unwrap();
        let split = match train_per_digit {
            Some(k) if seen[digit] < k => "train",
            Some(_) => "val",
            None => "",
        };
        seen[digit] += 1;
        csv += &format!("{rel},{digit},{split}\n");
    }
    let manifest = root.join("manifest.csv");
    std::fs::write(&manifest, csv).unwrap();
    manifest
}

/// The pretrained run's weights, finetuned with its own recorded plan (from the metadata
/// `zoo train` writes: convs and batch norms frozen, head fc2).
fn pretrained_profile() -> TrainProfile {
    TrainProfile {
        name: "lenet5-0to4".into(),
        preprocessing_from: "test".into(),
        card: None,
        preprocessing: zoo_cards::find("lenet").unwrap().preprocessing,
        freeze: ["conv1", "bn1", "conv2", "bn2", "conv3", "bn3"]
            .map(String::from)
            .to_vec(),
        head: "fc2".into(),
    }
}

#[test]
#[ignore = "needs ../shared (MNIST)"]
fn pretrained_on_0_to_4_transfers_to_5_to_9_and_beats_scratch() {
    let t = std::env::temp_dir().join(format!("zoo-mnist-transfer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&t);
    std::fs::create_dir_all(&t).unwrap();

    // 1. `zoo train lenet5` on digits 0-4 (every layer trains, batch-norm statistics too).
    let low = write_digits(&t.join("low"), &[0, 1, 2, 3, 4], None);
    let mut o = FinetuneOptions::new(low, 5);
    o.epochs = 4;
    o.batch_size = 64;
    o.lr = 0.01;
    o.head_lr_factor = 1.0;
    o.out = Some(t.join("pretrain"));
    let pre = train_from_scratch(&zoo_train::ArchSpec::named("lenet5"), &o, None, &Log).unwrap();
    eprintln!(
        "pretraining on 0-4: validation accuracy {:.4}",
        pre.best_val_accuracy
    );

    // 2. `zoo finetune` on 50 images per digit of 5-9, validated on the rest of 5-9: the
    // pretrained weights with a new 5-way head (fc2, 10x the learning rate), every layer
    // trained (--unfreeze-all). Measured alternative: convs frozen, 93.9 %.
    let high = write_digits(&t.join("high"), &[5, 6, 7, 8, 9], Some(50));
    let same = |out: &str| {
        let mut o = FinetuneOptions::new(high.clone(), 5);
        o.epochs = 30;
        o.batch_size = 25;
        o.lr = 0.01;
        o.out = Some(t.join(out));
        o
    };
    let pretrained = BaseModel::File(t.join("pretrain/best.onnx"));
    let mut o = same("transfer");
    o.freeze = zoo_train::FreezeChoice::Nothing;
    let transfer = finetune(&pretrained, &pretrained_profile(), &o, None, &Log).unwrap();

    // 3. The same architecture from scratch on the same 250 images, one learning rate for all
    // layers (the stronger of the two scratch settings measured: 94.3 % vs 94.0 % with a 10x
    // head).
    let mut o = same("scratch");
    o.head_lr_factor = 1.0;
    let scratch =
        train_from_scratch(&zoo_train::ArchSpec::named("lenet5"), &o, None, &Log).unwrap();

    println!(
        "MNIST transfer (lenet5): pretrain(0-4) {:.4}; finetune(5-9, 250 images, all layers) {:.4}; scratch(5-9, 250 images) {:.4}; on {} held-out digits 5-9",
        pre.best_val_accuracy, transfer.best_val_accuracy, scratch.best_val_accuracy, transfer.val_images
    );
    assert_eq!(transfer.train_images, 250);
    assert_eq!(scratch.val_images, transfer.val_images);
    assert!(
        transfer.best_val_accuracy >= 0.90,
        "transfer reached {:.4}",
        transfer.best_val_accuracy
    );
    assert!(
        transfer.best_val_accuracy > scratch.best_val_accuracy,
        "transfer {:.4} does not beat scratch {:.4}",
        transfer.best_val_accuracy,
        scratch.best_val_accuracy
    );
    std::fs::remove_dir_all(&t).unwrap();
}
