#!/usr/bin/env bash
# The routing half of issue 8 (Hybrid LLM with the demo model pair), from the shared files to
# every routing number: builds hybrid-routing and tandem, collects the routing data (both
# models on 2019-2022 drafts), trains/calibrates/evaluates the det, prob and trans routers,
# and cross-checks the JSONL with the product CLI (`tandem router train/calibrate/eval`).
#
#   bench/hybrid_eval/routing.sh [--quick] [--build DIR] [OUT] [-- DATA_OPTIONS...]
#
# OUT: the results directory (default bench/results/hybrid; with --quick build/hybrid-routing-quick).
# --quick: 16/8/12 queries, 2 samples per model, 200 bootstrap resamples (about 1 minute on the
# shared 2-core VM).
# --build: the CMake build directory, relative to the repository root (default build).
# bench/hybrid-eval calls `routing.sh OUT` with TANDEM_EVAL_BUILD_DIR (the build directory) and
# TANDEM_EVAL_QUICK=1 for --quick.
# DATA_OPTIONS go to `hybrid-routing data` (e.g. --train 100 --samples 2).
# Writes OUT/routing-data/*.jsonl + routing-data.json, OUT/routing-tables.md,
# OUT/routing-report.json, OUT/routing-curve-<judge>.svg, OUT/routing-routers/,
# OUT/routing-cli/ and OUT/routing-run.log (machine, date, commit, commands, times).
set -euo pipefail
build=${TANDEM_EVAL_BUILD_DIR:-build} out="" quick=() extra=()
[ "${TANDEM_EVAL_QUICK:-0}" = 1 ] && quick=(--quick)
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=(--quick); shift ;;
    --build) build="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -*) echo "routing.sh: unknown option '$1'" >&2; exit 2 ;;
    *) out="$1"; shift ;;
  esac
done
# OUT is relative to the caller's directory; the build directory, like bench/hybrid-eval's, to
# the repository root.
if [ -n "$out" ]; then mkdir -p "$out" && out=$(cd "$out" && pwd); fi
cd "$(dirname "$0")/../.."
if [ -z "$out" ]; then
  if [ ${#quick[@]} -gt 0 ]; then out="$build/hybrid-routing-quick"; else out=bench/results/hybrid; fi
fi
mkdir -p "$out/routing-data" "$out/routing-cli"
log="$out/routing-run.log"
start=$(date +%s)
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$log"
run() { echo "+ $*" | tee -a "$log" >&2; "$@"; }

[ -f "$build/CMakeCache.txt" ] || run cmake -S . -B "$build" -G Ninja -DTANDEM_CUDA=OFF > /dev/null
run cmake --build "$build" --target hybrid-routing tandem -j2 > /dev/null
hr="$build/bench/hybrid_eval/hybrid-routing"
tandem="$build/examples/cli/tandem"

t0=$(date +%s)
run "$hr" data --out "$out/routing-data" "${quick[@]}" "${extra[@]}" | tail -1 >> "$log"
t1=$(date +%s)
resamples=2000
[ ${#quick[@]} -gt 0 ] && resamples=200
run "$hr" report --data "$out/routing-data" --out "$out" --resamples $resamples | tail -1 >> "$log"
t2=$(date +%s)

# The product CLI on the same files (logistic router, its default L2 1e-3, trans labels,
# threshold calibrated on 2021 for 60% cloud calls = 40% local).
d="$out/routing-data"
run "$tandem" router train --data "$d/routing-train.jsonl" --labels trans --out "$out/routing-cli/trans.json" | tail -1 >> "$log"
run "$tandem" router calibrate --router "$out/routing-cli/trans.json" --data "$d/routing-calib.jsonl" --cloud-fraction 0.6 | tail -1 >> "$log"
run "$tandem" router eval --router "$out/routing-cli/trans.json" --data "$d/routing-test.jsonl" --out "$out/routing-cli" | tail -1 >> "$log"
t3=$(date +%s)
{
  echo "seconds: data $((t1 - t0)), report $((t2 - t1)), cli cross-check $((t3 - t2)), total with build $((t3 - start))"
} >> "$log"
cat "$log"
