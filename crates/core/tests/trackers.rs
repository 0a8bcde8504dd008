//! RemoteMonitor and MLFlowLogger against real servers on loopback: a small
//! HTTP server in the test for RemoteMonitor, a real `mlflow server` for
//! MLFlowLogger (skipped when mlflow is not installed; `make test` installs
//! it). Both also against a closed port: one warning, training goes on.
#![cfg(feature = "trackers")]

#[path = "support/http_server.rs"]
mod http_server;
#[path = "support/mlflow_server.rs"]
mod mlflow_server;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burnfit_core::builtins::{
    MLFlowLogger, MLFlowLoggerConfig, RemoteMonitor, RemoteMonitorConfig,
};
use burnfit_core::testing::{Script, ScriptedControl, drive};
use burnfit_core::{
    Callback, CallbackList, Context, Logs, Message, ModelSnapshot, Progress, SaveContent, TrainEnd,
    TrainingControl,
};
use http_server::{Request, form_decode, gated_http_server, http_server};
use mlflow_server::{MlflowServer, free_port};

fn epoch_logs(epoch: usize) -> Logs {
    let e = epoch as f64;
    [
        ("loss", 1.0 / (e + 2.0)),
        ("accuracy", 0.25 * (e + 1.0)),
        ("val_loss", 0.5 + e),
    ]
    .into_iter()
    .collect()
}

/// What Keras's RemoteMonitor sends for `epoch_logs(epoch)`: Python's
/// `json.dumps({"epoch": epoch, **logs})`.
fn keras_json(epoch: usize) -> String {
    let e = epoch as f64;
    let repr = |v: f64| {
        if v.fract() == 0.0 {
            format!("{v:.1}")
        } else {
            format!("{v}")
        }
    };
    format!(
        r#"{{"epoch": {epoch}, "loss": {}, "accuracy": {}, "val_loss": {}}}"#,
        repr(1.0 / (e + 2.0)),
        repr(0.25 * (e + 1.0)),
        repr(0.5 + e)
    )
}

fn run_monitor(config: RemoteMonitorConfig, epochs: usize) -> (ScriptedControl, usize) {
    let mut list = CallbackList::new();
    list.push(RemoteMonitor::new(config).unwrap());
    let mut ctl = ScriptedControl::new(0.01);
    let script = Script::from_epochs((0..epochs).map(epoch_logs));
    let trace = drive(&mut list, &mut ctl, &script);
    assert!(trace.error.is_none(), "{:?}", trace.error);
    (ctl, trace.epochs_run)
}

#[test]
fn remote_monitor_posts_every_epoch_as_a_form() {
    let (root, requests) = http_server();
    let config = RemoteMonitorConfig {
        root: root.clone(),
        headers: [("X-Token".to_string(), "secret".to_string())].into(),
        ..Default::default()
    };
    let (ctl, epochs) = run_monitor(config, 3);
    assert_eq!(epochs, 3);
    assert!(ctl.warnings().is_empty(), "{:?}", ctl.warnings());
    let received: Vec<Request> = requests.try_iter().collect();
    assert_eq!(received.len(), 3, "{received:?}");
    for (epoch, request) in received.iter().enumerate() {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/publish/epoch/end/");
        assert_eq!(
            request.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(request.headers["x-token"], "secret");
        // requests' form encoding of {"data": json.dumps(...)}.
        let (field, value) = request.body.split_once('=').unwrap();
        assert_eq!(field, "data");
        assert!(!value.contains(' ') && !value.contains('"'), "{value}");
        assert_eq!(form_decode(value), keras_json(epoch));
    }
}

#[test]
fn remote_monitor_posts_json_when_asked() {
    let (root, requests) = http_server();
    let config = RemoteMonitorConfig {
        root,
        path: "/metrics/".into(),
        field: "ignored".into(),
        send_as_json: true,
        ..Default::default()
    };
    let (ctl, _) = run_monitor(config, 4);
    assert!(ctl.warnings().is_empty(), "{:?}", ctl.warnings());
    let received: Vec<Request> = requests.try_iter().collect();
    let bodies: Vec<&str> = received.iter().map(|r| r.body.as_str()).collect();
    let expected: Vec<String> = (0..4).map(keras_json).collect();
    assert_eq!(bodies, expected);
    for request in &received {
        assert_eq!(request.path, "/metrics/");
        assert_eq!(request.headers["content-type"], "application/json");
    }
}

#[test]
fn remote_monitor_never_waits_for_the_server() {
    let open = Arc::new(AtomicBool::new(false));
    let (root, requests) = gated_http_server(open.clone());
    let mut monitor = RemoteMonitor::new(RemoteMonitorConfig {
        root,
        send_as_json: true,
        ..Default::default()
    })
    .unwrap();
    let mut ctl = ScriptedControl::new(0.01);
    let mut ctx = Context::new(&mut ctl);
    monitor.on_train_begin(&mut ctx).unwrap();
    // Every epoch end returns while the server has answered nothing yet (a
    // post made in the hook would wait here until it timed out, and warn).
    for epoch in 0..3 {
        monitor
            .on_epoch_end(epoch, &mut epoch_logs(epoch), &mut ctx)
            .unwrap();
    }
    open.store(true, Ordering::SeqCst);
    // The end of training waits for the queued posts (bounded).
    monitor.on_train_end(&Logs::new(), &mut ctx).unwrap();
    let bodies: Vec<String> = requests.try_iter().map(|r| r.body).collect();
    assert_eq!(bodies, (0..3).map(keras_json).collect::<Vec<_>>());
    assert!(ctl.warnings().is_empty(), "{:?}", ctl.warnings());
}

#[test]
fn remote_monitor_warns_once_when_the_root_is_unreachable() {
    let root = format!("http://127.0.0.1:{}", free_port());
    let config = RemoteMonitorConfig {
        root: root.clone(),
        ..Default::default()
    };
    let (ctl, epochs) = run_monitor(config, 3);
    assert_eq!(epochs, 3, "training completes");
    assert_eq!(
        ctl.warnings(),
        [format!(
            "Could not reach RemoteMonitor root server at {root}"
        )]
    );
}

/// A scripted control whose training ends the way the test says.
struct EndingControl {
    inner: ScriptedControl,
    end: Option<TrainEnd>,
}

impl TrainingControl for EndingControl {
    fn request_stop(&mut self, reason: String) {
        self.inner.request_stop(reason)
    }
    fn stop_requested(&self) -> bool {
        self.inner.stop_requested()
    }
    fn cancel_stop(&mut self) {
        self.inner.cancel_stop()
    }
    fn learning_rate(&self) -> Option<f64> {
        self.inner.learning_rate()
    }
    fn set_learning_rate(&mut self, lr: f64) -> burnfit_core::Result<()> {
        self.inner.set_learning_rate(lr)
    }
    fn snapshot_model(&self) -> ModelSnapshot {
        self.inner.snapshot_model()
    }
    fn restore_model(&mut self, snapshot: ModelSnapshot) -> burnfit_core::Result<()> {
        self.inner.restore_model(snapshot)
    }
    fn save_model(&mut self, path: &Path, content: SaveContent) -> burnfit_core::Result<()> {
        self.inner.save_model(path, content)
    }
    fn progress(&self) -> Progress {
        self.inner.progress()
    }
    fn emit(&mut self, message: Message) {
        self.inner.emit(message)
    }
    fn train_end(&self) -> Option<TrainEnd> {
        self.end.clone()
    }
}

impl EndingControl {
    fn new() -> Self {
        Self {
            inner: ScriptedControl::new(0.01),
            end: None,
        }
    }

    fn ctx(&mut self) -> Context<'_> {
        Context::new(self)
    }

    /// Runs the first `steps` of `epoch`'s 4 training steps (batch logs
    /// `{"loss": global step}`) and, with `end`, its epoch end.
    fn epoch(&mut self, logger: &mut MLFlowLogger, epoch: usize, steps: u64, end: bool) {
        let mut progress = self.inner.progress();
        progress.epoch = epoch;
        logger.on_epoch_begin(epoch, &mut self.ctx()).unwrap();
        for batch in 0..steps {
            progress.batch = batch as usize;
            progress.global_step = epoch as u64 * 4 + batch + 1;
            progress.global_batch = progress.global_step;
            progress.step_ended = true;
            self.inner.set_progress(progress);
            let mut logs: Logs = [("loss", progress.global_step as f64)]
                .into_iter()
                .collect();
            logger
                .on_train_batch_end(batch as usize, &mut logs, &mut self.ctx())
                .unwrap();
        }
        if end {
            logger
                .on_epoch_end(epoch, &mut epoch_logs(epoch), &mut self.ctx())
                .unwrap();
        }
    }
}

fn logger(server: &MlflowServer, experiment: &str, dirpath: &Path) -> MLFlowLogger {
    MLFlowLogger::new(MLFlowLoggerConfig {
        tracking_uri: Some(server.uri.clone()),
        experiment_name: experiment.into(),
        run_name: Some("tiny".into()),
        tags: [("team".to_string(), "burnfit".to_string())].into(),
        log_model: true,
        log_every_n_steps: 2,
        params: [("seed".to_string(), "7".to_string())].into(),
        dirpath: dirpath.to_path_buf(),
        ..Default::default()
    })
    .unwrap()
}

/// A run directory as the CLI leaves it.
fn run_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("config.toml"),
        "name = \"tiny\"\n[model]\nkind = \"mlp\"\nhidden = [32]\n[optimizer]\nlr = 2e-3\n\
         [[callbacks]]\ntype = \"MLFlowLogger\"\n",
    )
    .unwrap();
    std::fs::write(root.join("history.csv"), "epoch,loss\r\n0,0.5\r\n").unwrap();
    std::fs::create_dir_all(root.join("plots")).unwrap();
    std::fs::write(root.join("plots/training_curves.svg"), "<svg/>").unwrap();
    std::fs::create_dir_all(root.join("checkpoints")).unwrap();
    std::fs::write(root.join("checkpoints/best.bpk"), vec![7u8; 3000]).unwrap();
    dir
}

fn status(server: &MlflowServer, run_id: &str) -> String {
    server.run(run_id)["info"]["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn mlflow_logger_against_a_real_server() {
    let Some(server) = MlflowServer::start() else {
        return;
    };
    let dir = run_dir();

    // A whole run: 3 epochs of 4 steps, batch metrics every 2 steps.
    let mut list = CallbackList::new();
    list.push(logger(&server, "core-tests", dir.path()));
    let mut ctl = ScriptedControl::new(0.01);
    let batches: Vec<Vec<Logs>> = (0..3)
        .map(|e| {
            (0..4)
                .map(|b| [("loss", (e * 4 + b + 1) as f64)].into_iter().collect())
                .collect()
        })
        .collect();
    let script = Script::from_epochs((0..3).map(epoch_logs)).with_batches(batches);
    let trace = drive(&mut list, &mut ctl, &script);
    assert!(trace.error.is_none(), "{:?}", trace.error);
    assert!(
        ctl.warnings().is_empty(),
        "{:?}\n{}",
        ctl.warnings(),
        server.log()
    );
    let state = &trace.final_states.as_ref().unwrap()["MLFlowLogger"];
    let run_id = state["run"]["run_id"].as_str().unwrap().to_string();

    let runs = server.runs("core-tests");
    assert_eq!(runs.len(), 1);
    let run = server.run(&run_id);
    assert_eq!(run["info"]["status"], "FINISHED");
    assert_eq!(run["info"]["run_name"], "tiny");
    let tags = run["data"]["tags"].as_array().unwrap();
    assert!(
        tags.iter()
            .any(|t| t["key"] == "team" && t["value"] == "burnfit")
    );
    let params = server.params(&run_id);
    let expected: BTreeMap<String, String> = [
        ("seed", "7"),
        ("name", "tiny"),
        ("model.kind", "mlp"),
        ("model.hidden", "[32]"),
        ("optimizer.lr", "0.002"),
        ("callbacks.0.type", "MLFlowLogger"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(params, expected);
    for key in ["loss", "accuracy", "val_loss"] {
        let expected: Vec<(i64, f64)> = (0..3)
            .map(|e| (e as i64, epoch_logs(e).get(key).unwrap()))
            .collect();
        assert_eq!(server.history(&run_id, key), expected, "{key}");
    }
    let expected: Vec<(i64, f64)> = [2, 4, 6, 8, 10, 12].map(|s| (s, s as f64)).to_vec();
    assert_eq!(server.history(&run_id, "batch_loss"), expected);
    assert_eq!(
        server.artifacts(&run_id),
        [
            ("checkpoints/best.bpk".to_string(), 3000),
            ("history.csv".to_string(), 19),
            ("plots/training_curves.svg".to_string(), 6),
        ]
    );

    // Lightning's `run_id`: another training logs into that run.
    let mut more = MLFlowLogger::new(MLFlowLoggerConfig {
        tracking_uri: Some(server.uri.clone()),
        experiment_name: "core-tests".into(),
        run_id: Some(run_id.clone()),
        log_every_n_steps: 0,
        ..Default::default()
    })
    .unwrap();
    let mut ctl = EndingControl::new();
    more.on_train_begin(&mut ctl.ctx()).unwrap();
    ctl.epoch(&mut more, 3, 4, true);
    ctl.end = Some(TrainEnd::Completed);
    more.on_train_end(&Logs::new(), &mut ctl.ctx()).unwrap();
    assert!(
        ctl.inner.warnings().is_empty(),
        "{:?}",
        ctl.inner.warnings()
    );
    assert_eq!(server.runs("core-tests").len(), 1);
    let expected: Vec<(i64, f64)> = (0..4)
        .map(|e| (e as i64, epoch_logs(e).get("loss").unwrap()))
        .collect();
    assert_eq!(server.history(&run_id, "loss"), expected);
    assert_eq!(status(&server, &run_id), "FINISHED");

    // Interrupted after epoch 0 and 1 step of epoch 1: KILLED, and the
    // state names the run.
    let mut ctl = EndingControl::new();
    let mut first = logger(&server, "core-resume", dir.path());
    first.on_train_begin(&mut ctl.ctx()).unwrap();
    ctl.epoch(&mut first, 0, 4, true);
    ctl.epoch(&mut first, 1, 1, false);
    ctl.end = Some(TrainEnd::Interrupted("Ctrl-C".into()));
    first.on_train_end(&Logs::new(), &mut ctl.ctx()).unwrap();
    let state = first.state().unwrap().unwrap();
    let resumed_id = first.run_id().unwrap();
    assert_eq!(status(&server, &resumed_id), "KILLED");

    // Resumed from a backup taken at the end of epoch 0: the same run,
    // RUNNING again, epoch 0's points not logged twice, then FINISHED.
    let mut second = logger(&server, "core-resume", dir.path());
    second.load_state(state).unwrap();
    let mut ctl = EndingControl::new();
    second.on_train_begin(&mut ctl.ctx()).unwrap();
    ctl.epoch(&mut second, 0, 4, true);
    ctl.epoch(&mut second, 1, 4, true);
    ctl.epoch(&mut second, 2, 4, true);
    ctl.end = Some(TrainEnd::Completed);
    second.on_train_end(&Logs::new(), &mut ctl.ctx()).unwrap();
    assert!(
        ctl.inner.warnings().is_empty(),
        "{:?}",
        ctl.inner.warnings()
    );
    assert_eq!(second.run_id().as_deref(), Some(resumed_id.as_str()));
    assert_eq!(server.runs("core-resume").len(), 1);
    assert_eq!(status(&server, &resumed_id), "FINISHED");
    let expected: Vec<(i64, f64)> = (0..3)
        .map(|e| (e as i64, epoch_logs(e).get("loss").unwrap()))
        .collect();
    assert_eq!(server.history(&resumed_id, "loss"), expected);
    let expected: Vec<(i64, f64)> = [2, 4, 6, 8, 10, 12].map(|s| (s, s as f64)).to_vec();
    assert_eq!(server.history(&resumed_id, "batch_loss"), expected);

    // An error: FAILED.
    let mut ctl = EndingControl::new();
    let mut failing = logger(&server, "core-failed", dir.path());
    failing.on_train_begin(&mut ctl.ctx()).unwrap();
    ctl.epoch(&mut failing, 0, 2, true);
    failing.on_exception("boom", &mut ctl.ctx()).unwrap();
    assert_eq!(status(&server, &failing.run_id().unwrap()), "FAILED");
}

#[test]
fn mlflow_logger_with_the_server_down_warns_once() {
    let uri = format!("http://127.0.0.1:{}", free_port());
    let dir = run_dir();
    let mut list = CallbackList::new();
    list.push(
        MLFlowLogger::new(MLFlowLoggerConfig {
            tracking_uri: Some(uri.clone()),
            log_every_n_steps: 1,
            log_model: true,
            dirpath: dir.path().to_path_buf(),
            ..Default::default()
        })
        .unwrap(),
    );
    let mut ctl = ScriptedControl::new(0.01);
    let batches = vec![vec![Logs::from_iter([("loss", 1.0)]); 5]; 3];
    let script = Script::from_epochs((0..3).map(epoch_logs)).with_batches(batches);
    let trace = drive(&mut list, &mut ctl, &script);
    assert!(trace.error.is_none(), "{:?}", trace.error);
    assert_eq!(trace.epochs_run, 3, "training completes");
    let warnings = ctl.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(&format!("MLFlowLogger: could not start a run on {uri}")),
        "{warnings:?}"
    );
    // No run, so nothing to resume.
    let state = &trace.final_states.unwrap()["MLFlowLogger"];
    assert!(state["run"].is_null(), "{state}");
}

/// The first process's server never answers, so its epoch-0 points are
/// still queued when the backup's state is taken; the process is then
/// killed (its logger never finishes). The resumed training, against a
/// real server, sends them with its own: the run holds every epoch.
#[test]
fn points_queued_when_a_backup_was_taken_reach_the_server_after_the_resume() {
    let Some(server) = MlflowServer::start() else {
        return;
    };
    let dir = run_dir();
    let (stalled, _requests) = gated_http_server(Arc::new(AtomicBool::new(false)));
    let mut first = MLFlowLogger::new(MLFlowLoggerConfig {
        tracking_uri: Some(stalled),
        experiment_name: "queued".into(),
        dirpath: dir.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    let mut ctl = ScriptedControl::new(0.01);
    let mut ctx = Context::new(&mut ctl);
    first.on_train_begin(&mut ctx).unwrap();
    first.on_epoch_end(0, &mut epoch_logs(0), &mut ctx).unwrap();
    let state = first.state().unwrap().unwrap();
    assert_eq!(state["unsent"].as_array().map(Vec::len), Some(3), "{state}");
    std::mem::forget(first);

    let mut second = logger(&server, "queued", dir.path());
    second.load_state(state).unwrap();
    let mut ctl = ScriptedControl::new(0.01);
    let mut ctx = Context::new(&mut ctl);
    second.on_train_begin(&mut ctx).unwrap();
    second
        .on_epoch_end(1, &mut epoch_logs(1), &mut ctx)
        .unwrap();
    second.on_train_end(&epoch_logs(1), &mut ctx).unwrap();
    let run_id = second.run_id().unwrap();
    let loss: Vec<i64> = server
        .history(&run_id, "loss")
        .iter()
        .map(|(step, _)| *step)
        .collect();
    assert_eq!(loss, [0, 1]);
    assert_eq!(server.history(&run_id, "val_loss")[0], (0, 0.5));
}
