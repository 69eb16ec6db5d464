//! The frozen-feature cache: the frozen prefix's output for every image of a split, computed
//! once. It stays in memory while it fits the memory budget; past that, every row goes to a file
//! in the run directory (`RUN/cache/SPLIT.features`) and the rows that fit stay in memory as
//! well, so the rest are read back by position for each batch (the page cache keeps them when
//! the machine has room; the process does not).
//!
//! The file is written under a temporary name and renamed when complete, so a file under its
//! own name is whole unless it was damaged later: its header names what it was computed from
//! (a fingerprint of the base model, network, recipe, cut and the split's images) and a sha256
//! of header and rows closes it. A resumed run reuses a file that passes both checks and
//! rebuilds one that does not.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use sha2::{Digest, Sha256};
use zoo_data::Tensors;
use zoo_net::{FeatureCut, Network};

const MAGIC: &[u8; 8] = b"ZOOFEAT1";
/// A header's dims beyond this many are not a cache file of zoo's.
const MAX_DIMS: usize = 8;

/// Cached features of one split: row `i` is image `i`'s activation at the cut, flattened.
pub struct FeatureCache {
    dims: Vec<usize>,
    rows: usize,
    /// Rows `0..held_rows`, in memory.
    held: Vec<f32>,
    held_rows: usize,
    /// Every row, on disk (when they did not all fit the budget).
    spill: Option<Spill>,
}

struct Spill {
    file: File,
    path: PathBuf,
    data_start: u64,
}

/// Where a cache being built goes.
pub enum Placement {
    /// Every row in memory.
    Memory,
    /// Every row to `path` (with `fingerprint` in its header), the first `held_rows` kept in
    /// memory too.
    Spill {
        path: PathBuf,
        fingerprint: String,
        held_rows: usize,
    },
}

impl FeatureCache {
    /// Feature dims of one image (no batch axis).
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The file holding every row, when the cache spilled.
    pub fn spill_path(&self) -> Option<&Path> {
        self.spill.as_ref().map(|s| s.path.as_path())
    }

    /// Rows held in memory.
    pub fn held_rows(&self) -> usize {
        self.held_rows
    }

    fn row_len(&self) -> usize {
        self.dims.iter().product()
    }

    /// Rows `picked`, one after another.
    pub fn gather(&self, picked: &[usize]) -> std::io::Result<Vec<f32>> {
        let size = self.row_len();
        let mut out = Vec::with_capacity(picked.len() * size);
        let mut bytes = vec![0u8; 4 * size];
        for &i in picked {
            if i >= self.rows {
                return Err(std::io::Error::other(format!(
                    "feature row {i} of {} asked for",
                    self.rows
                )));
            }
            if i < self.held_rows {
                out.extend_from_slice(&self.held[i * size..(i + 1) * size]);
                continue;
            }
            let spill = self
                .spill
                .as_ref()
                .expect("rows past the held ones are on disk");
            let at = spill.data_start + (i * size * 4) as u64;
            spill.file.read_exact_at(&mut bytes, at).map_err(|e| {
                std::io::Error::other(format!(
                    "cannot read the feature cache {}: {e}",
                    spill.path.display()
                ))
            })?;
            out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
        Ok(out)
    }

    /// Runs the frozen prefix once per image (no autodiff) and keeps the activations at the
    /// cut, placed as `placement` says.
    pub fn build<B: Backend>(
        net: &Network<B>,
        cut: &FeatureCut,
        tensors: &Tensors,
        batch_size: usize,
        device: &B::Device,
        placement: Placement,
    ) -> anyhow::Result<Self> {
        let forward = |start: usize, n: usize| -> anyhow::Result<(Vec<f32>, Vec<usize>)> {
            let chw = tensors.chw;
            let x = Tensor::<B, 4>::from_data(
                TensorData::new(tensors.range(start, n)?, [n, chw[0], chw[1], chw[2]]),
                device,
            );
            let act = net.forward_to(x, &cut.value)?;
            let dims = act.dims()[1..].to_vec();
            Ok((act.to_vec(), dims))
        };
        let batches = batch_starts(tensors.len(), batch_size);
        match placement {
            Placement::Memory => {
                let mut held = Vec::new();
                let mut dims = Vec::new();
                for &(start, n) in &batches {
                    let (values, d) = forward(start, n)?;
                    held.extend(values);
                    dims = d;
                }
                let rows = tensors.len();
                Ok(Self::in_memory(held, dims, rows))
            }
            Placement::Spill {
                path,
                fingerprint,
                held_rows,
            } => write_spilled(&path, &fingerprint, tensors.len(), held_rows, |k| {
                batches.get(k).map(|&(start, n)| forward(start, n))
            }),
        }
    }

    fn in_memory(held: Vec<f32>, dims: Vec<usize>, rows: usize) -> Self {
        Self {
            dims,
            rows,
            held,
            held_rows: rows,
            spill: None,
        }
    }

    /// The cache file at `path` when it is whole and was computed from `fingerprint` for
    /// `rows` images of `dims` each; else why not (the caller rebuilds it).
    pub fn reuse(
        path: &Path,
        fingerprint: &str,
        rows: usize,
        dims: &[usize],
        held_rows: usize,
    ) -> Result<Self, String> {
        let file = zoo_io::open_regular(path).map_err(|e| e.to_string())?;
        let header = header_bytes(fingerprint, rows, dims);
        let size = dims.iter().product::<usize>();
        let expected_len = (header.len() + 4 * rows * size + 32) as u64;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, &file);
        let mut head = vec![0u8; header.len()];
        if reader.read_exact(&mut head).is_err() || head != header {
            return Err("computed from another model, recipe or set of images".into());
        }
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        if len != expected_len {
            return Err(format!("{len} bytes where {expected_len} were expected"));
        }
        let mut hash = Sha256::new();
        hash.update(&head);
        let mut held = Vec::with_capacity(held_rows * size);
        let mut block = vec![0u8; 1 << 20];
        let mut left = 4 * rows * size;
        while left > 0 {
            let take = left.min(block.len());
            reader
                .read_exact(&mut block[..take])
                .map_err(|e| e.to_string())?;
            hash.update(&block[..take]);
            let wanted = (held_rows * size).saturating_sub(held.len());
            held.extend(
                (block[..take].chunks_exact(4).take(wanted))
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            left -= take;
        }
        let mut trailer = [0u8; 32];
        reader.read_exact(&mut trailer).map_err(|e| e.to_string())?;
        if trailer[..] != hash.finalize()[..] {
            return Err("its checksum does not match (damaged)".into());
        }
        drop(reader);
        Ok(Self {
            dims: dims.to_vec(),
            rows,
            held,
            held_rows,
            spill: Some(Spill {
                file,
                path: path.to_path_buf(),
                data_start: header.len() as u64,
            }),
        })
    }
}

/// `(start, count)` of each batch of `total` images.
fn batch_starts(total: usize, size: usize) -> Vec<(usize, usize)> {
    let size = size.max(1);
    (0..total)
        .step_by(size)
        .map(|start| (start, size.min(total - start)))
        .collect()
}

/// The header: magic, fingerprint, rows, dims (little-endian).
fn header_bytes(fingerprint: &str, rows: usize, dims: &[usize]) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend((fingerprint.len() as u32).to_le_bytes());
    h.extend(fingerprint.as_bytes());
    h.extend((rows as u64).to_le_bytes());
    h.extend((dims.len().min(MAX_DIMS) as u32).to_le_bytes());
    for &d in dims.iter().take(MAX_DIMS) {
        h.extend((d as u64).to_le_bytes());
    }
    h
}

/// Writes the spilled cache batch by batch (`batch(k)`: the k-th batch's rows and dims),
/// keeping the first `held_rows` rows, then opens it for reading.
fn write_spilled(
    path: &Path,
    fingerprint: &str,
    rows: usize,
    held_rows: usize,
    mut batch: impl FnMut(usize) -> Option<anyhow::Result<(Vec<f32>, Vec<usize>)>>,
) -> anyhow::Result<FeatureCache> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        remove_stale_temps(dir, path);
    }
    let mut failure = None;
    let mut held = Vec::new();
    let mut dims = Vec::new();
    let written = zoo_io::write_atomic_with(path, |out| {
        let mut hash = Sha256::new();
        let mut k = 0;
        while let Some(next) = batch(k) {
            let (values, d) = next.map_err(|e| {
                let text = format!("{e:#}");
                failure = Some(e);
                std::io::Error::other(text)
            })?;
            if k == 0 {
                let header = header_bytes(fingerprint, rows, &d);
                hash.update(&header);
                out.write_all(&header)?;
            }
            let size: usize = d.iter().product();
            let wanted = (held_rows * size).saturating_sub(held.len());
            held.extend_from_slice(&values[..wanted.min(values.len())]);
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            hash.update(&bytes);
            out.write_all(&bytes)?;
            dims = d;
            k += 1;
        }
        if k == 0 {
            let header = header_bytes(fingerprint, rows, &dims);
            hash.update(&header);
            out.write_all(&header)?;
        }
        out.write_all(&hash.finalize())
    });
    if let Some(e) = failure {
        return Err(e);
    }
    written
        .map_err(|e| anyhow::anyhow!("cannot write the feature cache {}: {e}", path.display()))?;
    FeatureCache::reuse_unchecked(path, fingerprint, rows, dims, held, held_rows)
}

impl FeatureCache {
    /// Opens the file just written (its rows were checked as they were hashed).
    fn reuse_unchecked(
        path: &Path,
        fingerprint: &str,
        rows: usize,
        dims: Vec<usize>,
        held: Vec<f32>,
        held_rows: usize,
    ) -> anyhow::Result<Self> {
        let file = zoo_io::open_regular(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let data_start = header_bytes(fingerprint, rows, &dims).len() as u64;
        Ok(Self {
            dims,
            rows,
            held,
            held_rows: held_rows.min(rows),
            spill: Some(Spill {
                file,
                path: path.to_path_buf(),
                data_start,
            }),
        })
    }
}

/// Temporary files of an earlier, killed write of `path` (they would hold the disk forever).
fn remove_stale_temps(dir: &Path, path: &Path) {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().to_string()) else {
        return;
    };
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with(&prefix);
        if stale && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 rows of [2, 3], row i holding i*100 + 0..6, written in batches of 4.
    fn spilled(dir: &Path, fingerprint: &str, held_rows: usize) -> FeatureCache {
        let rows: Vec<Vec<f32>> = (0..10)
            .map(|i| (0..6).map(|k| (i * 100 + k) as f32).collect())
            .collect();
        let batches = batch_starts(10, 4);
        write_spilled(
            &dir.join("train.features"),
            fingerprint,
            10,
            held_rows,
            |k| {
                batches
                    .get(k)
                    .map(|&(start, n)| Ok((rows[start..start + n].concat(), vec![2, 3])))
            },
        )
        .unwrap()
    }

    fn expected(picked: &[usize]) -> Vec<f32> {
        (picked.iter())
            .flat_map(|&i| (0..6).map(move |k| (i * 100 + k) as f32))
            .collect()
    }

    #[test]
    fn spilled_rows_read_back_equal_to_held_ones_on_both_sides_of_the_boundary() {
        let dir = tempdir("gather");
        let picked = [9, 0, 3, 4, 7, 3];
        for held in [0, 3, 10] {
            let cache = spilled(&dir, "fp", held);
            assert_eq!(cache.held_rows(), held);
            assert_eq!(cache.dims(), &[2, 3]);
            assert_eq!(
                cache.gather(&picked).unwrap(),
                expected(&picked),
                "held {held}"
            );
            assert!(cache.gather(&[10]).is_err());
            let again =
                FeatureCache::reuse(cache.spill_path().unwrap(), "fp", 10, &[2, 3], held).unwrap();
            assert_eq!(again.gather(&picked).unwrap(), expected(&picked));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cache_of_other_inputs_or_a_damaged_one_is_not_reused() {
        let dir = tempdir("damaged");
        let path = spilled(&dir, "fp", 2).spill_path().unwrap().to_path_buf();
        let reuse = |fp: &str, rows: usize, dims: &[usize]| {
            FeatureCache::reuse(&path, fp, rows, dims, 2).map(|_| ())
        };
        assert_eq!(reuse("fp", 10, &[2, 3]), Ok(()));
        let other = reuse("other", 10, &[2, 3]).unwrap_err();
        assert!(other.contains("another model"), "{other}");
        assert!(reuse("fp", 11, &[2, 3]).is_err());
        assert!(reuse("fp", 10, &[3, 2]).is_err());
        let whole = std::fs::read(&path).unwrap();
        for at in [0, whole.len() / 2, whole.len() - 1] {
            let mut bytes = whole.clone();
            bytes[at] ^= 0x10;
            std::fs::write(&path, &bytes).unwrap();
            assert!(reuse("fp", 10, &[2, 3]).is_err(), "a flipped bit at {at}");
        }
        std::fs::write(&path, &whole[..whole.len() - 7]).unwrap();
        let cut = reuse("fp", 10, &[2, 3]).unwrap_err();
        assert!(cut.contains("were expected"), "{cut}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_killed_writes_temp_file_is_removed_and_a_link_is_not_read() {
        let dir = tempdir("stale");
        std::fs::create_dir_all(&dir).unwrap();
        let stale = dir.join(".train.features.tmp-1-0");
        std::fs::write(&stale, b"half a cache").unwrap();
        let path = spilled(&dir, "fp", 0).spill_path().unwrap().to_path_buf();
        assert!(!stale.exists());
        let link = dir.join("val.features");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let refused = FeatureCache::reuse(&link, "fp", 10, &[2, 3], 0).map(|_| ());
        assert!(refused.unwrap_err().contains("symbolic link"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("zoo-cache-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }
}
