//! `--device auto|cpu|cuda`: which backend a command runs on, and why.
//!
//! CUDA is probed before burn touches it (driver library, `cuInit`, a device, NVRTC), so a
//! missing piece is one sentence instead of a panic deep inside cubecl.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when a usable GPU is there, else CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            other => Err(format!("--device must be auto, cpu or cuda, not `{other}`")),
        }
    }
}

/// Where work runs once `auto` is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda,
}

impl Device {
    /// The backend, as recorded in `config.json`.
    pub fn backend_name(self) -> &'static str {
        match self {
            Device::Cpu => "flex (CPU)",
            #[cfg(feature = "cuda")]
            Device::Cuda => "cuda (burn-cuda, GPU 0)",
        }
    }
}

/// Decides the device; the note says what `auto` chose and why.
pub fn resolve(choice: DeviceChoice) -> Result<(Device, Option<String>), String> {
    match choice {
        DeviceChoice::Cpu => Ok((Device::Cpu, None)),
        DeviceChoice::Cuda => cuda_usable().map(|()| (cuda_device(), None)),
        DeviceChoice::Auto => Ok(match cuda_usable() {
            Ok(()) => (cuda_device(), Some("device: CUDA GPU 0 (auto)".into())),
            Err(why) => (Device::Cpu, Some(format!("device: CPU (auto; {why})"))),
        }),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Device {
    Device::Cuda
}

/// Never called: `cuda_usable` always fails without the feature.
#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Device {
    Device::Cpu
}

/// burn's CUDA backend.
#[cfg(feature = "cuda")]
pub type CudaBackend = burn_cuda::Cuda<f32, i32>;

/// Runs `work` on GPU 0. cubecl reports some failures (a kernel NVRTC cannot compile, out of
/// memory) by panicking; they come back as errors, without a backtrace on the terminal.
#[cfg(feature = "cuda")]
pub fn on_cuda<R>(
    work: impl FnOnce(burn_cuda::CudaDevice) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        work(burn_cuda::CudaDevice::new(0))
    }));
    std::panic::set_hook(quiet);
    result.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown failure".into());
        Err(anyhow::anyhow!("CUDA failed: {why}"))
    })
}

/// Why CUDA cannot be used, in one sentence; `Ok` when it can.
#[cfg(not(feature = "cuda"))]
pub fn cuda_usable() -> Result<(), String> {
    Err("this zoo was built without CUDA support (rebuild with `--features cuda`)".into())
}

#[cfg(feature = "cuda")]
pub fn cuda_usable() -> Result<(), String> {
    probe::driver_and_device()?;
    probe::nvrtc()
}

#[cfg(feature = "cuda")]
mod probe {
    use std::ffi::{c_int, c_void, CStr, CString};

    fn open(names: &[&str]) -> Option<*mut c_void> {
        names.iter().find_map(|n| {
            let c = CString::new(*n).ok()?;
            // SAFETY: dlopen with a valid C string; the handle is kept open for the process.
            let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            (!h.is_null()).then_some(h)
        })
    }

    fn symbol(lib: *mut c_void, name: &CStr) -> Option<*mut c_void> {
        // SAFETY: looking up a symbol in a handle returned by dlopen.
        let s = unsafe { libc::dlsym(lib, name.as_ptr()) };
        (!s.is_null()).then_some(s)
    }

    pub fn driver_and_device() -> Result<(), String> {
        let lib = open(&["libcuda.so.1", "libcuda.so"])
            .ok_or("no CUDA driver (libcuda.so.1 not found: is the NVIDIA driver installed?)")?;
        let init = symbol(lib, c"cuInit").ok_or("the CUDA driver library has no cuInit")?;
        let count = symbol(lib, c"cuDeviceGetCount")
            .ok_or("the CUDA driver library has no cuDeviceGetCount")?;
        // SAFETY: the CUDA driver API signatures: CUresult cuInit(unsigned int) and
        // CUresult cuDeviceGetCount(int*).
        type CuInit = extern "C" fn(u32) -> c_int;
        type CuDeviceGetCount = extern "C" fn(*mut c_int) -> c_int;
        let (init, count) = unsafe {
            (
                std::mem::transmute::<*mut c_void, CuInit>(init),
                std::mem::transmute::<*mut c_void, CuDeviceGetCount>(count),
            )
        };
        let rc = init(0);
        if rc != 0 {
            return Err(format!(
                "the CUDA driver did not initialise (cuInit error {rc}: no usable GPU or a driver mismatch)"
            ));
        }
        let mut n: c_int = 0;
        let rc = count(&mut n);
        if rc != 0 || n == 0 {
            return Err("the CUDA driver found no GPU".into());
        }
        Ok(())
    }

    pub fn nvrtc() -> Result<(), String> {
        let names = [
            "libnvrtc.so",
            "libnvrtc.so.13",
            "libnvrtc.so.12",
            "libnvrtc.so.11.2",
        ];
        open(&names).map(|_| ()).ok_or_else(|| {
            "NVRTC (libnvrtc.so, the CUDA runtime compiler) not found: install the CUDA toolkit or add its lib64 to LD_LIBRARY_PATH".into()
        })
    }
}
