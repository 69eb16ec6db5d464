//! ONNX Runtime as a second reference engine, loaded at run time from the shared library that
//! the PyPI `onnxruntime` wheel ships. Optional: when no library is found, callers say so and
//! carry on with tract.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;

/// Where ONNX Runtime's library is: `ORT_DYLIB_PATH`, else the `onnxruntime` Python package's
/// `capi/` folder, if Python and the package are installed.
pub fn find_onnxruntime() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let capi = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("capi");
    let mut libs: Vec<PathBuf> = std::fs::read_dir(&capi)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("libonnxruntime.so")
                    || n.starts_with("libonnxruntime.") && n.ends_with(".dylib")
            })
        })
        .collect();
    libs.sort();
    libs.pop()
}

/// ONNX Runtime can be initialised once per process.
fn environment() -> Result<&'static Environment, String> {
    static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let lib = find_onnxruntime().ok_or_else(|| {
            "ONNX Runtime library not found (set ORT_DYLIB_PATH, or `pip install onnxruntime`)"
                .to_string()
        })?;
        ort::init_from(&lib)
            .map_err(|e| format!("cannot load {}: {e}", lib.display()))?
            .with_name("zoo")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

pub struct OrtEngine {
    session: Mutex<Session>,
    chw: [usize; 3],
    /// The file's input has a symbolic batch axis.
    any_batch: bool,
    /// The file takes channels last.
    nhwc: bool,
}

impl OrtEngine {
    /// Errors say why ONNX Runtime is unavailable; that is not a parity failure.
    pub fn from_bytes(bytes: &[u8], chw: [usize; 3]) -> Result<Self, String> {
        let env = environment()?;
        let session = Session::builder(env)
            .and_then(|mut b| b.commit_from_memory(bytes))
            .map_err(|e| format!("ONNX Runtime could not load the model: {e}"))?;
        let any_batch = session.inputs().first().is_some_and(|i| {
            i.dtype()
                .tensor_shape()
                .is_some_and(|s| s.first().is_some_and(|&d| d < 0))
        });
        let nhwc = session.inputs().first().is_some_and(|i| {
            i.dtype().tensor_shape().is_some_and(|s| {
                let dims: Vec<Option<i64>> = s.iter().map(|&d| (d >= 0).then_some(d)).collect();
                crate::layout::is_nhwc(&dims, chw)
            })
        });
        Ok(Self {
            session: Mutex::new(session),
            chw,
            any_batch,
            nhwc,
        })
    }

    pub fn from_path(path: &Path, chw: [usize; 3]) -> Result<Self, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_bytes(&bytes, chw)
    }

    /// The batch size a request for `batch` really runs at (1 when the file fixes it).
    pub fn effective_batch(&self, batch: usize) -> usize {
        crate::verify::batch_for(self.any_batch, batch)
    }

    /// Runs images `batch` at a time.
    pub fn run_batch(&self, images: &[f32], batch: usize) -> Result<Vec<Vec<f32>>, String> {
        let [c, h, w] = self.chw;
        let mut session = self
            .session
            .lock()
            .map_err(|_| "ONNX Runtime session poisoned".to_string())?;
        let mut rows = Vec::new();
        for chunk in images.chunks(c * h * w * self.effective_batch(batch)) {
            let n = chunk.len() / (c * h * w);
            let input = if self.nhwc {
                Tensor::from_array(([n, h, w, c], crate::layout::to_nhwc(chunk, self.chw)))
            } else {
                Tensor::from_array(([n, c, h, w], chunk.to_vec()))
            }
            .map_err(|e| e.to_string())?;
            let outputs = session
                .run(ort::inputs![input])
                .map_err(|e| format!("ONNX Runtime failed: {e}"))?;
            let (_, values) = outputs[0]
                .try_extract_tensor::<f32>()
                .map_err(|e| e.to_string())?;
            let per = values.len() / n.max(1);
            rows.extend(values.chunks(per.max(1)).map(<[f32]>::to_vec));
        }
        Ok(rows)
    }
}

impl crate::Engine for OrtEngine {
    fn name(&self) -> &str {
        "ort"
    }

    fn effective_batch(&self, batch: usize) -> usize {
        OrtEngine::effective_batch(self, batch)
    }

    fn run(&self, images: &[f32], batch: usize) -> Result<Vec<Vec<f32>>, String> {
        self.run_batch(images, batch)
    }
}
