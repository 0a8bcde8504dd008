//! Sweeps past one process: `--jobs`, `--plan` / `--trial` / `--collect`
//! with the sweep directory as the only store, locks, resumed trials,
//! maximised metrics, and the refusals.

use crate::common::SubsetMlp;
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

fn burnfit(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_burnfit"));
    cmd.args(args).current_dir(repo());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// An MLP on 500 subset images, `extra` appended (TOML).
fn config(dir: &Path, extra: &str) -> PathBuf {
    SubsetMlp {
        name: "sweep",
        model: "hidden = [16]",
        training: "epochs = 3",
        outputs: "tensorboard = false",
        rest: extra,
    }
    .write(dir)
}

fn sweep(config: &Path, dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "sweep",
        config.to_str().unwrap(),
        "--param",
        "optimizer.lr=[3e-3, 1e-3]",
        "--param",
        "training.batch_size=[25, 50]",
        "--sweep-dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    burnfit(&args, &[])
}

/// Asserts that `out` is one `error:` line, exit code 2, holding `words`.
fn one_line(out: &Output, words: &[&str]) {
    let printed = text(out);
    assert_eq!(out.status.code(), Some(2), "{printed}");
    assert_eq!(printed.lines().count(), 1, "{printed}");
    assert!(printed.starts_with("error: "), "{printed}");
    for word in words {
        assert!(printed.contains(word), "`{word}` in {printed}");
    }
}

fn leaderboard(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("leaderboard.csv")).unwrap()
}

#[test]
fn two_jobs_give_the_leaderboard_of_one_job_without_pruning() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let one = tmp.path().join("one");
    let out = sweep(&config, &one, &["--no-pruning"]);
    assert!(out.status.success(), "{}", text(&out));
    let two = tmp.path().join("two");
    let out = sweep(&config, &two, &["--no-pruning", "--jobs", "2"]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert_eq!(leaderboard(&two), leaderboard(&one));
    assert_eq!(leaderboard(&one).lines().count(), 5, "header + 4 trials");
    // One line per trial event, and a progress line.
    for trial in 0..4 {
        assert_eq!(
            printed.matches(&format!("trial {trial}: started")).count(),
            1,
            "{printed}"
        );
        assert!(
            printed.contains(&format!("trial {trial}: finished 3 epochs")),
            "{printed}"
        );
    }
    assert!(
        printed.contains("sweep: 4/4 done (0 pruned, 0 failed), 0 running"),
        "{printed}"
    );
    assert!(two.join("logs/trial-003.log").is_file());
    assert!(
        !printed.contains("Epoch 1/3"),
        "the trials' own output goes to their logs: {printed}"
    );
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn planned_trials_run_in_separate_processes_locked_resumed_and_collected() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let dir = tmp.path().join("planned");
    // No pruning: trial 2 must live long enough to be killed.
    let out = sweep(&config, &dir, &["--plan", "--no-pruning"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.join("sweep.json").is_file());
    let list = std::fs::read_to_string(dir.join("trials.md")).unwrap();
    assert!(
        list.contains("| 3 | optimizer.lr=0.001 training.batch_size=50 |"),
        "{list}"
    );
    let d = dir.to_str().unwrap();

    // Collected before any trial ran: the parameters' columns are there.
    let out = burnfit(&["sweep", "--sweep-dir", d, "--collect"], &[]);
    assert!(text(&out).contains("missing: 0, 1, 2, 3"), "{}", text(&out));
    let board = std::fs::read_to_string(dir.join("leaderboard.csv")).unwrap();
    assert!(
        board.starts_with("rank,trial,optimizer.lr,training.batch_size,"),
        "{board}"
    );

    // Trials 0 and 1 at the same time, as two launcher tasks would.
    let spawn = |trial: &str, variable: &str| {
        Command::new(env!("CARGO_BIN_EXE_burnfit"))
            .args(["sweep", "--sweep-dir", d, "--trial"])
            .env(variable, trial)
            .current_dir(repo())
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn("0", "SLURM_ARRAY_TASK_ID").unwrap());
        let b = s.spawn(|| spawn("1", "JOB_COMPLETION_INDEX").unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    // Each task's log says which trial it ran, with its values, and its end.
    let stdout = String::from_utf8_lossy(&a.stdout);
    assert!(
        stdout.starts_with("trial 0: optimizer.lr=") && stdout.contains("trial 0: finished"),
        "{stdout}"
    );

    // A duplicate of a running trial is refused by its lock.
    let trial2 = dir.join("trial-002");
    std::fs::create_dir_all(&trial2).unwrap();
    let lock = std::fs::File::create(trial2.join(".lock")).unwrap();
    lock.try_lock().unwrap();
    let out = burnfit(&["sweep", "--sweep-dir", d, "--trial", "2"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("already running"), "{}", text(&out));
    let out = burnfit(&["sweep", "--sweep-dir", d, "--collect"], &[]);
    assert!(text(&out).contains("sweep: running: 2"), "{}", text(&out));
    drop(lock);

    // Trial 2 killed in its second epoch; the next --trial 2 resumes it.
    let out = burnfit(
        &["sweep", "--sweep-dir", d, "--trial", "2"],
        &[("BURNFIT_ABORT_AT_STEP", "20")],
    );
    assert!(!out.status.success(), "{}", text(&out));
    let out = burnfit(&["sweep", "--sweep-dir", d, "--collect"], &[]);
    let printed = text(&out);
    assert!(
        printed.contains("sweep: 2 of 4 trials finished"),
        "{printed}"
    );
    assert!(printed.contains("interrupted (resumable): 2"), "{printed}");
    assert!(printed.contains("missing: 3"), "{printed}");
    let out = burnfit(&["sweep", "--sweep-dir", d, "--trial", "2"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Resuming from"), "{}", text(&out));
    let out = burnfit(&["sweep", "--sweep-dir", d, "--trial", "2"], &[]);
    assert!(
        text(&out).contains("already finished, not rerun"),
        "{}",
        text(&out)
    );

    let out = burnfit(&["sweep", "--sweep-dir", d, "--collect"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let board = leaderboard(&dir);
    let trials: Vec<&str> = board
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    let mut sorted = trials.clone();
    sorted.sort();
    assert_eq!(sorted, ["0", "1", "2"], "each finished trial once: {board}");
}

#[test]
fn a_maximised_metric_sorts_the_leaderboard_descending_and_prunes_the_worse_trials() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    // val_precision: maximised, with no "acc" in its name.
    let text_config = std::fs::read_to_string(&config).unwrap().replace(
        "backend = \"flex\"",
        "backend = \"flex\"\nmetrics = [\"precision\"]",
    ) + "checkpoint_monitor = \"val_precision\"\n";
    std::fs::write(&config, text_config).unwrap();
    let dir = tmp.path().join("max");
    // Two good learning rates first, then one that barely moves.
    let out = burnfit(
        &[
            "sweep",
            config.to_str().unwrap(),
            "--param",
            "optimizer.lr=[3e-3, 2e-3, 1e-7]",
            "--sweep-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    let board = leaderboard(&dir);
    let rows: Vec<Vec<&str>> = board
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let best: Vec<f64> = rows.iter().map(|r| r[3].parse().unwrap()).collect();
    assert!(best.windows(2).all(|w| w[0] >= w[1]), "descending: {board}");
    assert!(
        board.starts_with("rank,trial,optimizer.lr,best_val_precision,"),
        "{board}"
    );
    let pruned: Vec<(&str, &str)> = rows.iter().map(|r| (r[1], r[6])).collect();
    assert!(
        pruned.contains(&("2", "true")),
        "the tiny rate is pruned: {board}"
    );
    assert!(
        pruned.contains(&("0", "false")) && pruned.contains(&("1", "false")),
        "{board}"
    );
    assert!(
        printed.contains("trial 2: pruned after epoch 1"),
        "{printed}"
    );
    // And the trial's own summary takes the highest value as the best.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("trial-000/summary.json")).unwrap())
            .unwrap();
    let history = std::fs::read_to_string(dir.join("trial-000/history.csv")).unwrap();
    let header: Vec<&str> = history.lines().next().unwrap().split(',').collect();
    let column = header.iter().position(|h| *h == "val_precision").unwrap();
    let highest = history
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(column).unwrap().parse::<f64>().unwrap())
        .fold(f64::MIN, f64::max);
    assert_eq!(summary["best_value"].as_f64().unwrap(), highest);
}

#[test]
fn sweep_mistakes_get_one_error_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let dir = tmp.path().join("s");
    let out = sweep(&config, &dir, &["--plan"]);
    assert!(out.status.success(), "{}", text(&out));
    let d = dir.to_str().unwrap();
    one_line(
        &burnfit(&["sweep", "--sweep-dir", d, "--trial", "4"], &[]),
        &["--trial 4", "4 trials, numbered 0 to 3"],
    );
    // What the plan fixed is not taken again (it was silently ignored).
    let c = config.to_str().unwrap();
    for (extra, what) in [
        (&[c][..], "CONFIG"),
        (&["--epochs", "5"][..], "--epochs"),
        (&["--param", "optimizer.lr=[1e-2]"][..], "--param"),
    ] {
        for mode in [&["--trial", "1"][..], &["--collect"][..]] {
            let mut args = vec!["sweep", "--sweep-dir", d];
            args.extend_from_slice(mode);
            args.extend_from_slice(extra);
            one_line(
                &burnfit(&args, &[]),
                &[
                    &format!("sweep {}: {what} was fixed", mode[0]),
                    "leave it out",
                ],
            );
        }
    }
    assert!(!dir.join("trial-001").exists(), "the refused trial ran");
    // The config changed since the sweep was planned.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("epochs = 3", "epochs = 4"),
    )
    .unwrap();
    one_line(
        &sweep(&config, &dir, &[]),
        &["belongs to another sweep", "config differs"],
    );
    // Another sweep's parameters on the same directory.
    let other = burnfit(
        &[
            "sweep",
            config.to_str().unwrap(),
            "--param",
            "optimizer.lr=[0.1]",
            "--sweep-dir",
            d,
        ],
        &[],
    );
    one_line(&other, &["belongs to another sweep"]);
    // A directory that is no sweep.
    let plain = tmp.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("notes.txt"), "mine").unwrap();
    one_line(&sweep(&config, &plain, &[]), &["not a sweep directory"]);
    one_line(
        &burnfit(
            &["sweep", "--sweep-dir", plain.to_str().unwrap(), "--collect"],
            &[],
        ),
        &["not a planned sweep"],
    );
    // An unknown metric name in the config.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&config).unwrap().replace(
            "backend = \"flex\"",
            "backend = \"flex\"\nmetrics = [\"precison\"]",
        ),
    )
    .unwrap();
    one_line(
        &sweep(&bad, &tmp.path().join("s2"), &[]),
        &["training.metrics", "did you mean `precision`"],
    );
    // --trial with no number and no launcher variable.
    let out = Command::new(env!("CARGO_BIN_EXE_burnfit"))
        .args(["sweep", "--sweep-dir", d, "--trial"])
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX")
        .current_dir(repo())
        .output()
        .unwrap();
    one_line(&out, &["SLURM_ARRAY_TASK_ID"]);
}

#[test]
fn mistakes_are_refused_before_the_sweep_writes_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let dir = tmp.path().join("s");
    let run = |params: &str, extra: &[&str]| {
        let mut args = vec![
            "sweep",
            config.to_str().unwrap(),
            "--param",
            params,
            "--sweep-dir",
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        burnfit(&args, &[])
    };
    // A flag every trial gets: refused as `train` refuses it, nothing
    // stored, so the corrected command runs the sweep.
    for plan in [&[][..], &["--plan"]] {
        let out = run(
            "optimizer.lr=[1e-3]",
            &[&["--epochs", "0"][..], plan].concat(),
        );
        one_line(&out, &["--epochs must be at least 1"]);
        assert!(!dir.exists(), "{}", text(&out));
    }
    // A value of one trial: refused before trial 0 trains, naming the
    // `--param` and the trial (not the `--set` the trial's values become).
    for plan in [&[][..], &["--plan"]] {
        let out = run("training.batch_size=[50, 5000]", plan);
        one_line(
            &out,
            &[
                "--param training.batch_size: trial 1 (training.batch_size=5000)",
                "larger than the training set",
            ],
        );
        assert!(!text(&out).contains("--set"), "{}", text(&out));
        assert!(!dir.exists(), "{}", text(&out));
    }
    // Data that is not there: refused with the flag to pass, which then works.
    let missing = tmp.path().join("missing.toml");
    let subset = crate::common::subset();
    let subset = subset.to_str().unwrap();
    std::fs::write(
        &missing,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace(subset, "/nonexistent/fashion-mnist"),
    )
    .unwrap();
    let planned = |config: &Path, extra: &[&str]| {
        let mut args = vec![
            "sweep",
            config.to_str().unwrap(),
            "--param",
            "optimizer.lr=[1e-3]",
        ];
        args.extend_from_slice(&["--sweep-dir", dir.to_str().unwrap(), "--plan"]);
        args.extend_from_slice(extra);
        burnfit(&args, &[])
    };
    one_line(&planned(&missing, &[]), &["--data"]);
    assert!(!dir.exists());
    let out = planned(&missing, &["--data", subset]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::remove_dir_all(&dir).unwrap();

    let out = run("optimizer.lr=[1e-3]", &["--epochs", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("trial 0: finished 1 epoch ("),
        "{}",
        text(&out)
    );
}

/// `sweep --jobs JOBS` over two learning rates, `epochs` epochs each, no
/// pruning: the arguments.
fn two_trials(config: &Path, dir: &Path, epochs: &str, jobs: &str) -> Vec<String> {
    [
        "sweep",
        config.to_str().unwrap(),
        "--param",
        "optimizer.lr=[3e-3, 1e-3]",
        "--no-pruning",
        "--epochs",
        epochs,
        "--jobs",
        jobs,
        "--sweep-dir",
        dir.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn trial_file(dir: &Path, trial: usize, name: &str) -> PathBuf {
    dir.join(format!("trial-{trial:03}")).join(name)
}

/// Whether a process holds trial `trial`'s lock.
fn held(dir: &Path, trial: usize) -> bool {
    let lock = std::fs::File::open(trial_file(dir, trial, ".lock")).unwrap();
    lock.try_lock().is_err()
}

#[test]
fn sigterm_to_the_jobs_parent_stops_its_trials_and_the_same_command_resumes_them_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    // 300 epochs: a trial runs for seconds, the stop takes a batch.
    let straight = tmp.path().join("straight");
    let out = burnfit(&strs(&two_trials(&config, &straight, "300", "2")), &[]);
    assert!(out.status.success(), "{}", text(&out));

    let dir = tmp.path().join("stopped");
    let args = two_trials(&config, &dir, "300", "2");
    let args = strs(&args);
    let mut parent = Command::new(env!("CARGO_BIN_EXE_burnfit"))
        .args(&args)
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Both trials have trained an epoch (the deadline only guards a hang).
    let deadline = Instant::now() + Duration::from_secs(300);
    let trained = |trial| {
        std::fs::read_to_string(trial_file(&dir, trial, "history.csv"))
            .is_ok_and(|h| h.lines().count() >= 2)
    };
    while !(trained(0) && trained(1)) {
        assert!(
            Instant::now() < deadline,
            "the trials never trained an epoch"
        );
        assert!(
            parent.try_wait().unwrap().is_none(),
            "the sweep ended first"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SIGTERM to the parent only, as `kill PID` or a job scheduler sends it.
    let kill = Command::new("kill")
        .args(["-TERM", &parent.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = parent.wait_with_output().unwrap();
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(143), "{printed}");
    for trial in 0..2 {
        assert!(
            printed.contains(&format!("trial {trial}: interrupted")),
            "{printed}"
        );
        // Its process has ended (nothing holds its lock), before finishing.
        assert!(!held(&dir, trial), "trial {trial} still runs: {printed}");
        assert!(
            !trial_file(&dir, trial, "summary.json").exists(),
            "trial {trial} finished before the stop: {printed}"
        );
    }
    let summary: Vec<&str> = printed
        .lines()
        .filter(|l| l.contains("run the same command again"))
        .collect();
    assert_eq!(summary.len(), 1, "{printed}");
    assert!(
        summary[0].starts_with("burnfit sweep: interrupted by SIGTERM"),
        "{printed}"
    );

    // The same command again: each trial resumes from its backup and ends
    // as in the sweep that was never stopped.
    let out = burnfit(&args, &[]);
    assert!(out.status.success(), "{}", text(&out));
    for trial in 0..2 {
        let log = std::fs::read_to_string(dir.join(format!("logs/trial-{trial:03}.log"))).unwrap();
        assert!(log.contains("Resuming from"), "{log}");
        let history =
            |dir: &Path| std::fs::read_to_string(trial_file(dir, trial, "history.csv")).unwrap();
        assert_eq!(history(&dir), history(&straight), "trial {trial}");
    }
}

#[test]
fn a_trial_another_process_holds_is_skipped_and_its_log_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "");
    let dir = tmp.path().join("held");
    let args = |jobs| two_trials(&config, &dir, "3", jobs);
    let plan = [args("2"), vec!["--plan".into()]].concat();
    let out = burnfit(&strs(&plan), &[]);
    assert!(out.status.success(), "{}", text(&out));
    // Another process runs trial 0: it holds the lock and writes the log.
    std::fs::create_dir_all(dir.join("trial-000")).unwrap();
    let lock = std::fs::File::create(trial_file(&dir, 0, ".lock")).unwrap();
    lock.try_lock().unwrap();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let log = dir.join("logs/trial-000.log");
    std::fs::write(&log, "the other process's output\n").unwrap();
    for jobs in ["2", "1"] {
        let out = burnfit(&strs(&args(jobs)), &[]);
        let printed = text(&out);
        assert_eq!(out.status.code(), Some(1), "--jobs {jobs}: {printed}");
        assert!(
            printed.contains("trial 0: running in another process"),
            "--jobs {jobs}: {printed}"
        );
        assert!(
            printed.contains("trial 0 is held by another process"),
            "--jobs {jobs}: {printed}"
        );
        assert!(
            !printed.contains("stopped without"),
            "--jobs {jobs}: {printed}"
        );
        assert!(trial_file(&dir, 1, "summary.json").is_file(), "{printed}");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "the other process's output\n"
        );
    }
    // Once that process is gone, the same command runs it.
    drop(lock);
    let out = burnfit(&strs(&args("2")), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(trial_file(&dir, 0, "summary.json").is_file());
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .starts_with("the other process's output\n"),
        "appended, not truncated"
    );
}
