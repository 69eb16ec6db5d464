//! Names a user gives for things inside a cache (a file name, a revision) must stay inside
//! it: no separators, no `..`, nothing absolute. Checked before any file is touched.

use crate::error::FetchError;

/// A plain file name: no path separators, not `.` or `..`, no NUL, not empty, at most 255 bytes.
pub fn check_file_name(name: &str) -> Result<(), FetchError> {
    let bad = |why: &str| {
        Err(FetchError::BadName {
            what: "file name".into(),
            name: name.to_string(),
            reason: why.to_string(),
        })
    };
    if name.is_empty() || name.len() > 255 {
        return bad("it must have 1 to 255 bytes");
    }
    if name == "." || name == ".." {
        return bad("it must not be `.` or `..`");
    }
    if name.contains(['/', '\\', '\0']) {
        return bad("it must be a plain name without `/`, `\\` or NUL");
    }
    Ok(())
}

/// A revision as git accepts a ref or commit name (`main`, `v1.0`, `refs/pr/1`, a commit
/// hash): ASCII letters, digits and `._-/`, no `..`, no empty or dot-leading components, no
/// leading or trailing `/`, no `.lock` ending. Hub caches store refs as files named by it.
pub fn check_revision(revision: &str) -> Result<(), FetchError> {
    let bad = |why: &str| {
        Err(FetchError::BadName {
            what: "revision".into(),
            name: revision.to_string(),
            reason: why.to_string(),
        })
    };
    if revision.is_empty() || revision.len() > 255 {
        return bad("it must have 1 to 255 characters");
    }
    if !revision
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
    {
        return bad("only letters, digits and `._-/` are allowed");
    }
    if revision.contains("..") || revision.ends_with(".lock") {
        return bad("it must not contain `..` or end in `.lock`");
    }
    if revision
        .split('/')
        .any(|c| c.is_empty() || c.starts_with('.'))
    {
        return bad(
            "no component may be empty or start with `.` (no leading, trailing or double `/`)",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_stay_inside_their_folder() {
        for ok in ["model.onnx", "resnet-50_v1.onnx", "a..b"] {
            assert!(check_file_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "/etc/passwd", "a/b", "a\\b", "x\0y"] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn revisions_are_git_ref_names() {
        for ok in [
            "main",
            "v1.0",
            "refs/pr/1",
            "0123456789abcdef0123456789abcdef01234567",
        ] {
            assert!(check_revision(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../../../../x/y",
            "/abs",
            "a//b",
            "a/",
            ".hidden",
            "a/.b",
            "x.lock",
            "a b",
            "a\\b",
        ] {
            assert!(check_revision(bad).is_err(), "{bad:?}");
        }
    }
}
