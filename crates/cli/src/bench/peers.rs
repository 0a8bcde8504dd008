//! `burnfit bench --peers`: the same networks in Keras/TensorFlow, timed in
//! turn with burnfit's steps on the same machine, and the JSON records.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde::Serialize;

use super::{BenchArgs, Variant, low_high, step_ms};
use crate::backend;
use crate::config::BackendChoice;
use crate::error::{CliError, CliResult};

/// One measured figure, as `--json` writes it.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    /// The network (`simple_cnn`, `cnn-16-32`, …).
    pub model: String,
    /// The backend (`flex`, …; `tensorflow-cpu` for Keras).
    pub backend: String,
    /// `burnfit` or `keras`.
    pub framework: &'static str,
    /// `plain` (no callbacks), `none`, `noop5`, `full` (the default set).
    pub variant: &'static str,
    /// Milliseconds per training step (batch 64).
    pub step_ms: f64,
}

impl Record {
    /// A burnfit figure.
    pub fn burnfit(model: &str, backend: &str, variant: &'static str, step_ms: f64) -> Self {
        Self {
            model: model.to_string(),
            backend: backend.to_string(),
            framework: "burnfit",
            variant,
            step_ms,
        }
    }
}

/// Writes the records as a JSON list.
pub fn write_json(path: &Path, records: &[Record]) -> CliResult<()> {
    let text = serde_json::to_string_pretty(records).expect("records serialise");
    burnfit_callbacks::atomic::write_atomic(path, text.as_bytes())?;
    println!(
        "\n# {} records written to {}",
        records.len(),
        path.display()
    );
    Ok(())
}

/// Checks, before anything is measured, that `--json PATH` can be written
/// and would replace nothing but an earlier `--json` output (a JSON list
/// of records): a file the user has otherwise is never overwritten.
pub fn check_json_target(path: &Path) -> CliResult<()> {
    let refuse = |why: String| CliError::usage(format!("--json {}: {why}", path.display()));
    if path.is_dir() {
        return Err(refuse("is a directory; give a file name in it".into()));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(refuse(format!(
            "the directory {} does not exist; create it or give another path",
            parent.display()
        )));
    }
    if !path.exists() {
        return Ok(());
    }
    let earlier = std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Vec<serde_json::Value>>(&bytes).ok())
        .is_some_and(|records| records.iter().all(|r| r.get("step_ms").is_some()));
    if earlier {
        return Ok(());
    }
    Err(refuse(
        "the file exists and is not an earlier `burnfit bench --json` output, which is all \
         bench replaces; give a new file name"
            .into(),
    ))
}

/// Checks that `python` exists before anything is measured.
pub fn check_python(python: &Path) -> CliResult<()> {
    if python.exists() {
        Ok(())
    } else {
        Err(missing_python(python))
    }
}

fn missing_python(python: &Path) -> CliError {
    CliError::usage(format!(
        "--peers: {} cannot run Keras (run `make bench-peers`, which installs tensorflow-cpu \
         in target/peers-venv, or pass --peers-python)",
        python.display()
    ))
}

/// The Keras side: `scripts/keras_peer.py`, started once, one request per
/// measurement.
struct Keras {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    /// What the script says of itself (versions).
    about: String,
}

impl Keras {
    fn start(python: &Path) -> CliResult<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/keras_peer.py");
        let missing = || missing_python(python);
        check_python(python)?;
        let mut child = Command::new(python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|_| missing())?;
        let input = child.stdin.take().expect("piped");
        let mut output = BufReader::new(child.stdout.take().expect("piped"));
        let mut about = String::new();
        output.read_line(&mut about).map_err(|_| missing())?;
        if about.trim().is_empty() {
            return Err(missing());
        }
        Ok(Self {
            child,
            input,
            output,
            about: about.trim().to_string(),
        })
    }

    fn step_ms(&mut self, model: &str, steps: usize) -> CliResult<f64> {
        let failed = |what: String| CliError::failed(format!("--peers: Keras {model}: {what}"));
        writeln!(self.input, "{model} {steps}").map_err(|e| failed(e.to_string()))?;
        self.input.flush().map_err(|e| failed(e.to_string()))?;
        let mut line = String::new();
        self.output
            .read_line(&mut line)
            .map_err(|e| failed(e.to_string()))?;
        let answer: serde_json::Value =
            serde_json::from_str(&line).map_err(|_| failed(format!("no answer ({line:?})")))?;
        answer["step_ms"]
            .as_f64()
            .ok_or_else(|| failed(format!("no step time in {line}")))
    }
}

impl Drop for Keras {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Times every `--models` network in Keras and in burnfit (flex, without
/// and with the default callback set), one after the other within each
/// round so that drift in the machine's speed hits both alike; prints, for
/// each network, the range of each step time over the rounds and the range
/// of each round's own ratio (never the best round alone), and records every
/// round.
pub fn compare(
    args: &BenchArgs,
    steps: usize,
    dir: &Path,
    records: &mut Vec<Record>,
) -> CliResult<()> {
    let mut keras = Keras::start(&args.peers_python)?;
    let flex = backend::choose(BackendChoice::Flex, true)?;
    let repeats = args.repeats;
    println!(
        "\n## against Keras/TensorFlow on this machine: batch 64, Adam, {steps} steps, \
         {repeats} interleaved rounds (ranges over the rounds; a ratio is taken within \
         each round)\n# keras side: {}\n# burnfit's train's step is timed to its last step's end, \
         as Keras's fit validates nothing and writes no file; plain Burn is timed whole",
        keras.about
    );
    let mut times: Vec<[Vec<f64>; 3]> = vec![Default::default(); args.models.len()];
    for _ in 0..repeats {
        for (model, slot) in args.models.iter().zip(times.iter_mut()) {
            slot[0].push(keras.step_ms(model, steps)?);
            slot[1].push(step_ms(model, &flex, Variant::PlainBurn, steps, dir)?);
            slot[2].push(step_ms(model, &flex, Variant::FullSet, steps, dir)?);
        }
    }
    println!(
        "| network | Keras (ms/step) | burnfit, plain Burn (ms/step) | burnfit train's step: full callback set, fused Adam (ms/step) | plain / Keras | full / Keras |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (model, [k, plain, full]) in args.models.iter().zip(times) {
        let ratios =
            |ours: &[f64]| -> Vec<f64> { ours.iter().zip(&k).map(|(o, k)| o / k).collect() };
        println!(
            "| {model} | {} | {} | {} | {}× | {}× |",
            range(&k, 1),
            range(&plain, 1),
            range(&full, 1),
            range(&ratios(&plain), 2),
            range(&ratios(&full), 2),
        );
        for ((k, plain), full) in k.iter().zip(&plain).zip(&full) {
            records.push(Record {
                model: model.clone(),
                backend: "tensorflow-cpu".into(),
                framework: "keras",
                variant: "plain",
                step_ms: *k,
            });
            records.push(Record::burnfit(model, "flex", "plain", *plain));
            records.push(Record::burnfit(model, "flex", "full", *full));
        }
    }
    Ok(())
}

/// `low–high` over the rounds (one value when there was one round).
fn range(values: &[f64], decimals: usize) -> String {
    let (low, high) = low_high(values);
    if values.len() < 2 || format!("{low:.decimals$}") == format!("{high:.decimals$}") {
        format!("{low:.decimals$}")
    } else {
        format!("{low:.decimals$}–{high:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn a_range_spans_the_lowest_and_highest_round() {
        assert_eq!(range(&[1.5, 0.91, 1.234], 2), "0.91–1.50");
        assert_eq!(range(&[2.0], 1), "2.0");
        assert_eq!(range(&[2.01, 2.04], 1), "2.0");
    }
}
