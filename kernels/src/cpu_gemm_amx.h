// Internal to cpu_gemm_amx.cpp and cpu_gemm_amx_emulated.cpp: the "amx" path. Compiled twice:
// with the AMX-TILE / AMX-INT8 instructions (cpu_gemm_amx.cpp), and with AMX_EMULATED defined,
// where the same kernel runs on a plain C++ model of the tile instructions it uses, so
// that its layout, scales and odd shapes are tested on CPUs without AMX (path "amx-emulated").
//
// Tiles of 16 tokens of the quantized types go through the tiles. Per subblock (32 columns, 16
// for Q6_K) of a panel (16 rows):
//   A  16 tokens x S int8 activations, loaded straight from the activation tile (whose subblock
//      record is q[16][S]: stride S)
//   B  S/4 steps x 64 bytes: the panel's u8 levels of the subblock (a step is one B row: 16 rows
//      x 4 columns). Q8_0's record holds them as they are (lvl); the other types are unpacked
//      into a 64-byte aligned buffer.
//   C  16 x 16 int32 = A . B (tdpbsud: signed A, unsigned B), stored and added into 16 zmm float
//      accumulators (one per token, lanes = rows) with the same scales as the vpdpbusd kernels.
// The float work per C (16 conversions and 32-48 multiply-adds for 8192 products) is the
// bound, so the kernel keeps the tile unit and the vector units busy at once: a task's subblocks,
// panel after panel, run in stages of kStageSubs, and while stage s is scaled, stage s+1 is on
// the tiles and stage s+2 is unpacked. Each stage reads only what another wrote an iteration
// earlier: a tile load of bytes just written by vector stores, or a vector load of a just-stored
// tile, may wait for those stores to leave the core. Measured on an Emerald Rapids Xeon, this
// kernel ran at 4-5% of the tile peak and 0.63-0.86x of avx512-vnni, as the one it replaced (the
// same products one subblock at a time, 0.76-0.78x): that wait was not the limit. The tile
// work alone (tile loads from L1, products, stores, and the float work on each C) ran at 2.3x
// the avx512-vnni kernel's rate there. In this kernel the tile work alone and the scaling alone
// each take about half of its time, so the stages barely overlap, and each is about 2x slower
// than from L1. Prefetching a stage's A and B into L1 did not help, nor did stages of 1 or 2
// subblocks; not profiled further (bench/results/cpu-prompt.md, sections 11, 13, 16 and 18).
// Smaller tiles (decode, the last tile of a prompt) and the float types run the avx512-vnni
// kernels. The tile permission (arch_prctl) is requested by cpu_features(); each thread loads
// its tile configuration on first use and again when the subblock size changes.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#ifdef AMX_EMULATED
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#else
#define TGT __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#endif
#include <type_traits>

#include "cpu_v512.h"

// The avx512-vnni kernels, whose largest quantized tiles (16 tokens) go to the tiles here (the
// vpdpbusd kernel at 16 is instantiated but not called).
using V = tandem::cpu::detail::V512;
#include "cpu_gemm_kernels.h"

namespace tandem::cpu::detail {
namespace {

constexpr int kAmxTokens = 16;
constexpr int kStageSubs = 4;  // subblocks per pipeline stage: C tiles tmm0..tmm3

// ---- the tile instructions -------------------------------------------------------------------
//
// Tiles: tmm0-3 C (16 x 64 bytes), tmm4-5 A (16 x k_bytes), tmm6-7 B (k_bytes/4 x 64 bytes).
// The intrinsics take the tile number as a literal, hence the macros.

#ifdef AMX_EMULATED
// The tile registers and the four instructions the kernel uses, in plain C++.
struct EmuTile {
    int rows = 0, colsb = 0;
    uint8_t d[16][64];
};
thread_local EmuTile t_tmm[8];

void tiles_configure(int k_bytes) {
    for (int i = 0; i < 8; i++) {
        EmuTile& t = t_tmm[i];
        t.rows = i < 6 ? 16 : k_bytes / 4;
        t.colsb = i < 4 || i >= 6 ? 64 : k_bytes;
    }
}
void emu_load(int i, const void* p, size_t stride) {
    for (int r = 0; r < t_tmm[i].rows; r++) std::memcpy(t_tmm[i].d[r], (const uint8_t*)p + r * stride, (size_t)t_tmm[i].colsb);
}
void emu_store(int i, void* p, size_t stride) {
    for (int r = 0; r < t_tmm[i].rows; r++) std::memcpy((uint8_t*)p + r * stride, t_tmm[i].d[r], (size_t)t_tmm[i].colsb);
}
void emu_zero(int i) { std::memset(t_tmm[i].d, 0, sizeof t_tmm[i].d); }
// C += A . B, A signed and B unsigned bytes, int32 sums without saturation, as tdpbsud does.
void emu_dpbsud(int c, int a, int b) {
    const EmuTile &A = t_tmm[a], &B = t_tmm[b];
    EmuTile& C = t_tmm[c];
    for (int m = 0; m < C.rows; m++)
        for (int n = 0; n < C.colsb / 4; n++) {
            int32_t s;
            std::memcpy(&s, C.d[m] + 4 * n, 4);
            for (int k = 0; k < A.colsb / 4; k++)
                for (int i = 0; i < 4; i++) s += (int32_t)(int8_t)A.d[m][4 * k + i] * (int32_t)B.d[k][4 * n + i];
            std::memcpy(C.d[m] + 4 * n, &s, 4);
        }
}
#define TILE_LOAD(i, p, stride) emu_load(i, p, stride)
#define TILE_STORE(i, p, stride) emu_store(i, p, stride)
#define TILE_ZERO(i) emu_zero(i)
#define TILE_DPBSUD(c, a, b) emu_dpbsud(c, a, b)
#else
struct alignas(64) TileConfig {
    uint8_t palette = 1, start_row = 0, reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};
thread_local int t_configured = 0;  // the k_bytes the thread's tiles are configured for

// GCC 12's _tile_loadconfig does not tell the optimizer that it reads cfg: it dropped the
// stores of the rows and sizes in amx_peak_loop, which left every tile unconfigured (tilezero
// then raised SIGILL). The empty asm statement makes the stores visible.
TGT void tiles_load_config(const TileConfig& cfg) {
    __asm__ volatile("" : : "m"(cfg) : "memory");
    _tile_loadconfig(&cfg);
}

TGT void tiles_configure(int k_bytes) {
    if (t_configured == k_bytes) return;
    TileConfig cfg;
    for (int i = 0; i < 8; i++) {
        cfg.rows[i] = (uint8_t)(i < 6 ? 16 : k_bytes / 4);
        cfg.colsb[i] = (uint16_t)(i < 4 || i >= 6 ? 64 : k_bytes);
    }
    tiles_load_config(cfg);
    t_configured = k_bytes;
}
// GCC 12's _tile_loadd tells the optimizer only the address, not that it reads memory: the empty
// asm statement's memory clobber keeps the vector stores of an unpacked B tile ahead of its load.
#define TILE_LOAD(i, p, stride)                   \
    do {                                          \
        __asm__ volatile("" : : : "memory");      \
        _tile_loadd(i, p, stride);                \
    } while (0)
#define TILE_STORE(i, p, stride) _tile_stored(i, p, stride)
#define TILE_ZERO(i) _tile_zero(i)
#define TILE_DPBSUD(c, a, b) _tile_dpbsud(c, a, b)
#endif

// C tile c = A . B, stored to out (16 rows of 64 bytes).
#define TILE_PRODUCT(c, ta, tb, A, a_stride, B, out) \
    do {                                             \
        TILE_LOAD(ta, A, a_stride);                  \
        TILE_LOAD(tb, B, 64);                        \
        TILE_ZERO(c);                                \
        TILE_DPBSUD(c, ta, tb);                      \
        TILE_STORE(c, out, 64);                      \
    } while (0)

// ---- the kernel ------------------------------------------------------------------------------

#define AMX_INLINE TGT inline __attribute__((always_inline))

template <class P>
struct Amx {
    using Rec = typename P::Rec;
    static constexpr int kBBytes = P::kSub / 4 * 64;  // one subblock's B tile
    static constexpr size_t kSubBytes = act_sub_bytes(P::kSub, kAmxTokens);
    static constexpr bool kStoredB = std::is_same_v<P, P_Q8_0>;  // lvl[8][64] is the B tile
    // What a stage needs ready before its tile products: its B tiles. The types with a level
    // offset take it out when the C tiles are scaled (stage_scale: one vector add per token);
    // loading it as C's start on the tile unit instead measured 4-15% slower for Q8_0 and Q4_0
    // on Emerald Rapids (bench/results/cpu-prompt.md, section 13).
    struct alignas(64) Prep {
        uint8_t b[kStoredB ? 1 : kStageSubs][kBBytes];
    };
    static constexpr bool kPrep = !kStoredB;
    using CStage = int32_t[kStageSubs][kAmxTokens][16];
};

// A stage: subblocks [k0, k0 + n) of panel p's row (of subs subblocks).
struct Stage {
    int64_t p, k0;
    int n;
};
inline Stage first_stage(int64_t subs) { return {0, 0, (int)std::min<int64_t>(kStageSubs, subs)}; }
// The stage after st, counted on rather than divided out: the kernel keeps three in flight.
inline Stage next_stage(Stage st, int64_t subs) {
    st.k0 += kStageSubs;
    if (st.k0 >= subs) st.k0 = 0, st.p++;
    st.n = (int)std::min<int64_t>(kStageSubs, subs - st.k0);
    return st;
}

template <class P>
AMX_INLINE const typename P::Rec& rec_at(const PanelTask& a, int64_t p, int64_t k) {
    return ((const typename P::Rec*)(a.w + p * a.panel_bytes))[k / P::kSubs];
}

// Chunk CC of subblock j of a record as B rows 2CC, 2CC+1.
template <class P, int CC>
AMX_INLINE void unpack_b(const typename P::Rec& rec, int j, uint8_t* b) {
    I lo, hi;
    P::template levels<CC>(rec, j, 0, lo, hi);
    _mm512_store_si512(b + 128 * CC, lo);
    _mm512_store_si512(b + 128 * CC + 64, hi);
}

template <class P>
AMX_INLINE void stage_prep(const PanelTask& a, Stage st, typename Amx<P>::Prep& pr) {
    for (int i = 0; i < st.n; i++) {
        const int64_t k = st.k0 + i;
        const auto& rec = rec_at<P>(a, st.p, k);
        const int j = (int)(k % P::kSubs);
        unpack_b<P, 0>(rec, j, pr.b[i]);
        unpack_b<P, 1>(rec, j, pr.b[i]);
        if constexpr (P::kSub == 32) {
            unpack_b<P, 2>(rec, j, pr.b[i]);
            unpack_b<P, 3>(rec, j, pr.b[i]);
        }
    }
}

template <class P>
AMX_INLINE void stage_tiles(const PanelTask& a, Stage st, const typename Amx<P>::Prep& pr, typename Amx<P>::CStage& c) {
    for (int i = 0; i < st.n; i++) {
        const int64_t k = st.k0 + i;
        const uint8_t* A = a.act + k * Amx<P>::kSubBytes;
        const uint8_t* B;
        if constexpr (Amx<P>::kStoredB) B = rec_at<P>(a, st.p, k).lvl[0];
        else B = pr.b[i];
        switch (i) {
            case 0: TILE_PRODUCT(0, 4, 6, A, P::kSub, B, c[0]); break;
            case 1: TILE_PRODUCT(1, 5, 7, A, P::kSub, B, c[1]); break;
            case 2: TILE_PRODUCT(2, 4, 6, A, P::kSub, B, c[2]); break;
            default: TILE_PRODUCT(3, 5, 7, A, P::kSub, B, c[3]); break;
        }
    }
}

// Adds the stage's C tiles into acc with the subblocks' scales; after the panel's last stage,
// stores its rows and clears acc.
template <class P>
AMX_INLINE void stage_scale(const PanelTask& a, Stage st, int64_t subs, const typename Amx<P>::CStage& c, F (&acc)[kAmxTokens]) {
    for (int i = 0; i < st.n; i++) {
        const int64_t k = st.k0 + i;
        const auto& rec = rec_at<P>(a, st.p, k);
        typename P::Scale scale;
        scale.load(rec, 0);
        F dw, mw = V::zero();
        P::scales(rec, scale, (int)(k % P::kSubs), 0, dw, mw);
        const ActSubFields f = act_sub_fields(a.act + k * Amx<P>::kSubBytes, P::kSub, kAmxTokens);
        const float *dx = f.dx, *sx = f.sx;
        const int32_t* ncorr = f.ncorr;
#pragma GCC unroll 16
        for (int t = 0; t < kAmxTokens; t++) {
            I s = _mm512_load_si512(c[i][t]);
            if constexpr (corr_shift<P>() >= 0) s = _mm512_add_epi32(s, V::set1_32(ncorr[t]));
            acc[t] = V::fmadd(V::cvt_i32(s), V::mul(dw, V::set1(dx[t])), acc[t]);
            if constexpr (P::kMin) acc[t] = V::fmadd(mw, V::set1(sx[t]), acc[t]);
        }
    }
    if (st.k0 + st.n == subs) {
        const int64_t rows = a.rows - kPanelRows * st.p;
#pragma GCC unroll 16
        for (int t = 0; t < kAmxTokens; t++)
            if (t < a.nt) store_rows(a.y + kPanelRows * st.p + t * a.ldy, acc[t], rows);
#pragma GCC unroll 16
        for (int t = 0; t < kAmxTokens; t++) acc[t] = V::zero();
    }
}

// Tiles of 16 tokens on the tiles, smaller ones on the avx512-vnni kernels.
template <class P>
TGT void amx_or_vnni(const PanelTask& a) {
    if (a.T != kAmxTokens) return dispatch<Quant, P, V::kQuantTiles>(a);
    tiles_configure(P::kSub);
    using A = Amx<P>;
    const int64_t subs = a.n_recs * P::kSubs, per_panel = (subs + kStageSubs - 1) / kStageSubs;
    const int64_t n = a.n_panels * per_panel;
    typename A::Prep prep[A::kPrep ? 3 : 1];
    alignas(64) typename A::CStage c[2];
    // Every loop over acc's tokens is unrolled by pragma (here and in stage_scale): with any one
    // left to GCC 12, acc lived on the stack, and each tile store's memory clobber made it load
    // and store all 16 accumulators around every stage.
    F acc[kAmxTokens];
#pragma GCC unroll 16
    for (int t = 0; t < kAmxTokens; t++) acc[t] = V::zero();
    auto slot = [](int64_t s) { return A::kPrep ? (int)(s % 3) : 0; };
    Stage st0 = first_stage(subs), st1 = next_stage(st0, subs), st2 = next_stage(st1, subs);  // stages s, s+1, s+2
    if constexpr (A::kPrep) {
        stage_prep<P>(a, st0, prep[0]);
        if (n > 1) stage_prep<P>(a, st1, prep[1]);
    }
    stage_tiles<P>(a, st0, prep[0], c[0]);
    for (int64_t s = 0; s < n; s++) {
        if constexpr (A::kPrep)
            if (s + 2 < n) stage_prep<P>(a, st2, prep[slot(s + 2)]);
        if (s + 1 < n) stage_tiles<P>(a, st1, prep[slot(s + 1)], c[(s + 1) % 2]);
        stage_scale<P>(a, st0, subs, c[s % 2], acc);
        st0 = st1, st1 = st2, st2 = next_stage(st2, subs);
    }
}

KernelSet make_amx(const char* name) {
    KernelSet k = make_kernel_set(name);
    auto set = [&](GgmlType t, panel_fn f) { k.k[(uint32_t)t].panels = f; };
    set(GgmlType::Q4_0, amx_or_vnni<P_Q4_0>);
    set(GgmlType::Q4_1, amx_or_vnni<P_Q4_1>);
    set(GgmlType::Q5_0, amx_or_vnni<P_Q5_0>);
    set(GgmlType::Q5_1, amx_or_vnni<P_Q5_1>);
    set(GgmlType::Q8_0, amx_or_vnni<P_Q8_0>);
    set(GgmlType::Q4_K, amx_or_vnni<P_Q4_K>);
    set(GgmlType::Q5_K, amx_or_vnni<P_Q5_K>);
    set(GgmlType::Q6_K, amx_or_vnni<P_Q6_K>);
    return k;
}

}  // namespace
}  // namespace tandem::cpu::detail
