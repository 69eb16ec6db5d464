//! Writing files atomically and safely (every file zoo writes goes through [`write_atomic`]): a
//! temp file created exclusively in the same folder, fsync, then rename, so a crash or a full
//! disk never leaves a truncated file under the final name, a link planted under the temp name
//! is never followed, and nothing but a regular file is ever replaced.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically and safely: a temp file beside it, created exclusively
/// (a file or symlink already under that name is never opened, so nothing planted there is
/// followed or truncated), synced, then renamed over the target. Only a regular file (or no
/// file) is replaced: a symlink, folder, device, FIFO or socket under `path` is refused with
/// `InvalidInput` and left as it was (`-o /dev/null` must not turn the device into a file).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |out| out.write_all(bytes))
}

/// [`write_atomic`] of what `write` produces, streamed to the temp file through a buffer
/// (large files, checkpoints, need not sit whole in memory first).
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    check_replaceable(path)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .ok_or_else(|| refused(path, "names a folder, not a file"))?;
    let (tmp, file) = create_temp(dir, &file_name)?;
    let mut buffered = std::io::BufWriter::with_capacity(1 << 20, file);
    let result = write(&mut buffered)
        .and_then(|()| buffered.into_inner().map_err(|e| e.into_error()))
        .and_then(|file| file.sync_all())
        .and_then(|()| check_replaceable(path))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Refuses a `path` that exists and is not a regular file (`symlink_metadata`: a link is
/// judged itself, not by what it points to).
pub fn check_replaceable(path: &Path) -> std::io::Result<()> {
    let kind = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta.file_type(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a folder"
    } else {
        special_kind(&kind)
    };
    Err(refused(
        path,
        &format!("is {what}; zoo writes only regular files (name a new or regular file)"),
    ))
}

#[cfg(unix)]
fn special_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &std::fs::FileType) -> &'static str {
    "not a regular file"
}

fn refused(path: &Path, why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{} {why}", path.display()),
    )
}

/// A fresh temp file `.NAME.tmp-PID-K` in `dir`, created with `create_new` (O_CREAT | O_EXCL:
/// an existing name, symlinks included, is an error, never opened); the next K on a clash.
fn create_temp(dir: &Path, file_name: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    let pid = std::process::id();
    let mut last = None;
    for k in 0..64 {
        let tmp = dir.join(format!(".{file_name}.tmp-{pid}-{k}"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temp name left")))
}
