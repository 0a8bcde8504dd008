//! Resume after interruption, with the default loader workers: a run killed
//! at many points (mid-epoch, and in the middle of checkpoint and backup
//! writes) or stopped by SIGINT/SIGTERM, then resumed with `--resume`, ends
//! with the same history and stop epoch as an uninterrupted run; and a
//! resume that cannot continue the run exactly is refused without touching
//! it.

use crate::common::{SubsetMlp, tensors_of};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// MLP with dropout, EarlyStopping and ReduceLROnPlateau, default workers
/// (2): 400 training images in batches of 50, so 8 steps an epoch.
fn config(dir: &Path, extra: &str) -> PathBuf {
    SubsetMlp {
        name: "resume",
        model: "hidden = [32]\ndropout = 0.3",
        training: "epochs = 6\nseed = 11",
        outputs: "tensorboard = true\nhistogram_freq = 0",
        rest: &format!(
            "[optimizer]\nlr = 3e-3\n\n\
             [[callbacks]]\ntype = \"EarlyStopping\"\nmonitor = \"val_loss\"\n\
             patience = 2\nmin_delta = 0.01\n\n\
             [[callbacks]]\ntype = \"ReduceLROnPlateau\"\nmonitor = \"val_loss\"\n\
             patience = 1\nfactor = 0.5\n{extra}"
        ),
    }
    .write(dir)
}

fn burnfit(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_burnfit"));
    cmd.args(args).current_dir(repo());
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().unwrap()
}

fn train(config: &Path, run: &Path, extra: &[&str], env: &[(&str, String)]) -> Output {
    let mut args = vec![
        "train",
        config.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    burnfit(&args, env)
}

fn resume(config: &Path, run: &Path) -> Output {
    train(config, run, &["--resume"], &[])
}

/// Copies the directory `from` (files and sub-directories) to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn history(run: &Path) -> String {
    std::fs::read_to_string(run.join("history.csv")).unwrap()
}

fn epochs_run(run: &Path) -> u64 {
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    summary["epochs_run"].as_u64().unwrap()
}

/// Every file in the run (no temporary file left), and every checkpoint
/// loads.
fn all_files_whole(run: &Path) {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(run, &mut files);
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with(".tmp-"), "left-over {}", path.display());
        if name.ends_with(".bpk") {
            burn::store::ModuleRecord::load(&path)
                .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(
                burnfit_callbacks::checkpoint_file::verify_trailer(&bytes),
                Ok(true),
                "{}",
                path.display()
            );
        }
        if name.ends_with(".bfk") {
            burnfit_callbacks::checkpoint_file::CheckpointFile::load(&path)
                .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
        }
    }
}

/// The uninterrupted run every other run is compared with (shared by the
/// tests of this file: it is deterministic).
fn straight() -> &'static (String, u64) {
    static STRAIGHT: OnceLock<(String, u64)> = OnceLock::new();
    STRAIGHT.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let config = config(tmp.path(), "");
        let run = tmp.path().join("straight");
        let out = train(&config, &run, &[], &[]);
        assert!(out.status.success(), "{}", text(&out));
        (history(&run), epochs_run(&run))
    })
}

#[test]
fn the_same_seed_gives_the_same_history_with_any_number_of_workers() {
    let (expected, _) = straight();
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    for workers in ["1", "2", "4"] {
        let run = tmp.path().join(format!("workers{workers}"));
        let set = format!("training.workers={workers}");
        let out = train(&config, &run, &["--set", &set], &[]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(&history(&run), expected, "workers = {workers}");
    }
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn runs_killed_at_ten_points_resume_to_the_same_history() {
    let (expected, expected_epochs) = straight();
    assert!(expected.lines().count() >= 4, "{expected}");
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    // Killed mid-epoch (at the start of a step: 8 steps an epoch) and in the
    // middle of file writes (#1 is config.toml; each epoch end then writes
    // best.bpk when it improved, last.bpk and the backup, in that order).
    let kills: Vec<(&str, u64)> = vec![
        ("BURNFIT_ABORT_AT_STEP", 11),
        ("BURNFIT_ABORT_AT_STEP", 20),
        ("BURNFIT_ABORT_AT_STEP", 27),
        ("BURNFIT_ABORT_AT_STEP", 33),
        ("BURNFIT_ABORT_AT_STEP", 41),
        ("BURNFIT_ABORT_IN_WRITE", 5),
        ("BURNFIT_ABORT_IN_WRITE", 6),
        ("BURNFIT_ABORT_IN_WRITE", 7),
        ("BURNFIT_ABORT_IN_WRITE", 9),
        ("BURNFIT_ABORT_IN_WRITE", 10),
    ];
    for (fault, at) in kills {
        let what = format!("{fault}={at}");
        let run = tmp.path().join(format!("{fault}-{at}"));
        let out = train(&config, &run, &[], &[(fault, at.to_string())]);
        assert!(!out.status.success(), "{what}: the run was not killed");
        assert!(text(&out).contains(fault), "{what}: {}", text(&out));
        assert!(!run.join("summary.json").exists(), "{what}");
        let out = resume(&config, &run);
        assert!(out.status.success(), "{what}: resume: {}", text(&out));
        assert!(
            text(&out).contains("Resuming from"),
            "{what}: {}",
            text(&out)
        );
        assert_eq!(&history(&run), expected, "{what}");
        assert_eq!(epochs_run(&run), *expected_epochs, "{what}: stop epoch");
        all_files_whole(&run);
        let out = burnfit(&["eval", run.to_str().unwrap()], &[]);
        assert!(out.status.success(), "{what}: eval: {}", text(&out));
        // Finished: the backups are gone, the summary stays.
        assert!(
            std::fs::read_dir(run.join("backup"))
                .unwrap()
                .next()
                .is_none(),
            "{what}: backups left"
        );
    }
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn a_kill_before_the_first_backup_is_resumed_by_starting_again_from_the_config() {
    let (expected, _) = straight();
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let run = tmp.path().join("early");
    let out = train(
        &config,
        &run,
        &[],
        &[("BURNFIT_ABORT_AT_STEP", "3".to_string())],
    );
    assert!(!out.status.success());
    // A plain train does not reuse the directory, and says how to.
    let out = train(&config, &run, &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("pass --resume"), "{}", text(&out));
    // --resume starts the run again from its config.toml.
    let out = resume(&config, &run);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("no usable backup"), "{printed}");
    assert!(!printed.contains("Resuming from"), "{printed}");
    assert_eq!(&history(&run), expected);
    all_files_whole(&run);
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn sigint_and_sigterm_back_up_at_that_batch_print_the_resume_command_and_resume_exactly() {
    let (expected, expected_epochs) = straight();
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        // A name a shell would split: the printed command quotes it.
        let run = tmp.path().join(format!("sig {signal}"));
        // Step 13: the 5th batch of epoch 2.
        let out = train(
            &config,
            &run,
            &[],
            &[
                ("BURNFIT_SIGINT_AT_STEP", "13".to_string()),
                ("BURNFIT_SIGNAL", signal.to_string()),
            ],
        );
        assert_eq!(out.status.code(), Some(code), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint: Vec<&str> = stderr.lines().filter(|l| l.contains("--resume")).collect();
        assert_eq!(hint.len(), 1, "{stderr}");
        assert!(hint[0].contains("epoch 2, batch 5"), "{stderr}");
        assert!(hint[0].contains("backup-000000000013.bfk"), "{stderr}");
        assert!(!stderr.contains("error"), "{stderr}");
        assert!(!run.join("summary.json").exists());
        all_files_whole(&run);
        // The printed command, as is, run by a shell (its program name
        // stands for this binary).
        let command = hint[0].split("continue with: ").nth(1).unwrap();
        let rest = command.strip_prefix("burnfit train ").unwrap();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("exec \"$0\" train {rest}"))
            .arg(env!("CARGO_BIN_EXE_burnfit"))
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(&history(&run), expected, "SIG{signal}");
        assert_eq!(epochs_run(&run), *expected_epochs);
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["resumes"][0]["batches_done"], 5);
    }
}

#[test]
fn sigkill_then_resume_and_a_corrupt_backup_falls_back() {
    let (expected, _) = straight();
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let run = tmp.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_burnfit"))
        .args([
            "train",
            config.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
        ])
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill as soon as two backups exist (epochs 1 and 2 done).
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let backups = std::fs::read_dir(run.join("backup"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".bfk"))
                    .count()
            })
            .unwrap_or(0);
        if backups >= 2 || Instant::now() > deadline {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            panic!("the run finished before it could be killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // A copy with every backup damaged starts again from its config, with
    // a warning (it used to say so on stdout only), to the same history.
    let all_damaged = tmp.path().join("all-damaged");
    copy_tree(&run, &all_damaged);
    let mut damaged = 0;
    for entry in std::fs::read_dir(all_damaged.join("backup")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "bfk") {
            std::fs::write(&path, b"damaged").unwrap();
            damaged += 1;
        }
    }
    let out = resume(&config, &all_damaged);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "warning: every backup in {}",
            all_damaged.join("backup").display()
        )) && stderr.contains(&format!("({damaged} files)")),
        "{stderr}"
    );
    assert_eq!(&history(&all_damaged), expected, "every backup damaged");

    // Damage the newest backup: resume must warn and use the previous one.
    let mut backups: Vec<PathBuf> = std::fs::read_dir(run.join("backup"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bfk"))
        .collect();
    backups.sort();
    let newest = backups.last().unwrap();
    let bytes = std::fs::read(newest).unwrap();
    std::fs::write(newest, &bytes[..bytes.len() - 10]).unwrap();

    let out = resume(&config, &run);
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("skipping unreadable backup"), "{printed}");
    assert!(printed.contains("older backup"), "{printed}");
    assert_eq!(&history(&run), expected, "SIGKILL + corrupt newest backup");
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn a_resume_that_cannot_continue_the_run_exactly_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let run = tmp.path().join("run");
    let out = train(
        &config,
        &run,
        &[],
        &[("BURNFIT_ABORT_AT_STEP", "20".to_string())],
    );
    assert!(!out.status.success());
    let before = snapshot(&run);
    let refused = |args: &[&str], needle: &str| {
        let mut all = vec!["--resume"];
        all.extend_from_slice(args);
        let out = train(&config, &run, &all, &[]);
        let printed = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {printed}");
        assert_eq!(printed.lines().count(), 1, "{args:?}: {printed}");
        assert!(printed.starts_with("error: "), "{args:?}: {printed}");
        assert!(printed.contains(needle), "{args:?}: {printed}");
        assert_eq!(snapshot(&run), before, "{args:?} changed the run");
    };
    refused(
        &["--set", "model.hidden=[64]"],
        "model.hidden: [32] -> [64]",
    );
    refused(&["--set", "training.seed=12"], "training.seed: 11 -> 12");
    refused(&["--set", "optimizer.lr=1e-3"], "add --force");
    refused(&["--set", "optimizer.kind=\"sgd\""], "optimizer.kind");
    // Two epochs ended before the kill: two more epochs cannot continue it.
    refused(&["--epochs", "2", "--force"], "already completed 2 epochs");
    // Without --force too: the refusal does not send the user to --force.
    refused(&["--epochs", "2"], "already completed 2 epochs");
    refused(&["--epochs", "1"], "already completed 2 epochs");

    // --force accepts a new rate, and the run records it.
    let out = train(
        &config,
        &run,
        &["--resume", "--force", "--set", "optimizer.lr=1e-3"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["resumes"][0]["forced_changes"][0],
        "optimizer.lr: 0.003 -> 0.001"
    );
    assert!(run.join("config.original.toml").is_file());

    // A finished run is never retrained.
    let finished = snapshot(&run);
    let out = resume(&config, &run);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("already finished"), "{}", text(&out));
    assert_eq!(snapshot(&run), finished);
}

/// Every file of a run with its bytes (the lock file left out).
fn snapshot(run: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if !path.ends_with(".lock") {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut files = Vec::new();
    walk(run, &mut files);
    files.sort();
    files
}

#[test]
fn a_run_directory_is_used_by_one_process_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let run = tmp.path().join("busy");
    let mut first = Command::new(env!("CARGO_BIN_EXE_burnfit"))
        .args([
            "train",
            config.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
            "--epochs",
            "200",
        ])
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !run.join("backup").is_dir() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = train(&config, &run, &["--resume"], &[]);
    let printed = text(&second);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(second.status.code(), Some(2), "{printed}");
    assert!(printed.contains("another burnfit process"), "{printed}");
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn a_configured_backup_and_restore_is_the_one_resume_uses() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(
        tmp.path(),
        "\n[[callbacks]]\ntype = \"BackupAndRestore\"\nbackup_dir = \"my-backups\"\nsave_freq = 3\n",
    );
    let run = tmp.path().join("own");
    let out = train(
        &config,
        &run,
        &[],
        &[
            ("BURNFIT_ABORT_AT_STEP", "17".to_string()),
            ("BURNFIT_ABORT_AFTER_BACKUP", "15".to_string()),
        ],
    );
    assert!(!out.status.success());
    assert!(!run.join("backup").exists(), "no second backup folder");
    // The last backup before step 17 is at step 15 (every 3 steps).
    assert!(run.join("my-backups/backup-000000000015.bfk").is_file());
    let out = resume(&config, &run);
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("backup-000000000015.bfk"), "{printed}");
    assert!(!printed.contains("no backup"), "{printed}");
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn on_two_devices_runs_are_reproducible_and_resume_exactly_after_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let two = ["--devices", "2"];
    let first = tmp.path().join("first");
    let out = train(&config, &first, &two, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let expected = history(&first);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["devices"], serde_json::json!(["flex", "flex"]));
    let again = tmp.path().join("again");
    let out = train(&config, &again, &two, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(history(&again), expected, "same seed, same devices");

    let killed = tmp.path().join("killed");
    let out = train(
        &config,
        &killed,
        &two,
        &[("BURNFIT_ABORT_AT_STEP", "11".to_string())],
    );
    assert!(!out.status.success());
    // Another device list is another training: refused, naming the key.
    let out = train(&config, &killed, &["--resume", "--devices", "1"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("training.devices"), "{}", text(&out));
    // The run's own list (from its config.toml) continues it exactly.
    let out = resume(&config, &killed);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(history(&killed), expected, "kill + resume on two devices");
}

/// The flagship CNN (the models' own convolution kernels on flex, batch norm
/// and dropout) on the committed subset: killed mid-run and resumed, it
/// writes the history of an uninterrupted run, byte for byte.
#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn the_cnn_with_its_convolution_kernels_resumes_exactly_after_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let config = repo().join("configs/fashion_mnist_cnn.toml");
    let data = repo().join("data/fashion-mnist-subset");
    let flags = [
        "--backend",
        "flex",
        "--epochs",
        "3",
        "--data",
        data.to_str().unwrap(),
    ];
    let straight = tmp.path().join("straight");
    let out = train(&config, &straight, &flags, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let killed = tmp.path().join("killed");
    let out = train(
        &config,
        &killed,
        &flags,
        &[("BURNFIT_ABORT_AT_STEP", "40".to_string())],
    );
    assert!(!out.status.success(), "the kill happened: {}", text(&out));
    let mut again = flags.to_vec();
    again.push("--resume");
    let out = train(&config, &killed, &again, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(history(&killed), history(&straight));
    all_files_whole(&killed);
}

/// A batch-norm CNN on the subset with every weight average on: the
/// optimizer's EMA, SwapEMAWeights swapping it in at each epoch end, SWA
/// from the third epoch, and backups every 7 batches (43 an epoch of 30
/// items, the last of 20: on three devices one sits that step out);
/// `DATA` stands for the subset's directory.
const AVERAGED_CNN: &str = r#"name = "averaged"
[model]
kind = "cnn"
channels = [8, 16]
fc_size = 32

[data]
kind = "fashion_mnist"
dir = "DATA"
validation_split = 0.2
limit_train = 1600
limit_test = 200

[optimizer]
kind = "adam"
lr = 2e-3
use_ema = true
ema_momentum = 0.9

[training]
epochs = 4
batch_size = 30
backend = "flex"
seed = 7

[outputs]
plots = false
progress = false

[[callbacks]]
type = "SwapEMAWeights"
swap_on_epoch = true

[[callbacks]]
type = "StochasticWeightAveraging"
swa_lrs = 1e-3
swa_epoch_start = 2
annealing_epochs = 1

[[callbacks]]
type = "BackupAndRestore"
backup_dir = "backup"
save_freq = 7
"#;

/// The averages live in the callbacks' state (the EMA, SWA's running mean
/// and its count, the weights SwapEMAWeights holds while the average is
/// in): killed in the middle of the fourth epoch, after SWA has averaged
/// one, on one, two and three devices, a resumed run writes the
/// uninterrupted run's history and the same final (averaged) weights. On
/// three devices this holds only because their BatchNorm statistics are
/// folded in device order (Burn's own fold sums them in a `HashMap`'s).
#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn weight_averages_resume_exactly_after_a_kill_mid_epoch_on_a_batch_norm_cnn() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("averaged.toml");
    let data = repo().join("data/fashion-mnist-subset");
    let toml = AVERAGED_CNN.replace("DATA", data.to_str().unwrap());
    std::fs::write(&config, toml).unwrap();
    let final_weights = |run: &Path| {
        tensors_of(&std::fs::read(run.join("checkpoints/final.bpk")).expect("final.bpk"))
    };
    for devices in ["1", "2", "3"] {
        let flags = ["--devices", devices];
        let straight = tmp.path().join(format!("straight-{devices}"));
        let out = train(&config, &straight, &flags, &[]);
        assert!(out.status.success(), "{}", text(&out));
        let killed = tmp.path().join(format!("killed-{devices}"));
        let out = train(
            &config,
            &killed,
            &flags,
            // After the backup of batch 133 (every 7th), not an epoch end's.
            &[
                ("BURNFIT_ABORT_AT_STEP", "137".to_string()),
                ("BURNFIT_ABORT_AFTER_BACKUP", "133".to_string()),
            ],
        );
        assert!(!out.status.success(), "the kill happened: {}", text(&out));
        let mut again = flags.to_vec();
        again.push("--resume");
        let out = train(&config, &killed, &again, &[]);
        let printed = text(&out);
        assert!(out.status.success(), "{printed}");
        assert!(printed.contains("Resuming from"), "{printed}");
        assert!(printed.contains("backup-000000000133"), "{printed}");
        assert_eq!(history(&killed), history(&straight), "{devices} device(s)");
        assert!(
            final_weights(&killed) == final_weights(&straight),
            "{devices} device(s): other final weights"
        );
        all_files_whole(&killed);
    }
}

/// `summary.json` of `run`.
fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap()
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn the_summary_of_a_resumed_run_covers_every_process() {
    let tmp = tempfile::tempdir().unwrap();
    // 4 epochs of 8 steps (400 training images), no early stop.
    let config = SubsetMlp {
        name: "processes",
        model: "hidden = [16]",
        training: "epochs = 4\nseed = 5",
        ..Default::default()
    }
    .write(tmp.path());
    // Killed in the third epoch (it resumes after the second epoch's
    // backup), or stopped by SIGINT in the 5th batch of the second (it
    // resumes inside that epoch, from the backup at that batch).
    let stops = [
        ("killed", ("BURNFIT_ABORT_AT_STEP", "20"), 2),
        ("sigint", ("BURNFIT_SIGINT_AT_STEP", "13"), 1),
    ];
    for (name, (hook, step), resumed_in) in stops {
        let run = tmp.path().join(name);
        let out = train(&config, &run, &[], &[(hook, step.to_string())]);
        assert!(!out.status.success(), "{name}: {}", text(&out));
        let out = resume(&config, &run);
        assert!(out.status.success(), "{name}: {}", text(&out));
        let summary = summary(&run);
        assert_eq!(summary["epochs_run"], 4, "{name}: {summary}");
        // Every epoch's memory reading, the first process's included.
        let rss = summary["rss_mib_by_epoch"].as_array().unwrap();
        assert_eq!(rss.len(), 4, "{name}: {summary}");
        assert!(rss.iter().all(|v| v.as_f64().unwrap() > 0.0), "{summary}");
        // Both processes, each with its backend and time.
        let processes = summary["processes"].as_array().unwrap();
        assert_eq!(processes.len(), 2, "{name}: {summary}");
        assert_eq!(processes[0]["first_epoch"], 0, "{name}: {summary}");
        assert_eq!(processes[1]["first_epoch"], resumed_in, "{name}: {summary}");
        for process in processes {
            assert_eq!(process["backend"], "flex", "{summary}");
            assert!(!process["backend_reason"].as_str().unwrap().is_empty());
            assert!(
                process["training_time_s"].as_f64().unwrap() > 0.0,
                "{summary}"
            );
        }
        // The run's time is theirs together, and its throughput the run's
        // 4 epochs of 400 images over it.
        let times: f64 = processes
            .iter()
            .map(|p| p["training_time_s"].as_f64().unwrap())
            .sum();
        let wall = summary["wall_time_s"].as_f64().unwrap();
        assert!((wall - times).abs() < 1e-9, "{name}: {summary}");
        let rate = summary["train_samples_per_s"].as_f64().unwrap();
        assert!(
            (rate * wall / 1600.0 - 1.0).abs() < 1e-9,
            "{name}: {summary}"
        );
    }
}
