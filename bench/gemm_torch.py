#!/usr/bin/env python3
"""torch.mm's throughput on the prefill GEMM shapes of bench-gpu-decode's models: the baseline
issue 19 measures Tandem's prefill linear layers against (FP16 inputs, and FP32 inputs on TF32
tensor cores), in the same run as bench-gpu-decode.

For each model shape, every layer's matrices (q/k/v as one, o, gate, up, down; distinct random
weights per layer, as the model has) as Y = X W^T with X of TOKENS rows (default 512, the
engine's prefill chunk). The calls run back to back inside a CUDA graph, so host launch latency
is not part of the time (it was when each call was timed on its own: 10-30 us calls):
- the mix: one graph of all layers' matrices in the model's order; the time of one replay is
  the GEMM time of one prefill chunk. Median of 10 replays after 3 warm-ups, each replay between
  two CUDA events. The mix's TFLOP/s = its FLOPs / that time, the number to set against
  bench-gpu-decode's "layer TFLOP/s" and its GEMM stage;
- per matrix: one graph of that matrix's call in every layer (n_layer distinct weights, so a
  small matrix is not served from L2 alone), timed the same way.

usage: gemm_torch.py OUT.json [--tokens N]
"""
import json
import sys

import torch

SHAPES = {  # name: (n_layer, n_embd, n_head, n_head_kv, n_ff), as in bench/bench-gpu-decode.cpp
    "Llama-3.2-1B-shaped": (16, 2048, 32, 8, 8192),
    "Qwen2.5-0.5B-shaped": (24, 896, 14, 2, 4864),
}


def graph_ms(calls, warmups=3, reps=10):
    """Median ms of one replay of a CUDA graph that runs calls() once."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        calls()  # cuBLAS handle and workspace before capture
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        calls()
    for _ in range(warmups):
        g.replay()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def main():
    out = sys.argv[1]
    tokens = int(sys.argv[sys.argv.index("--tokens") + 1]) if "--tokens" in sys.argv else 512
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = []
    for name, (n_layer, d, nh, nkv, ff) in SHAPES.items():
        kvd = d // nh * nkv
        mats = [("qkv", d + 2 * kvd, d), ("o", d, d), ("gate", ff, d), ("up", ff, d), ("down", d, ff)]
        for dtype, label in ((torch.float16, "fp16"), (torch.float32, "tf32")):
            xs = {m: torch.randn(tokens, k, device="cuda", dtype=dtype) for m, _, k in mats}
            ys = {m: torch.empty(tokens, n_out, device="cuda", dtype=dtype) for m, n_out, _ in mats}
            ws = [{m: torch.randn(n_out, k, device="cuda", dtype=dtype) for m, n_out, k in mats} for _ in range(n_layer)]

            def layer_calls(only=None):
                for layer in ws:
                    for m, _, _ in mats:
                        if only is None or m == only:
                            torch.mm(xs[m], layer[m].t(), out=ys[m])

            per = {}
            for m, n_out, k in mats:
                t = graph_ms(lambda: layer_calls(m))
                f = 2.0 * tokens * n_out * k * n_layer
                per[m] = {"ms": t / n_layer, "tflops": f / (t * 1e-3) / 1e12}
            t = graph_ms(layer_calls)
            flops = 2.0 * tokens * n_layer * sum(n_out * k for _, n_out, k in mats)
            rows.append({"model": name, "dtype": label, "tokens": tokens, "mix_ms": t,
                         "mix_tflops": flops / (t * 1e-3) / 1e12, "matrices": per})
            print("%s %s, %d tokens: mix %.3f ms for %d layers = %.0f TFLOP/s (per matrix: %s)" % (
                name, label, tokens, t, n_layer, rows[-1]["mix_tflops"],
                ", ".join("%s %.0f" % (m, p["tflops"]) for m, p in per.items())))
            del xs, ys, ws
            torch.cuda.empty_cache()
    json.dump({"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "method": "cuda graph replays",
               "rows": rows}, open(out, "w"), indent=1)


if __name__ == "__main__":
    main()
