// Internal to cpu_gemm_amx.cpp and cpu_gemm_amx_emulated.cpp: the "amx" path. Compiled twice:
// with the AMX-TILE / AMX-INT8 instructions (cpu_gemm_amx.cpp), and with AMX_EMULATED defined,
// where the same kernel runs on a plain C++ model of the three tile instructions it uses, so
// that its layout, scales and odd shapes are tested on CPUs without AMX (path "amx-emulated").
//
// Tiles of 16 tokens of the quantized types go through the tiles, one panel (16 rows) at a
// time: per subblock (32 columns, 16 for Q6_K)
//   A (tmm1)  16 tokens x S int8 activations, loaded straight from the activation tile (whose
//             subblock record is q[16][S]: stride S)
//   B (tmm2)  S/4 steps x 64 bytes: the panel's u8 levels of the subblock, unpacked into a
//             64-byte aligned buffer (a step is exactly one B row: 16 rows x 4 columns)
//   C (tmm0)  16 x 16 int32 = A . B (tdpbsud: signed A, unsigned B), stored and added into 16
//             zmm float accumulators (one per token, lanes = rows) with the same scales as the
//             vpdpbusd kernels.
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
#include "cpu_v512.h"

namespace tandem::cpu::detail {
namespace {

// The avx512-vnni kernels, with quantized tiles of 16 tokens: those go to the tiles (the
// vpdpbusd kernel at 16 is instantiated but not called).
struct V512Amx : V512 {
    static constexpr int kQuantTiles = 16;
};

}  // namespace
}  // namespace tandem::cpu::detail

using V = tandem::cpu::detail::V512Amx;
#include "cpu_gemm_kernels.h"

namespace tandem::cpu::detail {
namespace {

constexpr int kAmxTokens = 16;

// ---- the three tile instructions -------------------------------------------------------------

#ifdef AMX_EMULATED
// C += A . B over the configured shape, A signed and B unsigned bytes, as tdpbsud does.
struct EmuTiles {
    int32_t c[16][16];
    int8_t a[16][64];
    uint8_t b[16][64];
    int k_bytes = 0;  // A's bytes per row (= 4 x B's rows)
};
thread_local EmuTiles t_emu;

void tiles_configure(int k_bytes) { t_emu.k_bytes = k_bytes; }
void tile_dot(const uint8_t* a, size_t a_stride, const uint8_t* b, int32_t (*c)[16]) {
    EmuTiles& e = t_emu;
    for (int m = 0; m < 16; m++) std::memcpy(e.a[m], a + m * a_stride, (size_t)e.k_bytes);
    for (int k = 0; k < e.k_bytes / 4; k++) std::memcpy(e.b[k], b + 64 * k, 64);
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++) {
            int32_t s = 0;
            for (int k = 0; k < e.k_bytes / 4; k++)
                for (int i = 0; i < 4; i++) s += (int32_t)e.a[m][4 * k + i] * (int32_t)e.b[k][4 * n + i];
            e.c[m][n] = s;
        }
    std::memcpy(c, e.c, sizeof e.c);
}
#else
struct alignas(64) TileConfig {
    uint8_t palette = 1, start_row = 0, reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};
thread_local int t_configured = 0;  // the k_bytes the thread's tiles are configured for

// tmm0: C 16 x 64 bytes; tmm1: A 16 x k_bytes; tmm2: B k_bytes/4 x 64 bytes.
TGT void tiles_configure(int k_bytes) {
    if (t_configured == k_bytes) return;
    TileConfig cfg;
    cfg.rows[0] = 16, cfg.colsb[0] = 64;
    cfg.rows[1] = 16, cfg.colsb[1] = (uint16_t)k_bytes;
    cfg.rows[2] = (uint8_t)(k_bytes / 4), cfg.colsb[2] = 64;
    _tile_loadconfig(&cfg);
    t_configured = k_bytes;
}
TGT void tile_dot(const uint8_t* a, size_t a_stride, const uint8_t* b, int32_t (*c)[16]) {
    _tile_zero(0);
    _tile_loadd(1, a, a_stride);
    _tile_loadd(2, b, 64);
    _tile_dpbsud(0, 1, 2);
    _tile_stored(0, c, 64);
}
#endif

// ---- the kernel ------------------------------------------------------------------------------

// Chunk CC of subblock j of one panel's record as B rows 2CC, 2CC+1 (u8 levels; Q8_0's are
// packed as q + 128).
template <class P, int CC>
TGT void unpack_b(const typename P::Rec& rec, int j, uint8_t* b) {
    I lo, hi;
    P::template levels<CC>(rec, j, 0, lo, hi);
    _mm512_store_si512(b + 128 * CC, lo);
    _mm512_store_si512(b + 128 * CC + 64, hi);
}

template <class P>
TGT void amx_panel(const uint8_t* panel, int64_t n_recs, const uint8_t* act, float* y, int64_t ldy, int nt,
                   int64_t rows) {
    using Rec = typename P::Rec;
    constexpr size_t kSubBytes = act_sub_bytes(P::kSub, kAmxTokens);
    alignas(64) uint8_t b[P::kSub / 4][64];
    alignas(64) int32_t c[kAmxTokens][16];
    F acc[kAmxTokens];
    for (int t = 0; t < kAmxTokens; t++) acc[t] = V::zero();
    for (int64_t r = 0; r < n_recs; r++) {
        const Rec& rec = ((const Rec*)panel)[r];
        typename P::Scale scale;
        scale.load(rec, 0);
        for (int j = 0; j < P::kSubs; j++, act += kSubBytes) {
            unpack_b<P, 0>(rec, j, b[0]);
            unpack_b<P, 1>(rec, j, b[0]);
            if constexpr (P::kSub == 32) {
                unpack_b<P, 2>(rec, j, b[0]);
                unpack_b<P, 3>(rec, j, b[0]);
            }
            tile_dot(act, P::kSub, b[0], c);
            const float* dx = (const float*)(act + P::kSub * kAmxTokens);
            const float* sx = dx + kAmxTokens;
            const int32_t* ncorr = (const int32_t*)(dx + 3 * kAmxTokens);
            F dw, mw = V::zero();
            P::scales(rec, scale, j, 0, dw, mw);
            for (int t = 0; t < kAmxTokens; t++) {
                I s = _mm512_load_si512(c[t]);
                if constexpr (corr_shift<P>() >= 0) s = _mm512_add_epi32(s, V::set1_32(ncorr[t]));
                acc[t] = V::fmadd(V::cvt_i32(s), V::mul(dw, V::set1(dx[t])), acc[t]);
                if constexpr (P::kMin) acc[t] = V::fmadd(mw, V::set1(sx[t]), acc[t]);
            }
        }
    }
    for (int t = 0; t < nt; t++) store_rows(y + t * ldy, acc[t], rows);
}

// Tiles of 16 tokens on the tiles, smaller ones on the avx512-vnni kernels.
template <class P>
TGT void amx_or_vnni(const PanelTask& a) {
    if (a.T != kAmxTokens) return dispatch<Quant, P, V::kQuantTiles>(a);
    tiles_configure(P::kSub);
    for (int64_t p = 0; p < a.n_panels; p++)
        amx_panel<P>(a.w + p * a.panel_bytes, a.n_recs, a.act, a.y + kPanelRows * p, a.ldy, a.nt, a.rows - kPanelRows * p);
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
