#!/usr/bin/env bash
# The attention kernels alone on the device machine (what scripts/gpu-check does for them,
# minus the engine tests): build test-turbo-cuda and bench-attention for sm_90, run the GPU
# tests, the benchmark with its A/B variants, PyTorch SDPA at the same shapes, optionally
# compute-sanitizer (MEMCHECK=1), Nsight Compute on the default kernel at D=128, batch 32,
# 16k (when ncu is there), and the SASS instruction count per kernel. Writes to DIR.
# usage (repo root, device machine): bench/attention-gpu-run.sh DIR
set -uo pipefail
out=${1:?usage: bench/attention-gpu-run.sh DIR}
B=build-gpu
extra=()
[[ -d .device/doctest ]] && extra+=(-DDOCTEST_INCLUDE_DIR="$PWD/.device/doctest")
[[ -d .device/shared ]] && extra+=(-DTANDEM_SHARED_DIR="$PWD/.device/shared")
(cmake -S . -B $B -G Ninja -DTANDEM_CUDA=ON -DTANDEM_ENGINE_ONLY=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCMAKE_BUILD_TYPE=Release "${extra[@]}" && cmake --build $B -j"$(nproc)" --target test-turbo-cuda bench-attention) \
    > "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$B/tests/test-turbo-cuda > "$out/tests.log" 2>&1; echo "test-turbo-cuda rc $?"
grep -E "FAIL|ERROR|error:" "$out/tests.log" | head
grep "rel err" "$out/tests.log" | awk '{print "worst rel err (twin, f64):", $(NF-6), $(NF)}' | sort -g -k5 | tail -1
if [[ ${MEMCHECK:-0} == 1 ]]; then
    timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 $B/tests/test-turbo-cuda \
        --test-case='*turbo decode*' > "$out/memcheck.log" 2>&1; echo "memcheck rc $?"
fi
$B/bench/bench-attention $B/ours.json > "$out/bench.log" 2>&1; echo "bench-attention rc $?"
python3 bench/attention_sdpa.py $B/ours.json "$out/attention.json" "$out/attention.md" > "$out/sdpa.log" 2>&1
echo "attention_sdpa rc $?"
cp $B/ours.json "$out/"
python3 - "$out/attention.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for r in d["rows"]:
    v = r.get("variants", {})
    print("%3d %2d %5d t%.4f x%.2f|" % (r["D"], r["batch"], r["kv_len"], r["torch_best_ms"], r["torch_best_ms"] / r["turbo_ms"])
          + " ".join("%s %.4f" % (k, x) for k, x in v.items()))
PY
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)
if [[ -n "$ncu" ]]; then
    timeout 120 "$ncu" --kernel-name "${NCU_KERNEL:-regex:turbo_decode_kernel}" --launch-skip 2 --launch-count 1 --section SpeedOfLight \
        --section Occupancy --section WarpStateStats --section LaunchStats --section InstructionStats \
        $B/bench/bench-attention /tmp/one.json 128 32 16384 > "$out/ncu.txt" 2>&1
    grep -E "Duration|Memory Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Issued Ipc|No Eligible|Stall|stall" "$out/ncu.txt" | head -24
fi
obj=$(find $B -name 'turbo_decode.cu.o' | head -1)
co=$(command -v cuobjdump || echo /usr/local/cuda/bin/cuobjdump)
"$co" -sass "$obj" > "$out/sass.txt" 2>&1
awk '/Function :/{if(n)print n, c; n=$3; c=0} /^ +\/\*[0-9a-f]+\*\//{c++} END{print n, c}' "$out/sass.txt" |
    sed 's/_ZN6tandem.*turbo_decode_kernelIL/K</' | cut -c1-70
