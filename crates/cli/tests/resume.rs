//! Resume after interruption: a run killed at several points (including in
//! the middle of a checkpoint or backup write) and resumed with `--resume`
//! ends with the same history and stop epoch as an uninterrupted run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
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

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("resume.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "resume"
[model]
kind = "mlp"
hidden = [32]
dropout = 0.3

[data]
kind = "fashion_mnist"
dir = "{}"
validation_split = 0.2
limit_train = 500
limit_test = 100

[optimizer]
lr = 3e-3

[training]
epochs = 6
batch_size = 50
seed = 11
workers = 1
backend = "flex"

[outputs]
tensorboard = true
histogram_freq = 0
plots = false
progress = false

[[callbacks]]
type = "EarlyStopping"
monitor = "val_loss"
patience = 2
min_delta = 0.01

[[callbacks]]
type = "ReduceLROnPlateau"
monitor = "val_loss"
patience = 1
factor = 0.5
"#,
            repo().join("data/fashion-mnist-subset").display()
        ),
    )
    .unwrap();
    path
}

fn train(config: &Path, run: &Path, resume: bool, abort_at_write: Option<usize>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_burnfit"));
    cmd.args([
        "train",
        config.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
    ]);
    if resume {
        cmd.arg("--resume");
    }
    if let Some(n) = abort_at_write {
        cmd.env("BURNFIT_ABORT_IN_WRITE", n.to_string());
    }
    cmd.current_dir(repo()).output().unwrap()
}

fn history(run: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(run.join("history.csv"))
        .unwrap()
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

fn assert_same_history(expected: &[Vec<String>], actual: &[Vec<String>], what: &str) {
    assert_eq!(expected[0], actual[0], "{what}: header");
    assert_eq!(
        expected.len(),
        actual.len(),
        "{what}: rows\nexpected {expected:?}\nactual {actual:?}"
    );
    for (row_e, row_a) in expected.iter().zip(actual).skip(1) {
        for (e, a) in row_e.iter().zip(row_a) {
            let (e, a): (f64, f64) = (e.parse().unwrap(), a.parse().unwrap());
            assert!(
                (e - a).abs() <= 1e-5 * e.abs().max(1.0),
                "{what}: {e} vs {a}\nexpected {expected:?}\nactual {actual:?}"
            );
        }
    }
}

fn epochs_run(run: &Path) -> u64 {
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    summary["epochs_run"].as_u64().unwrap()
}

fn all_checkpoints_load(run: &Path) {
    for dir in ["checkpoints", "backup"] {
        let Ok(entries) = std::fs::read_dir(run.join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                !name.starts_with(".tmp-"),
                "left-over temporary file {}",
                path.display()
            );
            if name.ends_with(".bpk") {
                burn::store::ModuleRecord::load(&path)
                    .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
            }
            if name.ends_with(".bfk") {
                burnfit_callbacks::checkpoint_file::CheckpointFile::load(&path)
                    .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
            }
        }
    }
}

#[test]
fn killed_runs_resume_to_the_same_history_and_stop_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path());

    let straight = tmp.path().join("straight");
    let out = train(&config, &straight, false, None);
    assert!(out.status.success(), "{}", text(&out));
    let expected = history(&straight);
    let expected_epochs = epochs_run(&straight);
    assert!(expected.len() >= 3, "{expected:?}");

    // Abort inside atomic writes of checkpoints and backups of different
    // epochs, then resume.
    // Writes per epoch here: best.bpk, last.bpk, then the backup. #3 is the
    // first backup (the resume starts over), #5 a checkpoint of epoch 2,
    // #9 the backup of epoch 3, #13 a checkpoint of epoch 5.
    for n in [3usize, 5, 9, 13] {
        let run = tmp.path().join(format!("abort{n}"));
        let out = train(&config, &run, false, Some(n));
        assert!(
            !out.status.success(),
            "write #{n}: the run should have been aborted"
        );
        assert!(
            text(&out).contains("BURNFIT_ABORT_IN_WRITE"),
            "{}",
            text(&out)
        );
        let out = train(&config, &run, true, None);
        assert!(
            out.status.success(),
            "resume after write #{n}: {}",
            text(&out)
        );
        if n > 3 {
            assert!(text(&out).contains("Resuming from"), "{}", text(&out));
        }
        assert_same_history(&expected, &history(&run), &format!("abort in write #{n}"));
        assert_eq!(
            epochs_run(&run),
            expected_epochs,
            "stop epoch after write #{n}"
        );
        all_checkpoints_load(&run);
    }
}

#[test]
fn sigkill_then_resume_and_a_corrupt_backup_falls_back() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path());
    let straight = tmp.path().join("straight");
    let out = train(&config, &straight, false, None);
    assert!(out.status.success(), "{}", text(&out));
    let expected = history(&straight);

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
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

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

    let out = train(&config, &run, true, None);
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("skipping unreadable backup"), "{printed}");
    assert!(printed.contains("older backup"), "{printed}");
    assert_same_history(&expected, &history(&run), "SIGKILL + corrupt newest backup");
}
