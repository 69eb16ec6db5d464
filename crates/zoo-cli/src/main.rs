//! The `zoo` command line: parses arguments, calls `zoo-app`, prints reports.
//! Exit status: 0 success, 1 a check failed (e.g. parity beyond tolerance), 2 an error.
//!
//! `cli` is the command tree, `commands/` holds each command's arguments and its one call into
//! `zoo-app`, `args` the argument groups commands share, `ui` everything that prints.

mod args;
mod cli;
mod commands;
mod ui;

use std::process::ExitCode;

use clap::Parser;

/// Keeps freed memory in the process instead of returning it to the OS. Training frees and
/// re-allocates the same large buffers (gradients, activations, 150 MB for AlexNet's fc6) every
/// step; with glibc's defaults each one comes back as fresh pages, and the page faults cost
/// more than the arithmetic (measured: 8.1 s vs 3.4 s per cached AlexNet epoch on 2 cores).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator tuning; called before any threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn main() -> ExitCode {
    keep_freed_memory();
    ui::quiet_panics();
    let cli = cli::Cli::parse();
    ui::exit_status(|| cli.command.run())
}
