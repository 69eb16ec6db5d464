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

/// Largest image file read: a compressed file larger than what it may decode to is not an
/// image zoo can use, and the whole file is held while it decodes.
pub const MAX_FILE_BYTES: u64 = MAX_DECODE_BYTES;

/// Whether JPEG data reaches its end-of-image marker by its own structure: segments are
/// skipped by their lengths (an EXIF thumbnail's own FF D9 inside APP1 does not count), the
/// entropy-coded data after each start-of-scan is read up to the next real marker, and the
/// walk must end at FF D9. Bytes after it (camera trailers) are allowed. Not JPEG data at all
/// (a JPEG name only): true, and the decoder says what it is.
fn jpeg_reaches_its_end(data: &[u8]) -> bool {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return true;
    }
    let mut at = 2;
    loop {
        // Extraneous bytes before a marker are skipped, as libjpeg does; fill bytes too.
        let Some(offset) = data[at..].iter().position(|&b| b == 0xFF) else {
            return false;
        };
        at += offset;
        while data.get(at) == Some(&0xFF) {
            at += 1;
        }
        let Some(&marker) = data.get(at) else {
            return false;
        };
        at += 1;
        match marker {
            0xD9 => return true,
            // Stuffed zero, restart markers, TEM: no length follows.
            0x00 | 0x01 | 0xD0..=0xD7 => {}
            _ => {
                let Some(length) = data.get(at..at + 2) else {
                    return false;
                };
                let length = u16::from_be_bytes([length[0], length[1]]) as usize;
                if length < 2 {
                    return false;
                }
                at += length;
                if marker == 0xDA {
                    at = entropy_coded_end(data, at);
                }
            }
        }
        if at >= data.len() {
            return false;
        }
    }
}

/// Where a scan's entropy-coded data ends: the first FF not followed by a stuffed zero or a
/// restart marker (or the end of the data).
fn entropy_coded_end(data: &[u8], mut at: usize) -> usize {
    while at + 1 < data.len() {
        if data[at] == 0xFF && !matches!(data[at + 1], 0x00 | 0xD0..=0xD7 | 0xFF) {
            return at;
        }
        at += 1;
    }
    data.len()
}

/// Decodes an image file: format sniffed from the bytes, decode limits, EXIF orientation applied.
pub fn decode(path: &Path) -> Result<DynamicImage, DataError> {
    let unreadable = |reason: String| DataError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    // Read once (regular files only, under a cap): a FIFO would block and a device never end.
    let bytes =
        zoo_io::read_limited(path, MAX_FILE_BYTES).map_err(|e| unreadable(e.to_string()))?;
    let mut reader = ImageReader::new(std::io::Cursor::new(&bytes))
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
    if reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg_reaches_its_end(&bytes) {
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
