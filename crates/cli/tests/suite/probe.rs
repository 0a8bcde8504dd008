//! The CLI's user-facing edges (issue #22): a closed output pipe, configs
//! that are not regular files, GPU-probe noise on resume, runs whose plots
//! cannot be written, a second Ctrl-C, plain messages for bad `--set`
//! values and empty CSVs, and `predict` on a CSV run from anywhere.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    assert_one_error, assert_only_our_warnings, burnfit, repo, small_config, text, train_for,
};

/// The binary, run in the repository.
fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_burnfit"));
    cmd.args(args).current_dir(repo());
    cmd
}

/// Waits for `child`; a child still running after `limit` (a hang: the
/// bug these tests guard against) is killed and reported.
fn wait_or_kill(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{what}: still running after {limit:?}, killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// A one-epoch MLP run on the subset, in `dir/run`.
fn small_run(dir: &Path) -> PathBuf {
    let config = small_config(dir, "kind = \"mlp\"\nhidden = [16]", "");
    let run = dir.join("run");
    let out = train_for(config.to_str().unwrap(), "flex", 1, &run);
    assert!(out.status.success(), "{}", text(&out));
    run
}

/// `args`, run with a standard output whose reader is already gone (as
/// after `| head -1` has its line): every write fails with a broken pipe.
fn with_closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = command(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_or_kill(child, Duration::from_secs(300), &args.join(" "))
}

#[test]
fn a_closed_stdout_is_a_normal_end_of_every_listing_command() {
    let tmp = tempfile::tempdir().unwrap();
    let run = small_run(tmp.path());
    let run = run.to_str().unwrap();
    let config = tmp.path().join("small.toml");
    let sweep = tmp.path().join("sweep");
    let out = burnfit(&[
        "sweep",
        config.to_str().unwrap(),
        "--param",
        "optimizer.lr=[1e-3,2e-3,3e-3]",
        "--sweep-dir",
        sweep.to_str().unwrap(),
        "--plan",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let images = repo().join("data/fashion-mnist-subset/t10k-images-idx3-ubyte.gz");
    let commands: Vec<Vec<&str>> = vec![
        vec!["predict", run, images.to_str().unwrap()],
        vec!["report", run],
        vec!["eval", run],
        vec!["validate", config.to_str().unwrap()],
        vec!["sweep", "--sweep-dir", sweep.to_str().unwrap(), "--collect"],
    ];
    for args in commands {
        let out = with_closed_stdout(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.trim().is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn validate_refuses_what_is_not_a_regular_file_without_reading_it() {
    let tmp = tempfile::tempdir().unwrap();
    let validate = |path: &Path| {
        let child = command(&["validate", path.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_or_kill(child, Duration::from_secs(120), &path.display().to_string())
    };
    let shown = |path: &Path| path.display().to_string();
    let dir = tmp.path().join("configs.toml");
    std::fs::create_dir(&dir).unwrap();
    assert_one_error(
        &validate(&dir),
        &[&shown(&dir), "not a regular file", "a directory"],
    );

    // A FIFO without a writer: opening it to read would wait for ever.
    let fifo = tmp.path().join("fifo.toml");
    let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0);
    assert_one_error(&validate(&fifo), &[&shown(&fifo), "a FIFO"]);

    let zero = Path::new("/dev/zero");
    assert_one_error(&validate(zero), &["/dev/zero", "a device"]);

    // Larger than any config (sparse: nothing is written).
    let big = tmp.path().join("big.toml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(5 << 20)
        .unwrap();
    assert_one_error(&validate(&big), &[&shown(&big), "larger than 4 MiB"]);
}

/// `burnfit train CONFIG --backend flex --run-dir RUN`, started, with its
/// standard error piped.
fn start_training(config: &Path, run: &Path) -> Child {
    command(&[
        "train",
        config.to_str().unwrap(),
        "--backend",
        "flex",
        "--run-dir",
        run.to_str().unwrap(),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

/// Waits until the run has a backup (an epoch ended), failing if the
/// training ends first.
fn wait_for_a_backup(child: &mut Child, run: &Path) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let backups = std::fs::read_dir(run.join("backup"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".bfk"))
                    .count()
            })
            .unwrap_or(0);
        if backups > 0 {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first backup"
        );
        assert!(Instant::now() < deadline, "no backup after 300 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on our own child's process id.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

/// A long training (many epochs) of the small MLP.
fn long_config(dir: &Path) -> PathBuf {
    let config = small_config(dir, "kind = \"mlp\"\nhidden = [16]", "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("epochs = 2", "epochs = 500")).unwrap();
    config
}

/// A run stopped by one SIGINT after its first epoch, on flex.
fn interrupted_run(dir: &Path) -> (PathBuf, PathBuf) {
    let config = long_config(dir);
    let run = dir.join("run");
    let mut child = start_training(&config, &run);
    wait_for_a_backup(&mut child, &run);
    signal(&child, libc::SIGINT);
    let out = wait_or_kill(child, Duration::from_secs(300), "interrupted training");
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(text(&out).contains("--resume"), "{}", text(&out));
    (config, run)
}

#[test]
fn a_resume_on_a_cpu_backend_prints_nothing_from_gpu_probing() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, run) = interrupted_run(tmp.path());
    // One epoch more than the run has done, not its 500.
    let epochs = (epochs_done(&run) + 1).to_string();
    // A headless machine's environment, where display libraries complain
    // (libwayland-client, loaded by Vulkan's device-select layer, prints
    // `XDG_RUNTIME_DIR is invalid or not set` when it is unset).
    let out = command(&[
        "train",
        config.to_str().unwrap(),
        "--backend",
        "flex",
        "--run-dir",
        run.to_str().unwrap(),
        "--resume",
        "--epochs",
        &epochs,
        "--force",
    ])
    .env_remove("XDG_RUNTIME_DIR")
    .env("WAYLAND_DISPLAY", "wayland-0")
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_only_our_warnings(&out);
}

#[test]
fn report_prints_the_table_and_one_warning_when_the_plots_cannot_be_written() {
    let tmp = tempfile::tempdir().unwrap();
    let run = small_run(tmp.path());
    // Unwritable even for root: a file where the plots folder goes.
    let plots = run.join("plots");
    std::fs::remove_dir_all(&plots).unwrap();
    std::fs::write(&plots, "not a folder").unwrap();
    let out = burnfit(&["report", run.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("val_loss"), "the table: {stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("warning: "), "{stderr}");
    assert!(lines[0].contains(&plots.display().to_string()), "{stderr}");
    assert!(!stderr.contains("Error("), "no raw error value: {stderr}");
    assert_eq!(std::fs::read_to_string(&plots).unwrap(), "not a folder");
}

#[test]
fn set_values_that_do_not_parse_and_empty_csvs_get_plain_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path(), "kind = \"mlp\"", "");
    for set in ["model.hidden=[1,", "model=[1,", "optimizer.kind=\"adam"] {
        let out = burnfit(&["validate", config.to_str().unwrap(), "--set", set]);
        assert_one_error(&out, &[&format!("--set {set}"), "not a valid TOML value"]);
        assert!(
            !text(&out).contains("invalid type: string"),
            "{}",
            text(&out)
        );
    }
    // A plain word is still a string.
    let out = burnfit(&[
        "validate",
        config.to_str().unwrap(),
        "--set",
        "optimizer.kind=sgd",
    ]);
    assert!(out.status.success(), "{}", text(&out));

    let empty = tmp.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let table = std::fs::read_to_string(repo().join("configs/table_regression.toml")).unwrap();
    let path = tmp.path().join("table.toml");
    std::fs::write(
        &path,
        table.replace(
            "path = \"data/tables/friedman1.csv\"",
            &format!("path = \"{}\"", empty.display()),
        ),
    )
    .unwrap();
    let out = burnfit(&["validate", path.to_str().unwrap()]);
    assert_one_error(&out, &[&empty.display().to_string(), "no header row"]);
    assert!(!text(&out).contains("(columns: )"), "{}", text(&out));
}

#[test]
fn predict_on_a_csv_run_needs_neither_the_target_column_nor_the_training_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    // data.path is relative to the repository, where this trains.
    let out = train_for("configs/table_regression.toml", "flex", 2, &run);
    assert!(out.status.success(), "{}", text(&out));
    let source = std::fs::read_to_string(repo().join("data/tables/friedman1.csv")).unwrap();
    // The features only, in another column order, no `y`.
    let mut inputs = String::from("x6,x5,x4,x3,x2,x1\n");
    for line in source.lines().skip(1).take(7) {
        let cells: Vec<&str> = line.split(',').take(6).collect();
        let reversed: Vec<&str> = cells.into_iter().rev().collect();
        inputs.push_str(&reversed.join(","));
        inputs.push('\n');
    }
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("inputs.csv"), inputs).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_burnfit"))
        .args(["predict", run.to_str().unwrap(), "inputs.csv"])
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 7, "{lines:?}");
    // The same rows with their target, from the repository, predict the same.
    let out = burnfit(&[
        "predict",
        run.to_str().unwrap(),
        "data/tables/friedman1.csv",
        "--limit",
        "7",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let same: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines, same);
}

/// Reads lines until one contains `needle`: the lines so far, and whether
/// it came (`false`: the stream ended first).
fn read_until(reader: &mut impl BufRead, needle: &str) -> (String, bool) {
    let mut seen = String::new();
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.contains(needle) {
            return (seen, true);
        }
        line.clear();
    }
    (seen, false)
}

/// The epochs in a run's history.csv.
fn epochs_done(run: &Path) -> usize {
    std::fs::read_to_string(run.join("history.csv"))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .count()
        - 1
}

/// Every checkpoint and backup file under its own name is whole (its
/// checksum trailer is there and right): a hard stop leaves at most
/// temporary files (`.tmp-*`), which a resume removes.
fn no_half_written_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            no_half_written_files(&path);
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") {
            continue;
        }
        if name.ends_with(".bpk") {
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
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}

/// One try: SIGINT once the run has a backup, a second SIGINT once the
/// first is acknowledged. `None` when the graceful stop was already over
/// before the second signal arrived (the try proves nothing), else the
/// exit code and what was printed.
fn double_ctrl_c(config: &Path, run: &Path) -> Option<(Option<i32>, String)> {
    let mut child = start_training(config, run);
    wait_for_a_backup(&mut child, run);
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    signal(&child, libc::SIGINT);
    let (mut printed, acknowledged) = read_until(&mut stderr, "Ctrl-C again");
    // SAFETY: kill(2) on our own child (not yet waited for, so its id is
    // still ours even if it has exited).
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    stderr.read_to_string(&mut printed).unwrap();
    let status = child.wait().unwrap();
    assert!(
        acknowledged,
        "the first Ctrl-C was not acknowledged:\n{printed}"
    );
    if printed.contains("continue with") && !printed.contains("stopped at once") {
        return None;
    }
    Some((status.code(), printed))
}

/// A long training whose graceful stop takes a while (hundreds of
/// milliseconds: the rest of a batch of a wide MLP, and the backup of its
/// ~70 MB of weights and optimizer state), so that a second Ctrl-C sent
/// once the first is acknowledged arrives while it is still under way. (The
/// small MLP stops gracefully in a few milliseconds, before any second
/// Ctrl-C a person could press.)
fn heavy_config(dir: &Path) -> PathBuf {
    let config = long_config(dir);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("hidden = [16]", "hidden = [2048, 2048]")
        .replace("limit_train = 600", "limit_train = 1000")
        .replace("batch_size = 64", "batch_size = 200");
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn a_second_ctrl_c_quits_at_once_and_the_run_still_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let config = heavy_config(tmp.path());
    // A few tries, in case a graceful stop ends before the second signal
    // is sent (it takes longer than sending it, but a loaded machine may
    // not run this test in time).
    for attempt in 0..3 {
        let run = tmp.path().join(format!("run{attempt}"));
        let Some((code, printed)) = double_ctrl_c(&config, &run) else {
            eprintln!("try {attempt}: the graceful stop ended first; trying again");
            continue;
        };
        assert_eq!(code, Some(130), "{printed}");
        assert!(printed.contains("stopped at once"), "{printed}");
        assert!(!printed.contains("continue with"), "{printed}");
        no_half_written_files(&run);
        let epochs = (epochs_done(&run) + 1).to_string();
        let out = burnfit(&[
            "train",
            config.to_str().unwrap(),
            "--backend",
            "flex",
            "--run-dir",
            run.to_str().unwrap(),
            "--resume",
            "--epochs",
            &epochs,
            "--force",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        return;
    }
    panic!("every graceful stop ended before the second Ctrl-C was sent");
}
