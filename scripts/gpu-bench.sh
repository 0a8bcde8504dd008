#!/usr/bin/env bash
# GPU figures for docs/benchmarks.md ("GPU"), on a machine with a GPU and a
# Vulkan driver but no Rust toolchain: run it there with CLI binaries built
# here, carried as .gpu/*.xz. About 7.5 minutes on a lent H200 (2026-12-04:
# 321 s and 115 s for the two calls below).
#
#   FUSED    the default build (Burn's fusion and autotune on):
#            `make run` builds target/debug/burnfit.
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
#   (a lent machine may have NVIDIA's driver but no Vulkan loader: carry
#   libvulkan1 and unpack it first, as /work/.library/device/README.md says)
#
# The device tool's working tree is limited to 64 MiB: the fused binary
# (25 MB as xz) with full Fashion-MNIST (30 MB, FLAGSHIP_DATA) fills it, so
# take two calls, the second while the machine is still warm:
#   1. both binaries:        bash scripts/gpu-bench.sh .gpu/fused.xz .gpu/unfused.xz
#   2. the fused one, data:  STAGES=flagship FLAGSHIP_DATA=.gpu/fmnist \
#                              bash scripts/gpu-bench.sh .gpu/fused.xz
# STAGES picks the stages, in this order: bench64 flagship bench256
# devices (all by default).
#
# Writes to $OUT (default: the current directory): bench-BUILD-BATCH.txt for
# each build at batch 64 and 256 (the header names the Burn stack, fusion
# and autotune), flagship.txt when FLAGSHIP_DATA names the full
# Fashion-MNIST (the flagship's 10 epochs, timed; cut at FLAGSHIP_TIMEOUT
# seconds, 300 by default, so that the rest still runs; flagship-run.tgz
# holds its history.csv and summary.json), devices1.txt and
# devices2.txt (one and two workers on the GPU, the committed subset), and
# stages.txt (each stage's wall time). Most informative first, so that a
# run cut short by its time limit still brings back the batch-64 figures.
# FLEX=1 adds flex (the GPU machine's own CPU cores) beside the first
# build at batch 64; STEPS, REPEATS and MODELS shrink a smoke test.
#
# CUDA: BACKENDS=wgpu,cuda with binaries built with `--features cuda`
# (`burnfit bench` then times both, and its header names each stack). No
# such binary exists yet: cubecl-cuda compiles its kernels through LLVM,
# which its build downloads (tracel-llvm-bundler), and neither the
# development machine nor CI can (README, "Speed").
set -euo pipefail
out=${OUT:-.}
steps=${STEPS:-20}
repeats=${REPEATS:-3}
models=${MODELS:-mlp,simple_cnn,cnn}

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

# Runs "$@" as the stage named $1 (its output in $OUT/$1.txt) and records
# its wall time; a failed stage is reported and the next one still runs.
stage() {
  local name=$1 start=$SECONDS rc=0
  shift
  "$@" 2>&1 | tee "$out/$name.txt" || rc=$?
  echo "$name: $((SECONDS - start)) s, exit code $rc" | tee -a "$out/stages.txt"
}

bench() {
  local binary=$1 batch=$2 backends=$3
  "$binary" bench --backends "$backends" --models "$models" --memory-epochs 0 \
    --loader-batches 0 --steps "$steps" --repeats "$repeats" --batch "$batch"
}

fused=$(unpack "${1:?usage: gpu-bench.sh FUSED_BINARY[.xz] [UNFUSED_BINARY[.xz]]}" burnfit-fused)
builds=(fused:$fused)
if [[ -n ${2:-} ]]; then
  builds+=(unfused:$(unpack "$2" burnfit-unfused))
fi
# The lent H200 machines keep NVIDIA's Vulkan driver manifest outside the
# loader's search path (with the loader itself carried in as .gl/*.deb:
# /work/.library/device/README.md); point the loader at it.
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [[ -z ${VK_DRIVER_FILES:-} && -e $nvidia_icd ]] &&
  ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
  export VK_DRIVER_FILES=$nvidia_icd
fi
nvidia-smi -L || true

stages=" ${STAGES:-bench64 flagship bench256 devices} "
wanted() { [[ $stages == *" $1 "* ]]; }

# Batch 64 (the goals in issue 24), each build in turn.
gpu_backends=${BACKENDS:-wgpu}
first_backends=$gpu_backends${FLEX:+,flex}
for build in "${builds[@]}"; do
  wanted bench64 || break
  stage "bench-${build%%:*}-64" bench "${build#*:}" 64 "$first_backends"
  first_backends=$gpu_backends
done
# The flagship's 10 epochs on full Fashion-MNIST, when the data is here.
if wanted flagship && [[ -n ${FLAGSHIP_DATA:-} ]]; then
  stage flagship timeout "${FLAGSHIP_TIMEOUT:-300}" "$fused" train configs/fashion_mnist_cnn.toml \
    --backend wgpu --data "$FLAGSHIP_DATA" --run-dir /tmp/gpu-flagship
  tar czf "$out/flagship-run.tgz" -C /tmp/gpu-flagship history.csv summary.json || true
fi
# Batch 256, each build in turn.
for build in "${builds[@]}"; do
  wanted bench256 || break
  stage "bench-${build%%:*}-256" bench "${build#*:}" 256 "$gpu_backends"
done
# Two workers on the one GPU, then one, on the committed subset.
wanted devices || exit 0
stage devices2 "$fused" train configs/fashion_mnist_cnn.toml --backend wgpu \
  --data data/fashion-mnist-subset --epochs 2 --devices wgpu:0,wgpu:0 --run-dir /tmp/gpu-two
stage devices1 "$fused" train configs/fashion_mnist_cnn.toml --backend wgpu \
  --data data/fashion-mnist-subset --epochs 2 --run-dir /tmp/gpu-one
