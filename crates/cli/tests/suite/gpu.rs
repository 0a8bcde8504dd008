//! wgpu with Burn's kernel fusion and autotune, on the lavapipe software
//! GPU that `make test` installs: training runs on the fused stack and its
//! numbers stay within tolerance of flex, the unfused CPU reference, from
//! the same weights, data order and steps.
//!
//! The fused and the unfused wgpu cannot share a binary (fusion is a
//! compile-time feature of Burn: every wgpu tensor goes through
//! `Fusion<CubeBackend>`), so the reference is flex. The same weights come
//! from a flex run killed in its second epoch and resumed on wgpu with
//! `--force`: epoch 1 is flex's on both sides, epochs 2 and 3 are the
//! fused GPU's against flex's. Measured on lavapipe: the fused losses
//! were 2e-8 to 2e-7 apart from flex's, relatively; the test allows 1e-5.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{SubsetMlp, assert_only_our_warnings, repo, text};

/// An MLP without dropout (flex's and wgpu's random streams differ) on 400
/// training images in batches of 50: 8 steps an epoch, 3 epochs.
fn config(dir: &Path) -> PathBuf {
    SubsetMlp {
        name: "gpu",
        model: "hidden = [32]\ndropout = 0.0",
        training: "epochs = 3\nseed = 5",
        outputs: "histogram_freq = 0",
        rest: "[optimizer]\nlr = 3e-3\n",
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

/// history.csv as rows of named values, read with the csv crate.
fn history(run: &Path) -> Vec<std::collections::BTreeMap<String, f64>> {
    let mut reader = csv::Reader::from_path(run.join("history.csv")).unwrap();
    let names: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    reader
        .records()
        .map(|row| {
            let row = row.unwrap();
            names
                .iter()
                .zip(row.iter())
                .filter_map(|(name, value)| Some((name.clone(), value.parse().ok()?)))
                .collect()
        })
        .collect()
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap()
}

fn no_adapter(out: &Output) -> bool {
    text(out).contains("wgpu found no adapter")
        && std::env::var_os("BURNFIT_REQUIRE_WGPU").is_none()
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (make test)"
)]
fn training_on_wgpu_runs_fused_and_stays_within_tolerance_of_flex_from_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path());

    let reference = tmp.path().join("flex");
    let out = train(&config, &reference, &[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(summary(&reference)["burn_backend"], "dispatch<flex>");

    // Killed at step 11, in epoch 2: the backup holds epoch 1's end.
    let run = tmp.path().join("fused");
    let out = train(&config, &run, &[], &[("BURNFIT_ABORT_AT_STEP", "11")]);
    assert!(!out.status.success(), "not killed: {}", text(&out));
    let out = train(
        &config,
        &run,
        &["--resume", "--backend", "wgpu", "--force"],
        &[],
    );
    if no_adapter(&out) {
        eprintln!("skipped: no wgpu adapter here (make test installs lavapipe and requires it)");
        return;
    }
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");

    // On the fused stack, and said so.
    let stack = summary(&run)["burn_backend"].as_str().unwrap().to_string();
    assert!(
        stack.starts_with("dispatch<fusion<cubecl<"),
        "not Burn's fused wgpu stack: {stack}"
    );
    assert!(
        printed.contains("fusion on, autotune on (level "),
        "{printed}"
    );

    let (flex, fused) = (history(&reference), history(&run));
    assert_eq!(fused.len(), 3, "{fused:?}");
    assert_eq!(fused[0], flex[0], "epoch 1 is flex's in both runs");
    for epoch in 1..3 {
        for key in ["loss", "val_loss"] {
            let (want, got) = (flex[epoch][key], fused[epoch][key]);
            assert!(
                ((got - want) / want).abs() < 1e-5,
                "epoch {} {key}: fused wgpu {got} against flex {want}",
                epoch + 1
            );
        }
        for key in ["accuracy", "val_accuracy"] {
            let (want, got) = (flex[epoch][key], fused[epoch][key]);
            assert!(
                (got - want).abs() <= 0.02,
                "epoch {} {key}: fused wgpu {got} against flex {want}",
                epoch + 1
            );
        }
    }
    // Training went on: the fused epochs lowered the loss as flex's did.
    assert!(fused[2]["loss"] < fused[0]["loss"], "{fused:?}");
}

/// Two workers on the one wgpu adapter (`--devices wgpu:0,wgpu:0`) train,
/// and stderr carries only burnfit's own lines: a device named by index
/// comes up on its own wgpu instance, whose display libraries printed
/// `error: XDG_RUNTIME_DIR is invalid…` four times on a headless machine
/// until its runtime was started with their stderr silenced.
#[test]
fn two_workers_on_one_wgpu_adapter_train_without_driver_noise() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path());
    let run = tmp.path().join("two");
    let out = Command::new(env!("CARGO_BIN_EXE_burnfit"))
        .args(["train", config.to_str().unwrap(), "--run-dir"])
        .arg(&run)
        .args([
            "--backend",
            "wgpu",
            "--devices",
            "wgpu:0,wgpu:0",
            "--epochs",
            "1",
        ])
        .env_remove("XDG_RUNTIME_DIR")
        .env("WAYLAND_DISPLAY", "wayland-0")
        .current_dir(repo())
        .output()
        .unwrap();
    if no_adapter(&out) {
        eprintln!("skipped: no wgpu adapter (make test installs lavapipe)");
        return;
    }
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(history(&run).len(), 1, "{}", text(&out));
    assert_only_our_warnings(&out);
}

/// A binary without the `cuda` feature (the default: its build downloads
/// LLVM) refuses CUDA wherever it can be asked for, in one `error:` line
/// that gives the build command and the way to the same GPU through wgpu,
/// before anything is created; `bench` says it is not in the binary rather
/// than failing, and `auto` never picks it.
#[test]
#[cfg(not(feature = "cuda"))]
fn cuda_in_a_binary_without_it_is_one_error_that_gives_the_build_and_nothing_is_created() {
    use crate::common::{assert_one_error, burnfit};
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path());
    let config = config.to_str().unwrap();
    let run = tmp.path().join("run");
    let not_built = [
        "backend cuda: this binary is built without Burn's CUDA backend",
        "--features cuda",
        "--backend wgpu",
    ];
    let flag = ["--backend", "cuda", "--run-dir", run.to_str().unwrap()];
    for command in ["train", "validate", "lr-find"] {
        let out = burnfit(&[&[command, config][..], &flag].concat());
        assert_one_error(&out, &not_built);
        assert!(!run.exists(), "{command} created {}", run.display());
    }
    // The config's key, as `validate` names it.
    let out = burnfit(&["validate", config, "--set", "training.backend=\"cuda\""]);
    assert_one_error(&out, &not_built);
    // A CUDA device on another backend names that backend.
    let out = burnfit(&["train", config, "--backend", "flex", "--devices", "cuda:0"]);
    assert_one_error(&out, &["--devices cuda:0", "is not a flex device"]);
    let bench = burnfit(&[
        "bench",
        "--backends",
        "cuda",
        "--models",
        "mlp",
        "--steps",
        "1",
        "--repeats",
        "1",
        "--memory-epochs",
        "0",
        "--loader-batches",
        "0",
    ]);
    let printed = text(&bench);
    assert!(bench.status.success(), "{printed}");
    assert!(
        printed.contains("# cuda stack: not in this binary")
            && printed.contains("| cuda | (not available here) |")
            && !printed.contains("auto picks cuda"),
        "{printed}"
    );
}
