//! `burnfit average RUN --top-k N` on a real run: the checkpoints a
//! ModelCheckpoint with `save_top_k` kept are ranked from history.csv,
//! their weights averaged into `checkpoints/averaged.bpk`, and `eval
//! --checkpoint averaged` reads it back.

use crate::common::{burnfit, small_config, text, train_for};

/// `eval`'s figures (what follows "checkpoint):"), without the name.
fn figures(eval: &std::process::Output) -> String {
    let printed = text(eval);
    assert!(eval.status.success(), "{printed}");
    let line = printed
        .lines()
        .find(|l| l.starts_with("test ("))
        .unwrap_or_else(|| panic!("no test line in {printed}"));
    line.split_once("checkpoint):")
        .unwrap()
        .1
        .trim()
        .to_string()
}

#[test]
fn the_top_k_checkpoints_average_into_weights_that_eval_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(
        tmp.path(),
        "kind = \"mlp\"\nhidden = [16]",
        "[[callbacks]]\ntype = \"ModelCheckpoint\"\nfilepath = \"top/e{epoch:02d}.bpk\"\n\
         save_top_k = 2\nsave_weights_only = true\n",
    );
    let run = tmp.path().join("run");
    let out = train_for(config.to_str().unwrap(), "flex", 4, &run);
    assert!(out.status.success(), "{}", text(&out));
    let kept = std::fs::read_dir(run.join("top")).unwrap().count();
    assert_eq!(kept, 2, "save_top_k = 2 keeps two files");
    let run_arg = run.to_str().unwrap();

    // One checkpoint averages to itself: the best kept file.
    let out = burnfit(&["average", run_arg, "--top-k", "1"]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    let line = printed
        .lines()
        .find(|l| l.starts_with("averaged 1 checkpoint into"))
        .unwrap_or_else(|| panic!("no result line in {printed}"));
    let epoch: usize = line
        .split(": epoch ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no epoch in {printed}"));
    let best = run.join(format!("top/e{epoch:02}.bpk"));
    assert!(best.is_file(), "{printed}");
    let averaged = figures(&burnfit(&["eval", run_arg, "--checkpoint", "averaged"]));
    let itself = figures(&burnfit(&[
        "eval",
        run_arg,
        "--checkpoint",
        best.to_str().unwrap(),
    ]));
    assert_eq!(averaged, itself);
    let one = std::fs::read(run.join("checkpoints/averaged.bpk")).unwrap();

    // Two: new weights, which evaluate.
    let out = burnfit(&["average", run_arg, "--top-k", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("averaged 2 checkpoints"),
        "{}",
        text(&out)
    );
    let two = std::fs::read(run.join("checkpoints/averaged.bpk")).unwrap();
    assert_ne!(one, two);
    figures(&burnfit(&["eval", run_arg, "--checkpoint", "averaged"]));

    // More than were kept: one error line, exit code 2, the file untouched.
    let out = burnfit(&["average", run_arg, "--top-k", "3"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--top-k 3"), "{}", text(&out));
    assert_eq!(
        std::fs::read(run.join("checkpoints/averaged.bpk")).unwrap(),
        two
    );
}

#[test]
fn a_run_without_save_top_k_is_refused_with_what_to_add() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path(), "kind = \"mlp\"\nhidden = [16]", "");
    let run = tmp.path().join("run");
    let out = train_for(config.to_str().unwrap(), "flex", 1, &run);
    assert!(out.status.success(), "{}", text(&out));
    let out = burnfit(&["average", run.to_str().unwrap(), "--top-k", "2"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("save_top_k"), "{}", text(&out));
    assert!(!run.join("checkpoints/averaged.bpk").exists());
}
