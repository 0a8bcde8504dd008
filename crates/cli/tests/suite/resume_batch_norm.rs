//! The flagship CNN (batch norm, dropout, the models' own convolution
//! kernels on flex) stopped in the middle of an epoch, by SIGINT or by a
//! kill under batch backups, on one device and on two, resumes to a
//! byte-identical history.csv, with every classification metric: those
//! computed from the whole epoch (precision, recall, F1, AUC) resume from
//! the state the backup keeps. Batch norm keeps its running statistics per
//! thread until synced: a backup that does not sync them saves them one
//! update old, and the validation after the resume differs.
//! Needs the `fault-injection` feature (`make test` turns it on).
#![cfg(feature = "fault-injection")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{repo, subset, text};

/// The flagship config on 640 training items of the subset (9 steps of 64
/// an epoch after the validation split), with batch backups every 4 steps.
fn flagship(dir: &Path) -> PathBuf {
    let flagship = std::fs::read_to_string(repo().join("configs/fashion_mnist_cnn.toml")).unwrap();
    let path = dir.join("cnn.toml");
    std::fs::write(
        &path,
        format!(
            "{flagship}\n[[callbacks]]\ntype = \"BackupAndRestore\"\nbackup_dir = \"batch-backups\"\nsave_freq = 4\n"
        ),
    )
    .unwrap();
    path
}

fn train(config: &Path, run: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let data = subset();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_burnfit"));
    cmd.args([
        "train",
        config.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--backend",
        "flex",
        "--epochs",
        "3",
        "--data",
        data.to_str().unwrap(),
        "--set",
        "data.limit_train=640",
        "--set",
        "outputs.plots=false",
        "--set",
        r#"training.metrics=["accuracy", "precision", "recall", "f1_score", "auc"]"#,
    ])
    .args(extra)
    .current_dir(repo());
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().unwrap()
}

fn history(run: &Path) -> String {
    std::fs::read_to_string(run.join("history.csv")).unwrap()
}

/// A straight run, then one stopped by `env` and resumed: the histories are
/// byte for byte the same.
fn stopped_and_resumed_matches_straight(devices: &[&str], stops: &[(&str, &[(&str, &str)])]) {
    let tmp = tempfile::tempdir().unwrap();
    let config = flagship(tmp.path());
    let straight = tmp.path().join("straight");
    let out = train(&config, &straight, devices, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let expected = history(&straight);
    assert_eq!(expected.lines().count(), 4, "{expected}");
    assert!(expected.contains(",auc,"), "{expected}");
    for (name, env) in stops {
        let run = tmp.path().join(name);
        let out = train(&config, &run, devices, env);
        assert!(!out.status.success(), "{name}: the run was stopped");
        let mut again = devices.to_vec();
        again.push("--resume");
        let out = train(&config, &run, &again, &[]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        assert_eq!(history(&run), expected, "{name}");
    }
}

/// SIGINT in epoch 2 (step 13 is its 4th batch: the backup is at that
/// batch), and a kill at step 16 after the batch backup of step 12.
const STOPS: &[(&str, &[(&str, &str)])] = &[
    ("sigint", &[("BURNFIT_SIGINT_AT_STEP", "13")]),
    (
        "killed",
        &[
            ("BURNFIT_ABORT_AT_STEP", "16"),
            ("BURNFIT_ABORT_AFTER_BACKUP", "12"),
        ],
    ),
];

#[test]
fn the_flagship_cnn_resumes_byte_identical_after_sigint_or_a_kill_mid_epoch() {
    stopped_and_resumed_matches_straight(&[], STOPS);
}

#[test]
fn the_flagship_cnn_on_two_devices_resumes_byte_identical_after_sigint_or_a_kill_mid_epoch() {
    stopped_and_resumed_matches_straight(&["--devices", "2"], STOPS);
}
