//! Bad config values as `validate` and `train` report them: one `error:`
//! line naming the key and where its value came from (the config file and
//! the key's own line, or the `--set` that gave it), exit code 2, and
//! nothing created; and `--set` arguments that replace bad values of the
//! file.

use std::path::{Path, PathBuf};

use crate::common::{assert_refused as refused, burnfit, subset, text};

/// Writes `DIR/cfg.toml`: an MLP on 200 subset images, lines 1 to 10, then
/// `rest` from line 11 on.
fn config(dir: &Path, rest: &str) -> PathBuf {
    let path = dir.join("cfg.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "cfg"
[model]
kind = "mlp"

[data]
kind = "fashion_mnist"
dir = "{data}"
limit_train = 200
limit_test = 50

{rest}"#,
            data = subset().display()
        ),
    )
    .unwrap();
    path
}

/// `burnfit validate CONFIG --set SET…` succeeds.
fn accepted(config: &Path, sets: &[&str]) {
    let mut args = vec!["validate", config.to_str().unwrap()];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = burnfit(&args);
    assert!(out.status.success(), "{sets:?}: {}", text(&out));
}

#[test]
fn a_set_replaces_an_invalid_value_of_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let rest = "[training]\nepochs = 1\nbatch_size = \"abc\"\nseed = -1\n";
    let config = config(tmp.path(), rest);
    accepted(&config, &["training.batch_size=32", "training.seed=7"]);
    accepted(&config, &["training={ epochs = 1 }"]);
    // The value no set replaces is still named at its line in the file.
    refused(
        &config,
        &["training.batch_size=32"],
        &[
            "cfg.toml:14: training.seed: invalid value: integer `-1`, expected a whole number, 0 or more",
        ],
    );
    refused(
        &config,
        &["training.seed=7"],
        &["cfg.toml:13: training.batch_size: invalid type: string \"abc\""],
    );
    refused(
        &config,
        &["training.seed=7", "training.batch_size=0.5"],
        &["--set training.batch_size=0.5: training.batch_size: invalid type: floating point"],
    );
}

#[test]
fn with_sets_an_unknown_key_of_the_file_is_named_at_its_own_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "[training]\nepochs = 1\n\nepochz = 2\n");
    for sets in [&[][..], &["training.batch_size=32"]] {
        refused(
            &config,
            sets,
            &[
                "cfg.toml:14: training.epochz: unknown field `epochz`",
                "did you mean `epochs`?",
            ],
        );
    }
    refused(
        &config,
        &["training.epochz=3"],
        &["--set training.epochz=3: training.epochz: unknown field `epochz`"],
    );
}

/// `rest` for [`config`] with a second `[[callbacks]]` entry of class
/// `class` whose last line, line 19, is `line`.
fn second_callback(class: &str, line: &str) -> String {
    format!(
        "[training]\nepochs = 1\n\n[[callbacks]]\ntype = \"EarlyStopping\"\n\n\
         [[callbacks]]\ntype = \"{class}\"\n{line}\n"
    )
}

#[test]
fn a_bad_callback_value_is_named_at_its_key_and_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "EarlyStopping",
            "patience = -1",
            "callbacks[1].patience: invalid value: integer `-1`, expected a whole number, 0 or more",
        ),
        (
            "TensorBoard",
            "update_freq = 0",
            "callbacks[1].update_freq: expected \"epoch\", \"batch\" or a number of batches >= 1, \
             got 0",
        ),
        (
            "BackupAndRestore",
            "save_freq = \"step\"",
            "callbacks[1].save_freq: expected \"epoch\", \"batch\" or a number of batches >= 1, \
             got \"step\"",
        ),
        (
            "ThroughputMonitor",
            "log_every_n_steps = -1",
            "callbacks[1].log_every_n_steps: invalid value: integer `-1`",
        ),
        (
            "MLFlowLogger",
            "log_every_n_steps = -1",
            "callbacks[1].log_every_n_steps: invalid value: integer `-1`",
        ),
        // Keras falls back to "auto" with a warning; a config's typo is refused.
        (
            "ReduceLROnPlateau",
            "mode = \"minn\"",
            "callbacks[1].mode: unknown mode `minn`, expected one of `auto`, `min`, `max`; \
             did you mean `min`?",
        ),
    ];
    for (class, line, expected) in cases {
        let config = config(tmp.path(), &second_callback(class, line));
        refused(&config, &[], &[&format!("cfg.toml:19: {expected}")]);
    }
    // An unknown key keeps its own line and the suggestion.
    let config = config(
        tmp.path(),
        &second_callback("EarlyStopping", "patiance = 2"),
    );
    refused(
        &config,
        &[],
        &[
            "cfg.toml:19: callbacks[1].patiance: unknown field `patiance`",
            "did you mean `patience`?",
        ],
    );
}

#[test]
fn a_bad_callback_value_a_set_gave_is_named_at_the_set() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(
        tmp.path(),
        &second_callback("EarlyStopping", "patience = 2"),
    );
    accepted(&config, &[]);
    refused(
        &config,
        &["callbacks[1].patience=-1"],
        &["--set callbacks[1].patience=-1: callbacks[1].patience: invalid value: integer `-1`"],
    );
    refused(
        &config,
        &["outputs.checkpoint_mode=\"maxx\""],
        &["--set outputs.checkpoint_mode=\"maxx\": outputs.checkpoint_mode: unknown mode `maxx`"],
    );
    let set = r#"callbacks=[{type="EarlyStopping", patience=-1}]"#;
    refused(
        &config,
        &[set],
        &[&format!(
            "--set {set}: callbacks[0].patience: invalid value: integer `-1`"
        )],
    );
}

#[test]
fn a_bad_value_in_a_list_of_inline_callback_tables_is_named_at_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "[training]\nepochs = 1\n");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "callbacks = [\n  {{ type = \"EarlyStopping\" }},\n  \
             {{ type = \"TensorBoard\", update_freq = 0 }},\n]\n{text}"
        ),
    )
    .unwrap();
    refused(
        &config,
        &[],
        &["cfg.toml:3: callbacks[1].update_freq: expected \"epoch\""],
    );
}

#[test]
fn a_value_of_the_wrong_kind_is_told_what_the_key_takes() {
    let tmp = tempfile::tempdir().unwrap();
    let takes = "training.fast_dev_run: expected true, false or a number of batches >= 1";
    for value in ["-1", "\"yes\"", "1.0"] {
        let rest = format!("[training]\nepochs = 1\nfast_dev_run = {value}\n");
        let config = config(tmp.path(), &rest);
        refused(&config, &[], &[&format!("cfg.toml:13: {takes}")]);
    }
    let good = config(tmp.path(), "[training]\nepochs = 1\n");
    refused(
        &good,
        &["training.fast_dev_run=yes"],
        &[&format!("--set training.fast_dev_run=yes: {takes}")],
    );
    // A tagged table says so, not serde's "internally tagged enum ModelConfig".
    refused(
        &good,
        &["model=3"],
        &["--set model=3: model: invalid type: integer `3`, expected a table with its `kind`"],
    );
    // The callbacks' parameters read the same way.
    let cases = [
        (
            "EarlyStopping",
            "min_delta = true",
            "callbacks[1].min_delta: expected a number, \"NaN\", \"Infinity\" or \"-Infinity\"",
        ),
        (
            "ModelCheckpoint",
            "save_freq = true",
            "callbacks[1].save_freq: expected \"epoch\", \"batch\" or a number of batches >= 1",
        ),
        (
            "Timer",
            "duration = true",
            "callbacks[1].duration: expected a number of seconds, \"DD:HH:MM:SS\" or \"HH:MM:SS\"",
        ),
        (
            "TensorBoard",
            "hparams = { units = [64] }",
            "callbacks[1].hparams.units: expected a number, a string, true or false",
        ),
    ];
    for (class, line, expected) in cases {
        let config = config(tmp.path(), &second_callback(class, line));
        refused(&config, &[], &[&format!("cfg.toml:19: {expected}")]);
    }
}

/// `[model]` and `[data]` are read by the task through a buffer (tagged by
/// `kind`), so serde's path stops at the table: the error still names the
/// key inside it, at the key's own line, or the `--set` that gave it.
#[test]
fn an_invalid_model_or_data_value_names_its_key_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), "[training]\nepochs = 1\n");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("kind = \"mlp\"", "kind = \"mlp\"\nhidden = \"x\"")
        .replace(
            "limit_test = 50",
            "limit_test = 50\nvalidation_split = \"half\"",
        );
    std::fs::write(&config, text).unwrap();
    refused(
        &config,
        &["data.validation_split=0.1"],
        &["cfg.toml:4: model.hidden: invalid type: string \"x\""],
    );
    refused(
        &config,
        &["model.hidden=[16]"],
        &["cfg.toml:11: data.validation_split: invalid type: string \"half\""],
    );
    refused(
        &config,
        &["model.hidden=[16]", "data.validation_split=2"],
        &["--set data.validation_split=2: data.validation_split:"],
    );
}

/// Devices the config gives are named at their key and line, not at the
/// `--devices` flag the user never passed; a backend this binary lacks is
/// refused by `validate` as by `train`.
#[test]
fn devices_and_a_backend_of_the_config_are_named_at_their_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(
        tmp.path(),
        "[training]\nepochs = 1\nbackend = \"flex\"\ndevices = [\"flex\", \"gpu\"]\n",
    );
    let run = tmp.path().join("run");
    let out = burnfit(&[
        "train",
        config.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
    ]);
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(2), "{printed}");
    assert_eq!(printed.lines().count(), 1, "{printed}");
    assert!(
        printed.starts_with("error: ")
            && printed.contains("cfg.toml:14: training.devices: `gpu` is not a flex device")
            && !printed.contains("--devices"),
        "{printed}"
    );
    assert!(!run.exists());
    // A batch the devices cannot share names the flag that gave them.
    let out = burnfit(&[
        "train",
        config.to_str().unwrap(),
        "--devices",
        "flex,flex,flex",
        "--run-dir",
        run.to_str().unwrap(),
    ]);
    crate::common::assert_one_error(
        &out,
        &["--devices flex,flex,flex: training.batch_size = 64 cannot be split evenly over 3"],
    );
    assert!(!run.exists());
    // `validate` says what `train` would: this binary has no ndarray.
    #[cfg(not(feature = "ndarray"))]
    crate::common::assert_one_error(
        &burnfit(&[
            "validate",
            config.to_str().unwrap(),
            "--set",
            "training.backend=\"ndarray\"",
            "--set",
            "training.devices=[]",
        ]),
        &[
            "--set training.backend=\"ndarray\": training.backend:",
            "without burn-ndarray",
        ],
    );
}
