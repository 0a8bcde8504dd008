#!/usr/bin/env bash
# The library stays lean and publishable:
# - burnfit-callbacks' normal dependency tree holds no backend, TUI,
#   system-metrics, plotting or HTTP crate (they are the application's choice,
#   and the trackers are behind the feature `trackers`);
# - the core, callbacks and models crates package (no dependency on the
#   unpublished workspace-hack), and each compiles from its package as a
#   user's build compiles it: with exactly the features it declares, outside
#   the workspace-hack's unification (cargo package verifies them in
#   target/package, a target directory of its own).
set -euo pipefail
cd "$(dirname "$0")/.."

heavy=$(cargo tree -p burnfit-callbacks -e normal --prefix none \
  | grep -E '^(wgpu|burn-wgpu|burn-ndarray|ratatui|sysinfo|plotters|ureq|rustls) v' | sort -u || true)
if [ -n "$heavy" ]; then
  echo "error: burnfit-callbacks depends on: $heavy" >&2
  exit 1
fi
crates=$(cargo tree -p burnfit-callbacks -e normal --prefix none | sed 's/ (\*)//; s/ (proc-macro)//' | sort -u | wc -l)
# cargo verifies each package against the others through a temporary local
# registry. It keys what it unpacked ($CARGO_HOME/registry/src/-<hash>/) and
# what it built (target/debug/.fingerprint) by name and version only, as
# registry crates never change: an earlier run's burnfit-core 0.1.0 would be
# reused, stale. Remove ours first (a fresh clone has none; here our crates
# are compiled again, Burn is not).
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/burnfit-*
rm -rf target/debug/.fingerprint/burnfit-core-* target/debug/.fingerprint/burnfit-callbacks-* \
  target/debug/.fingerprint/burnfit-models-*
# The packages are compiled to be checked, never run: without optimisation
# or debug info (measured cold on 2 cores: 4 min 20 s rather than 7 min
# 17 s). Config-file profile settings apply to cargo's verification builds
# too; the workspace's named package overrides are lowered one by one.
no_opt=(--config 'profile.dev.opt-level=0' --config 'profile.dev.debug=false'
  --config 'profile.dev.package."*".opt-level=0')
for package in $(grep -oP '^\[profile\.dev\.package\.\K[\w-]+(?=\])' Cargo.toml); do
  no_opt+=(--config "profile.dev.package.$package.opt-level=0")
done
cargo "${no_opt[@]}" package --quiet --allow-dirty -p burnfit-core -p burnfit-callbacks -p burnfit-models
echo "library check: burnfit-callbacks has $crates crates, none of wgpu, burn-ndarray, ratatui, sysinfo, plotters, ureq, rustls; burnfit-core, burnfit-callbacks and burnfit-models package; each builds from its package with its own features"
