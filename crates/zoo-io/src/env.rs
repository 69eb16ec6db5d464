//! Folders named by environment variables: an empty value means unset (an empty `ZOO_HOME`
//! used to mean the current folder), and the XDG base-directory variables count only when
//! absolute, as their specification says.

use std::path::PathBuf;

/// The folder `name` names, if it is set and not empty; for `XDG_*` variables, also absolute.
pub fn env_folder(name: &str) -> Option<PathBuf> {
    let value = std::env::var_os(name).filter(|v| !v.is_empty())?;
    let path = PathBuf::from(value);
    (!name.starts_with("XDG_") || path.is_absolute()).then_some(path)
}

/// The user's home folder (`HOME`, when set and not empty), else the current folder.
pub fn home_folder() -> PathBuf {
    env_folder("HOME").unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::env_folder;

    #[test]
    fn empty_values_and_relative_xdg_folders_count_as_unset() {
        // Names no other test reads.
        std::env::set_var("ZOO_IO_TEST_EMPTY", "");
        std::env::set_var("ZOO_IO_TEST_SET", "rel/dir");
        std::env::set_var("XDG_ZOO_IO_TEST_REL", "rel/dir");
        std::env::set_var("XDG_ZOO_IO_TEST_ABS", "/abs/dir");
        assert_eq!(env_folder("ZOO_IO_TEST_EMPTY"), None);
        assert_eq!(env_folder("ZOO_IO_TEST_UNSET_NEVER"), None);
        assert_eq!(env_folder("ZOO_IO_TEST_SET"), Some("rel/dir".into()));
        assert_eq!(env_folder("XDG_ZOO_IO_TEST_REL"), None);
        assert_eq!(env_folder("XDG_ZOO_IO_TEST_ABS"), Some("/abs/dir".into()));
    }
}
