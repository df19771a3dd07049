//! Starts the real `chaintrace` binary on free loopback ports with its own
//! data directory, and talks to it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_chaintrace")
}

/// Runs the binary to completion: (success, stdout, stderr).
pub fn chaintrace(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run chaintrace");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fixture from the repository's `testdata/` (real client payloads, never edited).
pub fn testdata(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// `chaintrace serve` on port 0 everywhere (loopback).
pub const SERVE_ON_FREE_PORTS: [&str; 15] = [
    "serve",
    "--otlp-grpc",
    "127.0.0.1:0",
    "--otlp-http",
    "127.0.0.1:0",
    "--http",
    "127.0.0.1:0",
    "--jaeger-compact",
    "127.0.0.1:0",
    "--jaeger-binary",
    "127.0.0.1:0",
    "--jaeger-http",
    "127.0.0.1:0",
    "--zipkin",
    "127.0.0.1:0",
];

/// A running server; killed when dropped.
pub struct Server {
    child: Child,
    /// OTLP/gRPC address.
    pub grpc: SocketAddr,
    /// `http://host:port/v1/traces`.
    pub otlp_http: String,
    /// `http://host:port` of the query API.
    pub api: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// UDP address of the Jaeger Thrift compact receiver.
    pub jaeger_compact: Option<SocketAddr>,
    /// `http://host:port/api/traces` of the Jaeger collector receiver.
    pub jaeger_http: Option<String>,
    /// `http://host:port/api/v2/spans` of the Zipkin receiver.
    pub zipkin: Option<String>,
}

impl Server {
    /// Starts `chaintrace serve` on port 0 everywhere and waits until it prints its addresses.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(bin())
            .args(SERVE_ON_FREE_PORTS)
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("CHAINTRACE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start chaintrace serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut grpc, mut otlp_http, mut api) = (None, None, None);
        let (mut jaeger_compact, mut jaeger_http, mut zipkin) = (None, None, None);
        while grpc.is_none() || otlp_http.is_none() || api.is_none() {
            // A generous bound so a broken server fails the test instead of hanging it.
            let line = match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => line,
                Err(e) => {
                    let _ = child.kill();
                    panic!("chaintrace serve did not print its addresses: {e}");
                }
            };
            let addr = line.rsplit(' ').next().unwrap_or_default().to_string();
            if line.starts_with("OTLP/gRPC listening on ") {
                grpc = Some(addr.parse().expect("grpc addr"));
            } else if line.starts_with("OTLP/HTTP listening on ") {
                otlp_http = Some(addr);
            } else if line.starts_with("query API listening on ") {
                api = Some(addr);
            } else if line.starts_with("Jaeger Thrift compact (UDP) listening on ") {
                jaeger_compact = Some(addr.parse().expect("Jaeger compact addr"));
            } else if line.starts_with("Jaeger Thrift HTTP listening on ") {
                jaeger_http = Some(addr);
            } else if line.starts_with("Zipkin listening on ") {
                zipkin = Some(addr);
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Server {
            child,
            grpc: grpc.unwrap(),
            otlp_http: otlp_http.unwrap(),
            api: api.unwrap(),
            data_dir: data_dir.to_path_buf(),
            jaeger_compact,
            jaeger_http,
            zipkin,
        }
    }

    /// Health answers, and a new trace of `n` (from [`crate::otlp::request`])
    /// is stored and readable: the server survived what came before.
    pub async fn assert_still_serving(&self, n: u64) {
        use prost::Message;
        let (status, body) = self.get_json("/api/v1/health").await;
        assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
        let (status, _) = self
            .post_traces(
                "application/x-protobuf",
                crate::otlp::request(n, 2).encode_to_vec(),
                false,
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(crate::otlp::span_ids(self, n).await.len(), 2);
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }

    /// `http://127.0.0.1:port` of the gRPC receiver, as tonic clients want it.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// GET a query API path, returning status and JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = reqwest::get(format!("{}{path}", self.api))
            .await
            .expect("GET");
        let status = resp.status().as_u16();
        let body = resp.text().await.expect("body");
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"));
        (status, json)
    }

    /// POST a body to `/v1/traces`.
    pub async fn post_traces(
        &self,
        content_type: &str,
        body: Vec<u8>,
        gzip: bool,
    ) -> (u16, Vec<u8>) {
        let mut req = reqwest::Client::new()
            .post(&self.otlp_http)
            .header("content-type", content_type)
            .body(body);
        if gzip {
            req = req.header("content-encoding", "gzip");
        }
        let resp = req.send().await.expect("POST /v1/traces");
        let status = resp.status().as_u16();
        (status, resp.bytes().await.expect("body").to_vec())
    }

    /// Waits (bounded: a minute) until every span in memory has been cut
    /// into a block, then returns; panics with `what` if that never
    /// happens. Not a timing assertion: it only waits for a state.
    pub async fn wait_for_cut(&self, what: &str) {
        for _ in 0..600 {
            let (_, stats) = self.get_json("/api/v1/stats").await;
            if stats["blocks"].as_u64().unwrap_or(0) > 0 && stats["spans"].as_u64() == Some(0) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{what}: the spans were never cut into a block");
    }

    /// The server's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .expect("VmHWM in /proc/PID/status")
            * 1024
    }

    /// The Jaeger-shaped trace, panicking unless it exists.
    pub async fn jaeger_trace(&self, trace_id: &str) -> Value {
        let (status, body) = self.get_json(&format!("/api/traces/{trace_id}")).await;
        assert_eq!(status, 200, "trace {trace_id}: {body}");
        body["data"][0].clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The founding document's RAG chain, as its Python and Rust versions
/// send it: every span and the name of its parent. (`api_call` is last:
/// a run that retries it has more than one.)
pub const RAG_CHAIN_TREE: [(&str, Option<&str>); 7] = [
    ("process_query", None),
    ("fetch_context", Some("process_query")),
    ("embed_query", Some("process_query")),
    ("vector_search", Some("process_query")),
    ("llm_call", Some("process_query")),
    ("prompt_assembly", Some("llm_call")),
    ("api_call", Some("llm_call")),
];

/// Span of a Jaeger trace by operation name (the first one).
pub fn span_named<'a>(trace: &'a Value, name: &str) -> &'a Value {
    trace["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .find(|s| s["operationName"] == name)
        .unwrap_or_else(|| panic!("no span named {name}"))
}

/// The value of a Jaeger tag.
pub fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| &t["value"])
}

/// The name of the parent span (via the CHILD_OF reference), if any.
pub fn parent_name(trace: &Value, span: &Value) -> Option<String> {
    let parent_id = span["references"]
        .as_array()?
        .iter()
        .find(|r| r["refType"] == "CHILD_OF")?["spanID"]
        .clone();
    trace["spans"]
        .as_array()?
        .iter()
        .find(|s| s["spanID"] == parent_id)
        .map(|s| s["operationName"].as_str().unwrap_or_default().to_string())
}

/// `s` percent-encoded for a query parameter (unreserved bytes kept).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `chaintrace keys add` into `file` for `tenant`: the new key, as printed.
pub fn add_key(file: &Path, name: &str, scopes: &str, tenant: &str) -> String {
    let file = file.to_str().expect("utf-8 path");
    let (ok, out, err) = chaintrace(&[
        "keys", "add", "--file", file, "--name", name, "--scopes", scopes, "--tenant", tenant,
    ]);
    assert!(ok, "keys add {name}: {err}");
    let key = out.trim().to_string();
    assert!(key.starts_with("ctk_") && key.len() == 68, "{out}");
    key
}

/// The Python of the virtualenv `scripts/test` made and named in `var`.
pub fn python(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run the suite with ./scripts/test, \
             which installs the Python packages the tests drive into virtualenvs"
        )
    })
}

/// A script of `tests/it/python`.
pub fn python_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/python")
        .join(name)
}

/// Runs `cmd` off the async workers; it must succeed (else the test fails
/// with `what` and its output); its last line of output, as JSON.
pub async fn last_json_line(what: &str, mut cmd: Command) -> Value {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run the command");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what} failed\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{what}: the last line is not JSON ({e}): {stdout}"))
}

/// `google.rpc.Status`, what OTLP/HTTP refusals carry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// The gRPC code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// What was wrong.
    #[prost(string, tag = "2")]
    pub message: String,
}

impl Server {
    /// GET a query API path with `key` as a bearer token (or none): status and body text.
    pub async fn get_with_key(&self, path: &str, key: Option<&str>) -> (u16, String) {
        let mut req = reqwest::Client::new().get(format!("{}{path}", self.api));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.expect("GET");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }
}
