#!/usr/bin/env python3
"""torch.mm's throughput on the prefill GEMM shapes of bench-gpu-decode's models: the baseline
issue 19 measures Tandem's prefill linear layers against (FP16 inputs, and FP32 inputs on TF32
tensor cores), in the same run as bench-gpu-decode.

For each model shape, the layer matrices (q/k/v, o, gate/up, down) as Y = X W^T with X of
TOKENS rows (default 512, the engine's prefill chunk): median of 20 timed calls after 5
warm-ups (CUDA events). The mix's TFLOP/s = all its FLOPs / all its time, the number to set
against bench-gpu-decode's "layer TFLOP/s".

usage: gemm_torch.py OUT.json [--tokens N]
"""
import json
import sys

import torch

SHAPES = {  # name: (n_embd, n_head, n_head_kv, n_ff), as in bench/bench-gpu-decode.cpp
    "Llama-3.2-1B-shaped": (2048, 32, 8, 8192),
    "Qwen2.5-0.5B-shaped": (896, 14, 2, 4864),
}


def time_mm(x, w, reps=20):
    for _ in range(5):
        torch.mm(x, w.t())
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        torch.mm(x, w.t())
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def main():
    out = sys.argv[1]
    tokens = int(sys.argv[sys.argv.index("--tokens") + 1]) if "--tokens" in sys.argv else 512
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = []
    for name, (d, nh, nkv, ff) in SHAPES.items():
        kvd = d // nh * nkv
        mats = [("qkv", d + 2 * kvd, d), ("o", d, d), ("gate", ff, d), ("up", ff, d), ("down", d, ff)]
        for dtype, label in ((torch.float16, "fp16"), (torch.float32, "tf32")):
            flops = ms = 0.0
            per = {}
            for m, n_out, k in mats:
                x = torch.randn(tokens, k, device="cuda", dtype=dtype)
                w = torch.randn(n_out, k, device="cuda", dtype=dtype)
                t = time_mm(x, w)
                f = 2.0 * tokens * n_out * k
                per[m] = {"ms": t, "tflops": f / (t * 1e-3) / 1e12}
                flops += f
                ms += t
            rows.append({"model": name, "dtype": label, "tokens": tokens, "mix_tflops": flops / (ms * 1e-3) / 1e12,
                         "matrices": per})
            print("%s %s, %d tokens: mix %.0f TFLOP/s (%s)" % (name, label, tokens, rows[-1]["mix_tflops"],
                  ", ".join("%s %.0f" % (m, p["tflops"]) for m, p in per.items())))
    json.dump({"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "rows": rows}, open(out, "w"), indent=1)


if __name__ == "__main__":
    main()
