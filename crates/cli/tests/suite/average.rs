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

/// A damaged kept checkpoint is reported as `eval` reports it (its
/// checksum), never averaged: one error line naming the file, exit code
/// 2, and `checkpoints/` as it was.
#[test]
fn a_damaged_checkpoint_is_refused_by_name_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(
        tmp.path(),
        "kind = \"mlp\"\nhidden = [16]",
        "[[callbacks]]\ntype = \"ModelCheckpoint\"\nfilepath = \"top/e{epoch:02d}.bpk\"\n\
         save_top_k = 2\nsave_weights_only = true\n",
    );
    let run = tmp.path().join("run");
    let out = train_for(config.to_str().unwrap(), "flex", 3, &run);
    assert!(out.status.success(), "{}", text(&out));
    let run_arg = run.to_str().unwrap();

    // The ranking, best first, from a first average (the user's file).
    let out = burnfit(&["average", run_arg, "--top-k", "2"]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    let line = printed
        .lines()
        .find(|l| l.starts_with("averaged 2 checkpoints into"))
        .unwrap_or_else(|| panic!("no result line in {printed}"));
    let ranked: Vec<_> = line
        .split("epoch ")
        .skip(1)
        .map(|rest| {
            let epoch: usize = rest.split_whitespace().next().unwrap().parse().unwrap();
            run.join(format!("top/e{epoch:02}.bpk"))
        })
        .collect();
    assert_eq!(ranked.len(), 2, "{printed}");
    let averaged = run.join("checkpoints/averaged.bpk");
    let users = std::fs::read(&averaged).unwrap();
    let listing = |dir: &std::path::Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let checkpoints = listing(&run.join("checkpoints"));
    let refused = |top_k: &str, damaged: &std::path::Path, why: &str| {
        let out = burnfit(&["average", run_arg, "--top-k", top_k]);
        let printed = text(&out);
        assert_eq!(out.status.code(), Some(2), "{printed}");
        let lines: Vec<&str> = printed.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line, got:\n{printed}");
        assert!(lines[0].starts_with("error: "), "{printed}");
        let name = damaged.strip_prefix(&run).unwrap().to_str().unwrap();
        assert!(lines[0].contains(name), "expected {name} in:\n{printed}");
        assert!(lines[0].contains(why), "expected `{why}` in:\n{printed}");
        assert!(!printed.contains("Metadata"), "{printed}");
        assert_eq!(std::fs::read(&averaged).unwrap(), users, "{printed}");
        assert_eq!(listing(&run.join("checkpoints")), checkpoints, "{printed}");
    };

    // The best kept file, damaged in its tensors, in its metadata (a tensor
    // name's CBOR header, which Burn's reader fails on) or cut short.
    let best = &ranked[0];
    let whole = std::fs::read(best).unwrap();
    let flipped = |at: usize| {
        let mut bytes = whole.clone();
        bytes[at] ^= 0x55;
        bytes
    };
    for (damaged, why) in [
        (flipped(whole.len() / 2), "checksum mismatch"),
        (flipped(20), "checksum mismatch"),
        (whole[..whole.len() / 2].to_vec(), "truncated"),
    ] {
        std::fs::write(best, &damaged).unwrap();
        refused("1", best, why);
        refused("2", best, why);
        assert_eq!(
            std::fs::read(best).unwrap(),
            damaged,
            "the file is left as it was"
        );
    }
    std::fs::write(best, &whole).unwrap();

    // The second: `--top-k 2` reads it and is refused; `--top-k 1` does not.
    let second = &ranked[1];
    let whole = std::fs::read(second).unwrap();
    let mut damaged = whole.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    std::fs::write(second, &damaged).unwrap();
    refused("2", second, "checksum mismatch");
    let out = burnfit(&["average", run_arg, "--top-k", "1"]);
    assert!(out.status.success(), "{}", text(&out));
}
