#!/usr/bin/env bash
# Step times of two burnfit binaries side by side: ROUNDS rounds, each
# running `burnfit bench` (plain Burn rows, flex) with the first binary and
# then the second, so drift in the machine's speed hits both alike. Prints
# the median step time of each binary per network, the ratio of the
# medians, and the range of the ratios taken within each round.
# VARIANT=full compares the rows of `burnfit train`'s step (the full
# callback set, fused Adam) instead of plain Burn's.
#
#   scripts/compare-builds.sh OLD_BINARY NEW_BINARY [ROUNDS] [MODELS]
set -euo pipefail
old=$1 new=$2 rounds=${3:-3} models=${4:-mlp,simple_cnn,cnn}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for round in $(seq "$rounds"); do
    for which in old new; do
        bin=${!which}
        "$bin" bench --models "$models" --backends flex --steps 20 --repeats 1 \
            --memory-epochs 0 --loader-batches 0 --json "$tmp/$which-$round.json" >/dev/null 2>&1
    done
done
python3 - "$tmp" "$rounds" "${VARIANT:-plain}" <<'PY'
import json, statistics, sys
tmp, rounds, variant = sys.argv[1], int(sys.argv[2]), sys.argv[3]
times = {}
for which in ("old", "new"):
    for r in range(1, rounds + 1):
        for rec in json.load(open(f"{tmp}/{which}-{r}.json")):
            if rec["variant"] == variant:
                times.setdefault(rec["model"], {}).setdefault(which, []).append(rec["step_ms"])
print("| network | old (ms/step) | new (ms/step) | old / new | per round |")
print("| --- | ---: | ---: | ---: | ---: |")
for model, t in times.items():
    old, new = statistics.median(t["old"]), statistics.median(t["new"])
    rounds = [o / n for o, n in zip(t["old"], t["new"])]
    print(f"| {model} | {old:.1f} | {new:.1f} | {old / new:.2f}x "
          f"| {min(rounds):.2f}-{max(rounds):.2f}x |")
PY
