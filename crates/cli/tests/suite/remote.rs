//! Several machines on loopback: two `burnfit serve` processes and a
//! coordinator (`train --remote`), a server lost mid-run, and the resume.
//! Needs the `remote` feature (`make test` turns it on).
#![cfg(feature = "remote")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{burnfit, repo, small_config, text};

/// A `burnfit serve` process and the address it serves.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    /// Serves flex on `bind` (`127.0.0.1:0` for any port).
    fn start(bind: &str, dir: &Path) -> Self {
        let file = dir.join(format!("address-{}", bind.replace([':', '.'], "-")));
        let _ = std::fs::remove_file(&file);
        let child = Command::new(env!("CARGO_BIN_EXE_burnfit"))
            .args([
                "serve",
                "--backend",
                "flex",
                "--bind",
                bind,
                "--address-file",
            ])
            .arg(&file)
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("burnfit serve starts");
        let start = Instant::now();
        let url = loop {
            if let Ok(text) = std::fs::read_to_string(&file)
                && !text.trim().is_empty()
            {
                break text.trim().to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "burnfit serve did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Self { child, url }
    }

    fn port(&self) -> &str {
        self.url.rsplit(':').next().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rows of a run's history.csv.
fn history(run: &Path) -> String {
    std::fs::read_to_string(run.join("history.csv")).unwrap_or_default()
}

fn config(dir: &Path) -> PathBuf {
    // No dropout: the remote and local runs then draw no random numbers, and
    // compare exactly.
    small_config(dir, "kind = \"mlp\"\nhidden = [16]\ndropout = 0.0", "")
}

/// `burnfit train CONFIG` on flex at batch 48 for `epochs` into `run`, with
/// the `extra` flags.
fn train(config: &Path, epochs: &str, run: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        config.to_str().unwrap(),
        "--backend",
        "flex",
        "--epochs",
        epochs,
        "--set",
        "training.batch_size=48",
        "--run-dir",
        run.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    burnfit(&args)
}

#[test]
fn two_servers_train_with_the_coordinator_as_local_workers_would() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path());
    let (a, b) = (
        Server::start("127.0.0.1:0", tmp.path()),
        Server::start("127.0.0.1:0", tmp.path()),
    );
    let remote = format!("{},{}", a.url, b.url);
    let run = tmp.path().join("remote");
    let out = train(&config, "2", &run, &["--remote", &remote]);
    assert!(out.status.success(), "{}", text(&out));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["devices"],
        serde_json::json!(["flex", a.url, b.url])
    );

    // The same run on three local workers: the same history.
    let local = tmp.path().join("local");
    let out = train(&config, "2", &local, &["--devices", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(history(&run), history(&local));
}

#[test]
fn a_lost_server_ends_training_with_one_line_and_resume_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path());
    let a = Server::start("127.0.0.1:0", tmp.path());
    let mut b = Server::start("127.0.0.1:0", tmp.path());
    let remote = format!("{},{}", a.url, b.url);
    let run = tmp.path().join("run");
    let coordinator = Command::new(env!("CARGO_BIN_EXE_burnfit"))
        .args(["train", config.to_str().unwrap(), "--backend", "flex"])
        .args(["--epochs", "30", "--set", "training.batch_size=48"])
        .args(["--remote", &remote, "--run-dir", run.to_str().unwrap()])
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill a server once an epoch (and its backup) is done.
    let start = Instant::now();
    while history(&run).lines().count() < 2 {
        assert!(start.elapsed() < Duration::from_secs(120), "no epoch ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    let port = b.port().to_string();
    let _ = b.child.kill();
    let _ = b.child.wait();
    let out = ended(coordinator, "a lost server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("--resume"), "{stderr}");
    let before = history(&run);
    assert!(
        !run.join("summary.json").exists(),
        "the run is not finished"
    );

    // The server comes back on its port: the run continues from its backup.
    b = Server::start(&format!("127.0.0.1:{port}"), tmp.path());
    let out = train(&config, "30", &run, &["--resume"]);
    assert!(out.status.success(), "{}", text(&out));
    // The epochs before the loss are kept as they were, and the run goes on
    // from them to its end (30 epochs, or EarlyStopping's stop).
    let after = history(&run);
    assert!(after.starts_with(&before), "{before}\n---\n{after}");
    assert!(after.lines().count() > before.lines().count(), "{after}");
    for (row, line) in after.lines().skip(1).enumerate() {
        assert!(line.starts_with(&format!("{row},")), "{after}");
    }
    assert!(run.join("summary.json").exists());
    drop(b);
}

#[test]
fn an_unreachable_server_is_one_line_and_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path());
    let run = tmp.path().join("run");
    // Something that accepts connections and never answers them.
    let deaf = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let deaf = format!("ws://{}", deaf.local_addr().unwrap());
    for (remote, expected) in [
        ("ws://127.0.0.1:1", "cannot connect"),
        ("ws://127.0.0.1", "no port"),
        ("ws://127.0.0.1:99999", "not a port"),
        (deaf.as_str(), "did not answer"),
    ] {
        let out = burnfit(&[
            "train",
            config.to_str().unwrap(),
            "--backend",
            "flex",
            "--remote",
            remote,
            "--run-dir",
            run.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{remote}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(remote), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!run.exists(), "nothing is created");
    }
}

/// Starts a coordinator training on the servers at `remote` for many
/// epochs; returns it once its first epoch has ended.
fn coordinator_after_an_epoch(config: &Path, remote: &str, run: &Path, extra: &[&str]) -> Child {
    let coordinator = Command::new(env!("CARGO_BIN_EXE_burnfit"))
        .args(["train", config.to_str().unwrap(), "--backend", "flex"])
        .args(["--epochs", "200", "--set", "training.batch_size=48"])
        .args(["--remote", remote, "--run-dir", run.to_str().unwrap()])
        .args(extra)
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while history(run).lines().count() < 2 {
        assert!(start.elapsed() < Duration::from_secs(120), "no epoch ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    coordinator
}

/// Waits (bounded) for `child` to end; its output.
fn ended(mut child: Child, what: &str) -> std::process::Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("{what}: the coordinator did not end");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// Stops (SIGSTOP) or continues (SIGCONT) a server: stopped, it keeps its
/// connections open and answers nothing.
fn freeze(server: &Server, frozen: bool) {
    let signal = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
    // SAFETY: signalling a child process this test started.
    unsafe { libc::kill(server.child.id() as i32, signal) };
}

#[test]
fn a_server_that_stops_answering_ends_the_run_at_the_step_timeout_with_the_resume_command() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path());
    let server = Server::start("127.0.0.1:0", tmp.path());
    let run = tmp.path().join("run");
    let extra = ["--set", "training.step_timeout=2"];
    let coordinator = coordinator_after_an_epoch(&config, &server.url, &run, &extra);
    freeze(&server, true);
    let out = ended(coordinator, "step timeout");
    freeze(&server, false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("step timeout of 2 s"), "{stderr}");
    assert!(errors[0].contains("--resume"), "{stderr}");
}

#[test]
fn ctrl_c_while_a_server_does_not_answer_stops_at_the_last_finished_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path());
    let server = Server::start("127.0.0.1:0", tmp.path());
    let run = tmp.path().join("run");
    let extra = ["--set", "training.step_timeout=0"];
    let coordinator = coordinator_after_an_epoch(&config, &server.url, &run, &extra);
    freeze(&server, true);
    // SAFETY: signalling a child process this test started.
    unsafe { libc::kill(coordinator.id() as i32, libc::SIGINT) };
    let out = ended(coordinator, "Ctrl-C");
    freeze(&server, false);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let hint: Vec<&str> = stderr.lines().filter(|l| l.contains("--resume")).collect();
    assert_eq!(hint.len(), 1, "{stderr}");
    assert!(!run.join("summary.json").exists());
}
