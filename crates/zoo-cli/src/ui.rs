//! Everything the command line prints: reports (text or JSON), warnings, the download bar,
//! and the training progress bar with its MATLAB-style table.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};

use zoo_app::train::{Reporter, Summary, ValidationRow};

pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints a report as one JSON object, or as its text rendering.
pub fn emit<T: serde::Serialize>(
    json: bool,
    report: &T,
    render: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        print_json(report)
    } else {
        // The last guard: names in reports come from files and model metadata.
        print!("{}", zoo_io::printable_text(&render(report)));
        Ok(())
    }
}

pub fn warn(messages: &[String]) {
    for m in messages {
        eprintln!("warning: {}", zoo_io::printable_text(m));
    }
}

/// The recipe line, on stderr (stdout stays the report).
pub fn note_recipe(json: bool, line: &str) {
    if !json && !line.is_empty() {
        eprintln!("{}", zoo_io::printable_text(line));
    }
}

/// Exit status 1 when a check failed.
pub fn passed(pass: bool) -> ExitCode {
    if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// What was downloaded and checked, on stderr.
pub fn describe_fetch(report: &zoo_app::fetch::FetchReport) {
    let f = &report.fetched;
    match f.status {
        zoo_app::fetch::FetchStatus::Cached => eprintln!(
            "{}: already in the cache, sha256 verified ({}); nothing downloaded",
            report.model, f.sha256
        ),
        zoo_app::fetch::FetchStatus::Downloaded => eprintln!(
            "{}: downloaded {} bytes in {:.1} s, sha256 verified ({})",
            report.model, f.size, f.seconds, f.sha256
        ),
    }
    if let Some(labels) = &f.labels {
        eprintln!(
            "labels: {}",
            zoo_io::printable(&labels.display().to_string())
        );
    }
    if let Some(c) = &report.import_check {
        eprintln!(
            "import check: zoo vs tract on {} random inputs, max_rel_diff {:.2e}, top-1 agreement {:.2}: {}",
            c.samples,
            c.max_rel_diff,
            c.top1_agreement,
            if c.pass { "pass" } else { "FAIL" }
        );
    }
}

/// Each engine's agreement at batch 1 and 7, on stderr.
pub fn describe_export(report: &zoo_app::export::ExportReport) {
    for (batch, r) in [(1, &report.batch_1), (7, &report.batch_7)] {
        for e in &r.engines {
            eprintln!(
                "batch {batch}, {:<5}: max_abs_diff {:.2e}, max_rel_diff {:.2e}, top-1 agreement {:.4} over {} validation images: {}",
                e.name,
                e.agreement.max_abs_diff,
                e.agreement.max_rel_diff,
                e.agreement.top1_agreement,
                e.agreement.samples,
                if e.pass { "pass" } else { "FAIL" }
            );
        }
    }
}

/// A download progress bar on a terminal.
pub fn progress_bar(quiet: bool) -> Option<zoo_app::fetch::ProgressFn> {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(Arc::new(move |done, total| {
        if total > 0 {
            bar.set_length(total);
        }
        bar.set_position(done);
        if total > 0 && done >= total {
            bar.finish_and_clear();
        }
    }))
}

/// Progress bar plus the MATLAB-style table, on stderr.
pub struct CliReporter {
    bar: indicatif::ProgressBar,
    header: Once,
}

impl CliReporter {
    pub fn new(quiet: bool) -> Self {
        let bar = if quiet {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(0)
        };
        bar.set_draw_target(if quiet {
            indicatif::ProgressDrawTarget::hidden()
        } else {
            indicatif::ProgressDrawTarget::stderr()
        });
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} iteration {pos}/{len} {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Self {
            bar,
            header: Once::new(),
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Reporter for CliReporter {
    fn info(&self, message: &str) {
        self.bar
            .suspend(|| eprintln!("{}", zoo_io::printable_text(message)));
    }

    fn warn(&self, message: &str) {
        self.bar
            .suspend(|| eprintln!("warning: {}", zoo_io::printable_text(message)));
    }

    fn row(&self, r: &ValidationRow) {
        self.bar.suspend(|| {
            self.header.call_once(|| {
                eprintln!("| epoch | iteration | elapsed (s) | mini-batch loss | mini-batch acc | val loss | val acc |    lr    |");
                eprintln!("|-------|-----------|-------------|-----------------|----------------|----------|---------|----------|");
            });
            eprintln!(
                "| {:>5} | {:>9} | {:>11.1} | {:>15.4} | {:>13.2}% | {:>8.4} | {:>6.2}% | {:>8.2e} |",
                r.epoch,
                r.iteration,
                r.elapsed_s,
                r.train_loss,
                100.0 * r.train_accuracy,
                r.val_loss,
                100.0 * r.val_accuracy,
                r.lr
            );
        });
    }

    fn progress(&self, iteration: usize, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(iteration as u64);
    }
}

/// The one line a finished or interrupted run ends with.
fn summary_line(s: &Summary) -> String {
    let audit = s.freeze_audit.frozen_params_unchanged;
    let mut line = if s.validations == 0 {
        format!(
            "no validation ran (stopped at iteration {})",
            s.best_iteration
        )
    } else {
        format!(
            "best validation accuracy {:.2}% (epoch {}, iteration {})",
            100.0 * s.best_val_accuracy,
            s.best_epoch,
            s.best_iteration
        )
    };
    if s.images_per_s > 0.0 {
        line += &format!("; {:.1} images/s", s.images_per_s);
    }
    line += &format!("; frozen parameters unchanged: {audit}");
    if s.resumable {
        line += &format!(
            "\ninterrupted: continue with `zoo finetune --resume {}`",
            s.run_dir.display()
        );
    }
    line
}

/// Runs a training job with Ctrl-C handling, the progress table, and the summary printout.
pub fn run_training(
    json: bool,
    job: impl FnOnce(Arc<AtomicBool>, &CliReporter) -> anyhow::Result<Summary>,
) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second Ctrl-C while saving still exits at once.
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    }
    let reporter = CliReporter::new(json);
    let summary = job(stop, &reporter)?;
    reporter.finish();
    if json {
        print_json(&summary)?;
    } else {
        eprintln!("{}", zoo_io::printable_text(&summary_line(&summary)));
        println!("{}", summary.run_dir.display());
    }
    Ok(if summary.interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// Where the last panic happened, for the one-line error: the default hook's text (thread
/// name, backtrace hint) never reaches the user, also for panics that a library contains and
/// turns into an error itself. `RUST_BACKTRACE` set keeps the default hook for debugging.
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

pub fn quiet_panics() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(at);
        }
    }));
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown cause".into())
}

/// Runs a command: its exit status, or 2 with one line for an error or a panic.
pub fn exit_status(command: impl FnOnce() -> anyhow::Result<ExitCode>) -> ExitCode {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(command)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("error: {}", zoo_io::printable_text(&format!("{e:#}")));
            ExitCode::from(2)
        }
        Err(panic) => {
            let at = LAST_PANIC
                .lock()
                .ok()
                .and_then(|l| l.clone())
                .unwrap_or_default();
            eprintln!(
                "error: internal error (a bug in zoo or a library it uses): {}{at}; please report it with the command line",
                panic_message(panic.as_ref())
            );
            ExitCode::from(2)
        }
    }
}
