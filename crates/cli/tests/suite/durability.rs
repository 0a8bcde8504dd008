//! Every run directory can be finished, and bad input is refused before
//! anything is created: a kill while the end files are written, a full disk
//! at the first backup, temporary files left by a kill, a model too big for
//! memory, a run directory whose name is not UTF-8, a resume on another
//! backend or device list, two writers aimed at one file. The fault tests
//! need the `fault-injection` feature (`make test` turns it on).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::common::{SubsetMlp, repo, tensors_of, text};

/// An MLP on 400 training images in batches of 50 (8 steps an epoch), three
/// epochs that always all run (no callback stops it early).
fn config(dir: &Path, extra: &str) -> PathBuf {
    SubsetMlp {
        name: "durability",
        model: "hidden = [32]\ndropout = 0.3",
        training: "epochs = 3\nseed = 5",
        outputs: "histogram_freq = 0",
        rest: &format!("[optimizer]\nlr = 3e-3\n\n{extra}"),
    }
    .write(dir)
}

fn train(config: &Path, run: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_burnfit"));
    cmd.args(["train", config.to_str().unwrap(), "--run-dir"])
        .arg(run)
        .args(extra)
        .current_dir(repo());
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().unwrap()
}

fn resume(config: &Path, run: &Path, extra: &[&str]) -> Output {
    let mut all = vec!["--resume"];
    all.extend_from_slice(extra);
    train(config, run, &all, &[])
}

/// `burnfit validate CONFIG`, from the repository root.
fn validate(config: &Path, flags: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_burnfit"))
        .arg("validate")
        .arg(config)
        .args(flags)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn history(run: &Path) -> String {
    std::fs::read_to_string(run.join("history.csv")).unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The temporary files of interrupted writes under `dir`.
fn temporary_files(dir: &Path) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .collect()
}

/// One `error:` line, exit code 2, naming `needle`.
fn refused(out: &Output, needle: &str) {
    let printed = text(out);
    assert_eq!(out.status.code(), Some(2), "{printed}");
    assert_eq!(printed.lines().count(), 1, "{printed}");
    assert!(printed.starts_with("error: "), "{printed}");
    assert!(printed.contains(needle), "{printed}");
}

/// The history and final weights of an uninterrupted run with `flags`,
/// shared by the tests: it is deterministic.
fn straight(flags: &'static [&'static str]) -> (String, Option<Vec<u8>>) {
    type Runs = Vec<(&'static [&'static str], String, Option<Vec<u8>>)>;
    static RUNS: OnceLock<std::sync::Mutex<Runs>> = OnceLock::new();
    let mut runs = RUNS.get_or_init(Default::default).lock().unwrap();
    if let Some((_, history, weights)) = runs.iter().find(|(f, _, _)| *f == flags) {
        return (history.clone(), weights.clone());
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let run = tmp.path().join("straight");
    let out = train(&config, &run, flags, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let weights = std::fs::read(run.join("checkpoints/final.bpk")).ok();
    runs.push((flags, history(&run), weights.clone()));
    (history(&run), weights)
}

/// Keras's weight EMA: the final weights are written after the last epoch.
const EMA: &[&str] = &["--set", "optimizer.use_ema=true"];

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn a_kill_while_the_summary_is_written_is_finished_by_resume_without_training() {
    let (expected, _) = straight(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let run = tmp.path().join("run");
    let out = train(
        &config,
        &run,
        &[],
        &[("BURNFIT_ABORT_IN_WRITE_TO", "summary.json")],
    );
    assert!(!out.status.success(), "not killed: {}", text(&out));
    assert!(
        text(&out).contains("BURNFIT_ABORT_IN_WRITE_TO"),
        "{}",
        text(&out)
    );
    assert!(!run.join("summary.json").exists());
    assert!(
        !temporary_files(&run).is_empty(),
        "the kill left its temporary file"
    );

    let out = resume(&config, &run, &[]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("training had ended"), "{printed}");
    assert!(!printed.contains("Resuming from"), "it trained: {printed}");
    assert_eq!(history(&run), expected);
    let summary = json(&run.join("summary.json"));
    assert_eq!(summary["epochs_run"], 3);
    assert_eq!(summary["resumes"][0]["end_files_only"], true);
    assert!(
        temporary_files(&run).is_empty(),
        "{:?}",
        temporary_files(&run)
    );
    assert!(!run.join("ended.json").exists());
    assert!(files(&run.join("backup")).is_empty(), "the backups stay");
    // Finished: never retrained.
    let out = resume(&config, &run, &[]);
    refused(&out, "already finished");
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn a_kill_while_the_final_weights_are_written_resumes_into_the_same_final_weights() {
    let (expected, weights) = straight(EMA);
    assert!(weights.is_some(), "an EMA run ends with final.bpk");
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let run = tmp.path().join("run");
    let out = train(
        &config,
        &run,
        EMA,
        &[("BURNFIT_ABORT_IN_WRITE_TO", "final.bpk")],
    );
    assert!(!out.status.success(), "not killed: {}", text(&out));
    assert!(!run.join("summary.json").exists());
    assert!(!run.join("checkpoints/final.bpk").exists());

    // Every epoch ran: the resume runs none, and writes the end files.
    let out = resume(&config, &run, EMA);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert_eq!(history(&run), expected);
    assert_eq!(json(&run.join("summary.json"))["epochs_run"], 3);
    let again = std::fs::read(run.join("checkpoints/final.bpk")).expect("final.bpk");
    assert!(
        tensors_of(&again) == tensors_of(&weights.unwrap()),
        "final.bpk holds other weights than the uninterrupted run's"
    );
    assert!(
        temporary_files(&run).is_empty(),
        "{:?}",
        temporary_files(&run)
    );
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn a_full_disk_at_the_first_backup_says_what_to_do_and_resume_starts_the_run_again() {
    let (expected, _) = straight(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let run = tmp.path().join("run");
    let out = train(&config, &run, &[], &[("BURNFIT_FAIL_WRITE_TO", "backup-")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error:") && !l.contains("BURNFIT_FAIL_WRITE_TO"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("no backup was written yet"), "{stderr}");
    assert!(errors[0].ends_with("--resume"), "{stderr}");

    // Space freed: the resume the message gives starts again from the
    // run's config.toml, and the first attempt's files are kept aside.
    let out = resume(&config, &run, &[]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("starting it again"), "{printed}");
    assert_eq!(history(&run), expected);
    assert!(run.join("restart-1/history.csv").is_file());
    let summary = json(&run.join("summary.json"));
    assert_eq!(summary["resumes"][0]["restarted"], true);
    assert_eq!(summary["epochs_run"], 3);
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn a_refused_resume_still_removes_the_temporary_files_of_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let run = tmp.path().join("run");
    let out = train(
        &config,
        &run,
        &[],
        &[("BURNFIT_ABORT_IN_WRITE_TO", "last.bpk")],
    );
    assert!(!out.status.success(), "not killed: {}", text(&out));
    let left = temporary_files(&run);
    assert!(
        left.iter()
            .any(|p| p.parent().unwrap().ends_with("checkpoints")),
        "{left:?}"
    );
    let out = resume(&config, &run, &["--set", "model.hidden=[64]"]);
    refused(&out, "model.hidden: [32] -> [64]");
    assert!(
        temporary_files(&run).is_empty(),
        "{:?}",
        temporary_files(&run)
    );
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn a_resume_on_another_backend_or_device_list_needs_force_and_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let run = tmp.path().join("run");
    let out = train(&config, &run, &[], &[("BURNFIT_ABORT_AT_STEP", "11")]);
    assert!(!out.status.success(), "not killed: {}", text(&out));
    let out = resume(&config, &run, &["--devices", "2"]);
    refused(&out, "training.devices");
    let out = resume(&config, &run, &["--backend", "wgpu"]);
    if text(&out).contains("wgpu found no adapter")
        && std::env::var_os("BURNFIT_REQUIRE_WGPU").is_none()
    {
        eprintln!("skipped: no wgpu adapter here (make test installs lavapipe and requires it)");
        return;
    }
    refused(&out, "training.backend");
    assert!(text(&out).contains("--force"), "{}", text(&out));

    let out = resume(&config, &run, &["--backend", "wgpu", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    let resumes = json(&run.join("resumes.json"));
    assert_eq!(
        resumes[0]["forced_changes"][0], "training.backend: \"flex\" -> \"wgpu\"",
        "{resumes}"
    );
    assert_eq!(json(&run.join("summary.json"))["backend"], "wgpu");
}

#[test]
fn a_model_too_big_for_memory_is_refused_before_anything_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let run = tmp.path().join("run");
    let out = train(&config, &run, &["--set", "model.hidden=[1000000000]"], &[]);
    // Named at the --set that gave the size, not at the config file.
    refused(
        &out,
        "--set model.hidden=[1000000000]: model.hidden: the model has at least",
    );
    assert!(!run.exists(), "created {}", run.display());
}

#[test]
fn a_run_directory_whose_name_is_not_utf8_is_refused_before_anything_is_created() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let run = tmp
        .path()
        .join(std::ffi::OsStr::from_bytes(b"run-\xff\xfe"));
    let out = train(&config, &run, &[], &[]);
    refused(&out, "--run-dir");
    assert!(!run.exists());
    // `validate` with the same --run-dir says the same.
    let checked = Command::new(env!("CARGO_BIN_EXE_burnfit"))
        .arg("validate")
        .arg(&config)
        .arg("--run-dir")
        .arg(&run)
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(text(&checked), text(&out));
    assert_eq!(checked.status.code(), Some(2));
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "only the config"
    );
}

#[test]
fn two_writers_aimed_at_one_file_are_refused_before_anything_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let cases = [
        // Keras's habit beside the run's own history.csv.
        (
            "[[callbacks]]\ntype = \"CSVLogger\"\nfilename = \"history.csv\"\n",
            "callbacks[0].filename",
        ),
        (
            "[[callbacks]]\ntype = \"TensorBoard\"\nlog_dir = \"./tensorboard\"\n",
            "callbacks[0].log_dir",
        ),
        (
            "[[callbacks]]\ntype = \"ModelCheckpoint\"\nfilepath = \"checkpoints/best.bpk\"\n",
            "callbacks[0].filepath",
        ),
        (
            "[[callbacks]]\ntype = \"CSVLogger\"\nfilename = \"a.csv\"\n\n\
             [[callbacks]]\ntype = \"CSVLogger\"\nfilename = \"logs/../a.csv\"\n",
            "callbacks[1].filename",
        ),
        // An empty name is the run directory itself.
        (
            "[[callbacks]]\ntype = \"CSVLogger\"\nfilename = \"\"\n",
            "callbacks[0].filename = \"\": names the run directory itself",
        ),
        // One writer's file would have to be the other's directory.
        (
            "[[callbacks]]\ntype = \"CSVLogger\"\nfilename = \"ck\"\n\n\
             [[callbacks]]\ntype = \"ModelCheckpoint\"\nfilepath = \"ck/x.bpk\"\n",
            "callbacks[1].filepath = \"ck/x.bpk\": callbacks[0].filename (CSVLogger) is at",
        ),
    ];
    for (extra, key) in cases {
        let config = config(tmp.path(), extra);
        let out = train(&config, &run, &[], &[]);
        refused(&out, key);
        // The file and the line of the refused key.
        let text = std::fs::read_to_string(&config).unwrap();
        let callback = key.split('.').next().unwrap();
        let index: usize = callback["callbacks[".len()..callback.len() - 1]
            .parse()
            .unwrap();
        let line = 1 + text
            .lines()
            .enumerate()
            .filter(|(_, l)| *l == "[[callbacks]]")
            .nth(index)
            .map(|(n, _)| n)
            .unwrap();
        let field = format!("{}:{}: {callback}.", config.display(), line + 2);
        refused(&out, &field);
        assert!(!run.exists(), "{key}: created the run");
        // `validate` makes the same check, in the default run directory
        // and in the one given.
        refused(&validate(&config, &[]), key);
        refused(
            &validate(&config, &["--run-dir", run.to_str().unwrap()]),
            key,
        );
    }
    // The run's own log switched off, the user's CSVLogger is the one writer.
    let config = config(
        tmp.path(),
        "[[callbacks]]\ntype = \"CSVLogger\"\nfilename = \"history.csv\"\n",
    );
    let out = train(
        &config,
        &run,
        &["--epochs", "1", "--set", "outputs.csv=false"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(history(&run).lines().count(), 2, "{}", history(&run));
    // `validate --run-dir` refuses what `train --run-dir` would: the
    // finished run now there, a directory that is not a run, a file.
    let finished = validate(
        &config,
        &[
            "--run-dir",
            run.to_str().unwrap(),
            "--set",
            "outputs.csv=false",
        ],
    );
    refused(&finished, "already holds a finished run");
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("mine.txt"), "mine").unwrap();
    let file = foreign.join("mine.txt");
    for dir in [&run, &foreign, &file] {
        let flags = ["--epochs", "1", "--set", "outputs.csv=false"];
        let by_train = train(&config, dir, &flags, &[]);
        let mut checked = vec!["--run-dir", dir.to_str().unwrap()];
        checked.extend(flags);
        assert_eq!(text(&validate(&config, &checked)), text(&by_train));
        assert_eq!(by_train.status.code(), Some(2), "{}", text(&by_train));
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
    assert!(
        validate(&config, &["--set", "outputs.csv=false"])
            .status
            .success()
    );
}

/// A callback's file outside the run directory that exists already is
/// the user's: a run that starts (not a `--resume`) refuses to overwrite it,
/// and refuses a `backup_dir` that holds files (it would resume from
/// another run's backups, or delete them), before anything is created. A
/// CSVLogger that appends keeps the file's lines.
#[test]
fn a_callback_never_overwrites_what_the_user_has_outside_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let notes = tmp.path().join("notes.txt");
    std::fs::write(&notes, "mine\n").unwrap();
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("backup-000000000001.bfk"), "theirs").unwrap();
    let cases = [
        (
            format!(
                "[[callbacks]]\ntype = \"CSVLogger\"\nfilename = \"{}\"\n",
                notes.display()
            ),
            "callbacks[0].filename",
        ),
        // Relative to the run directory, so outside it.
        (
            "[[callbacks]]\ntype = \"ModelCheckpoint\"\nfilepath = \"../notes.txt\"\n\
             save_weights_only = true\n"
                .to_string(),
            "callbacks[0].filepath",
        ),
        (
            format!(
                "[[callbacks]]\ntype = \"BackupAndRestore\"\nbackup_dir = \"{}\"\n",
                shared.display()
            ),
            "callbacks[0].backup_dir",
        ),
    ];
    for (extra, key) in &cases {
        let config = config(tmp.path(), extra);
        let out = train(&config, &run, &["--epochs", "1"], &[]);
        refused(&out, key);
        assert!(!run.exists(), "{key}: created the run");
        // `validate` with the same --run-dir says what `train` said; an
        // absolute path needs no --run-dir.
        refused(
            &validate(&config, &["--run-dir", run.to_str().unwrap()]),
            key,
        );
        if !extra.contains("../") {
            refused(&validate(&config, &[]), key);
        }
        assert!(!run.exists(), "{key}: validate created the run");
    }
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "mine\n");
    assert_eq!(
        std::fs::read(shared.join("backup-000000000001.bfk")).unwrap(),
        b"theirs"
    );
    // Appending is what the user asked for: their line stays first.
    let appends = format!(
        "[[callbacks]]\ntype = \"CSVLogger\"\nfilename = \"{}\"\nappend = true\n",
        notes.display()
    );
    let out = train(&config(tmp.path(), &appends), &run, &["--epochs", "1"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let appended = std::fs::read_to_string(&notes).unwrap();
    assert!(
        appended.starts_with("mine\n") && appended.lines().count() > 1,
        "{appended}"
    );
}

/// Without the feature, the test hooks are not in the binary: the
/// variables that abort a run in a `make test` build do nothing.
#[test]
#[cfg(not(feature = "fault-injection"))]
fn without_the_fault_injection_feature_the_fault_variables_do_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let run = tmp.path().join("run");
    let out = train(
        &config,
        &run,
        &["--epochs", "1"],
        &[
            ("BURNFIT_ABORT_AT_STEP", "3"),
            ("BURNFIT_ABORT_IN_WRITE", "2"),
            ("BURNFIT_ABORT_IN_WRITE_TO", "summary.json"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(run.join("summary.json").is_file());
}

/// EarlyStopping ends the run after epoch 2 of 3 (no epoch improves
/// `val_loss` by 10); a kill while `ended.json` is written leaves the
/// epoch-2 backup. The backup records that training was stopped, so
/// `--resume` trains no third epoch: the same history and stop as the run
/// that was not killed.
#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn a_kill_after_early_stopping_resumes_into_the_same_stop_without_another_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let stop = "[[callbacks]]\ntype = \"EarlyStopping\"\nmonitor = \"val_loss\"\n\
                min_delta = 10.0\npatience = 1\nrestore_best_weights = true\n";
    let config = config(tmp.path(), stop);
    let straight = tmp.path().join("straight");
    let out = train(&config, &straight, &[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let expected = json(&straight.join("summary.json"));
    assert_eq!(expected["epochs_run"], 2, "{expected}");

    let run = tmp.path().join("run");
    let out = train(
        &config,
        &run,
        &[],
        &[("BURNFIT_ABORT_IN_WRITE_TO", "ended.json")],
    );
    assert!(!out.status.success(), "not killed: {}", text(&out));
    let out = resume(&config, &run, &[]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert_eq!(history(&run), history(&straight), "{printed}");
    let summary = json(&run.join("summary.json"));
    assert_eq!(summary["epochs_run"], 2, "{summary}");
    assert_eq!(summary["stop_reason"], expected["stop_reason"], "{summary}");
}
