//! The training knobs, with Lightning's names: `accumulate_grad_batches`,
//! `max_steps`, `val_check_interval`, `limit_val_batches`, `overfit_batches`, `fast_dev_run`. Each does what
//! it says on a real run, resume stays exact under each, and a bad value is
//! one `error:` line with exit code 2.

use std::path::Path;
use std::process::Output;

use crate::common::{burnfit, small_config, text};

/// `burnfit train` of the small config (480 training items: 8 steps of 64
/// an epoch; 120 validation items: 2 batches) with `sets`.
fn train(dir: &Path, run: &Path, epochs: usize, sets: &[&str], env: &[(&str, &str)]) -> Output {
    let config = small_config(dir, "kind = \"mlp\"\nhidden = [32]", "");
    let epochs = epochs.to_string();
    let mut args = vec![
        "train",
        config.to_str().unwrap(),
        "--backend",
        "flex",
        "--epochs",
        &epochs,
        "--run-dir",
        run.to_str().unwrap(),
        "--set",
        "outputs.plots=false",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_burnfit"));
    command.args(&args).current_dir(crate::common::repo());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap()
}

/// One column of history.csv, read with a CSV reader.
fn column(run: &Path, name: &str) -> Vec<f64> {
    let mut reader = csv::Reader::from_path(run.join("history.csv")).unwrap();
    let index = reader.headers().unwrap().iter().position(|h| h == name);
    let index = index.unwrap_or_else(|| panic!("no {name} column"));
    reader
        .records()
        .map(|r| r.unwrap()[index].parse().unwrap())
        .collect()
}

#[test]
fn max_steps_stops_after_that_many_optimizer_steps_and_validates_the_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let out = train(tmp.path(), &run, 4, &["training.max_steps=11"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let summary = summary(&run);
    assert_eq!(summary["global_step"], 11, "{summary}");
    assert_eq!(summary["epochs_run"], 2, "epoch 2 holds step 11: {summary}");
    let reason = summary["stop_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("max_steps"), "{summary}");
    assert_eq!(
        column(&run, "val_loss").len(),
        2,
        "the stopped epoch is validated"
    );
}

/// `val_check_interval = 3` with 8 batches a pass: a validation every 3
/// batches, each ending an epoch of the logs (Keras's `steps_per_epoch`),
/// so 5 epochs are 15 batches, across the pass's end. history.csv,
/// TensorBoard's epoch axis and the best checkpoint follow these epochs.
#[test]
fn val_check_interval_validates_every_n_batches_and_each_validation_ends_an_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(
        tmp.path(),
        "kind = \"mlp\"\nhidden = [32]",
        "[[callbacks]]\ntype = \"TensorBoard\"\nlog_dir = \"tb\"\n",
    );
    let run = tmp.path().join("run");
    let out = burnfit(&[
        "train",
        config.to_str().unwrap(),
        "--backend",
        "flex",
        "--epochs",
        "5",
        "--run-dir",
        run.to_str().unwrap(),
        "--set",
        "training.val_check_interval=3",
        "--set",
        "outputs.plots=false",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let summary = summary(&run);
    assert_eq!(summary["global_step"], 15, "{summary}");
    assert_eq!(summary["epochs_run"], 5, "{summary}");
    let val_loss = column(&run, "val_loss");
    assert_eq!(val_loss.len(), 5, "a validation after every 3 batches");
    assert_eq!(column(&run, "loss").len(), 5);
    let best = summary["best_epoch"].as_u64().unwrap() as usize;
    let lowest = val_loss
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    assert_eq!(best, lowest, "the best checkpoint is the best validation");
    assert!(run.join("checkpoints/best.bpk").is_file());
    if let Some(python) = crate::common::tensorboard_python() {
        let dump = crate::common::tensorboard_dump(&python, &run.join("tb"));
        let steps: Vec<u64> = dump["runs"]["validation"]["scalars"]["epoch_loss"]
            .as_array()
            .unwrap_or_else(|| panic!("validation epoch_loss missing in {dump}"))
            .iter()
            .map(|point| point[0].as_u64().unwrap())
            .collect();
        assert_eq!(
            steps,
            (0..5).collect::<Vec<u64>>(),
            "one point per validation"
        );
    }
}

#[test]
fn limit_val_batches_changes_validation_only() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    let out = train(tmp.path(), &whole, 2, &[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let limited = tmp.path().join("limited");
    let out = train(
        tmp.path(),
        &limited,
        2,
        &["training.limit_val_batches=1"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        column(&whole, "loss"),
        column(&limited, "loss"),
        "training untouched"
    );
    assert_ne!(
        column(&whole, "val_loss"),
        column(&limited, "val_loss"),
        "64 of the 120 validation items"
    );
    // A limit above the validation set's 2 batches is the whole set.
    let above = tmp.path().join("above");
    let out = train(
        tmp.path(),
        &above,
        2,
        &["training.limit_val_batches=5"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(column(&whole, "val_loss"), column(&above, "val_loss"));
}

#[test]
fn overfit_batches_trains_and_validates_on_the_same_first_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let out = train(tmp.path(), &run, 8, &["training.overfit_batches=2"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(summary(&run)["global_step"], 16, "2 steps an epoch");
    let val = column(&run, "val_loss");
    assert!(
        val.last().unwrap() < &(val[0] * 0.8),
        "the model learns the batches it is validated on: {val:?}"
    );
    // Unshuffled: the same batches in the same order every epoch, so a
    // second run with another seed for the shuffle would not change them;
    // and the validation items are the training ones (val_accuracy rises
    // with the training accuracy).
    let accuracy = column(&run, "val_accuracy");
    assert!(accuracy.last().unwrap() > &accuracy[0], "{accuracy:?}");
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap();
                files.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    files
}

#[test]
fn fast_dev_run_trains_a_few_batches_and_writes_only_the_runs_own_files() {
    let tmp = tempfile::tempdir().unwrap();
    // With an average put in at train end too (EMA): no final.bpk.
    for (value, steps, ema) in [("2", 2, false), ("true", 1, false), ("1", 1, true)] {
        let run = tmp.path().join(format!("run-{value}-{ema}"));
        let set = format!("training.fast_dev_run={value}");
        let ema = format!("optimizer.use_ema={ema}");
        let out = train(tmp.path(), &run, 5, &[&set, &ema], &[]);
        assert!(out.status.success(), "{}", text(&out));
        let summary = summary(&run);
        assert_eq!(summary["global_step"], steps, "{summary}");
        assert_eq!(summary["epochs_run"], 1, "{summary}");
        // The run's layout (empty folders) and lock, and no file but its
        // config and summary: no checkpoint, CSV, TensorBoard file or plot.
        let files = files_under(&run);
        assert_eq!(files, [".lock", "config.toml", "summary.json"], "{value}");
    }
}

/// Two batches of 32 accumulated update as one batch of 64 (plain SGD, no
/// dropout): the same items in the same order (the shuffle permutes items,
/// whatever the batch size), and the window's mean gradient is the big
/// batch's gradient. The two runs differ only by the rounding of smaller
/// matrix products (measured: 0.1% of val_loss), where batches of 32
/// stepped one by one differ by a quarter; Burn's sum (no mean) would step
/// twice as far.
#[test]
fn accumulate_grad_batches_updates_as_one_larger_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let common = [
        "model.dropout=0.0",
        "optimizer.kind=\"sgd\"",
        "optimizer.lr=0.05",
    ];
    let run = |name: &str, extra: &[&str]| {
        let dir = tmp.path().join(name);
        let mut sets = common.to_vec();
        sets.extend_from_slice(extra);
        let out = train(tmp.path(), &dir, 2, &sets, &[]);
        assert!(out.status.success(), "{}", text(&out));
        column(&dir, "val_loss")
    };
    let big = run("big", &[]);
    let small = run("small", &["training.batch_size=32"]);
    let windows = run(
        "windows",
        &[
            "training.batch_size=32",
            "training.accumulate_grad_batches=2",
        ],
    );
    for epoch in 0..2 {
        let (near, far) = (
            (windows[epoch] - big[epoch]).abs(),
            (small[epoch] - big[epoch]).abs(),
        );
        assert!(
            near < 0.05 * far,
            "epoch {epoch}: windows {windows:?}, one batch {big:?}, small batches {small:?}"
        );
    }
}

/// A per-step schedule counts optimizer steps: under windows of 2 batches
/// of 32, one_cycle runs as it does over batches of 64 (8 optimizer steps an
/// epoch either way) and ends at its minimum; counted in batches, it would
/// stop halfway up its cycle.
#[test]
fn a_step_schedule_under_accumulation_follows_the_optimizer_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let one_cycle = r#"callbacks=[{type = "LearningRateScheduler", schedule = {kind = "one_cycle", max_lr = 0.1}}]"#;
    let rates = |name: &str, extra: &[&str]| {
        let dir = tmp.path().join(name);
        let mut sets = vec![one_cycle];
        sets.extend_from_slice(extra);
        let out = train(tmp.path(), &dir, 2, &sets, &[]);
        assert!(out.status.success(), "{}", text(&out));
        column(&dir, "learning_rate")
    };
    let big = rates("big", &[]);
    let windows = rates(
        "windows",
        &[
            "training.batch_size=32",
            "training.accumulate_grad_batches=2",
        ],
    );
    assert_eq!(windows, big);
    assert!(big[1] < 1e-4, "the cycle ends at its minimum: {big:?}");
}

#[test]
fn a_bad_knob_value_is_one_error_line_with_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    for (sets, key) in [
        (
            vec!["training.max_steps=0"],
            "training.max_steps: must be at least 1 (or left out: no limit)",
        ),
        // Left out, it steps every batch: no limit would be wrong.
        (
            vec!["training.accumulate_grad_batches=0"],
            "training.accumulate_grad_batches: must be at least 1 (or left out: a step every \
             batch)",
        ),
        (
            vec!["training.limit_val_batches=0"],
            "training.limit_val_batches",
        ),
        (
            vec!["training.overfit_batches=0"],
            "training.overfit_batches",
        ),
        (vec!["training.fast_dev_run=0"], "training.fast_dev_run"),
        (
            vec!["training.val_check_interval=0"],
            "training.val_check_interval",
        ),
        (
            vec!["training.val_check_interval=2", "training.fast_dev_run=1"],
            "training.val_check_interval",
        ),
        (
            vec!["training.fast_dev_run=2", "training.overfit_batches=2"],
            "training.fast_dev_run",
        ),
    ] {
        let run = tmp.path().join("never");
        let out = train(tmp.path(), &run, 1, &sets, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{sets:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(key),
            "{stderr}"
        );
        assert!(!run.exists(), "nothing created");
    }
}

/// Ctrl-C at step 5 (the run backs up at that batch), then `--resume`: the
/// same history as the run that was not stopped, under each knob.
#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test turns it on)"
)]
fn resume_is_exact_under_each_knob() {
    let tmp = tempfile::tempdir().unwrap();
    for knob in [
        "training.accumulate_grad_batches=3",
        "training.max_steps=11",
        "training.overfit_batches=3",
        "training.limit_val_batches=1",
        // Ctrl-C in the second interval of 3 batches.
        "training.val_check_interval=3",
    ] {
        let straight = tmp.path().join(format!("straight-{knob}"));
        let out = train(tmp.path(), &straight, 3, &[knob], &[]);
        assert!(out.status.success(), "{knob}: {}", text(&out));
        let stopped = tmp.path().join(format!("stopped-{knob}"));
        let out = train(
            tmp.path(),
            &stopped,
            3,
            &[knob],
            &[("BURNFIT_SIGINT_AT_STEP", "5")],
        );
        assert!(!out.status.success(), "{knob}: stopped");
        let out = burnfit(&[
            "train",
            stopped.join("config.toml").to_str().unwrap(),
            "--run-dir",
            stopped.to_str().unwrap(),
            "--resume",
        ]);
        assert!(out.status.success(), "{knob}: {}", text(&out));
        let read = |run: &Path| std::fs::read_to_string(run.join("history.csv")).unwrap();
        assert_eq!(read(&straight), read(&stopped), "{knob}");
    }
}

/// Under `accumulate_grad_batches = 3` (8 batches an epoch: windows of 3,
/// 3 and 2), `global_step` counts optimizer steps, while the batch count
/// names the backups and places TensorBoard's batch axis: a Ctrl-C as
/// batch 5 begins backs up when it ends, after 5 batches but 1 optimizer
/// step, and the resumed run ends at 6 steps.
#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test turns it on)"
)]
fn under_accumulation_global_step_counts_optimizer_steps_and_backups_count_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let window = "training.accumulate_grad_batches=3";
    let out = train(
        tmp.path(),
        &run,
        2,
        &[window],
        &[("BURNFIT_SIGINT_AT_STEP", "5")],
    );
    assert!(!out.status.success(), "stopped: {}", text(&out));
    let backups: Vec<String> = std::fs::read_dir(run.join("backup"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        backups.contains(&"backup-000000000005.bfk".to_string()),
        "named after the 5 batches trained, not the 1 step: {backups:?}"
    );
    let out = burnfit(&[
        "train",
        run.join("config.toml").to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--resume",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        summary(&run)["global_step"],
        6,
        "3 optimizer steps an epoch"
    );

    // max_steps counts optimizer steps too: 4 of them end in epoch 2.
    let capped = tmp.path().join("capped");
    let out = train(
        tmp.path(),
        &capped,
        3,
        &[window, "training.max_steps=4"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let summary = summary(&capped);
    assert_eq!(summary["global_step"], 4, "{summary}");
    assert_eq!(summary["epochs_run"], 2, "{summary}");
}

/// TensorBoard's batch axis under accumulation counts batches, as Keras's
/// does: with windows of 3 over 2 epochs of 8 batches, `batch_loss` is
/// written at steps 1 to 16, each once (read back with TensorBoard's own
/// reader).
#[test]
fn under_accumulation_tensorboard_writes_each_batch_once_on_the_batch_axis() {
    let Some(python) = crate::common::tensorboard_python() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(
        tmp.path(),
        "kind = \"mlp\"\nhidden = [16]",
        "[[callbacks]]\ntype = \"TensorBoard\"\nlog_dir = \"tb\"\nupdate_freq = 1\n",
    );
    let run = tmp.path().join("run");
    let out = burnfit(&[
        "train",
        config.to_str().unwrap(),
        "--backend",
        "flex",
        "--epochs",
        "2",
        "--run-dir",
        run.to_str().unwrap(),
        "--set",
        "training.accumulate_grad_batches=3",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let dump = crate::common::tensorboard_dump(&python, &run.join("tb"));
    let steps: Vec<u64> = dump["runs"]["train"]["scalars"]["batch_loss"]
        .as_array()
        .unwrap_or_else(|| panic!("batch_loss missing in {dump}"))
        .iter()
        .map(|point| point[0].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=16).collect::<Vec<u64>>());
    assert_eq!(
        summary(&run)["global_step"],
        6,
        "3 optimizer steps an epoch"
    );
}

/// The batch logs a TensorBoard with `update_freq = 1` writes, by tag:
/// the last value at each step (a killed process may have written steps the
/// resumed one writes again).
fn batch_series(python: &Path, tb: &Path, tag: &str) -> Vec<(u64, f64)> {
    let dump = crate::common::tensorboard_dump(python, tb);
    let mut by_step = std::collections::BTreeMap::new();
    for point in dump["runs"]["train"]["scalars"][tag]
        .as_array()
        .unwrap_or_else(|| panic!("{tag} missing in {dump}"))
    {
        by_step.insert(point[0].as_u64().unwrap(), point[1].as_f64().unwrap());
    }
    by_step.into_iter().collect()
}

/// Under windows of 3 batches, killed after the backup of batch 4 (inside
/// the second window) and resumed: every batch's `batch_loss` (a running
/// mean over the epoch) and `batch_learning_rate` (the last optimizer
/// step's) are the uninterrupted run's, and the batches before the first
/// optimizer step log the rate that step will use, not Burn's 0.
#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test turns it on)"
)]
fn batch_logs_continue_exactly_after_a_resume_inside_a_window() {
    let Some(python) = crate::common::tensorboard_python() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "training.accumulate_grad_batches=3",
        r#"callbacks=[{type = "TensorBoard", log_dir = "tb", update_freq = 1}, {type = "BackupAndRestore", backup_dir = "backups", save_freq = 4}]"#,
    ];
    let straight = tmp.path().join("straight");
    let out = train(tmp.path(), &straight, 2, &sets, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let killed = tmp.path().join("killed");
    let kill = [
        ("BURNFIT_ABORT_AT_STEP", "6"),
        ("BURNFIT_ABORT_AFTER_BACKUP", "4"),
    ];
    let out = train(tmp.path(), &killed, 2, &sets, &kill);
    assert!(!out.status.success(), "{}", text(&out));
    let out = crate::common::burnfit(&[
        "train",
        killed.join("config.toml").to_str().unwrap(),
        "--run-dir",
        killed.to_str().unwrap(),
        "--resume",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for tag in ["batch_loss", "batch_learning_rate"] {
        let expected = batch_series(&python, &straight.join("tb"), tag);
        assert_eq!(expected.len(), 16, "{tag}: {expected:?}");
        assert_eq!(
            batch_series(&python, &killed.join("tb"), tag),
            expected,
            "{tag}"
        );
    }
    let rates = batch_series(&python, &straight.join("tb"), "batch_learning_rate");
    assert!(rates.iter().all(|&(_, lr)| lr > 0.0), "{rates:?}");
}
