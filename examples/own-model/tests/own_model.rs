//! The example's own model (not in burnfit's zoo) and own dataset get every
//! burnfit command through `burnfit_cli::run`: train, eval, predict, a
//! kill or Ctrl-C followed by `--resume` (byte-identical history, on one
//! device and on two), a 2-trial sweep, lr-find, and config errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn own_model(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_own-model"));
    command.args(args).current_dir(example());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The example's config with batch backups every 8 steps (30 steps an
/// epoch), so that a kill in the middle of an epoch has a backup to resume.
fn config_with_batch_backups(dir: &Path) -> PathBuf {
    let base = std::fs::read_to_string(example().join("config.toml")).unwrap();
    let config = dir.join("waves.toml");
    std::fs::write(
        &config,
        format!("{base}\n[[callbacks]]\ntype = \"BackupAndRestore\"\nbackup_dir = \"batch-backups\"\nsave_freq = 8\n"),
    )
    .unwrap();
    config
}

fn train(config: &Path, run: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec![
        "train",
        path(config),
        "--run-dir",
        path(run),
        "--epochs",
        "3",
        "--backend",
        "flex",
        "--set",
        "outputs.plots=false",
    ];
    args.extend_from_slice(extra);
    own_model(&args, env)
}

/// The epochs of a run's history.csv, read with a CSV reader.
fn epochs(run: &Path) -> Vec<csv::StringRecord> {
    let mut reader = csv::Reader::from_path(run.join("history.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    for column in ["loss", "val_loss", "accuracy", "val_accuracy"] {
        assert!(header.iter().any(|h| h == column), "{column} in {header:?}");
    }
    reader.records().map(Result::unwrap).collect()
}

#[test]
fn its_own_model_trains_evaluates_and_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let config = example().join("config.toml");
    let out = train(&config, &run, &[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(epochs(&run).len(), 3);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["epochs_run"], 3);
    assert!(run.join("checkpoints/best.bpk").is_file());
    // The finished run's directory is refused by `validate --run-dir` as
    // by `train --run-dir`; validating the config alone passes.
    let checked = own_model(&["validate", path(&config), "--run-dir", path(&run)], &[]);
    assert_eq!(checked.status.code(), Some(2), "{}", text(&checked));
    assert!(
        text(&checked).contains("already holds a finished run"),
        "{}",
        text(&checked)
    );
    let checked = own_model(&["validate", path(&config)], &[]);
    assert!(checked.status.success(), "{}", text(&checked));

    let out = own_model(&["eval", path(&run)], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("test_metrics_best.json")).unwrap())
            .unwrap();
    assert_eq!(metrics["count"], 300, "every test wave");
    let accuracy = metrics["accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.5, "three epochs learn the waves: {accuracy}");
    assert!(text(&out).contains("accuracy"), "{}", text(&out));

    // A clean square wave and a clean sawtooth, one per line.
    let square: Vec<String> = (0..64)
        .map(|i| if (i / 16) % 2 == 0 { "1" } else { "-1" }.to_string())
        .collect();
    let saw: Vec<String> = (0..64)
        .map(|i| format!("{:.3}", 2.0 * ((i % 32) as f64 / 32.0) - 1.0))
        .collect();
    let input = tmp.path().join("waves.txt");
    std::fs::write(&input, format!("{}\n{}\n", square.join(","), saw.join(","))).unwrap();
    let out = own_model(&["predict", path(&run), path(&input)], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("0\t"), "{lines:?}");
    let names = ["sine", "square", "sawtooth"];
    for line in &lines {
        let class = line.split('\t').nth(2).unwrap();
        assert!(names.contains(&class), "{line}");
    }

    // A wave shorter than the model reads is refused, naming its line.
    std::fs::write(&input, format!("{}\n1,2,3\n", square.join(","))).unwrap();
    let out = own_model(&["predict", path(&run), path(&input)], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("line 2: 3 samples"), "{stderr}");
    assert!(out.stdout.is_empty(), "no prediction printed");
}

#[test]
fn its_help_and_messages_name_its_own_binary() {
    let out = own_model(&["--help"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Usage: own-model"), "{help}");
    assert!(help.contains("own-model's model"), "{help}");
}

/// A straight run, then runs stopped by SIGINT and by a kill after a batch
/// backup, both in epoch 2, resumed: byte for byte the same history.
fn stopped_and_resumed_matches_straight(devices: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let config = config_with_batch_backups(tmp.path());
    let straight = tmp.path().join("straight");
    let out = train(&config, &straight, devices, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let expected = std::fs::read_to_string(straight.join("history.csv")).unwrap();
    assert_eq!(expected.lines().count(), 4, "{expected}");
    let stops: [(&str, &[(&str, &str)]); 2] = [
        ("sigint", &[("BURNFIT_SIGINT_AT_STEP", "43")]),
        (
            "killed",
            &[
                ("BURNFIT_ABORT_AT_STEP", "45"),
                ("BURNFIT_ABORT_AFTER_BACKUP", "40"),
            ],
        ),
    ];
    for (name, env) in stops {
        let run = tmp.path().join(name);
        let out = train(&config, &run, devices, env);
        assert!(!out.status.success(), "{name}: the run was stopped");
        let mut again = devices.to_vec();
        again.push("--resume");
        let out = train(&config, &run, &again, &[]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        let resumed = std::fs::read_to_string(run.join("history.csv")).unwrap();
        assert_eq!(resumed, expected, "{name}");
    }
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test turns it on)"
)]
fn its_own_model_resumes_byte_identical_after_sigint_or_a_kill_mid_epoch() {
    stopped_and_resumed_matches_straight(&[]);
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test turns it on)"
)]
fn its_own_model_on_two_devices_resumes_byte_identical_after_sigint_or_a_kill_mid_epoch() {
    stopped_and_resumed_matches_straight(&["--devices", "2"]);
}

#[test]
fn a_two_trial_sweep_of_its_own_model_ranks_both() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("sweep");
    let out = own_model(
        &[
            "sweep",
            "config.toml",
            "--param",
            "optimizer.lr=[1e-3,3e-3]",
            "--sweep-dir",
            path(&sweep),
            "--backend",
            "flex",
            "--set",
            "training.epochs=2",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let mut reader = csv::Reader::from_path(sweep.join("leaderboard.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for trial in ["trial-000", "trial-001"] {
        let history = sweep.join(trial).join("history.csv");
        let rows = csv::Reader::from_path(&history).unwrap().records().count();
        assert_eq!(rows, 2, "{}: --set reached the trial", history.display());
    }
}

#[test]
fn lr_find_on_its_own_model_suggests_a_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("lr");
    let out = own_model(
        &[
            "lr-find",
            "config.toml",
            "--run-dir",
            path(&run),
            "--backend",
            "flex",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("own-model train"), "{printed}");
    let table = csv::Reader::from_path(run.join("lr_find.csv"))
        .unwrap()
        .records()
        .count();
    assert!(table > 10, "a loss per rate: {table} rows");
}

#[test]
fn a_misspelt_key_of_its_own_tables_is_one_error_line_with_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(example().join("config.toml")).unwrap();
    for (wrong, expected) in [
        (
            base.replace("kernel_size = 5", "kernel_sise = 5"),
            "did you mean `kernel_size`",
        ),
        (
            base.replace("kernel_size = 5", "kernel_size = 4"),
            "model.kernel_size",
        ),
        (
            base.replace("noise = 0.3", "noize = 0.3"),
            "did you mean `noise`",
        ),
    ] {
        let config = tmp.path().join("bad.toml");
        std::fs::write(&config, wrong).unwrap();
        let run = tmp.path().join("never");
        let out = train(&config, &run, &[], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains("bad.toml"), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!run.exists(), "nothing created");
        // `validate` with train's flags says the same, through the same runner.
        let checked = own_model(&["validate", path(&config), "--run-dir", path(&run)], &[]);
        assert_eq!(checked.status.code(), Some(2), "{}", text(&checked));
        assert_eq!(String::from_utf8_lossy(&checked.stderr), stderr);
        assert!(!run.exists(), "validate created nothing");
    }
}

/// A planned sweep run trial by trial, as a job array would (`--plan`,
/// `--trial K`, `--collect`), and the same sweep with `--jobs 2`: each
/// trial is this example's binary, and both rank the same two trials.
#[test]
fn its_own_model_sweeps_in_parallel_and_as_planned_trials() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep_args = |dir: &Path, extra: &[&str]| -> Output {
        let mut args = vec![
            "sweep",
            "config.toml",
            "--param",
            "optimizer.lr=[1e-3,3e-3]",
            "--sweep-dir",
            path(dir),
            "--backend",
            "flex",
            "--set",
            "training.epochs=1",
            "--no-pruning",
        ];
        args.extend_from_slice(extra);
        own_model(&args, &[])
    };
    let leaderboard = |dir: &Path| -> Vec<String> {
        let mut reader = csv::Reader::from_path(dir.join("leaderboard.csv")).unwrap();
        let mut rows: Vec<String> = reader
            .records()
            .map(|r| r.unwrap().iter().collect::<Vec<_>>().join(","))
            .collect();
        rows.sort();
        rows
    };
    let parallel = tmp.path().join("parallel");
    let out = sweep_args(&parallel, &["--jobs", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(leaderboard(&parallel).len(), 2);

    let planned = tmp.path().join("planned");
    let out = sweep_args(&planned, &["--plan"]);
    assert!(out.status.success(), "{}", text(&out));
    for trial in ["0", "1"] {
        let out = own_model(
            &["sweep", "--sweep-dir", path(&planned), "--trial", trial],
            &[],
        );
        assert!(out.status.success(), "trial {trial}: {}", text(&out));
    }
    let out = own_model(&["sweep", "--sweep-dir", path(&planned), "--collect"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    for trial in ["trial-000", "trial-001"] {
        let read = |dir: &Path| std::fs::read(dir.join(trial).join("history.csv")).unwrap();
        assert_eq!(
            read(&parallel),
            read(&planned),
            "{trial}: the same training"
        );
    }
}

/// `own-model serve` on loopback, and a training with `--remote`: the
/// server's device joins this machine's, as a second local device would.
#[test]
#[cfg_attr(
    not(feature = "remote"),
    ignore = "needs the remote feature (make test turns it on)"
)]
fn its_own_model_trains_with_a_remote_server_as_with_two_local_devices() {
    let tmp = tempfile::tempdir().unwrap();
    let address = tmp.path().join("address");
    let mut server = Command::new(env!("CARGO_BIN_EXE_own-model"))
        .args(["serve", "--backend", "flex", "--bind", "127.0.0.1:0"])
        .arg("--address-file")
        .arg(&address)
        .current_dir(example())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let url = loop {
        if let Ok(text) = std::fs::read_to_string(&address)
            && !text.trim().is_empty()
        {
            break text.trim().to_string();
        }
        if start.elapsed() > std::time::Duration::from_secs(120) {
            let _ = server.kill();
            panic!("own-model serve did not start");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let config = example().join("config.toml");
    let remote = tmp.path().join("remote");
    let out = train(&config, &remote, &["--remote", &url], &[]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(out.status.success(), "{}", text(&out));
    let local = tmp.path().join("local");
    let out = train(&config, &local, &["--devices", "2"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let read = |run: &Path| std::fs::read_to_string(run.join("history.csv")).unwrap();
    assert_eq!(read(&remote), read(&local));
}

/// `batch-find` on its own model: each size is probed by this example's
/// binary, and the search stops at `--max-batch`.
#[test]
fn batch_find_probes_its_own_model() {
    let out = own_model(
        &[
            "batch-find",
            "config.toml",
            "--backend",
            "flex",
            "--steps",
            "1",
            "--max-batch",
            "48",
        ],
        &[],
    );
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains("the largest batch that fits is 48 (--max-batch)"),
        "{printed}"
    );
    assert!(
        printed.contains("own-model train config.toml --backend flex --set training.batch_size=48"),
        "{printed}"
    );
}
