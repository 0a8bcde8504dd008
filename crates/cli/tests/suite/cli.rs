//! End-to-end tests of the `burnfit` binary on the committed Fashion-MNIST subset.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{
    assert_one_error, assert_only_our_warnings, burnfit, repo, small_config, subset,
    tensorboard_dump, tensorboard_python, text, train_flex, train_for,
};

#[test]
fn train_on_cpu_produces_the_whole_run_directory_and_eval_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path(), "kind = \"mlp\"\nhidden = [32]", "");
    let run = tmp.path().join("run");
    let out = train_flex(&config, &run);
    assert!(out.status.success(), "train failed:\n{}", text(&out));
    assert!(text(&out).contains("backend flex"), "{}", text(&out));

    for file in [
        "config.toml",
        "history.csv",
        "summary.json",
        "checkpoints/best.bpk",
        "checkpoints/last.bpk",
        "plots/training_curves.png",
        "plots/training_curves.svg",
    ] {
        assert!(run.join(file).is_file(), "missing {file}");
    }
    for split in ["train", "validation"] {
        let dir = run.join("tensorboard").join(split);
        let events: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("events.out.tfevents.")
            })
            .collect();
        assert_eq!(events.len(), 1, "{split}: one event file");
    }
    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    let lines: Vec<&str> = history.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        "epoch,accuracy,learning_rate,loss,val_accuracy,val_loss"
    );
    assert_eq!(lines.len(), 3, "header + 2 epochs: {history}");
    assert!(lines[1].starts_with("0,") && lines[2].starts_with("1,"));

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["epochs_run"], 2);
    assert_eq!(summary["backend"], "flex");
    assert!(summary["final_metrics"]["val_accuracy"].as_f64().unwrap() > 0.3);
    assert!(summary["train_samples_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(summary["rss_mib_by_epoch"].as_array().unwrap().len(), 2);
    assert!(summary["peak_rss_mib"].as_f64().unwrap() > 0.0);

    let png = std::fs::read(run.join("plots/training_curves.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    let out = burnfit(&["eval", run.to_str().unwrap()]);
    assert!(out.status.success(), "eval failed:\n{}", text(&out));
    let printed = text(&out);
    assert!(
        printed.contains("200 images") && printed.contains("accuracy"),
        "{printed}"
    );

    let out = burnfit(&["report", run.to_str().unwrap()]);
    assert!(out.status.success(), "report failed:\n{}", text(&out));
    assert!(text(&out).contains("val_loss"));

    // A finished run directory is never overwritten.
    let out = burnfit(&[
        "train",
        config.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("already holds a finished run"));
}

#[test]
fn train_on_wgpu_for_one_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path(), "kind = \"mlp\"\nhidden = [32]", "");
    let run = tmp.path().join("run");
    let out = train_for(config.to_str().unwrap(), "wgpu", 1, &run);
    let printed = text(&out);
    if printed.contains("wgpu found no adapter")
        && std::env::var_os("BURNFIT_REQUIRE_WGPU").is_none()
    {
        eprintln!("skipped: no wgpu adapter here (make test installs lavapipe and requires it)");
        return;
    }
    assert!(out.status.success(), "wgpu train failed:\n{printed}");
    assert!(printed.contains("backend wgpu"), "{printed}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["epochs_run"], 1);
    assert_eq!(summary["backend"], "wgpu");
    assert!(run.join("checkpoints/best.bpk").is_file());

    // eval and predict start wgpu with the drivers' own lines silenced, as
    // train does, in a headless machine's environment.
    let images = subset().join("t10k-images-idx3-ubyte.gz");
    for args in [
        vec!["eval", run.to_str().unwrap(), "--backend", "wgpu"],
        vec![
            "predict",
            run.to_str().unwrap(),
            images.to_str().unwrap(),
            "--limit",
            "3",
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_burnfit"))
            .args(&args)
            .env_remove("XDG_RUNTIME_DIR")
            .env("WAYLAND_DISPLAY", "wayland-0")
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        assert_only_our_warnings(&out);
    }
}

/// Each bad input gives one `error:` line with the expected words and exit code 2.
#[test]
fn bad_configs_give_one_clear_line_and_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(small_config(tmp.path(), "kind = \"mlp\"", "")).unwrap();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown top-level key",
            format!("epoch = 3\n{good}"),
            vec!["unknown field `epoch`"],
        ),
        (
            "misspelt callback parameter",
            good.replace("patience = 5", "patiance = 5"),
            vec!["callbacks[0]", "patiance", "did you mean `patience`"],
        ),
        (
            "wrong type",
            good.replace("epochs = 2", "epochs = \"two\""),
            vec!["training.epochs", "invalid type"],
        ),
        (
            "unknown callback class",
            good.replace("type = \"EarlyStopping\"", "type = \"EarlyStop\""),
            vec!["callbacks[0]", "EarlyStop", "did you mean `EarlyStopping`"],
        ),
        (
            "unknown model kind",
            good.replace("kind = \"mlp\"", "kind = \"transformer\""),
            vec!["model", "transformer"],
        ),
        (
            "unknown optimizer",
            good.replace("kind = \"adam\"", "kind = \"adamax\""),
            vec!["optimizer.kind", "adamax"],
        ),
        (
            "TOML syntax error",
            good.replace("lr = 2e-3", "lr = = 2e-3"),
            vec!["invalid TOML", ":"],
        ),
        (
            "zero epochs",
            good.replace("epochs = 2", "epochs = 0"),
            vec!["training.epochs", "at least 1"],
        ),
        (
            "validation split out of range",
            good.replace("validation_split = 0.2", "validation_split = 1.5"),
            vec!["data.validation_split"],
        ),
        (
            "invalid callback value",
            good.replace("patience = 1\n", "patience = 1\nfactor = 2.0\n"),
            vec!["callbacks[1]", "factor"],
        ),
        (
            "missing data section",
            good.replace("[data]", "[dataset]"),
            vec!["unknown field `dataset`"],
        ),
        (
            "misspelt monitor",
            good.replace(
                "monitor = \"val_loss\"\npatience = 5",
                "monitor = \"val_los\"\npatience = 5",
            ),
            vec!["callbacks[0].monitor", "val_los", "did you mean `val_loss`"],
        ),
        (
            "placeholder the run cannot fill",
            format!(
                "{good}\n[[callbacks]]\ntype = \"ModelCheckpoint\"\nfilepath = \"ckpt/{{foo}}.bpk\"\n"
            ),
            vec!["callbacks[2].filepath", "{foo}"],
        ),
        (
            "dropout out of range",
            good.replace("kind = \"mlp\"", "kind = \"mlp\"\ndropout = 1.5"),
            vec!["model", "dropout"],
        ),
        (
            "empty hidden layer",
            good.replace("kind = \"mlp\"", "kind = \"mlp\"\nhidden = [0]"),
            vec!["model", "hidden"],
        ),
        (
            "no training images",
            good.replace("limit_train = 600", "limit_train = 0"),
            vec!["data.limit_train", "at least 1"],
        ),
        (
            "no validation split",
            good.replace("validation_split = 0.2", "validation_split = 0.0"),
            vec!["data.validation_split", "val_loss"],
        ),
        (
            "checkpoint monitor that does not exist",
            format!("{good}\n[outputs]\ncheckpoint_monitor = \"val_acc\"\n"),
            vec!["outputs.checkpoint_monitor", "val_acc", "val_accuracy"],
        ),
        (
            "a run name that climbs out of runs/",
            good.replace("name = \"small\"", "name = \"../escape\""),
            vec!["name", "plain directory name", "--run-dir"],
        ),
        (
            "a run name that nests",
            good.replace("name = \"small\"", "name = \"a/b\""),
            vec!["name", "plain directory name"],
        ),
        (
            "an empty run name",
            good.replace("name = \"small\"", "name = \"\""),
            vec!["name", "not empty"],
        ),
    ];
    for (name, text_config, expected) in cases {
        let path = tmp.path().join("bad.toml");
        std::fs::write(&path, &text_config).unwrap();
        let out = burnfit(&["validate", path.to_str().unwrap()]);
        let printed = text(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: exit code; output:\n{printed}"
        );
        let lines: Vec<&str> = printed.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "{name}: one line, got:\n{printed}");
        assert!(lines[0].starts_with("error: "), "{name}: {printed}");
        assert!(
            lines[0].contains("bad.toml"),
            "{name}: names the file: {printed}"
        );
        for word in expected {
            assert!(
                printed.contains(word),
                "{name}: expected `{word}` in:\n{printed}"
            );
        }
    }
    // An unknown key is reported at its own line, not its table's.
    let misspelt = good.replace("patience = 5", "patiance = 5");
    let line = 1 + misspelt
        .lines()
        .position(|l| l.starts_with("patiance"))
        .unwrap();
    let path = tmp.path().join("bad.toml");
    std::fs::write(&path, &misspelt).unwrap();
    let out = burnfit(&["validate", path.to_str().unwrap()]);
    assert_one_error(&out, &[&format!("bad.toml:{line}: callbacks[0]")]);
}

#[test]
fn bad_data_and_flags_give_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path(), "kind = \"mlp\"", "");

    // Missing dataset directory.
    let out = burnfit(&[
        "train",
        config.to_str().unwrap(),
        "--data",
        "/nonexistent/fmnist",
        "--run-dir",
        tmp.path().join("r1").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("/nonexistent/fmnist"), "{}", text(&out));

    // Truncated dataset file.
    let broken = tmp.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for entry in std::fs::read_dir(subset()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), broken.join(entry.file_name())).unwrap();
    }
    let images = broken.join("train-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() / 2]).unwrap();
    let out = burnfit(&[
        "train",
        config.to_str().unwrap(),
        "--data",
        broken.to_str().unwrap(),
        "--run-dir",
        tmp.path().join("r2").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("train-images-idx3-ubyte"),
        "{}",
        text(&out)
    );

    // Unknown backend.
    let out = burnfit(&["train", config.to_str().unwrap(), "--backend", "tpu"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("tpu"));

    // Missing config file.
    let out = burnfit(&["validate", "/nonexistent.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("/nonexistent.toml"));

    // A bad --set.
    let out = burnfit(&[
        "validate",
        config.to_str().unwrap(),
        "--set",
        "training.epochs",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--set"));

    // Nothing was created for the failed runs.
    assert!(!tmp.path().join("r1").exists());
    assert!(!tmp.path().join("r2").exists());
}

#[test]
fn set_errors_name_the_set_and_not_a_line_of_an_internal_document() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path(), "kind = \"mlp\"", "");
    let validate = |set: &str| burnfit(&["validate", config.to_str().unwrap(), "--set", set]);
    let out = validate("training.epochs=\"ten\"");
    assert_one_error(&out, &["--set training.epochs=\"ten\"", "invalid type"]);
    assert!(!text(&out).contains("--set:"), "{}", text(&out));
    let out = validate("training.epochs=0");
    assert_one_error(&out, &["--set training.epochs=0", "at least 1"]);
    let out = validate("training..epochs=3");
    assert_one_error(&out, &["--set training..epochs=3", "not a key path"]);
    let out = validate("callbacks[0].patience=7");
    assert!(out.status.success(), "{}", text(&out));
    let out = validate("callbacks[9].patience=7");
    assert_one_error(&out, &["--set callbacks[9].patience=7", "no [9]"]);
    let out = validate("callbacks.0.patience=7");
    assert_one_error(&out, &["--set callbacks.0.patience=7", "`callbacks[0]`"]);
    let out = validate("training.batch_size=1e9");
    assert_one_error(
        &out,
        &["--set training.batch_size=1e9", "training.batch_size"],
    );
}

#[test]
fn impossible_data_sizes_are_refused_before_anything_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path(), "kind = \"mlp\"", "");
    let run = tmp.path().join("run");
    let out = burnfit(&[
        "train",
        config.to_str().unwrap(),
        "--set",
        "training.batch_size=1000000000",
        "--run-dir",
        run.to_str().unwrap(),
    ]);
    assert_one_error(
        &out,
        &[
            "--set training.batch_size=1000000000: training.batch_size",
            "larger than the training set",
        ],
    );
    assert!(!run.exists());
    // The table's test split takes every row.
    let table = std::fs::read_to_string(repo().join("configs/table_regression.toml")).unwrap();
    let path = tmp.path().join("table.toml");
    std::fs::write(
        &path,
        table.replace(
            "path = \"data/",
            &format!("path = \"{}/data/", repo().display()),
        ) + "",
    )
    .unwrap();
    let out = burnfit(&[
        "validate",
        path.to_str().unwrap(),
        "--set",
        "data.test_split=1.0",
    ]);
    assert_one_error(&out, &["data.test_split"]);
}

#[test]
fn a_folder_that_is_not_a_run_is_never_written_to() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path(), "kind = \"mlp\"", "");
    let mine = tmp.path().join("my-results");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("history.csv"), "my own numbers\n").unwrap();
    let out = train_for(config.to_str().unwrap(), "flex", 1, &mine);
    assert_one_error(&out, &["not a burnfit run"]);
    assert_eq!(
        std::fs::read_to_string(mine.join("history.csv")).unwrap(),
        "my own numbers\n"
    );
    assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 1);

    // A file where the run directory would go.
    let file = tmp.path().join("notes.txt");
    std::fs::write(&file, "my notes\n").unwrap();
    let out = train_for(config.to_str().unwrap(), "flex", 1, &file);
    assert_one_error(&out, &["notes.txt", "a file, not a directory", "--run-dir"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "my notes\n");
}

#[test]
fn a_cpu_run_prints_no_stray_lines_from_gpu_probing() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path(), "kind = \"mlp\"\nhidden = [16]", "");
    let run = tmp.path().join("run");
    // A headless machine's environment, where display libraries complain.
    let out = Command::new(env!("CARGO_BIN_EXE_burnfit"))
        .args([
            "train",
            config.to_str().unwrap(),
            "--epochs",
            "1",
            "--run-dir",
            run.to_str().unwrap(),
        ])
        .env_remove("XDG_RUNTIME_DIR")
        .env("WAYLAND_DISPLAY", "wayland-0")
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_only_our_warnings(&out);
    assert!(text(&out).contains("burnfit: backend"), "{}", text(&out));
}

#[test]
fn eval_and_predict_handle_read_only_runs_foreign_paths_and_wrong_images() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path(), "kind = \"mlp\"\nhidden = [16]", "");
    let run = tmp.path().join("run");
    let out = train_for(config.to_str().unwrap(), "flex", 1, &run);
    assert!(out.status.success(), "{}", text(&out));

    // A checkpoint given by path outside the run: evaluated, nothing written
    // next to it or in the run.
    let outside = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::copy(run.join("checkpoints/best.bpk"), outside.join("w.bpk")).unwrap();
    let relative = format!("{}/../elsewhere/w.bpk", run.display());
    let before: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let out = burnfit(&["eval", run.to_str().unwrap(), "--checkpoint", &relative]);
    assert!(out.status.success(), "{}", text(&out));
    let after: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before.len(), after.len(), "{after:?}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    // A directory is said to be one (it read "no such checkpoint (Is a
    // directory …)").
    let out = burnfit(&[
        "eval",
        run.to_str().unwrap(),
        "--checkpoint",
        outside.to_str().unwrap(),
    ]);
    assert_one_error(
        &out,
        &[&format!(
            "--checkpoint {}: a directory, not a weights file",
            outside.display()
        )],
    );

    // IDX images of another size: one error line, not a panic.
    let idx = tmp.path().join("small-images-idx3-ubyte");
    let mut bytes = vec![0u8, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0, 5];
    bytes.extend(std::iter::repeat_n(7u8, 50));
    std::fs::write(&idx, bytes).unwrap();
    let out = burnfit(&["predict", run.to_str().unwrap(), idx.to_str().unwrap()]);
    assert_one_error(&out, &["5x5", "28x28"]);
    // A PNG given to an IDX run: the line says what this run reads.
    let png = tmp.path().join("shirt.png");
    image::GrayImage::new(28, 28).save(&png).unwrap();
    let out = burnfit(&["predict", run.to_str().unwrap(), png.to_str().unwrap()]);
    assert_one_error(
        &out,
        &[
            "shirt.png: wrong magic number",
            "so predict reads an IDX images file",
        ],
    );

    // Report on something that is not a run.
    let out = burnfit(&["report", tmp.path().to_str().unwrap()]);
    assert_one_error(&out, &["not a burnfit run directory"]);

    // A damaged weights file is reported, not loaded.
    let best = run.join("checkpoints/best.bpk");
    let mut bytes = std::fs::read(&best).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&best, &bytes).unwrap();
    let out = burnfit(&["eval", run.to_str().unwrap()]);
    assert_one_error(
        &out,
        &["best.bpk", "checksum mismatch", "--checkpoint last"],
    );
    bytes.truncate(middle);
    std::fs::write(&best, &bytes).unwrap();
    let out = burnfit(&["eval", run.to_str().unwrap()]);
    assert_one_error(&out, &["best.bpk", "truncated"]);
    let out = burnfit(&["eval", run.to_str().unwrap(), "--checkpoint", "last"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// `predict` uses the run's best checkpoint, as `eval` does by default: a
/// damaged one is refused by name, never passed over for last.bpk
/// silently. Only a run without best.bpk predicts with last.bpk, and says
/// so. No advice names a flag predict does not have.
#[test]
fn predict_refuses_a_damaged_best_checkpoint_and_names_any_other_it_uses() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path(), "kind = \"mlp\"\nhidden = [16]", "");
    let run = tmp.path().join("run");
    let out = train_for(config.to_str().unwrap(), "flex", 1, &run);
    assert!(out.status.success(), "{}", text(&out));
    let images = subset().join("t10k-images-idx3-ubyte.gz");
    let predict = || {
        burnfit(&[
            "predict",
            run.to_str().unwrap(),
            images.to_str().unwrap(),
            "--limit",
            "3",
        ])
    };
    let whole = predict();
    assert!(whole.status.success(), "{}", text(&whole));
    assert_eq!(String::from_utf8_lossy(&whole.stdout).lines().count(), 3);
    assert!(!text(&whole).contains("warning"), "{}", text(&whole));

    let best = run.join("checkpoints/best.bpk");
    let last = run.join("checkpoints/last.bpk");
    let last_bytes = std::fs::read(&last).unwrap();
    let damage = |path: &std::path::Path| {
        let mut bytes = std::fs::read(path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(path, &bytes).unwrap();
        bytes
    };
    let no_flags = |out: &Output| assert!(!text(out).contains("--"), "{}", text(out));

    // A damaged best.bpk: refused, whether or not last.bpk is whole.
    let damaged_best = damage(&best);
    let out = predict();
    assert_one_error(&out, &["best.bpk", "checksum mismatch"]);
    no_flags(&out);
    damage(&last);
    let out = predict();
    assert_one_error(&out, &["best.bpk", "checksum mismatch"]);
    no_flags(&out);
    assert_eq!(
        std::fs::read(&best).unwrap(),
        damaged_best,
        "left as it was"
    );

    // Without best.bpk (moved aside, as the error says): last.bpk, with a
    // warning naming both. One epoch: the same weights, the same lines.
    std::fs::write(&last, &last_bytes).unwrap();
    std::fs::rename(&best, tmp.path().join("best.bpk")).unwrap();
    let out = predict();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout, whole.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "one warning, got:\n{stderr}");
    assert!(lines[0].starts_with("warning: "), "{stderr}");
    assert!(
        lines[0].contains("best.bpk") && lines[0].contains("last.bpk"),
        "{stderr}"
    );

    // Without best.bpk and with last.bpk damaged, or missing too.
    damage(&last);
    let out = predict();
    assert_one_error(&out, &["last.bpk", "checksum mismatch"]);
    no_flags(&out);
    std::fs::remove_file(&last).unwrap();
    let out = predict();
    assert_one_error(&out, &["best.bpk", "last.bpk"]);
    no_flags(&out);
}

#[test]
fn bench_prints_the_device_scaling_table() {
    let out = burnfit(&[
        "bench",
        "--models",
        "mlp",
        "--backends",
        "flex",
        "--devices",
        "1,2",
        "--steps",
        "3",
        "--repeats",
        "1",
        "--loader-batches",
        "0",
        "--memory-epochs",
        "0",
    ]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains("## mlp on flex: one step of 64 images over several devices"),
        "{printed}"
    );
    // Each figure is a range over the rounds: `low–high`.
    let ranges = |label: &str| -> Vec<(f64, f64)> {
        let line = printed
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no row {label:?} in:\n{printed}"));
        line.split('|')
            .skip(2)
            .filter(|cell| !cell.trim().is_empty())
            .map(|cell| {
                let (low, high) = cell.trim().split_once('–').expect("a range");
                (low.parse().unwrap(), high.parse().unwrap())
            })
            .collect()
    };
    for devices in ["| 1 |", "| 2 |"] {
        let cells = ranges(devices);
        assert_eq!(cells.len(), 3, "{devices}: {cells:?}");
        assert!(
            cells.iter().all(|&(low, high)| 0.0 < low && low <= high),
            "{devices}: {cells:?}"
        );
    }
    assert_eq!(
        ranges("| 1 |")[2],
        (1.0, 1.0),
        "speed-up of 1 device over itself"
    );
}

#[test]
fn bad_device_lists_are_refused_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path(), "kind = \"mlp\"", "");
    let run = tmp.path().join("run");
    let train = |devices: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            config.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
            "--devices",
            devices,
        ];
        args.extend_from_slice(extra);
        burnfit(&args)
    };
    assert_one_error(&train("0", &[]), &["--devices 0", "at least 1"]);
    assert_one_error(
        &train("wgpu:0", &["--backend", "flex"]),
        &["--devices wgpu:0", "not a flex device"],
    );
    assert_one_error(
        &train("flex:1", &["--backend", "flex"]),
        &["flex has one device"],
    );
    assert_one_error(
        &train("3", &["--backend", "flex"]),
        &["training.batch_size", "3 devices"],
    );
    // (Or no adapter at all, where there is no Vulkan driver.)
    assert_one_error(&train("wgpu:9", &["--backend", "wgpu"]), &["wgpu"]);
    assert!(!run.exists());
}

#[test]
fn sweeps_of_no_trials_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path(), "kind = \"mlp\"", "");
    for flags in [
        vec![
            "--param",
            "optimizer.lr=loguniform(1e-4,1e-2)",
            "--random",
            "0",
        ],
        vec!["--param", "optimizer.lr=[1e-3]", "--max-trials", "0"],
    ] {
        let mut args = vec!["sweep", config.to_str().unwrap()];
        args.extend(flags.iter().copied());
        let out = burnfit(&args);
        assert_one_error(&out, &["at least 1"]);
    }
}

#[test]
fn shipped_configs_validate() {
    for entry in std::fs::read_dir(repo().join("configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            // Validation reads the data too: the image configs get the
            // committed subset (the full data set may not be installed).
            let images = std::fs::read_to_string(&path)
                .unwrap()
                .contains("fashion_mnist");
            let mut args = vec!["validate", path.to_str().unwrap()];
            let data = subset();
            if images {
                args.extend(["--data", data.to_str().unwrap()]);
            }
            let out = burnfit(&args);
            assert!(out.status.success(), "{}: {}", path.display(), text(&out));
        }
    }
}

/// The TensorBoard files of a real training run, read back by the real
/// `tensorboard` package (strict CRC pass first): every epoch scalar equals
/// the CSV log's value to float32 precision, weight histograms exist at every
/// epoch, and the run's config is there as text.
#[test]
fn tensorboard_reads_a_real_run_and_agrees_with_the_csv() {
    let Some(python) = tensorboard_python() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path(), "kind = \"mlp\"\nhidden = [16]", "");
    let run = tmp.path().join("run");
    let out = train_for(config.to_str().unwrap(), "flex", 3, &run);
    assert!(out.status.success(), "{}", text(&out));
    let train_output = text(&out);
    let dump = tensorboard_dump(&python, &run.join("tensorboard"));
    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    let mut rows = history.split("\r\n").filter(|l| !l.is_empty());
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    let rows: Vec<Vec<f64>> = rows
        .map(|r| {
            r.split(',')
                .map(|v| {
                    v.parse().unwrap_or_else(|_| {
                        panic!("{v:?} in history.csv:\n{history}\ntraining:\n{train_output}")
                    })
                })
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 3);
    for (col, name) in header.iter().enumerate().skip(1) {
        let (run_name, tag) = match name.strip_prefix("val_") {
            Some(base) => ("validation", format!("epoch_{base}")),
            None => ("train", format!("epoch_{name}")),
        };
        let series = dump["runs"][run_name]["scalars"][&tag]
            .as_array()
            .unwrap_or_else(|| panic!("{run_name}/{tag} missing in {dump}"));
        assert_eq!(series.len(), 3, "{run_name}/{tag}");
        for (epoch, point) in series.iter().enumerate() {
            assert_eq!(point[0].as_u64(), Some(epoch as u64), "{tag} step");
            let csv = rows[epoch][col] as f32;
            let tb = point[1].as_f64().unwrap() as f32;
            assert_eq!(csv, tb, "{run_name}/{tag} epoch {epoch}");
        }
    }
    let histograms = dump["runs"]["train"]["histograms"]
        .as_object()
        .expect("histograms");
    assert!(!histograms.is_empty(), "no weight histograms");
    for (tag, series) in histograms {
        let steps: Vec<u64> = series
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_u64().unwrap())
            .collect();
        assert_eq!(steps, [0, 1, 2], "{tag}");
    }
    let text_tags = dump["runs"]["train"]["text"]
        .as_object()
        .map(|t| t.len())
        .unwrap_or(0)
        + dump["runs"]["."]["text"]
            .as_object()
            .map(|t| t.len())
            .unwrap_or(0);
    assert!(text_tags > 0, "no config text in {}", dump["runs"]);
}

#[test]
fn regression_on_the_csv_table_trains_evaluates_and_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let out = train_for("configs/table_regression.toml", "flex", 3, &run);
    assert!(out.status.success(), "{}", text(&out));
    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    assert!(
        history.starts_with("epoch,learning_rate,loss,val_loss\r\n"),
        "{history}"
    );

    let out = burnfit(&["eval", run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("mse"), "{}", text(&out));

    let out = burnfit(&[
        "predict",
        run.to_str().unwrap(),
        "data/tables/friedman1.csv",
        "--limit",
        "5",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    for line in lines {
        let value: f64 = line.split('\t').nth(1).unwrap().parse().unwrap();
        assert!(value.is_finite());
    }
}

/// Regression metrics chosen in the config, monitored by a maximised one
/// (R², no "acc" in its name): in the history, the summary and the plots,
/// with the values the formulas give from the run's own numbers.
#[test]
fn regression_metrics_from_the_config_reach_every_output() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let out = burnfit(&[
        "train",
        "configs/table_regression.toml",
        "--epochs",
        "4",
        "--run-dir",
        run.to_str().unwrap(),
        "--set",
        "training.metrics=[\"mae\", \"mse\", \"rmse\", \"r2_score\"]",
        "--set",
        "outputs.checkpoint_monitor=\"val_r2_score\"",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    let mut lines = history.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        header,
        [
            "epoch",
            "learning_rate",
            "loss",
            "mae",
            "mse",
            "r2_score",
            "rmse",
            "val_loss",
            "val_mae",
            "val_mse",
            "val_r2_score",
            "val_rmse"
        ]
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for row in &rows {
        // The loss is the mean squared error; RMSE is its root.
        assert!((row[col("val_mse")] - row[col("val_loss")]).abs() < 1e-3 * row[col("val_loss")]);
        assert!(
            (row[col("val_rmse")] - row[col("val_mse")].sqrt()).abs() < 1e-6 * row[col("val_rmse")]
        );
        assert!(row[col("val_r2_score")] <= 1.0);
    }
    let best = rows
        .iter()
        .map(|r| r[col("val_r2_score")])
        .fold(f64::MIN, f64::max);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["best_value"].as_f64().unwrap(),
        best,
        "the highest R² is the best"
    );
    assert!(summary["final_metrics"]["val_mae"].as_f64().unwrap() > 0.0);
    assert!(run.join("plots/training_curves.png").is_file());
}

/// A 4-trial grid sweep: leaderboard sorted by the monitored value, plots per
/// trial, and an interrupted sweep resumed without rerunning finished trials.
#[test]
fn sweep_runs_a_grid_writes_a_leaderboard_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path(), "kind = \"mlp\"\nhidden = [16]", "");
    let dir = tmp.path().join("sweep");
    let sweep = |extra: &[&str]| {
        let mut args = vec![
            "sweep",
            config.to_str().unwrap(),
            "--param",
            "optimizer.lr=[1e-3, 3e-2]",
            "--param",
            "training.batch_size=[32, 64]",
            "--backend",
            "flex",
            "--sweep-dir",
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        burnfit(&args)
    };
    // Interrupted after two trials...
    let out = sweep(&["--max-trials", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.join("trial-001/summary.json").is_file());
    assert!(!dir.join("trial-002").exists());
    // ...then resumed: the two finished trials are not rerun.
    let out = sweep(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert_eq!(
        printed.matches("already finished, not rerun").count(),
        2,
        "{printed}"
    );
    for trial in 0..4 {
        let run = dir.join(format!("trial-{trial:03}"));
        assert!(
            run.join("plots/training_curves.png").is_file(),
            "trial {trial} plots"
        );
        assert!(run.join("tensorboard").is_dir());
    }
    let board = std::fs::read_to_string(dir.join("leaderboard.csv")).unwrap();
    let mut lines = board.lines();
    assert_eq!(
        lines.next().unwrap(),
        "rank,trial,optimizer.lr,training.batch_size,best_val_loss,best_epoch,epochs_run,pruned"
    );
    let best: Vec<f64> = lines
        .map(|l| l.split(',').nth(4).unwrap().parse().unwrap())
        .collect();
    assert_eq!(best.len(), 4);
    assert!(best.windows(2).all(|w| w[0] <= w[1]), "sorted: {best:?}");
    assert!(
        std::fs::read_to_string(dir.join("leaderboard.md"))
            .unwrap()
            .starts_with("| rank | trial |")
    );
}

/// Parses the numeric cells of the Markdown table row that starts with `label`.
fn row_numbers(out: &str, label: &str) -> Vec<f64> {
    let line = out
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?} in:\n{out}"));
    line.split('|')
        .filter_map(|cell| {
            let cell = cell.trim().trim_end_matches(" µs").trim_end_matches(" ms");
            cell.trim_end_matches('%')
                .replace(',', "")
                .parse::<f64>()
                .ok()
        })
        .collect()
}

#[test]
fn bench_prints_overhead_stall_and_memory_tables() {
    let out = burnfit(&[
        "bench",
        "--models",
        "mlp",
        "--backends",
        "flex,nonexistent-is-rejected-below",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--backends"), "{}", text(&out));
    // --peers without a Python that has Keras: refused before measuring.
    let out = burnfit(&[
        "bench",
        "--models",
        "mlp",
        "--peers",
        "--peers-python",
        "/nonexistent/python",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("make bench-peers"), "{}", text(&out));

    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("bench.json");
    let out = burnfit(&[
        "bench",
        "--models",
        "mlp",
        "--backends",
        "flex",
        "--steps",
        "3",
        "--repeats",
        "1",
        "--memory-epochs",
        "4",
        "--loader-batches",
        "20",
        "--json",
        json.to_str().unwrap(),
    ]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    // One JSON record per figure of the throughput table.
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let variants: Vec<&str> = records
        .iter()
        .map(|r| r["variant"].as_str().unwrap())
        .collect();
    assert_eq!(variants, ["plain", "none", "noop5", "full"], "{records:?}");
    for record in &records {
        assert_eq!(record["model"], "mlp");
        assert_eq!(record["backend"], "flex");
        assert_eq!(record["framework"], "burnfit");
        assert!(record["step_ms"].as_f64().unwrap() > 0.0);
    }
    // Data loaders: Burn's and the ordered one, side by side, for 1, 2 and
    // 4 workers.
    for workers in ["| 1 |", "| 2 |", "| 4 |"] {
        let cells = row_numbers(&printed, workers);
        assert_eq!(cells.len(), 4, "{workers} then 3 figures: {cells:?}");
        assert!(cells.iter().all(|&v| v > 0.0), "{workers}: {cells:?}");
    }
    // Checkpoint stall: parameters, file size and three positive timings
    // for each model.
    for model in ["| mlp |", "| simple_cnn |", "| cnn |", "| resnet |"] {
        let cells = row_numbers(&printed, model);
        assert_eq!(cells.len(), 5, "{model}: {cells:?}");
        assert!(cells.iter().all(|&v| v > 0.0), "{model}: {cells:?}");
    }
    // Memory: resident memory after 4 epochs, and the two ceilings.
    let memory = row_numbers(&printed, "| resident memory (MiB) |");
    assert_eq!(memory.len(), 5, "{memory:?}");
    assert!(
        printed.contains("highest resident memory: epochs 2-2"),
        "{printed}"
    );
    // Overhead: the four variants, the full set with its hook timings.
    for variant in ["plain Burn", "with_callbacks, none", "5 no-op callbacks"] {
        let cells = row_numbers(&printed, &format!("| flex | {variant} |"));
        assert_eq!(cells.len(), 3, "{variant}: {cells:?}");
    }
    let full = row_numbers(&printed, "| flex | full default set, fused Adam |");
    assert_eq!(full.len(), 6, "{full:?}");
    let (per_step_us, overhead_percent) = (full[3], full[5]);
    assert!(per_step_us > 0.0 && overhead_percent > 0.0, "{full:?}");
    assert!(printed.contains("auto picks flex") || printed.contains("auto picks wgpu"));
}

#[test]
fn bench_refuses_counts_it_cannot_measure_and_labels_every_memory_column() {
    let bench = |steps: &str, repeats: &str, memory_epochs: &str| {
        burnfit(&[
            "bench",
            "--models",
            "mlp",
            "--backends",
            "flex",
            "--steps",
            steps,
            "--repeats",
            repeats,
            "--memory-epochs",
            memory_epochs,
            "--loader-batches",
            "0",
        ])
    };
    // Refused before anything is measured (nothing else printed), each
    // naming the flag and the least it takes.
    assert_one_error(&bench("0", "1", "5"), &["--steps 0", "--steps 1 or more"]);
    // --json replaces only an earlier --json output, and is checked first.
    let tmp = tempfile::tempdir().unwrap();
    let notes = tmp.path().join("notes.txt");
    std::fs::write(&notes, "mine").unwrap();
    let missing = tmp.path().join("no/such/dir/b.json");
    for (path, why) in [
        (&notes, "is not an earlier `burnfit bench --json` output"),
        (&tmp.path().to_path_buf(), "is a directory"),
        (&missing, "does not exist"),
    ] {
        let out = burnfit(&[
            "bench",
            "--models",
            "mlp",
            "--steps",
            "1",
            "--json",
            path.to_str().unwrap(),
        ]);
        assert_one_error(&out, &[&format!("--json {}", path.display()), why]);
    }
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "mine");
    assert_one_error(
        &bench("1", "0", "5"),
        &["--repeats 0", "--repeats 1 or more"],
    );
    for epochs in ["1", "2", "3"] {
        assert_one_error(
            &bench("1", "1", epochs),
            &[
                &format!("--memory-epochs {epochs}"),
                "at least 4",
                "0 to skip",
            ],
        );
    }

    // 5 epochs (half of it rounds down to 2): four different epochs, in
    // order, the last the fifth; the run's 5 epochs, both ceilings numbers.
    let out = bench("1", "1", "5");
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("1 steps per measurement"), "{printed}");
    assert!(printed.contains("5 epochs of 4 steps"), "{printed}");
    assert!(
        printed.contains("| after epoch | 1 | 2 | 3 | 5 | process peak |"),
        "{printed}"
    );
    let memory = row_numbers(&printed, "| resident memory (MiB) |");
    assert_eq!(memory.len(), 5, "{memory:?}");
    assert!(
        memory.iter().all(|v| v.is_finite() && *v > 0.0),
        "{memory:?}"
    );
    let ceilings = printed
        .lines()
        .find(|l| l.starts_with("highest resident memory:"))
        .unwrap_or_else(|| panic!("no ceilings in:\n{printed}"));
    assert!(
        ceilings.starts_with("highest resident memory: epochs 2-2: ")
            && ceilings.contains(", epochs 3-5: ")
            && !ceilings.contains("NaN"),
        "{ceilings}"
    );
}

#[test]
fn a_run_trained_on_a_relative_data_path_is_evaluated_from_any_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let absolute = small_config(tmp.path(), "kind = \"mlp\"\nhidden = [16]", "");
    // The committed subset named relative to the repository, where the
    // training runs.
    let relative = std::fs::read_to_string(&absolute)
        .unwrap()
        .replace(&subset().display().to_string(), "data/fashion-mnist-subset");
    assert!(relative.contains("dir = \"data/fashion-mnist-subset\""));
    let config = tmp.path().join("relative.toml");
    std::fs::write(&config, relative).unwrap();
    let run = tmp.path().join("run");
    let out = train_for(config.to_str().unwrap(), "flex", 1, &run);
    assert!(out.status.success(), "{}", text(&out));
    let stored = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let stored: toml::Table = toml::from_str(&stored).unwrap();
    let dir = stored["data"]["dir"].as_str().unwrap();
    assert!(Path::new(dir).is_absolute(), "{dir}");
    assert_eq!(
        std::fs::canonicalize(dir).unwrap(),
        std::fs::canonicalize(subset()).unwrap()
    );

    // From another directory.
    let out = Command::new(env!("CARGO_BIN_EXE_burnfit"))
        .args(["eval", run.to_str().unwrap()])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(run.join("test_metrics_best.json").is_file());
}

#[test]
fn command_line_mistakes_are_one_error_line_with_the_usage() {
    for (args, words) in [
        (
            &["train", "--epochs", "-1", "x.toml"][..],
            &["'-1'", "use '-- -1'", "usage: burnfit train"][..],
        ),
        (
            &["train", "--foo", "x.toml"],
            &["'--foo'", "usage: burnfit train"],
        ),
        (&["eval"], &["<RUN_DIR>", "usage: burnfit eval <RUN_DIR>"]),
        (&["trian"], &["'trian'", "'train'", "--help"]),
        // No command at all: clap's about line became a line without `error:`.
        (
            &[][..],
            &["error: no command given", "usage: burnfit <COMMAND>"],
        ),
        (
            &["predict", "run", "x.idx", "--limit", "0"],
            &["--limit", "at least 1"],
        ),
    ] {
        assert_one_error(&burnfit(args), words);
    }
    let help = burnfit(&["train", "--help"]);
    assert!(help.status.success());
    assert!(text(&help).lines().count() > 5, "help stays whole");
}

#[test]
fn an_mnist_run_predicts_digits_not_fashion_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let fashion = small_config(tmp.path(), "kind = \"mlp\"\nhidden = [16]", "");
    let config = tmp.path().join("mnist.toml");
    let text_config = std::fs::read_to_string(&fashion)
        .unwrap()
        .replace("kind = \"fashion_mnist\"", "kind = \"mnist\"");
    assert!(text_config.contains("kind = \"mnist\""));
    std::fs::write(&config, text_config).unwrap();
    let run = tmp.path().join("run");
    let out = train_for(config.to_str().unwrap(), "flex", 1, &run);
    assert!(out.status.success(), "{}", text(&out));
    let images = subset().join("t10k-images-idx3-ubyte.gz");
    let out = burnfit(&[
        "predict",
        run.to_str().unwrap(),
        images.to_str().unwrap(),
        "--limit",
        "5",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    for line in lines {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(
            fields[1], fields[2],
            "the class is named by its digit: {line}"
        );
    }
}
