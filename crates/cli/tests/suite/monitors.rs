//! `[[callbacks]] type = "ThroughputMonitor"` on a real run: each epoch's
//! samples per second, step time and data-wait time reach the CSV log and
//! TensorBoard (read back with their readers). The values are timings, so
//! only their presence and sign are checked.

use crate::common::{small_config, tensorboard_dump, tensorboard_python, text, train_for};

#[test]
fn throughput_monitor_writes_each_epochs_means_to_the_csv_and_tensorboard() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(
        tmp.path(),
        "kind = \"mlp\"\nhidden = [16]",
        "[[callbacks]]\ntype = \"ThroughputMonitor\"\nlog_every_n_steps = 2\n",
    );
    let run = tmp.path().join("run");
    let out = train_for(config.to_str().unwrap(), "flex", 2, &run);
    assert!(out.status.success(), "{}", text(&out));
    let mut reader = csv::Reader::from_path(run.join("history.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    for (key, positive) in [
        ("samples_per_sec", true),
        ("step_time", true),
        ("data_wait_time", false),
    ] {
        let column = header
            .iter()
            .position(|h| h == key)
            .unwrap_or_else(|| panic!("no {key} in {header:?}"));
        for row in &rows {
            let value: f64 = row[column].parse().unwrap();
            assert!(value.is_finite() && value >= 0.0, "{key} = {value}");
            assert!(!positive || value > 0.0, "{key} = {value}");
        }
    }
    let Some(python) = tensorboard_python() else {
        return;
    };
    let dump = tensorboard_dump(&python, &run.join("tensorboard"));
    let series = dump["runs"]["train"]["scalars"]["epoch_samples_per_sec"]
        .as_array()
        .unwrap_or_else(|| panic!("epoch_samples_per_sec missing in {dump}"));
    assert_eq!(series.len(), 2, "{dump}");
}
