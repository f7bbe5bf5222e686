// Reference attentions: the TurboAttention decode twin on the quantized cache, and exact
// float64 softmax attention (the yardstick for every kernel test).
#include "tandem/turbo_attention.h"

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
