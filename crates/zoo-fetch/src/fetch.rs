//! Verified downloads into the Hugging Face cache (through `hf-hub`) and into zoo's own cache
//! for plain URLs and label files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use hf_hub::progress::{DownloadEvent, ProgressEvent, ProgressHandler};
use hf_hub::HFClient;
use zoo_cards::{Card, LabelFormat, Source};

use crate::cache::{HubCache, ZooCache};
use crate::download::download_url;
use crate::error::FetchError;
use crate::verify::{check_file, remove_cached, Check};

/// Called with (bytes done, bytes total) while downloading.
pub type ProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

#[derive(Clone, Default)]
pub struct FetchOptions {
    pub revision: Option<String>,
    pub opset: Option<i64>,
    pub force: bool,
    pub offline: bool,
    /// Hub mirror; `HF_ENDPOINT` when `None`.
    pub endpoint: Option<String>,
    pub progress: Option<ProgressFn>,
    /// Timeouts and the low-speed limit of every download.
    pub limits: crate::limits::NetLimits,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FetchStatus {
    /// Found in the cache with the right checksum: nothing was downloaded.
    Cached,
    Downloaded,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Fetched {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub status: FetchStatus,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<PathBuf>,
}

struct HubProgress(ProgressFn);

impl ProgressHandler for HubProgress {
    fn on_progress(&self, event: &ProgressEvent) {
        match event {
            ProgressEvent::Download(DownloadEvent::Progress { files }) => {
                for f in files {
                    (self.0)(f.bytes_completed, f.total_bytes);
                }
            }
            ProgressEvent::Download(DownloadEvent::AggregateProgress {
                bytes_completed,
                total_bytes,
                ..
            }) => (self.0)(*bytes_completed, *total_bytes),
            _ => {}
        }
    }
}

/// Makes sure a cache directory exists and takes writes, so a read-only or misplaced cache is
/// reported up front with its path rather than as a failure deep inside a download.
pub fn ensure_writable(dir: &Path) -> Result<(), FetchError> {
    let fail = |e: std::io::Error| FetchError::Cache {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".zoo-write-test-{}", std::process::id()));
    zoo_io::write_atomic(&probe, b"ok").map_err(fail)?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

fn resolve_url(endpoint: &str, source: &Source, revision: &str) -> String {
    format!(
        "{}/{}/resolve/{}/{}",
        endpoint.trim_end_matches('/'),
        source.repo,
        revision,
        source.path
    )
}

fn endpoint(options: &FetchOptions) -> String {
    options
        .endpoint
        .clone()
        .or_else(|| std::env::var("HF_ENDPOINT").ok())
        .unwrap_or_else(|| "https://huggingface.co".to_string())
}

/// Checks an existing file; a bad one is removed and reported as `None`.
fn verified(path: &Path, size: u64, sha256: &str) -> Option<PathBuf> {
    match check_file(path, size, sha256) {
        Ok(Check::Ok) => Some(path.to_path_buf()),
        Ok(_) => {
            remove_cached(path);
            None
        }
        Err(_) => None,
    }
}

/// A failed Hub download; a full disk or quota is the cache's problem, named by its path.
fn download_failure(url: &str, reason: String, cache: &Path) -> FetchError {
    let disk_full = [
        "os error 28",
        "No space left",
        "os error 122",
        "quota exceeded",
    ]
    .iter()
    .any(|s| reason.contains(s));
    if disk_full {
        FetchError::Cache {
            path: cache.to_path_buf(),
            reason: format!("{reason} (while downloading {url}); free space there or set HF_HOME"),
        }
    } else {
        FetchError::Download {
            url: url.to_string(),
            reason,
        }
    }
}

/// Turns a failed check of a fresh download into an error (after removing the file).
fn reject(path: &Path, what: &str, size: u64, sha256: &str) -> Result<(), FetchError> {
    let check = check_file(path, size, sha256).map_err(|e| FetchError::Cache {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if check != Check::Ok {
        remove_cached(path);
    }
    match check {
        Check::Ok => Ok(()),
        Check::Size { expected, actual } => Err(FetchError::Size {
            what: what.to_string(),
            expected,
            actual,
        }),
        Check::Sha256 { expected, actual } => Err(FetchError::Checksum {
            what: what.to_string(),
            expected,
            actual,
        }),
    }
}

/// Downloads one Hub file. The HTTP client has connect and read timeouts; a watchdog also
/// bounds the phases no read timeout covers (hf-hub's metadata request) and applies the
/// low-speed limit, from the download's progress events.
fn hub_download(
    hub: &HubCache,
    options: &FetchOptions,
    repo: &str,
    path: &str,
    revision: &str,
    expected_size: u64,
) -> Result<PathBuf, String> {
    let (owner, name) = repo.split_once('/').unwrap_or(("", repo));
    let limits = options.limits;
    let http = reqwest::Client::builder()
        .user_agent(concat!("zoo/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(limits.connect)
        .read_timeout(limits.stall)
        .build()
        .map_err(|e| e.to_string())?;
    let client = HFClient::builder()
        .endpoint(endpoint(options))
        .cache_dir(&hub.root)
        .client(http)
        .retry_max_attempts(3)
        .retry_base_delay(std::time::Duration::from_millis(200))
        .build_sync()
        .map_err(|e| e.to_string())?;
    let watch = Arc::new(std::sync::Mutex::new(crate::limits::Watch::capped(
        limits,
        Some(expected_size),
    )));
    let user = options.progress.clone();
    let seen = watch.clone();
    let on_bytes: ProgressFn = Arc::new(move |done, total| {
        if let Ok(mut w) = seen.lock() {
            w.progress(done);
        }
        if done > expected_size {
            // hf-hub cannot be told to stop: its writer (this callback's thread) is held here
            // instead, so at most one chunk past the card's size reaches the disk; the watch
            // below reports the overrun and the held thread ends with the process.
            loop {
                std::thread::park();
            }
        }
        if let Some(p) = &user {
            p(done, total);
        }
    });
    let progress = hf_hub::progress::Progress::new(HubProgress(on_bytes));
    let (path, revision, force) = (path.to_string(), revision.to_string(), options.force);
    let (owner, name) = (owner.to_string(), name.to_string());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = client
            .model(&owner, &name)
            .download_file()
            .filename(&path)
            .revision(revision)
            .force_download(force)
            .maybe_progress(Some(progress))
            .send()
            .map_err(|e| e.to_string());
        let _ = tx.send(result);
    });
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(result) => return result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let verdict = watch.lock().ok().and_then(|mut w| w.verdict());
                if let Some(why) = verdict {
                    // The download thread is left behind; the partial file stays
                    // `.incomplete`, which nothing takes as valid.
                    return Err(why);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err("the download stopped without a result".into())
            }
        }
    }
}

/// A user card's own file: nothing to download, the checksum is checked.
fn fetch_local(card: &Card, source: &Source, started: Instant) -> Result<Fetched, FetchError> {
    let path = crate::resolve::local_card_file(card, source)
        .map_err(|e| FetchError::LocalFile(e.to_string()))?
        .unwrap_or_default();
    Ok(Fetched {
        path,
        sha256: source.sha256.clone(),
        size: source.size,
        status: FetchStatus::Cached,
        seconds: started.elapsed().as_secs_f64(),
        labels: None,
    })
}

/// Fetches a card's model file (and its label file), verified by size and sha256.
pub fn fetch_card(
    card: &Card,
    hub: &HubCache,
    zoo: &ZooCache,
    options: &FetchOptions,
) -> Result<Fetched, FetchError> {
    let started = Instant::now();
    let source = card.source_for_opset(options.opset)?;
    if source.local.is_some() {
        return fetch_local(card, source, started);
    }
    let revision = options
        .revision
        .clone()
        .unwrap_or_else(|| source.revision.clone());
    crate::names::check_revision(&revision)?;
    let pinned = Source {
        revision: revision.clone(),
        ..source.clone()
    };
    let cached = hub.cached_file(&pinned);
    if options.offline && !options.force {
        // A damaged copy is named with both checksums, not reported as missing.
        if let Some(p) = cached.as_ref().filter(|p| p.is_file()) {
            let what = format!(
                "the cached copy of {} at {} (run without --offline to download it again)",
                card.name,
                p.display()
            );
            reject(p, &what, source.size, &source.sha256)?;
        }
    }
    if options.force {
        if let Some(p) = &cached {
            remove_cached(p);
        }
    }
    let hit = if options.force {
        None
    } else {
        cached.and_then(|p| verified(&p, source.size, &source.sha256))
    };
    let (path, status) = match hit {
        Some(p) => (p, FetchStatus::Cached),
        None if options.offline => {
            return Err(FetchError::Offline {
                name: card.name.clone(),
                cache: hub.root.clone(),
            })
        }
        None => {
            ensure_writable(&hub.root)?;
            let url = resolve_url(&endpoint(options), source, &revision);
            let path = hub_download(
                hub,
                options,
                &source.repo,
                &source.path,
                &revision,
                source.size,
            )
            .map_err(|reason| download_failure(&url, reason, &hub.root))?;
            reject(&path, &url, source.size, &source.sha256)?;
            (path, FetchStatus::Downloaded)
        }
    };
    let labels = fetch_labels(card, hub, zoo, options, &revision)?;
    Ok(Fetched {
        path,
        sha256: source.sha256.clone(),
        size: source.size,
        status,
        seconds: started.elapsed().as_secs_f64(),
        labels,
    })
}

/// Label files live in zoo's cache under their checksum. They are looked up in the model's Hub
/// repo first (same path as in onnx/models; honours mirrors), then at the card's URL.
fn fetch_labels(
    card: &Card,
    hub: &HubCache,
    zoo: &ZooCache,
    options: &FetchOptions,
    revision: &str,
) -> Result<Option<PathBuf>, FetchError> {
    let labels = &card.labels;
    if labels.format == LabelFormat::Inline {
        return Ok(None);
    }
    let (Some(sha), Some(size)) = (labels.sha256.as_deref(), labels.size) else {
        return Ok(None);
    };
    let target = zoo.labels_path(sha);
    if !options.force {
        if let Some(p) = std::fs::metadata(&target)
            .ok()
            .and_then(|_| verified(&target, size, sha))
        {
            return Ok(Some(p));
        }
    }
    if options.offline {
        return Err(FetchError::Offline {
            name: format!("labels of {}", card.name),
            cache: zoo.root.clone(),
        });
    }
    ensure_writable(target.parent().unwrap_or(&zoo.root))?;
    let mut failures = Vec::new();
    if let Some(hub_path) = &labels.hub_path {
        let quiet = FetchOptions {
            progress: None,
            ..options.clone()
        };
        match hub_download(hub, &quiet, &card.source.repo, hub_path, revision, size) {
            Ok(p) => match check_file(&p, size, sha) {
                Ok(Check::Ok) => {
                    copy_atomic(&p, &target)?;
                    return Ok(Some(target));
                }
                _ => {
                    remove_cached(&p);
                    failures.push(format!("{hub_path} on the Hub failed its checksum"));
                }
            },
            Err(e) => failures.push(format!("{hub_path} on the Hub: {e}")),
        }
    }
    if let Some(url) = &labels.url {
        match download_url(url, &target, None, &options.limits, Some(size)) {
            Ok(()) => {
                reject(&target, url, size, sha)?;
                return Ok(Some(target));
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(FetchError::Download {
        url: labels.url.clone().unwrap_or_default(),
        reason: format!("no source for the labels worked: {}", failures.join("; ")),
    })
}

fn copy_atomic(from: &Path, to: &Path) -> Result<(), FetchError> {
    let fail = |e: std::io::Error| FetchError::Cache {
        path: to.to_path_buf(),
        reason: e.to_string(),
    };
    let bytes = std::fs::read(from).map_err(fail)?;
    zoo_io::write_atomic(to, &bytes).map_err(fail)
}

/// `zoo fetch --url URL --sha256 HEX`: a model without a card, cached under its checksum.
pub fn fetch_url(
    url: &str,
    sha256: &str,
    name: Option<&str>,
    zoo: &ZooCache,
    options: &FetchOptions,
) -> Result<Fetched, FetchError> {
    let started = Instant::now();
    let sha = sha256.to_lowercase();
    if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(FetchError::Download {
            url: url.to_string(),
            reason: format!("--sha256 must be 64 hex digits, got `{sha256}`"),
        });
    }
    // A name the user gives must be a plain file name; one taken from the URL falls back to
    // `model.onnx` when it is not.
    if let Some(n) = name {
        crate::names::check_file_name(n)?;
    }
    let file_name = name
        .map(str::to_string)
        .or_else(|| {
            url.split(['?', '#'])
                .next()
                .and_then(|u| u.rsplit('/').next())
                .filter(|s| crate::names::check_file_name(s).is_ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "model.onnx".to_string());
    let target = zoo.url_model_path(&sha, &file_name);
    if !options.force {
        if let Ok(crate::verify::Check::Ok) = std::fs::metadata(&target)
            .and_then(|m| crate::verify::check_file(&target, m.len(), &sha))
        {
            return Ok(Fetched {
                size: std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0),
                path: target,
                sha256: sha,
                status: FetchStatus::Cached,
                seconds: started.elapsed().as_secs_f64(),
                labels: None,
            });
        }
    }
    if options.offline {
        if target.is_file() {
            let what = format!(
                "the cached copy of {url} at {} (run without --offline to download it again)",
                target.display()
            );
            let size = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
            reject(&target, &what, size, &sha)?;
        }
        return Err(FetchError::Offline {
            name: url.to_string(),
            cache: zoo.root.clone(),
        });
    }
    let _ = std::fs::remove_file(&target);
    download_url(
        url,
        &target,
        options.progress.as_ref(),
        &options.limits,
        None,
    )?;
    let size = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
    // No expected size for a plain URL: the checksum alone decides.
    reject(&target, url, size, &sha)?;
    Ok(Fetched {
        path: target,
        sha256: sha,
        size,
        status: FetchStatus::Downloaded,
        seconds: started.elapsed().as_secs_f64(),
        labels: None,
    })
}
