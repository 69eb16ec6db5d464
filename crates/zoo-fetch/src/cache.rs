use std::path::PathBuf;

use zoo_cards::Source;

/// The Hub cache: `{root}/models--{owner}--{name}/{refs,snapshots,blobs}`.
#[derive(Clone, Debug, PartialEq)]
pub struct HubCache {
    pub root: PathBuf,
}

impl HubCache {
    /// `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`, as huggingface_hub does.
    pub fn from_env() -> Self {
        let root = if let Some(p) = zoo_io::env_folder("HF_HUB_CACHE") {
            p
        } else if let Some(p) = zoo_io::env_folder("HF_HOME") {
            p.join("hub")
        } else {
            zoo_io::home_folder()
                .join(".cache")
                .join("huggingface")
                .join("hub")
        };
        Self { root }
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    /// The snapshot path of a card's file if it is cached with the card's size.
    pub fn cached_file(&self, source: &Source) -> Option<PathBuf> {
        let repo = self.repo_dir(&source.repo);
        let commit = std::fs::read_to_string(repo.join("refs").join(&source.revision))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| source.revision.clone());
        let path = repo.join("snapshots").join(commit).join(&source.path);
        let size = std::fs::metadata(&path).ok()?.len();
        (size == source.size).then_some(path)
    }
}

/// zoo's own cache for label files and models fetched by URL: `$ZOO_CACHE`, else
/// `$XDG_CACHE_HOME/zoo`, else `~/.cache/zoo`. Kept apart from the Hub cache so that Hugging
/// Face's tools never see folders they do not know.
#[derive(Clone, Debug, PartialEq)]
pub struct ZooCache {
    pub root: PathBuf,
}

impl ZooCache {
    pub fn from_env() -> Self {
        let root = if let Some(p) = zoo_io::env_folder("ZOO_CACHE") {
            p
        } else if let Some(p) = zoo_io::env_folder("XDG_CACHE_HOME") {
            p.join("zoo")
        } else {
            zoo_io::home_folder().join(".cache").join("zoo")
        };
        Self { root }
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn labels_path(&self, sha256: &str) -> PathBuf {
        self.root.join("labels").join(format!("{sha256}.txt"))
    }

    pub fn url_model_path(&self, sha256: &str, file_name: &str) -> PathBuf {
        self.root.join("models").join(sha256).join(file_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_snapshot_through_the_revision_ref_and_checks_size() {
        let root = std::env::temp_dir().join(format!("zoo-cache-test-{}", std::process::id()));
        let card = zoo_cards::find("lenet").unwrap();
        let cache = HubCache::at(&root);
        assert_eq!(cache.cached_file(&card.source), None);
        let repo = cache.repo_dir(&card.source.repo);
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123\n").unwrap();
        let file = repo.join("snapshots/abc123").join(&card.source.path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, vec![0u8; 10]).unwrap();
        assert_eq!(
            cache.cached_file(&card.source),
            None,
            "wrong size is not a cached model"
        );
        std::fs::write(&file, vec![0u8; card.source.size as usize]).unwrap();
        assert_eq!(cache.cached_file(&card.source), Some(file));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
