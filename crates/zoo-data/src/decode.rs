//! Decoding by content (not extension) with limits, EXIF orientation and colour conversion left
//! to preprocessing. Every failure is an error naming the file, never a panic.

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

use crate::error::DataError;

/// Largest decoded image accepted: 16384 pixels a side and 512 MiB of decoder memory.
/// A small file claiming more is a decompression bomb.
pub const MAX_SIDE: u32 = 16_384;
pub const MAX_DECODE_BYTES: u64 = 512 << 20;

/// Extensions looked at when scanning folders (content decides the actual format).
pub const EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff"];

pub fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Whether a JPEG ends with its end-of-image marker (FF D9), allowing the trailers some cameras
/// append: the marker must be within the last 64 KiB.
fn jpeg_is_complete(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 64 << 10;
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = [0u8; 2];
    if file.read_exact(&mut head).is_err() || head != [0xFF, 0xD8] {
        // Not JPEG data at all (a JPEG name only): the decoder says what it is.
        return true;
    }
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut tail = Vec::new();
    if file
        .seek(SeekFrom::Start(len.saturating_sub(TAIL)))
        .is_err()
        || file.take(TAIL).read_to_end(&mut tail).is_err()
    {
        return false;
    }
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Decodes an image file: format sniffed from the bytes, decode limits, EXIF orientation applied.
pub fn decode(path: &Path) -> Result<DynamicImage, DataError> {
    let unreadable = |reason: String| DataError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = ImageReader::open(path)
        .map_err(|e| unreadable(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| unreadable(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    if reader.format().is_none() {
        return Err(unreadable("not a recognised image format".into()));
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg_is_complete(path) {
        // The decoder fills a cut JPEG with gray and reports success.
        return Err(unreadable(
            "truncated JPEG (no end-of-image marker): the missing part would decode as gray".into(),
        ));
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| unreadable(e.to_string()))?;
    // Checked from the header, before any pixel buffer exists: not every decoder honours
    // `max_alloc` (16-bit RGBA PNGs did not).
    let (w, h) = decoder.dimensions();
    if w > MAX_SIDE || h > MAX_SIDE || decoder.total_bytes() > MAX_DECODE_BYTES {
        return Err(unreadable(format!(
            "{w}x{h} needs {} bytes to decode, over the limits ({MAX_SIDE} px a side, {MAX_DECODE_BYTES} bytes)",
            decoder.total_bytes()
        )));
    }
    let orientation = decoder.orientation().ok();
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| unreadable(e.to_string()))?;
    if let Some(o) = orientation {
        image.apply_orientation(o);
    }
    Ok(image)
}

/// Image files under `dir` (recursively, by extension), sorted for reproducibility.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut found = Vec::new();
    walk(dir, None, &mut found)?;
    found.retain(|p| is_image_name(p));
    found.sort();
    if found.is_empty() {
        return Err(DataError::NoImages(dir.to_path_buf()));
    }
    Ok(found)
}

/// Every regular file below `dir` (symlinks followed), hidden files excluded. Special files
/// (FIFOs, sockets, devices) are never listed: reading one can block forever. A folder reached
/// twice (a symlink loop, or two links to one folder) is read once; a link back up to `dir` or
/// one of its parents is not followed, nor (with `root`, the dataset's folder when `dir` is one
/// of its class folders) a link to another folder inside `root`: the images there belong to
/// other classes, and would be counted as this one.
pub(crate) fn walk(
    dir: &Path,
    root: Option<&Path>,
    out: &mut Vec<PathBuf>,
) -> Result<(), DataError> {
    let unreadable = |e: std::io::Error| DataError::Unreadable {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    };
    let top = std::fs::canonicalize(dir).map_err(unreadable)?;
    let root = root.and_then(|r| std::fs::canonicalize(r).ok());
    let mut seen = std::collections::HashSet::new();
    walk_once(dir, &Fence { top, root }, out, &mut seen)
}

/// Where a walk may go: below `top`, never to a parent of it or into `root` outside it.
struct Fence {
    top: PathBuf,
    root: Option<PathBuf>,
}

impl Fence {
    fn admits(&self, real: &Path) -> bool {
        let up = self.top.starts_with(real) && real != self.top;
        let beside = self
            .root
            .as_ref()
            .is_some_and(|root| real.starts_with(root) && !real.starts_with(&self.top));
        !up && !beside
    }
}

fn walk_once(
    dir: &Path,
    fence: &Fence,
    out: &mut Vec<PathBuf>,
    seen: &mut std::collections::HashSet<PathBuf>,
) -> Result<(), DataError> {
    let unreadable = |e: std::io::Error| DataError::Unreadable {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    };
    let real = std::fs::canonicalize(dir).map_err(unreadable)?;
    if !fence.admits(&real) || !seen.insert(real) {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(unreadable)?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
        {
            continue;
        }
        // `metadata` follows symlinks: a dangling link or a loop is simply not listed.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => walk_once(&path, fence, out, seen)?,
            Ok(m) if m.is_file() => out.push(path),
            _ => {}
        }
    }
    Ok(())
}
