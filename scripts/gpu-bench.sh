#!/usr/bin/env bash
# GPU figures for docs/benchmarks.md ("GPU"), on a machine with a GPU and a
# Vulkan driver but no Rust toolchain: run it there with the CLI binary
# built here (`make test` builds target/debug/burnfit), e.g. carried as
# .gpu/burnfit.xz. Writes bench.txt, bench256.txt, devices1.txt and devices2.txt to $OUT
# (default: the current directory).
#
#   here:  strip -o /tmp/burnfit target/debug/burnfit && mkdir -p .gpu &&
#          xz -T2 -3 -c /tmp/burnfit > .gpu/burnfit.xz
#   there: bash scripts/gpu-bench.sh .gpu/burnfit.xz
set -euo pipefail
binary=${1:?usage: gpu-bench.sh BURNFIT_BINARY[.xz]}
out=${OUT:-.}
if [[ $binary == *.xz ]]; then
  python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open('/tmp/burnfit','wb'))" "$binary"
  chmod +x /tmp/burnfit
  binary=/tmp/burnfit
fi
nvidia-smi -L || true
# Batch 64 (the goals in issue 24) on the GPU and the CPU, then 256 on the GPU.
# The header says how the binary was built: this build has wgpu without
# Burn's fusion and autotune, and no CUDA backend (README, "Speed").
"$binary" bench --backends wgpu,flex --models mlp,simple_cnn,cnn --memory-epochs 0 \
  --loader-batches 0 --steps 20 --repeats 3 | tee "$out/bench.txt"
"$binary" bench --backends wgpu --models mlp,simple_cnn,cnn --memory-epochs 0 \
  --loader-batches 0 --steps 20 --repeats 3 --batch 256 | tee "$out/bench256.txt"
# Two workers on the one GPU, then one, on the committed subset.
"$binary" train configs/fashion_mnist_cnn.toml --backend wgpu --data data/fashion-mnist-subset \
  --epochs 2 --devices wgpu:0,wgpu:0 --run-dir /tmp/gpu-two | tee "$out/devices2.txt"
"$binary" train configs/fashion_mnist_cnn.toml --backend wgpu --data data/fashion-mnist-subset \
  --epochs 2 --run-dir /tmp/gpu-one | tee "$out/devices1.txt"
