#!/usr/bin/env bash
# A/B of programmatic dependent launch (TANDEM_CUDA_PDL) on the device machine: builds the
# engine and the benchmarks a second time with -DTANDEM_CUDA_PDL=OFF and runs
# bench-gpu-decode and bench-attention from that build; scripts/gpu-check (run just before,
# in the same command, on the same machine) gives the PDL=ON numbers.
# usage (repo root, device machine): bench/gpu-decode-pdl.sh DIR [bench-gpu-decode args...]
set -uo pipefail
out=${1:?usage: bench/gpu-decode-pdl.sh DIR}
shift
B=build-gpu-nopdl
extra=()
[[ -d .device/doctest ]] && extra+=(-DDOCTEST_INCLUDE_DIR="$PWD/.device/doctest")
[[ -d .device/shared ]] && extra+=(-DTANDEM_SHARED_DIR="$PWD/.device/shared")
(cmake -S . -B $B -G Ninja -DTANDEM_CUDA=ON -DTANDEM_ENGINE_ONLY=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCMAKE_BUILD_TYPE=Release -DTANDEM_CUDA_PDL=OFF "${extra[@]}" &&
    cmake --build $B -j"$(nproc)" --target bench-gpu-decode bench-attention) > "$out/nopdl-build.log" 2>&1 ||
    { tail -30 "$out/nopdl-build.log"; exit 1; }
$B/bench/bench-gpu-decode --json "$out/nopdl-gpu-decode.json" "$@" > "$out/nopdl-bench.log" 2>&1
echo "nopdl bench-gpu-decode rc $?"
$B/bench/bench-attention "$out/nopdl-attention.json" >> "$out/nopdl-bench.log" 2>&1
echo "nopdl bench-attention rc $?"
