#!/usr/bin/env python3
"""Greedy continuations of two runtimes side by side (bench/results/greedy-vs-reference.md).

  greedy_compare.py prompts CORPUS.jsonl.xz YEAR N > PROMPTS
      N prompts from the speeches of YEAR: the first 40 words of the second paragraph of at
      least 40 words, of every len/N-th speech in id order.
  greedy_compare.py compare MODEL A B [A_ON_B]
      A, B: output prefixes of bench-greedy-logits or the reference's program of the same
      format (A.txt, A.bin). A_ON_B: A's runtime forced along B's tokens. Prints markdown.
  greedy_compare.py paths MODEL REF RUN...
      REF and every RUN went along the same tokens (forced, or REF's own greedy path): one
      table row per RUN with its logits' distance from REF's and the steps where its argmax
      differs from REF's.
"""
import array
import json
import lzma
import math
import struct
import sys


def gguf_tokens(path):
    """tokenizer.ggml.tokens of a GGUF file (v2/v3), read without dependencies."""
    with open(path, "rb") as f:
        data = f.read(64 << 20)
    if data[:4] != b"GGUF":
        raise SystemExit(f"{path}: not a GGUF file")
    pos = 8
    n_tensors, n_kv = struct.unpack_from("<QQ", data, pos)
    pos += 16
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def string(p):
        (n,) = struct.unpack_from("<Q", data, p)
        return data[p + 8 : p + 8 + n].decode("utf-8", "replace"), p + 8 + n

    def skip(t, p):
        if t == 8:
            return string(p)[1]
        if t == 9:
            et, n = struct.unpack_from("<IQ", data, p)
            p += 12
            if et in sizes:
                return p + n * sizes[et]
            for _ in range(n):
                p = skip(et, p)
            return p
        return p + sizes[t]

    for _ in range(n_kv):
        key, pos = string(pos)
        (t,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if key == "tokenizer.ggml.tokens":
            et, n = struct.unpack_from("<IQ", data, pos)
            pos += 12
            out = []
            for _ in range(n):
                s, pos = string(pos)
                out.append(s)
            return out
        pos = skip(t, pos)
    raise SystemExit(f"{path}: no tokenizer.ggml.tokens")


def byte_decoder():
    """GPT-2's byte <-> code point table, inverted."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def read_run(prefix, n_vocab):
    prompts, steps = {}, {}
    order = []
    with open(prefix + ".txt") as f:
        for line in f:
            w = line.split()
            if w[0] == "P":
                prompts[int(w[1])] = [int(x) for x in w[3:]]
            elif w[0] == "S":
                i, s = int(w[1]), int(w[2])
                steps.setdefault(i, []).append((int(w[3]), float(w[4]), int(w[5]), float(w[6]), int(w[7])))
                order.append((i, s))
    logits = array.array("f")
    with open(prefix + ".bin", "rb") as f:
        logits.frombytes(f.read())
    if len(logits) != len(order) * n_vocab:
        raise SystemExit(f"{prefix}.bin: {len(logits)} floats, expected {len(order)} x {n_vocab}")
    index = {key: k for k, key in enumerate(order)}
    return prompts, steps, logits, index


def cmd_prompts(corpus, year, n):
    rows = []
    with lzma.open(corpus, "rt") as f:
        for line in f:
            d = json.loads(line)
            if d["year"] == int(year):
                rows.append(d)
    rows.sort(key=lambda d: d["id"])
    n = int(n)
    for k in range(n):
        paras = [p for p in rows[k * len(rows) // n]["text"].split("\n") if len(p.split()) >= 40]
        print(" ".join(paras[min(1, len(paras) - 1)].split()[:40]))


def cmd_compare(model, a_prefix, b_prefix, a_on_b_prefix=None):
    toks = gguf_tokens(model)
    nv = len(toks)
    dec = byte_decoder()

    def text(ids):
        return bytes(dec.get(ch, ord("?")) for i in ids for ch in toks[i]).decode("utf-8", "replace")

    A = read_run(a_prefix, nv)
    B = read_run(b_prefix, nv)
    print(f"| # | same prompt ids | diverges at step | chars before | A: top-1 / top-2 (margin) | B: top-1 / top-2 (margin) | A-B on the two tokens |")
    print("|---|---|---|---|---|---|---|")
    sq, n_sq, max_abs, bias = 0.0, 0, 0.0, 0.0
    n_div = 0
    margins = []
    for i in sorted(A[1]):
        same_prompt = A[0][i] == B[0][i]
        sa, sb = A[1][i], B[1][i]
        div = next((s for s in range(min(len(sa), len(sb))) if sa[s][4] != sb[s][4]), None)
        # logit differences over the steps both saw with the same context
        for s in range(len(sa) if div is None else div + 1):
            ka, kb = A[3][(i, s)] * nv, B[3][(i, s)] * nv
            for v in range(nv):
                d = A[2][ka + v] - B[2][kb + v]
                sq += d * d
                bias += d
                max_abs = max(max_abs, abs(d))
            n_sq += nv
        if div is None:
            print(f"| {i} | {same_prompt} | none in {len(sa)} | {len(text([x[4] for x in sa]))} | | | |")
            continue
        n_div += 1
        before = len(text([x[4] for x in sa[:div]]))
        ta, tb = sa[div], sb[div]
        ka, kb = A[3][(i, div)] * nv, B[3][(i, div)] * nv
        x, y = ta[0], tb[0]  # A's choice and B's choice
        diff = (A[2][ka + x] - A[2][ka + y]) - (B[2][kb + x] - B[2][kb + y])
        margins.append((ta[1] - ta[3], tb[1] - tb[3]))
        print(
            f"| {i} | {same_prompt} | {div} | {before} | {text([ta[0]])!r} {ta[1]:.3f} / {text([ta[2]])!r} {ta[3]:.3f} ({ta[1]-ta[3]:.4f})"
            f" | {text([tb[0]])!r} {tb[1]:.3f} / {text([tb[2]])!r} {tb[3]:.3f} ({tb[1]-tb[3]:.4f}) | {diff:+.4f} |"
        )
    print()
    print(f"{n_div} of {len(A[1])} prompts diverge. Logits A - B over the {n_sq // nv} steps with the same context:"
          f" RMS {math.sqrt(sq / n_sq):.4f}, max |diff| {max_abs:.4f}, mean {bias / n_sq:+.5f}.")
    if margins:
        ms = sorted(max(m) for m in margins)
        print(f"Top-2 margins at the divergence points (larger of the two runtimes): median {ms[len(ms)//2]:.4f}, max {ms[-1]:.4f}.")
    if a_on_b_prefix:
        C = read_run(a_on_b_prefix, nv)
        flips, total, worst = [], 0, 0.0
        sq = 0.0
        for i in sorted(C[1]):
            for s, (c, b) in enumerate(zip(C[1][i], B[1][i])):
                total += 1
                kc, kb = C[3][(i, s)] * nv, B[3][(i, s)] * nv
                for v in range(nv):
                    d = C[2][kc + v] - B[2][kb + v]
                    sq += d * d
                    worst = max(worst, abs(d))
                if c[0] != b[0]:
                    flips.append((i, s, c[1] - c[3], b[1] - b[3]))
        print()
        print(f"A forced along B's tokens: {total} steps, logits A - B RMS {math.sqrt(sq / (total * nv)):.4f},"
              f" max |diff| {worst:.4f}; the argmax differs at {len(flips)} steps:")
        for i, s, ma, mb in flips:
            print(f"- prompt {i} step {s}: top-2 margin A {ma:.4f}, B {mb:.4f}")


def cmd_paths(model, ref_prefix, *runs):
    nv = len(gguf_tokens(model))
    R = read_run(ref_prefix, nv)
    print(f"| run (vs {ref_prefix.split('/')[-1]}) | steps | RMS logit diff | max abs diff | mean diff | argmax differs | top-2 margin of the reference there (median, max) |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        X = read_run(run, nv)
        sq, worst, total, steps, flips = 0.0, 0.0, 0.0, 0, []
        for i in sorted(R[1]):
            if X[0][i] != R[0][i] or [x[4] for x in X[1][i]] != [x[4] for x in R[1][i]]:
                raise SystemExit(f"{run}: prompt {i} is not on the reference's token path")
            for s, (x, r) in enumerate(zip(X[1][i], R[1][i])):
                kx, kr = X[3][(i, s)] * nv, R[3][(i, s)] * nv
                for v in range(nv):
                    d = X[2][kx + v] - R[2][kr + v]
                    sq += d * d
                    total += d
                    worst = max(worst, abs(d))
                steps += 1
                if x[0] != r[0]:
                    flips.append(r[1] - r[3])
        flips.sort()
        where = f"{flips[len(flips)//2]:.4f}, {flips[-1]:.4f}" if flips else "-"
        print(f"| {run.split('/')[-1]} | {steps} | {math.sqrt(sq / (steps * nv)):.4f} | {worst:.4f} | {total / (steps * nv):+.5f} | {len(flips)} | {where} |")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "prompts" and len(sys.argv) == 5:
        cmd_prompts(*sys.argv[2:])
    elif len(sys.argv) >= 2 and sys.argv[1] == "compare" and len(sys.argv) in (5, 6):
        cmd_compare(*sys.argv[2:])
    elif len(sys.argv) >= 5 and sys.argv[1] == "paths":
        cmd_paths(*sys.argv[2:])
    else:
        sys.exit(__doc__)
