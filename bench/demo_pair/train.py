#!/usr/bin/env python3
"""Trains Tandem's demo client on the data demo-pair-prepare wrote (bench/demo_pair/README.md).

One run does everything the recipe needs from a GPU: trains a Llama of the demo client's shape
(6 layers, dim 384, 6/2 heads, FFN 1024, tied embeddings, RoPE base 10000, RMSNorm 1e-5) on
the train split, half of the windows preceded by their notes in the SDK's suggest-prompt layout
(no loss on the notes), measures the validation year with no notes / its notes / another
speech's notes, and writes the f32 weights for demo-pair-export (which writes the Q8_0 GGUF).

Each example is [BOS] + notes block (or nothing) + window, cut to 513 tokens: 512 inputs and
their next tokens. The block is note 1, newline, note 2, ..., note k, blank line: the tokens
build_suggest_prompt produces (demo-pair-prepare checked that joining per-note tokens this way
reproduces them). Loss: every window token; none on BOS, the notes or padding.

Writes into --out: train.log is the caller's tee; result.json (settings, seeds, curve,
validation, the weights' manifest and a check sequence with its f32 NLL); weights.f32.NNN
(the f32 weights in the manifest's order, little-endian, split in parts under 16 MiB).

usage: train.py --data DIR --out DIR [--config client|tiny] [--device cuda|cpu] [--seed S]
                [--epochs E] [--time-budget S] [--deadline S] [--max-steps N] [--batch B]
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {
    # The demo client's shape (../shared/models/tandem-demo-client-q8_0.gguf).
    "client": dict(dim=384, n_layers=6, n_heads=6, n_kv_heads=2, ffn=1024),
    # A few-second CPU trial of the whole script.
    "tiny": dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn=128),
}
CTX = 512            # positions per example (the models' training window)
ROPE_BASE = 10000.0
NORM_EPS = 1e-5
PART_BYTES = 15 << 20  # weights.f32.NNN parts stay under the 16 MiB a returned file may have


# ---- data ------------------------------------------------------------------------------------

class Split:
    """One split of demo-pair-prepare's output: windows, their notes, their speeches."""

    def __init__(self, d):
        def arr(name, dt):
            return np.fromfile(os.path.join(d, name), dtype=dt)
        self.tok = arr("window_tokens.bin", "<u2").astype(np.int64)
        self.off = arr("window_offsets.bin", "<u4").astype(np.int64)
        self.wn = arr("window_notes.bin", "<u4").astype(np.int64)
        self.speech = arr("window_speech.bin", "<u4").astype(np.int64)
        self.ntok = arr("note_tokens.bin", "<u2").astype(np.int64)
        self.noff = arr("note_offsets.bin", "<u4").astype(np.int64)
        self.n = len(self.off) - 1
        assert len(self.wn) == self.n + 1 and len(self.speech) == self.n, "window arrays disagree"
        assert self.off[-1] == len(self.tok) and self.noff[-1] == len(self.ntok), "offsets do not match the tokens"

    def window(self, i):
        return self.tok[self.off[i]:self.off[i + 1]]

    def n_notes(self, i):
        return int(self.wn[i + 1] - self.wn[i])

    def block(self, i, k, newline, blank_line):
        """The notes block of window i's first k notes (the SDK layout); empty for k = 0."""
        parts = []
        for j in range(k):
            g = self.wn[i] + j
            parts.append(self.ntok[self.noff[g]:self.noff[g + 1]])
            parts.append(blank_line if j + 1 == k else newline)
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def make_example(bos, block, window, x, y, m):
    """Fills one row of inputs x, targets y and loss mask m (all length CTX)."""
    seq = np.concatenate([[bos], block, window])[:CTX + 1]
    n = len(seq) - 1
    x[:] = bos
    y[:] = 0
    m[:] = 0
    x[:n] = seq[:-1]
    y[:n] = seq[1:]
    m[len(block):n] = 1  # target j is seq[j + 1]: a window token once j + 1 > len(block)


# ---- model -----------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + NORM_EPS)).type_as(x) * self.weight


def rope(x, cos, sin):
    """Rotates adjacent pairs (2i, 2i+1) by pos * base^(-2i/head_dim): llama.cpp's normal mode,
    what the engine does for architecture llama. x: (B, H, T, hd); cos, sin: (T, hd/2)."""
    x0, x1 = x[..., 0::2].float(), x[..., 1::2].float()
    r = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return r.flatten(-2).type_as(x)


def attention(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    t = q.shape[-2]  # PyTorch < 2.0 (a CPU trial): the same causal softmax attention
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return torch.softmax(s.float(), dim=-1).type_as(q) @ v


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, hd = c["dim"], c["dim"] // c["n_heads"]
        self.n_heads, self.n_kv, self.hd = c["n_heads"], c["n_kv_heads"], hd
        self.attn_norm = RMSNorm(d)
        self.wq = nn.Linear(d, c["n_heads"] * hd, bias=False)
        self.wk = nn.Linear(d, c["n_kv_heads"] * hd, bias=False)
        self.wv = nn.Linear(d, c["n_kv_heads"] * hd, bias=False)
        self.wo = nn.Linear(c["n_heads"] * hd, d, bias=False)
        self.ffn_norm = RMSNorm(d)
        self.w_gate = nn.Linear(d, c["ffn"], bias=False)
        self.w_up = nn.Linear(d, c["ffn"], bias=False)
        self.w_down = nn.Linear(c["ffn"], d, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        h = self.attn_norm(x)
        q = self.wq(h).view(b, t, self.n_heads, self.hd).transpose(1, 2)
        k = self.wk(h).view(b, t, self.n_kv, self.hd).transpose(1, 2)
        v = self.wv(h).view(b, t, self.n_kv, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        g = self.n_heads // self.n_kv  # query head i reads kv head i // g, as the engine does
        k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
        a = attention(q, k, v).transpose(1, 2).reshape(b, t, -1)
        x = x + self.wo(a)
        h = self.ffn_norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))


class Llama(nn.Module):
    def __init__(self, c, vocab):
        super().__init__()
        self.embed = nn.Embedding(vocab, c["dim"])
        self.blocks = nn.ModuleList(Block(c) for _ in range(c["n_layers"]))
        self.norm = RMSNorm(c["dim"])
        hd = c["dim"] // c["n_heads"]
        inv = ROPE_BASE ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = torch.outer(torch.arange(CTX, dtype=torch.float64), inv)
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * c["n_layers"]) if name.endswith(("wo.weight", "w_down.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, x):
        t = x.shape[1]
        h = self.embed(x)
        for blk in self.blocks:
            h = blk(h, self.cos[:t], self.sin[:t])
        return self.norm(h) @ self.embed.weight.t()  # tied output

    def gguf_tensors(self):
        """(GGUF name, tensor) in the order the demo client's GGUF has them."""
        out = [("token_embd.weight", self.embed.weight), ("output_norm.weight", self.norm.weight)]
        for i, b in enumerate(self.blocks):
            p = f"blk.{i}."
            out += [(p + "attn_norm.weight", b.attn_norm.weight), (p + "ffn_norm.weight", b.ffn_norm.weight),
                    (p + "attn_q.weight", b.wq.weight), (p + "attn_k.weight", b.wk.weight),
                    (p + "attn_v.weight", b.wv.weight), (p + "attn_output.weight", b.wo.weight),
                    (p + "ffn_gate.weight", b.w_gate.weight), (p + "ffn_up.weight", b.w_up.weight),
                    (p + "ffn_down.weight", b.w_down.weight)]
        return out


# ---- training and evaluation -----------------------------------------------------------------

def token_nll(model, x, y, dev, autocast):
    """Per-target NLL (B, CTX) in float32."""
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
        logits = model(x)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                           reduction="none").view(y.shape)


def eval_rows(model, rows, dev, autocast, bs=64):
    """Sum of NLL and count of targets per row, for rows = [(x, y, m)] (numpy)."""
    sums, counts = [], []
    for s in range(0, len(rows), bs):
        x = torch.from_numpy(np.stack([r[0] for r in rows[s:s + bs]])).to(dev)
        y = torch.from_numpy(np.stack([r[1] for r in rows[s:s + bs]])).to(dev)
        m = torch.from_numpy(np.stack([r[2] for r in rows[s:s + bs]])).to(dev).float()
        nll = token_nll(model, x, y, dev, autocast)
        sums.append((nll * m).sum(1).double().cpu().numpy())
        counts.append(m.sum(1).double().cpu().numpy())
    return np.concatenate(sums), np.concatenate(counts)


def row(bos, block, window):
    x, y, m = (np.zeros(CTX, np.int64) for _ in range(3))
    make_example(bos, block, window, x, y, m)
    return x, y, m


def validate(model, val, meta, dev, autocast, rng, eval_tokens=300, skip=0):
    """Validation year, the same target tokens under three prompts: no notes, the window's own
    notes, the notes of a window of another speech (the window cut to eval_tokens so every
    block fits). skip: targets before this window position are not scored (skip = 100: only
    the text after the opening the notes were retrieved for)."""
    bos, nl, bl = meta["bos"], np.array(meta["newline"]), np.array(meta["blank_line"])
    ids = [i for i in range(val.n) if val.n_notes(i) > 0 and len(val.window(i)) > skip + 20]
    # the unrelated partner: the window half the list away, moved on until it is another speech's
    partner = {}
    for j, i in enumerate(ids):
        p = (j + len(ids) // 2) % len(ids)
        while val.speech[ids[p]] == val.speech[i]:
            p = (p + 1) % len(ids)
        partner[i] = ids[p]
    out = {}
    for cond in ("none", "notes", "unrelated"):
        rows = []
        for i in ids:
            w = val.window(i)[:eval_tokens]
            src = {"none": None, "notes": i, "unrelated": partner[i]}[cond]
            blk = val.block(src, val.n_notes(src), nl, bl) if src is not None else np.zeros(0, np.int64)
            x, y, m = row(bos, blk, w)
            m[:len(blk) + skip] = 0
            rows.append((x, y, m))
        out[cond] = eval_rows(model, rows, dev, autocast)
    res = {"windows": len(ids), "eval_tokens": eval_tokens, "skip": skip}
    tok = out["none"][1]
    for c in out:
        assert np.array_equal(out[c][1], tok), "conditions score different tokens"
        res[c + "_ppl"] = float(math.exp(out[c][0].sum() / tok.sum()))
    for a, b in (("notes", "none"), ("unrelated", "none"), ("notes", "unrelated")):
        d = (out[a][0] - out[b][0]) / tok  # per window, nats per token
        boots = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(2000)]
        res[f"{a}_minus_{b}_nll"] = [float(d.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]
    return res


def plain_val_ppl(model, val, meta, dev, autocast):
    """Perplexity of the validation windows without notes ([BOS] + window)."""
    rows = [row(meta["bos"], np.zeros(0, np.int64), val.window(i)) for i in range(val.n)]
    s, c = eval_rows(model, rows, dev, autocast)
    return float(math.exp(s.sum() / c.sum()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default="client", choices=sorted(CONFIGS))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=2005)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=float, default=8.0, help="passes over the train windows, at most")
    ap.add_argument("--time-budget", type=float, default=300.0, help="seconds of training, at most")
    ap.add_argument("--deadline", type=float, default=540.0, help="seconds for the whole script: training stops early to keep it")
    ap.add_argument("--max-steps", type=int, default=0, help="> 0: at most this many steps (a trial)")
    ap.add_argument("--notes-share", type=float, default=0.5, help="share of training windows given their notes")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--compile", type=int, default=1)
    a = ap.parse_args()
    t_start = time.time()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    dev = torch.device(a.device)
    autocast = dev.type == "cuda"
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print(f"device {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)

    meta = json.load(open(os.path.join(a.data, "meta.json")))
    train, val = Split(os.path.join(a.data, "train")), Split(os.path.join(a.data, "val"))
    bos, nl, bl = meta["bos"], np.array(meta["newline"]), np.array(meta["blank_line"])
    print(f"data: train {train.n} windows {len(train.tok) / 1e6:.2f}M tokens, notes on "
          f"{(np.diff(train.wn) > 0).mean() * 100:.1f}%; val {val.n} windows {len(val.tok) / 1e6:.2f}M tokens", flush=True)

    c = CONFIGS[a.config]
    model = Llama(c, meta["n_vocab"]).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model {a.config}: {n_params / 1e6:.2f}M params {c}", flush=True)
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt_kw = dict(lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    if dev.type == "cuda":
        opt_kw["fused"] = True
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], **opt_kw)
    fwd = model
    if a.compile and hasattr(torch, "compile") and dev.type == "cuda":
        fwd = torch.compile(model)

    # Batches: a shuffled pass over the windows at a time; each window gets its notes with
    # probability notes_share (when it has any), then 1..n of them, uniformly.
    order, pos, epoch = rng.permutation(train.n), 0, 0
    xb, yb, mb = (np.zeros((a.batch, CTX), np.int64) for _ in range(3))
    stats = {"examples": 0, "with_notes": 0, "note_tokens": 0, "target_tokens": 0}

    def next_batch():
        nonlocal order, pos, epoch
        for r in range(a.batch):
            if pos == train.n:
                order, pos, epoch = rng.permutation(train.n), 0, epoch + 1
            i = order[pos]
            pos += 1
            k = 0
            if train.n_notes(i) > 0 and rng.random() < a.notes_share:
                k = int(rng.integers(1, train.n_notes(i) + 1))
            blk = train.block(i, k, nl, bl)
            make_example(bos, blk, train.window(i), xb[r], yb[r], mb[r])
            stats["examples"] += 1
            stats["with_notes"] += k > 0
            stats["note_tokens"] += len(blk)
            stats["target_tokens"] += int(mb[r].sum())
        to = lambda z: torch.from_numpy(z).to(dev, non_blocking=True)
        return to(xb), to(yb), to(mb.astype(np.float32))

    def train_step(x, y, m, lr):
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
            logits = fwd(x)
        nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
        loss = (nll * m.reshape(-1)).sum() / m.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    epoch_steps = train.n / a.batch
    total = max(1, int(a.epochs * epoch_steps))
    if a.max_steps:
        total = min(total, a.max_steps)
    lr_at = lambda s: a.lr * min(1.0, (s + 1) / a.warmup) if s < a.warmup else \
        a.min_lr + 0.5 * (a.lr - a.min_lr) * (1 + math.cos(math.pi * min(1.0, (s - a.warmup) / max(1, total - a.warmup))))
    curve = []
    t_train = time.time()
    t_measure, step_s = None, None
    step = 0
    while step < total:
        if step == 10:  # compiled and warm: time from here
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t_measure = time.time()
        if step == 60:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            step_s = (time.time() - t_measure) / 50
            # seconds left to train: the training budget, and the deadline less 90 s for the
            # validation and the export
            budget = min(a.time_budget - (time.time() - t_train), a.deadline - (time.time() - t_start) - 90)
            fit = 60 + int(budget / step_s)
            if fit < total:
                total = max(fit, 100)
            print(f"{step_s * 1e3:.1f} ms/step, {a.batch * CTX / step_s / 1e3:.0f}k positions/s -> {total} steps "
                  f"({total / epoch_steps:.2f} passes over the windows)", flush=True)
        x, y, m = next_batch()
        if step == 0 and fwd is not model:
            try:  # torch.compile fails at the first call if it fails at all: then train eager
                loss = train_step(x, y, m, lr_at(step))
            except Exception as e:  # noqa: BLE001 (any compiler error)
                print(f"torch.compile failed ({type(e).__name__}: {str(e)[:300]}); training eager", flush=True)
                fwd = model
                loss = train_step(x, y, m, lr_at(step))
        else:
            loss = train_step(x, y, m, lr_at(step))
        step += 1
        if step % a.eval_every == 0 or step == total:
            vp = plain_val_ppl(model, val, meta, dev, autocast)
            el = time.time() - t_train
            curve.append({"step": step, "loss": float(loss), "val_ppl": vp, "lr": lr_at(step - 1), "t": round(el, 1)})
            print(f"step {step} loss {float(loss):.3f} val ppl {vp:.2f} lr {lr_at(step - 1):.2e} t {el:.0f}s", flush=True)
        if time.time() - t_start > a.deadline - 60:
            print(f"deadline: stopping at step {step} of {total}", flush=True)
            break
    train_s = time.time() - t_train
    print(f"trained {step} steps in {train_s:.0f}s; examples {stats['examples']}, with notes "
          f"{stats['with_notes'] / max(1, stats['examples']) * 100:.1f}%, target tokens {stats['target_tokens'] / 1e6:.1f}M, "
          f"note tokens {stats['note_tokens'] / 1e6:.1f}M, {stats['examples'] / train.n:.2f} passes", flush=True)

    model.eval()
    vrng = np.random.default_rng(a.seed + 1)
    val_all = validate(model, val, meta, dev, autocast, vrng)
    val_after = validate(model, val, meta, dev, autocast, vrng, skip=100)
    for name, r in (("all 300 tokens", val_all), ("tokens 100-300 (after the opening)", val_after)):
        print(f"validation {meta['val_year']}, {r['windows']} windows, {name}: ppl none {r['none_ppl']:.3f} "
              f"notes {r['notes_ppl']:.3f} unrelated {r['unrelated_ppl']:.3f}; "
              f"notes-none {r['notes_minus_none_nll']}, unrelated-none {r['unrelated_minus_none_nll']}", flush=True)

    # Export: f32 weights in parts, their manifest, and a check sequence with its f32 NLL.
    tensors = model.gguf_tensors()
    blob = b"".join(t.detach().float().cpu().contiguous().numpy().astype("<f4").tobytes() for _, t in tensors)
    parts = []
    for k in range(0, len(blob), PART_BYTES):
        name = f"weights.f32.{k // PART_BYTES:03d}"
        with open(os.path.join(a.out, name), "wb") as f:
            f.write(blob[k:k + PART_BYTES])
        parts.append(name)
    i_check = next(i for i in range(val.n) if val.n_notes(i) >= 2)
    blk = val.block(i_check, val.n_notes(i_check), nl, bl)
    check = np.concatenate([[bos], blk, val.window(i_check)[:200]])
    with torch.no_grad():
        lg = model.float()(torch.from_numpy(check[None, :-1]).to(dev)).float()
        nll = F.cross_entropy(lg[0], torch.from_numpy(check[1:]).to(dev), reduction="none")
    result = {
        "config": a.config, "shape": c, "n_vocab": meta["n_vocab"], "ctx": CTX, "rope_base": ROPE_BASE,
        "norm_eps": NORM_EPS, "params": n_params, "seed": a.seed, "args": vars(a),
        "data": {k: meta[k] for k in ("train_years", "val_year", "settings", "train", "val")},
        "steps": step, "train_seconds": round(train_s, 1), "ms_per_step": step_s and step_s * 1e3,
        "examples": stats, "curve": curve, "val_ppl_plain": curve[-1]["val_ppl"] if curve else None,
        "validation": {"all": val_all, "after_opening": val_after},
        "tensors": [{"name": n, "shape": list(t.shape)} for n, t in tensors], "parts": parts,
        "check": {"tokens": check.tolist(), "nll_mean": float(nll.mean()), "note": "f32 model, no autocast"},
        "seconds": round(time.time() - t_start, 1),
    }
    with open(os.path.join(a.out, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {len(parts)} weight parts ({len(blob) / 1e6:.1f} MB) and result.json; check nll {float(nll.mean()):.4f}; "
          f"total {time.time() - t_start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
