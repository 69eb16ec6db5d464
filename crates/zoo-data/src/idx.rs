//! MNIST IDX files (`*-images-idx3-ubyte`, `*-labels-idx1-ubyte`), gzipped or raw.

use std::io::Read;
use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage};

use crate::error::DataError;

/// Images of an IDX file, all in memory (MNIST's test set is 7.8 MB).
#[derive(Debug)]
pub struct IdxImages {
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

impl IdxImages {
    pub fn len(&self) -> usize {
        self.pixels.len() / (self.rows * self.cols).max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn image(&self, index: usize) -> DynamicImage {
        let size = self.rows * self.cols;
        let data = self.pixels[index * size..(index + 1) * size].to_vec();
        DynamicImage::ImageLuma8(
            GrayImage::from_raw(self.cols as u32, self.rows as u32, data)
                .expect("sizes were checked"),
        )
    }
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            // MNIST's largest file is 47 MB unpacked; refuse gzip bombs.
            .take(1 << 30)
            .read_to_end(&mut out)
            .map_err(|e| idx_error(path, format!("bad gzip data: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn idx_error(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Idx {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Parses the header: magic `0 0 type ndim`, then `ndim` big-endian u32 dims; u8 data only.
fn parse(path: &Path, bytes: &[u8], ndim: u8) -> Result<(Vec<usize>, usize), DataError> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(idx_error(path, "bad magic number"));
    }
    if bytes[2] != 0x08 {
        return Err(idx_error(
            path,
            format!("element type 0x{:02x} is not unsigned bytes", bytes[2]),
        ));
    }
    if bytes[3] != ndim {
        return Err(idx_error(
            path,
            format!("{} dimensions, expected {ndim}", bytes[3]),
        ));
    }
    let header = 4 + 4 * ndim as usize;
    if bytes.len() < header {
        return Err(idx_error(path, "truncated header"));
    }
    let dims: Vec<usize> = (0..ndim as usize)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| idx_error(path, "dims overflow"))?;
    if bytes.len() - header != count {
        return Err(idx_error(
            path,
            format!(
                "holds {} data bytes, its header says {count}",
                bytes.len() - header
            ),
        ));
    }
    Ok((dims, header))
}

pub fn read_images(path: &Path) -> Result<IdxImages, DataError> {
    let bytes = read_maybe_gz(path)?;
    let (dims, header) = parse(path, &bytes, 3)?;
    if dims[1] == 0 || dims[2] == 0 {
        return Err(idx_error(path, "zero-sized images"));
    }
    Ok(IdxImages {
        rows: dims[1],
        cols: dims[2],
        pixels: bytes[header..].to_vec(),
    })
}

pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = read_maybe_gz(path)?;
    let (_, header) = parse(path, &bytes, 1)?;
    Ok(bytes[header..].to_vec())
}

/// Whether a file name looks like an IDX images file.
pub fn is_images_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains("idx3-ubyte"))
}

/// The labels file beside an images file (`images-idx3` → `labels-idx1`).
pub fn labels_for(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_str()?;
    let candidate = images.with_file_name(
        name.replace("images-idx3", "labels-idx1")
            .replace("images.idx3", "labels.idx1"),
    );
    candidate.is_file().then_some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_bad_headers() {
        let dir = std::env::temp_dir().join(format!("zoo-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut images = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        images.extend(0u8..12);
        let p = dir.join("t-images-idx3-ubyte");
        std::fs::write(&p, &images).unwrap();
        let imgs = read_images(&p).unwrap();
        assert_eq!((imgs.len(), imgs.rows, imgs.cols), (2, 2, 3));
        assert_eq!(
            imgs.image(1).to_luma8().as_raw(),
            &(6u8..12).collect::<Vec<_>>()
        );
        std::fs::write(&p, &images[..images.len() - 1]).unwrap();
        assert!(read_images(&p)
            .unwrap_err()
            .to_string()
            .contains("header says 12"));
        std::fs::write(&p, [0, 0, 0x0d, 3]).unwrap();
        assert!(read_images(&p)
            .unwrap_err()
            .to_string()
            .contains("not unsigned bytes"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
