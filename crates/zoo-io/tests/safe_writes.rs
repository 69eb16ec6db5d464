//! `write_atomic` writes only where it is told: a link planted under its temp name is not
//! followed, and a symlink, folder, FIFO-like special file or device at the target is refused
//! and left as it was (the old helper truncated a planted link's target and replaced
//! `/dev/null` with a regular file).

#![cfg(unix)]

use std::path::PathBuf;

use zoo_io::write_atomic;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zoo-io-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_link_planted_under_the_temp_name_is_not_followed() {
    let dir = scratch("planted");
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    // The names the helper tries first, each a link to the victim.
    for k in 0..3 {
        let planted = dir.join(format!(".out.csv.tmp-{}-{k}", std::process::id()));
        std::os::unix::fs::symlink(&victim, planted).unwrap();
    }
    write_atomic(&dir.join("out.csv"), b"new").unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(std::fs::read_to_string(dir.join("out.csv")).unwrap(), "new");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn regular_files_are_replaced_and_nothing_else() {
    let dir = scratch("kinds");
    let file = dir.join("model.onnx");
    std::fs::write(&file, "old").unwrap();
    write_atomic(&file, b"new").unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), b"new");

    let target = dir.join("elsewhere.txt");
    std::fs::write(&target, "keep").unwrap();
    let link = dir.join("link.csv");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let folder = dir.join("folder");
    std::fs::create_dir(&folder).unwrap();
    let socket = dir.join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    for (path, kind) in [
        (&link, "a symbolic link"),
        (&folder, "a folder"),
        (&socket, "a socket"),
    ] {
        let e = write_atomic(path, b"x").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{path:?}");
        assert!(e.to_string().contains(kind), "{e}");
    }
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    assert!(folder.is_dir());
    // A device is refused before anything is created beside it.
    let e = write_atomic(std::path::Path::new("/dev/null"), b"x").unwrap_err();
    assert!(e.to_string().contains("a device"), "{e}");
    let meta = std::fs::symlink_metadata("/dev/null").unwrap();
    assert!(!meta.file_type().is_file());
    // No temp file is left behind by the refusals.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(dir).unwrap();
}
