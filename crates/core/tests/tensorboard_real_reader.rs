//! Proof that the real TensorBoard reads the event files the TensorBoard
//! callback writes: a fake training loop drives `TensorBoard` and `CSVLogger`
//! together, then `fixtures/tb_dump.py` (the oracle's dumper: strict CRC
//! check of every record, then tensorboard's own `EventAccumulator`) reads
//! the log directory, and every epoch scalar must equal the CSV value of the
//! same run to float32 precision.
//!
//! Python with the `tensorboard` package is needed: `BURNFIT_TB_PYTHON` may
//! point at one; otherwise a virtual environment is created once in
//! `target/tb-venv` (`python3 -m venv` + `pip install tensorboard`). If that
//! fails the tests fail, unless `BURNFIT_SKIP_TB=1`, which skips them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use burnfit_core::builtins::CSVLogger;
use burnfit_core::tensorboard::{TensorBoard, UpdateFreq, histogram_buckets};
use burnfit_core::{
    CallbackList, Logs, Message, ModelSnapshot, Progress, Result, SaveContent, TrainingControl,
};
use serde_json::Value;

// ---------------------------------------------------------------------------
// Python with tensorboard
// ---------------------------------------------------------------------------

fn has_tensorboard(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import tensorboard, numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn create_venv() -> std::result::Result<PathBuf, String> {
    if let Ok(python) = std::env::var("BURNFIT_TB_PYTHON") {
        let python = PathBuf::from(python);
        return if has_tensorboard(&python) {
            Ok(python)
        } else {
            Err(format!(
                "BURNFIT_TB_PYTHON={} cannot `import tensorboard`",
                python.display()
            ))
        };
    }
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is target/tmp")
        .to_path_buf();
    let venv = target.join("tb-venv");
    let python = venv.join("bin/python");
    if has_tensorboard(&python) {
        return Ok(python);
    }
    eprintln!("creating {} with tensorboard (once)…", venv.display());
    let run = |cmd: &mut Command| -> std::result::Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "tensorboard",
    ]))?;
    if has_tensorboard(&python) {
        Ok(python)
    } else {
        Err(format!(
            "{} still cannot `import tensorboard`",
            python.display()
        ))
    }
}

/// The Python to run tb_dump.py with, or None when the test is to be skipped.
fn tb_python() -> Option<PathBuf> {
    static PYTHON: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(create_venv) {
        Ok(python) => Some(python.clone()),
        Err(why) if std::env::var("BURNFIT_SKIP_TB").as_deref() == Ok("1") => {
            eprintln!("SKIPPED (BURNFIT_SKIP_TB=1): no Python with tensorboard: {why}");
            None
        }
        Err(why) => panic!(
            "no Python with tensorboard: {why}\n\
             Set BURNFIT_TB_PYTHON to a python that has `tensorboard` installed, \
             or BURNFIT_SKIP_TB=1 to skip these tests."
        ),
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

struct Dump {
    status: i32,
    stderr: String,
    json: Option<Value>,
}

/// Runs tb_dump.py on `logdir`.
fn tb_dump(python: &Path, logdir: &Path) -> Dump {
    let out_dir = tempfile::tempdir().unwrap();
    let out_file = out_dir.path().join("dump.json");
    let out = Command::new(python)
        .arg(fixture("tb_dump.py"))
        .arg(logdir)
        .arg("-o")
        .arg(&out_file)
        .output()
        .expect("run tb_dump.py");
    let json = std::fs::read_to_string(&out_file)
        .ok()
        .map(|text| serde_json::from_str(&text).expect("tb_dump writes JSON"));
    Dump {
        status: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        json,
    }
}

/// Reads the hparams plugin data the way TensorBoard's hparams plugin does
/// (EventAccumulator metadata + the plugin's own parsers).
const HPARAMS_CHECK: &str = r#"
import json, sys
from google.protobuf import json_format
from tensorboard.backend.event_processing import plugin_event_accumulator as pea
from tensorboard.plugins.hparams import metadata
acc = pea.EventAccumulator(sys.argv[1], size_guidance=pea.STORE_EVERYTHING_SIZE_GUIDANCE,
                           purge_orphaned_data=False)
acc.Reload()
content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
out = {
  "experiment": json_format.MessageToDict(
      metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])),
  "start": json_format.MessageToDict(
      metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])),
  "end": json_format.MessageToDict(
      metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])),
}
print(json.dumps(out))
"#;

fn hparams_check(python: &Path, session_dir: &Path) -> Value {
    let out = Command::new(python)
        .args(["-c", HPARAMS_CHECK])
        .arg(session_dir)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "hparams check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

// ---------------------------------------------------------------------------
// A fake training loop
// ---------------------------------------------------------------------------

/// The "model": a weight vector and a bias vector that change every step.
#[derive(Clone)]
struct Weights {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

struct FakeControl {
    lr: f64,
    stop: bool,
    progress: Progress,
    model: Weights,
}

impl TrainingControl for FakeControl {
    fn request_stop(&mut self, _reason: String) {
        self.stop = true;
    }
    fn stop_requested(&self) -> bool {
        self.stop
    }
    fn cancel_stop(&mut self) {
        self.stop = false;
    }
    fn learning_rate(&self) -> Option<f64> {
        Some(self.lr)
    }
    fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        self.lr = lr;
        Ok(())
    }
    fn snapshot_model(&self) -> ModelSnapshot {
        ModelSnapshot::of(self.model.clone())
    }
    fn restore_model(&mut self, snapshot: ModelSnapshot) -> Result<()> {
        self.model = snapshot.downcast().expect("a Weights snapshot");
        Ok(())
    }
    fn save_model(&mut self, _path: &Path, _content: SaveContent) -> Result<()> {
        Ok(())
    }
    fn progress(&self) -> Progress {
        self.progress
    }
    fn emit(&mut self, message: Message) {
        eprintln!("{message:?}");
    }
}

const STEPS_PER_EPOCH: usize = 4;

fn batch_loss(global_step: u64) -> f64 {
    1.0 / (1.0 + global_step as f64).sqrt() + 0.001 * (global_step as f64).sin()
}

fn epoch_logs(epoch: usize) -> Logs {
    let e = epoch as f64;
    let mut logs = Logs::new();
    logs.insert("loss", 0.9 / (e + 1.0) + 0.012345678901234);
    logs.insert("accuracy", 1.0 - 0.5 / (e + 2.0));
    logs.insert("val_loss", 1.0 / (e + 1.0) + std::f64::consts::PI * 1e-3);
    // A NaN validation metric in one epoch: must survive both files.
    logs.insert(
        "val_accuracy",
        if epoch == 1 { f64::NAN } else { 0.7 + e / 30.0 },
    );
    logs
}

fn new_control() -> FakeControl {
    FakeControl {
        lr: 0.1,
        stop: false,
        progress: Progress {
            total_epochs: 5,
            steps_per_epoch: Some(STEPS_PER_EPOCH),
            ..Progress::default()
        },
        model: Weights {
            weight: (0..40)
                .map(|i| ((i * 37) % 17) as f32 / 10.0 - 0.8)
                .collect(),
            bias: vec![0.05; 3],
        },
    }
}

/// Runs epochs `epochs` in `model.fit`'s hook order; the learning rate is
/// halved from epoch 2 on.
fn fit(list: &mut CallbackList, ctl: &mut FakeControl, epochs: std::ops::Range<usize>) {
    list.on_train_begin(ctl).unwrap();
    let mut last = Logs::new();
    for epoch in epochs {
        ctl.progress.epoch = epoch;
        if epoch == 2 {
            ctl.lr = 0.05;
        }
        list.on_epoch_begin(epoch, ctl).unwrap();
        for batch in 0..STEPS_PER_EPOCH {
            ctl.progress.batch = batch;
            list.on_train_batch_begin(batch, ctl).unwrap();
            ctl.progress.global_step += 1;
            ctl.progress.global_batch += 1;
            ctl.progress.step_ended = true;
            let step = ctl.progress.global_step as f32;
            for (i, w) in ctl.model.weight.iter_mut().enumerate() {
                *w -= 0.01 * ((i as f32 + step).cos());
            }
            ctl.model.bias = vec![0.05 + 0.01 * step; 3];
            let mut batch_logs = Logs::new();
            if list.wants_batch_logs() {
                batch_logs.insert("loss", batch_loss(ctl.progress.global_step));
            }
            list.on_train_batch_end(batch, &mut batch_logs, ctl)
                .unwrap();
        }
        let mut logs = epoch_logs(epoch);
        list.on_validation_begin(ctl).unwrap();
        let val: Logs = logs.iter().filter(|(k, _)| k.starts_with("val_")).collect();
        list.on_validation_end(&val, ctl).unwrap();
        list.on_epoch_end(epoch, &mut logs, ctl).unwrap();
        last = logs;
    }
    list.on_train_end(&last, ctl).unwrap();
}

fn param_source(model: &ModelSnapshot) -> Vec<(String, Vec<f32>)> {
    let w = model.downcast_ref::<Weights>().expect("Weights");
    vec![
        ("dense/weight".to_string(), w.weight.clone()),
        ("dense/bias".to_string(), w.bias.clone()),
    ]
}

const CONFIG_TEXT: &str = "[train]\nepochs = 5\nbatch_size = 32 # `inline` code\n";

fn callbacks(logdir: &Path, csv: &Path) -> CallbackList {
    let mut list = CallbackList::new();
    list.push(CSVLogger::new(csv).append(true));
    list.push(
        TensorBoard::new(logdir)
            .histogram_freq(2)
            .update_freq(UpdateFreq::Batches(3))
            .hparam("learning_rate", 0.1)
            .hparam("optimizer", "sgd")
            .hparam("augment", true)
            .config_text(CONFIG_TEXT)
            .with_param_source(param_source),
    );
    list
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// A dump value as f64 (tb_dump writes NaN as "NaN").
fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) if s == "NaN" => f64::NAN,
        Value::String(s) if s == "Infinity" => f64::INFINITY,
        Value::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
        other => panic!("not a number: {other}"),
    }
}

fn same_f32(a: f64, b: f64) -> bool {
    let (a, b) = (a as f32, b as f32);
    a == b || (a.is_nan() && b.is_nan())
}

/// `[(step, value)]` of a scalar series.
fn scalars(dump: &Value, run: &str, tag: &str) -> Vec<(i64, f64)> {
    let series = &dump["runs"][run]["scalars"][tag];
    series
        .as_array()
        .unwrap_or_else(|| panic!("no scalar {run}/{tag} in the dump"))
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), num(&p[1])))
        .collect()
}

/// Every CSV value equals the scalar TensorBoard read for that epoch.
fn assert_scalars_match_csv(dump: &Value, csv_path: &Path, epochs: usize) {
    let mut reader = csv::Reader::from_path(csv_path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), epochs, "one CSV row per epoch");
    let mut compared = 0;
    for (col, key) in headers.iter().enumerate().skip(1) {
        let (run, tag) = match key.strip_prefix("val_") {
            Some(name) => ("validation", format!("epoch_{name}")),
            None => ("train", format!("epoch_{key}")),
        };
        let series = scalars(dump, run, &tag);
        let steps: Vec<i64> = series.iter().map(|p| p.0).collect();
        assert_eq!(
            steps,
            (0..epochs as i64).collect::<Vec<_>>(),
            "{run}/{tag} steps"
        );
        for row in &rows {
            let epoch: i64 = row[0].parse().unwrap();
            let csv_value: f64 = row[col].parse().unwrap();
            let (_, tb_value) = series.iter().find(|p| p.0 == epoch).unwrap();
            assert!(
                same_f32(csv_value, *tb_value),
                "{run}/{tag} epoch {epoch}: CSV {csv_value} vs TensorBoard {tb_value}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 4 * epochs, "4 metrics per epoch compared");
}

fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .contains("tfevents")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn tensorboard_reads_what_we_write() {
    let Some(python) = tb_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let logdir = dir.path().join("logs");
    let csv_path = dir.path().join("log.csv");
    let mut ctl = new_control();
    let mut list = callbacks(&logdir, &csv_path);
    assert!(list.wants_batch_logs());
    fit(&mut list, &mut ctl, 0..5);

    for run in ["train", "validation", ""] {
        let files = event_files(&logdir.join(run));
        assert_eq!(files.len(), 1, "one event file in {run:?}");
        let name = files[0].file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("events.out.tfevents.") && name.ends_with(".v2"),
            "{name}"
        );
    }

    let out = tb_dump(&python, &logdir);
    assert_eq!(out.status, 0, "tb_dump failed: {}", out.stderr);
    assert!(!out.stderr.contains("CORRUPT"), "{}", out.stderr);
    assert!(!out.stderr.contains("no file_version"), "{}", out.stderr);
    let dump = out.json.expect("tb_dump output");
    let runs: Vec<&str> = dump["runs"]
        .as_object()
        .unwrap()
        .keys()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(runs, [".", "train", "validation"]);

    // Epoch scalars == CSV, to float32 precision (NaN included).
    assert_scalars_match_csv(&dump, &csv_path, 5);

    // The learning rate, at each epoch.
    let lr = scalars(&dump, "train", "epoch_learning_rate");
    let want: Vec<(i64, f64)> = (0..5)
        .map(|e| {
            (
                e,
                if e >= 2 {
                    0.05f32 as f64
                } else {
                    0.1f32 as f64
                },
            )
        })
        .collect();
    assert_eq!(lr, want);

    // Validation after each epoch, at the optimizer step count.
    let eval = scalars(&dump, "validation", "evaluation_loss_vs_iterations");
    let steps: Vec<i64> = eval.iter().map(|p| p.0).collect();
    assert_eq!(steps, [4, 8, 12, 16, 20]);
    for (i, (_, v)) in eval.iter().enumerate() {
        assert!(same_f32(*v, epoch_logs(i).get("val_loss").unwrap()));
    }
    assert!(dump["runs"]["validation"]["scalars"]["evaluation_accuracy_vs_iterations"].is_array());

    // Batch scalars every 3 optimizer steps.
    let batch = scalars(&dump, "train", "batch_loss");
    let steps: Vec<i64> = batch.iter().map(|p| p.0).collect();
    assert_eq!(steps, [3, 6, 9, 12, 15, 18]);
    for (step, v) in &batch {
        assert!(
            same_f32(*v, batch_loss(*step as u64)),
            "batch_loss at {step}"
        );
    }

    // Weight histograms every 2 epochs, with TensorFlow's buckets.
    let histograms = &dump["runs"]["train"]["histograms"];
    let tags: Vec<&str> = histograms
        .as_object()
        .unwrap()
        .keys()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(tags, ["dense/bias/histogram", "dense/weight/histogram"]);
    for (tag, len) in [
        ("dense/weight/histogram", 40.0),
        ("dense/bias/histogram", 3.0),
    ] {
        let series = histograms[tag].as_array().unwrap();
        let steps: Vec<i64> = series.iter().map(|p| p[0].as_i64().unwrap()).collect();
        assert_eq!(steps, [0, 2, 4], "{tag} steps");
        for point in series {
            let buckets = point[1].as_array().unwrap();
            assert_eq!(buckets.len(), 30, "{tag}: 30 buckets");
            let total: f64 = buckets.iter().map(|b| num(&b[2])).sum();
            assert_eq!(total, len, "{tag}: every value counted");
        }
    }
    // The last histogram is exactly the buckets of the final weights.
    let last = &histograms["dense/weight/histogram"][2][1];
    let values: Vec<f64> = ctl.model.weight.iter().map(|&v| v as f64).collect();
    let want = histogram_buckets(&values, 30);
    for (b, w) in last.as_array().unwrap().iter().zip(&want) {
        let got = [num(&b[0]), num(&b[1]), num(&b[2])];
        assert_eq!(&got, w);
    }

    // The run configuration as text.
    let text = &dump["runs"]["train"]["text"]["config"];
    assert_eq!(text[0][0].as_i64(), Some(0));
    assert!(text[0][1].as_str().unwrap().contains(CONFIG_TEXT), "{text}");

    // HParams: the three plugin summaries, in log_dir itself.
    let tensors = &dump["runs"]["."]["tensors"];
    for tag in [
        "_hparams_/experiment",
        "_hparams_/session_start_info",
        "_hparams_/session_end_info",
    ] {
        assert_eq!(tensors[tag]["plugin"], "hparams", "{tag} in {tensors}");
    }
    let hp = hparams_check(&python, &logdir);
    assert_eq!(
        hp["start"]["hparams"],
        serde_json::json!({"learning_rate": 0.1, "optimizer": "sgd", "augment": true})
    );
    assert_eq!(hp["end"]["status"], "STATUS_SUCCESS");
    let metrics: Vec<String> = hp["experiment"]["metricInfos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["name"]["group"].as_str().unwrap(),
                m["name"]["tag"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        metrics,
        [
            "train/epoch_accuracy",
            "train/epoch_learning_rate",
            "train/epoch_loss",
            "validation/epoch_accuracy",
            "validation/epoch_loss"
        ]
    );
    let infos: BTreeMap<String, String> = hp["experiment"]["hparamInfos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(infos["learning_rate"], "DATA_TYPE_FLOAT64");
    assert_eq!(infos["optimizer"], "DATA_TYPE_STRING");
    assert_eq!(infos["augment"], "DATA_TYPE_BOOL");

    // Corruption: one flipped byte in a copy of the train file -> CORRUPT.
    let train_file = &event_files(&logdir.join("train"))[0];
    let bytes = std::fs::read(train_file).unwrap();
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join(train_file.file_name().unwrap());
    std::fs::write(&copy, &bytes).unwrap();
    let intact = tb_dump(&python, copy_dir.path());
    assert_eq!(
        intact.status, 0,
        "the unmodified copy must pass: {}",
        intact.stderr
    );
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    std::fs::write(&copy, &flipped).unwrap();
    let corrupt = tb_dump(&python, copy_dir.path());
    assert_eq!(
        corrupt.status, 2,
        "tb_dump must reject the file: {}",
        corrupt.stderr
    );
    assert!(corrupt.stderr.contains("CORRUPT"), "{}", corrupt.stderr);
    assert!(corrupt.json.is_none());
}

/// A resumed run (new callbacks + saved state) writes new event files in the
/// same directories; TensorBoard shows one continuous series.
#[test]
fn resumed_run_continues_the_series() {
    let Some(python) = tb_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let logdir = dir.path().join("logs");
    let csv_path = dir.path().join("log.csv");
    let mut ctl = new_control();

    let mut list = callbacks(&logdir, &csv_path);
    fit(&mut list, &mut ctl, 0..3);
    let states = list.states().unwrap();
    assert!(states.contains_key("TensorBoard") && states.contains_key("CSVLogger"));
    drop(list);

    let mut list = callbacks(&logdir, &csv_path);
    list.load_states(states).unwrap();
    fit(&mut list, &mut ctl, 3..5);

    assert_eq!(event_files(&logdir.join("train")).len(), 2);
    assert_eq!(event_files(&logdir.join("validation")).len(), 2);
    let out = tb_dump(&python, &logdir);
    assert_eq!(out.status, 0, "tb_dump failed: {}", out.stderr);
    let dump = out.json.unwrap();
    assert_scalars_match_csv(&dump, &csv_path, 5);
    let batch = scalars(&dump, "train", "batch_loss");
    let steps: Vec<i64> = batch.iter().map(|p| p.0).collect();
    assert_eq!(steps, [3, 6, 9, 12, 15, 18]);
    let text = dump["runs"]["train"]["text"]["config"].as_array().unwrap();
    let steps: Vec<i64> = text.iter().map(|p| p[0].as_i64().unwrap()).collect();
    assert_eq!(
        steps,
        [0],
        "config written once: the resume continues the run"
    );
}

/// If the loop restarts its epoch and step counters after a resume, the
/// steps written still continue after the last ones written.
#[test]
fn resume_with_restarted_counters_keeps_steps_increasing() {
    let Some(python) = tb_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let logdir = dir.path().join("logs");
    let csv_path = dir.path().join("log.csv");

    let mut ctl = new_control();
    let mut list = callbacks(&logdir, &csv_path);
    fit(&mut list, &mut ctl, 0..2);
    let states = list.states().unwrap();

    let mut ctl = new_control();
    let mut list = callbacks(&logdir, &csv_path);
    list.load_states(states).unwrap();
    fit(&mut list, &mut ctl, 0..2);

    let out = tb_dump(&python, &logdir);
    assert_eq!(out.status, 0, "tb_dump failed: {}", out.stderr);
    let dump = out.json.unwrap();
    let loss = scalars(&dump, "train", "epoch_loss");
    let steps: Vec<i64> = loss.iter().map(|p| p.0).collect();
    assert_eq!(steps, [0, 1, 2, 3]);
    let eval = scalars(&dump, "validation", "evaluation_loss_vs_iterations");
    let steps: Vec<i64> = eval.iter().map(|p| p.0).collect();
    assert_eq!(steps, [4, 8, 12, 16]);
}

/// Batches `batches` of epoch 0, in `model.fit`'s hook order.
fn epoch0_batches(list: &mut CallbackList, ctl: &mut FakeControl, batches: std::ops::Range<usize>) {
    for batch in batches {
        ctl.progress.batch = batch;
        list.on_train_batch_begin(batch, ctl).unwrap();
        ctl.progress.global_step += 1;
        ctl.progress.global_batch += 1;
        ctl.progress.step_ended = true;
        let mut logs = Logs::new();
        logs.insert("loss", batch_loss(ctl.progress.global_step));
        list.on_train_batch_end(batch, &mut logs, ctl).unwrap();
    }
}

/// A backup in the middle of an epoch records the event files' lengths; a
/// kill then loses what was still buffered, and the resume cuts the files
/// to those lengths: every batch scalar written before the backup must be
/// on disk by then, so the series has each step exactly once.
#[test]
fn a_kill_after_a_mid_epoch_backup_keeps_every_batch_scalar_once() {
    let Some(python) = tb_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let logdir = dir.path().join("logs");
    let tensorboard = || {
        let mut list = CallbackList::new();
        list.push(TensorBoard::new(&logdir).update_freq(UpdateFreq::Batches(1)));
        list
    };
    let mut ctl = new_control();
    let mut list = tensorboard();
    list.on_train_begin(&mut ctl).unwrap();
    list.on_epoch_begin(0, &mut ctl).unwrap();
    epoch0_batches(&mut list, &mut ctl, 0..2);
    let backup = list.states().unwrap();
    epoch0_batches(&mut list, &mut ctl, 2..3);
    // SIGKILL: no destructor runs, nothing more reaches the files.
    std::mem::forget(list);

    let mut ctl = new_control();
    ctl.progress.global_step = 2;
    ctl.progress.global_batch = 2;
    let mut list = tensorboard();
    list.load_states(backup).unwrap();
    list.on_train_begin(&mut ctl).unwrap();
    list.on_epoch_begin(0, &mut ctl).unwrap();
    epoch0_batches(&mut list, &mut ctl, 2..STEPS_PER_EPOCH);
    let mut logs = epoch_logs(0);
    list.on_epoch_end(0, &mut logs, &mut ctl).unwrap();
    list.on_train_end(&logs, &mut ctl).unwrap();

    let out = tb_dump(&python, &logdir);
    assert_eq!(out.status, 0, "tb_dump failed: {}", out.stderr);
    let steps: Vec<i64> = scalars(&out.json.unwrap(), "train", "batch_loss")
        .iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(steps, [1, 2, 3, 4]);
}
