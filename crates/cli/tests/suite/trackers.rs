//! `[[callbacks]] type = "MLFlowLogger"` / `"RemoteMonitor"` end to end:
//! real trainings through the `burnfit` binary, logged to a real `mlflow
//! server` on loopback (skipped when mlflow is not installed; `make test`
//! installs it) and read back through MLflow's REST API, or posted to a
//! small HTTP server of the test's own; and a tracking server that is down.

#[path = "../../../core/tests/support/http_server.rs"]
mod http_server;
#[path = "../../../core/tests/support/mlflow_server.rs"]
mod mlflow_server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{repo, small_config, text};
use http_server::{Request, form_decode, http_server};
use mlflow_server::{MlflowServer, free_port};

fn mlflow_config(dir: &Path, uri: &str, experiment: &str, epochs: usize) -> PathBuf {
    let config = small_config(
        dir,
        "kind = \"mlp\"\nhidden = [32]",
        &format!(
            r#"
[[callbacks]]
type = "MLFlowLogger"
tracking_uri = "{uri}"
experiment_name = "{experiment}"
run_name = "small"
tags = {{ suite = "cli" }}
log_model = true
log_every_n_steps = 3
"#
        ),
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("epochs = 2", &format!("epochs = {epochs}"));
    std::fs::write(&config, text).unwrap();
    config
}

fn train(config: &Path, run: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_burnfit"))
        .args(["train", config.to_str().unwrap(), "--backend", "flex"])
        .arg("--run-dir")
        .arg(run)
        .envs(env.iter().copied())
        .current_dir(repo())
        .output()
        .expect("the burnfit binary runs")
}

/// `history.csv` as column -> [(epoch, value)].
fn history(run: &Path) -> BTreeMap<String, Vec<(i64, f64)>> {
    let text = std::fs::read_to_string(run.join("history.csv")).unwrap();
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut columns: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let epoch: i64 = fields[0].parse().unwrap();
        for (key, value) in header.iter().zip(&fields).skip(1) {
            columns
                .entry(key.to_string())
                .or_default()
                .push((epoch, value.parse().unwrap()));
        }
    }
    columns
}

/// The run's `config.toml` flattened as the logger documents it: keys
/// joined with `.`, arrays of tables by index, strings bare, other values
/// as JSON text; empty tables give nothing.
fn flat_config(run: &Path) -> BTreeMap<String, String> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        let key = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match value {
            serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| walk(&key(k), v, out)),
            serde_json::Value::Array(items)
                if !items.is_empty() && items.iter().all(|v| v.is_object()) =>
            {
                for (i, item) in items.iter().enumerate() {
                    walk(&key(&i.to_string()), item, out);
                }
            }
            serde_json::Value::String(s) => {
                out.insert(prefix.to_string(), s.clone());
            }
            serde_json::Value::Array(items) => {
                let items: Vec<String> = items.iter().map(|v| v.to_string()).collect();
                out.insert(prefix.to_string(), format!("[{}]", items.join(", ")));
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let text = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let value: serde_json::Value = toml::from_str(&text).unwrap();
    let mut out = BTreeMap::new();
    walk("", &value, &mut out);
    out
}

/// The run's one MLflow run in `experiment`: its id.
fn only_run(server: &MlflowServer, experiment: &str) -> String {
    let runs = server.runs(experiment);
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0]["info"]["run_id"].as_str().unwrap().to_string()
}

/// Every epoch metric of the MLflow run equals `history.csv`'s column, and
/// the run holds no other epoch metric.
fn assert_metrics_match_history(server: &MlflowServer, run_id: &str, run: &Path) {
    let history = history(run);
    assert!(history.contains_key("val_loss"), "{history:?}");
    for (key, column) in &history {
        assert_eq!(&server.history(run_id, key), column, "metric {key}");
    }
    let epoch_keys: Vec<String> = server
        .metric_keys(run_id)
        .into_iter()
        .filter(|k| !k.starts_with("batch_"))
        .collect();
    assert_eq!(
        epoch_keys,
        history.keys().cloned().collect::<Vec<_>>(),
        "epoch metrics"
    );
}

/// The warnings (`warning: …` lines) that name `what`.
fn warnings_naming(output: &Output, what: &str) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.starts_with("warning:") && l.contains(what))
        .map(str::to_string)
        .collect()
}

#[test]
fn mlflow_logger_logs_a_cli_run_params_metrics_artifacts_and_status() {
    let Some(server) = MlflowServer::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = mlflow_config(tmp.path(), &server.uri, "cli", 2);
    let run = tmp.path().join("run");
    let out = train(&config, &run, &[]);
    assert!(out.status.success(), "train failed:\n{}", text(&out));
    assert!(
        warnings_naming(&out, "MLFlowLogger").is_empty(),
        "{}\n{}",
        text(&out),
        server.log()
    );

    let run_id = only_run(&server, "cli");
    let mlflow_run = server.run(&run_id);
    assert_eq!(mlflow_run["info"]["status"], "FINISHED");
    assert_eq!(mlflow_run["info"]["run_name"], "small");
    let tags = mlflow_run["data"]["tags"].as_array().unwrap();
    assert!(
        tags.iter()
            .any(|t| t["key"] == "suite" && t["value"] == "cli")
    );

    // The parameters are the resolved config.
    let params = server.params(&run_id);
    assert_eq!(params, flat_config(&run));
    assert_eq!(params["model.kind"], "mlp");
    assert_eq!(params["model.hidden"], "[32]");
    assert_eq!(params["optimizer.lr"], "0.002");
    assert_eq!(params["training.epochs"], "2");
    assert_eq!(params["callbacks.2.type"], "MLFlowLogger");
    assert_eq!(params["callbacks.2.tracking_uri"], server.uri);

    // Epoch metrics equal history.csv; batch metrics every 3 steps (600
    // images, 480 for training: 8 steps an epoch, 16 in all).
    assert_metrics_match_history(&server, &run_id, &run);
    let steps: Vec<i64> = server
        .history(&run_id, "batch_loss")
        .iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(steps, [3, 6, 9, 12, 15]);

    // Artifacts: history.csv and the best checkpoint byte for byte (sizes
    // as on disk), the plots as drawn at the last epoch end (the CLI draws
    // them once more after training).
    let size = |p: &str| std::fs::metadata(run.join(p)).unwrap().len();
    let artifacts = server.artifacts(&run_id);
    let names: Vec<&str> = artifacts.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "checkpoints/best.bpk",
            "history.csv",
            "plots/training_curves.png",
            "plots/training_curves.svg"
        ]
    );
    assert_eq!(artifacts[0].1, size("checkpoints/best.bpk"));
    assert_eq!(artifacts[1].1, size("history.csv"));
    assert_eq!(
        server.artifact_text(&run_id, "history.csv"),
        std::fs::read_to_string(run.join("history.csv")).unwrap()
    );
    assert!(artifacts[2].1 > 0 && artifacts[3].1 > 0, "{artifacts:?}");
}

#[test]
fn mlflow_logger_with_the_server_down_warns_once_and_training_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let uri = format!("http://127.0.0.1:{}", free_port());
    let config = mlflow_config(tmp.path(), &uri, "down", 2);
    let run = tmp.path().join("run");
    let out = train(&config, &run, &[]);
    assert!(out.status.success(), "train failed:\n{}", text(&out));
    let warnings = warnings_naming(&out, "MLFlowLogger");
    assert_eq!(warnings.len(), 1, "{}", text(&out));
    assert!(warnings[0].contains(&uri), "{warnings:?}");
    assert_eq!(history(&run)["loss"].len(), 2, "both epochs trained");
    assert!(run.join("summary.json").is_file());
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn an_interrupted_run_is_killed_and_resume_continues_the_same_mlflow_run() {
    let Some(server) = MlflowServer::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = mlflow_config(tmp.path(), &server.uri, "resume", 3);
    let run = tmp.path().join("run");
    // Ctrl-C at step 13: the 5th batch of epoch 2 (1-based).
    let out = train(&config, &run, &[("BURNFIT_SIGINT_AT_STEP", "13")]);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let run_id = only_run(&server, "resume");
    assert_eq!(server.run(&run_id)["info"]["status"], "KILLED");
    assert_eq!(server.history(&run_id, "loss").len(), 1, "epoch 0 only");

    let resumed = Command::new(env!("CARGO_BIN_EXE_burnfit"))
        .arg("train")
        .arg(run.join("config.toml"))
        .arg("--run-dir")
        .arg(&run)
        .arg("--resume")
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(
        warnings_naming(&resumed, "MLFlowLogger").is_empty(),
        "{}",
        text(&resumed)
    );
    assert_eq!(only_run(&server, "resume"), run_id, "the same run");
    assert_eq!(server.run(&run_id)["info"]["status"], "FINISHED");
    assert_metrics_match_history(&server, &run_id, &run);
    let steps: Vec<i64> = server
        .history(&run_id, "batch_loss")
        .iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(steps, [3, 6, 9, 12, 15, 18, 21, 24]);
}

#[test]
fn remote_monitor_posts_each_epoch_of_a_cli_run_as_keras_does() {
    let (root, requests) = http_server();
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(
        tmp.path(),
        "kind = \"mlp\"\nhidden = [32]",
        &format!(
            r#"
[[callbacks]]
type = "RemoteMonitor"
root = "{root}"
headers = {{ X-Run = "small" }}
"#
        ),
    );
    let run = tmp.path().join("run");
    let out = train(&config, &run, &[]);
    assert!(out.status.success(), "train failed:\n{}", text(&out));
    assert!(
        warnings_naming(&out, "RemoteMonitor").is_empty(),
        "{}",
        text(&out)
    );
    let received: Vec<Request> = requests.try_iter().collect();
    let history = history(&run);
    assert_eq!(received.len(), 2, "one post per epoch: {received:?}");
    for (epoch, request) in received.iter().enumerate() {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/publish/epoch/end/");
        assert_eq!(
            request.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(request.headers["x-run"], "small");
        let (field, value) = request.body.split_once('=').unwrap();
        assert_eq!(field, "data");
        let json = form_decode(value);
        assert!(
            json.starts_with(&format!("{{\"epoch\": {epoch}, ")),
            "{json}"
        );
        // The epoch's logs, as history.csv has them.
        let sent: serde_json::Value = serde_json::from_str(&json).unwrap();
        let sent = sent.as_object().unwrap();
        assert_eq!(sent.len(), history.len() + 1, "{json}");
        for (key, column) in &history {
            assert_eq!(sent[key].as_f64(), Some(column[epoch].1), "{key}: {json}");
        }
    }
}
