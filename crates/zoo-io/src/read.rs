//! Reading small files a user names (label files, cards, manifests) without trusting them:
//! only regular files are opened (a FIFO blocks its reader forever, `/dev/zero` never ends,
//! and both report a size of 0), and no more than the limit is read even if the file grows.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The bytes of `path`, a regular file (links followed) of at most `max_bytes`.
pub fn read_limited(path: &Path, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a folder"
        } else {
            "not a regular file (a FIFO, device or socket)"
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is {what}; zoo reads only regular files", path.display()),
        ));
    }
    let too_big = |size: u64| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} is {size} bytes or more, over the {max_bytes}-byte limit for it",
                path.display()
            ),
        )
    };
    if meta.len() > max_bytes {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)?
        .take(max_bytes + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`read_limited`] as UTF-8 text.
pub fn read_text_limited(path: &Path, max_bytes: u64) -> std::io::Result<String> {
    String::from_utf8(read_limited(path, max_bytes)?).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not UTF-8 text", path.display()),
        )
    })
}

/// Opens `path` for reading when it is a regular file itself, not a link to one: for the files
/// zoo writes into a run and reads back later (a link planted there would send the read, or
/// a later rebuild's removal, elsewhere).
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    let refused = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} is {what}; zoo reads only regular files here",
                path.display()
            ),
        )
    };
    let before = std::fs::symlink_metadata(path)?;
    if before.file_type().is_symlink() {
        return Err(refused("a symbolic link"));
    }
    if !before.is_file() {
        return Err(refused("not a regular file"));
    }
    let file = std::fs::File::open(path)?;
    let opened = file.metadata()?;
    // Replaced between the check and the open.
    if !opened.is_file() || opened.ino() != before.ino() || opened.dev() != before.dev() {
        return Err(refused("changing while it is opened"));
    }
    Ok(file)
}
