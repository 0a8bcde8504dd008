# burnfit: the two set-up commands are `make run` and `make test`.
SHELL := /bin/bash
CONFIG ?= configs/fashion_mnist_cnn.toml
DATASET_DIR := /usr/share/datasets/fashion-mnist
APT_GET := $(shell command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo) apt-get

.PHONY: run test deps-run deps-test build-release lint check-cuda bench bench-peers

# Both set-up commands build from scratch on a fresh clone, where incremental
# compilation only writes caches no later build of theirs reads: 2.0 GB of the
# 8.7 GB a cold `make test` left in target/ (the CI run of 2026-12-06 ran out of
# disk). Off for every target here; set CARGO_INCREMENTAL=1 to keep it. Only our
# own crates are ever compiled incrementally, so Burn's build is the same either way.
export CARGO_INCREMENTAL ?= 0

## Train the flagship CNN on full Fashion-MNIST (installs the dataset if absent).
## The very build `make test` makes, in either order: the dev profile (what a training
## step runs through at opt-level 3, the other dependencies at 1: see Cargo.toml) with
## the workspace-hack's features, so
## Burn is compiled once for both commands; only the fault-injection hooks differ,
## which rebuilds our own crates, not Burn.
run: deps-run
	cargo build -p burnfit-cli -p burnfit-workspace-hack --features burnfit-cli/remote
	./target/debug/burnfit train $(CONFIG)

## Run every test (installs the lavapipe software GPU, Python tensorboard and an mlflow
## server if absent, while the tests compile; the wgpu and MLflow tests fail rather than
## skip without them),
## the custom_callback example for a few epochs (the binary `cargo test` built, rather
## than a `cargo run` that would compile the library again without the test hooks;
## examples/embed-flex runs in its own test), and the check that the library stays lean and publishable. The CLI's `remote`
## feature is on, so its multi-machine tests run (Burn is built once, with it: see
## crates/workspace-hack), and so is `fault-injection`: the crash tests' hooks, which
## a shipped binary does not have (their tests are ignored without it).
TEST_FEATURES := burnfit-cli/remote,burnfit-cli/fault-injection,own-model/fault-injection,own-model/remote
test:
	@mkdir -p target
	@bash scripts/install-test-deps.sh > target/install-test-deps.log 2>&1 & deps=$$!; \
	cargo test --workspace --no-run --features $(TEST_FEATURES); built=$$?; \
	wait $$deps; installed=$$?; cat target/install-test-deps.log; \
	[ $$built = 0 ] && [ $$installed = 0 ]
	BURNFIT_REQUIRE_WGPU=1 BURNFIT_REQUIRE_MLFLOW=1 cargo test --workspace --no-fail-fast --features $(TEST_FEATURES)
	"$${CARGO_TARGET_DIR:-target}/debug/examples/custom_callback" --epochs 2
	bash scripts/check-library.sh

deps-run:
	@if [ ! -e $(DATASET_DIR)/train-images-idx3-ubyte.gz ] && [ ! -e $(DATASET_DIR)/train-images-idx3-ubyte ]; then \
		echo "Installing Fashion-MNIST (Debian package dataset-fashion-mnist)"; \
		$(APT_GET) update && $(APT_GET) install -y dataset-fashion-mnist; \
	fi

deps-test:
	@bash scripts/install-test-deps.sh

lint:
	cargo fmt --all -- --check
	python3 scripts/check-module-cycles.py
	cargo clippy --workspace --all-targets --features $(TEST_FEATURES) -- -D warnings
	cargo clippy -p burnfit-cli --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p burnfit-core -p burnfit-callbacks \
		--features burnfit-core/testing,burnfit-core/trackers,burnfit-callbacks/testing,burnfit-callbacks/trackers
	$(MAKE) --no-print-directory check-cuda

## Type-check and lint the CLI with `--features cuda` (Burn's CUDA backend),
## which no build here can link: cubecl-cuda's build downloads LLVM
## (crates/cli/Cargo.toml). DOCS_RS makes the LLVM crates' build scripts skip
## their native set-up, as they do on docs.rs; clippy links nothing. Its own
## target directory, so the other builds' build-script outputs are untouched.
## Part of `make lint`.
check-cuda:
	DOCS_RS=1 cargo clippy -p burnfit-cli --features cuda --target-dir target/cuda-check -- -D warnings

bench:
	cargo run --release -p burnfit-cli -- bench

## The same networks in Keras/TensorFlow (tensorflow-cpu in target/peers-venv), timed in turn
## with burnfit's steps on this machine; prints the ratios and writes target/bench-peers.json.
## Dev profile, the very build `make test` makes (the workspace-hack's features; what a
## training step runs through at opt-level 3).
PEERS_PYTHON := target/peers-venv/bin/python
bench-peers:
	@[ -x $(PEERS_PYTHON) ] || { python3 -m venv target/peers-venv && \
		target/peers-venv/bin/pip install --quiet "tensorflow-cpu==2.21.*"; }
	cargo build -p burnfit-cli -p burnfit-workspace-hack --features burnfit-cli/remote
	./target/debug/burnfit bench --models mlp,simple_cnn,cnn-16-32,cnn \
		--backends flex --memory-epochs 0 --loader-batches 0 \
		--peers --peers-python $(PEERS_PYTHON) --json target/bench-peers.json
