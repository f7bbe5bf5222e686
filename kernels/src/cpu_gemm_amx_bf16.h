// Internal to cpu_gemm_amx.cpp and cpu_gemm_amx_emulated.cpp, included after cpu_gemm_amx.h
// (whose tile plumbing it shares: the thread's tile configuration, the emulated tiles): the
// "amx-bf16" paths' prompt GEMM on AMX-BF16 tiles (tdpbf16ps).
//
// Why: the AMX-INT8 kernel must scale every 32-column block's C tile with the vector units,
// and that float work, not the tiles, bounds it (cpu_gemm_amx.h). Here the weights of a chunk
// of panels are dequantized once per call to BF16, in the B tile layout, and the activations
// are rounded to BF16 once per call; a C tile then accumulates across the whole row on the tile
// unit, with no vector work between its products. The numerics are those of BF16 inputs with
// FP32 sums (each weight and activation off by at most 2^-9 of itself), not the int8 paths'.
//
// Layouts (uint16 BF16 elements):
//   A   the activations: n_tokens rows of cols, padded with zero rows to a multiple of 16 tokens;
//       an A tile is 16 tokens x 32 columns, loaded with the row stride
//   B   per panel and K piece, one tile of 16 x 32 per 32 columns: tile kb's row k holds
//       (W[n][32kb + 2k], W[n][32kb + 2k + 1]) for the panel's rows n = 0..15 (the pairs
//       tdpbf16ps multiplies; columns counted from the piece's first)
//   C   16 tokens x 16 rows, FP32
// A task (a chunk of panels) takes the row in pieces of up to kBf16PieceCols columns: it
// dequantizes the piece of its panels into its B buffer, then takes 32 tokens x 2 panels at a
// time (tmm0-3 C, tmm4-5 A, tmm6-7 B: 4 products per 4 tile loads) over the piece.
#pragma once

#ifdef AMX_EMULATED
#define TGT_BF16 TGT
#else
#define TGT_BF16 __attribute__((target("amx-tile,amx-int8,amx-bf16,avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16,avx2,fma,f16c")))
#endif

namespace tandem::cpu::detail {
namespace {

#ifdef AMX_EMULATED
// C += A . B on BF16 pairs with FP32 sums, in tdpbf16ps's order: for each pair of A's row
// (k = 0..15), both of its products are added in turn (a product of two BF16 values is exact in
// FP32).
inline float bf16_to_f32(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    const uint32_t u = (uint32_t)h << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
void emu_dpbf16ps(int c, int a, int b) {
    const EmuTile &A = t_tmm[a], &B = t_tmm[b];
    EmuTile& C = t_tmm[c];
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++) {
            float s;
            std::memcpy(&s, C.d[m] + 4 * n, 4);
            for (int k = 0; k < 16; k++)
                for (int i = 0; i < 2; i++) s += bf16_to_f32(A.d[m] + 4 * k + 2 * i) * bf16_to_f32(B.d[k] + 4 * n + 2 * i);
            std::memcpy(C.d[m] + 4 * n, &s, 4);
        }
}
#define TILE_DPBF16PS(c, a, b) emu_dpbf16ps(c, a, b)

// Two float vectors to 32 BF16 values (lo's 16 first), rounded to nearest even, as
// vcvtne2ps2bf16 rounds finite values; integer code, for CPUs without AVX512-BF16.
TGT_BF16 inline __m256i round_bf16(__m512 f) {
    const __m512i u = _mm512_castps_si512(f);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF))), 16));
}
TGT_BF16 inline __m512i to_bf16x32(__m512 lo, __m512 hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(round_bf16(lo)), round_bf16(hi), 1);
}
#else
#define TILE_DPBF16PS(c, a, b) _tile_dpbf16ps(c, a, b)
TGT_BF16 inline __m512i to_bf16x32(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }
#endif

constexpr int kTileElems = 16 * 32;  // BF16 elements of an A or B tile

// The activations: n floats to BF16 (n a multiple of 32: the quantized types' columns).
TGT_BF16 void rows_to_bf16(const float* x, uint16_t* y, int64_t n) {
    for (int64_t i = 0; i < n; i += 32)
        _mm512_storeu_si512(y + i, to_bf16x32(_mm512_loadu_ps(x + i), _mm512_loadu_ps(x + i + 16)));
}

// One step (16 rows x 4 columns of u8 levels, byte 4r + c: cpu_panels.h) at column col (a
// multiple of 4) into the B tiles at b: value = level * d + m, where lane 4n + c of d4[q] and
// m4[q] holds row 4q + n's scale and offset. B tile col / 32's rows 2s and 2s + 1 (s = col % 32
// / 4) take columns 4s, 4s + 1 and 4s + 2, 4s + 3 of each row.
TGT_BF16 inline void step_to_b(I step, int64_t col, const F (&d4)[4], const F (&m4)[4], uint16_t* b) {
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    F f[4];
    f[0] = V::fmadd(V::cvt_i32(_mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(step, 0))), d4[0], m4[0]);
    f[1] = V::fmadd(V::cvt_i32(_mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(step, 1))), d4[1], m4[1]);
    f[2] = V::fmadd(V::cvt_i32(_mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(step, 2))), d4[2], m4[2]);
    f[3] = V::fmadd(V::cvt_i32(_mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(step, 3))), d4[3], m4[3]);
    const __m512i r07 = to_bf16x32(f[0], f[1]);   // rows 0-7: dword 2n + c / 2 = row n's pair c / 2
    const __m512i r815 = to_bf16x32(f[2], f[3]);  // rows 8-15
    uint16_t* dst = b + col / 32 * kTileElems + col % 32 / 2 * 32;
    _mm512_storeu_si512(dst, _mm512_permutex2var_epi32(r07, even, r815));
    _mm512_storeu_si512(dst + 32, _mm512_permutex2var_epi32(r07, odd, r815));
}

// n_recs records of a panel (of P) to their B tiles at b, with the values of cpu_panels.h:
// dw * (L - offset) [+ mw], computed as one fma of L with dw and mw - dw * offset.
template <class P>
TGT_BF16 void panel_to_b(const uint8_t* panel, int64_t n_recs, uint16_t* b) {
    const __m512i rep[4] = {  // lane 4n + c of quarter q: row 4q + n
        _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0),
        _mm512_set_epi32(7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4),
        _mm512_set_epi32(11, 11, 11, 11, 10, 10, 10, 10, 9, 9, 9, 9, 8, 8, 8, 8),
        _mm512_set_epi32(15, 15, 15, 15, 14, 14, 14, 14, 13, 13, 13, 13, 12, 12, 12, 12)};
    const auto* recs = (const typename P::Rec*)panel;
    for (int64_t r = 0; r < n_recs; r++) {
        const typename P::Rec& rec = recs[r];
        typename P::Scale scale;
        scale.load(rec, 0);
        for (int j = 0; j < P::kSubs; j++) {
            F dw, mw = V::zero();
            P::scales(rec, scale, j, 0, dw, mw);
            if constexpr (P::kShift >= 0) mw = _mm512_fnmadd_ps(dw, V::set1((float)(1 << P::kShift)), mw);
            F d4[4], m4[4];
            for (int q = 0; q < 4; q++) d4[q] = _mm512_permutexvar_ps(rep[q], dw), m4[q] = _mm512_permutexvar_ps(rep[q], mw);
            const int64_t col = (r * P::kSubs + j) * P::kSub;
            I lo, hi;
            P::template levels<0>(rec, j, 0, lo, hi);
            step_to_b(lo, col, d4, m4, b);
            step_to_b(hi, col + 4, d4, m4, b);
            P::template levels<1>(rec, j, 0, lo, hi);
            step_to_b(lo, col + 8, d4, m4, b);
            step_to_b(hi, col + 12, d4, m4, b);
            if constexpr (P::kSub == 32) {
                P::template levels<2>(rec, j, 0, lo, hi);
                step_to_b(lo, col + 16, d4, m4, b);
                step_to_b(hi, col + 20, d4, m4, b);
                P::template levels<3>(rec, j, 0, lo, hi);
                step_to_b(lo, col + 24, d4, m4, b);
                step_to_b(hi, col + 28, d4, m4, b);
            }
        }
    }
}

// C tiles of NA x NB (A tiles of 16 tokens at a, lda bytes apart; B tiles of 16 rows at b0, b1)
// over kblocks 32-column steps, starting from cin[i][j] (nullptr: zero) and stored to
// cout[i][j] (16 x 16 floats each, rows 64 bytes apart).
template <int NA, int NB>
TGT_BF16 void tile_block(const uint16_t* a, int64_t lda, const uint16_t* b0, const uint16_t* b1, int64_t kblocks,
                         float* const (&cin)[2][2], float* const (&cout)[2][2]) {
    if (cin[0][0]) {
        TILE_LOAD(0, cin[0][0], 64);
        if constexpr (NB == 2) TILE_LOAD(1, cin[0][1], 64);
        if constexpr (NA == 2) TILE_LOAD(2, cin[1][0], 64);
        if constexpr (NA == 2 && NB == 2) TILE_LOAD(3, cin[1][1], 64);
    } else {
        TILE_ZERO(0);
        if constexpr (NB == 2) TILE_ZERO(1);
        if constexpr (NA == 2) TILE_ZERO(2);
        if constexpr (NA == 2 && NB == 2) TILE_ZERO(3);
    }
    const uint16_t* a1 = (const uint16_t*)((const uint8_t*)a + 16 * lda);
    for (int64_t kb = 0; kb < kblocks; kb++) {
        TILE_LOAD(4, a + 32 * kb, lda);
        TILE_LOAD(6, b0 + kTileElems * kb, 64);
        TILE_DPBF16PS(0, 4, 6);
        if constexpr (NB == 2) {
            TILE_LOAD(7, b1 + kTileElems * kb, 64);
            TILE_DPBF16PS(1, 4, 7);
        }
        if constexpr (NA == 2) {
            TILE_LOAD(5, a1 + 32 * kb, lda);
            TILE_DPBF16PS(2, 5, 6);
            if constexpr (NB == 2) TILE_DPBF16PS(3, 5, 7);
        }
    }
    TILE_STORE(0, cout[0][0], 64);
    if constexpr (NB == 2) TILE_STORE(1, cout[0][1], 64);
    if constexpr (NA == 2) TILE_STORE(2, cout[1][0], 64);
    if constexpr (NA == 2 && NB == 2) TILE_STORE(3, cout[1][1], 64);
}

// The task's panels, one K piece (kBf16PieceCols columns) at a time: the piece's B tiles, then
// every 32 tokens x 2 panels on the tiles over the piece. Between pieces the C tiles wait in
// t.acc; after the last they are stored into y. Pieces keep a 32-token A block (128 KB) in L2
// across a chunk's panel pairs however long the row (the FFN's 8192-column w2 of a 1B model).
template <class P>
TGT_BF16 void bf16_panels(const Bf16Task& t) {
    constexpr int64_t kRecCols = P::kSub * P::kSubs, kPieceRecs = kBf16PieceCols / kRecCols;
    static_assert(kBf16PieceCols % kRecCols == 0, "a piece holds whole records");
    tiles_configure(64);  // every tile 16 rows x 64 bytes
    const int64_t lda = 2 * t.ldx, acc_panels = (t.n_panels + 1) / 2 * 2;
    alignas(64) float c[2][2][256];
    for (int64_t r0 = 0; r0 < t.n_recs; r0 += kPieceRecs) {
        const int64_t n_recs = std::min(kPieceRecs, t.n_recs - r0), kblocks = n_recs * kRecCols / 32;
        const int64_t b_stride = kblocks * kTileElems;  // one panel's B tiles of the piece
        for (int64_t p = 0; p < t.n_panels; p++)
            panel_to_b<P>(t.w + p * t.panel_bytes + r0 * (int64_t)sizeof(typename P::Rec), n_recs, t.b + p * b_stride);
        const bool first = r0 == 0, last = r0 + n_recs == t.n_recs;
        for (int64_t t0 = 0; t0 < t.n_tokens; t0 += 32) {
            const int na = t.n_tokens - t0 > 16 ? 2 : 1;
            const uint16_t* a = t.x + t0 * t.ldx + r0 * kRecCols;
            for (int64_t p = 0; p < t.n_panels; p += 2) {
                const int nb = t.n_panels - p > 1 ? 2 : 1;
                float* acc[2][2] = {};  // this block's C tiles in t.acc (only with more than one piece)
                if (!(first && last))
                    for (int i = 0; i < 2; i++)
                        for (int j = 0; j < 2; j++) acc[i][j] = t.acc + ((t0 / 16 + i) * acc_panels + p + j) * 256;
                float* const none[2][2] = {{nullptr, nullptr}, {nullptr, nullptr}};
                float* const local[2][2] = {{c[0][0], c[0][1]}, {c[1][0], c[1][1]}};
                auto& cin = first ? none : acc;
                auto& cout = last ? local : acc;
                const uint16_t* b0 = t.b + p * b_stride;
                if (na == 2 && nb == 2) tile_block<2, 2>(a, lda, b0, b0 + b_stride, kblocks, cin, cout);
                else if (na == 2) tile_block<2, 1>(a, lda, b0, b0, kblocks, cin, cout);
                else if (nb == 2) tile_block<1, 2>(a, lda, b0, b0 + b_stride, kblocks, cin, cout);
                else tile_block<1, 1>(a, lda, b0, b0, kblocks, cin, cout);
                if (!last) continue;
                for (int i = 0; i < na; i++)
                    for (int j = 0; j < nb; j++) {
                        const int64_t row0 = (p + j) * kPanelRows, tok0 = t0 + 16 * i;
                        const int rows = (int)std::min<int64_t>(kPanelRows, t.rows - row0);
                        const int toks = (int)std::min<int64_t>(16, t.n_tokens - tok0);
                        for (int k = 0; k < toks; k++)
                            V::store_n(t.y + (tok0 + k) * t.ldy + row0, V::load_f32(c[i][j] + 16 * k), rows);
                    }
            }
        }
    }
}

// The avx512-vnni kernels plus the BF16 tiles for the quantized types' prompts of at least
// kBf16MinTokens. Not make_amx's table: its AMX-INT8 tiles would take the prompts of 9-15 tokens
// (one 16-token tile), which ran at 0.64-0.95x of the avx512-vnni kernels on an AMX Xeon core
// (bench/results/cpu-prompt.md, section 35).
KernelSet make_amx_bf16(const char* name) {
    KernelSet k = make_kernel_set(name);
    k.to_bf16 = rows_to_bf16;
    k.k[(uint32_t)GgmlType::Q4_0].bf16 = bf16_panels<P_Q4_0>;
    k.k[(uint32_t)GgmlType::Q4_1].bf16 = bf16_panels<P_Q4_1>;
    k.k[(uint32_t)GgmlType::Q5_0].bf16 = bf16_panels<P_Q5_0>;
    k.k[(uint32_t)GgmlType::Q5_1].bf16 = bf16_panels<P_Q5_1>;
    k.k[(uint32_t)GgmlType::Q8_0].bf16 = bf16_panels<P_Q8_0>;
    k.k[(uint32_t)GgmlType::Q4_K].bf16 = bf16_panels<P_Q4_K>;
    k.k[(uint32_t)GgmlType::Q5_K].bf16 = bf16_panels<P_Q5_K>;
    k.k[(uint32_t)GgmlType::Q6_K].bf16 = bf16_panels<P_Q6_K>;
    return k;
}

}  // namespace
}  // namespace tandem::cpu::detail
