//! The example project trains with callbacks: its CSV log has one row per
//! epoch it ran, and the run ends by the callbacks' rules or after the
//! epochs asked for.

use std::process::Command;

#[test]
fn trains_a_small_model_with_callbacks_on_flex() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_embed-flex"))
        .args(["--epochs", "4", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "{printed}");
    let history = std::fs::read_to_string(out.path().join("history.csv")).unwrap();
    let rows: Vec<&str> = history.lines().collect();
    assert!(rows[0].starts_with("epoch,"), "{history}");
    assert!(
        (2..=5).contains(&rows.len()),
        "header + 1..4 epochs: {history}"
    );
    assert!(printed.contains("epochs, stop:"), "{printed}");
    // `.progress()`: Keras's epoch lines, and none of Burn's fallback
    // renderer's Debug output (this project has no `tui` feature).
    let stdout = String::from_utf8_lossy(&run.stdout);
    let epoch_lines = stdout.lines().filter(|l| l.starts_with("Epoch ")).count();
    assert_eq!(epoch_lines, rows.len() - 1, "{stdout}");
    assert!(!stdout.contains("ProgressSnapshot"), "{stdout}");
    assert!(
        stdout.lines().count() <= epoch_lines + 4,
        "nothing else on stdout: {stdout}"
    );
}
