// An independent reference forward pass for the engine tests: naive loops in double
// precision over fully dequantized weights. It shares no code with client_engine's forward
// pass, matmul kernels or attention; only the GGUF reader and the reference dequantizers
// (tested on their own against hand-computed blocks) are used to get at the weights.
#pragma once
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "tandem/gguf.h"
#include "tandem/quant_types.h"

namespace tandem_test {

class ReferenceLlama {
public:
    explicit ReferenceLlama(const std::string& path) : f_(tandem::GgufFile::open(path)) {
        arch_ = f_.get_string("general.architecture");
        const std::string a = arch_ + ".";
        n_layer_ = f_.get_int(a + "block_count");
        d_ = f_.get_int(a + "embedding_length");
        n_head_ = f_.get_int(a + "attention.head_count");
        n_head_kv_ = f_.opt_int(a + "attention.head_count_kv").value_or(n_head_);
        hd_ = d_ / n_head_;
        n_rot_ = f_.opt_int(a + "rope.dimension_count").value_or(hd_);
        base_ = f_.opt_float(a + "rope.freq_base").value_or(10000.0);
        eps_ = f_.opt_float(a + "attention.layer_norm_rms_epsilon").value_or(1e-5);
        neox_ = arch_ == "qwen2";
        emb_ = load("token_embd.weight");
        n_vocab_ = (int64_t)emb_.size() / d_;
        out_ = f_.find_tensor("output.weight") ? load("output.weight") : emb_;
        if (f_.find_tensor("rope_freqs.weight")) freq_factors_ = load("rope_freqs.weight");
    }

    int64_t n_vocab() const { return n_vocab_; }

    // Logits (n_vocab) after each of tokens, evaluated from an empty cache.
    std::vector<std::vector<double>> forward(const std::vector<int32_t>& tokens) {
        const int64_t n = (int64_t)tokens.size(), kvd = hd_ * n_head_kv_;
        std::vector<std::vector<double>> x(n, std::vector<double>(d_));
        for (int64_t t = 0; t < n; t++)
            for (int64_t i = 0; i < d_; i++) x[t][i] = emb_[tokens[t] * d_ + i];
        for (int64_t l = 0; l < n_layer_; l++) {
            const std::string p = "blk." + std::to_string(l) + ".";
            std::vector<std::vector<double>> q(n), k(n), v(n);
            for (int64_t t = 0; t < n; t++) {
                auto h = norm(x[t], load(p + "attn_norm.weight"));
                q[t] = matvec(p + "attn_q", h, d_);
                k[t] = matvec(p + "attn_k", h, kvd);
                v[t] = matvec(p + "attn_v", h, kvd);
                rope(q[t], n_head_, t);
                rope(k[t], n_head_kv_, t);
            }
            for (int64_t t = 0; t < n; t++) {
                std::vector<double> att(d_, 0.0);
                for (int64_t h = 0; h < n_head_; h++) {
                    const int64_t kh = h / (n_head_ / n_head_kv_);
                    std::vector<double> s(t + 1);
                    double mx = -1e300;
                    for (int64_t j = 0; j <= t; j++) {
                        double dot = 0;
                        for (int64_t i = 0; i < hd_; i++) dot += q[t][h * hd_ + i] * k[j][kh * hd_ + i];
                        s[j] = dot / std::sqrt((double)hd_);
                        mx = std::max(mx, s[j]);
                    }
                    double sum = 0;
                    for (auto& e : s) { e = std::exp(e - mx); sum += e; }
                    for (int64_t j = 0; j <= t; j++)
                        for (int64_t i = 0; i < hd_; i++) att[h * hd_ + i] += s[j] / sum * v[j][kh * hd_ + i];
                }
                auto o = matvec(p + "attn_output", att, d_);
                for (int64_t i = 0; i < d_; i++) x[t][i] += o[i];
                auto h2 = norm(x[t], load(p + "ffn_norm.weight"));
                auto g = matvec(p + "ffn_gate", h2, -1);
                auto u = matvec(p + "ffn_up", h2, -1);
                for (size_t i = 0; i < g.size(); i++) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
                auto dn = matvec(p + "ffn_down", g, d_);
                for (int64_t i = 0; i < d_; i++) x[t][i] += dn[i];
            }
        }
        std::vector<std::vector<double>> logits(n, std::vector<double>(n_vocab_));
        const auto onorm = load("output_norm.weight");
        for (int64_t t = 0; t < n; t++) {
            auto h = norm(x[t], onorm);
            for (int64_t r = 0; r < n_vocab_; r++) {
                double s = 0;
                for (int64_t i = 0; i < d_; i++) s += out_[r * d_ + i] * h[i];
                logits[t][r] = s;
            }
        }
        return logits;
    }

private:
    std::vector<double> load(const std::string& name) {
        auto it = cache_.find(name);
        if (it != cache_.end()) return it->second;
        const tandem::GgufTensorInfo* t = f_.find_tensor(name);
        if (!t) throw std::runtime_error("reference: missing tensor " + name);
        std::vector<float> tmp(t->n_elements);
        tandem::type_traits(t->type).to_float(f_.tensor_data(*t), tmp.data(), (int64_t)t->n_elements);
        std::vector<double> out(tmp.begin(), tmp.end());
        cache_[name] = out;
        return out;
    }
    std::vector<double> norm(const std::vector<double>& x, const std::vector<double>& w) {
        double ss = 0;
        for (double e : x) ss += e * e;
        const double s = 1.0 / std::sqrt(ss / x.size() + eps_);
        std::vector<double> y(x.size());
        for (size_t i = 0; i < x.size(); i++) y[i] = x[i] * s * w[i];
        return y;
    }
    // y = W x (+ bias when the file has one); W stored (cols = x.size(), rows)
    std::vector<double> matvec(const std::string& base, const std::vector<double>& x, int64_t) {
        const auto w = load(base + ".weight");
        const int64_t cols = (int64_t)x.size(), rows = (int64_t)w.size() / cols;
        std::vector<double> y(rows, 0.0);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) y[r] += w[r * cols + c] * x[c];
        if (f_.find_tensor(base + ".bias")) {
            const auto b = load(base + ".bias");
            for (int64_t r = 0; r < rows; r++) y[r] += b[r];
        }
        return y;
    }
    void rope(std::vector<double>& v, int64_t n_heads, int64_t pos) {
        for (int64_t h = 0; h < n_heads; h++)
            for (int64_t i = 0; i < n_rot_ / 2; i++) {
                double freq = std::pow(base_, -2.0 * i / n_rot_);
                if (!freq_factors_.empty()) freq /= freq_factors_[i];
                const double th = pos * freq;
                const int64_t a = h * hd_ + (neox_ ? i : 2 * i), b = h * hd_ + (neox_ ? i + n_rot_ / 2 : 2 * i + 1);
                const double x0 = v[a], x1 = v[b];
                v[a] = x0 * std::cos(th) - x1 * std::sin(th);
                v[b] = x0 * std::sin(th) + x1 * std::cos(th);
            }
    }

    tandem::GgufFile f_;
    std::string arch_;
    int64_t n_layer_, d_, n_head_, n_head_kv_, hd_, n_rot_, n_vocab_;
    double base_, eps_;
    bool neox_;
    std::vector<double> emb_, out_, freq_factors_;
    std::map<std::string, std::vector<double>> cache_;
};

}  // namespace tandem_test
