//! A real `mlflow server` for the tracker tests: started on loopback with a
//! SQLite store and its artifacts in a temporary directory, stopped (its
//! whole process group) when dropped, panics included. Shared by
//! burnfit-core's and the CLI's tests (`#[path]` include).
//!
//! The server comes from the virtual environment `make test` creates
//! (`target/mlflow-venv`, scripts/install-test-deps.sh), or the `mlflow`
//! executable `$BURNFIT_MLFLOW` names. Without one the tests skip, unless
//! `BURNFIT_REQUIRE_MLFLOW` is set.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to answer `/health` (its first start
/// creates the SQLite schema; a busy 2-core machine takes ~25 s).
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// A running `mlflow server`.
pub struct MlflowServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub uri: String,
    /// Holds the store, the artifacts and the server's log.
    pub dir: tempfile::TempDir,
}

/// The `mlflow` executable, or `None` (skip) when there is none.
pub fn mlflow_executable() -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let exe = std::env::var_os("BURNFIT_MLFLOW")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/mlflow-venv/bin/mlflow"));
    if exe.exists() {
        return Some(exe);
    }
    assert!(
        std::env::var_os("BURNFIT_REQUIRE_MLFLOW").is_none(),
        "no mlflow at {} (make test installs it)",
        exe.display()
    );
    eprintln!(
        "skipped: no mlflow at {} (make test installs it)",
        exe.display()
    );
    None
}

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl MlflowServer {
    /// Starts a server and waits until `/health` answers; `None` when
    /// mlflow is not installed (the test skips).
    pub fn start() -> Option<Self> {
        let exe = mlflow_executable()?;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(exe)
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                dir.path().join("mlflow.db").display()
            ))
            .arg("--artifacts-destination")
            .arg(dir.path().join("artifacts"))
            .args(["--workers", "1"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group: the server's workers go with it.
            .process_group(0)
            .spawn()
            .expect("mlflow server starts");
        let mut server = Self {
            child,
            uri: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok((200, _)) = http(&server.uri, "GET", "/health", None) {
                return Some(server);
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("mlflow server exited ({status}):\n{}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "mlflow server did not answer within {} s:\n{}",
                START_TIMEOUT.as_secs(),
                server.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `GET /api/2.0/mlflow/<endpoint>` (query included), as JSON.
    pub fn get(&self, endpoint: &str) -> serde_json::Value {
        let (status, body) = http(
            &self.uri,
            "GET",
            &format!("/api/2.0/mlflow/{endpoint}"),
            None,
        )
        .unwrap_or_else(|e| panic!("GET {endpoint}: {e}"));
        assert_eq!(status, 200, "GET {endpoint}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// `POST /api/2.0/mlflow/<endpoint>` with a JSON body, as JSON.
    pub fn post(&self, endpoint: &str, body: serde_json::Value) -> serde_json::Value {
        let (status, reply) = http(
            &self.uri,
            "POST",
            &format!("/api/2.0/mlflow/{endpoint}"),
            Some(body.to_string()),
        )
        .unwrap_or_else(|e| panic!("POST {endpoint}: {e}"));
        assert_eq!(status, 200, "POST {endpoint}: {reply}");
        serde_json::from_str(&reply).unwrap()
    }

    /// The runs of experiment `name`.
    pub fn runs(&self, experiment: &str) -> Vec<serde_json::Value> {
        let id = self.get(&format!(
            "experiments/get-by-name?experiment_name={experiment}"
        ))["experiment"]["experiment_id"]
            .as_str()
            .unwrap()
            .to_string();
        let reply = self.post(
            "runs/search",
            serde_json::json!({"experiment_ids": [id], "max_results": 100}),
        );
        reply["runs"].as_array().cloned().unwrap_or_default()
    }

    /// `runs/get`'s `run`.
    pub fn run(&self, run_id: &str) -> serde_json::Value {
        self.get(&format!("runs/get?run_id={run_id}"))["run"].clone()
    }

    /// The run's parameters.
    pub fn params(&self, run_id: &str) -> std::collections::BTreeMap<String, String> {
        self.run(run_id)["data"]["params"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["key"].as_str().unwrap().to_string(),
                    p["value"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Every point of metric `key`, as `(step, value)` in step order
    /// (NaN for MLflow's `"NaN"`).
    pub fn history(&self, run_id: &str, key: &str) -> Vec<(i64, f64)> {
        let reply = self.get(&format!(
            "metrics/get-history?run_id={run_id}&metric_key={key}&max_results=25000"
        ));
        let mut points: Vec<(i64, f64)> = reply["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let value = match &m["value"] {
                    serde_json::Value::String(s) => s.parse().unwrap(),
                    v => v.as_f64().unwrap(),
                };
                (m["step"].as_i64().unwrap_or(0), value)
            })
            .collect();
        points.sort_by_key(|p| p.0);
        points
    }

    /// The metric keys the run holds.
    pub fn metric_keys(&self, run_id: &str) -> Vec<String> {
        let mut keys: Vec<String> = self.run(run_id)["data"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| m["key"].as_str().unwrap().to_string())
            .collect();
        keys.sort();
        keys
    }

    /// The run's artifact files (recursively) and their sizes.
    pub fn artifacts(&self, run_id: &str) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut dirs = vec![String::new()];
        while let Some(dir) = dirs.pop() {
            let reply = self.get(&format!("artifacts/list?run_id={run_id}&path={dir}"));
            for file in reply["files"].as_array().into_iter().flatten() {
                let path = file["path"].as_str().unwrap().to_string();
                if file["is_dir"].as_bool().unwrap_or(false) {
                    dirs.push(path);
                } else {
                    out.push((path, file["file_size"].as_u64().unwrap_or(0)));
                }
            }
        }
        out.sort();
        out
    }
}

impl MlflowServer {
    /// An artifact's content, downloaded through the server's artifact
    /// proxy (runs whose artifact URI is `mlflow-artifacts:/…`).
    pub fn artifact_text(&self, run_id: &str, path: &str) -> String {
        let uri = self.run(run_id)["info"]["artifact_uri"]
            .as_str()
            .unwrap()
            .to_string();
        let root = uri
            .strip_prefix("mlflow-artifacts:")
            .unwrap_or_else(|| panic!("artifact URI {uri}"))
            .trim_start_matches('/');
        let (status, body) = http(
            &self.uri,
            "GET",
            &format!("/api/2.0/mlflow-artifacts/artifacts/{root}/{path}"),
            None,
        )
        .unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        body
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Whatever is left of the group (workers that ignored TERM).
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 exchange (the server closes the connection after it, so the
/// reply is everything up to EOF): status and body.
pub fn http(
    uri: &str,
    method: &str,
    path: &str,
    json_body: Option<String>,
) -> Result<(u16, String), String> {
    let host = uri.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let body = json_body.unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).map_err(|e| e.to_string())?;
    let reply = String::from_utf8_lossy(&reply);
    let (head, body) = reply.split_once("\r\n\r\n").ok_or("no HTTP reply")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    Ok((status, body.to_string()))
}
