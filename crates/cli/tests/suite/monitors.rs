//! `[[callbacks]] type = "ThroughputMonitor"` and `"DeviceStatsMonitor"`
//! on a real run: each epoch's samples per second, step time and data-wait
//! time, resident memory and CPU use reach the CSV log and TensorBoard
//! (read back with their readers). The values are timings and the
//! machine's state, so only their presence and sign are checked.

use crate::common::{small_config, tensorboard_dump, tensorboard_python, text, train_for};

#[test]
fn the_monitors_write_each_epochs_throughput_and_device_stats_to_the_csv_and_tensorboard() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(
        tmp.path(),
        "kind = \"mlp\"\nhidden = [16]",
        "[[callbacks]]\ntype = \"ThroughputMonitor\"\nlog_every_n_steps = 2\n\
         [[callbacks]]\ntype = \"DeviceStatsMonitor\"\n",
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
        ("rss_mib", true),
        ("cpu_percent", true),
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
    // flex does not report an allocator: no device keys rather than zeros.
    assert!(
        header.iter().all(|h| !h.starts_with("device_memory")),
        "{header:?}"
    );
    let Some(python) = tensorboard_python() else {
        return;
    };
    let dump = tensorboard_dump(&python, &run.join("tensorboard"));
    let series = dump["runs"]["train"]["scalars"]["epoch_samples_per_sec"]
        .as_array()
        .unwrap_or_else(|| panic!("epoch_samples_per_sec missing in {dump}"));
    assert_eq!(series.len(), 2, "{dump}");
    let rss = dump["runs"]["train"]["scalars"]["epoch_rss_mib"]
        .as_array()
        .unwrap_or_else(|| panic!("epoch_rss_mib missing in {dump}"));
    assert_eq!(rss.len(), 2, "{dump}");
}

/// On wgpu (lavapipe in `make test`) the device's allocator is reported:
/// memory in use and reserved, in MiB, each epoch.
/// A logger listed before the monitors still records their keys: the
/// loggers and trackers of `[[callbacks]]` run after the callbacks that add
/// keys, whatever the config's order (a user's CSVLogger read back here).
#[test]
fn a_logger_listed_before_the_monitors_records_their_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(
        tmp.path(),
        "kind = \"mlp\"\nhidden = [16]",
        "[[callbacks]]\ntype = \"CSVLogger\"\nfilename = \"mine.csv\"\n\
         [[callbacks]]\ntype = \"ThroughputMonitor\"\n\
         [[callbacks]]\ntype = \"DeviceStatsMonitor\"\n",
    );
    let run = tmp.path().join("run");
    let out = train_for(config.to_str().unwrap(), "flex", 1, &run);
    assert!(out.status.success(), "{}", text(&out));
    let mut reader = csv::Reader::from_path(run.join("mine.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    for key in ["samples_per_sec", "step_time", "rss_mib", "cpu_percent"] {
        assert!(header.iter().any(|h| h == key), "no {key} in {header:?}");
    }
    assert_eq!(reader.records().count(), 1);
}

#[test]
fn device_stats_on_wgpu_report_the_allocators_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(
        tmp.path(),
        "kind = \"mlp\"\nhidden = [16]",
        "[[callbacks]]\ntype = \"DeviceStatsMonitor\"\n",
    );
    let run = tmp.path().join("run");
    let out = train_for(config.to_str().unwrap(), "wgpu", 2, &run);
    let printed = text(&out);
    if printed.contains("wgpu found no adapter")
        && std::env::var_os("BURNFIT_REQUIRE_WGPU").is_none()
    {
        eprintln!("skipped: no wgpu adapter here (make test installs lavapipe and requires it)");
        return;
    }
    assert!(out.status.success(), "{printed}");
    let mut reader = csv::Reader::from_path(run.join("history.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    let value = |row: &csv::StringRecord, key: &str| -> f64 {
        let column = header
            .iter()
            .position(|h| h == key)
            .unwrap_or_else(|| panic!("no {key} in {header:?}"));
        row[column].parse().unwrap()
    };
    for row in &rows {
        let (in_use, reserved) = (
            value(row, "device_memory_in_use_mib"),
            value(row, "device_memory_reserved_mib"),
        );
        assert!(
            in_use > 0.0,
            "the model's weights are on the device: {in_use}"
        );
        assert!(reserved >= in_use, "reserved {reserved} < in use {in_use}");
    }
}
