// TurboAttention KV cache formats: blockwise INT8, progressive INT4/INT2 with integer
// scales and zero points, the recent-token buffer, and the cache that owns the bytes.
// These are the plain twins of what the CUDA kernels read (tandem/turbo_attention.h).
#include "tandem/turbo_attention.h"
#include "tandem/thread_pool.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace tandem {

// ---- config and layout ---------------------------------------------------------------------

void turbo_validate(const TurboConfig& c) {
    if (c.head_dim != 64 && c.head_dim != 128)
        throw TurboError("head_dim must be 64 or 128, got " + std::to_string(c.head_dim));
    if (c.block_tokens != 32 && c.block_tokens != 64)
        throw TurboError("block_tokens must be 32 or 64, got " + std::to_string(c.block_tokens));
    if (c.v_group < 8 || c.head_dim % c.v_group != 0 || (c.v_group & (c.v_group - 1)))
        throw TurboError("v_group must be a power of two >= 8 dividing head_dim, got " +
                         std::to_string(c.v_group));
    if (!(c.frac_2bit >= 0.0f && c.frac_2bit <= 1.0f))
        throw TurboError("frac_2bit must be in [0, 1]");
    if (c.poly_degree != 2 && c.poly_degree != 3)
        throw TurboError("poly_degree must be 2 or 3, got " + std::to_string(c.poly_degree));
    if (!(c.threshold <= -1.0f && c.threshold >= -60.0f))
        throw TurboError("threshold must be in [-60, -1] (log2 units)");
}

static uint32_t align16(uint32_t x) { return (x + 15u) & ~15u; }

TurboCacheLayout turbo_make_layout(const TurboConfig& c, int n_kv_heads, int max_tokens,
                                   const std::vector<uint8_t>& head_bits) {
    turbo_validate(c);
    if (n_kv_heads < 1 || n_kv_heads > kTurboMaxKvHeads)
        throw TurboError("n_kv_heads must be in [1, 64], got " + std::to_string(n_kv_heads));
    if ((int)head_bits.size() != n_kv_heads)
        throw TurboError("head_bits has " + std::to_string(head_bits.size()) +
                         " entries, expected n_kv_heads = " + std::to_string(n_kv_heads));
    if (max_tokens < 1) throw TurboError("max_tokens must be >= 1");
    TurboCacheLayout L;
    L.n_kv_heads = n_kv_heads;
    L.head_dim = c.head_dim;
    L.block_tokens = c.block_tokens;
    L.v_group = c.v_group;
    L.max_blocks = max_tokens / c.block_tokens;
    const uint32_t D = c.head_dim, T = c.block_tokens;
    L.meta_bytes = align16(8 + 2 * D + 2 * T * D / c.v_group);
    uint64_t off = 0;
    for (int h = 0; h < n_kv_heads; ++h) {
        const int b = head_bits[h];
        if (b != 4 && b != 2) throw TurboError("head_bits[" + std::to_string(h) + "] must be 4 or 2");
        L.bits[h] = (uint8_t)b;
        L.rec_bytes[h] = align16(L.meta_bytes + 2 * T * D * b / 8);
        L.head_off[h] = off;
        off += (uint64_t)L.rec_bytes[h] * L.max_blocks;
    }
    L.seq_bytes = off;
    return L;
}

// ---- integer quantizers --------------------------------------------------------------------

float turbo_quant_int8(const float* x, int n, int8_t* q) {
    float amax = 0.0f;
    for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
    if (amax == 0.0f) {
        std::memset(q, 0, (size_t)n);
        return 0.0f;
    }
    const float scale = amax / 127.0f, inv = 127.0f / amax;
    for (int i = 0; i < n; ++i) q[i] = (int8_t)std::clamp((int)std::lrintf(x[i] * inv), -127, 127);
    return scale;
}

void turbo_quant_group(const int8_t* x, int n, int stride, int bits, uint8_t* codes,
                       uint8_t* sc_out, int8_t* zp_out) {
    int mn = 127, mx = -127;
    for (int i = 0; i < n; ++i) {
        mn = std::min(mn, (int)x[i * stride]);
        mx = std::max(mx, (int)x[i * stride]);
    }
    if (mn > mx) mn = mx = 0;  // n == 0
    const int qmax = (1 << bits) - 1;
    const int sc = std::max(1, (mx - mn + qmax - 1) / qmax);    // ceil, >= 1, <= 254/3 < 256
    const int cap = std::min(qmax, (127 - mn) / sc);            // keeps code*sc+zp <= 127
    // code = floor((x - mn + sc / 2) / sc), the numerator in [0, 381]: as (num * m) >> 20 with
    // m = ceil(2^20 / sc), whose excess num (m sc - 2^20) / (sc 2^20) < 1 / sc never reaches the
    // next integer (for num < 2^20 / 255); a multiply instead of a division per element.
    const uint32_t m = ((1u << 20) + (uint32_t)sc - 1) / (uint32_t)sc;
    for (int i = 0; i < n; ++i) {
        const uint32_t num = (uint32_t)(x[i * stride] - mn + sc / 2);
        codes[i] = (uint8_t)std::min((int)((num * m) >> 20), cap);
    }
    *sc_out = (uint8_t)sc;
    *zp_out = (int8_t)mn;
}

// Re-quantizes T per-token INT8 rows (scales ts) to one block scale; returns it.
static float to_block_int8(const int8_t* q, const float* ts, int T, int D, int8_t* out) {
    float s = 0.0f;
    for (int t = 0; t < T; ++t) s = std::max(s, ts[t]);
    for (int t = 0; t < T; ++t) {
        const float r = s > 0.0f ? ts[t] / s : 0.0f;  // <= 1, so |result| <= 127
        for (int d = 0; d < D; ++d) out[t * D + d] = (int8_t)std::lrintf(q[t * D + d] * r);
    }
    return s;
}

static void pack_codes(const uint8_t* codes, int n, int bits, uint8_t* dst) {
    const int per = 8 / bits;
    std::memset(dst, 0, (size_t)n / per);
    for (int i = 0; i < n; ++i) dst[i / per] |= (uint8_t)(codes[i] << (bits * (i % per)));
}

// ---- block compression and expansion -------------------------------------------------------

void turbo_compress_block(const TurboCacheLayout& L, int bits, const int8_t* k8t,
                          const float* ks, const int8_t* v8t, const float* vs, uint8_t* rec) {
    const int D = L.head_dim, T = L.block_tokens, G = L.v_group, ng = D / G;
    std::vector<int8_t> k8((size_t)T * D), v8((size_t)T * D);
    std::vector<uint8_t> kc((size_t)T * D), vc((size_t)T * D);
    const float k_scale = to_block_int8(k8t, ks, T, D, k8.data());
    const float v_scale = to_block_int8(v8t, vs, T, D, v8.data());
    std::memcpy(rec, &k_scale, 4);
    std::memcpy(rec + 4, &v_scale, 4);
    uint8_t* k_sc = rec + 8;
    int8_t* k_zp = (int8_t*)(rec + 8 + D);
    uint8_t* v_sc = rec + 8 + 2 * D;
    int8_t* v_zp = (int8_t*)(rec + 8 + 2 * D + T * ng);
    // keys: one group per channel over the block's tokens (KIVI)
    std::vector<uint8_t> col((size_t)T);
    for (int d = 0; d < D; ++d) {
        turbo_quant_group(k8.data() + d, T, D, bits, col.data(), &k_sc[d], &k_zp[d]);
        for (int t = 0; t < T; ++t) kc[(size_t)t * D + d] = col[t];
    }
    // values: groups of G channels within each token
    for (int t = 0; t < T; ++t)
        for (int g = 0; g < ng; ++g)
            turbo_quant_group(v8.data() + t * D + g * G, G, 1, bits, vc.data() + t * D + g * G,
                              &v_sc[t * ng + g], &v_zp[t * ng + g]);
    std::vector<uint8_t> vct((size_t)T * D);  // values channel-major: (D, T)
    for (int t = 0; t < T; ++t)
        for (int d = 0; d < D; ++d) vct[(size_t)d * T + t] = vc[(size_t)t * D + d];
    pack_codes(kc.data(), T * D, bits, rec + L.meta_bytes);
    pack_codes(vct.data(), T * D, bits, rec + L.meta_bytes + T * D * bits / 8);
}

// Element i of a code row (n a multiple of 8 / Bits): the codes of each byte unpacked first, then
// code * sc + zp over the row, so that both loops are plain enough for the compiler to vectorize.
template <int Bits>
static void expand_row(const uint8_t* codes, int n, const uint8_t* sc, const int8_t* zp, int8_t* out) {
    constexpr int per = 8 / Bits, mask = (1 << Bits) - 1;
    uint8_t c[256];
    for (int i = 0; i < n / per; ++i)
        for (int j = 0; j < per; ++j) c[i * per + j] = (uint8_t)((codes[i] >> (Bits * j)) & mask);
    for (int i = 0; i < n; ++i) out[i] = (int8_t)turbo_expand(c[i], sc[i], zp[i]);
}

void turbo_expand_keys(const TurboCacheLayout& L, int bits, const uint8_t* rec, int8_t* k8, float* k_scale) {
    const int D = L.head_dim, T = L.block_tokens;
    std::memcpy(k_scale, rec, 4);
    const uint8_t* k_sc = rec + 8;
    const int8_t* k_zp = (const int8_t*)(rec + 8 + D);
    const uint8_t* kq = rec + L.meta_bytes;
    const int row_bytes = D * bits / 8;
    for (int t = 0; t < T; ++t) {
        if (bits == 4) expand_row<4>(kq + t * row_bytes, D, k_sc, k_zp, k8 + t * D);
        else expand_row<2>(kq + t * row_bytes, D, k_sc, k_zp, k8 + t * D);
    }
}

void turbo_expand_values(const TurboCacheLayout& L, int bits, const uint8_t* rec, int8_t* v8c, float* v_scale) {
    const int D = L.head_dim, T = L.block_tokens, G = L.v_group, ng = D / G;
    std::memcpy(v_scale, rec + 4, 4);
    const uint8_t* v_sc = rec + 8 + 2 * D;
    const int8_t* v_zp = (const int8_t*)(rec + 8 + 2 * D + T * ng);
    const uint8_t* vq = rec + L.meta_bytes + T * D * bits / 8;
    const int row_bytes = T * bits / 8;
    uint8_t sc[256];  // the channel group's scales and zero points over the T tokens
    int8_t zp[256];
    for (int d = 0; d < D; ++d) {
        if (d % G == 0)  // a new channel group: its scales and zero points over the tokens
            for (int t = 0; t < T; ++t) {
                sc[t] = v_sc[t * ng + d / G];
                zp[t] = v_zp[t * ng + d / G];
            }
        if (bits == 4) expand_row<4>(vq + d * row_bytes, T, sc, zp, v8c + d * T);
        else expand_row<2>(vq + d * row_bytes, T, sc, zp, v8c + d * T);
    }
}

void turbo_expand_block(const TurboCacheLayout& L, int bits, const uint8_t* rec, int8_t* k8,
                        int8_t* v8, float* k_scale, float* v_scale) {
    const int D = L.head_dim, T = L.block_tokens;
    turbo_expand_keys(L, bits, rec, k8, k_scale);
    std::vector<int8_t> v8c((size_t)D * T);
    turbo_expand_values(L, bits, rec, v8c.data(), v_scale);
    for (int t = 0; t < T; ++t)
        for (int d = 0; d < D; ++d) v8[t * D + d] = v8c[(size_t)d * T + t];
}

// ---- the cache -----------------------------------------------------------------------------

TurboKvCache::TurboKvCache(const TurboConfig& c, int n_seqs, int n_kv_heads, int max_tokens,
                           const std::vector<uint8_t>& head_bits)
    : cfg_(c), L_(turbo_make_layout(c, n_kv_heads, max_tokens, head_bits)), n_seqs_(n_seqs), max_tokens_(max_tokens) {
    if (n_seqs < 1) throw TurboError("n_seqs must be >= 1");
    const size_t T = (size_t)c.block_tokens, D = (size_t)c.head_dim, H = (size_t)n_kv_heads;
    len_.assign((size_t)n_seqs, 0);
    blocks_.assign(L_.seq_bytes * n_seqs, 0);
    rk_.assign(n_seqs * H * T * D, 0);
    rv_.assign(n_seqs * H * T * D, 0);
    rks_.assign(n_seqs * H * T, 0.0f);
    rvs_.assign(n_seqs * H * T, 0.0f);
}

void TurboKvCache::append(int seq, const float* k, const float* v) { append_tokens(seq, 1, k, v, nullptr); }

void TurboKvCache::append_tokens(int seq, int n, const float* k, const float* v, ThreadPool* pool) {
    if (seq < 0 || seq >= n_seqs_) throw TurboError("append: seq " + std::to_string(seq) + " out of range");
    const int T = L_.block_tokens, D = L_.head_dim, H = L_.n_kv_heads;
    int& len = len_[(size_t)seq];
    // max_tokens, not max_blocks * T: a last block that never fills stays in the recent buffer
    if (n < 0 || n > max_tokens_ - len)
        throw TurboError("append: sequence " + std::to_string(seq) + " holds " + std::to_string(len) + " tokens; " +
                         std::to_string(n) + " more would pass full (" + std::to_string(max_tokens_) + " tokens)");
    auto heads = [&](int64_t h0, int64_t h1) {
        int8_t vq[128];
        std::vector<int8_t> v8;
        for (int h = (int)h0; h < (int)h1; ++h) {
            const size_t row = ((size_t)seq * H + h) * T;
            for (int i = 0; i < n; ++i) {
                const int pos = len + i, slot = pos % T, blk = pos / T;
                const float* kh = k + ((size_t)i * H + h) * D;
                const float* vh = v + ((size_t)i * H + h) * D;
                rks_[row + slot] = turbo_quant_int8(kh, D, &rk_[(row + slot) * D]);
                rvs_[row + slot] = turbo_quant_int8(vh, D, vq);
                for (int d = 0; d < D; ++d) rv_[row * D + (size_t)d * T + slot] = vq[d];  // column `slot`
                if (slot == T - 1) {
                    uint8_t* rec = blocks_.data() + (size_t)seq * L_.seq_bytes + L_.head_off[h] +
                                   (size_t)blk * L_.rec_bytes[h];
                    v8.resize((size_t)T * D);  // back to token-major for the compressor
                    for (int t = 0; t < T; ++t)
                        for (int d = 0; d < D; ++d) v8[(size_t)t * D + d] = rv_[row * D + (size_t)d * T + t];
                    turbo_compress_block(L_, L_.bits[h], &rk_[row * D], &rks_[row], v8.data(), &rvs_[row], rec);
                }
            }
        }
    };
    if (pool && n > 0) pool->parallel_for(H, heads, 1);
    else heads(0, H);
    len += n;
}

int TurboKvCache::truncate(int seq, int n) {
    if (seq < 0 || seq >= n_seqs_) throw TurboError("truncate: seq " + std::to_string(seq) + " out of range");
    int& len = len_[(size_t)seq];
    len = (int)turbo_truncate_keep(n, len, L_.block_tokens);  // the kept slots and records stay as they are
    return len;
}

void TurboKvCache::dequantize(int seq, float* k, float* v) const {
    const int T = L_.block_tokens, D = L_.head_dim, H = L_.n_kv_heads, len = length(seq);
    std::vector<int8_t> k8((size_t)T * D), v8((size_t)T * D);
    for (int h = 0; h < H; ++h) {
        float* kh = k + (size_t)h * len * D;
        float* vh = v + (size_t)h * len * D;
        for (int b = 0; b < len / T; ++b) {
            const uint8_t* rec = blocks_.data() + (size_t)seq * L_.seq_bytes + L_.head_off[h] +
                                 (size_t)b * L_.rec_bytes[h];
            float ks, vs;
            turbo_expand_block(L_, L_.bits[h], rec, k8.data(), v8.data(), &ks, &vs);
            for (int i = 0; i < T * D; ++i) {
                kh[(size_t)b * T * D + i] = ks * k8[i];
                vh[(size_t)b * T * D + i] = vs * v8[i];
            }
        }
        const size_t row = ((size_t)seq * H + h) * T;
        for (int t = (len / T) * T; t < len; ++t) {
            const int s = t % T;
            for (int d = 0; d < D; ++d) {
                kh[(size_t)t * D + d] = rks_[row + s] * rk_[(row + s) * D + d];
                vh[(size_t)t * D + d] = rvs_[row + s] * rv_[row * D + (size_t)d * T + s];
            }
        }
    }
}

size_t TurboKvCache::bytes_for(int n_tokens) const {
    const size_t T = (size_t)L_.block_tokens, D = (size_t)L_.head_dim;
    size_t bytes = 0;
    for (int h = 0; h < L_.n_kv_heads; ++h)
        bytes += (size_t)(n_tokens / (int)T) * L_.rec_bytes[h] + 2 * T * (D + 4);
    return bytes;
}

}  // namespace tandem
