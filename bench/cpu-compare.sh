#!/usr/bin/env bash
# Same-run CPU comparison (issue 19, bench/results/engine-cpu.md and cpu-matmul.md): this tree
# ("new") against the tree at BASE ("old", built in OUT/base) and llama.cpp's llama-bench on
# the same GGUF files, THREADS threads, prompt 512 tokens (pp512) and decode 128 (tg128):
# the 125M synthetic Llama (write-bench-models) in Q4_K, Q4_0, Q8_0 and F16, and the demo pair
# (../shared/models). Each model runs ROUNDS rounds, each round new, old and llama.cpp in turn;
# the table keeps each one's best round (tandem bench: median of 3 runs; llama-bench: mean of
# 3 repetitions). Each round also runs engine-cpu-time (one thread timed by its CPU time:
# robust to other processes) built against both trees, and llama-bench with one thread whose
# CPU time per pp512 / tg128 is the difference of its total CPU time (rusage) with 4 and with 1
# repetitions. Then bench-cpu-matmul new and old, each with its peak loops, and new with
# --cpu-time.
#
# usage (repo root): bench/cpu-compare.sh OUT [BASE]   (BASE default: git merge-base HEAD main)
# Both trees are built CPU-only in OUT (new-build/, base/build/); ccache makes that quick.
# env: ROUNDS (3), THREADS (2), SHARED (../shared),
#      LLAMA_BENCH (/work/peers/llama.cpp/build/bin/llama-bench; the llama.cpp columns are
#      left out, with a note, when it is not there)
set -uo pipefail
out=${1:?usage: bench/cpu-compare.sh OUT [BASE]}
base=${2:-$(git merge-base HEAD main)}
rounds=${ROUNDS:-3}
threads=${THREADS:-2}
shared=$(realpath "${SHARED:-../shared}")
llama=${LLAMA_BENCH:-/work/peers/llama.cpp/build/bin/llama-bench}
mkdir -p "$out/models" "$out/runs"
out=$(realpath "$out")
build=$out/new-build
targets=(tandem bench-cpu-matmul)

# ---- builds: this tree, and BASE in its own directory --------------------------------------
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTANDEM_CUDA=OFF > "$out/build-new.log" 2>&1 &&
    cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" write-bench-models engine-cpu-time >> "$out/build-new.log" 2>&1 ||
    { tail -20 "$out/build-new.log"; exit 1; }
base_rev=$(git rev-parse "$base") || exit 1
if [[ $(cat "$out/base/.rev" 2>/dev/null) != "$base_rev" ]]; then  # else: built by an earlier run
    rm -rf "$out/base" && mkdir -p "$out/base"
    git archive "$base" | tar -x -C "$out/base" || exit 1
fi
(cd "$out/base" && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTANDEM_CUDA=OFF > "$out/build-old.log" 2>&1 &&
    cmake --build build -j "$(nproc)" --target "${targets[@]}" >> "$out/build-old.log" 2>&1) ||
    { tail -20 "$out/build-old.log"; exit 1; }
echo "$base_rev" > "$out/base/.rev"
new_bin=$build/examples/cli/tandem
old_bin=$out/base/build/examples/cli/tandem
# engine-cpu-time uses only the Model / InferenceContext API, which the base tree has too
g++ -O2 -std=c++17 -I"$out/base/client_engine/include" -I"$out/base/kernels/include" bench/engine-cpu-time.cpp \
    "$out/base/build/client_engine/libtandem_client_engine.a" "$out/base/build/kernels/libtandem_kernels.a" -lpthread \
    -o "$out/base/engine-cpu-time" || exit 1

# ---- models ---------------------------------------------------------------------------------
"$build/bench/write-bench-models" "$out/models" --shared "$shared" > /dev/null || exit 1
models=("$out"/models/synthetic-125m-{Q4_K,Q4_0,Q8_0,F16}.gguf
        "$shared/models/tandem-demo-client-q8_0.gguf" "$shared/models/tandem-demo-cloud-q8_0.gguf")
[[ -x $llama ]] || echo "note: no llama-bench at $llama: llama.cpp columns left out"
echo "base $(git rev-parse --short "$base"), new $(git rev-parse --short HEAD)$(git diff --quiet || echo ' + uncommitted changes'), $threads threads, $rounds rounds"
lscpu | grep -E "Model name|^CPU\(s\)|L3" 

# llama-bench, one thread: seconds of CPU time per pp512 and per tg128 from rusage of runs
# with 4 and 1 repetitions (model load and warm-up cancel out), as tokens/s.
llama_cpu_time() {
    python3 - "$llama" "$1" <<'PY'
import json, os, subprocess, sys
llama, model = sys.argv[1], sys.argv[2]
def cpu(args):
    p = subprocess.Popen([llama, "-m", model, "-t", "1"] + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, ru = os.wait4(p.pid, 0)
    return ru.ru_utime + ru.ru_stime
pp = (cpu(["-p", "512", "-n", "0", "-r", "4"]) - cpu(["-p", "512", "-n", "0", "-r", "1"])) / 3
tg = (cpu(["-p", "0", "-n", "128", "-r", "4"]) - cpu(["-p", "0", "-n", "128", "-r", "1"])) / 3
print(json.dumps({"model": model, "threads": 1, "prompt_tokens_per_s": 512 / pp, "decode_tokens_per_s": 128 / tg}))
PY
}

# ---- rounds ---------------------------------------------------------------------------------
for r in $(seq 1 "$rounds"); do
    for m in "${models[@]}"; do
        name=$(basename "$m" .gguf)
        "$new_bin" bench -m "$m" --threads "$threads" --runs 3 --json > "$out/runs/$name.new.$r.json" 2> /dev/null
        "$old_bin" bench -m "$m" --threads "$threads" --runs 3 --json > "$out/runs/$name.old.$r.json" 2> /dev/null
        [[ -x $llama ]] && "$llama" -m "$m" -t "$threads" -p 512 -n 128 -r 3 -o json > "$out/runs/$name.llama.$r.json" 2> /dev/null
        "$build/bench/engine-cpu-time" "$m" > "$out/runs/$name.new-cpu.$r.json" 2> /dev/null
        "$out/base/engine-cpu-time" "$m" > "$out/runs/$name.old-cpu.$r.json" 2> /dev/null
        [[ -x $llama ]] && llama_cpu_time "$m" > "$out/runs/$name.llama-cpu.$r.json" 2> /dev/null
        echo "round $r: $name done"
    done
done
"$build/bench/bench-cpu-matmul" --threads "$threads" > "$out/cpu-matmul-new.txt" 2>&1
"$out/base/build/bench/bench-cpu-matmul" --threads "$threads" > "$out/cpu-matmul-old.txt" 2>&1
"$build/bench/bench-cpu-matmul" --cpu-time --paths avx2,avx-vnni,avx512-vnni,amx > "$out/cpu-matmul-new-cputime.txt" 2>&1

# ---- the table ------------------------------------------------------------------------------
python3 - "$out" "$rounds" <<'PY'
import glob, json, os, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def load(path):
    try:
        return json.load(open(path))
    except Exception:
        return None
names = sorted({os.path.basename(p).split(".")[0] for p in glob.glob(out + "/runs/*.json")},
               key=lambda n: (not n.startswith("synthetic"), n))
print("| model | prompt tok/s new | old | new/old | llama.cpp | new/llama | % of peak new | decode tok/s new | old | new/old | llama.cpp | new/llama |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for n in names:
    best = {}
    for who in ("new", "old"):
        runs = [load("%s/runs/%s.%s.%d.json" % (out, n, who, r)) for r in range(1, rounds + 1)]
        runs = [j for j in runs if j]
        if runs:
            pp = max(runs, key=lambda j: j["prompt_tokens_per_s"])
            best[who] = (pp["prompt_tokens_per_s"], max(j["decode_tokens_per_s"] for j in runs),
                         100 * pp.get("prompt_matmul_gops", 0) / pp["peak_gops"] if pp.get("peak_gops") else 0)
    ll = [load("%s/runs/%s.llama.%d.json" % (out, n, r)) for r in range(1, rounds + 1)]
    ll = [j for j in ll if j]
    if ll:
        best["llama"] = (max(t["avg_ts"] for j in ll for t in j if t["n_prompt"] > 0),
                         max(t["avg_ts"] for j in ll for t in j if t["n_gen"] > 0), 0)
    def f(who, i):
        return "%.1f" % best[who][i] if who in best else "-"
    def ratio(a, b, i):
        return "%.2fx" % (best[a][i] / best[b][i]) if a in best and b in best and best[b][i] else "-"
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        n, f("new", 0), f("old", 0), ratio("new", "old", 0), f("llama", 0), ratio("new", "llama", 0),
        "%.0f%%" % best["new"][2] if "new" in best else "-",
        f("new", 1), f("old", 1), ratio("new", "old", 1), f("llama", 1), ratio("new", "llama", 1)))
print()
print("One thread, CPU time (engine-cpu-time; llama-bench by rusage), best round:")
print()
print("| model | prompt tok/s new | old | new/old | llama.cpp | new/llama | decode tok/s new | old | new/old | llama.cpp | new/llama |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for n in names:
    b = {}
    for who in ("new-cpu", "old-cpu", "llama-cpu"):
        runs = [load("%s/runs/%s.%s.%d.json" % (out, n, who, r)) for r in range(1, rounds + 1)]
        runs = [j for j in runs if j]
        if runs:
            b[who] = (max(j["prompt_tokens_per_s"] for j in runs), max(j["decode_tokens_per_s"] for j in runs))
    def g(who, i):
        return "%.1f" % b[who][i] if who in b else "-"
    def q(a, c, i):
        return "%.2fx" % (b[a][i] / b[c][i]) if a in b and c in b else "-"
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        n, g("new-cpu", 0), g("old-cpu", 0), q("new-cpu", "old-cpu", 0), g("llama-cpu", 0), q("new-cpu", "llama-cpu", 0),
        g("new-cpu", 1), g("old-cpu", 1), q("new-cpu", "old-cpu", 1), g("llama-cpu", 1), q("new-cpu", "llama-cpu", 1)))
PY
