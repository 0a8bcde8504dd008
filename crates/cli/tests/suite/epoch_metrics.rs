//! Epoch metrics as Keras computes them: `loss` weighted by the items of
//! each batch (a short last batch counts for its items), and a regression's
//! metrics after a mid-epoch resume equal the uninterrupted run's, bit for
//! bit: `mae` and `mse` from their per-batch entries, `rmse` and
//! `r2_score` from the epoch sums the backup keeps.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{repo, text};

/// The committed Friedman table (500 rows): 361 training rows in steps of
/// 8, so each epoch ends with a batch of 1, where a plain mean of the
/// batches' losses would part from the epoch's MSE; no dropout, MSE loss;
/// a backup every 4 steps.
fn config(dir: &Path, metrics: &str) -> PathBuf {
    let path = dir.join("regression.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "regression"
[model]
kind = "mlp_regressor"
hidden = [16]
dropout = 0.0

[data]
kind = "csv"
path = "{data}"
features = ["x1", "x2", "x3", "x4", "x5", "x6"]
target = "y"
validation_split = 0.15
test_split = 0.15

[optimizer]
kind = "adam"
lr = 3e-3

[training]
epochs = 3
batch_size = 8
seed = 5
metrics = {metrics}

[[callbacks]]
type = "BackupAndRestore"
backup_dir = "backups"
save_freq = 4
"#,
            data = repo().join("data/tables/friedman1.csv").display()
        ),
    )
    .unwrap();
    path
}

fn train(config: &Path, run: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_burnfit"));
    cmd.args(["train", config.to_str().unwrap(), "--backend", "flex"])
        .args(["--run-dir", run.to_str().unwrap()])
        .args(extra)
        .current_dir(repo());
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().unwrap()
}

/// Columns of history.csv by name, per epoch.
fn column(run: &Path, name: &str) -> Vec<f64> {
    let mut reader = csv::Reader::from_path(run.join("history.csv")).unwrap();
    let at = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    reader
        .records()
        .map(|r| r.unwrap()[at].parse().unwrap())
        .collect()
}

#[test]
fn an_mse_loss_is_logged_as_the_epochs_mse() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "[\"mse\"]");
    let run = tmp.path().join("run");
    let out = train(&config, &run, &[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    // The loss is the batches' MSE: weighted by items, the epoch's loss is
    // the epoch's MSE (a plain mean over batches would weigh the short last
    // batch as a full one).
    for (loss, mse) in [("loss", "mse"), ("val_loss", "val_mse")] {
        let (loss, mse) = (column(&run, loss), column(&run, mse));
        for (l, m) in loss.iter().zip(&mse) {
            assert!((l - m).abs() <= 1e-4 * m.abs(), "{loss:?} vs {mse:?}");
        }
    }
}

/// A kill at step 7, once the backup of step 4 is on disk.
const KILL_AT_7: &[(&str, &str)] = &[
    ("BURNFIT_ABORT_AT_STEP", "7"),
    ("BURNFIT_ABORT_AFTER_BACKUP", "4"),
];

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn regression_metrics_resume_exactly_mid_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "[\"mae\", \"mse\", \"rmse\", \"r2_score\"]");
    let straight = tmp.path().join("straight");
    let out = train(&config, &straight, &[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(column(&straight, "rmse").len(), 3);

    // Killed at step 7 once the backup at step 4 is on disk (backups are
    // written off the training thread), resumed from it: mid-epoch.
    let killed = tmp.path().join("killed");
    let out = train(&config, &killed, &[], KILL_AT_7);
    assert!(!out.status.success());
    let out = train(&config, &killed, &["--resume"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("warning:"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(killed.join("history.csv")).unwrap(),
        std::fs::read_to_string(straight.join("history.csv")).unwrap()
    );
}
