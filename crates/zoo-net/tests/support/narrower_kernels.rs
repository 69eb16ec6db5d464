//! Runs a test binary's every test again for each kernel copy narrower than the one this CPU
//! picks (`ZOO_CPU_KERNELS=baseline`, and `avx2` on an AVX-512 CPU), so the copies other
//! machines run are tested here too.

use zoo_net::simd::{cpu_kernels, CpuKernels, KERNELS_VARIABLE};

/// Call from a test named `this_test`: in a child process it checks the cap was obeyed; in the
/// parent it runs the binary once per narrower copy and asserts each run passed.
pub fn run_every_narrower_copy(this_test: &str) {
    if let Ok(cap) = std::env::var(KERNELS_VARIABLE) {
        let capped = match cap.as_str() {
            "baseline" => cpu_kernels() == CpuKernels::Baseline,
            _ => cpu_kernels() == CpuKernels::Avx2,
        };
        assert!(capped, "{KERNELS_VARIABLE}={cap} is obeyed");
        return;
    }
    let narrower: &[&str] = match cpu_kernels() {
        CpuKernels::Avx512 => &["baseline", "avx2"],
        CpuKernels::Avx2 => &["baseline"],
        CpuKernels::Baseline => &[],
    };
    for cap in narrower {
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .env(KERNELS_VARIABLE, cap)
            .args(["--test-threads", "2"])
            .output()
            .expect("the test binary runs again");
        let report = String::from_utf8_lossy(&child.stdout);
        assert!(child.status.success(), "{cap} kernels: {report}");
        assert!(
            report.contains(this_test),
            "the child ran every test: {report}"
        );
    }
}
