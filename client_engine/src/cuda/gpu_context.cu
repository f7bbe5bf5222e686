// GpuContext: the Llama-family forward pass on CUDA (see tandem/gpu_context.h), computing
// what InferenceContext::forward_batch computes (client_engine/src/context.cpp).
//
//   x = embed(tokens)                                          gather_rows
//   per layer:  qkv = rmsnorm(x) [Wq|Wk|Wv] (+b)               gemv (norm, bias fused) | rmsnorm + GEMM
//               rope(q, k); cache[pos] = k, v                   rope_store | Turbo: turbo_rope_store + turbo_compress
//               a = attention(q, cache)                         fp16_decode | hopper_prefill (sm_90, n > 1)
//                                                               | attention | Turbo: turbo_decode
//               x += a Wo                                       gemv (residual fused) | GEMM beta=1
//               g = silu(rmsnorm(x) Wg) * (rmsnorm(x) Wu)       gemv (norm, SwiGLU fused) | GEMMs + swiglu
//               x += g Wd                                       gemv | GEMM
// (decode, one token | prefill). A prefill GEMM of quantized weights dequantizes tiles of rows
// to BF16 and runs cuBLAS on the tensor cores, or on sm_90 (Q4_0, Q8_0; GpuParams::hopper_gemm,
// per matrix shape) runs hopper_gemm, which dequantizes the blocks in registers; its
// activations come in BF16 straight from the rmsnorm and SwiGLU kernels
// (GpuParams::prefill_gemm has the F32 alternatives).
//   logits = rmsnorm(x) Wout;  argmax on the device
#include "tandem/gpu_context.h"

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cuda_common.cuh"
#include "fp16_decode.cuh"
#include "gemv.cuh"
#include "hopper_gemm.cuh"
#include "hopper_prefill.cuh"
#include "llama_ops.cuh"
#include "tandem/model.h"
#include "turbo_cache.cuh"
#include "turbo_cache_prefill.cuh"
#include "turbo_decode.cuh"

namespace tandem {

namespace {

#define GPU_CHECK(expr)                                                                                     \
    do {                                                                                                    \
        cudaError_t e_ = (expr);                                                                            \
        if (e_ != cudaSuccess)                                                                              \
            throw GpuError(std::string("cuda: ") + #expr + " failed: " + cudaGetErrorString(e_));         \
    } while (0)
#define BLAS_CHECK(expr)                                                                                    \
    do {                                                                                                    \
        cublasStatus_t s_ = (expr);                                                                         \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                                    \
            throw GpuError(std::string("cublas: ") + #expr + " failed with status " + std::to_string((int)s_)); \
    } while (0)

constexpr uint64_t kReserveBytes = 96ull << 20;   // cuBLAS workspace, graph, CUDA context growth
constexpr int64_t kDequantScratchFloats = 8 << 20;  // 32 MiB of F32 tiles for prefill GEMMs
// ContextParams::n_batch 0: each prefill pass dequantizes every weight matrix again, so fewer,
// larger passes (1.2k tokens on the H100, 1B shape: bench/results/keystroke.md).
constexpr int64_t kGpuBatch = 512;

uint64_t mib(uint64_t b) { return (b + (1 << 20) - 1) >> 20; }
size_t r256(size_t b) { return (b + 255) & ~size_t(255); }

// The device type a weight is stored in.
GgmlType device_type(GgmlType t) { return gpu_matrix_native(t) ? t : GgmlType::F16; }

// Matrices of one layer, in upload order.
std::vector<const WeightView*> layer_matrices(const LayerWeights& L) {
    return {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down};
}
std::vector<const WeightView*> layer_vectors(const LayerWeights& L) {
    return {&L.attn_norm, &L.ffn_norm, &L.bq, &L.bk, &L.bv};
}

bool tied(const Model& m) { return m.output.data == m.token_embd.data; }

uint64_t weights_bytes(const Model& m) {
    uint64_t b = 0;
    auto mat = [&](const WeightView& w) { b += gpu_matrix_bytes(device_type(w.type), w.rows, w.cols); };
    auto vec = [&](const WeightView& w) { if (w) b += r256((size_t)(w.rows * w.cols) * 4); };
    mat(m.token_embd);
    if (!tied(m)) mat(m.output);
    vec(m.output_norm);
    for (const auto& L : m.layers) {
        for (auto* w : layer_matrices(L)) mat(*w);
        for (auto* w : layer_vectors(L)) vec(*w);
    }
    return b + 256;
}

struct Sizes {
    int64_t n_ctx, n_batch, d, kvd, qkv, ff, nv, deq;
    int64_t xb;  // BF16 activations of one prefill GEMM: n_batch x the widest matrix's columns
    uint64_t kv_bytes, scratch_bytes;
    // Turbo KV cache (turbo_kv): per layer one sequence's records and recent buffer, then the
    // fan-out copies (kTurboFan sequences) and the decode workspace, all inside kv_bytes.
    bool turbo = false;
    TurboConfig tcfg;
    std::vector<TurboCacheLayout> layouts;  // (n_layer)
    uint64_t recent_bytes = 0;              // one recent buffer: k, v (H, T, D) int8 + scales
    uint64_t ws_floats = 0;
    uint64_t tiles_bytes = 0;               // turbo_cache_prefill's FP16 scratch (in scratch_bytes)
    uint64_t attn_ws_floats = 0;            // FP16 KV: the fp16_decode workspace (in scratch_bytes)
};

// Query tokens one prefill decode launch serves at most (one block of the recent buffer).
constexpr int kTurboFan = 64;

// Bits per KV head of layer l: p.turbo_head_bits[l], or 4 for every head.
std::vector<uint8_t> head_bits(const Model& m, const ContextParams& p, size_t l) {
    if (p.turbo_head_bits.empty()) return std::vector<uint8_t>((size_t)m.config().n_head_kv, 4);
    return p.turbo_head_bits[l];
}

// Floats of turbo_decode workspace for every batch 1..kTurboFan at max_len: the launcher's
// own formula where a device is present; without one, its split cap ((tiles + 1) / 2).
uint64_t turbo_ws_floats(const TurboCacheLayout& L, int n_q_heads, int max_len) {
    uint64_t best = 0;
    for (int b = 1; b <= kTurboFan; b++) {
        TurboDecodeParams dp;
        dp.batch = b, dp.n_q_heads = n_q_heads, dp.max_len = max_len, dp.layout = L;
        try {
            best = std::max<uint64_t>(best, turbo_decode_workspace_floats(dp));
        } catch (const std::exception&) {
            cudaGetLastError();
            const uint64_t splits = ((uint64_t)(max_len / L.block_tokens + 2) / 2 + 3) / 4 * 4;
            best = std::max<uint64_t>(best, (uint64_t)b * n_q_heads * splits * (L.head_dim + 2));
        }
    }
    return best;
}

// Floats of fp16_decode workspace for every batch 1..n_batch (decode and causal prefill
// chunks): the launcher's own formula where a device is present; without one, a bound
// (batch x splits <= batch + the resident warps a KV head gets, ~2112 / n_kv_heads on an H100).
uint64_t fp16_ws_floats(int n_q_heads, int n_kv_heads, int head_dim, int max_len, int64_t n_batch) {
    Fp16DecodeParams fp;
    fp.n_q_heads = n_q_heads, fp.n_kv_heads = n_kv_heads, fp.head_dim = head_dim, fp.max_len = max_len;
    uint64_t best = 0;
    try {
        for (fp.batch = 1; fp.batch <= n_batch; fp.batch++) best = std::max<uint64_t>(best, fp16_decode_workspace_floats(fp));
    } catch (const std::exception&) {
        cudaGetLastError();
        best = (uint64_t)(n_batch + 4096 / n_kv_heads) * n_q_heads * (head_dim + 2);
    }
    return best;
}

Sizes sizes(const Model& m, const ContextParams& p) {
    const ModelConfig& c = m.config();
    Sizes s{};
    s.n_ctx = p.n_ctx > 0 ? p.n_ctx : std::min<int64_t>(c.n_ctx_train, 4096);
    s.n_batch = std::max<int64_t>(1, std::min(p.n_batch > 0 ? p.n_batch : kGpuBatch, s.n_ctx));
    s.d = c.n_embd, s.kvd = m.kv_dim(), s.qkv = s.d + 2 * s.kvd, s.ff = c.n_ff, s.nv = c.n_vocab;
    int64_t max_elems = 0, max_cols = 0;
    auto see = [&](const WeightView& w) { max_elems = std::max(max_elems, w.rows * w.cols), max_cols = std::max(max_cols, w.cols); };
    see(m.output);
    for (const auto& L : m.layers)
        for (auto* w : layer_matrices(L)) see(*w);
    s.deq = std::max(max_cols, std::min<int64_t>(max_elems, kDequantScratchFloats));
    s.xb = s.n_batch * max_cols;
    s.kv_bytes = 2ull * (uint64_t)c.n_layer * (uint64_t)s.n_ctx * (uint64_t)s.kvd * 2;
    if (p.turbo_kv) {
        s.turbo = true;
        s.tcfg = p.turbo;
        s.tcfg.head_dim = (int)m.head_dim();
        turbo_validate(s.tcfg);
        if (!p.turbo_head_bits.empty() && (int64_t)p.turbo_head_bits.size() != c.n_layer)
            throw std::invalid_argument("turbo_head_bits needs one entry per layer (" + std::to_string(c.n_layer) + ")");
        const uint64_t T = (uint64_t)s.tcfg.block_tokens, D = (uint64_t)s.tcfg.head_dim, H = (uint64_t)c.n_head_kv;
        s.recent_bytes = r256(2 * H * T * D) + r256(2 * H * T * 4);
        s.kv_bytes = 0;
        for (size_t l = 0; l < (size_t)c.n_layer; l++) {
            s.layouts.push_back(turbo_make_layout(s.tcfg, (int)H, (int)s.n_ctx, head_bits(m, p, l)));
            s.kv_bytes += r256(s.layouts.back().seq_bytes) + s.recent_bytes;
        }
        s.ws_floats = turbo_ws_floats(s.layouts[0], (int)c.n_head, (int)s.n_ctx);
        s.kv_bytes += kTurboFan * s.recent_bytes + r256(kTurboFan * 4) + r256(s.ws_floats * 4);
    }
    const int64_t acts = s.turbo ? 4 : 3;  // x, xn, attn (+ Turbo's packed queries)
    const int64_t floats = s.n_batch * (acts * s.d + s.qkv + 2 * s.ff + s.nv) + s.deq + (s.xb + 1) / 2 + 2 * s.d;
    s.scratch_bytes = (uint64_t)(floats + 17 * 64) * 4 + 4096;
    if (s.turbo && s.n_batch > 1) {  // turbo_cache_prefill's FP16 tiles: every record, the INT8 copies of a pass
        const TurboCacheLayout& L = s.layouts[0];
        const int64_t slots = std::min<int64_t>(kTurboFan, (s.n_batch - 1) / L.block_tokens + 2);
        s.tiles_bytes = r256((uint64_t)(L.max_blocks + slots) * L.n_kv_heads * 2 * L.block_tokens * L.head_dim * 2);
        s.scratch_bytes += s.tiles_bytes;
    }
    const int hd = (int)m.head_dim();
    if (!s.turbo && (hd == 64 || hd == 128) && c.n_head / c.n_head_kv <= 8) {
        s.attn_ws_floats = fp16_ws_floats((int)c.n_head, (int)c.n_head_kv, hd, (int)s.n_ctx, s.n_batch);
        s.scratch_bytes += r256(s.attn_ws_floats * 4);
        s.scratch_bytes += r256((uint64_t)s.n_batch * s.d * 2);  // FP16 queries for the Hopper prefill kernel
    }
    return s;
}

struct LayerDev {
    GpuMatrix wq, wk, wv, wo, gate, up, down;
    GpuMatrix wqkv;                      // [Wq; Wk; Wv] as one matrix when their types match
    const float* bqkv = nullptr;         // [bq; bk; bv] when fused and the model has biases
    bool fused_qkv = false;
    const float *attn_norm = nullptr, *ffn_norm = nullptr, *bq = nullptr, *bk = nullptr, *bv = nullptr;
    __half *k = nullptr, *v = nullptr;  // (n_head_kv, n_ctx, hd)
    uint8_t* blocks = nullptr;          // Turbo: (layout.seq_bytes) compressed records
    TurboRecentDev recent;              // Turbo: the INT8 recent buffer
    // Every weight matrix of the layer (those not uploaded have q == nullptr).
    std::array<const GpuMatrix*, 8> matrices() const { return {&wqkv, &wq, &wk, &wv, &wo, &gate, &up, &down}; }
};

}  // namespace

// ---- device information ----------------------------------------------------------------------

GpuDeviceInfo gpu_device_info() {
    GpuDeviceInfo info;
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        info.reason = std::string("no CUDA device") + (e != cudaSuccess ? std::string(" (") + cudaGetErrorString(e) + ")" : "");
        cudaGetLastError();
        return info;
    }
    cudaDeviceProp prop{};
    size_t free_b = 0, total_b = 0;
    if (cudaSetDevice(0) != cudaSuccess || cudaGetDeviceProperties(&prop, 0) != cudaSuccess ||
        cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
        info.reason = std::string("CUDA device 0 is not usable (") + cudaGetErrorString(cudaGetLastError()) + ")";
        return info;
    }
    info.present = true;
    info.name = prop.name;
    info.free_bytes = free_b;
    info.total_bytes = total_b;
    return info;
}

uint64_t gpu_context_bytes_needed(const Model& m, const ContextParams& p) {
    const Sizes s = sizes(m, p);
    return weights_bytes(m) + s.kv_bytes + s.scratch_bytes + kReserveBytes;
}

// ---- the context -------------------------------------------------------------------------------

struct GpuContext::Impl {
    GpuParams gp;
    Sizes sz{};
    std::string device_name;
    cudaStream_t stream = nullptr;
    cublasHandle_t blas = nullptr;
    uint8_t* weights = nullptr;     // one allocation for every weight
    uint8_t* kv = nullptr;          // one allocation for every layer's K and V
    float* scratch = nullptr;       // one allocation for the activations below
    uint64_t weight_bytes = 0, bytes_per_token = 0;
    GpuMatrix tok_embd, output;
    const float* output_norm = nullptr;
    std::vector<LayerDev> layers;
    float* inv_freq = nullptr;      // (n_rot / 2)
    float *x = nullptr, *xn = nullptr, *qkv = nullptr, *attn = nullptr, *gate = nullptr, *up = nullptr;
    float* logits = nullptr;        // (n_batch, n_vocab)
    float* deq = nullptr;           // (sz.deq) F32 tiles, or twice as many BF16 values
    __nv_bfloat16* xb = nullptr;    // (n_batch, max_cols) a prefill GEMM's activations in BF16
    float* attn_ws = nullptr;       // fp16_decode workspace
    __half* q16 = nullptr;          // (n_batch, d) rotated queries in FP16 for hopper_prefill
    int* d_io = nullptr;            // [pos0, seq_len]
    int32_t* d_tok = nullptr;       // (n_batch)
    int32_t* d_argmax = nullptr;
    int* h_io = nullptr;            // pinned mirrors
    int32_t* h_tok = nullptr;
    int32_t* h_argmax = nullptr;
    bool fp16_attn = false;
    bool hopper_prefill = false;    // prefill chunks (n > 1) on hopper_prefill_launch
    // BF16 GEMMs of Q4_0/Q8_0 matrices on hopper_gemm_launch: all of them (HopperGemm::always),
    // or the shapes (type, rows, cols) in hopper_tiles, with their tile_tokens (measured)
    bool hopper_all = false;
    std::map<std::array<int64_t, 3>, int> hopper_tiles;
    std::string gemm_kernel;        // prefill_gemm_kernel()
    std::string gemm_choices;       // prefill_gemm_choices()
    cudaGraphExec_t graph = nullptr;
    int decode_steps = 0;           // graph captured on the second decode step
    mutable std::vector<float> host_logits;
    mutable bool host_valid = false;

    ~Impl() {
        if (graph) cudaGraphExecDestroy(graph);
        for (cudaEvent_t e : events) cudaEventDestroy(e);
        if (blas) cublasDestroy(blas);
        if (stream) cudaStreamDestroy(stream);
        for (void* p : {(void*)weights, (void*)kv, (void*)scratch, (void*)inv_freq, (void*)attn_ws, (void*)q16, (void*)d_io})
            if (p) cudaFree(p);
        for (void* p : {(void*)h_io}) if (p) cudaFreeHost(p);
    }

    bool graph_failed = false;
    // Stage profiling (profile_eval): an event recorded after each stage.
    std::vector<cudaEvent_t> events;
    std::vector<const char*> marks;
    bool profiling = false;
    void mark(const char* stage) {
        if (!profiling) return;
        if (marks.size() >= events.size()) {
            cudaEvent_t e;
            GPU_CHECK(cudaEventCreate(&e));
            events.push_back(e);
        }
        GPU_CHECK(cudaEventRecord(events[marks.size()], stream));
        marks.push_back(stage);
    }

    // A prefill GEMM's input (n, K): F32 activations where some matrix's GEMM reads F32, and
    // their BF16 version in xb where some matrix runs in BF16 (gemm_mode), made once for every
    // GEMM that reads them (q/k/v; gate and up); the other pointer is null. The BF16 rows are
    // valid until the next input is made.
    struct GemmInput {
        const float* f32;
        const __nv_bfloat16* bf16;
    };
    bool f32_inputs = false, bf16_inputs = false;
    float rms_eps = 0;
    GpuParams::PrefillGemm gemm_mode(const GpuMatrix& w) const;
    GemmInput gemm_input(const float* X, int64_t n, int64_t K);  // X as it is
    GemmInput norm_input(const float* X, const float* norm, int64_t n);  // rmsnorm(X) * norm (F32 in xn)
    GemmInput swiglu_input(int64_t n);  // silu(gate) * up (F32 in gate)
    // Y (n, ldy) (+)= X W^T for the matrix w (rows, K): on hopper_gemm_launch where hopper_tile
    // says so, else in tiles of dequantized rows (gemm_tiles).
    void gemm(const GpuMatrix& w, const GemmInput& in, int64_t n, float* Y, int64_t ldy, bool acc);
    void gemm_tiles(const GpuMatrix& w, const GemmInput& in, int64_t n, float* Y, int64_t ldy, bool acc);
    void gemm_hopper(const GpuMatrix& w, const __nv_bfloat16* x, int64_t n, float* Y, int64_t ldy, bool acc, int tile);
    // hopper_gemm's tile_tokens for w's prefill GEMM (0: the kernel's own choice), or -1: tiles.
    int hopper_tile(const GpuMatrix& w) const;
    void measure_hopper_gemm(int64_t n);
    void capture(const Model& m);
    void forward(const Model& m, int64_t n, bool all_logits, int64_t pos0_host);
    void turbo_attention(const Model& m, const LayerDev& L, int64_t n, int64_t pos0_host);
    void turbo_prefill(const Model& m, const LayerDev& L, int64_t n, int64_t pos0_host);
    void turbo_store(const Model& m, const LayerDev& L, int64_t o, int64_t seg);

    // Turbo KV cache (sz.turbo): fan-out copies of the recent buffer and their lengths for
    // prefill, the decode workspace, the packed rotated queries.
    TurboRecentDev fan;             // (kTurboFan, ...) copies of one layer's recent buffer
    int* fan_len = nullptr;         // (kTurboFan)
    float* turbo_ws = nullptr;      // (sz.ws_floats)
    float* qc = nullptr;            // (n_batch, n_embd) rotated queries, packed
    __half* tiles = nullptr;        // (sz.tiles_bytes) turbo_cache_prefill's expanded records
};

// Tokens o .. o + seg - 1 of this eval (one segment of the recent buffer) into layer L's Turbo
// cache: RoPE and the INT8 store, then the compression when they complete a block.
void GpuContext::Impl::turbo_store(const Model& m, const LayerDev& L, int64_t o, int64_t seg) {
    const ModelConfig& c = m.config();
    TurboStoreParams sp;
    sp.qkv = qkv + o * sz.qkv, sp.q_out = qc + o * sz.d, sp.n = seg, sp.pos0 = d_io, sp.offset = (int)o;
    sp.n_head = (int)c.n_head, sp.n_head_kv = (int)c.n_head_kv, sp.head_dim = (int)m.head_dim(), sp.n_rot = (int)c.n_rot;
    sp.inv_freq = inv_freq, sp.neox = m.rope_mode() == RopeMode::Neox, sp.block_tokens = sz.tcfg.block_tokens;
    sp.recent = L.recent;
    turbo_rope_store_cuda(sp, stream);
    TurboCompressParams cp;
    cp.pos0 = d_io, cp.end_offset = (int)(o + seg), cp.layout = sz.layouts[(size_t)(&L - layers.data())];
    cp.recent = L.recent, cp.blocks = L.blocks;
    turbo_compress_cuda(cp, stream);
}

// Attention of n tokens at positions pos0 .. pos0+n-1 on the Turbo cache of layer L, as the
// CPU twin orders it: each token joins the cache (a full recent buffer is compressed at
// once), then attends to the cache as it stands, itself included. n == 1 (decode, maybe in
// the graph) reads the position from d_io only; the compression kernel decides on the
// device whether a block is full, so the captured graph stays valid at every length.
// n > 1 (prefill, pos0_host known) runs turbo_prefill, or with GpuParams::turbo_prefill_kernel
// off, per segment of the recent buffer: store the segment, compress if it completes a block,
// then one decode launch whose batch is the segment's tokens, each reading a copy of the recent
// buffer and the shared records (layout.seq_bytes = 0) up to its own causal length.
void GpuContext::Impl::turbo_attention(const Model& m, const LayerDev& L, int64_t n, int64_t pos0_host) {
    if (n > 1 && gp.turbo_prefill_kernel) return turbo_prefill(m, L, n, pos0_host);
    const ModelConfig& c = m.config();
    const int hd = (int)m.head_dim(), T = sz.tcfg.block_tokens, H = (int)c.n_head_kv;
    const int64_t d = sz.d;
    const TurboCacheLayout& lay = sz.layouts[(size_t)(&L - layers.data())];
    for (int64_t o = 0; o < n;) {
        const int64_t seg = n == 1 ? 1 : std::min<int64_t>(n - o, T - (pos0_host + o) % T);
        turbo_store(m, L, o, seg);
        mark("rope+kv");
        TurboDecodeParams dp;
        dp.q = qc + o * d, dp.out = attn + o * d, dp.blocks = L.blocks;
        dp.n_q_heads = (int)c.n_head, dp.max_len = (int)sz.n_ctx, dp.layout = lay;
        dp.poly_degree = sz.tcfg.poly_degree, dp.threshold = sz.tcfg.threshold, dp.workspace = turbo_ws;
        if (n == 1) {
            dp.recent_k = L.recent.k, dp.recent_v = L.recent.v, dp.recent_ks = L.recent.ks, dp.recent_vs = L.recent.vs;
            dp.seq_len = d_io + 1, dp.batch = 1;
        } else {
            TurboFanoutParams fp;
            fp.src = L.recent, fp.dst = fan, fp.seq_len = fan_len, fp.pos0 = d_io, fp.offset = (int)o, fp.n = (int)seg;
            fp.n_kv_heads = H, fp.block_tokens = T, fp.head_dim = hd;
            turbo_fanout_cuda(fp, stream);
            dp.recent_k = fan.k, dp.recent_v = fan.v, dp.recent_ks = fan.ks, dp.recent_vs = fan.vs;
            dp.seq_len = fan_len, dp.batch = (int)seg;
            dp.layout.seq_bytes = 0;  // every query token reads the one sequence's records
        }
        turbo_decode_cuda(dp, stream);
        o += seg;
    }
}

// Prefill on the Turbo cache in one turbo_cache_prefill_cuda call per span of blocks: per
// segment of the recent buffer (tokens up to the next multiple of T) the store and the
// compression as in turbo_attention, then the recent buffer copied into fan-out slot (block -
// first block); then the call expands the records and those INT8 copies into `tiles` and
// attends to them. Each token sees what the CPU twin shows it. A span is at most kTurboFan - 1
// blocks of tokens, so that its blocks fit the slots.
void GpuContext::Impl::turbo_prefill(const Model& m, const LayerDev& L, int64_t n, int64_t pos0_host) {
    const ModelConfig& c = m.config();
    const int hd = (int)m.head_dim(), T = sz.tcfg.block_tokens, H = (int)c.n_head_kv;
    const int64_t d = sz.d, span = (int64_t)(kTurboFan - 1) * T;
    const TurboCacheLayout& lay = sz.layouts[(size_t)(&L - layers.data())];
    for (int64_t c0 = 0; c0 < n; c0 += span) {
        const int64_t cn = std::min(span, n - c0), first_block = (pos0_host + c0) / T;
        for (int64_t o = c0; o < c0 + cn;) {
            const int64_t seg = std::min<int64_t>(c0 + cn - o, T - (pos0_host + o) % T);
            turbo_store(m, L, o, seg);
            const size_t slot = (size_t)((pos0_host + o) / T - first_block), kv = slot * H * T * hd, sc = slot * H * T;
            TurboFanoutParams fp;
            fp.src = L.recent, fp.dst = {fan.k + kv, fan.v + kv, fan.ks + sc, fan.vs + sc};
            fp.seq_len = fan_len, fp.pos0 = d_io, fp.offset = (int)o, fp.n = 1;
            fp.n_kv_heads = H, fp.block_tokens = T, fp.head_dim = hd;
            turbo_fanout_cuda(fp, stream);
            o += seg;
        }
        mark("rope+kv");
        TurboCachePrefillParams tp;
        tp.q = qc + c0 * d, tp.out = attn + c0 * d, tp.blocks = L.blocks, tp.block_int8 = fan, tp.tiles = tiles;
        tp.pos0 = pos0_host + c0, tp.n = (int)cn, tp.n_q_heads = (int)c.n_head, tp.layout = lay;
        tp.poly_degree = sz.tcfg.poly_degree, tp.threshold = sz.tcfg.threshold;
        if (turbo_cache_prefill_scratch_bytes(tp.pos0, tp.n, lay) > sz.tiles_bytes)
            throw GpuError("internal: turbo_cache_prefill's tiles outgrew their scratch");
        turbo_cache_prefill_cuda(tp, stream);
    }
}

// Quantized weights on tensor cores: BF16 inputs (relative error <= 2^-9 each) or TF32 ones
// (2^-11), FP32 sums; the CPU reference's own 8-bit activations are off by up to 1/254 of
// their block's maximum. F16 weights keep FP32 SGEMM, so that float models match the CPU
// as closely as before.
GpuParams::PrefillGemm GpuContext::Impl::gemm_mode(const GpuMatrix& w) const {
    return w.type == GgmlType::F32 || w.type == GgmlType::F16 ? GpuParams::PrefillGemm::fp32 : gp.prefill_gemm;
}

GpuContext::Impl::GemmInput GpuContext::Impl::gemm_input(const float* X, int64_t n, int64_t K) {
    GemmInput in{X, nullptr};
    if (!bf16_inputs) return in;
    to_bf16_cuda(X, xb, n * K, stream);
    mark("to_bf16");
    in.bf16 = xb;
    return in;
}

// Where every GEMM of the pass is BF16, the norm and SwiGLU kernels write BF16 rows alone.
GpuContext::Impl::GemmInput GpuContext::Impl::norm_input(const float* X, const float* norm, int64_t n) {
    if (f32_inputs) {
        rmsnorm_rows_cuda(X, norm, xn, n, sz.d, rms_eps, stream);
        mark("norm");
        return gemm_input(xn, n, sz.d);
    }
    rmsnorm_rows_bf16_cuda(X, norm, xb, n, sz.d, rms_eps, stream);
    mark("norm");
    return {nullptr, xb};
}

GpuContext::Impl::GemmInput GpuContext::Impl::swiglu_input(int64_t n) {
    if (f32_inputs) {
        swiglu_cuda(gate, up, n * sz.ff, stream);
        mark("swiglu");
        return gemm_input(gate, n, sz.ff);
    }
    swiglu_bf16_cuda(gate, up, xb, n * sz.ff, stream);
    mark("swiglu");
    return {nullptr, xb};
}

void GpuContext::Impl::gemm(const GpuMatrix& w, const GemmInput& in, int64_t n, float* Y, int64_t ldy, bool acc) {
    const float one = 1.0f, beta = acc ? 1.0f : 0.0f;
    const int K = (int)w.cols;
    if (w.type == GgmlType::F32) {
        if (!in.f32) throw GpuError("internal: a prefill GEMM without its input");
        BLAS_CHECK(cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)w.rows, (int)n, K, &one, (const float*)w.q, K, in.f32,
                               K, &beta, Y, (int)ldy));
        mark("gemm");
        return;
    }
    const int tile = hopper_tile(w);
    if (tile >= 0) {
        if (!in.bf16) throw GpuError("internal: a prefill GEMM without its input");
        gemm_hopper(w, in.bf16, n, Y, ldy, acc, tile);
        return;
    }
    gemm_tiles(w, in, n, Y, ldy, acc);
}

void GpuContext::Impl::gemm_hopper(const GpuMatrix& w, const __nv_bfloat16* x, int64_t n, float* Y, int64_t ldy,
                                   bool acc, int tile) {
    HopperGemmArgs h;
    h.w = w, h.x = x, h.ldx = w.cols, h.n = n, h.y = Y, h.ldy = ldy, h.accumulate = acc, h.tile_tokens = tile;
    hopper_gemm_launch(h, stream);
    mark("gemm");
}

int GpuContext::Impl::hopper_tile(const GpuMatrix& w) const {
    if (gemm_mode(w) != GpuParams::PrefillGemm::bf16 || !hopper_gemm_supports(w.type)) return -1;
    if (hopper_all) return 0;
    const auto it = hopper_tiles.find({(int64_t)w.type, w.rows, w.cols});
    return it == hopper_tiles.end() ? -1 : it->second;
}

// Tiles of as many rows as the scratch holds (the whole matrix for the 1B shape in BF16),
// dequantized, then one GEMM each.
void GpuContext::Impl::gemm_tiles(const GpuMatrix& w, const GemmInput& in, int64_t n, float* Y, int64_t ldy, bool acc) {
    using Mode = GpuParams::PrefillGemm;
    const float one = 1.0f, beta = acc ? 1.0f : 0.0f;
    const int K = (int)w.cols;
    const Mode mode = gemm_mode(w);
    const bool bf16 = mode == Mode::bf16;
    if (bf16 ? !in.bf16 : !in.f32) throw GpuError("internal: a prefill GEMM without its input");
    const int64_t chunk = std::max<int64_t>(1, (bf16 ? 2 : 1) * sz.deq / w.cols);
    for (int64_t r0 = 0; r0 < w.rows; r0 += chunk) {
        const int64_t rc = std::min(chunk, w.rows - r0);
        if (bf16) dequant_rows_bf16_cuda(w, r0, rc, (__nv_bfloat16*)deq, stream);
        else dequant_rows_cuda(w, r0, rc, deq, stream);
        mark("dequant");
        const cudaDataType t = bf16 ? CUDA_R_16BF : CUDA_R_32F;
        const cublasComputeType_t compute = mode == Mode::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
        BLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rc, (int)n, K, &one, deq, t, K,
                                bf16 ? (const void*)in.bf16 : (const void*)in.f32, t, K, &beta, Y + r0, CUDA_R_32F,
                                (int)ldy, compute, CUBLAS_GEMM_DEFAULT));
        mark("gemm");
    }
}

// HopperGemm::measured: for each distinct shape of the Q4_0/Q8_0 layer matrices, tiles + cuBLAS
// and hopper_gemm with 64-, 128- and 256-token tiles, each timed at n tokens on zero activations
// as one CUDA graph of that shape's GEMM in every layer (distinct weights, no launch gaps: the
// GPU time of a prefill's GEMMs, whose launches run ahead of the GPU); the best of 3 replays
// after a warm-up, which also lets cuBLAS pick its kernel. One launch of one matrix, timed alone,
// favoured the one-launch Hopper kernel on small matrices, where in a prefill it lost
// (bench/results/gpu-prefill-h100.md). The fastest is kept; the paths give the same bits
// (test-gpu-engine), so the choice changes the time only.
void GpuContext::Impl::measure_hopper_gemm(int64_t n) {
    std::map<std::array<int64_t, 3>, std::vector<const GpuMatrix*>> shapes;
    int64_t max_rows = 0, max_cols = 0;
    for (const LayerDev& D : layers)
        for (const GpuMatrix* g : D.matrices())
            if (g->q && gemm_mode(*g) == GpuParams::PrefillGemm::bf16 && hopper_gemm_supports(g->type)) {
                shapes[{(int64_t)g->type, g->rows, g->cols}].push_back(g);
                max_rows = std::max(max_rows, g->rows), max_cols = std::max(max_cols, g->cols);
            }
    if (shapes.empty()) return;
    struct Temp {
        float* y = nullptr;             // allocated only where no scratch buffer holds n x max_rows
        cudaEvent_t e[2] = {nullptr, nullptr};
        cudaGraph_t graph = nullptr;
        cudaGraphExec_t exec = nullptr;
        void drop_graph() {
            if (exec) cudaGraphExecDestroy(exec);
            if (graph) cudaGraphDestroy(graph);
            exec = nullptr, graph = nullptr;
        }
        ~Temp() {
            drop_graph();
            if (y) cudaFree(y);
            for (cudaEvent_t v : e) if (v) cudaEventDestroy(v);
        }
    } t;
    // the outputs go to scratch that the forward pass overwrites anyway: gate (n_batch x ff) or
    // logits (n_batch x n_vocab)
    float* y = max_rows <= sz.ff ? gate : max_rows <= sz.nv ? logits : nullptr;
    if (!y) {
        GPU_CHECK(cudaMalloc(&t.y, (size_t)(n * max_rows) * sizeof(float)));
        y = t.y;
    }
    for (cudaEvent_t& e : t.e) GPU_CHECK(cudaEventCreate(&e));
    GPU_CHECK(cudaMemsetAsync(xb, 0, (size_t)(n * max_cols) * sizeof(__nv_bfloat16), stream));
    auto time_ms = [&](const std::vector<const GpuMatrix*>& ms, const std::function<void(const GpuMatrix&)>& one) {
        auto pass = [&] { for (const GpuMatrix* g : ms) one(*g); };
        pass();
        GPU_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
        try {
            pass();
        } catch (...) {
            cudaStreamEndCapture(stream, &t.graph);
            throw;
        }
        GPU_CHECK(cudaStreamEndCapture(stream, &t.graph));
        GPU_CHECK(cudaGraphInstantiate(&t.exec, t.graph, 0));
        GPU_CHECK(cudaGraphLaunch(t.exec, stream));
        float best = 1e30f;
        for (int i = 0; i < 3; i++) {
            GPU_CHECK(cudaEventRecord(t.e[0], stream));
            GPU_CHECK(cudaGraphLaunch(t.exec, stream));
            GPU_CHECK(cudaEventRecord(t.e[1], stream));
            GPU_CHECK(cudaEventSynchronize(t.e[1]));
            float ms_i = 0;
            GPU_CHECK(cudaEventElapsedTime(&ms_i, t.e[0], t.e[1]));
            best = std::min(best, ms_i);
        }
        t.drop_graph();
        return best;
    };
    const GemmInput in{nullptr, xb};
    for (const auto& shape : shapes) {
        const std::vector<const GpuMatrix*>& ms = shape.second;
        std::vector<std::pair<float, int>> runs;  // (ms, tile_tokens or -1 for tiles)
        runs.push_back({time_ms(ms, [&](const GpuMatrix& g) { gemm_tiles(g, in, n, y, g.rows, false); }), -1});
        for (int tile : {64, 128, 256})
            runs.push_back({time_ms(ms, [&](const GpuMatrix& g) { gemm_hopper(g, xb, n, y, g.rows, false, tile); }), tile});
        std::stable_sort(runs.begin(), runs.end());
        if (runs[0].second > 0) hopper_tiles[shape.first] = runs[0].second;
        char line[160];
        std::snprintf(line, sizeof line, "%lld x %lld %s, %zu matrices:", (long long)ms[0]->rows, (long long)ms[0]->cols,
                      type_traits(ms[0]->type).name, ms.size());
        gemm_choices += line;
        for (const auto& [ms_run, tile] : runs) {
            if (tile < 0) std::snprintf(line, sizeof line, " cublas (%.4f ms)", ms_run);
            else std::snprintf(line, sizeof line, " hopper %d (%.4f ms)", tile, ms_run);
            gemm_choices += line;
        }
        gemm_choices += "\n";
    }
}

// Runs the forward pass for n tokens whose ids are in d_tok, at positions d_io[0] + t
// (pos0_host == d_io[0]: the Turbo prefill splits at block boundaries; unused for n == 1).
// Leaves the logits in `logits` (n rows when all_logits, else the last token's) and their
// last row's argmax in *h_argmax once the stream is done.
void GpuContext::Impl::forward(const Model& m, int64_t n, bool all_logits, int64_t pos0_host) {
    const ModelConfig& c = m.config();
    const int64_t d = sz.d, kvd = sz.kvd, qd = sz.qkv, ff = sz.ff, nv = sz.nv;
    const int hd = (int)m.head_dim();
    const float eps = (float)c.rms_eps;
    cudaStream_t s = stream;
    mark("start");
    gather_rows_cuda(tok_embd, d_tok, n, x, s);
    mark("embed");
    for (const LayerDev& L : layers) {
        if (L.fused_qkv && n == 1) {
            GemvParams g;
            g.x = x, g.norm = L.attn_norm, g.eps = eps, g.w = L.wqkv, g.bias = L.bqkv, g.y = qkv;
            gemv_cuda(g, s);
        } else if (L.fused_qkv) {
            gemm(L.wqkv, norm_input(x, L.attn_norm, n), n, qkv, qd, false);
            if (L.bqkv) add_bias_rows_cuda(qkv, L.bqkv, n, qd, qd, s);
        } else if (n == 1) {
            GemvParams g;
            g.x = x, g.norm = L.attn_norm, g.eps = eps;
            g.w = L.wq, g.bias = L.bq, g.y = qkv;
            gemv_cuda(g, s);
            g.w = L.wk, g.bias = L.bk, g.y = qkv + d;
            gemv_cuda(g, s);
            g.w = L.wv, g.bias = L.bv, g.y = qkv + d + kvd;
            gemv_cuda(g, s);
        } else {
            const GemmInput in = norm_input(x, L.attn_norm, n);
            gemm(L.wq, in, n, qkv, qd, false);
            gemm(L.wk, in, n, qkv + d, qd, false);
            gemm(L.wv, in, n, qkv + d + kvd, qd, false);
            if (L.bq) add_bias_rows_cuda(qkv, L.bq, n, d, qd, s);
            if (L.bk) add_bias_rows_cuda(qkv + d, L.bk, n, kvd, qd, s);
            if (L.bv) add_bias_rows_cuda(qkv + d + kvd, L.bv, n, kvd, qd, s);
        }
        mark("qkv");
        if (sz.turbo) {
            turbo_attention(m, L, n, pos0_host);
        } else {
            RopeStoreParams rp;
            rp.qkv = qkv, rp.n = n, rp.pos0 = d_io;
            rp.n_head = (int)c.n_head, rp.n_head_kv = (int)c.n_head_kv, rp.head_dim = hd, rp.n_rot = (int)c.n_rot;
            rp.inv_freq = inv_freq, rp.neox = m.rope_mode() == RopeMode::Neox;
            rp.k_cache = L.k, rp.v_cache = L.v, rp.n_ctx = sz.n_ctx;
            const bool hopper = hopper_prefill && n > 1;
            if (hopper) rp.q16 = q16;
            rope_store_cuda(rp, s);
            mark("rope+kv");
            if (hopper) {  // a prefill chunk: one launch, each K/V tile read once per 128 queries
                HopperPrefillArgs h;
                h.q = q16, h.q_row_stride = d, h.q_head_stride = hd;
                h.k = L.k, h.v = L.v, h.kv_row_stride = hd, h.kv_head_stride = sz.n_ctx * hd;
                h.out = attn, h.out_row_stride = d, h.out_head_stride = hd;
                h.batch = 1, h.n_q_heads = (int)c.n_head, h.n_kv_heads = (int)c.n_head_kv, h.head_dim = hd;
                h.n_q = (int)n, h.q_pos0 = (int)pos0_host;
                hopper_prefill_launch(h, s);
            } else if (fp16_attn) {  // decode, or a prefill chunk as a causal batch of its tokens
                Fp16DecodeParams fp;
                fp.q = qkv, fp.out = attn, fp.k = (const uint16_t*)L.k, fp.v = (const uint16_t*)L.v, fp.seq_len = d_io + 1;
                fp.batch = (int)n, fp.causal = n > 1, fp.q_stride = qd;
                fp.n_q_heads = (int)c.n_head, fp.n_kv_heads = (int)c.n_head_kv, fp.head_dim = hd;
                fp.max_len = (int)sz.n_ctx, fp.workspace = attn_ws;
                fp16_decode_cuda(fp, s);
            } else {
                AttentionParams ap;
                ap.q = qkv, ap.q_stride = qd, ap.k_cache = L.k, ap.v_cache = L.v, ap.n_ctx = sz.n_ctx, ap.pos0 = d_io;
                ap.n = n, ap.n_head = (int)c.n_head, ap.n_head_kv = (int)c.n_head_kv, ap.head_dim = hd;
                ap.scale = 1.0f / std::sqrt((float)hd), ap.out = attn, ap.out_stride = d;
                attention_cuda(ap, s);
            }
        }
        mark("attention");
        if (n == 1) {
            GemvParams g;
            g.w = L.wo, g.x = attn, g.y = x, g.accumulate = true;
            gemv_cuda(g, s);
            mark("wo");
            GemvParams f;
            f.x = x, f.norm = L.ffn_norm, f.eps = eps;
            if (L.gate.type == L.up.type) {
                f.w = L.gate, f.w2 = L.up, f.y = gate;
                gemv_cuda(f, s);
            } else {
                f.w = L.gate, f.y = gate;
                gemv_cuda(f, s);
                f.w = L.up, f.y = up;
                gemv_cuda(f, s);
                swiglu_cuda(gate, up, ff, s);
            }
            mark("gate/up");
            GemvParams dn;
            dn.w = L.down, dn.x = gate, dn.y = x, dn.accumulate = true;
            gemv_cuda(dn, s);
            mark("down");
        } else {
            gemm(L.wo, gemm_input(attn, n, d), n, x, d, true);
            const GemmInput in = norm_input(x, L.ffn_norm, n);
            gemm(L.gate, in, n, gate, ff, false);
            gemm(L.up, in, n, up, ff, false);
            gemm(L.down, swiglu_input(n), n, x, d, true);
        }
    }
    if (all_logits && n > 1) {
        gemm(output, norm_input(x, output_norm, n), n, logits, nv, false);
    } else {
        GemvParams g;
        g.w = output, g.x = x + (n - 1) * d, g.norm = output_norm, g.eps = eps, g.y = logits;
        gemv_cuda(g, s);
    }
    mark("output");
    const int64_t last = all_logits ? n - 1 : 0;
    argmax_cuda(logits + last * nv, nv, d_argmax, s);
    mark("argmax");
    GPU_CHECK(cudaMemcpyAsync(h_argmax, d_argmax, sizeof(int32_t), cudaMemcpyDeviceToHost, s));
}

// Captures one decode step (token and position read from d_io, copied from the pinned h_io
// inside the graph). A failed capture is reported on stderr once and decode then runs the
// same kernels without a graph.
void GpuContext::Impl::capture(const Model& m) {
    cudaGraph_t g = nullptr;
    std::string err;
    GPU_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    try {
        GPU_CHECK(cudaMemcpyAsync(d_io, h_io, 64 + 4, cudaMemcpyHostToDevice, stream));
        forward(m, 1, false, -1);
    } catch (const std::exception& e) {
        err = e.what();
    }
    const cudaError_t end = cudaStreamEndCapture(stream, &g);
    if (err.empty() && end != cudaSuccess) err = std::string("cudaStreamEndCapture: ") + cudaGetErrorString(end);
    if (err.empty()) {
        const cudaError_t e = cudaGraphInstantiate(&graph, g, 0);
        if (e != cudaSuccess) err = std::string("cudaGraphInstantiate: ") + cudaGetErrorString(e), graph = nullptr;
    }
    if (g) cudaGraphDestroy(g);
    if (!err.empty()) {
        cudaGetLastError();
        graph_failed = true;
        std::fprintf(stderr, "tandem: warning: CUDA graph capture failed (%s); decoding without a graph\n", err.c_str());
    }
}

GpuContext::GpuContext(std::shared_ptr<const Model> model, const ContextParams& p, const GpuParams& gp)
    : model_(std::move(model)), impl_(std::make_unique<Impl>()) {
    const Model& m = *model_;
    const ModelConfig& c = m.config();
    Impl& I = *impl_;
    I.gp = gp;
    if (!p.turbo_kv && p.kv_type != GgmlType::F16)
        throw std::invalid_argument("the CUDA backend keeps the KV cache in F16 (or the Turbo cache: turbo_kv)");
    I.sz = sizes(m, p);
    if (I.sz.turbo) {  // what turbo_decode_cuda supports (the CPU twin allows more)
        if (I.sz.tcfg.block_tokens != 64) throw std::invalid_argument("turbo.block_tokens must be 64 on the CUDA backend");
        if (I.sz.tcfg.v_group < 32) throw std::invalid_argument("turbo.v_group must be >= 32 on the CUDA backend");
        if (c.n_head / c.n_head_kv > 8)
            throw std::invalid_argument("the Turbo cache on the CUDA backend needs at most 8 query heads per KV head");
    }
    n_ctx_ = I.sz.n_ctx, n_batch_ = I.sz.n_batch;
    if (n_ctx_ > c.n_ctx_train)
        throw std::invalid_argument("n_ctx " + std::to_string(n_ctx_) + " exceeds the model's training context " +
                                    std::to_string(c.n_ctx_train));
    if (c.n_head % c.n_head_kv != 0) throw ModelError(m.path() + ": n_head is not a multiple of n_head_kv");

    const GpuDeviceInfo info = gpu_device_info();
    if (!info.present) throw GpuError("GPU not usable: " + info.reason);
    I.device_name = info.name;
    const uint64_t need = gpu_context_bytes_needed(m, p);
    if (need > info.free_bytes)
        throw GpuError(m.path() + ": the CUDA backend needs " + std::to_string(mib(need)) + " MiB of GPU memory, " +
                       std::to_string(info.free_bytes >> 20) + " MiB free on " + info.name);

    GPU_CHECK(cudaStreamCreateWithFlags(&I.stream, cudaStreamNonBlocking));
    BLAS_CHECK(cublasCreate(&I.blas));
    BLAS_CHECK(cublasSetStream(I.blas, I.stream));

    // ---- weights: repack on the host, one copy per tensor into one allocation
    I.weight_bytes = weights_bytes(m);
    GPU_CHECK(cudaMalloc(&I.weights, I.weight_bytes));
    size_t off = 0;
    std::vector<uint8_t> staging;
    std::vector<float> tmp;
    std::vector<uint16_t> f16;
    std::vector<uint8_t> qkv_host;
    auto upload_matrix = [&](const WeightView& w) -> GpuMatrix {
        const GgmlType dt = device_type(w.type);
        const void* src = w.data;
        if (dt != w.type) {  // dequantize to F16 on the host
            const TypeTraits& tt = type_traits(w.type);
            if (!tt.to_float)
                throw ModelError(m.path() + ": weight type " + std::string(tt.name ? tt.name : "?") + " cannot be read");
            const size_t n = (size_t)(w.rows * w.cols);
            tmp.resize(n);
            f16.resize(n);
            tt.to_float(w.data, tmp.data(), (int64_t)n);
            for (size_t i = 0; i < n; i++) f16[i] = fp32_to_fp16(tmp[i]);
            src = f16.data();
        }
        const size_t bytes = gpu_matrix_bytes(dt, w.rows, w.cols);
        staging.resize(bytes);
        GpuMatrix gm;
        try {
            gm = gpu_matrix_repack(dt, w.rows, w.cols, src, staging.data(), I.weights + off);
        } catch (const std::invalid_argument& e) {
            throw ModelError(m.path() + ": " + e.what());
        }
        GPU_CHECK(cudaMemcpy(I.weights + off, staging.data(), bytes, cudaMemcpyHostToDevice));
        off += bytes;
        return gm;
    };
    auto upload_vector = [&](const WeightView& w) -> const float* {
        if (!w) return nullptr;
        if (w.type != GgmlType::F32) throw ModelError(m.path() + ": norm and bias vectors must be F32");
        const size_t bytes = (size_t)(w.rows * w.cols) * 4;
        GPU_CHECK(cudaMemcpy(I.weights + off, w.data, bytes, cudaMemcpyHostToDevice));
        const float* dptr = (const float*)(I.weights + off);
        off += r256(bytes);
        return dptr;
    };
    auto read_bytes = [](const GpuMatrix& g) { return (uint64_t)row_size(g.type, g.cols) * (uint64_t)g.rows; };
    I.tok_embd = upload_matrix(m.token_embd);
    I.output = tied(m) ? I.tok_embd : upload_matrix(m.output);
    I.output_norm = upload_vector(m.output_norm);
    I.bytes_per_token = read_bytes(I.output);
    for (const auto& L : m.layers) {
        LayerDev D;
        D.fused_qkv = L.wq.type == L.wk.type && L.wq.type == L.wv.type && (bool)L.bq == (bool)L.bk && (bool)L.bq == (bool)L.bv;
        if (D.fused_qkv) {  // one matrix of d + 2 kvd rows: the GGUF rows of Wq, Wk, Wv back to back
            const size_t rs = row_size(L.wq.type, L.wq.cols);
            qkv_host.resize(rs * (size_t)(L.wq.rows + L.wk.rows + L.wv.rows));
            std::memcpy(qkv_host.data(), L.wq.data, rs * (size_t)L.wq.rows);
            std::memcpy(qkv_host.data() + rs * (size_t)L.wq.rows, L.wk.data, rs * (size_t)L.wk.rows);
            std::memcpy(qkv_host.data() + rs * (size_t)(L.wq.rows + L.wk.rows), L.wv.data, rs * (size_t)L.wv.rows);
            WeightView cat = L.wq;
            cat.data = qkv_host.data(), cat.rows = L.wq.rows + L.wk.rows + L.wv.rows;
            D.wqkv = upload_matrix(cat);
            if (L.bq) {
                std::vector<float> b;
                for (const WeightView* v : {&L.bq, &L.bk, &L.bv})
                    b.insert(b.end(), (const float*)v->data, (const float*)v->data + v->rows * v->cols);
                WeightView bv = L.bq;
                bv.data = b.data(), bv.cols = (int64_t)b.size(), bv.rows = 1;
                D.bqkv = upload_vector(bv);
            }
        } else {
            D.wq = upload_matrix(L.wq), D.wk = upload_matrix(L.wk), D.wv = upload_matrix(L.wv);
        }
        D.wo = upload_matrix(L.wo);
        D.gate = upload_matrix(L.w_gate), D.up = upload_matrix(L.w_up), D.down = upload_matrix(L.w_down);
        D.attn_norm = upload_vector(L.attn_norm), D.ffn_norm = upload_vector(L.ffn_norm);
        if (!D.fused_qkv) D.bq = upload_vector(L.bq), D.bk = upload_vector(L.bk), D.bv = upload_vector(L.bv);
        for (const GpuMatrix* g : D.matrices())
            if (g->q) I.bytes_per_token += read_bytes(*g);
        I.layers.push_back(D);
    }
    auto see_mode = [&](const GpuMatrix& g) {
        if (!g.q) return;
        (I.gemm_mode(g) == GpuParams::PrefillGemm::bf16 ? I.bf16_inputs : I.f32_inputs) = true;
    };
    for (const LayerDev& D : I.layers)
        for (const GpuMatrix* g : D.matrices()) see_mode(*g);
    see_mode(I.output);
    I.rms_eps = (float)c.rms_eps;

    // ---- KV cache and scratch
    GPU_CHECK(cudaMalloc(&I.kv, I.sz.kv_bytes));
    GPU_CHECK(cudaMemset(I.kv, 0, I.sz.kv_bytes));
    if (I.sz.turbo) {  // per layer: records, recent buffer; then the fan-out and the workspace
        const size_t T = (size_t)I.sz.tcfg.block_tokens, D = (size_t)m.head_dim(), H = (size_t)c.n_head_kv;
        uint8_t* b = I.kv;
        auto recent_at = [&](uint8_t*& at, size_t copies) {
            TurboRecentDev r;
            r.k = (int8_t*)at, r.v = r.k + copies * H * T * D;
            r.ks = (float*)(at + r256(2 * copies * H * T * D)), r.vs = r.ks + copies * H * T;
            at += r256(2 * copies * H * T * D) + r256(2 * copies * H * T * 4);
            return r;
        };
        for (size_t l = 0; l < I.layers.size(); l++) {
            I.layers[l].blocks = b;
            b += r256(I.sz.layouts[l].seq_bytes);
            I.layers[l].recent = recent_at(b, 1);
        }
        I.fan = recent_at(b, kTurboFan);
        I.fan_len = (int*)b;
        b += r256(kTurboFan * 4);
        I.turbo_ws = (float*)b;
        b += r256(I.sz.ws_floats * 4);
        if ((uint64_t)(b - I.kv) > I.sz.kv_bytes) throw GpuError("internal: the Turbo cache outgrew its allocation");
    } else {
        const uint64_t per = (uint64_t)n_ctx_ * (uint64_t)I.sz.kvd;  // halves per layer, K or V
        for (size_t l = 0; l < I.layers.size(); l++) {
            I.layers[l].k = (__half*)I.kv + (2 * l) * per;
            I.layers[l].v = (__half*)I.kv + (2 * l + 1) * per;
        }
    }
    GPU_CHECK(cudaMalloc(&I.scratch, I.sz.scratch_bytes));
    float* f = I.scratch;
    const int64_t nb = n_batch_;
    auto take = [&](int64_t n) { float* r = f; f += (n + 63) / 64 * 64; return r; };  // 256-byte aligned
    I.x = take(nb * I.sz.d), I.xn = take(nb * I.sz.d), I.attn = take(nb * I.sz.d);
    I.qkv = take(nb * I.sz.qkv), I.gate = take(nb * I.sz.ff), I.up = take(nb * I.sz.ff);
    I.logits = take(nb * I.sz.nv), I.deq = take(I.sz.deq);
    I.xb = (__nv_bfloat16*)take((I.sz.xb + 1) / 2);
    if (I.sz.turbo) I.qc = take(nb * I.sz.d);
    I.tiles = (__half*)take((int64_t)(I.sz.tiles_bytes / 4));
    GPU_CHECK(cudaMalloc(&I.d_io, 64 + (size_t)nb * 4));
    I.d_argmax = (int32_t*)(I.d_io + 4);
    I.d_tok = (int32_t*)(I.d_io + 16);
    GPU_CHECK(cudaMallocHost(&I.h_io, 64 + (size_t)nb * 4));
    I.h_argmax = (int32_t*)(I.h_io + 4);
    I.h_tok = (int32_t*)(I.h_io + 16);

    // RoPE frequencies: the same as the CPU context's (at least one element to allocate)
    std::vector<float> inv = m.rope_inv_freq();
    if (inv.empty()) inv.resize(1);
    GPU_CHECK(cudaMalloc(&I.inv_freq, inv.size() * 4));
    GPU_CHECK(cudaMemcpy(I.inv_freq, inv.data(), inv.size() * 4, cudaMemcpyHostToDevice));

    const int hd = (int)m.head_dim(), group = (int)(c.n_head / c.n_head_kv);
    I.fp16_attn = !I.sz.turbo && gp.fp16_decode_kernel && (hd == 64 || hd == 128) && group <= 8;
    if (I.fp16_attn)  // counted in scratch_bytes; exact here (a device is present)
        GPU_CHECK(cudaMalloc(&I.attn_ws, I.sz.attn_ws_floats * sizeof(float)));
    I.hopper_prefill = I.fp16_attn && gp.hopper_prefill && hopper_prefill_available();
    // which GEMM the quantized matrices' prefill runs (a model without any: the mode's)
    using HG = GpuParams::HopperGemm;
    const bool hopper_gemm = gp.prefill_gemm == GpuParams::PrefillGemm::bf16 && hopper_gemm_available();
    I.hopper_all = hopper_gemm && gp.hopper_gemm == HG::always;
    if (hopper_gemm && gp.hopper_gemm == HG::measured && n_batch_ > 1) {
        // A failed measurement leaves every matrix on tiles + cuBLAS and says why in
        // prefill_gemm_choices(); a fault of the device itself fails the next call as well.
        try {
            I.measure_hopper_gemm(n_batch_);
        } catch (const std::exception& e) {
            cudaGetLastError();
            I.hopper_tiles.clear();
            I.gemm_choices = std::string("not measured (") + e.what() + "): every matrix on tiles + cuBLAS\n";
        }
    }
    bool fused = false, tiles = false;
    auto see_kernel = [&](const GpuMatrix& g) {
        if (g.q && I.gemm_mode(g) == GpuParams::PrefillGemm::bf16) (I.hopper_tile(g) >= 0 ? fused : tiles) = true;
    };
    for (const LayerDev& D : I.layers)
        for (const GpuMatrix* g : D.matrices()) see_kernel(*g);
    see_kernel(I.output);
    using Mode = GpuParams::PrefillGemm;
    I.gemm_kernel = fused ? (tiles ? "hopper fused + cublas bf16" : "hopper fused")
                          : gp.prefill_gemm == Mode::bf16 ? "cublas bf16"
                          : gp.prefill_gemm == Mode::tf32 ? "cublas tf32" : "cublas fp32";
    if (I.hopper_prefill) GPU_CHECK(cudaMalloc(&I.q16, (size_t)I.sz.n_batch * I.sz.d * 2));
    GPU_CHECK(cudaDeviceSynchronize());
}

GpuContext::~GpuContext() = default;

const std::string& GpuContext::device_name() const { return impl_->device_name; }

const char* GpuContext::prefill_attention() const {
    if (impl_->sz.turbo) return impl_->gp.turbo_prefill_kernel ? "turbo cache prefill" : "turbo segments";
    if (impl_->hopper_prefill) return "hopper";
    return impl_->fp16_attn ? "fp16 split-KV causal" : "plain";
}
const char* GpuContext::prefill_gemm_kernel() const { return impl_->gemm_kernel.c_str(); }
const std::string& GpuContext::prefill_gemm_choices() const { return impl_->gemm_choices; }
uint64_t GpuContext::weight_bytes_per_token() const { return impl_->bytes_per_token; }
uint64_t GpuContext::device_bytes() const {
    return impl_->weight_bytes + impl_->sz.kv_bytes + impl_->sz.scratch_bytes;
}
uint64_t GpuContext::kv_bytes() const { return impl_->sz.kv_bytes; }

int64_t GpuContext::truncate(int64_t n) {
    n = std::clamp<int64_t>(n, 0, n_past_);
    if (impl_->sz.turbo) n = turbo_truncate_keep(n, n_past_, impl_->sz.tcfg.block_tokens);
    return n_past_ = n;
}

void GpuContext::eval(const int32_t* tokens, int64_t n, bool all_logits) {
    check_eval_args(tokens, n);
    const int64_t nv = model_->config().n_vocab;
    Impl& I = *impl_;
    logit_rows_ = all_logits ? n : 1;
    I.host_valid = false;
    if (all_logits) I.host_logits.resize((size_t)(n * nv));
    for (int64_t done = 0; done < n; done += n_batch_) {
        const int64_t nb = std::min(n_batch_, n - done);
        I.h_io[0] = (int)(n_past_), I.h_io[1] = (int)(n_past_ + nb);
        std::memcpy(I.h_tok, tokens + done, (size_t)nb * 4);
        if (nb == 1 && I.gp.use_graph && !I.graph_failed && I.decode_steps >= 1 && !I.graph) I.capture(*model_);
        if (nb == 1 && I.graph) {
            GPU_CHECK(cudaGraphLaunch(I.graph, I.stream));
        } else {
            GPU_CHECK(cudaMemcpyAsync(I.d_io, I.h_io, 64 + (size_t)nb * 4, cudaMemcpyHostToDevice, I.stream));
            I.forward(*model_, nb, all_logits, n_past_);
            if (nb == 1) I.decode_steps++;
        }
        if (all_logits)
            GPU_CHECK(cudaMemcpyAsync(I.host_logits.data() + done * nv, I.logits, (size_t)(nb * nv) * 4,
                                      cudaMemcpyDeviceToHost, I.stream));
        GPU_CHECK(cudaStreamSynchronize(I.stream));
        n_past_ += nb;
    }
    I.host_valid = all_logits;
}

std::vector<std::pair<std::string, double>> GpuContext::profile_decode_step(int32_t token) {
    return profile_eval(&token, 1);
}

std::vector<std::pair<std::string, double>> GpuContext::profile_eval(const int32_t* tokens, int64_t n) {
    check_eval_args(tokens, n);
    if (n > n_batch_) throw std::invalid_argument("profile_eval: more tokens than n_batch");
    Impl& I = *impl_;
    I.h_io[0] = (int)n_past_, I.h_io[1] = (int)(n_past_ + n);
    std::memcpy(I.h_tok, tokens, (size_t)n * 4);
    I.marks.clear();
    I.profiling = true;
    try {
        GPU_CHECK(cudaMemcpyAsync(I.d_io, I.h_io, 64 + (size_t)n * 4, cudaMemcpyHostToDevice, I.stream));
        I.forward(*model_, n, false, n_past_);
    } catch (...) {
        I.profiling = false;
        throw;
    }
    I.profiling = false;
    GPU_CHECK(cudaStreamSynchronize(I.stream));
    n_past_ += n;
    logit_rows_ = 1;
    I.host_valid = false;
    std::vector<std::pair<std::string, double>> out;
    for (size_t i = 1; i < I.marks.size(); i++) {
        float ms = 0;
        GPU_CHECK(cudaEventElapsedTime(&ms, I.events[i - 1], I.events[i]));
        auto it = std::find_if(out.begin(), out.end(), [&](const auto& p) { return p.first == I.marks[i]; });
        if (it == out.end()) out.emplace_back(I.marks[i], (double)ms);
        else it->second += ms;
    }
    return out;
}

const float* GpuContext::logits() const {
    Impl& I = *impl_;
    if (!I.host_valid) {
        const int64_t nv = model_->config().n_vocab;
        I.host_logits.resize((size_t)nv);
        GPU_CHECK(cudaMemcpy(I.host_logits.data(), I.logits, (size_t)nv * 4, cudaMemcpyDeviceToHost));
        I.host_valid = true;
    }
    return I.host_logits.data();
}

int32_t GpuContext::argmax() const { return *impl_->h_argmax; }

}  // namespace tandem
