//! MNIST IDX files (`*-images-idx3-ubyte`, `*-labels-idx1-ubyte`), gzipped or raw.

use std::io::Read;
use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage};

use crate::error::DataError;

/// Most images one IDX file may hold (MNIST has 70,000, EMNIST 814,255): each becomes a sample,
/// so a tiny gzipped file declaring 10^9 1x1 images is refused before anything is allocated.
pub const MAX_IDX_IMAGES: usize = 10_000_000;

/// Largest IDX payload read (MNIST's training images are 47 MB).
const MAX_PAYLOAD: usize = 1 << 30;

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

/// Opens an IDX file, gunzipping when it starts with the gzip magic bytes.
fn open_stream(path: &Path) -> Result<Box<dyn Read>, DataError> {
    let unreadable = |e: std::io::Error| DataError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(unreadable)?;
    let head = std::io::Cursor::new(magic[..n].to_vec());
    let raw = head.chain(file);
    Ok(if magic[..n] == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(raw))
    } else {
        Box::new(raw)
    })
}

fn idx_error(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Idx {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads an IDX file: the header (magic `0 0 type ndim`, then `ndim` big-endian u32 dims, u8
/// data only) is checked first, and the payload is read only when its declared size is within
/// the limits; then it must have exactly that size. A small gzipped file declaring a huge
/// payload is refused without allocating it.
fn read_idx(path: &Path, ndim: u8, max_items: usize) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let mut stream = open_stream(path)?;
    let mut header = vec![0u8; 4 + 4 * ndim as usize];
    stream
        .read_exact(&mut header[..4])
        .map_err(|_| idx_error(path, "bad magic number"))?;
    if header[0] != 0 || header[1] != 0 {
        return Err(idx_error(path, "bad magic number"));
    }
    if header[2] != 0x08 {
        return Err(idx_error(
            path,
            format!("element type 0x{:02x} is not unsigned bytes", header[2]),
        ));
    }
    if header[3] != ndim {
        return Err(idx_error(
            path,
            format!("{} dimensions, expected {ndim}", header[3]),
        ));
    }
    stream
        .read_exact(&mut header[4..])
        .map_err(|_| idx_error(path, "truncated header"))?;
    let dims: Vec<usize> = (0..ndim as usize)
        .map(|i| u32::from_be_bytes(header[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    if dims[0] > max_items {
        return Err(idx_error(
            path,
            format!("{} items, more than the limit of {max_items}", dims[0]),
        ));
    }
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&c| c <= MAX_PAYLOAD)
        .ok_or_else(|| {
            idx_error(
                path,
                format!("dims {dims:?} need more than {MAX_PAYLOAD} bytes"),
            )
        })?;
    let mut data = Vec::with_capacity(count);
    stream
        .take(count as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| idx_error(path, format!("bad data: {e}")))?;
    if data.len() != count {
        return Err(idx_error(
            path,
            format!(
                "holds {}{} data bytes, its header says {count}",
                data.len().min(count),
                if data.len() > count { "+" } else { "" }
            ),
        ));
    }
    Ok((dims, data))
}

pub fn read_images(path: &Path) -> Result<IdxImages, DataError> {
    let (dims, pixels) = read_idx(path, 3, MAX_IDX_IMAGES)?;
    if dims[1] == 0 || dims[2] == 0 {
        return Err(idx_error(path, "zero-sized images"));
    }
    Ok(IdxImages {
        rows: dims[1],
        cols: dims[2],
        pixels,
    })
}

pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    Ok(read_idx(path, 1, MAX_IDX_IMAGES)?.1)
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
