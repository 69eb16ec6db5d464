//! Dataset sources: a folder with one sub-folder per class, a CSV manifest
//! (`path,label[,split]`), or MNIST IDX files.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use image::DynamicImage;
use serde::Serialize;

use crate::decode::{decode, is_image_name, walk};
use crate::error::DataError;
use crate::idx::{self, IdxImages};

/// Where one image comes from.
#[derive(Clone, Debug)]
pub enum ImageRef {
    File(PathBuf),
    Idx {
        images: Arc<IdxImages>,
        index: usize,
        file: Arc<PathBuf>,
    },
}

impl ImageRef {
    /// A name for messages and reports.
    pub fn name(&self) -> String {
        match self {
            ImageRef::File(p) => p.display().to_string(),
            ImageRef::Idx { index, file, .. } => format!("{}#{index}", file.display()),
        }
    }

    pub fn load(&self) -> Result<DynamicImage, DataError> {
        match self {
            ImageRef::File(p) => decode(p),
            ImageRef::Idx { images, index, .. } => Ok(images.image(*index)),
        }
    }

    /// sha256 of the encoded bytes (or the raw pixels for IDX), to find duplicates.
    pub fn content_hash(&self) -> Result<String, DataError> {
        use sha2::Digest;
        let digest = match self {
            ImageRef::File(p) => {
                let bytes = std::fs::read(p).map_err(|e| DataError::Unreadable {
                    path: p.clone(),
                    reason: e.to_string(),
                })?;
                sha2::Sha256::digest(&bytes)
            }
            ImageRef::Idx { images, index, .. } => {
                let size = images.rows * images.cols;
                sha2::Sha256::digest(&images.pixels[index * size..(index + 1) * size])
            }
        };
        Ok(hex::encode(digest))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

#[derive(Clone, Debug)]
pub struct Sample {
    pub image: ImageRef,
    pub label: usize,
    /// From a manifest's split column, if any.
    pub split: Option<Split>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    ClassFolders,
    CsvManifest,
    MnistIdx,
}

#[derive(Clone, Debug)]
pub struct Dataset {
    pub kind: SourceKind,
    pub root: PathBuf,
    /// Class names; a sample's label indexes this list.
    pub classes: Vec<String>,
    pub samples: Vec<Sample>,
    /// Files that are not images by name (e.g. notes.txt) and were left out.
    pub ignored: Vec<PathBuf>,
}

impl Dataset {
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for s in &self.samples {
            counts[s.label] += 1;
        }
        counts
    }
}

/// Opens a class-folder tree, a `.csv` manifest, or MNIST IDX (a `*idx3-ubyte[.gz]` file or a
/// folder holding one with its labels file).
pub fn open(path: &Path) -> Result<Dataset, DataError> {
    if path.is_file() {
        if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            return open_csv(path);
        }
        if idx::is_images_file(path) {
            return open_idx(path);
        }
        return Err(DataError::Manifest {
            path: path.to_path_buf(),
            reason:
                "expected a folder of class folders, a .csv manifest, or an MNIST *idx3-ubyte file"
                    .into(),
        });
    }
    if !path.is_dir() {
        // A FIFO or device would block or never end: named, never opened.
        let reason = match std::fs::metadata(path) {
            Ok(_) => {
                "not a regular file or folder (a FIFO, device or socket); zoo does not read it"
            }
            Err(_) => "no such file or folder",
        };
        return Err(DataError::Unreadable {
            path: path.to_path_buf(),
            reason: reason.into(),
        });
    }
    let idx_images: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| DataError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && idx::is_images_file(p))
        .collect();
    match idx_images.as_slice() {
        [one] => open_idx(one),
        [] => open_folders(path),
        many => Err(DataError::Manifest {
            path: path.to_path_buf(),
            reason: format!("{} IDX image files; name one of them", many.len()),
        }),
    }
}

fn open_folders(root: &Path) -> Result<Dataset, DataError> {
    let mut class_dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| DataError::Unreadable {
            path: root.to_path_buf(),
            reason: e.to_string(),
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    class_dirs.sort();
    if class_dirs.is_empty() {
        return Err(DataError::Manifest {
            path: root.to_path_buf(),
            reason:
                "no class folders: put each class's images in a sub-folder named after the class"
                    .into(),
        });
    }
    let mut classes = Vec::new();
    let mut samples = Vec::new();
    let mut ignored = Vec::new();
    for (label, dir) in class_dirs.iter().enumerate() {
        classes.push(
            dir.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
        let mut files = Vec::new();
        walk(dir, Some(root), &mut files)?;
        files.sort();
        for f in files {
            if is_image_name(&f) {
                samples.push(Sample {
                    image: ImageRef::File(f),
                    label,
                    split: None,
                });
            } else {
                ignored.push(f);
            }
        }
    }
    let loose: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    ignored.extend(loose);
    Ok(Dataset {
        kind: SourceKind::ClassFolders,
        root: root.to_path_buf(),
        classes,
        samples,
        ignored,
    })
}

#[derive(serde::Deserialize)]
struct ManifestRow {
    path: String,
    label: String,
    #[serde(default)]
    split: Option<String>,
}

/// Resolves a manifest path inside `root`, refusing absolute paths and `..` escapes.
fn inside(root: &Path, relative: &str) -> Option<PathBuf> {
    let rel = Path::new(relative);
    let mut depth: i64 = 0;
    for c in rel.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    let joined = root.join(rel);
    // A symlink may still point outside; compare real paths when the file exists.
    if let (Ok(real), Ok(real_root)) = (joined.canonicalize(), root.canonicalize()) {
        if !real.starts_with(real_root) {
            return None;
        }
    }
    Some(joined)
}

/// A manifest row's `split` cell: empty for none.
fn split_of(cell: Option<&str>) -> Result<Option<Split>, String> {
    match cell.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => Ok(None),
        Some("train") => Ok(Some(Split::Train)),
        Some("val") | Some("valid") | Some("validation") => Ok(Some(Split::Val)),
        Some("test") => Ok(Some(Split::Test)),
        Some(other) => Err(format!("split `{other}` must be train, val or test")),
    }
}

fn open_csv(path: &Path) -> Result<Dataset, DataError> {
    // A bare file name's folder is the current one (an empty path cannot be canonicalised,
    // which skipped the symlink-escape check).
    let root = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let bad = |line: u64, reason: String| DataError::Manifest {
        path: path.to_path_buf(),
        reason: format!("line {line}: {reason}"),
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| DataError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let headers = reader.headers().map_err(|e| bad(1, e.to_string()))?.clone();
    if !headers.iter().any(|h| h == "path") || !headers.iter().any(|h| h == "label") {
        return Err(bad(
            1,
            format!(
                "the header must name `path` and `label` (and optionally `split`), found {:?}",
                headers.iter().collect::<Vec<_>>()
            ),
        ));
    }
    let mut rows = Vec::new();
    for (i, row) in reader.deserialize::<ManifestRow>().enumerate() {
        let line = i as u64 + 2;
        let row = row.map_err(|e| bad(line, e.to_string()))?;
        if row.label.is_empty() {
            return Err(bad(line, "empty label".into()));
        }
        let file = inside(&root, &row.path).ok_or_else(|| {
            bad(
                line,
                format!(
                    "path `{}` escapes the manifest's folder {}",
                    row.path,
                    root.display()
                ),
            )
        })?;
        let split = split_of(row.split.as_deref()).map_err(|why| bad(line, why))?;
        rows.push((file, row.label, split));
    }
    if rows.is_empty() {
        return Err(DataError::Manifest {
            path: path.to_path_buf(),
            reason: "it has a header but no rows: list one `path,label` line per image".into(),
        });
    }
    let mut classes: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
    classes.sort();
    classes.dedup();
    let samples = rows
        .into_iter()
        .map(|(file, label, split)| Sample {
            image: ImageRef::File(file),
            label: classes.binary_search(&label).expect("label is listed"),
            split,
        })
        .collect();
    Ok(Dataset {
        kind: SourceKind::CsvManifest,
        root,
        classes,
        samples,
        ignored: Vec::new(),
    })
}

fn open_idx(images_path: &Path) -> Result<Dataset, DataError> {
    let labels_path = idx::labels_for(images_path).ok_or_else(|| DataError::Idx {
        path: images_path.to_path_buf(),
        reason: "no labels file beside it (expected the same name with labels-idx1)".into(),
    })?;
    let images = Arc::new(idx::read_images(images_path)?);
    let labels = idx::read_labels(&labels_path)?;
    if labels.len() != images.len() {
        return Err(DataError::Idx {
            path: labels_path,
            reason: format!("{} labels for {} images", labels.len(), images.len()),
        });
    }
    let mut values: Vec<u8> = labels.clone();
    values.sort_unstable();
    values.dedup();
    let classes = values.iter().map(|v| v.to_string()).collect();
    let file = Arc::new(images_path.to_path_buf());
    let samples = labels
        .iter()
        .enumerate()
        .map(|(index, l)| Sample {
            image: ImageRef::Idx {
                images: images.clone(),
                index,
                file: file.clone(),
            },
            label: values.binary_search(l).expect("label is listed"),
            split: None,
        })
        .collect();
    Ok(Dataset {
        kind: SourceKind::MnistIdx,
        root: images_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        classes,
        samples,
        ignored: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_cannot_escape() {
        let root = std::env::temp_dir();
        assert!(inside(&root, "a/b.png").is_some());
        assert!(inside(&root, "a/../b.png").is_some());
        assert!(inside(&root, "../b.png").is_none());
        assert!(inside(&root, "a/../../b.png").is_none());
        assert!(inside(&root, "/etc/passwd").is_none());
    }
}
