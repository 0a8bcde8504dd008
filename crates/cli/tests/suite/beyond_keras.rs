//! The features beyond Keras through the `burnfit` binary: the range test,
//! and a run with every new callback configured in TOML, read back with
//! the real TensorBoard reader.

use std::path::Path;

use crate::common::{burnfit, small_config, tensorboard_dump, tensorboard_python, text};

/// `(learning rate, smoothed loss)` rows of `lr_find.csv`, read by an
/// ordinary CSV reader (a header, then rows of four numbers: nothing else),
/// and the suggestion of `lr_find.json`.
fn read_lr_find(run: &Path) -> (Vec<(f64, f64)>, f64) {
    let mut reader = csv::Reader::from_path(run.join("lr_find.csv")).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        vec!["step", "learning_rate", "loss_smoothed", "loss"]
    );
    let mut rows = Vec::new();
    for (step, record) in reader.records().enumerate() {
        let record = record.expect("every line of lr_find.csv a row of the table");
        let number = |i: usize| -> f64 {
            record[i]
                .parse()
                .unwrap_or_else(|e| panic!("{record:?}: {e}"))
        };
        assert_eq!(number(0), step as f64, "{record:?}");
        rows.push((number(1), number(2)));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("lr_find.json")).unwrap()).unwrap();
    assert_eq!(json["steps_run"], rows.len(), "{json}");
    assert!(
        json["rule"].as_str().unwrap().contains("steepest descent"),
        "{json}"
    );
    let suggestion = json["suggested_lr"].as_f64().expect("a suggestion");
    (rows, suggestion)
}

/// The last epoch's training loss of a run.
fn final_loss(run: &Path) -> f64 {
    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    let mut lines = history.lines().filter(|l| !l.is_empty());
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = header.iter().position(|h| *h == "loss").unwrap();
    let last: Vec<&str> = lines.next_back().unwrap().split(',').collect();
    last[column].parse().unwrap()
}

#[test]
fn lr_find_suggests_a_rate_where_training_actually_improves() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path(), "kind = \"mlp\"\nhidden = [32]", "");
    let config = config.to_str().unwrap();
    let finder_run = tmp.path().join("lr-find");
    let out = burnfit(&[
        "lr-find",
        config,
        "--backend",
        "flex",
        "--steps",
        "60",
        "--min-lr",
        "1e-6",
        "--max-lr",
        "10",
        "--run-dir",
        finder_run.to_str().unwrap(),
        "--set",
        "training.batch_size=16",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("suggested learning rate"),
        "{}",
        text(&out)
    );
    // The command it suggests trains on what it measured: the same flags.
    let suggested = format!(
        "train with it: burnfit train {config} --backend flex --set training.batch_size=16 \
         --set optimizer.lr="
    );
    assert!(text(&out).contains(&suggested), "{}", text(&out));
    let png = std::fs::read(finder_run.join("plots/lr_find.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    assert!(
        std::fs::read_to_string(finder_run.join("plots/lr_find.svg"))
            .unwrap()
            .contains("<svg")
    );
    // Nothing else is kept: the model was put back, no checkpoint written.
    assert!(!finder_run.join("checkpoints/best.bpk").exists());

    let (rows, suggestion) = read_lr_find(&finder_run);
    let (min_lr, start_loss) = rows[0];
    let lowest = rows.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
    let at = rows.iter().position(|r| r.0 == suggestion).unwrap();
    // On the curve: inside the swept range, on the falling part, before the
    // lowest loss.
    assert!(min_lr < suggestion && suggestion < 10.0);
    assert!(rows[at].1 < start_loss);
    assert!(rows[..=at].iter().all(|r| r.1 >= lowest));

    // In training: the suggested rate improves the loss, and by more than
    // the bottom of the range does.
    let train = |lr: f64, name: &str| {
        let run = tmp.path().join(name);
        let lr = format!("optimizer.lr={lr:e}");
        let out = burnfit(&[
            "train",
            config,
            "--backend",
            "flex",
            "--epochs",
            "2",
            "--run-dir",
            run.to_str().unwrap(),
            "--set",
            &lr,
            "--set",
            "training.batch_size=16",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        final_loss(&run)
    };
    let with_suggestion = train(suggestion, "suggested");
    let with_min = train(min_lr, "min");
    assert!(
        with_suggestion < start_loss && with_suggestion < with_min,
        "suggested {suggestion:e}: loss {with_suggestion}; {min_lr:e}: {with_min}; start {start_loss}"
    );
}

const EVERYTHING: &str = r#"
[[callbacks]]
type = "SwapEMAWeights"

[[callbacks]]
type = "StochasticWeightAveraging"
swa_lrs = 1e-3
swa_epoch_start = 2

[[callbacks]]
type = "LearningRateScheduler"
schedule = { kind = "one_cycle", max_lr = 3e-3 }

[[callbacks]]
type = "TensorBoard"
log_dir = "tb"
histogram_freq = 1
update_freq = 1
write_steps_per_second = true

[[callbacks]]
type = "GradientNormMonitor"
every_n_steps = 2

[[callbacks]]
type = "ModelSummary"

[[callbacks]]
type = "Timer"
duration = "00:01:00:00"

[[callbacks]]
type = "SpikeDetection"
action = "skip"

[[callbacks]]
type = "OnExceptionCheckpoint"
dirpath = "crash"
"#;

#[test]
fn every_new_callback_runs_from_toml_and_tensorboard_reads_what_they_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(
        tmp.path(),
        "kind = \"mlp\"\nhidden = [16]",
        &format!("{EVERYTHING}\n"),
    );
    // The EMA options belong to [optimizer]: append them there.
    let text_config = std::fs::read_to_string(&config).unwrap().replace(
        "[optimizer]\n",
        "[optimizer]\nuse_ema = true\nema_momentum = 0.9\n",
    );
    std::fs::write(&config, text_config).unwrap();
    let run = tmp.path().join("run");
    let out = burnfit(&[
        "train",
        config.to_str().unwrap(),
        "--backend",
        "flex",
        "--epochs",
        "3",
        "--run-dir",
        run.to_str().unwrap(),
    ]);
    let output = text(&out);
    assert!(out.status.success(), "{output}");
    assert!(output.contains("Total params"), "ModelSummary: {output}");
    assert!(output.contains("average of 1 epochs"), "SWA: {output}");
    assert!(
        !run.join("crash").exists(),
        "no failure, no exception checkpoint"
    );

    // The averaged weights are kept and evaluate.
    assert!(run.join("checkpoints/final.bpk").exists());
    let eval = burnfit(&["eval", run.to_str().unwrap(), "--checkpoint", "final"]);
    assert!(eval.status.success(), "{}", text(&eval));

    let Some(python) = tensorboard_python() else {
        return;
    };
    let dump = tensorboard_dump(&python, &run.join("tb"));
    let train = &dump["runs"]["train"];
    for tag in [
        "batch_loss",
        "batch_accuracy",
        "batch_learning_rate",
        "batch_steps_per_second",
        "epoch_steps_per_second",
    ] {
        let series = train["scalars"][tag].as_array();
        assert!(
            series.is_some_and(|s| !s.is_empty()),
            "{tag} missing: {}",
            train["scalars"]
        );
    }
    // The one-cycle rate rises then falls, step by step.
    let lrs: Vec<f64> = train["scalars"]["batch_learning_rate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_f64().unwrap())
        .collect();
    let peak = lrs.iter().cloned().fold(0.0, f64::max);
    assert!(
        lrs[0] < peak / 10.0 && *lrs.last().unwrap() < peak / 10.0,
        "{lrs:?}"
    );
    // Weight histograms from a [[callbacks]] TensorBoard, no code needed.
    let histograms = train["histograms"].as_object().expect("histograms");
    assert!(
        histograms.keys().any(|k| k.ends_with("weight/histogram")),
        "{histograms:?}"
    );
    // Gradient norms next to the run's TensorBoard scalars.
    let norms = tensorboard_dump(&python, &run.join("tensorboard"));
    let scalars = &norms["runs"]["train"]["scalars"];
    let global = scalars["grad_norm/global"]
        .as_array()
        .expect("grad_norm/global");
    assert!(!global.is_empty());
    assert!(global.iter().all(|p| p[0].as_u64().unwrap() % 2 == 0));
    assert!(
        scalars
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("grad_norm/") && k.ends_with("/weight")),
        "{scalars}"
    );
}

#[test]
fn weight_averaging_configs_are_checked_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    for (extra, words) in [
        (
            "[[callbacks]]\ntype = \"SwapEMAWeights\"\n",
            ["callbacks[2]", "use_ema"],
        ),
        (
            "[[callbacks]]\ntype = \"StochasticWeightAveraging\"\nswa_lrs = 0\n",
            ["callbacks[2]", "swa_lrs"],
        ),
        (
            "[[callbacks]]\ntype = \"Timer\"\nduration = \"soon\"\n",
            ["callbacks[2]", "duration"],
        ),
    ] {
        let config = small_config(tmp.path(), "kind = \"mlp\"\nhidden = [16]", extra);
        let out = burnfit(&["validate", config.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        for word in words {
            assert!(stderr.contains(word), "{word}: {stderr}");
        }
    }
}
