#!/usr/bin/env bash
# Same-run CPU comparison (issue 19, bench/results/cpu-prompt.md): this tree ("new") against
# the tree at BASE ("base", built in OUT/base) and llama.cpp's llama-bench on the same GGUF
# files, prompt 512 tokens (pp512) and decode 128 (tg128): the 125M synthetic Llama
# (write-bench-models) in Q4_K, Q4_0, Q8_0 and F16, and the demo pair (../shared/models).
# Each model runs ROUNDS rounds, each round new, base and llama.cpp in turn; the tables keep
# each one's best round.
#
# The main table: ONE thread timed by its CPU time (robust to other processes on the machine):
# engine-cpu-time built against both trees (best of 3 runs) on each kernel path of PATHS that
# the tree and the CPU have (--kernels; the base is compared on the same path, or on its
# automatic choice where it has no such path), `tandem bench --cpu-time --kernels PATH` for the
# prompt's weight-matmul GOP/s against the int8 (fp32 for F16) peak measured in that same run,
# and llama-bench with one thread whose CPU time per pp512 / tg128 is the difference of its
# total CPU time (rusage) with 4 and with 1 repetitions.
# The second table: THREADS threads by the wall clock (tandem bench: median of 3 runs;
# llama-bench: mean of 3 repetitions), each tree on its automatic path: only meaningful on an
# otherwise idle machine. Then bench-cpu-matmul new and base with THREADS threads, and new with
# --cpu-time on PATHS (each with its peak loops).
#
# usage (repo root): bench/cpu-compare.sh OUT [BASE]   (BASE default: git merge-base HEAD main)
# Both trees are built CPU-only in OUT (new-build/, base/build/); ccache makes that quick.
# env: ROUNDS (3), THREADS (2), SHARED (../shared), PATHS ("avx2 avx-vnni avx512-vnni amx"),
#      LLAMA_BENCH (/work/peers/llama.cpp/build/bin/llama-bench; the llama.cpp columns are
#      left out, with a note, when it is not there)
set -uo pipefail
out=${1:?usage: bench/cpu-compare.sh OUT [BASE]}
base=${2:-$(git merge-base HEAD main)}
rounds=${ROUNDS:-3}
threads=${THREADS:-2}
read -r -a paths <<< "${PATHS:-avx2 avx-vnni avx512-vnni amx}"
shared=$(realpath "${SHARED:-../shared}")
llama=${LLAMA_BENCH:-/work/peers/llama.cpp/build/bin/llama-bench}
mkdir -p "$out/models" "$out/runs"
out=$(realpath "$out")
build=$out/new-build
targets=(tandem bench-cpu-matmul)

# ---- the tables (TABLE_ONLY=1: only these, from an earlier run's OUT/runs) -------------------
print_tables() {
python3 - "$out" "$rounds" "$threads" "${paths[@]}" <<'PY'
import glob, json, os, sys
out, rounds, threads, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
def load(path):
    try:
        return json.load(open(path))
    except Exception:
        return None
def runs(n, who):
    return [j for j in (load("%s/runs/%s.%s.%d.json" % (out, n, who, r)) for r in range(1, rounds + 1)) if j]
def best(js, key):
    return max(j[key] for j in js) if js else None
def f(v):
    return "%.1f" % v if v else "-"
def ratio(a, b):
    return "%.2fx" % (a / b) if a and b else "-"
names = sorted({os.path.basename(p).split(".")[0] for p in glob.glob(out + "/runs/*.json")},
               key=lambda n: (not n.startswith("synthetic"), n))

print("One thread, CPU time (engine-cpu-time, best of 3 runs; llama-bench by rusage; % of peak: tandem bench")
print("--cpu-time, the prompt's weight matmuls against the int8 (F16: fp32 fma) peak measured in that run), best round:")
print()
print("| model | path | prompt tok/s | % of peak | base | new/base | llama.cpp | new/llama | decode tok/s | base | new/base | llama.cpp | new/llama |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for n in names:
    ll = runs(n, "llama-cpu")
    ll_pp, ll_tg = best(ll, "prompt_tokens_per_s"), best(ll, "decode_tokens_per_s")
    auto = runs(n, "old-cpu.auto")
    for p in paths:
        new = runs(n, "new-cpu." + p)
        if not new:
            continue
        old, mark = runs(n, "old-cpu." + p), ""
        if not old:
            old, mark = auto, " (auto: %s)" % (auto[0].get("kernel_path", "?") if auto else "-")
        bench = runs(n, "new-bench." + p)
        peak = "-"
        if bench:
            top = max(bench, key=lambda j: j["prompt_tokens_per_s"])
            if top.get("peak_gops"):
                peak = "%.0f%% of %.0f" % (100 * top["prompt_matmul_gops"] / top["peak_gops"], top["peak_gops"])
        pp, tg = best(new, "prompt_tokens_per_s"), best(new, "decode_tokens_per_s")
        opp, otg = best(old, "prompt_tokens_per_s"), best(old, "decode_tokens_per_s")
        print("| %s | %s | %s | %s | %s%s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            n, p, f(pp), peak, f(opp), mark, ratio(pp, opp), f(ll_pp), ratio(pp, ll_pp),
            f(tg), f(otg), ratio(tg, otg), f(ll_tg), ratio(tg, ll_tg)))
print()
print("%s threads, wall clock, each tree on its automatic path (tandem bench: median of 3 runs; llama-bench:" % threads)
print("mean of 3 repetitions), best round:")
print()
print("| model | prompt tok/s new | base | new/base | llama.cpp | new/llama | decode tok/s new | base | new/base | llama.cpp | new/llama |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for n in names:
    new, old = runs(n, "new"), runs(n, "old")
    ll = runs(n, "llama")
    ll_pp = max((t["avg_ts"] for j in ll for t in j if t["n_prompt"] > 0), default=None)
    ll_tg = max((t["avg_ts"] for j in ll for t in j if t["n_gen"] > 0), default=None)
    pp, tg = best(new, "prompt_tokens_per_s"), best(new, "decode_tokens_per_s")
    opp, otg = best(old, "prompt_tokens_per_s"), best(old, "decode_tokens_per_s")
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        n, f(pp), f(opp), ratio(pp, opp), f(ll_pp), ratio(pp, ll_pp), f(tg), f(otg), ratio(tg, otg), f(ll_tg), ratio(tg, ll_tg)))
PY
}
if [[ -n ${TABLE_ONLY:-} ]]; then print_tables; exit; fi

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
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$rounds"); do
    for m in "${models[@]}"; do
        name=$(basename "$m" .gguf)
        for p in "${paths[@]}"; do
            "$build/bench/engine-cpu-time" "$m" --kernels "$p" > "$out/runs/$name.new-cpu.$p.$r.json" 2> /dev/null
            "$new_bin" bench -m "$m" --cpu-time --kernels "$p" --runs 3 --json > "$out/runs/$name.new-bench.$p.$r.json" 2> /dev/null
            "$out/base/engine-cpu-time" "$m" --kernels "$p" > "$out/runs/$name.old-cpu.$p.$r.json" 2> /dev/null
        done
        "$out/base/engine-cpu-time" "$m" > "$out/runs/$name.old-cpu.auto.$r.json" 2> /dev/null
        [[ -x $llama ]] && llama_cpu_time "$m" > "$out/runs/$name.llama-cpu.$r.json" 2> /dev/null
        "$new_bin" bench -m "$m" --threads "$threads" --runs 3 --json > "$out/runs/$name.new.$r.json" 2> /dev/null
        "$old_bin" bench -m "$m" --threads "$threads" --runs 3 --json > "$out/runs/$name.old.$r.json" 2> /dev/null
        [[ -x $llama ]] && "$llama" -m "$m" -t "$threads" -p 512 -n 128 -r 3 -o json > "$out/runs/$name.llama.$r.json" 2> /dev/null
        echo "round $r: $name done (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    done
done
"$build/bench/bench-cpu-matmul" --threads "$threads" > "$out/cpu-matmul-new.txt" 2>&1
"$out/base/build/bench/bench-cpu-matmul" --threads "$threads" > "$out/cpu-matmul-old.txt" 2>&1
"$build/bench/bench-cpu-matmul" --cpu-time --paths "$(IFS=,; echo "${paths[*]}")" > "$out/cpu-matmul-new-cputime.txt" 2>&1
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

print_tables
