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
        std::fs::write(&latest, run.display().to_string())?;
    }
    Ok(())
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    zoo_onnx::write::write_atomic(&dir.join(name), bytes)
}

pub fn write_json(dir: &Path, name: &str, value: &impl serde::Serialize) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    write(dir, name, format!("{text}\n").as_bytes())
}
