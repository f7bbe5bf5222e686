// TurboAttention (FlashQ + SAS) for Tandem: the KV cache formats, their CPU twins, and the
// plain parameter structs the CUDA kernels take. Design, choices and measurements:
// docs/turboattention-impl.md.
//
// KV cache of one layer, per sequence b and KV head h (D = head_dim, T = block_tokens):
//
//   recent buffer   int8 k[T][D] (token-major), v[D][T] (channel-major, as the compressed
//                   value codes); float k_scale[T], v_scale[T]
//                   symmetric INT8, one scale per token (a block of one token, so appending
//                   never re-quantizes). When it holds T tokens it is compressed as a block.
//   compressed      one record per block of T tokens, at bits[h] = 4 or 2:
//     offset        size          field
//     0             4             float k_scale    blockwise symmetric INT8 scale of K
//     4             4             float v_scale    blockwise symmetric INT8 scale of V
//     8             D             u8  k_sc[D]      keys: integer scale per channel
//     8+D           D             i8  k_zp[D]      keys: integer zero point per channel
//     8+2D          T*D/Gv        u8  v_sc[T][D/Gv] values: per token and channel group
//     8+2D+T*D/Gv   T*D/Gv        i8  v_zp[T][D/Gv]
//     meta (16-aligned)  T*D*bits/8  k codes[T][D], token-major, little end first
//     +T*D*bits/8        T*D*bits/8  v codes[D][T], channel-major (tokens of a channel
//                                  adjacent: the GPU's P.V tensor-core operand)
//     record size rounded up to 16 bytes.
//   Expansion back to INT8 is integer only: q8 = code * sc + zp, always in [-127, 127]
//   (the quantizer caps codes so the product never leaves the INT8 range).
//   Real value = scale * q8. Element i of a code row: 4-bit byte i/2 bits 4*(i%2);
//   2-bit byte i/4 bits 2*(i%4) (i = channel for keys, token for values).
//
// Sequence b's compressed records: blocks + b*seq_bytes + head_off[h] + j*rec_bytes[h].
// A sequence of length L holds L / T compressed blocks and L % T recent tokens.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace tandem {

struct TurboError : std::runtime_error {
    explicit TurboError(const std::string& m) : std::runtime_error("turbo: " + m) {}
};

constexpr int kTurboMaxKvHeads = 64;

// Every parameter of the format and of SAS. Defaults: docs/turboattention-impl.md.
struct TurboConfig {
    int head_dim = 128;          // D: 64 or 128
    int block_tokens = 64;       // T: tokens per compressed block = recent buffer size
    int v_group = 64;            // Gv: value channels sharing one integer scale/zero point
    float frac_2bit = 0.25f;     // lowest-priority fraction of KV heads stored at 2 bits
    int poly_degree = 3;         // SAS: degree of the 2^-f polynomial (2 or 3)
    float threshold = -16.0f;    // SAS: probabilities 2^x with x < threshold (log2) are 0
};
// Throws TurboError naming the field when a value is unsupported.
void turbo_validate(const TurboConfig& c);

// Byte layout of one layer's cache; identical on CPU and GPU (uploaded as-is).
struct TurboCacheLayout {
    int n_kv_heads = 0, head_dim = 0, block_tokens = 0, v_group = 0, max_blocks = 0;
    uint8_t bits[kTurboMaxKvHeads] = {};        // 4 or 2 per KV head
    uint32_t rec_bytes[kTurboMaxKvHeads] = {};  // bytes of one compressed record
    uint64_t head_off[kTurboMaxKvHeads] = {};   // start of head h's records in a sequence
    uint64_t seq_bytes = 0;                     // compressed bytes per sequence
    uint32_t meta_bytes = 0;                    // offset of the k codes inside a record
};
TurboCacheLayout turbo_make_layout(const TurboConfig& c, int n_kv_heads, int max_tokens,
                                   const std::vector<uint8_t>& head_bits);

// ---- integer twins (bit-exact with the CUDA side) -----------------------------------------

// Symmetric INT8 of n floats: returns the scale (amax/127, 0 for all-zero input).
float turbo_quant_int8(const float* x, int n, int8_t* q);
// Integer asymmetric quantization of n INT8 values read with a stride: writes codes of
// `bits` bits (one per byte, unpacked) and returns sc (>= 1) and zp so that
// code*sc + zp stays in [-127, 127]. Pure integer arithmetic.
void turbo_quant_group(const int8_t* x, int n, int stride, int bits, uint8_t* codes,
                       uint8_t* sc, int8_t* zp);
inline int turbo_expand(int code, int sc, int zp) { return code * sc + zp; }

// Compresses one head's full recent buffer (k8, v8: (T, D); ks, vs: (T)) into a record.
void turbo_compress_block(const TurboCacheLayout& L, int bits, const int8_t* k8,
                          const float* ks, const int8_t* v8, const float* vs, uint8_t* rec);
// Integer-only expansion of a record back to INT8 (k8, v8: (T, D)) and its two scales.
void turbo_expand_block(const TurboCacheLayout& L, int bits, const uint8_t* rec, int8_t* k8,
                        int8_t* v8, float* k_scale, float* v_scale);
// The same for one half of a record: the keys token-major (k8: (T, D)), or the values
// channel-major as their codes are stored (v8c: (D, T)).
void turbo_expand_keys(const TurboCacheLayout& L, int bits, const uint8_t* rec, int8_t* k8, float* k_scale);
void turbo_expand_values(const TurboCacheLayout& L, int bits, const uint8_t* rec, int8_t* v8c, float* v_scale);

// ---- SAS ------------------------------------------------------------------------------------

// 2^x for x <= 0: x = -(n + f), 2^-n exact, 2^-f by a degree-2/3 polynomial evaluated in
// FP16 (Horner, one rounding per fused step, as __hfma), 0 where x < threshold.
float turbo_sas_exp2(float x, int degree, float threshold);
// Coefficients c0..c3 of 2^-f ~ c0 + c1 f + c2 f^2 + c3 f^3 on [0, 1) (c3 = 0 at degree 2).
void turbo_sas_coeffs(int degree, float c[4]);
// turbo_sas_exp2 for one (degree, threshold), the same bits: the polynomial of every FP16
// fraction in [0, 1] is computed once (by the function turbo_sas_exp2 evaluates) and looked up.
class TurboSasTable {
public:
    TurboSasTable(int degree, float threshold);
    float operator()(float x) const;
    // A run of a row's scores, for rows taken a block at a time: p[t] = (*this)(s[t] - m) for
    // t < n and 0 for n <= t < n_pad, and acc[t % 32] += p[t] in order of t. s and p may be the
    // same. A row's runs start at multiples of 32 and share acc (32 floats, zeroed before the
    // first); total(acc) is then the row's sum, the same bits on every path. Vector paths: 16
    // lanes where the CPU has AVX-512 (the polynomial computed, not looked up), 8 where it has
    // AVX2 and F16C (the table gathered).
    void run(const float* s, int n, int n_pad, float m, float* p, float* acc) const;
    // (a[i] + a[16 + i]) + (a[8 + i] + a[24 + i]) for the 8 lanes i, summed as
    // ((b0 + b4) + (b1 + b5)) + ((b2 + b6) + (b3 + b7)).
    static float total(const float* acc);
    // run() of a whole row in place; returns total(acc).
    float row(float* s, int n, float m) const;

private:
    float threshold_;
    int degree_;
    float coeffs_[4];          // turbo_sas_coeffs(degree)
    std::vector<float> poly_;  // indexed by the FP16 bits of the fraction, 0 .. 0x3C00 (1.0)
};

// ---- head-wise mixed precision -------------------------------------------------------------

// Priority of one head from calibration samples (n values each of K and V):
// range(K)*std(K) + range(V)*std(V). Larger = more sensitive = keep at 4 bits.
double turbo_head_priority(const float* k, const float* v, size_t n);
// Bits per head: the round(frac * H) lowest-priority heads get 2, the rest 4.
std::vector<uint8_t> turbo_choose_bits(const std::vector<double>& priority, float frac_2bit);

// ---- the cache (CPU owner of the bytes) ----------------------------------------------------

class ThreadPool;

// Positions a Turbo cache (block_tokens T) holding n_past keeps when truncated to n <= n_past:
// the records of whole blocks below n are exact, and the INT8 recent buffer still holds
// positions [n - n % T, n) when the last cached token sat in the same block (its slots were not
// reused; compressing that block does not change them). Otherwise the partial block is dropped:
// n rounds down to a multiple of T. Either way the cache is what a fresh append of the kept
// prefix would leave. The CPU and GPU caches both follow it.
inline int64_t turbo_truncate_keep(int64_t n, int64_t n_past, int64_t block_tokens) {
    if (n >= n_past) return n_past;
    if (n <= 0) return 0;
    return (n_past - 1) / block_tokens == n / block_tokens ? n : n - n % block_tokens;
}

class TurboKvCache {
public:
    // Throws TurboError on a bad config, head count or bits vector.
    TurboKvCache(const TurboConfig& c, int n_seqs, int n_kv_heads, int max_tokens,
                 const std::vector<uint8_t>& head_bits);
    // Appends one token: k, v (n_kv_heads, D). Compresses the recent buffer when it fills.
    // Throws TurboError when the sequence is full or seq is out of range.
    void append(int seq, const float* k, const float* v);
    // Appends n tokens: k, v (n, n_kv_heads, D), the KV heads spread over the pool's threads
    // (nullptr: the calling thread). The same bytes as n append() calls; throws, and appends
    // none, when they do not all fit.
    void append_tokens(int seq, int n, const float* k, const float* v, ThreadPool* pool);
    int length(int seq) const { return len_.at((size_t)seq); }
    // Forgets positions >= n of one sequence, keeping turbo_truncate_keep(n, length(seq), T);
    // returns the positions kept. Throws TurboError when seq is out of range.
    int truncate(int seq, int n);
    const TurboCacheLayout& layout() const { return L_; }
    const TurboConfig& config() const { return cfg_; }
    int n_seqs() const { return n_seqs_; }
    // Raw storage, in the documented layout, for upload:
    const std::vector<uint8_t>& blocks() const { return blocks_; }       // (seq, seq_bytes)
    const std::vector<int8_t>& recent_k() const { return rk_; }          // (seq, H, T, D)
    const std::vector<int8_t>& recent_v() const { return rv_; }          // (seq, H, D, T)
    const std::vector<float>& recent_k_scale() const { return rks_; }    // (seq, H, T)
    const std::vector<float>& recent_v_scale() const { return rvs_; }    // (seq, H, T)
    // The values the kernels see, as floats: k, v (H, length, D).
    void dequantize(int seq, float* k, float* v) const;
    // Bytes a sequence of n tokens occupies (records + a full recent buffer + scales).
    size_t bytes_for(int n_tokens) const;

private:
    TurboConfig cfg_;
    TurboCacheLayout L_;
    int n_seqs_;
    int max_tokens_;  // per sequence (may end inside a block, which then never fills)
    std::vector<int> len_;
    std::vector<uint8_t> blocks_;
    std::vector<int8_t> rk_, rv_;
    std::vector<float> rks_, rvs_;
};

// ---- attention on the cache (the engine's CPU path) ---------------------------------------

// TurboAttention of n query tokens at positions pos0 .. pos0 + n - 1 of sequence seq, every one
// already appended (pos0 + n == length(seq)) and all in one block (pos0 / T == (pos0 + n - 1) / T):
// row i attends to positions 0 .. pos0 + i as the cache held them after its own append. That is
// turbo_decode_ref after each append, up to float rounding (the scores are summed in another
// order), on the expanded INT8 codes without a float copy of the cache. q, out: (n, n_q_heads,
// D). Work is split over (KV head, rows) on pool (nullptr: this thread). Throws TurboError on
// bad arguments.
void turbo_attend(const TurboKvCache& cache, int seq, int pos0, int n, const float* q, int n_q_heads,
                  float* out, ThreadPool* pool);

// ---- reference attention (decode: one query token per sequence) ----------------------------

// TurboAttention decode on the cache, the twin of the CUDA kernel: scores in log2 units,
// global max, SAS probabilities, float accumulation. q, out: (n_q_heads, D).
void turbo_decode_ref(const TurboKvCache& cache, int seq, const float* q, int n_q_heads,
                      float* out);
// TurboAttention prefill twin for one sequence (causal, len % 64 == 0): Q and K to INT8 per
// (head, 64 tokens), integer dot products, SAS (or exact exp2), P rounded to FP16, as the CUDA kernels.
// q, out: (Hq, len, D); k, v: (Hkv, len, D). sas = false: exact exp2 instead of SAS (the
// Hopper kernel's PrefillExp::Sfu). Throws TurboError on a bad len.
void turbo_prefill_ref(const float* q, const float* k, const float* v, int n_q_heads,
                       int n_kv_heads, int len, int D, int degree, float threshold, float* out,
                       bool sas = true);
// Exact softmax attention in float64. q: (Hq, D); k, v: (Hkv, len, D); out: (Hq, D).
// Query head i reads KV head i / (Hq / Hkv).
void attention_exact_f64(const float* q, const float* k, const float* v, int n_q_heads,
                         int n_kv_heads, int len, int D, double* out);

// ---- parameters of the CUDA kernels (device pointers) --------------------------------------

struct TurboDecodeParams {
    const float* q = nullptr;           // (batch, n_q_heads, D)
    float* out = nullptr;               // (batch, n_q_heads, D)
    const uint8_t* blocks = nullptr;    // (batch, seq_bytes) compressed records
    const int8_t* recent_k = nullptr;   // (batch, Hkv, T, D)
    const int8_t* recent_v = nullptr;   // (batch, Hkv, D, T) channel-major
    const float* recent_ks = nullptr;   // (batch, Hkv, T)
    const float* recent_vs = nullptr;   // (batch, Hkv, T)
    const int* seq_len = nullptr;       // (batch)
    int batch = 0, n_q_heads = 0, max_len = 0;
    TurboCacheLayout layout;
    int poly_degree = 3;
    float threshold = -16.0f;
    float* workspace = nullptr;         // turbo_decode_workspace_floats(...) floats
    int n_splits = 0;                   // warp-splits per (sequence, KV head); 0: chosen by the launcher
};
// Which prefill kernel runs: Auto takes the Hopper one (TMA + wgmma) on sm_90 devices and the
// portable one (mma.sync) elsewhere; Hopper throws TurboError on other devices.
enum class PrefillKernel { Auto, Portable, Hopper };
// The type Q and K are quantized to (per 64-token block, one scale each) for S = Q K^T: INT8
// (scale amax / 127), or FP8 e4m3 (scale amax / 448; the Hopper kernel only).
enum class PrefillQk { Int8, Fp8 };
// Who computes the softmax's exponentials: SAS (polynomial on the FMA pipe, scores under the
// threshold dropped) or the special-function unit's exp2 (ex2.approx, the Hopper kernel only).
// Auto: Sfu on the Hopper kernel, where SAS's ~13 FMA-pipe instructions a score were its limit
// (on the H100 Sfu ran 1.00-1.14x cuDNN where SAS ran 0.69-0.96x, at the same error against
// float64: bench/results/attention-h100.md, session 9); Sas on the portable kernel.
enum class PrefillExp { Auto, Sas, Sfu };

// Prefill (causal self-attention over one chunk starting at position 0): Q and K quantized
// to blockwise INT8 (64 tokens x D per scale), S = Q K^T on INT8 tensor cores (INT32
// accumulate), softmax (exponentials as TurboPrefillParams::exp says), P.V with FP16 P and V
// on FP16 tensor cores.
struct TurboPrefillParams {
    const uint16_t* q = nullptr;        // (batch, n_q_heads, len, D) IEEE half
    const uint16_t* k = nullptr;        // (batch, n_kv_heads, len, D)
    const uint16_t* v = nullptr;        // (batch, n_kv_heads, len, D)
    float* out = nullptr;               // (batch, n_q_heads, len, D)
    int batch = 0, n_q_heads = 0, n_kv_heads = 0, head_dim = 0, len = 0;  // len % 64 == 0
    int poly_degree = 3;
    float threshold = -16.0f;
    void* workspace = nullptr;          // turbo_prefill_workspace_bytes(p) bytes: for the kernel p runs on
                                        // this device; with kernel = Portable, enough for either
    PrefillKernel kernel = PrefillKernel::Auto;
    PrefillQk qk = PrefillQk::Int8;
    PrefillExp exp = PrefillExp::Auto;  // poly_degree and threshold apply where it is SAS
};
// Plain FP16 prefill (causal, one chunk from position 0, exact softmax), Hopper only: the
// tensors of TurboPrefillParams, any len >= 1, no workspace.
struct Fp16PrefillParams {
    const uint16_t* q = nullptr;        // (batch, n_q_heads, len, D) IEEE half
    const uint16_t* k = nullptr;        // (batch, n_kv_heads, len, D)
    const uint16_t* v = nullptr;        // (batch, n_kv_heads, len, D)
    float* out = nullptr;               // (batch, n_q_heads, len, D)
    int batch = 0, n_q_heads = 0, n_kv_heads = 0, head_dim = 0, len = 0;
};
struct Fp16DecodeParams {
    const float* q = nullptr;           // (batch, n_q_heads, D)
    float* out = nullptr;               // (batch, n_q_heads, D)
    const uint16_t* k = nullptr;        // (batch, Hkv, max_len, D) IEEE half
    const uint16_t* v = nullptr;        // (batch, Hkv, max_len, D)
    const int* seq_len = nullptr;       // (batch)
    int batch = 0, n_q_heads = 0, n_kv_heads = 0, head_dim = 0, max_len = 0;
    float* workspace = nullptr;
    int n_splits = 0;
    // causal: the batch is the last `batch` query tokens of ONE sequence (a prefill chunk):
    // element b reads sequence 0's cache up to seq_len[0] - batch + 1 + b tokens (seq_len[0]
    // >= batch: the last query's length), its q at q + b * q_stride (0: n_q_heads * D).
    bool causal = false;
    int64_t q_stride = 0;
};

}  // namespace tandem
