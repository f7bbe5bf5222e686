#!/usr/bin/env bash
# Same-run A/B of kernel changes on the device machine: builds this tree ("new") and a copy of
# it whose kernels/cuda/ files are replaced by the ones in OLD_DIR ("old", e.g. a commit's
# versions from `git show REV:kernels/cuda/F > OLD_DIR/F`), runs test-turbo-cuda on new, then
# bench-attention new, old, new again and PyTorch SDPA at the same shapes, and prints one row
# per shape (Turbo and FP16 ms, the combine alone, torch flash/best). With E2E=1 also
# bench-gpu-decode new, old, new again (arguments in E2E_ARGS, default: --long-ctx 4096).
# The session-4 runs 20-24 (bench/results/attention-h100.md) used ad-hoc copies of these steps.
# usage (repo root, device machine; carry .device/doctest, .device/shared and OLD_DIR):
#   bench/ab-gpu.sh OUT OLD_DIR
set -uo pipefail
out=${1:?usage: bench/ab-gpu.sh OUT OLD_DIR}
old_files=${2:?usage: bench/ab-gpu.sh OUT OLD_DIR}
targets=(test-turbo-cuda bench-attention)
[[ ${E2E:-0} == 1 ]] && targets+=(bench-gpu-decode)
cfg=(-G Ninja -DTANDEM_CUDA=ON -DTANDEM_ENGINE_ONLY=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release)
[[ -d .device/doctest ]] && cfg+=(-DDOCTEST_INCLUDE_DIR="$PWD/.device/doctest")
[[ -d .device/shared ]] && cfg+=(-DTANDEM_SHARED_DIR="$PWD/.device/shared")
old=/tmp/ab-old
rm -rf "$old" && mkdir -p "$old"
tar --exclude=./build-gpu --exclude=./.git -cf - . | tar -C "$old" -xf -
cp "$old_files"/* "$old/kernels/cuda/"
(cd "$old" && cmake -S . -B b "${cfg[@]}" > /tmp/ab-old-build.log 2>&1 &&
    cmake --build b -j8 --target "${targets[@]:1}" >> /tmp/ab-old-build.log 2>&1) &
cmake -S . -B build-gpu "${cfg[@]}" > "$out/build.log" 2>&1 &&
    cmake --build build-gpu -j8 --target "${targets[@]}" >> "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
wait
[[ -x $old/b/bench/bench-attention ]] || { tail -30 /tmp/ab-old-build.log; exit 1; }
build-gpu/tests/test-turbo-cuda > "$out/tests.log" 2>&1; echo "test-turbo-cuda rc $?"
grep -E "FAIL|ERROR" "$out/tests.log" | head -5
build-gpu/bench/bench-attention "$out/new.json" > /dev/null 2>&1; echo "bench new rc $?"
"$old/b/bench/bench-attention" "$out/old.json" > /dev/null 2>&1; echo "bench old rc $?"
build-gpu/bench/bench-attention "$out/new2.json" > /dev/null 2>&1; echo "bench new again rc $?"
python3 bench/attention_sdpa.py "$out/new.json" "$out/attention.json" "$out/attention.md" > "$out/sdpa.log" 2>&1
echo "attention_sdpa rc $?"
python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
a = json.load(open(d + "/attention.json")); o = json.load(open(d + "/old.json")); n2 = json.load(open(d + "/new2.json"))
print("  D  B     L | turbo new   old  new2 | fp16 new   old | combine new  old | flash  best")
for x, y, z in zip(a["rows"], o["rows"], n2["rows"]):
    print("%3d %2d %5d | %.4f %.4f %.4f | %.4f %.4f | %.4f %.4f | %.4f %.4f" % (
        x["D"], x["batch"], x["kv_len"], x["turbo_ms"], y["turbo_ms"], z["turbo_ms"], x["fp16_ms"], y["fp16_ms"],
        x["variants"]["combine"], y["variants"]["combine"], x["torch_flash_ms"], x["torch_best_ms"]))
PY
if [[ ${E2E:-0} == 1 ]]; then
    read -r -a e2e_args <<< "${E2E_ARGS:---long-ctx 4096}"
    for t in new old new2; do
        bin=build-gpu/bench/bench-gpu-decode
        [[ $t == old ]] && bin=$old/b/bench/bench-gpu-decode
        "$bin" "${e2e_args[@]}" --json "$out/decode-$t.json" > "$out/decode-$t.log" 2>&1; echo "bench-gpu-decode $t rc $?"
    done
    python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
r = {t: json.load(open("%s/decode-%s.json" % (d, t))) for t in ("new", "old", "new2")}
for i, row in enumerate(r["new"]["rows"]):
    print("%s %s tok/s new %.1f old %.1f new again %.1f" % (row["model"], row["type"], row["tok_s"],
          r["old"]["rows"][i]["tok_s"], r["new2"]["rows"][i]["tok_s"]))
for i, row in enumerate(r["new"].get("long", [])):
    print("%s %s ctx %d tok/s new %.1f old %.1f new again %.1f" % (row["model"], row["kv"], row["ctx"], row["tok_s"],
          r["old"]["long"][i]["tok_s"], r["new2"]["long"][i]["tok_s"]))
PY
fi
