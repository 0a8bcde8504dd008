//! [`MLFlowLogger`]: Lightning's MLflow logger, through MLflow's REST API
//! (feature `trackers`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::tracker::{self, Body, FailureSink, Http, Sender};
use crate::callback::Callback;
use crate::context::{Context, Progress, TrainEnd};
use crate::error::{CallbackError, Result};
use crate::logs::Logs;

const NAME: &str = "MLFlowLogger";

/// How long one REST call may take.
const API_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one artifact upload may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the end of training waits for what is still queued.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts per call while the server answers (one once a call failed).
const ATTEMPTS: u32 = 3;
/// MLflow's limits on one `log-batch` call.
const MAX_PARAMS_PER_BATCH: usize = 100;
const MAX_METRICS_PER_BATCH: usize = 1000;
/// MLflow's longest parameter value.
const MAX_PARAM_VALUE: usize = 6000;

/// Logs a run to an MLflow tracking server, as Lightning's `MLFlowLogger`
/// does: the run's parameters, every epoch's metrics, batch metrics every
/// `log_every_n_steps` steps, files as artifacts, and the run's status.
///
/// Everything goes through MLflow's REST API (`/api/2.0/mlflow/…`) from a
/// background thread: no Python, and a server that is down or slow never
/// stops or slows training.
///
/// * **Run.** At the start of training: the experiment `experiment_name`
///   (created if missing), then a new run named `run_name` with `tags`. A
///   resumed training (the state a backup saved, see below) continues the
///   *same* run (so does a given `run_id`): it is set back to `RUNNING`,
///   its parameters are not logged again, and metric points it already
///   holds (a step at or below the last one logged for the key) are not
///   logged twice.
/// * **Parameters**, once per run: `params`, plus the file `params_file`
///   (TOML, or JSON for `.json`) under `dirpath`, flattened: nested keys
///   joined with `.`, arrays of tables by index (`callbacks.0.type`), other
///   values as text (strings without quotes). The CLI's run directory holds
///   the resolved config as `config.toml`: a `burnfit train` run logs its
///   whole config. Library code can give any serializable config with
///   [`MLFlowLoggerConfig::flatten`].
/// * **Metrics.** Each epoch's logs at `step = epoch` (0-based, as in
///   `history.csv`), named `<prefix>-<key>` with a `prefix`, else `<key>`.
///   With `log_every_n_steps = n > 0`, every n-th training step's batch logs
///   as `batch_<key>` at `step =` the global step (1-based). NaN and
///   infinities are logged as such.
/// * **Artifacts**, at the end of training: `artifacts` (files, or
///   directories with everything under them) under `dirpath`, and with
///   `log_model` the `model_file` (the CLI's best checkpoint), at the same
///   relative paths in the run. They go through the server's artifact proxy
///   (`/api/2.0/mlflow-artifacts/…`, on by default in `mlflow server`);
///   a server that stores artifacts elsewhere gets none (one warning).
///   Missing files are skipped.
/// * **Status**: `FINISHED` at the end of training (an early stop
///   included), `KILLED` when training was interrupted (Ctrl-C: it can be
///   resumed), `FAILED` on an error (`on_exception`).
/// * **Resume.** [`Callback::state`] holds the run's id once the server has
///   created it, so a backup taken after that resumes the same run, and
///   the metric points still queued when it was taken (a slow or absent
///   server; at most 10,000): a run killed before they went out sends
///   them when it resumes.
///
/// **Failures.** Calls are retried (3 attempts, while the server answers);
/// a full queue drops work. The first failure gives one warning, naming the
/// server and what failed, and training goes on; if the run could not be
/// started, nothing more is sent. At the end of training the queued work
/// gets 60 s to go out.
///
/// The tracking server is `tracking_uri`, else `$MLFLOW_TRACKING_URI`, else
/// `http://localhost:5000`; `http://`, or `https://` with the
/// `trackers-https` feature. `$MLFLOW_TRACKING_TOKEN` (a bearer token) or
/// `$MLFLOW_TRACKING_USERNAME` / `$MLFLOW_TRACKING_PASSWORD` (basic
/// authentication) are sent when set, as MLflow's client does.
///
/// ```no_run
/// use burnfit_core::builtins::{MLFlowLogger, MLFlowLoggerConfig};
///
/// let logger = MLFlowLogger::new(MLFlowLoggerConfig {
///     tracking_uri: Some("http://127.0.0.1:5000".into()),
///     experiment_name: "fashion".into(),
///     params: MLFlowLoggerConfig::flatten(&serde_json::json!({"optimizer": {"lr": 1e-3}})),
///     ..Default::default()
/// })
/// .unwrap();
/// # let _ = logger;
/// ```
pub struct MLFlowLogger {
    config: MLFlowLoggerConfig,
    tracking_uri: String,
    sender: Option<Sender<Job>>,
    /// The run being logged to, once the server created (or resumed) it.
    run: Arc<Mutex<Option<RunIds>>>,
    /// The run a restored state names, for the next `on_train_begin`.
    resume: Option<RunIds>,
    /// Metric points handed to the sender and not yet sent, by job: a
    /// backup keeps them, so a run killed with points still queued sends
    /// them when it resumes.
    unsent: Arc<Mutex<Unsent>>,
    /// Points a restored state had not sent, for the next `on_train_begin`.
    resend: Vec<Point>,
}

/// Queued metric jobs not yet sent, oldest first.
#[derive(Default)]
struct Unsent {
    next_id: u64,
    jobs: std::collections::BTreeMap<u64, Vec<Point>>,
}

/// The most queued points a state keeps (the newest are dropped beyond
/// it: a server that has been down for a long run).
const MAX_UNSENT_POINTS: usize = 10_000;

/// The ids [`MLFlowLogger`] keeps in its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunIds {
    run_id: String,
    experiment_id: String,
}

/// One metric point.
#[derive(Clone, Debug, PartialEq)]
struct Point {
    key: String,
    value: f64,
    step: i64,
    timestamp: i64,
}

enum Job {
    Start {
        resume: Option<RunIds>,
        params: BTreeMap<String, String>,
        params_file: Option<PathBuf>,
        run_name: Option<String>,
        tags: BTreeMap<String, String>,
    },
    /// Points, under the id they are kept by in [`Unsent`] until sent.
    Metrics(u64, Vec<Point>),
    Artifacts(Vec<(PathBuf, String)>),
    Finish(&'static str),
}

impl MLFlowLogger {
    /// A logger with `config`'s parameters; fails on a tracking address that
    /// cannot be used.
    pub fn new(config: MLFlowLoggerConfig) -> Result<Self> {
        let invalid = |param, message: String| CallbackError::InvalidParameter {
            callback: NAME,
            param,
            message,
        };
        let tracking_uri = config
            .tracking_uri
            .clone()
            .or_else(|| std::env::var("MLFLOW_TRACKING_URI").ok())
            .unwrap_or_else(|| "http://localhost:5000".into());
        let tracking_uri = tracking_uri.trim_end_matches('/').to_string();
        tracker::check_url(&tracking_uri).map_err(|e| invalid("tracking_uri", e))?;
        if config.experiment_name.is_empty() {
            return Err(invalid("experiment_name", "must not be empty".into()));
        }
        Ok(Self {
            config,
            tracking_uri,
            sender: None,
            run: Arc::new(Mutex::new(None)),
            resume: None,
            unsent: Arc::default(),
            resend: Vec::new(),
        })
    }

    /// The tracking server's address.
    pub fn tracking_uri(&self) -> &str {
        &self.tracking_uri
    }

    /// The run's id, once the server has created it.
    pub fn run_id(&self) -> Option<String> {
        self.run
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| r.run_id.clone())
    }

    fn in_dir(&self, path: &Path) -> Option<PathBuf> {
        if self.config.dirpath.as_os_str().is_empty() || path.as_os_str().is_empty() {
            None
        } else {
            Some(self.config.dirpath.join(path))
        }
    }

    fn start(&mut self) -> Result<()> {
        *self.run.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let mut worker = Worker {
            tracking_uri: self.tracking_uri.clone(),
            api: Http::new(API_TIMEOUT, auth_headers()),
            upload: Http::new(UPLOAD_TIMEOUT, auth_headers()),
            experiment_name: self.config.experiment_name.clone(),
            artifact_location: self.config.artifact_location.clone(),
            run: self.run.clone(),
            artifact_uri: None,
            started: false,
            degraded: false,
            logged_steps: HashMap::new(),
            warned_artifacts: false,
            unsent: self.unsent.clone(),
        };
        *self.unsent.lock().unwrap_or_else(|p| p.into_inner()) = Unsent::default();
        let sender = Sender::spawn("burnfit-mlflow", move |job: Job, sink: &FailureSink| {
            worker.run(job, sink)
        })
        .map_err(|e| CallbackError::Runtime {
            callback: NAME,
            message: format!("cannot start its sender thread: {e}"),
        })?;
        self.sender = Some(sender);
        Ok(())
    }

    fn key(&self, key: &str) -> String {
        if self.config.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}-{key}", self.config.prefix)
        }
    }

    fn send(&mut self, job: Job) {
        if let Some(sender) = self.sender.as_mut() {
            sender.send(job);
        }
    }

    /// Queues `points`, kept as unsent until the sender has sent them.
    fn send_points(&mut self, points: Vec<Point>) {
        if self.sender.is_none() || points.is_empty() {
            return;
        }
        let id = {
            let mut unsent = self.unsent.lock().unwrap_or_else(|p| p.into_inner());
            let id = unsent.next_id;
            unsent.next_id += 1;
            unsent.jobs.insert(id, points.clone());
            id
        };
        self.send(Job::Metrics(id, points));
    }

    /// The queued points not yet sent, oldest first (at most
    /// [`MAX_UNSENT_POINTS`]).
    fn unsent_points(&self) -> Vec<Point> {
        let unsent = self.unsent.lock().unwrap_or_else(|p| p.into_inner());
        unsent
            .jobs
            .values()
            .flatten()
            .chain(&self.resend)
            .take(MAX_UNSENT_POINTS)
            .cloned()
            .collect()
    }

    fn report(&mut self, ctx: &mut Context) {
        if let Some(warning) = self.sender.as_mut().and_then(Sender::take_warning) {
            ctx.warn(warning);
        }
    }

    /// Uploads the artifacts, sets the run's status, and waits (bounded) for
    /// everything queued.
    fn finish(&mut self, status: &'static str, ctx: &mut Context) {
        if self.sender.is_none() {
            return;
        }
        let mut files = Vec::new();
        let mut wanted: Vec<PathBuf> = self.config.artifacts.clone();
        if self.config.log_model {
            wanted.push(self.config.model_file.clone());
        }
        for path in wanted {
            if let Some(full) = self.in_dir(&path) {
                collect_files(&full, &artifact_name(&path), &mut files);
            }
        }
        if !files.is_empty() {
            self.send(Job::Artifacts(files));
        }
        self.send(Job::Finish(status));
        if let Some(sender) = self.sender.as_mut()
            && !sender.flush(FLUSH_TIMEOUT)
        {
            sender.fail(format!(
                "{NAME}: {} did not take everything within {} s; the rest is dropped",
                self.tracking_uri,
                FLUSH_TIMEOUT.as_secs()
            ));
        }
        self.report(ctx);
        if let Some(mut sender) = self.sender.take() {
            sender.close();
        }
    }
}

impl std::fmt::Debug for MLFlowLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(NAME)
            .field("tracking_uri", &self.tracking_uri)
            .field("experiment_name", &self.config.experiment_name)
            .field("run_id", &self.run_id())
            .finish_non_exhaustive()
    }
}

impl Callback for MLFlowLogger {
    fn name(&self) -> String {
        NAME.to_string()
    }

    fn on_train_begin(&mut self, _ctx: &mut Context) -> Result<()> {
        self.start()?;
        // A restored state wins over `run_id`: it names the run this
        // training logged to.
        let resume = self.resume.take().or_else(|| {
            self.config.run_id.clone().map(|run_id| RunIds {
                run_id,
                experiment_id: String::new(),
            })
        });
        // A backup taken before the server answers still names the run.
        *self.run.lock().unwrap_or_else(|p| p.into_inner()) = resume.clone();
        let params_file = self.in_dir(&self.config.params_file);
        let job = Job::Start {
            resume,
            params: self.config.params.clone(),
            params_file,
            run_name: self.config.run_name.clone(),
            tags: self.config.tags.clone(),
        };
        self.send(job);
        // What the backup this training resumed from had not sent yet.
        let resend = std::mem::take(&mut self.resend);
        self.send_points(resend);
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        logs: &mut Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        let progress = ctx.progress();
        let step = progress.global_step;
        if !self.wants_batch_metrics_at(&progress) || logs.is_empty() {
            return Ok(());
        }
        let timestamp = tracker::now_millis();
        let points = logs
            .iter()
            .map(|(key, value)| Point {
                key: self.key(&format!("batch_{key}")),
                value,
                step: step as i64,
                timestamp,
            })
            .collect();
        self.send_points(points);
        self.report(ctx);
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        let timestamp = tracker::now_millis();
        let points = logs
            .iter()
            .map(|(key, value)| Point {
                key: self.key(key),
                value,
                step: epoch as i64,
                timestamp,
            })
            .collect();
        self.send_points(points);
        self.report(ctx);
        Ok(())
    }

    fn on_train_end(&mut self, _logs: &Logs, ctx: &mut Context) -> Result<()> {
        let status = match ctx.train_end() {
            Some(TrainEnd::Interrupted(_)) => "KILLED",
            _ => "FINISHED",
        };
        self.finish(status, ctx);
        Ok(())
    }

    fn on_exception(&mut self, _error: &str, ctx: &mut Context) -> Result<()> {
        self.finish("FAILED", ctx);
        Ok(())
    }

    fn wants_batch_logs(&self) -> bool {
        self.config.log_every_n_steps > 0
    }

    fn wants_batch_metrics(&self) -> bool {
        self.config.log_every_n_steps > 0
    }

    fn wants_batch_metrics_at(&self, progress: &Progress) -> bool {
        progress.at_step_multiple_of(self.config.log_every_n_steps)
    }

    fn state(&self) -> Result<Option<Value>> {
        let run = self.run.lock().unwrap_or_else(|p| p.into_inner()).clone();
        crate::error::state_to_json(&MLFlowLoggerState {
            run: run.or_else(|| self.resume.clone()),
            unsent: self.unsent_points().iter().map(SavedPoint::of).collect(),
        })
    }

    fn load_state(&mut self, state: Value) -> Result<()> {
        let state: MLFlowLoggerState = crate::error::state_from_json(state)?;
        self.resume = state.run;
        self.resend = state.unsent.into_iter().map(SavedPoint::point).collect();
        Ok(())
    }
}

/// What [`MLFlowLogger`] saves for resume: the run to continue, and the
/// metric points queued but not yet sent when the state was taken.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MLFlowLoggerState {
    run: Option<RunIds>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    unsent: Vec<SavedPoint>,
}

/// A [`Point`] in a state, its value as bits (JSON has no NaN).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedPoint {
    key: String,
    value_bits: u64,
    step: i64,
    timestamp: i64,
}

impl SavedPoint {
    fn of(point: &Point) -> Self {
        Self {
            key: point.key.clone(),
            value_bits: point.value.to_bits(),
            step: point.step,
            timestamp: point.timestamp,
        }
    }

    fn point(self) -> Point {
        Point {
            key: self.key,
            value: f64::from_bits(self.value_bits),
            step: self.step,
            timestamp: self.timestamp,
        }
    }
}

/// The authentication headers MLflow's client sends, from its environment
/// variables.
fn auth_headers() -> Vec<(String, String)> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    if let Some(token) = var("MLFLOW_TRACKING_TOKEN") {
        vec![("Authorization".into(), format!("Bearer {token}"))]
    } else if let (Some(user), Some(password)) = (
        var("MLFLOW_TRACKING_USERNAME"),
        var("MLFLOW_TRACKING_PASSWORD"),
    ) {
        let credentials = base64(format!("{user}:{password}").as_bytes());
        vec![("Authorization".into(), format!("Basic {credentials}"))]
    } else {
        Vec::new()
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The artifact path of `path`: relative paths as they are, with `/`; an
/// absolute one by its file name.
fn artifact_name(path: &Path) -> String {
    if path.is_absolute() {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        path.components()
            .filter_map(|c| match c {
                std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// `path` (a file, or a directory and everything under it) as
/// `(file, artifact path)` pairs under `name`.
fn collect_files(path: &Path, name: &str, out: &mut Vec<(PathBuf, String)>) {
    if path.is_file() {
        out.push((path.to_path_buf(), name.to_string()));
    } else if let Ok(entries) = std::fs::read_dir(path) {
        let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let child = entry.file_name().to_string_lossy().into_owned();
            let child_name = if name.is_empty() {
                child
            } else {
                format!("{name}/{child}")
            };
            collect_files(&entry.path(), &child_name, out);
        }
    } else {
        log::debug!("{NAME}: no artifact at {}", path.display());
    }
}

/// A name MLflow accepts for a parameter or metric: alphanumerics, `_`,
/// `-`, `.`, ` `, `:` and `/`; anything else becomes `_`.
fn mlflow_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || "_-. :/".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A metric value as MLflow's JSON takes it (non-finite values as strings).
fn metric_value(value: f64) -> Value {
    if value.is_nan() {
        json!("NaN")
    } else if value == f64::INFINITY {
        json!("Infinity")
    } else if value == f64::NEG_INFINITY {
        json!("-Infinity")
    } else {
        json!(value)
    }
}

/// A failed REST call.
#[derive(Debug)]
struct ApiError {
    /// The reply's status, `None` when no reply came.
    status: Option<u16>,
    /// MLflow's `error_code`, if the reply had one.
    code: Option<String>,
    message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "HTTP {status}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The background thread's side: the REST calls.
struct Worker {
    tracking_uri: String,
    api: Http,
    upload: Http,
    experiment_name: String,
    artifact_location: Option<String>,
    run: Arc<Mutex<Option<RunIds>>>,
    artifact_uri: Option<String>,
    /// Whether the run was created or resumed (nothing is sent otherwise).
    started: bool,
    /// Whether a call failed since the last success (then one attempt each).
    degraded: bool,
    /// On resume: the last step the run holds for each metric.
    logged_steps: HashMap<String, i64>,
    warned_artifacts: bool,
    /// The logger's queued points: a job's leave once it has been sent (or
    /// its sending failed).
    unsent: Arc<Mutex<Unsent>>,
}

impl Worker {
    fn run(&mut self, job: Job, sink: &FailureSink) {
        let result = match job {
            Job::Start {
                resume,
                params,
                params_file,
                run_name,
                tags,
            } => self
                .start(resume, params, params_file, run_name, tags)
                .map_err(|e| {
                    format!(
                        "{NAME}: could not start a run on {}: {e}; training goes on without it",
                        self.tracking_uri
                    )
                }),
            // Kept as unsent: a resume may bring the server back.
            _ if !self.started => Ok(()),
            Job::Metrics(id, points) => {
                let result = self.log_metrics(points).map_err(|e| self.lost(e));
                self.unsent
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .jobs
                    .remove(&id);
                result
            }
            Job::Artifacts(files) => self.upload(files, sink).map_err(|e| self.lost(e)),
            Job::Finish(status) => self.set_status(status).map_err(|e| self.lost(e)),
        };
        if let Err(message) = result {
            sink.fail(message);
        }
    }

    fn lost(&self, e: ApiError) -> String {
        format!(
            "{NAME}: {} failed ({e}); some of the run's data may be missing",
            self.tracking_uri
        )
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/api/2.0/mlflow/{endpoint}", self.tracking_uri)
    }

    /// One REST call, retried while the server answers with 5xx/429 or not
    /// at all (3 attempts; one once a call has failed).
    fn call(
        &mut self,
        method: &str,
        endpoint: &str,
        body: Option<Value>,
    ) -> Result<Value, ApiError> {
        let url = self.url(endpoint);
        let attempts = if self.degraded { 1 } else { ATTEMPTS };
        let mut last = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200 * 4u64.pow(attempt - 1)));
            }
            let request_body = match &body {
                Some(v) => Body::Bytes("application/json", v.to_string().into_bytes()),
                None => Body::None,
            };
            match self.api.request(method, &url, request_body) {
                Ok(reply) if (200..300).contains(&reply.status) => {
                    self.degraded = false;
                    return Ok(serde_json::from_str(&reply.body).unwrap_or(Value::Null));
                }
                Ok(reply) => {
                    let parsed: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
                    let error = ApiError {
                        status: Some(reply.status),
                        code: parsed["error_code"].as_str().map(str::to_string),
                        message: parsed["message"]
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| reply.body.chars().take(200).collect()),
                    };
                    let retry = reply.status >= 500 || reply.status == 429;
                    last = Some(error);
                    if !retry {
                        break;
                    }
                }
                Err(message) => {
                    last = Some(ApiError {
                        status: None,
                        code: None,
                        message,
                    })
                }
            }
        }
        self.degraded = true;
        Err(last.expect("at least one attempt"))
    }

    fn experiment_id(&mut self) -> Result<String, ApiError> {
        let name = tracker::quote_plus(&self.experiment_name);
        match self.call(
            "GET",
            &format!("experiments/get-by-name?experiment_name={name}"),
            None,
        ) {
            Ok(reply) => {
                let experiment = &reply["experiment"];
                if experiment["lifecycle_stage"] == "deleted" {
                    return Err(ApiError {
                        status: None,
                        code: None,
                        message: format!(
                            "the experiment `{}` is deleted: restore it, or choose another experiment_name",
                            self.experiment_name
                        ),
                    });
                }
                Ok(id_of(&experiment["experiment_id"]))
            }
            Err(e) if e.code.as_deref() == Some("RESOURCE_DOES_NOT_EXIST") => {
                let mut request = json!({"name": self.experiment_name});
                if let Some(location) = &self.artifact_location {
                    request["artifact_location"] = json!(location);
                }
                match self.call("POST", "experiments/create", Some(request)) {
                    Ok(reply) => Ok(id_of(&reply["experiment_id"])),
                    // Created meanwhile by someone else.
                    Err(e) if e.code.as_deref() == Some("RESOURCE_ALREADY_EXISTS") => {
                        let name = tracker::quote_plus(&self.experiment_name);
                        let reply = self.call(
                            "GET",
                            &format!("experiments/get-by-name?experiment_name={name}"),
                            None,
                        )?;
                        Ok(id_of(&reply["experiment"]["experiment_id"]))
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn start(
        &mut self,
        resume: Option<RunIds>,
        mut params: BTreeMap<String, String>,
        params_file: Option<PathBuf>,
        run_name: Option<String>,
        tags: BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        self.started = false;
        self.logged_steps.clear();
        if let Some(ids) = resume {
            match self.resume(&ids) {
                Ok(()) => {
                    *self.run.lock().unwrap_or_else(|p| p.into_inner()) = Some(ids);
                    self.started = true;
                    return Ok(());
                }
                // The run is gone: start a new one.
                Err(e) if e.code.as_deref() == Some("RESOURCE_DOES_NOT_EXIST") => {
                    log::warn!(
                        "{NAME}: the run {} to resume is not on {}: starting a new run",
                        ids.run_id,
                        self.tracking_uri
                    );
                }
                Err(e) => return Err(e),
            }
        }
        let experiment_id = self.experiment_id()?;
        let tags: Vec<Value> = tags
            .iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect();
        let mut request = json!({
            "experiment_id": experiment_id,
            "start_time": tracker::now_millis(),
            "tags": tags,
        });
        if let Some(name) = run_name {
            request["run_name"] = json!(name);
        }
        let reply = self.call("POST", "runs/create", Some(request))?;
        let info = &reply["run"]["info"];
        let run_id = info["run_id"].as_str().unwrap_or_default().to_string();
        if run_id.is_empty() {
            return Err(ApiError {
                status: None,
                code: None,
                message: "runs/create answered without a run_id".into(),
            });
        }
        self.artifact_uri = info["artifact_uri"].as_str().map(str::to_string);
        *self.run.lock().unwrap_or_else(|p| p.into_inner()) = Some(RunIds {
            run_id,
            experiment_id,
        });
        self.started = true;

        if let Some(file) = params_file {
            match read_params_file(&file) {
                Ok(Some(value)) => {
                    for (key, value) in MLFlowLoggerConfig::flatten(&value) {
                        params.entry(key).or_insert(value);
                    }
                }
                Ok(None) => log::debug!("{NAME}: no parameter file at {}", file.display()),
                Err(e) => log::warn!("{NAME}: parameters: {e}"),
            }
        }
        self.log_params(params)
    }

    fn resume(&mut self, ids: &RunIds) -> Result<(), ApiError> {
        let reply = self.call("GET", &format!("runs/get?run_id={}", ids.run_id), None)?;
        let run = &reply["run"];
        self.artifact_uri = run["info"]["artifact_uri"].as_str().map(str::to_string);
        for metric in run["data"]["metrics"].as_array().into_iter().flatten() {
            if let (Some(key), Some(step)) = (metric["key"].as_str(), metric["step"].as_i64()) {
                self.logged_steps.insert(key.to_string(), step);
            }
        }
        self.call(
            "POST",
            "runs/update",
            Some(json!({"run_id": ids.run_id, "status": "RUNNING"})),
        )?;
        Ok(())
    }

    fn run_id(&self) -> String {
        self.run
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| r.run_id.clone())
            .unwrap_or_default()
    }

    fn log_params(&mut self, params: BTreeMap<String, String>) -> Result<(), ApiError> {
        let params: Vec<Value> = params
            .into_iter()
            .map(|(key, value)| {
                let value: String = value.chars().take(MAX_PARAM_VALUE).collect();
                json!({"key": mlflow_name(&key), "value": value})
            })
            .collect();
        let run_id = self.run_id();
        for chunk in params.chunks(MAX_PARAMS_PER_BATCH) {
            self.call(
                "POST",
                "runs/log-batch",
                Some(json!({"run_id": run_id, "params": chunk})),
            )?;
        }
        Ok(())
    }

    fn log_metrics(&mut self, points: Vec<Point>) -> Result<(), ApiError> {
        let metrics: Vec<Value> = points
            .into_iter()
            .map(|p| Point {
                key: mlflow_name(&p.key),
                ..p
            })
            .filter(|p| {
                self.logged_steps
                    .get(&p.key)
                    .is_none_or(|&last| p.step > last)
            })
            .map(|p| {
                json!({
                    "key": p.key,
                    "value": metric_value(p.value),
                    "timestamp": p.timestamp,
                    "step": p.step,
                })
            })
            .collect();
        let run_id = self.run_id();
        for chunk in metrics.chunks(MAX_METRICS_PER_BATCH) {
            self.call(
                "POST",
                "runs/log-batch",
                Some(json!({"run_id": run_id, "metrics": chunk})),
            )?;
        }
        Ok(())
    }

    /// Where the run's artifacts are uploaded: the server's artifact proxy
    /// for `mlflow-artifacts:` runs, the address itself for `http(s)://`.
    fn artifact_base(&self) -> Option<String> {
        let uri = self.artifact_uri.as_deref()?;
        if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
            let (base, path) = match rest.strip_prefix("//") {
                Some(rest) => {
                    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                    let scheme = self.tracking_uri.split("://").next().unwrap_or("http");
                    (format!("{scheme}://{host}"), path)
                }
                None => (self.tracking_uri.clone(), rest),
            };
            let path = path.trim_start_matches('/');
            Some(format!("{base}/api/2.0/mlflow-artifacts/artifacts/{path}"))
        } else if uri.starts_with("http://") || uri.starts_with("https://") {
            Some(uri.trim_end_matches('/').to_string())
        } else {
            None
        }
    }

    fn upload(
        &mut self,
        files: Vec<(PathBuf, String)>,
        sink: &FailureSink,
    ) -> Result<(), ApiError> {
        let Some(base) = self.artifact_base() else {
            if !self.warned_artifacts {
                self.warned_artifacts = true;
                sink.fail(format!(
                    "{NAME}: the run's artifacts go to {}, which burnfit cannot write to: start \
                     the server with --serve-artifacts (mlflow server's default) to get them",
                    self.artifact_uri.as_deref().unwrap_or("(unknown)")
                ));
            }
            return Ok(());
        };
        for (file, name) in files {
            let url = format!("{base}/{}", tracker::encode_path(&name));
            let handle = match std::fs::File::open(&file) {
                Ok(handle) => handle,
                Err(e) => {
                    log::debug!("{NAME}: {}: {e}", file.display());
                    continue;
                }
            };
            let reply = self
                .upload
                .request("PUT", &url, Body::File(handle))
                .map_err(|message| ApiError {
                    status: None,
                    code: None,
                    message,
                })?;
            if !(200..300).contains(&reply.status) {
                return Err(ApiError {
                    status: Some(reply.status),
                    code: None,
                    message: format!(
                        "uploading {name}: {}",
                        reply.body.chars().take(200).collect::<String>()
                    ),
                });
            }
        }
        Ok(())
    }

    fn set_status(&mut self, status: &str) -> Result<(), ApiError> {
        let run_id = self.run_id();
        self.call(
            "POST",
            "runs/update",
            Some(json!({"run_id": run_id, "status": status, "end_time": tracker::now_millis()})),
        )?;
        Ok(())
    }
}

/// An id MLflow gives as a string (or, from some servers, a number).
fn id_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The parameter file's content, `None` if there is none.
fn read_params_file(path: &Path) -> std::result::Result<Option<Value>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let value = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    } else {
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    };
    Ok(Some(value))
}

fn default_experiment_name() -> String {
    "burnfit".into()
}

fn default_log_every_n_steps() -> u64 {
    50
}

fn default_params_file() -> PathBuf {
    "config.toml".into()
}

fn default_artifacts() -> Vec<PathBuf> {
    vec!["history.csv".into(), "plots".into()]
}

fn default_model_file() -> PathBuf {
    "checkpoints/best.bpk".into()
}

/// The parameters of [`MLFlowLogger`]: Lightning's names (`tracking_uri`,
/// `experiment_name`, `run_name`, `tags`, `log_model`, `prefix`,
/// `artifact_location`, `run_id`, and the Trainer's `log_every_n_steps`),
/// and where its parameters and artifacts come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MLFlowLoggerConfig {
    /// The tracking server (default `$MLFLOW_TRACKING_URI`, else
    /// `http://localhost:5000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_uri: Option<String>,
    /// The experiment the run belongs to, created if missing (default
    /// `burnfit`).
    #[serde(default = "default_experiment_name")]
    pub experiment_name: String,
    /// The run's name (default: the server picks one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_name: Option<String>,
    /// An existing run to log to, continued as a resume would (default: a
    /// new run; a restored state's run wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Where a new experiment keeps its artifacts (default: the server's
    /// choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_location: Option<String>,
    /// Tags set on the run when it is created.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Upload `model_file` at the end of training (default `false`).
    #[serde(default)]
    pub log_model: bool,
    /// Put before every metric name, joined with `-` (default none).
    #[serde(default)]
    pub prefix: String,
    /// Log the batch logs every this many training steps; 0: epoch metrics
    /// only (default 50, Lightning's).
    #[serde(default = "default_log_every_n_steps")]
    pub log_every_n_steps: u64,
    /// Parameters to log, besides `params_file`'s (these win).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// The run directory the next three paths are relative to; empty (the
    /// default): none, no file is read or uploaded. The CLI sets it to its
    /// run directory (a relative `dirpath` is relative to it).
    #[serde(default)]
    pub dirpath: PathBuf,
    /// A TOML (or `.json`) file whose flattened content is logged as
    /// parameters (default `config.toml`, the CLI's resolved config).
    #[serde(default = "default_params_file")]
    pub params_file: PathBuf,
    /// Files or directories uploaded at the end of training (default
    /// `history.csv` and `plots`).
    #[serde(default = "default_artifacts")]
    pub artifacts: Vec<PathBuf>,
    /// The model file uploaded with `log_model` (default
    /// `checkpoints/best.bpk`, the CLI's best checkpoint).
    #[serde(default = "default_model_file")]
    pub model_file: PathBuf,
}

impl Default for MLFlowLoggerConfig {
    fn default() -> Self {
        Self {
            tracking_uri: None,
            experiment_name: default_experiment_name(),
            run_name: None,
            run_id: None,
            artifact_location: None,
            tags: BTreeMap::new(),
            log_model: false,
            prefix: String::new(),
            log_every_n_steps: default_log_every_n_steps(),
            params: BTreeMap::new(),
            dirpath: PathBuf::new(),
            params_file: default_params_file(),
            artifacts: default_artifacts(),
            model_file: default_model_file(),
        }
    }
}

impl MLFlowLoggerConfig {
    /// A nested configuration as flat parameters: keys joined with `.`,
    /// arrays of tables by index (`callbacks.0.type`), strings as they are,
    /// other values as JSON text (`0.001`, `true`, `[256, 128]`).
    ///
    /// ```
    /// use burnfit_core::builtins::MLFlowLoggerConfig;
    ///
    /// let params = MLFlowLoggerConfig::flatten(&serde_json::json!({
    ///     "model": {"kind": "mlp", "hidden": [32]},
    ///     "callbacks": [{"type": "EarlyStopping", "patience": 3}],
    /// }));
    /// assert_eq!(params["model.kind"], "mlp");
    /// assert_eq!(params["model.hidden"], "[32]");
    /// assert_eq!(params["callbacks.0.patience"], "3");
    /// ```
    pub fn flatten(value: &Value) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        flatten_into("", value, &mut out);
        out
    }
}

fn flatten_into(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    let join = |key: &str| {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    };
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                flatten_into(&join(key), value, out);
            }
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            for (index, item) in items.iter().enumerate() {
                flatten_into(&join(&index.to_string()), item, out);
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(Value::to_string).collect();
            out.insert(prefix.to_string(), format!("[{}]", items.join(", ")));
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_a_config() {
        let config: Value = toml::from_str(
            r#"
name = "small"
[model]
kind = "mlp"
hidden = [256, 128]
[optimizer]
lr = 2e-3
[[callbacks]]
type = "EarlyStopping"
[[callbacks]]
type = "MLFlowLogger"
tags = { team = "a" }
"#,
        )
        .unwrap();
        let params = MLFlowLoggerConfig::flatten(&config);
        let expected: BTreeMap<String, String> = [
            ("name", "small"),
            ("model.kind", "mlp"),
            ("model.hidden", "[256, 128]"),
            ("optimizer.lr", "0.002"),
            ("callbacks.0.type", "EarlyStopping"),
            ("callbacks.1.type", "MLFlowLogger"),
            ("callbacks.1.tags.team", "a"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(params, expected);
    }

    #[test]
    fn names_mlflow_accepts() {
        assert_eq!(mlflow_name("val_loss"), "val_loss");
        assert_eq!(mlflow_name("a[0].b/c:d e-f"), "a_0_.b/c:d e-f");
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (input, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("user:pa ss", "dXNlcjpwYSBzcw=="),
        ] {
            assert_eq!(base64(input.as_bytes()), encoded);
        }
    }

    #[test]
    fn artifact_names_and_files() {
        assert_eq!(
            artifact_name(Path::new("checkpoints/best.bpk")),
            "checkpoints/best.bpk"
        );
        assert_eq!(artifact_name(Path::new("/tmp/x/model.bpk")), "model.bpk");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("plots/sub")).unwrap();
        std::fs::write(dir.path().join("plots/a.png"), b"a").unwrap();
        std::fs::write(dir.path().join("plots/sub/b.svg"), b"b").unwrap();
        let mut files = Vec::new();
        collect_files(&dir.path().join("plots"), "plots", &mut files);
        collect_files(&dir.path().join("missing.csv"), "missing.csv", &mut files);
        let names: Vec<&str> = files.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["plots/a.png", "plots/sub/b.svg"]);
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let config: MLFlowLoggerConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, MLFlowLoggerConfig::default());
        assert!(serde_json::from_str::<MLFlowLoggerConfig>(r#"{"experiment": "x"}"#).is_err());
        let bad = MLFlowLoggerConfig {
            tracking_uri: Some("file:./mlruns".into()),
            ..Default::default()
        };
        assert!(MLFlowLogger::new(bad).is_err());
    }

    #[test]
    fn callback_config_builds_it_and_refuses_unknown_keys() {
        use crate::builtins::CallbackConfig;
        let config: CallbackConfig = toml::from_str(
            "type = \"MLFlowLogger\"\ntracking_uri = \"http://127.0.0.1:5000\"\n\
             experiment_name = \"x\"\ntags = { a = \"b\" }\nlog_every_n_steps = 10\n",
        )
        .unwrap();
        assert_eq!(config.build().unwrap().name(), "MLFlowLogger");
        let typo =
            toml::from_str::<CallbackConfig>("type = \"MLFlowLogger\"\nexperiment = \"x\"\n");
        assert!(
            typo.unwrap_err()
                .to_string()
                .contains("unknown field `experiment`")
        );
        let typo = toml::from_str::<CallbackConfig>("type = \"RemoteMonitor\"\nsend_json = true\n");
        assert!(
            typo.unwrap_err()
                .to_string()
                .contains("unknown field `send_json`")
        );
    }

    #[test]
    fn batch_metrics_every_n_steps() {
        let logger = MLFlowLogger::new(MLFlowLoggerConfig {
            tracking_uri: Some("http://127.0.0.1:1".into()),
            log_every_n_steps: 3,
            ..Default::default()
        })
        .unwrap();
        let at = |global_step, step_ended| Progress {
            global_step,
            step_ended,
            ..Progress::default()
        };
        let steps: Vec<u64> = (0..10)
            .filter(|&s| logger.wants_batch_metrics_at(&at(s, true)))
            .collect();
        assert_eq!(steps, [3, 6, 9]);
        // Inside an accumulation window the step count stays: not again.
        assert!(!logger.wants_batch_metrics_at(&at(3, false)));
    }
}
