#!/usr/bin/env bash
# GPU figures for docs/benchmarks.md ("GPU"), on a machine with a GPU and a
# Vulkan driver but no Rust toolchain: run it there with CLI binaries built
# here, carried as .gpu/*.xz. Within 8 minutes on an H200-class machine.
#
#   FUSED    the default build (Burn's fusion and autotune on):
#            `make test` builds target/debug/burnfit.
#   UNFUSED  optional, the same CLI without them, for the side-by-side:
#            cargo build -p burnfit-cli --no-default-features
#              --target-dir target/unfused
#            (Burn's fusion is a compile-time choice, so this builds Burn a
#            second time, ≈ 25 min here).
#
#   here:  for b in fused:target/debug/burnfit unfused:target/unfused/debug/burnfit; do
#            strip -o /tmp/${b%%:*} ${b#*:} && mkdir -p .gpu &&
#            xz -T2 -3 -c /tmp/${b%%:*} > .gpu/${b%%:*}.xz; done
#   there: bash scripts/gpu-bench.sh .gpu/fused.xz .gpu/unfused.xz
#
# Writes to $OUT (default: the current directory): bench-BUILD-BATCH.txt for
# each build at batch 64 and 256 (the header names the Burn stack, fusion
# and autotune), devices1.txt and devices2.txt (one and two workers on the
# GPU, the committed subset), and flagship.txt when FLAGSHIP_DATA names the
# full Fashion-MNIST (the flagship's 10 epochs, timed).
#
# No CUDA run: the binary has no CUDA backend. Burn's burn-cuda (CubeCL
# 0.11) compiles its kernels through LLVM, which its build downloads
# (tracel-llvm-bundler); neither this machine nor CI can download it
# (README, "Speed").
set -euo pipefail
out=${OUT:-.}

# The binary at $1, unpacked to /tmp/$2 when it is xz-compressed.
unpack() {
  local binary=$1 name=$2
  if [[ $binary == *.xz ]]; then
    python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
      "$binary" "/tmp/$name"
    chmod +x "/tmp/$name"
    binary=/tmp/$name
  fi
  echo "$binary"
}

fused=$(unpack "${1:?usage: gpu-bench.sh FUSED_BINARY[.xz] [UNFUSED_BINARY[.xz]]}" burnfit-fused)
builds=(fused:$fused)
if [[ -n ${2:-} ]]; then
  builds+=(unfused:$(unpack "$2" burnfit-unfused))
fi
nvidia-smi -L || true

# Batch 64 (the goals in issue 24) and 256, each build in turn; flex beside
# the first for the CPU of the same machine.
for batch in 64 256; do
  backends=wgpu,flex
  for build in "${builds[@]}"; do
    "${build#*:}" bench --backends $backends --models mlp,simple_cnn,cnn --memory-epochs 0 \
      --loader-batches 0 --steps 20 --repeats 3 --batch $batch | tee "$out/bench-${build%%:*}-$batch.txt"
    backends=wgpu
  done
done
# Two workers on the one GPU, then one, on the committed subset.
"$fused" train configs/fashion_mnist_cnn.toml --backend wgpu --data data/fashion-mnist-subset \
  --epochs 2 --devices wgpu:0,wgpu:0 --run-dir /tmp/gpu-two | tee "$out/devices2.txt"
"$fused" train configs/fashion_mnist_cnn.toml --backend wgpu --data data/fashion-mnist-subset \
  --epochs 2 --run-dir /tmp/gpu-one | tee "$out/devices1.txt"
# The flagship's 10 epochs on full Fashion-MNIST, when the data is here.
if [[ -n ${FLAGSHIP_DATA:-} ]]; then
  "$fused" train configs/fashion_mnist_cnn.toml --backend wgpu --data "$FLAGSHIP_DATA" \
    --run-dir /tmp/gpu-flagship | tee "$out/flagship.txt"
fi
