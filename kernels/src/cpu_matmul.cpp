// pack_weights / matvec / matmul: argument checks, run-time kernel path choice, activation
// quantization and tiling, and the split of the work over the thread pool. The arithmetic
// lives in cpu_dot_scalar.cpp (rows layout) and cpu_gemm_<path>.cpp (panels layout).
#include "tandem/cpu_matmul.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "cpu_kernels.h"
#include "cpu_panels.h"

namespace tandem::cpu {

using namespace detail;

// ---- CPU feature detection -----------------------------------------------------------------

#if defined(__x86_64__) || defined(__i386__)
static uint64_t read_xcr0() {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

// Linux (5.16+) hands out the AMX tile data state only to processes that ask for it; without
// it the first tile instruction faults. Asked once, at detection; false where refused.
static bool request_tile_permission() {
#if defined(__linux__) && defined(__x86_64__)
    constexpr long kArchReqXcompPerm = 0x1023;  // ARCH_REQ_XCOMP_PERM
    constexpr long kXfeatureXtiledata = 18;     // XFEATURE_XTILEDATA
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
    return false;
#endif
}

static CpuFeatures detect_features() {
    CpuFeatures f;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    const bool osxsave = (c >> 27) & 1;
    if (!osxsave) return f;  // the OS does not save YMM/ZMM state: no AVX of any kind
    const uint64_t xcr0 = read_xcr0();
    const bool ymm_os = (xcr0 & 0x6) == 0x6;     // XMM + YMM state
    const bool zmm_os = (xcr0 & 0xE6) == 0xE6;   // + opmask, ZMM_Hi256, Hi16_ZMM
    const bool avx = ((c >> 28) & 1) && ymm_os;
    f.fma = avx && ((c >> 12) & 1);
    f.f16c = avx && ((c >> 29) & 1);
    if (__get_cpuid_max(0, nullptr) < 7) return f;
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = avx && ((b >> 5) & 1);
    f.avx512f = zmm_os && ((b >> 16) & 1);
    f.avx512bw = zmm_os && ((b >> 30) & 1);
    f.avx512vl = zmm_os && ((b >> 31) & 1);
    f.avx512vnni = zmm_os && ((c >> 11) & 1);
    const bool amx_cpu = ((d >> 24) & 1) && ((d >> 25) & 1);  // AMX-TILE, AMX-INT8
    const bool amx_bf16_cpu = (d >> 22) & 1;                    // AMX-BF16
    __cpuid_count(7, 1, a, b, c, d);
    f.avx_vnni = avx && ((a >> 4) & 1);
    f.avx512bf16 = zmm_os && ((a >> 5) & 1);
    f.amx_int8 = amx_cpu && (xcr0 & 0x60000) == 0x60000 && request_tile_permission();
    f.amx_refused = amx_cpu && !f.amx_int8;
    f.amx_bf16 = f.amx_int8 && amx_bf16_cpu;
    return f;
}
#else
static CpuFeatures detect_features() { return CpuFeatures{}; }
#endif

const CpuFeatures& cpu_features() {
    static const CpuFeatures f = detect_features();
    return f;
}

// ---- kernel paths --------------------------------------------------------------------------

struct Path {
    const char* name;
    bool (*supported)();
    const KernelSet& (*kernels)();
    bool automatic;  // may be chosen as "best"
    OpsIsa ops;      // the other ops' vector code on a CPU whose best path this is (force_kernel_path caps at it)
};

static bool has_avx2() { const CpuFeatures& f = cpu_features(); return f.avx2 && f.fma && f.f16c; }
static bool has_avx512() {
    const CpuFeatures& f = cpu_features();
    return has_avx2() && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni;
}

bool avx_vnni_is_vex() { return has_avx2() && cpu_features().avx_vnni; }

static std::atomic<OpsIsa> g_ops_cap{OpsIsa::Avx512};

OpsIsa ops_isa() {
    const OpsIsa cap = g_ops_cap.load(std::memory_order_acquire);
    const CpuFeatures& f = cpu_features();
    if (cap >= OpsIsa::Avx512 && has_avx2() && f.avx512f) return OpsIsa::Avx512;
    if (cap >= OpsIsa::Avx2 && has_avx2()) return OpsIsa::Avx2;
    return OpsIsa::Scalar;
}

void cap_ops_isa(OpsIsa cap) { g_ops_cap.store(cap, std::memory_order_release); }

static const KernelSet& kernels_avx_vnni_here() {
    return avx_vnni_is_vex() ? kernels_avx_vnni() : kernels_avx512vl_vnni();
}

// Best first. amx-bf16 leads where the CPU has it: on an AMX Xeon core its prompts ran
// 1.46-1.72x avx512-vnni's in the engine, and its numerics are nearer to the unquantized
// computation than the int8 paths' (bench/results/cpu-prompt.md, section 35; an earlier
// measurement that found its engine prompt no faster had scratch buffers that left every tile
// row across two cache lines). amx is not chosen automatically: on the AMX CPUs measured (Xeons
// of model 207 and model 143, and the one of section 35) its prefill ran at 0.60-1.04x of
// avx512-vnni's: each 32-column block's C tile goes through memory to the vector units for its
// scales, and on those cores the tile work and that vector work do not overlap.
static bool has_amx_bf16() { return has_avx512() && cpu_features().amx_bf16 && cpu_features().avx512bf16; }
static const Path kPaths[] = {
    {"amx-bf16", has_amx_bf16, kernels_amx_bf16, true, OpsIsa::Avx512},
    {"amx", [] { return has_avx512() && cpu_features().amx_int8; }, kernels_amx, false, OpsIsa::Avx512},
    {"avx512-vnni", has_avx512, kernels_avx512, true, OpsIsa::Avx512},
    {"avx-vnni", [] { return avx_vnni_is_vex() || has_avx512(); }, kernels_avx_vnni_here, true, OpsIsa::Avx2},
    {"avx2", has_avx2, kernels_avx2, true, OpsIsa::Avx2},
    {"scalar", [] { return true; }, kernels_scalar, true, OpsIsa::Scalar},
    {"amx-emulated", has_avx512, kernels_amx_emulated, false, OpsIsa::Avx512},
    {"amx-bf16-emulated", has_avx512, kernels_amx_bf16_emulated, false, OpsIsa::Avx512},
};

static const Path* find_path(const char* name) {
    for (const Path& p : kPaths)
        if (std::strcmp(p.name, name) == 0) return &p;
    return nullptr;
}

static const KernelSet* best_kernels() {
    for (const Path& p : kPaths)
        if (p.automatic && p.supported()) return &p.kernels();
    return &kernels_scalar();
}

static std::atomic<const KernelSet*> g_forced{nullptr};

static const KernelSet& active() {
    const KernelSet* k = g_forced.load(std::memory_order_acquire);
    if (k) return *k;
    static const KernelSet* best = best_kernels();
    return *best;
}

const char* kernel_path_name() { return active().name; }

bool kernel_path_supported(const char* name) {
    const Path* p = name ? find_path(name) : nullptr;
    return p && p->supported();
}

void force_kernel_path(const char* name) {
    if (name && std::strcmp(name, "best") == 0) {
        g_forced.store(nullptr, std::memory_order_release);
        cap_ops_isa(OpsIsa::Avx512);
        return;
    }
    const Path* p = name ? find_path(name) : nullptr;
    if (!p) {
        std::string known;
        for (const Path& q : kPaths) known += std::string(known.empty() ? "" : ", ") + q.name;
        throw CpuKernelError(std::string("force_kernel_path: unknown path '") + (name ? name : "(null)") +
                             "' (known: best, " + known + ")");
    }
    if (!p->supported())
        throw CpuKernelError(std::string("force_kernel_path: this CPU cannot run the '") + name + "' path");
    g_forced.store(&p->kernels(), std::memory_order_release);
    cap_ops_isa(p->ops);
}

// ---- argument checks -----------------------------------------------------------------------

ActFormat detail::act_format(GgmlType t, int64_t n_tokens) {
    const TypeTraits& tt = type_traits(t);
    if (!tt.is_quantized) return ActFormat::F32;
    if (tt.block_size == QK_K) return ActFormat::Q8K;
    return n_tokens > 1 ? ActFormat::Q8AG : ActFormat::Q8A;
}

bool matmul_supports(GgmlType type) {
    const uint32_t id = (uint32_t)type;
    return id < kGgmlTypeCount && kernels_scalar().k[id].rows != nullptr;
}

[[noreturn]] static void fail(const char* fn, GgmlType type, const std::string& why) {
    const TypeTraits* tt = type_traits((uint32_t)type);
    const std::string tname = tt ? tt->name : "type id " + std::to_string((uint32_t)type);
    throw CpuKernelError(std::string(fn) + " (" + tname + "): " + why);
}

// A per-thread scratch buffer, grown as needed, never shrunk, its contents not kept when it
// grows; `slot` tells the callers apart. 64-byte aligned: the AMX kernels load their A and B
// tiles from it in 64-byte rows, which at malloc's 16-byte alignment straddled two cache lines
// each; the amx-bf16 prompt then ran at 0.68-0.71x of this on an AMX Xeon core (the engine,
// bench/results/cpu-prompt.md section 35), and its speed hung on where malloc put the buffers.
struct ScratchBuffer {
    uint8_t* data = nullptr;
    size_t bytes = 0;
    ~ScratchBuffer() { std::free(data); }
};
static uint8_t* scratch(int slot, size_t bytes) {
    thread_local ScratchBuffer buf[2];
    ScratchBuffer& b = buf[slot];
    if (b.bytes < bytes) {
        const size_t n = (bytes + 63) / 64 * 64;
        uint8_t* p = (uint8_t*)std::aligned_alloc(64, n);
        if (!p) throw std::bad_alloc();
        std::free(b.data);
        b.data = p;
        b.bytes = n;
    }
    return b.data;
}

// Runs fn over [0, n) on the pool, or inline when there is none.
static void run(ThreadPool* pool, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    if (pool && pool->size() > 1)
        pool->parallel_for(n, fn, grain);
    else
        fn(0, n);
}

// ---- PackedWeights -------------------------------------------------------------------------

PackedWeights::PackedWeights() = default;
PackedWeights::~PackedWeights() { std::free(data_); }
PackedWeights::PackedWeights(PackedWeights&& o) noexcept { *this = std::move(o); }
PackedWeights& PackedWeights::operator=(PackedWeights&& o) noexcept {
    if (this != &o) {
        std::free(data_);
        type_ = o.type_;
        rows_ = o.rows_;
        cols_ = o.cols_;
        bytes_ = o.bytes_;
        panel_bytes_ = o.panel_bytes_;
        kernels_ = o.kernels_;
        data_ = o.data_;
        o.rows_ = o.cols_ = 0;
        o.bytes_ = o.panel_bytes_ = 0;
        o.kernels_ = nullptr;
        o.data_ = nullptr;
    }
    return *this;
}

const char* PackedWeights::kernel_path() const { return kernels_ ? ((const KernelSet*)kernels_)->name : ""; }

PackedWeights pack_weights(GgmlType type, const void* W, int64_t rows, int64_t cols, ThreadPool* pool) {
    const char* fn = "pack_weights";
    if (!matmul_supports(type)) fail(fn, type, "weight type not supported by the CPU matmul kernels");
    const TypeTraits& tt = type_traits(type);
    if (rows < 0) fail(fn, type, "rows must be >= 0, got " + std::to_string(rows));
    if (cols <= 0 || cols % tt.block_size != 0)
        fail(fn, type, "cols (" + std::to_string(cols) + ") must be a positive multiple of the block size " +
                           std::to_string(tt.block_size));
    if (rows > 0 && !W) fail(fn, type, "null weight pointer");
    const KernelSet& ks = active();
    PackedWeights p;
    p.type_ = type;
    p.rows_ = rows;
    p.cols_ = cols;
    p.kernels_ = &ks;
    if (ks.layout == Layout::Rows) {
        p.bytes_ = row_size(type, cols) * (size_t)rows;
    } else {
        p.panel_bytes_ = panel_bytes(type, cols);
        p.bytes_ = p.panel_bytes_ * (size_t)((rows + kPanelRows - 1) / kPanelRows);
    }
    p.data_ = (uint8_t*)std::aligned_alloc(64, (p.bytes_ + 63) / 64 * 64);
    if (!p.data_) fail(fn, type, "out of memory for " + std::to_string(p.bytes_) + " bytes");
    if (ks.layout == Layout::Rows) {
        if (rows > 0) std::memcpy(p.data_, W, p.bytes_);
    } else {
        uint8_t* dst = p.data_;
        const size_t pb = p.panel_bytes_;
        run(pool, (rows + kPanelRows - 1) / kPanelRows, 1, [&](int64_t p0, int64_t p1) {
            for (int64_t i = p0; i < p1; i++) pack_panel(type, W, rows, cols, i, dst + i * pb);
        });
    }
    return p;
}

// ---- matvec / matmul -----------------------------------------------------------------------

static void check_call(const char* fn, const PackedWeights& w, const float* X, const float* Y, int64_t n_tokens) {
    if (!w) throw CpuKernelError(std::string(fn) + ": the weights are empty (not packed)");
    if (n_tokens < 0) fail(fn, w.type(), "n_tokens must be >= 0, got " + std::to_string(n_tokens));
    if (w.rows() > 0 && n_tokens > 0 && (!X || !Y)) fail(fn, w.type(), "null pointer argument");
}

// Rows layout: quantize every token's row, then row tiles of 16 against every token.
static void matmul_rows(const TypeKernel& k, GgmlType type, const uint8_t* W, int64_t rows, int64_t cols,
                        const float* X, int64_t n_tokens, float* Y, ThreadPool* pool) {
    const ActFormat af = act_format(type, n_tokens);
    const size_t ldw = row_size(type, cols);
    const size_t ldx = act_row_size(af, cols);
    const void* Xq = X;
    if (af != ActFormat::F32) {
        uint8_t* buf = scratch(0, ldx * (size_t)n_tokens);
        run(pool, n_tokens, 1, [&](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; t++) quantize_act(af, X + t * cols, buf + t * ldx, cols);
        });
        Xq = buf;
    }
    constexpr int64_t kRowTile = 16;
    const int64_t tiles = (rows + kRowTile - 1) / kRowTile;
    run(pool, tiles, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; i++) {
            const int64_t r0 = i * kRowTile, r1 = std::min(rows, r0 + kRowTile);
            k.rows(cols, W + r0 * ldw, ldw, r1 - r0, Xq, ldx, n_tokens, Y + r0, rows);
        }
    });
}

// Chunk c of a call's panels, numbered across its matrices (matrix m's first is first_chunk[m],
// of chunk[m] panels each): the matrix and its panels [p0, p1).
struct ChunkSpan {
    int m;
    int64_t p0, p1;
};
static ChunkSpan chunk_span(int64_t c, const int64_t* first_chunk, const int64_t* chunk, const PackedWeights* const w[]) {
    int m = 0;
    while (c >= first_chunk[m + 1]) m++;
    const int64_t n_panels = (w[m]->rows() + kPanelRows - 1) / kPanelRows, p0 = (c - first_chunk[m]) * chunk[m];
    return {m, p0, std::min(n_panels, p0 + chunk[m])};
}

// Panels layout. Tokens go in tiles of the path's largest tile size (the last tile: the
// smallest size that holds the rest); the tiles are filled once for all the matrices, then
// the threads take runs of tiles against chunks of panels (about kChunkBytes of weights, which
// stay in L2).
constexpr size_t kChunkBytes = 192 * 1024;

static void matmul_panels(const KernelSet& ks, const PackedWeights* const w[], float* const Y[], int n_mats,
                          const uint8_t* const data[], const size_t panel_bytes[], const float* X, int64_t n_tokens,
                          ThreadPool* pool) {
    int64_t total_panels = 0;
    for (int m = 0; m < n_mats; m++) total_panels += (w[m]->rows() + kPanelRows - 1) / kPanelRows;
    if (total_panels == 0) return;
    const GgmlType type = w[0]->type();
    const TypeKernel& k = ks.k[(uint32_t)type];
    const int64_t cols = w[0]->cols();
    const int t_max = k.tile_sizes[k.n_tile_sizes - 1];
    const int64_t n_tiles = (n_tokens + t_max - 1) / t_max;
    const int64_t rest = n_tokens - (n_tiles - 1) * t_max;
    int t_last = t_max;
    for (int i = 0; i < k.n_tile_sizes; i++)
        if (k.tile_sizes[i] >= rest) { t_last = k.tile_sizes[i]; break; }
    const size_t full_bytes = act_tile_bytes(type, cols, t_max);
    uint8_t* tiles = scratch(0, full_bytes * (size_t)n_tiles);
    auto tile_T = [&](int64_t i) { return i == n_tiles - 1 ? t_last : t_max; };
    auto tile_nt = [&](int64_t i) { return (int)(i == n_tiles - 1 ? rest : t_max); };
    // Q8AG for the 32-block types (n_tokens > 1 here whenever a tile of 16 exists): tile_qt
    // relies on it
    const ActFormat af = act_format(type, n_tokens);
    const size_t row_bytes = act_row_size(af, cols);
    run(pool, n_tiles, 1, [&](int64_t i0, int64_t i1) {
        void* row = scratch(1, row_bytes);
        for (int64_t i = i0; i < i1; i++)
            act_tile_fill(type, af, cols, X + i * t_max * cols, cols, tile_nt(i), tile_T(i), k.corr_shift, ks.act_row,
                          ks.act_tile16, tiles + i * full_bytes, row);
    });

    // chunks of each matrix, numbered across the matrices
    const int threads = pool ? pool->size() : 1;
    const int64_t balance = std::max<int64_t>(1, (total_panels + 4 * threads - 1) / (4 * threads));
    constexpr int kMaxMats = 8;
    int64_t chunk[kMaxMats], first_chunk[kMaxMats + 1] = {0};
    for (int m = 0; m < n_mats; m++) {
        const int64_t n_panels = (w[m]->rows() + kPanelRows - 1) / kPanelRows;
        int64_t c = std::min<int64_t>(std::max<int64_t>(1, (int64_t)(kChunkBytes / panel_bytes[m])), balance);
        c = (c + 3) / 4 * 4;  // whole groups of the decode kernel's 4 panels
        chunk[m] = c;
        first_chunk[m + 1] = first_chunk[m] + (n_panels + c - 1) / c;
    }
    const int64_t n_recs = cols / panel_format(type)->rec_cols;
    // Each chunk's token tiles go in `parts` runs of consecutive tiles, numbered chunk by chunk,
    // so that matrices of few chunks still make about 4 runs a thread (a 768-row matrix makes 12
    // chunks: 1.5 per thread on 8 threads).
    const int64_t n_chunks = first_chunk[n_mats];
    const int64_t parts = std::min<int64_t>(n_tiles, (4 * threads + n_chunks - 1) / n_chunks);
    run(pool, n_chunks * parts, 1, [&](int64_t j0, int64_t j1) {
        for (int64_t j = j0; j < j1; j++) {
            const auto [m, p0, p1] = chunk_span(j / parts, first_chunk, chunk, w);
            const int64_t rows = w[m]->rows();
            const int64_t part = j % parts;
            for (int64_t i = part * n_tiles / parts; i < (part + 1) * n_tiles / parts; i++) {
                PanelTask t;
                t.w = data[m] + p0 * panel_bytes[m];
                t.panel_bytes = panel_bytes[m];
                t.n_panels = p1 - p0;
                t.rows = rows - p0 * kPanelRows;
                t.n_recs = n_recs;
                t.act = tiles + i * full_bytes;
                t.T = tile_T(i);
                t.nt = tile_nt(i);
                t.y = Y[m] + i * t_max * rows + p0 * kPanelRows;
                t.ldy = rows;
                k.panels(t);
            }
        }
    });
}

// BF16 tiles (the type's .bf16 kernel): every token's activations rounded to BF16 once, then
// each thread takes chunks of panels (about kBf16ChunkBytes of B tiles per K piece, which stay in
// its L2), dequantizes them piece by piece and runs every token against them.
constexpr size_t kBf16ChunkBytes = 512 * 1024;

static void matmul_bf16(const KernelSet& ks, const PackedWeights* const w[], float* const Y[], int n_mats,
                        const uint8_t* const data[], const size_t panel_bytes[], const float* X, int64_t n_tokens,
                        ThreadPool* pool) {
    const TypeKernel& k = ks.k[(uint32_t)w[0]->type()];
    const int64_t cols = w[0]->cols(), n_pad = (n_tokens + 15) / 16 * 16;
    uint16_t* xb = (uint16_t*)scratch(0, (size_t)(n_pad * cols) * 2);
    run(pool, n_pad, 16, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; t++) {
            if (t < n_tokens) ks.to_bf16(X + t * cols, xb + t * cols, cols);
            else std::memset(xb + t * cols, 0, (size_t)cols * 2);
        }
    });
    const int threads = pool ? pool->size() : 1;
    int64_t total_panels = 0;
    for (int m = 0; m < n_mats; m++) total_panels += (w[m]->rows() + kPanelRows - 1) / kPanelRows;
    const int64_t balance = std::max<int64_t>(2, (total_panels + 4 * threads - 1) / (4 * threads));
    const int64_t b_panel = std::min(cols, kBf16PieceCols) * kPanelRows * 2;  // bytes of one panel's B tiles
    int64_t chunk = std::min<int64_t>(std::max<int64_t>(2, (int64_t)kBf16ChunkBytes / b_panel), balance);
    chunk = (chunk + 1) / 2 * 2;  // whole pairs of the kernel's 2 panels
    const size_t acc_bytes = cols > kBf16PieceCols ? (size_t)bf16_acc_floats(n_tokens, chunk) * 4 : 0;
    constexpr int kMaxMats = 8;
    int64_t first_chunk[kMaxMats + 1] = {0}, chunks[kMaxMats];
    for (int m = 0; m < n_mats; m++) {
        chunks[m] = chunk;
        first_chunk[m + 1] = first_chunk[m] + ((w[m]->rows() + kPanelRows - 1) / kPanelRows + chunk - 1) / chunk;
    }
    const int64_t n_recs = cols / panel_format(w[0]->type())->rec_cols;
    run(pool, first_chunk[n_mats], 1, [&](int64_t c0, int64_t c1) {
        uint8_t* buf = scratch(1, (size_t)(chunk * b_panel) + acc_bytes);  // B tiles, then the C tiles between pieces
        uint16_t* b = (uint16_t*)buf;
        float* acc = acc_bytes ? (float*)(buf + chunk * b_panel) : nullptr;
        for (int64_t c = c0; c < c1; c++) {
            const auto [m, p0, p1] = chunk_span(c, first_chunk, chunks, w);
            const int64_t rows = w[m]->rows();
            Bf16Task t;
            t.w = data[m] + p0 * panel_bytes[m];
            t.panel_bytes = panel_bytes[m];
            t.n_panels = p1 - p0;
            t.rows = rows - p0 * kPanelRows;
            t.n_recs = n_recs;
            t.x = xb;
            t.ldx = cols;
            t.n_tokens = n_tokens;
            t.y = Y[m] + p0 * kPanelRows;
            t.ldy = rows;
            t.b = b;
            t.acc = acc;
            k.bf16(t);
        }
    });
}

void matmul_group(const PackedWeights* const w[], float* const Y[], int n_mats, const float* X, int64_t n_tokens,
                  ThreadPool* pool) {
    constexpr int kMaxMats = 8;
    if (n_mats < 1 || n_mats > kMaxMats)
        throw CpuKernelError("matmul_group: 1 to " + std::to_string(kMaxMats) + " matrices, got " + std::to_string(n_mats));
    for (int m = 0; m < n_mats; m++) {
        check_call("matmul", *w[m], X, Y[m], n_tokens);
        if (w[m]->type() != w[0]->type() || w[m]->cols() != w[0]->cols() || w[m]->kernels_ != w[0]->kernels_)
            fail("matmul_group", w[m]->type(), "the matrices must share type, cols and kernel path");
    }
    if (n_tokens == 0) return;
    const KernelSet& ks = *(const KernelSet*)w[0]->kernels_;
    if (ks.layout == Layout::Rows) {
        for (int m = 0; m < n_mats; m++)
            if (w[m]->rows() > 0)
                matmul_rows(ks.k[(uint32_t)w[m]->type()], w[m]->type(), w[m]->data_, w[m]->rows(), w[m]->cols(), X, n_tokens,
                            Y[m], pool);
        return;
    }
    const uint8_t* data[kMaxMats];
    size_t pb[kMaxMats];
    for (int m = 0; m < n_mats; m++) {
        data[m] = w[m]->data_;
        pb[m] = w[m]->panel_bytes_;
    }
    if (ks.k[(uint32_t)w[0]->type()].bf16 && n_tokens >= kBf16MinTokens)
        matmul_bf16(ks, w, Y, n_mats, data, pb, X, n_tokens, pool);
    else
        matmul_panels(ks, w, Y, n_mats, data, pb, X, n_tokens, pool);
}

void matmul(const PackedWeights& w, const float* X, int64_t n_tokens, float* Y, ThreadPool* pool) {
    const PackedWeights* ws[1] = {&w};
    float* ys[1] = {Y};
    matmul_group(ws, ys, 1, X, n_tokens, pool);
}

void matvec(const PackedWeights& w, const float* x, float* y, ThreadPool* pool) {
    check_call("matvec", w, x, y, 1);
    matmul(w, x, 1, y, pool);
}

}  // namespace tandem::cpu
