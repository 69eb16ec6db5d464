//! The run directory: `runs/<model>-<timestamp>/`, with `runs/latest` pointing at it. Every file
//! is written atomically, so an interrupted run never leaves a half-written file.

use std::path::{Path, PathBuf};

pub fn timestamp() -> String {
    // "2026-11-27T07:04:14Z" -> "20261127-070414"
    let t = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    t.chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .map(|c| if c == 'T' { '-' } else { c })
        .collect()
}

/// A new directory name under `root`: `<name>-<timestamp>`, with `-2`, `-3`... when taken.
pub fn fresh(root: &Path, name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let base = root.join(format!("{safe}-{}", timestamp()));
    let mut dir = base.clone();
    let mut k = 2;
    while dir.exists() {
        dir = PathBuf::from(format!("{}-{k}", base.display()));
        k += 1;
    }
    dir
}

/// Creates the run directory (default `runs/<model>-<timestamp>`), refusing to reuse a
/// non-empty one so no earlier run is overwritten.
pub fn create(out: Option<&Path>, model: &str) -> std::io::Result<PathBuf> {
    let dir = match out {
        Some(p) => p.to_path_buf(),
        None => fresh(Path::new("runs"), model),
    };
    if dir.is_dir() && std::fs::read_dir(&dir)?.next().is_some() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not empty; choose another --out",
                dir.display()
            ),
        ));
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Points `<parent>/latest` at the run (a relative symlink, replaced atomically).
pub fn link_latest(run: &Path) -> std::io::Result<()> {
    let Some(parent) = run.parent() else {
        return Ok(());
    };
    let Some(name) = run.file_name() else {
        return Ok(());
    };
    let latest = parent.join("latest");
    let tmp = parent.join(format!(".latest-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(name, &tmp)?;
        std::fs::rename(&tmp, &latest)?;
    }
    #[cfg(not(unix))]
    {
        let _ = (name, tmp);
        zoo_io::write_atomic(&latest, run.display().to_string().as_bytes())?;
    }
    Ok(())
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    zoo_io::write_atomic(&dir.join(name), bytes)
}

pub fn write_json(dir: &Path, name: &str, value: &impl serde::Serialize) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    write(dir, name, format!("{text}\n").as_bytes())
}

/// The lock file of a run directory, while a process trains in it.
pub const LOCK: &str = ".zoo-lock";

/// A run directory held by this process (`RUN/.zoo-lock`, holding its process id, made with
/// `create_new`); the file goes when this is dropped. A second trainer of the same run (a
/// resume while the run still trains) is refused; a lock left by a process that is gone (a
/// killed run) is taken over.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

pub fn lock(dir: &Path) -> std::io::Result<RunLock> {
    use std::io::Write;
    let path = dir.join(LOCK);
    for _ in 0..3 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => {
                write!(file, "{}", std::process::id())?;
                return Ok(RunLock { path });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(&path).ok();
                match holder.and_then(|text| text.trim().parse::<u32>().ok()) {
                    Some(pid) if process_runs(pid) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::WouldBlock,
                            format!(
                                "another zoo process (pid {pid}) is training {}; wait for it to end or stop it (if none runs, delete {})",
                                dir.display(),
                                path.display()
                            ),
                        ))
                    }
                    // Left by a process that is gone (or unreadable): taken over.
                    _ => std::fs::remove_file(&path).or_else(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => Ok(()),
                        _ => Err(e),
                    })?,
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "cannot take {}: it keeps reappearing",
        path.display()
    )))
}

/// Whether process `pid` exists (on Linux, by `/proc`; elsewhere assumed, to be safe).
fn process_runs(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
