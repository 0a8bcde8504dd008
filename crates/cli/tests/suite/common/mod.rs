//! What the `burnfit` binary's end-to-end tests share: the binary, the
//! committed data subset and a small real config.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn subset() -> PathBuf {
    repo().join("data/fashion-mnist-subset")
}

pub fn burnfit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_burnfit"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("the burnfit binary runs")
}

/// `burnfit train CONFIG --backend flex --run-dir RUN`.
pub fn train_flex(config: &Path, run: &Path) -> Output {
    burnfit(&[
        "train",
        config.to_str().unwrap(),
        "--backend",
        "flex",
        "--run-dir",
        run.to_str().unwrap(),
    ])
}

/// `burnfit train CONFIG --backend BACKEND --epochs EPOCHS --run-dir RUN`.
pub fn train_for(config: &str, backend: &str, epochs: usize, run: &Path) -> Output {
    let epochs = epochs.to_string();
    burnfit(&[
        "train",
        config,
        "--backend",
        backend,
        "--epochs",
        &epochs,
        "--run-dir",
        run.to_str().unwrap(),
    ])
}

pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts that `out` is bad input's answer: exit code 2 and, as all the
/// output, one `error:` line holding every one of `words`.
pub fn assert_one_error(out: &Output, words: &[&str]) {
    let printed = text(out);
    assert_eq!(out.status.code(), Some(2), "{printed}");
    let lines: Vec<&str> = printed.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, got:\n{printed}");
    assert!(lines[0].starts_with("error: "), "{printed}");
    for word in words {
        assert!(printed.contains(word), "expected `{word}` in:\n{printed}");
    }
}

/// Asserts that `validate` and `train` (into a fresh `--run-dir` beside
/// `config`) both refuse `config` with the `--set` arguments `sets`
/// ([`assert_one_error`] with `words`), and that no run directory appears.
pub fn assert_refused(config: &Path, sets: &[&str], words: &[&str]) {
    let mut args = vec!["validate", config.to_str().unwrap()];
    for set in sets {
        args.extend(["--set", set]);
    }
    assert_one_error(&burnfit(&args), words);
    let run = config.with_file_name("run");
    args[0] = "train";
    args.extend(["--backend", "flex", "--run-dir", run.to_str().unwrap()]);
    assert_one_error(&burnfit(&args), words);
    assert!(!run.exists(), "{} was created", run.display());
}

/// Asserts that stderr holds only burnfit's own `warning:` lines (no
/// driver or library noise such as `error: XDG_RUNTIME_DIR is invalid…`).
pub fn assert_only_our_warnings(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
    assert!(
        stderr
            .lines()
            .all(|l| l.starts_with("warning: ") || l.trim().is_empty()),
        "only our own warnings on stderr:\n{stderr}"
    );
}

/// A small MLP config on the committed subset, written to `DIR/NAME.toml`:
/// 500 images (400 to train, 100 to validate) in batches of 50, so 8
/// steps an epoch, on flex, without plots or progress bars. Each table
/// gets the test's own keys after these: `model` after `kind = "mlp"`,
/// `training` after the batch size and backend, `outputs` after plots and
/// progress; `rest` (an `[optimizer]`, `[[callbacks]]`) ends the file.
#[derive(Default)]
pub struct SubsetMlp<'a> {
    pub name: &'a str,
    pub model: &'a str,
    pub training: &'a str,
    pub outputs: &'a str,
    pub rest: &'a str,
}

impl SubsetMlp<'_> {
    /// Writes the config into `dir`; its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}.toml", self.name));
        let SubsetMlp {
            name,
            model,
            training,
            outputs,
            rest,
        } = self;
        std::fs::write(
            &path,
            format!(
                r#"name = "{name}"
[model]
kind = "mlp"
{model}

[data]
kind = "fashion_mnist"
dir = "{data}"
validation_split = 0.2
limit_train = 500
limit_test = 100

[training]
batch_size = 50
backend = "flex"
{training}

[outputs]
plots = false
progress = false
{outputs}

{rest}"#,
                data = subset().display()
            ),
        )
        .unwrap();
        path
    }
}

/// A small but real config: MLP on 600 subset images.
pub fn small_config(dir: &Path, model: &str, extra: &str) -> PathBuf {
    let path = dir.join("small.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "small"
[model]
{model}

[data]
kind = "fashion_mnist"
dir = "{data}"
validation_split = 0.2
limit_train = 600
limit_test = 200

[optimizer]
kind = "adam"
lr = 2e-3

[training]
epochs = 2
batch_size = 64
workers = 1

[[callbacks]]
type = "EarlyStopping"
monitor = "val_loss"
patience = 5

[[callbacks]]
type = "ReduceLROnPlateau"
monitor = "val_loss"
patience = 1
{extra}
"#,
            data = subset().display()
        ),
    )
    .unwrap();
    path
}

/// The Python with tensorboard that `make test` installs, or `None` (the
/// test then skips, unless `BURNFIT_REQUIRE_TB` says it must not).
pub fn tensorboard_python() -> Option<PathBuf> {
    let python = std::env::var("BURNFIT_TB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("target/tb-venv/bin/python"));
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var_os("BURNFIT_REQUIRE_TB").is_none(),
        "no Python with tensorboard at {} (make test creates it)",
        python.display()
    );
    eprintln!("skipped: no Python with tensorboard (make test creates target/tb-venv)");
    None
}

/// What the real TensorBoard reader finds under `dir`, as JSON.
pub fn tensorboard_dump(python: &Path, dir: &Path) -> serde_json::Value {
    let dump = Command::new(python)
        .arg(repo().join("crates/core/tests/fixtures/tb_dump.py"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(dump.status.success(), "tb_dump failed: {}", text(&dump));
    serde_json::from_slice(&dump.stdout).unwrap()
}

/// A burnpack file's bytes without what differs between two processes
/// saving the same weights: the parameters' random ids (`param_id`, a CBOR
/// u64) and the checksum trailer over them.
pub fn tensors_of(bpk: &[u8]) -> Vec<u8> {
    let mut bytes = bpk.to_vec();
    if let Some(at) = bytes.windows(8).rposition(|w| w == b"BFSUM001") {
        bytes.truncate(at);
    }
    let key = b"param_id";
    let mut i = 0;
    while let Some(found) = bytes[i..].windows(key.len()).position(|w| w == key) {
        let start = i + found + key.len();
        let end = (start + 9).min(bytes.len());
        bytes[start..end].fill(0);
        i = end;
    }
    bytes
}
