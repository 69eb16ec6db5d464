//! `zoo fetch` / `zoo list` end to end against a loopback server in the Hub's URL layout.

mod common;
mod hub_server;

use common::{shared, small_rgb_classifier, zoo, TempDir};
use hub_server::{HubServer, Mode};

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn small_model_bytes(t: &TempDir) -> Vec<u8> {
    let p = t.path().join("m.onnx");
    small_rgb_classifier(&p);
    std::fs::read(p).unwrap()
}

#[test]
fn list_shows_every_card_and_cache_state() {
    let t = TempDir::new("list");
    let run = zoo(&["list", "--json"], t.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    let names: Vec<&str> = j
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 58);
    let card = |n: &str| {
        j.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(card("alexnet")["size"], 243_863_787);
    assert_eq!(card("alexnet")["cached"], false);
    assert_eq!(card("alexnet")["opsets"], serde_json::json!([7, 8, 9, 12]));
    assert!(card("lenet")["source"]
        .as_str()
        .unwrap()
        .contains("mnist-8.onnx"));
    assert_eq!(card("resnet50-v1")["family"], "ResNet");
    let families: std::collections::BTreeSet<&str> = j
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["family"].as_str().unwrap())
        .collect();
    assert!(families.len() >= 27, "{families:?}");
    let table = zoo(&["list"], t.path());
    assert!(
        table.stdout.contains("58 model cards in 27 families"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("data_0 1x3x224x224"),
        "{}",
        table.stdout
    );
    // Grouped by family: the ResNet heading, then its cards.
    let resnet = table.stdout.find("\nResNet\n").expect("a ResNet group");
    assert!(
        table.stdout[resnet..].contains("  resnet18-v1"),
        "{}",
        table.stdout
    );
}

#[test]
fn fetch_url_verifies_caches_and_does_not_download_twice() {
    let t = TempDir::new("fetch-url");
    let bytes = small_model_bytes(&t);
    let sha = sha256_hex(&bytes);
    let server = HubServer::start(Mode::Normal);
    server.add_plain("/files/small.onnx", bytes.clone());
    let url = format!("{}/files/small.onnx", server.endpoint());

    let run = zoo(&["fetch", "--url", &url, "--sha256", &sha], t.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let path = run.stdout.lines().last().unwrap().to_string();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert!(
        run.stderr.contains("import check: zoo vs tract") && run.stderr.contains("pass"),
        "{}",
        run.stderr
    );

    let again = zoo(
        &["fetch", "--url", &url, "--sha256", &sha, "--no-check"],
        t.path(),
    );
    assert_eq!(again.code, 0);
    assert!(
        again.stderr.contains("already in the cache"),
        "{}",
        again.stderr
    );
    assert_eq!(again.stdout.trim(), path);
    assert_eq!(
        server.gets_of("/files/small.onnx"),
        1,
        "the second fetch must not download"
    );
}

#[test]
fn fetch_url_with_wrong_checksum_names_both_and_keeps_nothing() {
    let t = TempDir::new("fetch-bad-sha");
    let bytes = small_model_bytes(&t);
    let server = HubServer::start(Mode::Normal);
    server.add_plain("/files/small.onnx", bytes.clone());
    let url = format!("{}/files/small.onnx", server.endpoint());
    let wrong = "ab".repeat(32);
    let run = zoo(
        &["fetch", "--url", &url, "--sha256", &wrong, "--no-check"],
        t.path(),
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(&wrong) && run.stderr.contains(&sha256_hex(&bytes)),
        "{}",
        run.stderr
    );
    let offline = zoo(
        &[
            "fetch",
            "--url",
            &url,
            "--sha256",
            &wrong,
            "--offline",
            "--no-check",
        ],
        t.path(),
    );
    assert_eq!(offline.code, 2);
    assert!(offline.stderr.contains("--offline"), "{}", offline.stderr);
}

#[test]
fn fetch_url_http_errors_name_url_and_status() {
    let t = TempDir::new("fetch-http");
    for (mode, status) in [
        (Mode::Status(500), "500"),
        (Mode::Status(401), "401"),
        (Mode::Status(404), "404"),
    ] {
        let server = HubServer::start(mode);
        let url = format!("{}/files/x.onnx", server.endpoint());
        let run = zoo(
            &[
                "fetch",
                "--url",
                &url,
                "--sha256",
                &"00".repeat(32),
                "--no-check",
            ],
            t.path(),
        );
        assert_eq!(run.code, 2);
        assert!(
            run.stderr.contains(&url) && run.stderr.contains(status),
            "{}",
            run.stderr
        );
    }
    // Nothing listening at all.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/files/x.onnx");
    let run = zoo(
        &[
            "fetch",
            "--url",
            &url,
            "--sha256",
            &"00".repeat(32),
            "--no-check",
        ],
        t.path(),
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains(&url), "{}", run.stderr);
}

#[test]
fn fetch_url_cut_mid_transfer_then_resumes_to_a_verified_file() {
    let t = TempDir::new("fetch-cut");
    let bytes = small_model_bytes(&t);
    let sha = sha256_hex(&bytes);
    let server = HubServer::start(Mode::CutHalfway);
    server.add_plain("/files/small.onnx", bytes.clone());
    let url = format!("{}/files/small.onnx", server.endpoint());
    let run = zoo(
        &["fetch", "--url", &url, "--sha256", &sha, "--no-check"],
        t.path(),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    let offline = zoo(
        &[
            "fetch",
            "--url",
            &url,
            "--sha256",
            &sha,
            "--offline",
            "--no-check",
        ],
        t.path(),
    );
    assert_eq!(
        offline.code, 2,
        "a partial file must never be taken as valid"
    );

    server.set_mode(Mode::Normal);
    let run = zoo(
        &["fetch", "--url", &url, "--sha256", &sha, "--no-check"],
        t.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(std::fs::read(run.stdout.trim()).unwrap(), bytes);
    let resumed = server.requests().iter().filter(|(m, _)| m == "GET").count();
    assert_eq!(resumed, 2);
}

#[test]
fn fetch_into_a_full_disk_fails_clearly_and_keeps_no_file() {
    let t = TempDir::new("fetch-full");
    let bytes = small_model_bytes(&t);
    let sha = sha256_hex(&bytes);
    let server = HubServer::start(Mode::Normal);
    server.add_plain("/files/small.onnx", bytes);
    let url = format!("{}/files/small.onnx", server.endpoint());
    // RLIMIT_FSIZE makes writes past 2 KiB fail with EFBIG, as a full disk fails them.
    let script = format!(
        "trap '' XFSZ; ulimit -f 2; exec '{}' fetch --url '{url}' --sha256 {sha} --no-check",
        env!("CARGO_BIN_EXE_zoo")
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("ZOO_CACHE", t.path().join("zoo-cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot write to the cache") && stderr.contains("too large"),
        "{stderr}"
    );
    let leftovers: Vec<_> = walk(&t.path().join("zoo-cache"))
        .into_iter()
        .filter(|p| p.ends_with("small.onnx"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn unknown_model_and_unwritable_cache() {
    let t = TempDir::new("fetch-errors");
    let run = zoo(&["fetch", "vgg17"], t.path());
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown model `vgg17`")
            && run
                .stderr
                .contains("known models: alexnet, beit-base, caffenet"),
        "{}",
        run.stderr
    );

    // A cache path below a regular file cannot be created, even by root.
    let blocker = t.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zoo"))
        .args([
            "fetch",
            "lenet",
            "--endpoint",
            "http://127.0.0.1:9",
            "--no-check",
        ])
        .env("HF_HUB_CACHE", blocker.join("hub"))
        .env("ZOO_CACHE", t.path().join("zoo"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("cannot write to the cache") && stderr.contains("file/hub"),
        "{stderr}"
    );

    let run = zoo(&["fetch", "lenet", "--offline"], t.path());
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("not in the cache") && run.stderr.contains("--offline"),
        "{}",
        run.stderr
    );
}

const LENET_REPO: &str = "onnxmodelzoo/legacy_models";
const LENET_PATH: &str = "validated/vision/classification/mnist/model/mnist-8.onnx";
const LENET_SHA: &str = "2f06e72de813a8635c9bc0397ac447a601bdbfa7df4bebc278723b958831c9bf";

fn lenet_server(mode: Mode) -> HubServer {
    let server = HubServer::start(mode);
    server.add(
        LENET_REPO,
        LENET_PATH,
        std::fs::read(shared("models/mnist-8.onnx")).unwrap(),
        LENET_SHA,
    );
    server
}

fn fetch_lenet(server: &HubServer, t: &TempDir, extra: &[&str]) -> common::Run {
    let endpoint = server.endpoint();
    let mut args = vec!["fetch", "lenet", "--endpoint", endpoint.as_str()];
    args.extend_from_slice(extra);
    zoo(&args, t.path())
}

#[test]
#[ignore = "needs ../shared"]
fn fetch_lenet_from_the_hub_layout_verifies_and_second_fetch_does_not_download() {
    let t = TempDir::new("lenet");
    let server = lenet_server(Mode::Normal);
    let run = fetch_lenet(&server, &t, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let path = run.stdout.lines().last().unwrap();
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(sha256_hex(&bytes), LENET_SHA);
    assert!(
        path.contains("models--onnxmodelzoo--legacy_models/snapshots/"),
        "{path}"
    );
    assert!(
        run.stderr.contains("import check") && run.stderr.contains("pass"),
        "{}",
        run.stderr
    );
    let gets = server.gets_of(LENET_PATH);
    assert_eq!(gets, 1);

    let again = fetch_lenet(&server, &t, &["--no-check"]);
    assert_eq!(again.code, 0);
    assert!(again.stderr.contains("already in the cache"));
    assert_eq!(server.gets_of(LENET_PATH), 1, "no GET on the second fetch");

    // The model resolves by name now, and --offline works.
    let inspect = zoo(&["inspect", "lenet", "--json"], t.path());
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    assert_eq!(inspect.json()["total_params"], 5994);
    let offline = zoo(&["fetch", "lenet", "--offline", "--no-check"], t.path());
    assert_eq!(offline.code, 0, "{}", offline.stderr);

    // HF_ENDPOINT is honoured like --endpoint.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zoo"))
        .args(["fetch", "lenet", "--force", "--no-check", "--json"])
        .env("HF_HOME", t.path().join("hf"))
        .env("ZOO_CACHE", t.path().join("zoo"))
        .env("HF_ENDPOINT", server.endpoint())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["status"], "downloaded");
    assert_eq!(server.gets_of(LENET_PATH), 2);

    // A damaged cached copy under --offline is named, with both checksums.
    let mut damaged = std::fs::read(path).unwrap();
    damaged.reverse();
    std::fs::write(path, &damaged).unwrap();
    let offline = zoo(&["fetch", "lenet", "--offline", "--no-check"], t.path());
    assert_eq!(offline.code, 2, "{}", offline.stderr);
    for part in [
        "checksum mismatch",
        LENET_SHA,
        &sha256_hex(&damaged),
        "without --offline",
    ] {
        assert!(offline.stderr.contains(part), "{part}: {}", offline.stderr);
    }
    assert!(
        !offline.stderr.contains("not in the cache"),
        "{}",
        offline.stderr
    );
}

#[test]
#[ignore = "needs ../shared"]
fn corrupted_server_copy_is_rejected_with_both_checksums_and_not_cached() {
    let t = TempDir::new("lenet-corrupt");
    let server = lenet_server(Mode::Corrupt);
    let run = fetch_lenet(&server, &t, &[]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains(LENET_SHA), "{}", run.stderr);
    assert!(run.stderr.contains("got "), "{}", run.stderr);
    let offline = zoo(&["fetch", "lenet", "--offline", "--no-check"], t.path());
    assert_ne!(offline.code, 0, "{}", offline.stdout);
    let leftovers: Vec<_> = walk(&t.path().join("hf"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/blobs/"))
        .collect();
    assert!(leftovers.is_empty(), "bad blob left behind: {leftovers:?}");
}

#[test]
#[ignore = "needs ../shared"]
fn server_killed_mid_transfer_then_restarted_gives_a_verified_file() {
    let t = TempDir::new("lenet-restart");
    let server = lenet_server(Mode::CutHalfway);
    let addr = server.addr;
    let run = fetch_lenet(&server, &t, &["--no-check"]);
    assert_ne!(run.code, 0);
    let offline = zoo(&["fetch", "lenet", "--offline", "--no-check"], t.path());
    assert_ne!(
        offline.code, 0,
        "a partial download must not count as cached"
    );
    drop(server);

    let restarted = HubServer::start_at(addr, Mode::Normal);
    restarted.add(
        LENET_REPO,
        LENET_PATH,
        std::fs::read(shared("models/mnist-8.onnx")).unwrap(),
        LENET_SHA,
    );
    let run = fetch_lenet(&restarted, &t, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        sha256_hex(&std::fs::read(run.stdout.lines().last().unwrap()).unwrap()),
        LENET_SHA
    );
}

#[test]
#[ignore = "needs ../shared"]
fn hub_errors_name_url_and_status() {
    let t = TempDir::new("lenet-500");
    let server = lenet_server(Mode::Status(500));
    let run = fetch_lenet(&server, &t, &["--no-check"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("500")
            && run.stderr.contains(&format!(
                "{}/{LENET_REPO}/resolve/main/{LENET_PATH}",
                server.endpoint()
            )),
        "{}",
        run.stderr
    );
}

/// Names given for things inside a cache cannot reach outside it: nothing outside is deleted,
/// written or created, even when the server is down.
#[test]
fn names_and_revisions_cannot_escape_the_cache() {
    let t = TempDir::new("fetch-escape");
    let victim = t.path().join("victim.txt");
    std::fs::write(&victim, b"keep me").unwrap();
    let sha = "0".repeat(64);
    let url = "http://127.0.0.1:9/files/model.onnx";
    for name in [
        victim.to_str().unwrap(),
        "../../victim.txt",
        "..",
        "a/b.onnx",
    ] {
        let run = zoo(
            &["fetch", "--url", url, "--sha256", &sha, "--name", name],
            t.path(),
        );
        assert_eq!(run.code, 2, "{name}: {}", run.stderr);
        assert!(run.stderr.contains("invalid file name"), "{}", run.stderr);
        assert!(!run.stderr.contains("panicked"));
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    for revision in ["../../../../x/y", "/abs", "a//b", ".git"] {
        let run = zoo(
            &["fetch", "lenet", "--revision", revision, "--offline"],
            t.path(),
        );
        assert_eq!(run.code, 2, "{revision}: {}", run.stderr);
        assert!(run.stderr.contains("invalid revision"), "{}", run.stderr);
    }
    // Nothing appeared beside the caches.
    let mut entries: Vec<String> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert!(
        entries
            .iter()
            .all(|e| ["victim.txt", "hf", "zoo"].contains(&e.as_str())),
        "{entries:?}"
    );
    assert!(!t.path().parent().unwrap().join("x").exists());
}

/// A server that accepts and never answers, answers headers and no body, or drips a byte every
/// 100 ms: every fetch (Hub and --url) fails within its limits, naming the URL and what stalled.
#[test]
fn stalled_and_dripping_servers_fail_within_the_timeouts() {
    for mode in [Mode::Silent, Mode::NoBody, Mode::Drip] {
        let t = TempDir::new("fetch-stall");
        let server = HubServer::start(mode);
        server.add(LENET_REPO, LENET_PATH, vec![7u8; 26_454], LENET_SHA);
        server.add_plain("/files/m.onnx", vec![7u8; 50_000]);
        let url = format!("{}/files/m.onnx", server.endpoint());
        let sha = "0".repeat(64);
        let endpoint = server.endpoint();
        for args in [
            vec!["fetch", "lenet", "--endpoint", endpoint.as_str()],
            vec!["fetch", "--url", url.as_str(), "--sha256", sha.as_str()],
        ] {
            let started = std::time::Instant::now();
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_zoo"))
                .args(&args)
                .env("HF_HOME", t.path().join("hf"))
                .env("ZOO_CACHE", t.path().join("zoo"))
                .env_remove("HF_HUB_CACHE")
                .env("ZOO_FETCH_TIMEOUT", "1")
                .env("ZOO_LOW_SPEED_LIMIT", "1000")
                .env("ZOO_LOW_SPEED_TIME", "2")
                .output()
                .unwrap();
            let took = started.elapsed().as_secs_f64();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{mode:?} {args:?}: {stderr}");
            assert!(took < 15.0, "{mode:?} {args:?} took {took:.1} s");
            assert!(stderr.contains(&server.endpoint()), "{mode:?}: {stderr}");
            assert!(
                ["stalled", "too slow", "timed out", "timeout"]
                    .iter()
                    .any(|w| stderr.contains(w)),
                "{mode:?} {args:?}: {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}

/// A Hub server that sends the card's file over and over (no length, an endless body) is cut
/// off just past the card's size: the fetch fails with the reason and the disk is not filled.
#[test]
fn an_endless_body_stops_at_the_cards_size() {
    let t = TempDir::new("fetch-endless");
    let server = HubServer::start(Mode::Endless);
    server.add(LENET_REPO, LENET_PATH, vec![7u8; 26_454], LENET_SHA);
    let endpoint = server.endpoint();
    let started = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zoo"))
        .args(["fetch", "lenet", "--endpoint", endpoint.as_str()])
        .env("HF_HOME", t.path().join("hf"))
        .env("ZOO_CACHE", t.path().join("zoo"))
        .env_remove("HF_HUB_CACHE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("more than the 26454 bytes expected"),
        "{stderr}"
    );
    assert!(started.elapsed().as_secs_f64() < 15.0, "{stderr}");
    let mut biggest = 0;
    let mut stack = vec![t.path().join("hf")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                biggest = biggest.max(meta.len());
            }
        }
    }
    // At most one network chunk past the size reaches the disk (32,454 bytes measured).
    assert!(
        biggest <= 26_454 + (1 << 20),
        "the cache holds a {biggest}-byte file"
    );
}
