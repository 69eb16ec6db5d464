//! A loopback HTTP server that serves files in the Hugging Face Hub's URL layout
//! (`/{repo}/resolve/{revision}/{path}`, HEAD and GET, Range, ETag, X-Repo-Commit,
//! Content-Length/X-Linked-Size), and can misbehave on purpose: wrong bytes, an HTTP status,
//! or a connection cut halfway through the body. It records every request.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Normal,
    /// Same length, some bytes flipped.
    Corrupt,
    /// Every request answers this status.
    Status(u16),
    /// Headers announce the full length, half the body is sent, then the socket closes.
    CutHalfway,
    /// Every request is read and never answered (for at most 20 s).
    Silent,
    /// GETs get their headers and then no body (for at most 20 s); HEADs are answered.
    NoBody,
    /// GETs get their headers, then one byte every 100 ms (for at most 20 s).
    Drip,
    /// GETs get headers without a length and then the file over and over, up to 256 MB or 20 s
    /// (an endless body); HEADs announce the file's own size.
    Endless,
}

/// How long a misbehaving mode keeps a connection before giving up (tests stay bounded).
const MISBEHAVE_FOR: std::time::Duration = std::time::Duration::from_secs(20);

#[derive(Default)]
struct State {
    files: HashMap<String, (Vec<u8>, String)>,
    requests: Vec<(String, String)>,
    mode: Option<Mode>,
}

pub struct HubServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HubServer {
    pub fn start(mode: Mode) -> Self {
        Self::start_at("127.0.0.1:0".parse().unwrap(), mode)
    }

    /// Binds a given address (to "restart" a server on the same port).
    pub fn start_at(addr: SocketAddr, mode: Mode) -> Self {
        let listener = TcpListener::bind(addr).expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            mode: Some(mode),
            ..Default::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let s = s.clone();
                    std::thread::spawn(move || handle(conn, &s));
                }
            }
        });
        Self {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `bytes` at `{repo}/{path}` for any revision; the ETag is their sha256 (as the Hub
    /// does for LFS files), given in hex.
    pub fn add(&self, repo: &str, path: &str, bytes: Vec<u8>, sha256: &str) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(format!("/{repo}/{path}"), (bytes, sha256.to_string()));
    }

    /// Serves `bytes` at a plain URL path.
    pub fn add_plain(&self, url_path: &str, bytes: Vec<u8>) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(url_path.to_string(), (bytes, String::new()));
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    /// `(method, path)` of every request so far.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn gets_of(&self, suffix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|(m, p)| m == "GET" && p.ends_with(suffix))
            .count()
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(mut conn: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut range_start = 0u64;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            range_start = v.trim().trim_end_matches('-').parse().unwrap_or(0);
        }
    }
    let (mode, file) = {
        let mut s = state.lock().unwrap();
        s.requests.push((method.clone(), path.clone()));
        // "/{owner}/{name}/resolve/{rev}/{file...}" -> "/{owner}/{name}/{file...}"
        let key = match path.splitn(6, '/').collect::<Vec<_>>().as_slice() {
            ["", owner, name, "resolve", _rev, file] => format!("/{owner}/{name}/{file}"),
            _ => path.clone(),
        };
        (s.mode.unwrap_or(Mode::Normal), s.files.get(&key).cloned())
    };
    if mode == Mode::Silent {
        std::thread::sleep(MISBEHAVE_FOR);
        return;
    }
    if let Mode::Status(code) = mode {
        let body = format!("status {code}");
        let _ = write!(
            conn,
            "HTTP/1.1 {code} Err\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        if method != "HEAD" {
            let _ = conn.write_all(body.as_bytes());
        }
        return;
    }
    let Some((mut bytes, sha)) = file else {
        let _ = write!(conn, "HTTP/1.1 404 Not Found\r\nX-Error-Code: EntryNotFound\r\nContent-Length: 9\r\nConnection: close\r\n\r\n");
        if method != "HEAD" {
            let _ = conn.write_all(b"not found");
        }
        return;
    };
    if mode == Mode::Corrupt {
        for i in (0..bytes.len()).step_by(97) {
            bytes[i] ^= 0x5a;
        }
    }
    let total = bytes.len() as u64;
    let start = range_start.min(total);
    let (status, extra) = if start > 0 {
        (
            "206 Partial Content",
            format!(
                "Content-Range: bytes {start}-{}/{total}\r\n",
                total.saturating_sub(1)
            ),
        )
    } else {
        ("200 OK", String::new())
    };
    let body = &bytes[start as usize..];
    let etag = if sha.is_empty() {
        String::new()
    } else {
        format!("ETag: \"{sha}\"\r\nX-Linked-Etag: \"{sha}\"\r\n")
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nX-Linked-Size: {total}\r\n{etag}X-Repo-Commit: {COMMIT}\r\nAccept-Ranges: bytes\r\n{extra}Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if mode == Mode::NoBody {
        if conn.write_all(head.as_bytes()).is_err() || method == "HEAD" {
            return;
        }
        let _ = conn.flush();
        std::thread::sleep(MISBEHAVE_FOR);
        return;
    }
    if mode == Mode::Endless {
        let head = format!(
            "HTTP/1.1 200 OK\r\nX-Linked-Size: {total}\r\n{etag}X-Repo-Commit: {COMMIT}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
        );
        if conn.write_all(head.as_bytes()).is_err() || method == "HEAD" {
            return;
        }
        let (started, mut sent) = (std::time::Instant::now(), 0usize);
        while started.elapsed() < MISBEHAVE_FOR && sent < 256 << 20 {
            if conn.write_all(&bytes).is_err() {
                return;
            }
            sent += bytes.len();
        }
        return;
    }
    if conn.write_all(head.as_bytes()).is_err() || method == "HEAD" {
        return;
    }
    if mode == Mode::Drip {
        let started = std::time::Instant::now();
        for b in body {
            if started.elapsed() > MISBEHAVE_FOR || conn.write_all(&[*b]).is_err() {
                return;
            }
            let _ = conn.flush();
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        return;
    }
    if mode == Mode::CutHalfway {
        let _ = conn.write_all(&body[..body.len() / 2]);
        let _ = conn.flush();
        let _ = conn.shutdown(std::net::Shutdown::Both);
        return;
    }
    let _ = conn.write_all(body);
}
