//! Downloading one URL into the cache: resumable (`.part` files and HTTP Range), bounded in
//! time (the network limits) and in size (the card's), renamed into place only when whole.

use std::io::Write;
use std::path::{Path, PathBuf};

use reqwest::blocking::Response;

use crate::error::FetchError;
use crate::fetch::{ensure_writable, ProgressFn};
use crate::limits::NetLimits;

/// Downloads a URL into `target`, resuming a previous `.part` with an HTTP Range request when
/// the server allows it, restarting otherwise. The final name appears only after the whole
/// body arrived (rename), and callers verify it before use. With `expected_size`, a body
/// announced or arriving longer than that is cut off (an endless body would fill the disk).
pub fn download_url(
    url: &str,
    target: &Path,
    progress: Option<&ProgressFn>,
    limits: &NetLimits,
    expected_size: Option<u64>,
) -> Result<(), FetchError> {
    let fail = |reason: String| FetchError::Download {
        url: url.to_string(),
        reason,
    };
    let cache_fail = |e: std::io::Error| FetchError::Cache {
        path: target.to_path_buf(),
        reason: e.to_string(),
    };
    if let Some(dir) = target.parent() {
        ensure_writable(dir)?;
    }
    let part = PathBuf::from(format!("{}.part", target.display()));
    // The partial file is opened to append: never through a link or onto a special file.
    zoo_io::check_replaceable(&part).map_err(cache_fail)?;
    zoo_io::check_replaceable(target).map_err(cache_fail)?;
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let mut response = request(url, have, limits).map_err(fail)?;
    let resumed = response.status() == reqwest::StatusCode::PARTIAL_CONTENT;
    let total = response
        .content_length()
        .map(|n| n + if resumed { have } else { 0 })
        .unwrap_or(0);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(resumed)
        .write(true)
        .truncate(!resumed)
        .open(&part)
        .map_err(cache_fail)?;
    let mut done = if resumed { have } else { 0 };
    let mut buf = vec![0u8; 1 << 16];
    if let Some(cap) = expected_size.filter(|&cap| total > cap) {
        return Err(fail(format!(
            "the server announces {total} bytes, more than the {cap} expected"
        )));
    }
    let mut watch = crate::limits::Watch::capped(*limits, expected_size);
    loop {
        let n = std::io::Read::read(&mut response, &mut buf).map_err(|e| {
            fail(format!(
                "connection lost or stalled after {done} bytes: {e}"
            ))
        })?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(cache_fail)?;
        done += n as u64;
        watch.progress(done);
        if let Some(why) = watch.verdict() {
            return Err(fail(why));
        }
        if let Some(p) = progress {
            p(done, total);
        }
    }
    file.sync_all().map_err(cache_fail)?;
    if total > 0 && done != total {
        return Err(fail(format!(
            "connection closed after {done} of {total} bytes"
        )));
    }
    std::fs::rename(&part, target).map_err(cache_fail)
}

/// The GET of `url`, asking for the bytes from `have` on when a partial file exists; an HTTP
/// error status is an error. `timeout` bounds the request up to its headers and then each read
/// of the body.
fn request(url: &str, have: u64, limits: &NetLimits) -> Result<Response, String> {
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(limits.connect)
        .timeout(limits.stall)
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = client.get(url);
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let response = request.send().map_err(|e| describe(&e, limits))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    Ok(response)
}

/// A request error in words, saying when it was a timeout and which limit applied.
fn describe(e: &reqwest::Error, limits: &NetLimits) -> String {
    if e.is_timeout() {
        return format!(
            "timed out: no answer within {:.0} s (stalled; ZOO_FETCH_TIMEOUT or --timeout sets the limit)",
            limits.stall.as_secs_f64()
        );
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}
