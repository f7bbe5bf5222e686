// Reference attentions: the TurboAttention decode twin on the quantized cache, and exact
// float64 softmax attention (the yardstick for every kernel test).
#include "tandem/turbo_attention.h"
#include "tandem/quant_types.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tandem {

static constexpr float kLog2e = 1.4426950408889634f;

void turbo_decode_ref(const TurboKvCache& cache, int seq, const float* q, int n_q_heads,
                      float* out) {
    const TurboCacheLayout& L = cache.layout();
    const int H = L.n_kv_heads, D = L.head_dim, len = cache.length(seq);
    if (n_q_heads < H || n_q_heads % H != 0)
        throw TurboError("n_q_heads must be a multiple of n_kv_heads");
    if (len == 0) throw TurboError("decode on an empty sequence");
    const int group = n_q_heads / H;
    std::vector<float> k((size_t)H * len * D), v((size_t)H * len * D), s((size_t)len);
    cache.dequantize(seq, k.data(), v.data());
    const float qscale = kLog2e / std::sqrt((float)D);  // scores in log2 units
    const TurboConfig& c = cache.config();
    for (int i = 0; i < n_q_heads; ++i) {
        const float* kh = k.data() + (size_t)(i / group) * len * D;
        const float* vh = v.data() + (size_t)(i / group) * len * D;
        float m = -std::numeric_limits<float>::infinity();
        for (int t = 0; t < len; ++t) {
            float acc = 0.0f;
            for (int d = 0; d < D; ++d) acc += q[(size_t)i * D + d] * qscale * kh[(size_t)t * D + d];
            s[t] = acc;
            m = std::max(m, acc);
        }
        float l = 0.0f;
        float* o = out + (size_t)i * D;
        std::fill(o, o + D, 0.0f);
        for (int t = 0; t < len; ++t) {
            const float p = turbo_sas_exp2(s[t] - m, c.poly_degree, c.threshold);
            if (p == 0.0f) continue;
            l += p;
            for (int d = 0; d < D; ++d) o[d] += p * vh[(size_t)t * D + d];
        }
        for (int d = 0; d < D; ++d) o[d] /= l;
    }
}

// Rounds to the nearest FP16 value (the P operand of the P.V tensor-core product).
static float to_half(float x) { return fp16_to_fp32(fp32_to_fp16(x)); }

void turbo_prefill_ref(const float* q, const float* k, const float* v, int n_q_heads,
                       int n_kv_heads, int len, int D, int degree, float threshold, float* out,
                       bool sas) {
    constexpr int B = 64;
    if (len < B || len % B != 0) throw TurboError("prefill: len must be a positive multiple of 64");
    if (n_q_heads % n_kv_heads != 0) throw TurboError("n_q_heads must be a multiple of n_kv_heads");
    const int nb = len / B, group = n_q_heads / n_kv_heads;
    // blockwise INT8 of Q and K: one scale per (head, 64 tokens x D)
    auto quant = [&](const float* x, int H, std::vector<int8_t>& q8, std::vector<float>& sc) {
        q8.resize((size_t)H * len * D);
        sc.resize((size_t)H * nb);
        for (int h = 0; h < H; ++h)
            for (int b = 0; b < nb; ++b) {
                const size_t off = ((size_t)h * len + (size_t)b * B) * D;
                sc[(size_t)h * nb + b] = turbo_quant_int8(x + off, B * D, q8.data() + off);
            }
    };
    std::vector<int8_t> q8, k8;
    std::vector<float> qs, ks;
    quant(q, n_q_heads, q8, qs);
    quant(k, n_kv_heads, k8, ks);
    const float qk = kLog2e / std::sqrt((float)D);
    std::vector<float> s((size_t)len);
    for (int h = 0; h < n_q_heads; ++h) {
        const int hk = h / group;
        for (int i = 0; i < len; ++i) {
            const int8_t* qi = &q8[((size_t)h * len + i) * D];
            const float sq = qs[(size_t)h * nb + i / B] * qk;
            float m = -std::numeric_limits<float>::infinity();
            for (int t = 0; t <= i; ++t) {
                const int8_t* kt = &k8[((size_t)hk * len + t) * D];
                int32_t acc = 0;
                for (int d = 0; d < D; ++d) acc += (int32_t)qi[d] * kt[d];
                s[t] = (float)acc * (sq * ks[(size_t)hk * nb + t / B]);
                m = std::max(m, s[t]);
            }
            double l = 0.0;
            float* o = out + ((size_t)h * len + i) * D;
            std::vector<double> acc((size_t)D, 0.0);
            for (int t = 0; t <= i; ++t) {
                const float p = sas ? turbo_sas_exp2(s[t] - m, degree, threshold) : std::exp2(s[t] - m);
                if (p == 0.0f) continue;
                l += p;
                const float ph = to_half(p);
                const float* vt = v + ((size_t)hk * len + t) * D;
                for (int d = 0; d < D; ++d) acc[d] += (double)ph * vt[d];
            }
            for (int d = 0; d < D; ++d) o[d] = (float)(acc[d] / l);
        }
    }
}

void attention_exact_f64(const float* q, const float* k, const float* v, int n_q_heads,
                         int n_kv_heads, int len, int D, double* out) {
    const int group = n_q_heads / n_kv_heads;
    std::vector<double> s((size_t)len);
    const double scale = 1.0 / std::sqrt((double)D);
    for (int i = 0; i < n_q_heads; ++i) {
        const float* kh = k + (size_t)(i / group) * len * D;
        const float* vh = v + (size_t)(i / group) * len * D;
        double m = -std::numeric_limits<double>::infinity();
        for (int t = 0; t < len; ++t) {
            double acc = 0.0;
            for (int d = 0; d < D; ++d) acc += (double)q[(size_t)i * D + d] * kh[(size_t)t * D + d];
            s[t] = acc * scale;
            m = std::max(m, s[t]);
        }
        double l = 0.0;
        double* o = out + (size_t)i * D;
        std::fill(o, o + D, 0.0);
        for (int t = 0; t < len; ++t) {
            const double p = std::exp(s[t] - m);
            l += p;
            for (int d = 0; d < D; ++d) o[d] += p * vh[(size_t)t * D + d];
        }
        for (int d = 0; d < D; ++d) o[d] /= l;
    }
}

}  // namespace tandem
