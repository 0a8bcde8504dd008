//! Differential test against the real Keras 3 callbacks.
//!
//! `tests/fixtures/public_cases.json` holds cases recorded by running Keras
//! 3.15.1's EarlyStopping, ReduceLROnPlateau, ModelCheckpoint, TerminateOnNaN
//! and LearningRateScheduler on scripted logs (see the oracle's README for
//! the format). Each case is rebuilt here from its `params` through the
//! serde config structs, driven through `testing::drive` (Keras's `fit`
//! order) with a `History` after it, and every recorded outcome is compared:
//! error, epochs, stop, learning rates, per-epoch trace and callback
//! attributes, weights after `on_train_end`, restore, saves and final files,
//! history, warnings and messages.
//!
//! Cases whose outcome is a Keras bug (`quirk`) may deviate when listed in
//! [`DEVIATIONS`]; any other difference fails with a per-case diff.

use std::collections::BTreeMap;
use std::path::Path;

use burnfit_core::builtins::{
    CallbackConfig, EarlyStopping, EarlyStoppingConfig, History, HistoryHandle,
    LearningRateScheduler, LearningRateSchedulerConfig, ModelCheckpoint, ModelCheckpointConfig,
    ReduceLROnPlateau, ReduceLROnPlateauConfig, ScheduleConfig, TerminateOnNaN,
    TerminateOnNaNConfig,
};
use burnfit_core::monitor::MetricDirections;
use burnfit_core::testing::{INITIAL_MARKER, Phase, Script, ScriptedControl, Trace, drive};
use burnfit_core::{Callback, CallbackError, CallbackList, Logs, Message};
use serde_json::{Map, Value};

/// Cases where this implementation deliberately differs from Keras, with
/// the reason. Only cases with a `quirk` (a Keras bug) may be listed.
const DEVIATIONS: &[(&str, &str)] = &[(
    "h_mc_save_freq_1_best_only_keras_bug",
    "Keras crashes (TypeError) at the second batch-level save with save_best_only because monitor_op \
     is only set in on_epoch_end; we resolve the mode when first needed and keep saving",
)];

/// Cases whose input cannot be expressed in Rust as-is, and what is run
/// instead. The outcome (error phase, epoch, batch, type) must still match.
const ADAPTATIONS: &[(&str, &str)] = &[(
    "return_int",
    "a schedule returning a Python int is impossible with `Fn(usize, f64) -> f64`; a schedule \
     returning NaN is run instead, which the scheduler rejects at the same point",
)];

const DEFAULT_MODEL_METRICS: &[&str] = &["accuracy", "acc", "auc", "mae", "mse"];

// ---------------------------------------------------------------------------
// Fixture decoding
// ---------------------------------------------------------------------------

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" | "+inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// A JSON value as written in the fixture: objects keep their key order
/// (Python dict order, which Keras's messages depend on) and numbers are
/// parsed with Rust's correctly rounded `str::parse` (serde_json's default
/// float parser may be one ulp off, which matters for float32 decisions and
/// exact learning rates).
#[derive(Clone, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn parse(text: &str) -> Json {
        let mut p = Parser { text, pos: 0 };
        let value = p.value();
        p.ws();
        assert_eq!(p.pos, text.len(), "trailing characters in fixture JSON");
        value
    }

    fn ws(&mut self) {
        let rest = &self.text[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.ws();
        if self.text[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Json {
        self.ws();
        let rest = &self.text[self.pos..];
        match rest.as_bytes()[0] {
            b'{' => {
                self.pos += 1;
                let mut entries = Vec::new();
                if !self.eat("}") {
                    loop {
                        self.ws();
                        let Json::Str(key) = self.value() else {
                            panic!("object key at {}", self.pos)
                        };
                        assert!(self.eat(":"), "':' expected at {}", self.pos);
                        entries.push((key, self.value()));
                        if self.eat("}") {
                            break;
                        }
                        assert!(self.eat(","), "',' expected at {}", self.pos);
                    }
                }
                Json::Obj(entries)
            }
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                if !self.eat("]") {
                    loop {
                        items.push(self.value());
                        if self.eat("]") {
                            break;
                        }
                        assert!(self.eat(","), "',' expected at {}", self.pos);
                    }
                }
                Json::Arr(items)
            }
            b'"' => {
                // Find the closing quote, then let serde_json unescape.
                let bytes = rest.as_bytes();
                let mut i = 1;
                while bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                self.pos += i + 1;
                Json::Str(serde_json::from_str(&rest[..=i]).expect("JSON string"))
            }
            _ if self.eat("null") => Json::Null,
            _ if self.eat("true") => Json::Bool(true),
            _ if self.eat("false") => Json::Bool(false),
            _ => {
                let len = rest
                    .find(|c: char| {
                        !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
                    })
                    .unwrap_or(rest.len());
                let literal = &rest[..len];
                self.pos += len;
                match literal.parse::<i64>() {
                    Ok(n) => Json::Int(n),
                    Err(_) => Json::Float(
                        literal
                            .parse()
                            .unwrap_or_else(|_| panic!("number {literal:?}")),
                    ),
                }
            }
        }
    }
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// As a serde_json value (exact floats; key order may be lost).
    fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Int(n) => Value::from(*n),
            Json::Float(x) => Value::Number(serde_json::Number::from_f64(*x).expect("finite")),
            Json::Str(s) => Value::String(s.clone()),
            Json::Arr(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Obj(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect(),
            ),
        }
    }

    /// As logs, in key order.
    fn to_logs(&self) -> Logs {
        let Json::Obj(entries) = self else {
            panic!("logs must be objects")
        };
        entries
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    num(&v.to_value()).unwrap_or_else(|| panic!("bad log value {v:?}")),
                )
            })
            .collect()
    }

    fn array(&self) -> &[Json] {
        match self {
            Json::Arr(items) => items,
            _ => &[],
        }
    }
}

struct Case {
    name: String,
    callback: String,
    params: Map<String, Value>,
    initial_lr: f64,
    logs: Vec<Logs>,
    batch_logs: Vec<Vec<Logs>>,
    schedule: Option<Value>,
    model_metrics: Vec<String>,
    quirk: Option<String>,
    expected: Value,
}

fn load_cases() -> Vec<Case> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/public_cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = Parser::parse(&text);
    doc.get("cases")
        .expect("cases")
        .array()
        .iter()
        .map(|c| {
            let field = |k: &str| c.get(k).map(Json::to_value).unwrap_or(Value::Null);
            Case {
                name: field("name").as_str().unwrap().to_string(),
                callback: field("callback").as_str().unwrap().to_string(),
                params: field("params").as_object().cloned().unwrap_or_default(),
                initial_lr: num(&field("initial_lr")).unwrap_or(0.01),
                logs: c
                    .get("logs")
                    .expect("logs")
                    .array()
                    .iter()
                    .map(Json::to_logs)
                    .collect(),
                batch_logs: c
                    .get("batch_logs")
                    .map(|b| {
                        b.array()
                            .iter()
                            .map(|e| e.array().iter().map(Json::to_logs).collect())
                            .collect()
                    })
                    .unwrap_or_default(),
                schedule: c.get("schedule").map(Json::to_value),
                model_metrics: match field("model_metrics") {
                    Value::Array(m) => m.iter().map(|s| s.as_str().unwrap().to_string()).collect(),
                    _ => DEFAULT_MODEL_METRICS
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                },
                quirk: field("quirk").as_str().map(str::to_string),
                expected: field("expected"),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Building the callback under test
// ---------------------------------------------------------------------------

/// What building failed with: a validation error or a rejected configuration.
#[derive(Debug)]
enum BuildError {
    Callback(CallbackError),
    Config(serde_json::Error),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Callback(e) => write!(f, "{e}"),
            BuildError::Config(e) => write!(f, "config: {e}"),
        }
    }
}

/// The params as the Rust config expects them: ModelCheckpoint's path moved
/// into the temp dir, LearningRateScheduler's schedule added.
fn rust_params(case: &Case, tmp: &Path) -> Map<String, Value> {
    let mut params = case.params.clone();
    if case.callback == "ModelCheckpoint"
        && let Some(Value::String(f)) = params.get("filepath")
    {
        let full = format!("{}/{f}", tmp.display());
        params.insert("filepath".into(), Value::String(full));
    }
    if let Some(schedule) = &case.schedule {
        params.insert("schedule".into(), schedule.clone());
    }
    params
}

fn schedule_kind(case: &Case) -> Option<&str> {
    case.schedule.as_ref().and_then(|s| s["kind"].as_str())
}

fn config<T: serde::de::DeserializeOwned>(params: Map<String, Value>) -> Result<T, BuildError> {
    serde_json::from_value(Value::Object(params)).map_err(BuildError::Config)
}

/// Builds the callback through its config struct; returns it with the
/// warnings Keras would emit at construction.
fn build(case: &Case, tmp: &Path) -> Result<(Box<dyn Callback>, Vec<String>), BuildError> {
    let params = rust_params(case, tmp);
    let dirs = MetricDirections::compiled(&case.model_metrics).expect("known model metrics");
    let cb = BuildError::Callback;
    Ok(match case.callback.as_str() {
        "EarlyStopping" => {
            let mut c = EarlyStopping::new(config::<EarlyStoppingConfig>(params)?).map_err(cb)?;
            let w = c.take_warnings();
            (Box::new(c.with_metric_directions(dirs)), w)
        }
        "ReduceLROnPlateau" => {
            let mut c =
                ReduceLROnPlateau::new(config::<ReduceLROnPlateauConfig>(params)?).map_err(cb)?;
            let w = c.take_warnings();
            (Box::new(c.with_metric_directions(dirs)), w)
        }
        "ModelCheckpoint" => {
            let mut c =
                ModelCheckpoint::new(config::<ModelCheckpointConfig>(params)?).map_err(cb)?;
            let w = c.take_warnings();
            (Box::new(c.with_metric_directions(dirs)), w)
        }
        "TerminateOnNaN" => (
            Box::new(TerminateOnNaN::new(config::<TerminateOnNaNConfig>(params)?).map_err(cb)?),
            vec![],
        ),
        "LearningRateScheduler" => {
            let verbose = params.get("verbose").and_then(Value::as_u64).unwrap_or(0) as u32;
            let c = match schedule_kind(case) {
                // See ADAPTATIONS.
                Some("return_int") => {
                    LearningRateScheduler::from_fn(|_, _| f64::NAN).verbose(verbose)
                }
                Some("return_np_float32") => {
                    let value = case
                        .schedule
                        .as_ref()
                        .and_then(|s| num(&s["value"]))
                        .expect("value");
                    LearningRateScheduler::new(LearningRateSchedulerConfig {
                        schedule: ScheduleConfig::Constant { value },
                        verbose,
                    })
                    .map_err(cb)?
                }
                _ => LearningRateScheduler::new(config::<LearningRateSchedulerConfig>(params)?)
                    .map_err(cb)?,
            };
            (Box::new(c), vec![])
        }
        other => panic!("unknown callback {other}"),
    })
}

// ---------------------------------------------------------------------------
// What happened, in the fixture's terms
// ---------------------------------------------------------------------------

struct Outcome {
    build_error: Option<BuildError>,
    init_warnings: Vec<String>,
    trace: Trace,
    ctl: ScriptedControl,
    history: Option<HistoryHandle>,
    tmp: tempfile::TempDir,
}

fn run(case: &Case) -> Outcome {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut ctl = ScriptedControl::new(case.initial_lr);
    match build(case, tmp.path()) {
        Err(e) => Outcome {
            build_error: Some(e),
            init_warnings: vec![],
            trace: Trace::default(),
            ctl,
            history: None,
            tmp,
        },
        Ok((callback, init_warnings)) => {
            let history = History::new();
            let handle = history.handle();
            let mut list = CallbackList::new();
            list.push_boxed(callback);
            list.push(history);
            let script =
                Script::from_epochs(case.logs.clone()).with_batches(case.batch_logs.clone());
            let trace = drive(&mut list, &mut ctl, &script);
            Outcome {
                build_error: None,
                init_warnings,
                trace,
                ctl,
                history: Some(handle),
                tmp,
            }
        }
    }
}

fn rel(tmp: &Path, path: &Path) -> String {
    path.strip_prefix(tmp)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn marker_json(marker: i64) -> Value {
    if marker == INITIAL_MARKER {
        Value::Null
    } else {
        Value::from(marker)
    }
}

fn lr_json(lr: Option<f64>) -> Value {
    lr.map_or(Value::Null, Value::from)
}

fn all_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Keras's `history.history` seen after each epoch: the keys whose list has
/// one value per epoch so far, with their last value (the oracle's view).
fn history_rows(handle: &HistoryHandle) -> Vec<BTreeMap<String, f64>> {
    let mut lists: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut rows = Vec::new();
    for (i, (_, logs)) in handle.epochs().into_iter().enumerate() {
        for (k, v) in logs.iter() {
            lists.entry(k.to_string()).or_default().push(v);
        }
        rows.push(
            lists
                .iter()
                .filter(|(_, v)| v.len() == i + 1)
                .map(|(k, v)| (k.clone(), *v.last().unwrap()))
                .collect(),
        );
    }
    rows
}

// ---------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------

fn same_num(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// JSON values equal, numbers compared as f64 (NaN/inf strings included).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => same_num(x, y),
            _ => a == b,
        },
    }
}

#[derive(Default)]
struct Diff {
    lines: Vec<String>,
}

impl Diff {
    /// Records every difference, down to the first differing element.
    fn check(&mut self, field: &str, expected: &Value, actual: &Value) {
        match (expected, actual) {
            (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
                for (i, (x, y)) in e.iter().zip(a).enumerate() {
                    self.check(&format!("{field}[{i}]"), x, y);
                }
            }
            (Value::Object(e), Value::Object(a))
                if e.len() == a.len() && e.keys().all(|k| a.contains_key(k)) =>
            {
                for (k, x) in e {
                    self.check(&format!("{field}.{k}"), x, &a[k]);
                }
            }
            _ if same(expected, actual) => {}
            _ => self
                .lines
                .push(format!("{field}: expected {expected}, got {actual}")),
        }
    }

    fn note(&mut self, line: String) {
        self.lines.push(line);
    }
}

/// The error of a run: from building the callback or from a hook.
enum RunError<'a> {
    Build(&'a BuildError),
    Hook(&'a CallbackError),
}

impl RunError<'_> {
    fn callback_error(&self) -> Option<&CallbackError> {
        match self {
            RunError::Build(BuildError::Callback(e)) => Some(e),
            RunError::Hook(e) => Some(e),
            RunError::Build(BuildError::Config(_)) => None,
        }
    }

    fn text(&self) -> String {
        match self {
            RunError::Build(e) => e.to_string(),
            RunError::Hook(e) => e.to_string(),
        }
    }
}

/// Keras's exception type against our error kind.
fn error_type_ok(keras_type: &str, actual: &RunError) -> bool {
    match actual.callback_error() {
        None => matches!(keras_type, "TypeError" | "ValueError"),
        Some(e) => match keras_type {
            "ValueError" | "KeyError" | "TypeError" => {
                matches!(
                    e,
                    CallbackError::InvalidParameter { .. } | CallbackError::Runtime { .. }
                )
            }
            "RuntimeError" => matches!(e, CallbackError::Runtime { .. }),
            _ => false,
        },
    }
}

fn normalise(text: &str, tmp: &Path) -> String {
    let tmp = tmp.display().to_string();
    text.replace(&format!("{tmp}/"), "<tmp>/")
        .replace(&tmp, "<tmp>")
}

/// `1.0` -> `1`: Python prints a parameter given as an int without `.0`,
/// while the Rust configs hold every number as an `f64`.
fn drop_point_zero(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let after_digit = i > 0 && chars[i - 1].is_ascii_digit();
        let point_zero = chars[i] == '.' && chars.get(i + 1) == Some(&'0');
        let ends = chars.get(i + 2).is_none_or(|c| !c.is_ascii_digit());
        if after_digit && point_zero && ends {
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn message_ok(
    case: &Case,
    keras_type: &str,
    expected: &str,
    actual: &RunError,
    text: &str,
) -> bool {
    if schedule_kind(case) == Some("return_int") {
        // See ADAPTATIONS: same error, about the schedule's output.
        return text.contains("The output of the `schedule` function should be a");
    }
    if actual.callback_error().is_none() {
        // Rejected by serde (Keras: TypeError/ValueError from the
        // constructor): the names Keras quotes must be named.
        return expected
            .split('\'')
            .skip(1)
            .step_by(2)
            .all(|quoted| text.contains(quoted));
    }
    let mut expected = expected.to_string();
    if keras_type == "KeyError"
        && expected.len() >= 2
        && expected.starts_with('\'')
        && expected.ends_with('\'')
    {
        // str(KeyError(msg)) is repr(msg).
        expected = expected[1..expected.len() - 1].replace("\\'", "'");
    }
    text.contains(&expected) || drop_point_zero(text).contains(&drop_point_zero(&expected))
}

fn compare_error(case: &Case, out: &Outcome, diff: &mut Diff) {
    let expected = &case.expected["error"];
    let actual = match (&out.build_error, &out.trace.error) {
        (Some(e), _) => Some((Phase::Init, None, None, RunError::Build(e))),
        (None, Some(h)) => Some((h.at.phase, h.at.epoch, h.at.batch, RunError::Hook(&h.error))),
        (None, None) => None,
    };
    match (expected, actual) {
        (Value::Null, None) => {}
        (Value::Null, Some((phase, epoch, batch, e))) => diff.note(format!(
            "error: expected none, got {:?} at {} {epoch:?} {batch:?}",
            e.text(),
            phase.as_str()
        )),
        (exp, None) => diff.note(format!("error: expected {exp}, got none")),
        (exp, Some((phase, epoch, batch, e))) => {
            diff.check("error.phase", &exp["phase"], &Value::from(phase.as_str()));
            diff.check(
                "error.epoch",
                &exp["epoch"],
                &epoch.map_or(Value::Null, Value::from),
            );
            diff.check(
                "error.batch",
                &exp["batch"],
                &batch.map_or(Value::Null, Value::from),
            );
            let keras_type = exp["type"].as_str().unwrap_or("");
            let text = normalise(&e.text(), out.tmp.path());
            if !error_type_ok(keras_type, &e) {
                diff.note(format!("error.type: Keras {keras_type}, got {text:?}"));
            }
            let expected_text = exp["message"].as_str().unwrap_or("");
            if !message_ok(case, keras_type, expected_text, &e, &text) {
                diff.note(format!(
                    "error.message: expected to contain {expected_text:?}, got {text:?}"
                ));
            }
        }
    }
}

const STATE_KEYS: &[&str] = &[
    "wait",
    "best",
    "best_epoch",
    "stopped_epoch",
    "cooldown_counter",
    "min_delta_effective",
    "monitor_op",
];

fn compare_state(field: &str, expected: &Value, actual: Option<&Value>, diff: &mut Diff) {
    for key in STATE_KEYS {
        if let Some(exp) = expected.get(*key) {
            let got = actual
                .and_then(|s| s.get(*key))
                .cloned()
                .unwrap_or(Value::Null);
            diff.check(&format!("{field}.{key}"), exp, &got);
        }
    }
}

fn compare(case: &Case, out: &Outcome) -> Vec<String> {
    let exp = &case.expected;
    let mut diff = Diff::default();
    let t = &out.trace;
    let tmp = out.tmp.path();
    compare_error(case, out, &mut diff);

    if out.build_error.is_none() {
        diff.check("epochs_run", &exp["epochs_run"], &Value::from(t.epochs_run));
        diff.check(
            "stop_training",
            &exp["stop_training"],
            &Value::from(t.stop_training),
        );
        diff.check(
            "stop_epoch",
            &exp["stop_epoch"],
            &t.stop_epoch.map_or(Value::Null, Value::from),
        );
        diff.check("initial_lr", &exp["initial_lr"], &lr_json(t.initial_lr));
        diff.check("final_lr", &exp["final_lr"], &lr_json(t.final_lr));
        diff.check(
            "lr_begin",
            &exp["lr_begin"],
            &Value::from(t.lr_begin.iter().map(|l| lr_json(*l)).collect::<Vec<_>>()),
        );
        diff.check(
            "lr_end",
            &exp["lr_end"],
            &Value::from(t.lr_end.iter().map(|l| lr_json(*l)).collect::<Vec<_>>()),
        );
    }

    // Per-epoch trace.
    let expected_trace = exp["trace"].as_array().cloned().unwrap_or_default();
    if expected_trace.len() != t.epochs.len() {
        diff.note(format!(
            "trace: expected {} epochs, got {}",
            expected_trace.len(),
            t.epochs.len()
        ));
    }
    for (e, row) in expected_trace.iter().zip(&t.epochs) {
        let f = |k: &str| format!("trace[{}].{k}", row.epoch);
        diff.check(&f("epoch"), &e["epoch"], &Value::from(row.epoch));
        diff.check(
            &f("batches_run"),
            &e["batches_run"],
            &Value::from(row.batches_run),
        );
        diff.check(&f("lr_begin"), &e["lr_begin"], &lr_json(row.lr_begin));
        diff.check(&f("lr_end"), &e["lr_end"], &lr_json(row.lr_end));
        diff.check(
            &f("stop_training"),
            &e["stop_training"],
            &Value::from(row.stop_training),
        );
        let saved: Vec<Value> = row.saved.iter().map(|p| Value::from(rel(tmp, p))).collect();
        diff.check(&f("saved"), &e["saved"], &Value::from(saved));
        compare_state(
            &format!("trace[{}]", row.epoch),
            e,
            row.states.get(&case.callback),
            &mut diff,
        );
    }

    // After on_train_end.
    let final_states = t.final_states.as_ref();
    compare_state(
        "final_state",
        &exp["final_state"],
        final_states.and_then(|s| s.get(&case.callback)),
        &mut diff,
    );
    if exp["final_state"]
        .as_object()
        .is_some_and(|o| !o.is_empty())
        && final_states.is_none()
    {
        diff.note("final_state: expected a state, got none (run did not finish)".into());
    }
    diff.check(
        "weights_epoch_after_train_end",
        &exp["weights_epoch_after_train_end"],
        &t.marker_after_train_end.map_or(Value::Null, marker_json),
    );
    let restored =
        if case.callback == "EarlyStopping" && out.build_error.is_none() && t.error.is_none() {
            Value::from(
                out.ctl
                    .restores()
                    .iter()
                    .any(|(at, _)| at.phase == Phase::TrainEnd),
            )
        } else {
            Value::Null
        };
    diff.check("restored", &exp["restored"], &restored);

    // Checkpoints.
    let saves: Vec<Value> = out
        .ctl
        .saves()
        .iter()
        .map(|s| {
            serde_json::json!({
                "epoch": s.at.epoch,
                "batch": s.at.batch,
                "file": rel(tmp, &s.path),
            })
        })
        .collect();
    diff.check("saves", &exp["saves"], &Value::from(saves));
    let mut saved_epochs: Vec<usize> = out.ctl.saves().iter().filter_map(|s| s.at.epoch).collect();
    saved_epochs.sort_unstable();
    saved_epochs.dedup();
    diff.check(
        "saved_epochs",
        &exp["saved_epochs"],
        &Value::from(saved_epochs),
    );
    let mut files = Vec::new();
    all_files(tmp, &mut files);
    let final_files: Map<String, Value> = files
        .iter()
        .map(|p| {
            let marker = ScriptedControl::read_marker(p)
                .map_or_else(|e| Value::from(e.to_string()), marker_json);
            (rel(tmp, p), marker)
        })
        .collect();
    diff.check(
        "final_files",
        &exp["final_files"],
        &Value::Object(final_files),
    );

    // History.
    let rows: Vec<Value> = out
        .history
        .as_ref()
        .map(history_rows)
        .unwrap_or_default()
        .into_iter()
        .map(|r| Value::Object(r.into_iter().map(|(k, v)| (k, special(v))).collect()))
        .collect();
    diff.check("history", &exp["history"], &Value::from(rows));

    // Warnings: construction warnings first, then those emitted by hooks.
    let mut warnings: Vec<Value> = out
        .init_warnings
        .iter()
        .map(|w| serde_json::json!({"phase": "init", "epoch": null, "batch": null, "message": normalise(w, tmp)}))
        .collect();
    for e in out.ctl.emitted() {
        if let Message::Warning(w) = &e.message {
            warnings.push(serde_json::json!({
                "phase": e.at.phase.as_str(), "epoch": e.at.epoch, "batch": e.at.batch,
                "message": normalise(w, tmp),
            }));
        }
    }
    let expected_warnings: Vec<Value> = exp["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut w| {
            w.as_object_mut().unwrap().remove("category");
            w
        })
        .collect();
    diff.check(
        "warnings",
        &Value::from(expected_warnings),
        &Value::from(warnings),
    );

    // Messages, line by line (Keras prints them with surrounding newlines).
    let mut expected_lines = Vec::new();
    for m in exp["messages"].as_array().cloned().unwrap_or_default() {
        for line in m["text"]
            .as_str()
            .unwrap_or("")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            expected_lines.push(serde_json::json!({"phase": m["phase"], "epoch": m["epoch"], "batch": m["batch"], "line": line}));
        }
    }
    let mut lines = Vec::new();
    for e in out.ctl.emitted() {
        if let Message::Info(text) = &e.message {
            for line in normalise(text, tmp)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
            {
                lines.push(serde_json::json!({
                    "phase": e.at.phase.as_str(), "epoch": e.at.epoch, "batch": e.at.batch, "line": line,
                }));
            }
        }
    }
    diff.check(
        "messages",
        &Value::from(expected_lines),
        &Value::from(lines),
    );

    diff.lines
}

fn special(x: f64) -> Value {
    if x.is_nan() {
        Value::from("NaN")
    } else if x == f64::INFINITY {
        Value::from("Infinity")
    } else if x == f64::NEG_INFINITY {
        Value::from("-Infinity")
    } else {
        Value::from(x)
    }
}

#[test]
fn keras_oracle_cases() {
    let cases = load_cases();
    assert!(!cases.is_empty(), "no cases loaded");
    let (mut passed, mut failed, mut deviated) = (0, 0, Vec::new());
    let mut report = String::new();
    for case in &cases {
        let out = run(case);
        let lines = compare(case, &out);
        if lines.is_empty() {
            passed += 1;
            continue;
        }
        let documented = DEVIATIONS.iter().find(|(name, _)| *name == case.name);
        match (&case.quirk, documented) {
            (Some(_), Some((_, why))) => deviated.push(format!("{}: {why}", case.name)),
            _ => {
                failed += 1;
                report.push_str(&format!("FAIL {} ({})\n", case.name, case.callback));
                for line in lines {
                    report.push_str(&format!("    {line}\n"));
                }
            }
        }
    }
    for d in &deviated {
        println!("documented deviation (Keras quirk): {d}");
    }
    for (kind, how) in ADAPTATIONS {
        if cases.iter().any(|c| schedule_kind(c) == Some(kind)) {
            println!("adapted input: schedule kind `{kind}`: {how}");
        }
    }
    let summary = if deviated.is_empty() {
        format!("{passed} passed, {failed} failed")
    } else {
        format!(
            "{passed} passed, {failed} failed, {} documented deviations",
            deviated.len()
        )
    };
    println!("{summary}");
    assert_eq!(failed, 0, "\n{report}{summary}");
}

#[test]
fn drop_point_zero_only_touches_integral_floats() {
    assert_eq!(
        drop_point_zero("factor=1.0. x=2.05 y=10.0"),
        "factor=1. x=2.05 y=10"
    );
}

/// Every case's parameters also build through the tagged [`CallbackConfig`]
/// (the configuration-file route), failing exactly when Keras's constructor
/// fails.
#[test]
fn callback_config_builds_every_case() {
    for case in load_cases() {
        if matches!(
            schedule_kind(&case),
            Some("return_int" | "return_np_float32")
        ) {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let mut params = rust_params(&case, tmp.path());
        params.insert("type".into(), Value::from(case.callback.clone()));
        let init_error = case.expected["error"]["phase"] == "init";
        let built = serde_json::from_value::<CallbackConfig>(Value::Object(params))
            .map_err(|e| e.to_string())
            .and_then(|c| c.build().map_err(|e| e.to_string()));
        assert_eq!(
            built.is_err(),
            init_error,
            "{}: {:?}",
            case.name,
            built.err()
        );
        if let Ok(cb) = built {
            assert_eq!(cb.name(), case.callback, "{}", case.name);
        }
    }
}
