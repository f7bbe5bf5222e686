// matvec / matmul: argument checks, run-time kernel path choice, activation quantization and
// the split of the work over the thread pool. The arithmetic lives in cpu_dot_<path>.cpp.
#include "tandem/cpu_matmul.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "cpu_kernels.h"

namespace tandem::cpu {

using namespace detail;

// ---- CPU feature detection -----------------------------------------------------------------

#if defined(__x86_64__) || defined(__i386__)
static uint64_t read_xcr0() {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
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
    __cpuid_count(7, 1, a, b, c, d);
    f.avx_vnni = avx && ((a >> 4) & 1);
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
};

// Best first.
static const Path kPaths[] = {
    {"avx512-vnni",
     [] {
         const CpuFeatures& f = cpu_features();
         return f.avx512f && f.avx512bw && f.avx512vnni && f.avx2 && f.fma && f.f16c;
     },
     kernels_avx512},
    {"avx2", [] { const CpuFeatures& f = cpu_features(); return f.avx2 && f.fma && f.f16c; }, kernels_avx2},
    {"scalar", [] { return true; }, kernels_scalar},
};

static const Path* find_path(const char* name) {
    for (const Path& p : kPaths)
        if (std::strcmp(p.name, name) == 0) return &p;
    return nullptr;
}

static const KernelSet* best_kernels() {
    for (const Path& p : kPaths)
        if (p.supported()) return &p.kernels();
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
}

// ---- argument checks -----------------------------------------------------------------------

ActFormat detail::act_format(GgmlType t) {
    const TypeTraits& tt = type_traits(t);
    if (!tt.is_quantized) return ActFormat::F32;
    return tt.block_size == QK_K ? ActFormat::Q8K : ActFormat::Q8A;
}

bool matmul_supports(GgmlType type) {
    const uint32_t id = (uint32_t)type;
    return id < kGgmlTypeCount && kernels_scalar().gemm[id] != nullptr;
}

static gemm_fn checked_kernel(const char* fn, GgmlType type, const void* W, int64_t rows, int64_t cols,
                              const void* x, const void* y, int64_t n_tokens) {
    const TypeTraits* tt = type_traits((uint32_t)type);
    const std::string tname = tt ? tt->name : "type id " + std::to_string((uint32_t)type);
    auto fail = [&](const std::string& why) { throw CpuKernelError(std::string(fn) + " (" + tname + "): " + why); };
    if (!matmul_supports(type)) fail("weight type not supported by the CPU matmul kernels");
    if (rows < 0) fail("rows must be >= 0, got " + std::to_string(rows));
    if (n_tokens < 0) fail("n_tokens must be >= 0, got " + std::to_string(n_tokens));
    if (cols <= 0 || cols % tt->block_size != 0)
        fail("cols (" + std::to_string(cols) + ") must be a positive multiple of the block size " +
             std::to_string(tt->block_size));
    if (rows > 0 && n_tokens > 0 && (!W || !x || !y)) fail("null pointer argument");
    gemm_fn k = active().gemm[(uint32_t)type];
    return k ? k : kernels_scalar().gemm[(uint32_t)type];
}

// A per-thread scratch buffer for the quantized activations, grown as needed, never shrunk.
static void* act_scratch(size_t bytes) {
    thread_local std::vector<uint64_t> buf;
    if (buf.size() * 8 < bytes) buf.resize((bytes + 7) / 8);
    return buf.data();
}

// Runs fn over [0, n) on the pool, or inline when there is none.
static void run(ThreadPool* pool, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    if (pool && pool->size() > 1)
        pool->parallel_for(n, fn, grain);
    else
        fn(0, n);
}

// ---- matvec / matmul -----------------------------------------------------------------------

void matvec(GgmlType type, const void* W, int64_t rows, int64_t cols, const float* x, float* y,
            ThreadPool* pool) {
    const gemm_fn k = checked_kernel("matvec", type, W, rows, cols, x, y, 1);
    if (rows == 0) return;
    const ActFormat af = act_format(type);
    const size_t ldw = row_size(type, cols);
    const size_t ldx = act_row_size(af, cols);
    const void* xq = x;
    if (af != ActFormat::F32) {
        void* buf = act_scratch(ldx);
        quantize_act(af, x, buf, cols);
        xq = buf;
    }
    // Ranges of whole 16-row groups: enough pieces to balance, few enough to keep rows long.
    const int threads = pool ? pool->size() : 1;
    const int64_t groups = (rows + 15) / 16;
    const int64_t grain = std::max<int64_t>(1, groups / (4 * threads));
    run(pool, groups, grain, [&](int64_t g0, int64_t g1) {
        const int64_t r0 = g0 * 16, r1 = std::min(rows, g1 * 16);
        k(cols, (const char*)W + r0 * ldw, ldw, r1 - r0, xq, ldx, 1, y + r0, rows);
    });
}

void matmul(GgmlType type, const void* W, int64_t rows, int64_t cols, const float* X, int64_t n_tokens,
            float* Y, ThreadPool* pool) {
    const gemm_fn k = checked_kernel("matmul", type, W, rows, cols, X, Y, n_tokens);
    if (rows == 0 || n_tokens == 0) return;
    const ActFormat af = act_format(type);
    const size_t ldw = row_size(type, cols);
    const size_t ldx = act_row_size(af, cols);
    const void* Xq = X;
    if (af != ActFormat::F32) {
        char* buf = (char*)act_scratch(ldx * (size_t)n_tokens);
        run(pool, n_tokens, 1, [&](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; t++) quantize_act(af, X + t * cols, buf + t * ldx, cols);
        });
        Xq = buf;
    }
    // Row tiles of kRowTile rows (a few KB of weights, kept in L1/L2) against every token.
    constexpr int64_t kRowTile = 16;
    const int64_t tiles = (rows + kRowTile - 1) / kRowTile;
    run(pool, tiles, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; i++) {
            const int64_t r0 = i * kRowTile, r1 = std::min(rows, r0 + kRowTile);
            k(cols, (const char*)W + r0 * ldw, ldw, r1 - r0, Xq, ldx, n_tokens, Y + r0, rows);
        }
    });
}

}  // namespace tandem::cpu
