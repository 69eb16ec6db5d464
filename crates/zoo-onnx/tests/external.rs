//! Weights kept beside the model (`model.onnx` + `model.onnx.data`, the dynamo exporter's
//! default): read in when the location is a file inside the model's folder and the range
//! fits; every way out of the folder, past the file or against the shape is refused.

use std::path::{Path, PathBuf};

use prost::Message;
use zoo_onnx::builder::GraphBuilder;
use zoo_onnx::pb::{ModelProto, StringStringEntryProto};
use zoo_onnx::OnnxModel;

/// A fresh folder under the system's temp dir for one test.
fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zoo-external-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Gemm classifier whose weight `W` ([4, 3]) lives at `location`, `offset` bytes in.
fn model(location: &str, offset: u64, length: Option<u64>) -> ModelProto {
    let mut b = GraphBuilder::new("x", &[Some(1), Some(3), Some(1), Some(1)]);
    b.init_f32("W", &[4, 3], vec![0.0; 12]);
    b.node("flat", "Flatten", &["x"], &["f"], vec![]);
    b.node(
        "fc",
        "Gemm",
        &["f", "W"],
        &["y"],
        vec![("transB", zoo_onnx::builder::Attr::Int(1))],
    );
    b.output("y", &[Some(1), Some(4)]);
    let mut m = b.build(13);
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    w.raw_data.clear();
    w.float_data.clear();
    w.data_location = Some(1);
    let entry = |k: &str, v: String| StringStringEntryProto {
        key: k.into(),
        value: v,
    };
    w.external_data = vec![
        entry("location", location.into()),
        entry("offset", offset.to_string()),
    ];
    if let Some(len) = length {
        w.external_data.push(entry("length", len.to_string()));
    }
    m
}

fn weights_bytes() -> Vec<u8> {
    (0..12)
        .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
        .collect()
}

fn write(dir: &Path, m: &ModelProto) -> PathBuf {
    let path = dir.join("model.onnx");
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    path
}

fn error(path: &Path) -> String {
    OnnxModel::load(path)
        .expect_err("must be refused")
        .to_string()
}

#[test]
fn weights_beside_the_model_are_read_in_at_their_offset() {
    let dir = folder("ok");
    let mut data = vec![7u8; 16];
    data.extend(weights_bytes());
    std::fs::write(dir.join("model.onnx.data"), &data).unwrap();
    let path = write(&dir, &model("model.onnx.data", 16, Some(48)));
    let m = OnnxModel::load(&path).unwrap();
    let w = m.graph.constants.get("W").expect("W was read in");
    let expected: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
    assert_eq!(w.as_f32().unwrap(), &expected[..]);
    // Without `length` the shape says how much to read.
    let path = write(&dir, &model("./model.onnx.data", 16, None));
    assert!(OnnxModel::load(&path).is_ok());
    // From bytes there is no folder to look in: the error says how to load it.
    let bytes = model("model.onnx.data", 16, None).encode_to_vec();
    let e = OnnxModel::from_bytes(bytes).unwrap_err().to_string();
    assert!(e.contains("load the model from its path"), "{e}");
}

#[test]
fn locations_that_leave_the_folder_are_refused() {
    let dir = folder("escape");
    let outside = dir.join("outside.data");
    std::fs::write(&outside, weights_bytes()).unwrap();
    let inner = dir.join("model");
    std::fs::create_dir_all(&inner).unwrap();
    for location in [
        "../outside.data",
        outside.to_str().unwrap(),
        "sub/../../outside.data",
    ] {
        let e = error(&write(&inner, &model(location, 0, None)));
        assert!(
            e.contains("not a plain name inside the model's folder"),
            "{location}: {e}"
        );
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&outside, inner.join("linked.data")).unwrap();
        let e = error(&write(&inner, &model("linked.data", 0, None)));
        assert!(e.contains("leads out of the model's folder"), "{e}");
    }
}

#[test]
fn ranges_that_do_not_fit_are_refused_before_reading() {
    let dir = folder("range");
    std::fs::write(dir.join("w.data"), weights_bytes()).unwrap();
    let e = error(&write(&dir, &model("w.data", 8, None)));
    assert!(e.contains("past the end"), "{e}");
    let e = error(&write(&dir, &model("w.data", 0, Some(40))));
    assert!(e.contains("holds 40 bytes but its shape needs 48"), "{e}");
    let e = error(&write(&dir, &model("w.data", u64::MAX - 4, None)));
    assert!(e.contains("past the end"), "{e}");
    let e = error(&write(&dir, &model("missing.data", 0, None)));
    assert!(e.contains("keep the `.data` file"), "{e}");
    std::fs::create_dir_all(dir.join("folder.data")).unwrap();
    let e = error(&write(&dir, &model("folder.data", 0, None)));
    assert!(e.contains("not a regular file"), "{e}");
}
