//! `burnfit batch-find CONFIG`: real probes of a CNN on the subset, under a
//! heap limit that makes the larger batches fail to allocate.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{subset, text};

fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("find.toml");
    std::fs::write(
        &path,
        format!(
            r#"[model]
kind = "cnn"
channels = [16, 32]
fc_size = 64

[data]
kind = "fashion_mnist"
dir = "{}"
validation_split = 0.2
limit_train = 600
limit_test = 100

[training]
batch_size = 16
workers = 1
"#,
            subset().display()
        ),
    )
    .unwrap();
    path
}

/// `burnfit batch-find CONFIG ARGS…` run in `dir`, its temporary files in
/// `dir/tmp`.
fn batch_find(dir: &Path, config: &Path, args: &[&str]) -> Output {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    Command::new(env!("CARGO_BIN_EXE_burnfit"))
        .arg("batch-find")
        .arg(config)
        .args(["--backend", "flex"])
        .args(args)
        .current_dir(dir)
        .env("TMPDIR", &tmp)
        .output()
        .unwrap()
}

/// The batch sizes the search printed as fitting and as not fitting.
fn tried(printed: &str) -> (Vec<usize>, Vec<usize>) {
    let (mut fits, mut too_big) = (Vec::new(), Vec::new());
    for line in printed.lines() {
        let Some(rest) = line.strip_prefix("batch ") else {
            continue;
        };
        let (batch, verdict) = rest.split_once(':').unwrap();
        let batch: usize = batch.parse().unwrap();
        if verdict.trim_start().starts_with("fits") {
            fits.push(batch);
        } else {
            assert!(verdict.contains("does not fit"), "{line}");
            too_big.push(batch);
        }
    }
    (fits, too_big)
}

fn largest(printed: &str) -> usize {
    printed
        .lines()
        .find_map(|l| l.strip_prefix("burnfit: the largest batch that fits is "))
        .and_then(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no result in {printed}"))
}

#[test]
fn a_heap_limit_makes_large_batches_fail_and_the_search_finds_the_edge() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path());
    let before = std::fs::read(&config).unwrap();
    let out = batch_find(
        tmp.path(),
        &config,
        &["--memory-limit-mib", "300", "--steps", "2"],
    );
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    let (fits, too_big) = tried(&printed);
    let best = largest(&printed);
    // The probes really ran out of memory: the edge lies below the cap (the
    // 480 training images).
    assert!(!too_big.is_empty() && best < 480, "{printed}");
    assert!(fits.contains(&best), "{printed}");
    assert!(
        too_big.contains(&(best + 1)),
        "the size above was tried: {printed}"
    );
    assert!(
        fits.iter().all(|f| too_big.iter().all(|t| f < t)),
        "{printed}"
    );
    // The suggested command keeps the flags the probes ran with.
    assert!(
        printed.contains(&format!("--backend flex --set training.batch_size={best}")),
        "{printed}"
    );
    // Nothing changed or left: the config, no run directory, no
    // temporary files (of the probes that aborted too).
    assert_eq!(std::fs::read(&config).unwrap(), before);
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "only the config and tmp/: {left:?}");
    assert_eq!(
        std::fs::read_dir(tmp.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn without_a_limit_the_search_stops_at_max_batch_and_bad_flags_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path());
    let out = batch_find(tmp.path(), &config, &["--max-batch", "40", "--steps", "1"]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert_eq!(largest(&printed), 40, "{printed}");
    assert_eq!(tried(&printed), (vec![16, 32, 40], vec![]), "{printed}");
    assert!(printed.contains("(--max-batch)"), "{printed}");

    for bad in [
        &["--steps", "0"][..],
        &["--max-batch", "0"],
        &["--memory-limit-mib", "0"],
        &["--epochs", "2"],
    ] {
        let out = batch_find(tmp.path(), &config, bad);
        let printed = text(&out);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {printed}");
        assert_eq!(
            printed.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{printed}"
        );
    }
}
