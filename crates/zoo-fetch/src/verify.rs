//! Checksums, and removing a cached file (link and blob) that failed them.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// sha256 of a file, streamed (a 244 MB model is never held in memory).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Size and sha256 of a file, compared with what is expected.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Ok,
    Size { expected: u64, actual: u64 },
    Sha256 { expected: String, actual: String },
}

pub fn check_file(path: &Path, size: u64, sha256: &str) -> std::io::Result<Check> {
    let actual_size = std::fs::metadata(path)?.len();
    if actual_size != size {
        return Ok(Check::Size {
            expected: size,
            actual: actual_size,
        });
    }
    let actual = sha256_file(path)?;
    Ok(if actual.eq_ignore_ascii_case(sha256) {
        Check::Ok
    } else {
        Check::Sha256 {
            expected: sha256.to_lowercase(),
            actual,
        }
    })
}

/// Removes a cached file: the snapshot link and the blob it points to, so that neither a later
/// `--offline` fetch nor the Hub client's own cache check can take it as valid.
pub fn remove_cached(path: &Path) {
    if let Ok(target) = std::fs::canonicalize(path) {
        if target != path {
            let _ = std::fs::remove_file(&target);
        }
    }
    let _ = std::fs::remove_file(path);
}
