// The Llama-family forward pass on the CPU.
//
//   x = embed(tokens)                                   (n, n_embd)
//   per layer:  h = rmsnorm(x) * attn_norm
//               q, k, v = h Wq (+bq), h Wk (+bk), h Wv (+bv);  rope(q, k)
//               cache[pos] = k, v;  a = softmax(q k^T / sqrt(hd)) v  (causal, GQA)
//               x += a Wo
//               h = rmsnorm(x) * ffn_norm;  x += (silu(h Wgate) * h Wup) Wdown
//   logits = rmsnorm(x) * output_norm  Woutput
#include <algorithm>
#include <cmath>
#include <functional>
#include <initializer_list>
#include <stdexcept>
#include <thread>
#include <utility>

#include "tandem/cpu_attention.h"
#include "tandem/cpu_ops.h"
#include "tandem/context.h"
#include "tandem/cpu_matmul.h"
#include "tandem/cpu_weights.h"
#include "tandem/thread_pool.h"

namespace tandem {

// ContextParams::n_batch 0 on the CPU: 256 tokens a pass (the scratch holds n_batch rows of
// every activation).
constexpr int64_t kCpuBatch = 256;

InferenceContext::InferenceContext(std::shared_ptr<const Model> model, const ContextParams& p)
    : model_(std::move(model)), kv_type_(p.kv_type) {
    const ModelConfig& c = model_->config();
    if (kv_type_ != GgmlType::F16 && kv_type_ != GgmlType::F32)
        throw std::invalid_argument("KV cache type must be F16 or F32");
    n_ctx_ = p.n_ctx > 0 ? p.n_ctx : std::min<int64_t>(c.n_ctx_train, 4096);
    if (n_ctx_ > c.n_ctx_train)
        throw std::invalid_argument("n_ctx " + std::to_string(n_ctx_) + " exceeds the model's training context " +
                                    std::to_string(c.n_ctx_train));
    n_batch_ = std::max<int64_t>(1, std::min(p.n_batch > 0 ? p.n_batch : kCpuBatch, n_ctx_));
    const int n_threads = p.n_threads > 0 ? p.n_threads : (int)std::max(1u, std::thread::hardware_concurrency());
    pool_ = std::make_unique<ThreadPool>(n_threads);
    weights_ = &model_->cpu_weights(pool_.get());

    const int64_t d = c.n_embd, kvd = model_->kv_dim(), ff = c.n_ff;
    params_ = p;
    if (p.turbo_kv) {
        params_.turbo.head_dim = (int)model_->head_dim();
        turbo_validate(params_.turbo);
        if (!p.turbo_head_bits.empty() && (int64_t)p.turbo_head_bits.size() != c.n_layer)
            throw std::invalid_argument("turbo_head_bits needs one entry per layer (" + std::to_string(c.n_layer) + ")");
        for (int64_t l = 0; l < c.n_layer; l++) {
            const std::vector<uint8_t> bits = p.turbo_head_bits.empty() ? std::vector<uint8_t>((size_t)c.n_head_kv, 4)
                                                                        : p.turbo_head_bits[(size_t)l];
            turbo_.push_back(std::make_unique<TurboKvCache>(params_.turbo, 1, (int)c.n_head_kv, (int)n_ctx_, bits));
        }
    } else {
        const size_t kv_bytes = (size_t)(n_ctx_ * kvd) * (kv_type_ == GgmlType::F32 ? 4 : 2);
        k_cache_.assign((size_t)c.n_layer, std::vector<uint8_t>(kv_bytes));
        v_cache_.assign((size_t)c.n_layer, std::vector<uint8_t>(kv_bytes));
    }
    x_.resize((size_t)(n_batch_ * d));
    xn_.resize(x_.size());
    q_.resize(x_.size());
    attn_.resize(x_.size());
    k_.resize((size_t)(n_batch_ * kvd));
    v_.resize(k_.size());
    gate_.resize((size_t)(n_batch_ * ff));
    up_.resize(gate_.size());
    logits_.resize((size_t)c.n_vocab);

    rope_inv_freq_ = model_->rope_inv_freq();
    rope_cs_.resize((size_t)(n_batch_ * c.n_rot));
}

InferenceContext::~InferenceContext() = default;

int32_t ComputeContext::argmax() const {
    const int64_t nv = model().config().n_vocab;
    const float* l = logits() + (logit_rows_ - 1) * nv;
    return (int32_t)(std::max_element(l, l + nv) - l);
}


int64_t InferenceContext::truncate(int64_t n) {
    n = std::clamp<int64_t>(n, 0, n_past_);
    for (auto& t : turbo_) n = t->truncate(0, (int)n);  // block-exact (turbo_truncate_keep), the same per layer
    n_past_ = n;
    return n;
}

void InferenceContext::read_kv(int64_t layer, int64_t pos, float* k, float* v) const {
    if (!turbo_.empty()) throw std::logic_error("read_kv: the Turbo cache holds no float K/V");
    const int64_t kvd = model_->kv_dim();
    const size_t es = kv_type_ == GgmlType::F32 ? 4 : 2;
    const TypeTraits& tt = type_traits(kv_type_);
    tt.to_float(k_cache_[(size_t)layer].data() + (size_t)(pos * kvd) * es, k, kvd);
    tt.to_float(v_cache_[(size_t)layer].data() + (size_t)(pos * kvd) * es, v, kvd);
}

double InferenceContext::kv_bytes_per_token() const {
    const ModelConfig& c = model_->config();
    if (turbo_.empty()) return 2.0 * (double)(c.n_layer * model_->kv_dim()) * (kv_type_ == GgmlType::F32 ? 4 : 2);
    // a long sequence's cost per token: the compressed records (the recent buffer amortized away)
    double b = 0;
    for (const auto& t : turbo_) b += (double)t->layout().seq_bytes / (double)(t->layout().max_blocks * t->layout().block_tokens);
    return b;
}

void ComputeContext::check_eval_args(const int32_t* tokens, int64_t n) const {
    if (n <= 0) throw std::invalid_argument("eval needs at least one token");
    if (n_past() + n > n_ctx())
        throw ContextFull("context full: " + std::to_string(n_past()) + " cached + " + std::to_string(n) +
                          " new tokens exceed n_ctx " + std::to_string(n_ctx()));
    const int64_t nv = model().config().n_vocab;
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= nv)
            throw std::invalid_argument("token id " + std::to_string(tokens[i]) + " is outside the vocabulary (" +
                                        std::to_string(nv) + ")");
}

void InferenceContext::eval(const int32_t* tokens, int64_t n, bool all_logits) {
    check_eval_args(tokens, n);
    const int64_t nv = model_->config().n_vocab;
    logit_rows_ = all_logits ? n : 1;
    if (all_logits) logits_.resize((size_t)(n * nv));
    else logits_.resize((size_t)nv);
    for (int64_t done = 0; done < n; done += n_batch_) {
        const int64_t nb = std::min(n_batch_, n - done);
        const bool last = done + nb == n;
        float* out = all_logits ? logits_.data() + done * nv : (last ? logits_.data() : nullptr);
        forward_batch(tokens + done, nb, all_logits, out);
    }
}

void InferenceContext::eval_no_logits(const int32_t* tokens, int64_t n) {
    check_eval_args(tokens, n);
    for (int64_t done = 0; done < n; done += n_batch_)
        forward_batch(tokens + done, std::min(n_batch_, n - done), false, nullptr);
}

// ---- the pieces of a layer ------------------------------------------------------------------

// The sum of squares in double (each square exact), in 8 interleaved partial sums: one chain of
// dependent adds made the norms 3-4% of a prompt's time on one Zen 5 core.
static void rmsnorm(const float* x, const float* w, float* y, int64_t n, double eps) {
    double part[8] = {};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) part[k] += (double)x[i + k] * x[i + k];
    for (; i < n; i++) part[0] += (double)x[i] * x[i];
    const double ss = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
    const float s = (float)(1.0 / std::sqrt(ss / (double)n + eps));
    for (i = 0; i < n; i++) y[i] = x[i] * s * w[i];
}

static void add_bias(float* y, const WeightView& b, int64_t n_tok, int64_t n) {
    if (!b) return;
    const float* bias = (const float*)b.data;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t i = 0; i < n; i++) y[t * n + i] += bias[i];
}

// The rotation of position pos: cs[2i], cs[2i + 1] = cos, sin of pos * inv_freq[i], i < n_rot / 2.
static void rope_angles(int64_t pos, int64_t n_rot, const float* inv_freq, float* cs) {
    for (int64_t i = 0; i < n_rot / 2; i++) {
        const float theta = (float)pos * inv_freq[i];
        cs[2 * i] = std::cos(theta);
        cs[2 * i + 1] = std::sin(theta);
    }
}

// Rotates the first n_rot dims of each head of one token's q or k (n_heads x head_dim) by the
// angles cs of its position (rope_angles).
static void rope(float* v, int64_t n_heads, int64_t hd, int64_t n_rot, const float* cs, RopeMode mode) {
    const int64_t half = n_rot / 2;
    for (int64_t i = 0; i < half; i++) {
        const float c = cs[2 * i], s = cs[2 * i + 1];
        for (int64_t h = 0; h < n_heads; h++) {
            float* p = v + h * hd;
            const int64_t a = mode == RopeMode::Normal ? 2 * i : i;
            const int64_t b = mode == RopeMode::Normal ? 2 * i + 1 : i + half;
            const float x0 = p[a], x1 = p[b];
            p[a] = x0 * c - x1 * s;
            p[b] = x0 * s + x1 * c;
        }
    }
}

// y_i = x W_i^T for matrices that read the same x: one matmul_group (x quantized once) when
// they share a type, else one matmul each.
static void project(std::initializer_list<std::pair<const cpu::PackedWeights*, float*>> ws, const float* x, int64_t n,
                    ThreadPool& pool) {
    const cpu::PackedWeights* w[4];
    float* y[4];
    int k = 0;
    bool same = true;
    for (const auto& [pw, out] : ws) {
        w[k] = pw;
        y[k++] = out;
        same = same && pw->type() == w[0]->type();
    }
    if (same) return cpu::matmul_group(w, y, k, x, n, &pool);
    for (int i = 0; i < k; i++) cpu::matmul(*w[i], x, n, y[i], &pool);
}

// fn(t0, t1) over the tokens [0, n): on the pool for a batch, inline for one token.
static void each_token(ThreadPool& pool, int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
    if (n == 1) fn(0, 1);
    else pool.parallel_for(n, fn);
}

void InferenceContext::forward_batch(const int32_t* tokens, int64_t n, bool all_logits, float* logits_out) {
    const Model& m = *model_;
    const ModelConfig& c = m.config();
    const int64_t d = c.n_embd, hd = m.head_dim(), kvd = m.kv_dim(), ff = c.n_ff;
    const int64_t n_head = c.n_head, n_head_kv = c.n_head_kv, group = n_head / n_head_kv;
    const size_t kv_elem = kv_type_ == GgmlType::F32 ? 4 : 2;
    const float scale = 1.0f / std::sqrt((float)hd);
    ThreadPool& pool = *pool_;

    // embeddings: dequantize the token's row
    const TypeTraits& et = type_traits(m.token_embd.type);
    const size_t erow = row_size(m.token_embd.type, d);
    for (int64_t t = 0; t < n; t++)
        et.to_float((const uint8_t*)m.token_embd.data + (size_t)tokens[t] * erow, x_.data() + t * d, d);

    // the tokens' rotations, once for every layer's q and k
    each_token(pool, n, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; t++) rope_angles(n_past_ + t, c.n_rot, rope_inv_freq_.data(), rope_cs_.data() + t * c.n_rot);
    });

    for (size_t l = 0; l < m.layers.size(); l++) {
        const LayerWeights& L = m.layers[l];
        const CpuLayerWeights& W = weights_->layers[l];
        // the previous layer's FFN output joins the residual stream here
        each_token(pool, n, [&](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; t++) {
                if (l > 0)
                    for (int64_t i = t * d; i < (t + 1) * d; i++) x_[i] += xn_[i];
                rmsnorm(x_.data() + t * d, (const float*)L.attn_norm.data, xn_.data() + t * d, d, c.rms_eps);
            }
        });
        project({{&W.wq, q_.data()}, {&W.wk, k_.data()}, {&W.wv, v_.data()}}, xn_.data(), n, pool);
        add_bias(q_.data(), L.bq, n, d);
        add_bias(k_.data(), L.bk, n, kvd);
        add_bias(v_.data(), L.bv, n, kvd);
        each_token(pool, n, [&](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; t++) {
                rope(q_.data() + t * d, n_head, hd, c.n_rot, rope_cs_.data() + t * c.n_rot, m.rope_mode());
                rope(k_.data() + t * kvd, n_head_kv, hd, c.n_rot, rope_cs_.data() + t * c.n_rot, m.rope_mode());
            }
        });
        if (!turbo_.empty()) {
            // TurboAttention: each token joins the compressed cache, then attends to it as it
            // stands (causal by construction). Per segment of one block: append the segment,
            // then every token of it attends at its own length (turbo_attend).
            TurboKvCache& tc = *turbo_[l];
            const int64_t T = tc.layout().block_tokens;
            for (int64_t o = 0; o < n;) {
                const int64_t seg = std::min(n - o, T - (n_past_ + o) % T);
                tc.append_tokens(0, (int)seg, k_.data() + o * kvd, v_.data() + o * kvd, &pool);
                turbo_attend(tc, 0, (int)(n_past_ + o), (int)seg, q_.data() + o * d, (int)n_head, attn_.data() + o * d,
                             &pool);
                o += seg;
            }
        } else {
            each_token(pool, n, [&](int64_t t0, int64_t t1) {
                for (int64_t t = t0; t < t1; t++) {
                    cpu_attention::store_row(k_.data() + t * kvd, k_cache_[l].data() + (size_t)(n_past_ + t) * kvd * kv_elem,
                                             (int)kvd, kv_type_);
                    cpu_attention::store_row(v_.data() + t * kvd, v_cache_[l].data() + (size_t)(n_past_ + t) * kvd * kv_elem,
                                             (int)kvd, kv_type_);
                }
            });
            // attention: token t sees positions [0, n_past + t]. Decode, with 2 or more query
            // heads a KV head: one task per (KV head, part of its group of query heads);
            // attend_causal converts each key block once for the part's heads, which pays off
            // from 2 heads on. A group is split only to give every thread a task, into at most
            // group / kDecodeRows parts. Decode without grouped heads: one task per head
            // (attend). Prefill: one task per (KV head, tile of `tile` tokens), the tiles with
            // the most keys first. A tile of 32 tokens converts each key block once for 4x the
            // rows of one of 8 (bench-cpu-attention, one Zen 5 core, 2,000 keys: hd 64 group 3
            // 1.12x, group 7-8 1.04-1.07x, hd 128 group 4 1.07x); tiles halve, down to 8 tokens,
            // while they would give over 256 rows or fewer than 4 tasks a thread.
            const uint8_t* kc = k_cache_[l].data();
            const uint8_t* vc = v_cache_[l].data();
            if (n == 1 && group < 2) {
                pool.parallel_for(n_head, [&](int64_t begin, int64_t end) {
                    for (int64_t h = begin; h < end; h++) {
                        const int64_t kvh = h / group;
                        cpu_attention::attend(q_.data() + h * hd, kc + (size_t)(kvh * hd) * kv_elem,
                                              vc + (size_t)(kvh * hd) * kv_elem, n_past_ + 1, kvd, (int)hd, scale,
                                              kv_type_, attn_.data() + h * hd);
                    }
                });
            } else if (n == 1) {
                constexpr int64_t kDecodeRows = 2;
                const int64_t want = (pool.size() + n_head_kv - 1) / n_head_kv;
                const int64_t parts = std::max<int64_t>(1, std::min(want, group / kDecodeRows));
                const int64_t rows = (group + parts - 1) / parts;
                pool.parallel_for(n_head_kv * parts, [&](int64_t begin, int64_t end) {
                    for (int64_t task = begin; task < end; task++) {
                        const int64_t kvh = task / parts, g0 = task % parts * rows, g1 = std::min(group, g0 + rows);
                        if (g0 >= g1) continue;
                        const int64_t col = (kvh * group + g0) * hd;
                        cpu_attention::attend_causal(q_.data() + col, d, 1, (int)(g1 - g0), n_past_,
                                                     kc + (size_t)(kvh * hd) * kv_elem, vc + (size_t)(kvh * hd) * kv_elem,
                                                     kvd, (int)hd, scale, kv_type_, attn_.data() + col, d);
                    }
                }, 1);
            } else {
                int64_t tile = 32;
                while (tile > 8 && (tile * group > 256 || (n + tile - 1) / tile * n_head_kv < 4 * (int64_t)pool.size()))
                    tile /= 2;
                const int64_t tiles = (n + tile - 1) / tile;
                pool.parallel_for(tiles * n_head_kv, [&](int64_t begin, int64_t end) {
                    for (int64_t task = begin; task < end; task++) {
                        const int64_t t0 = (tiles - 1 - task / n_head_kv) * tile, kvh = task % n_head_kv;
                        const int64_t col = kvh * group * hd;
                        cpu_attention::attend_causal(q_.data() + t0 * d + col, d, (int)std::min(tile, n - t0),
                                                     (int)group, n_past_ + t0, kc + (size_t)(kvh * hd) * kv_elem,
                                                     vc + (size_t)(kvh * hd) * kv_elem, kvd, (int)hd, scale, kv_type_,
                                                     attn_.data() + t0 * d + col, d);
                    }
                }, 1);
            }
        }
        project({{&W.wo, xn_.data()}}, attn_.data(), n, pool);
        each_token(pool, n, [&](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; t++) {
                for (int64_t i = t * d; i < (t + 1) * d; i++) x_[i] += xn_[i];
                rmsnorm(x_.data() + t * d, (const float*)L.ffn_norm.data, xn_.data() + t * d, d, c.rms_eps);
            }
        });
        project({{&W.w_gate, gate_.data()}, {&W.w_up, up_.data()}}, xn_.data(), n, pool);
        each_token(pool, n, [&](int64_t t0, int64_t t1) {
            cpu_ops::silu_mul(gate_.data() + t0 * ff, up_.data() + t0 * ff, (t1 - t0) * ff);
        });
        project({{&W.w_down, xn_.data()}}, gate_.data(), n, pool);
    }
    if (!m.layers.empty())
        for (int64_t i = 0; i < n * d; i++) x_[i] += xn_[i];  // the last layer's FFN output
    n_past_ += n;

    if (!logits_out) return;
    const int64_t first = all_logits ? 0 : n - 1;
    for (int64_t t = first; t < n; t++)
        rmsnorm(x_.data() + t * d, (const float*)m.output_norm.data, xn_.data() + (t - first) * d, d, c.rms_eps);
    project({{&weights_->output, logits_out}}, xn_.data(), n - first, pool);
}

}  // namespace tandem

namespace tandem {

std::vector<std::vector<uint8_t>> calibrate_turbo_head_bits(std::shared_ptr<const Model> model,
                                                            const std::vector<int32_t>& tokens, float frac_2bit,
                                                            std::vector<std::vector<double>>* scores) {
    const ModelConfig& c = model->config();
    const int64_t n = std::min<int64_t>((int64_t)tokens.size(), std::min<int64_t>(c.n_ctx_train, 1024));
    if (n < 16) throw std::invalid_argument("head calibration needs at least 16 tokens of text");
    ContextParams cp;
    cp.n_ctx = n;
    cp.n_batch = n;
    cp.kv_type = GgmlType::F32;
    InferenceContext ctx(model, cp);
    ctx.eval(tokens.data(), n);
    const int64_t hd = model->head_dim(), kvd = model->kv_dim();
    std::vector<std::vector<uint8_t>> out;
    if (scores) scores->clear();
    std::vector<float> k((size_t)kvd), v((size_t)kvd), kh((size_t)(n * hd)), vh((size_t)(n * hd));
    for (int64_t l = 0; l < c.n_layer; l++) {
        std::vector<double> prio;
        for (int64_t h = 0; h < c.n_head_kv; h++) {
            for (int64_t p = 0; p < n; p++) {
                ctx.read_kv(l, p, k.data(), v.data());
                std::copy(k.begin() + h * hd, k.begin() + (h + 1) * hd, kh.begin() + p * hd);
                std::copy(v.begin() + h * hd, v.begin() + (h + 1) * hd, vh.begin() + p * hd);
            }
            prio.push_back(turbo_head_priority(kh.data(), vh.data(), kh.size()));
        }
        out.push_back(turbo_choose_bits(prio, frac_2bit));
        if (scores) scores->push_back(prio);
    }
    return out;
}

}  // namespace tandem
