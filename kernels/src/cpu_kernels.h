// Internal to kernels/src/cpu_*.cpp: the activation row formats, the weight-block level
// decoders shared by the scalar reference and the packer, and the kernel-table shape that
// every path (scalar, avx2, avx-vnni, avx512-vnni, amx) fills in.
#pragma once
#include <cstddef>
#include <cstdint>

#include "tandem/quant_types.h"

namespace tandem::cpu::detail {

// ---- activation row formats ----------------------------------------------------------------

// Activations for the 32-block weight types: x[j] ~= d * qs[j], |qs| <= 127.
// s = d * sum(qs) serves the weight formats with an offset (Q4_0's -8, Q4_1's min, ...).
struct block_q8a {
    float d;
    float s;
    int8_t qs[32];
};
static_assert(sizeof(block_q8a) == 40, "block_q8a must stay packed");

// Activations for the K-quant weight types: x[j] ~= d * qs[j]; bsums[g] = sum of qs[16g..16g+15].
struct block_q8k {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
};
static_assert(sizeof(block_q8k) == 4 + QK_K + QK_K / 8, "block_q8k must stay packed");

// Q8AG: block_q8a blocks whose scale is shared by each group of kActGroupBlocks consecutive
// blocks (256 columns, the row's last group holding what is left): d = the group's largest |x|
// / 127, as Q8K's per 256 columns. Prompts (more than one token) quantize the 32-block types'
// activations so, so that the zmm prompt tiles apply each token's scale once per group instead
// of once per block (tile_qt); a single token keeps Q8A's scale per block.
enum class ActFormat { F32, Q8A, Q8AG, Q8K };
constexpr int kActGroupBlocks = 8;

// Which activation format a weight type's kernels take for a call of n_tokens tokens (only the
// types matmul supports).
ActFormat act_format(GgmlType t, int64_t n_tokens);

// Bytes of one token's activation row of n elements in format f.
size_t act_row_size(ActFormat f, int64_t n);

// x (n) f32 -> activation row in format f. n is a multiple of that format's block. Plain
// scalar code: the scalar path's quantizer, and the reference for the panel paths' one.
void quantize_act(ActFormat f, const float* x, void* dst, int64_t n);

// Token tt of an activation tile (cpu_panels.h) of T tokens and S-column subblocks (S = 32, or
// 16 for Q6_K): x (cols floats, a multiple of f's block) quantized in format f (Q8A, Q8AG or Q8K)
// into the token's q, dx, sx, sg and ncorr slots.
// act_tile_row: the reference, quantize_act into scratch (act_row_size bytes) and copied;
// act_tile_row_avx2: its AVX2 twin, the same bytes for finite x, with no scratch (the panel
// paths' one, so that all paths see the same quantized values). Only call it where the CPU
// has AVX2.
void act_tile_row(ActFormat f, int S, const float* x, int64_t cols, int T, int tt, int corr_shift, uint8_t* tile,
                  void* scratch);
void act_tile_row_avx2(ActFormat f, int S, const float* x, int64_t cols, int T, int tt, int corr_shift, uint8_t* tile,
                       void* scratch);
using act_row_fn = void (*)(ActFormat f, int S, const float* x, int64_t cols, int T, int tt, int corr_shift,
                            uint8_t* tile, void* scratch);

// A whole tile of 16 tokens (T = 16) of S-column subblocks in Q8AG or Q8K (one scale per 256
// columns, the same arithmetic; Q8K rows are whole groups): token tt < nt is the row X + tt * ldx;
// tokens nt..15 must be zero already. The bytes of act_tile_row for each token (and of
// act_sigma_pairs where sigma_pairs) for finite x, on zmm registers. Only call it where the CPU
// has AVX-512 F/BW.
void act_tile_fill_avx512(int S, const float* X, int64_t ldx, int64_t cols, int nt, int corr_shift,
                          bool sigma_pairs, uint8_t* tile);
using act_tile_fn = void (*)(int S, const float* X, int64_t ldx, int64_t cols, int nt, int corr_shift,
                             bool sigma_pairs, uint8_t* tile);

// ---- weight levels -------------------------------------------------------------------------
//
// The unsigned integer level L of every element of one GGUF block, exactly as the format
// table in quant_types.h describes (the value is then d*(L-8) for Q4_0, d*L + m for Q4_1,
// ...). Used by the scalar reference dots and by the panel packer, so both read the GGUF
// bits the same way.

void levels_q4(const uint8_t qs[16], uint8_t L[32]);                       // Q4_0, Q4_1: 0..15
void levels_q5(const uint8_t qs[16], const uint8_t qh[4], uint8_t L[32]);  // Q5_0, Q5_1: 0..31
void levels_q4_K(const block_q4_K& b, uint8_t L[QK_K]);                    // 0..15
void levels_q5_K(const block_q5_K& b, uint8_t L[QK_K]);                    // 0..31
void levels_q6_K(const block_q6_K& b, uint8_t L[QK_K]);                    // 0..63 (value d*sc*(L-32))

// The 8 (scale, min) pairs of a Q4_K/Q5_K block, unpacked (get_scale_min_k4: quant_types.h).
inline void unpack_scales_k4(const uint8_t* q, uint8_t sc[8], uint8_t mn[8]) {
    for (int j = 0; j < 8; j++) get_scale_min_k4(j, q, &sc[j], &mn[j]);
}

// ---- kernel tables -------------------------------------------------------------------------

// Rows layout (the scalar path works on the GGUF rows as they are):
// Y[t*ldy + r] = dot(W row r, activation row t) for r in [0, nr), t in [0, nt).
//   n    elements per row (cols), a multiple of the block size
//   W    nr rows of ldw bytes in the weight type's layout
//   X    nt activation rows of ldx bytes in act_format(type, nt)
using gemm_fn = void (*)(int64_t n, const void* W, size_t ldw, int64_t nr, const void* X, size_t ldx,
                         int64_t nt, float* Y, int64_t ldy);

// Panels layout (the SIMD paths; format in cpu_panels.h): one call computes the rows of
// n_panels consecutive panels against one activation tile of T tokens.
struct PanelTask {
    const uint8_t* w;     // the first panel
    size_t panel_bytes;   // stride between panels
    int64_t n_panels;
    int64_t rows;         // valid rows from the first panel's row 0 on (the last panel may be partial)
    int64_t n_recs;       // records per panel (cols / columns per record)
    const uint8_t* act;   // the activation tile (cpu_panels.h), T tokens
    int T;                // the tile's token count: one of the path's tile sizes
    int nt;               // tokens to store (<= T; the rest of the tile is padding)
    float* y;             // output of the tile's first token for the first panel's row 0
    int64_t ldy;          // floats between tokens in y
};
using panel_fn = void (*)(const PanelTask& task);

// Prompts on BF16 tiles (the amx-bf16 paths, cpu_gemm_amx_bf16.h): one call computes the rows
// of n_panels consecutive panels for every token, dequantizing them into b a K piece at a time.
struct Bf16Task {
    const uint8_t* w;     // the first panel
    size_t panel_bytes;   // stride between panels
    int64_t n_panels;
    int64_t rows;         // valid rows from the first panel's row 0 on
    int64_t n_recs;       // records per panel
    const uint16_t* x;    // BF16 activations, n_tokens rows of ldx, zero rows up to a multiple of 16
    int64_t ldx;          // elements between tokens in x (the matrix's cols)
    int64_t n_tokens;
    float* y;             // output of token 0 for the first panel's row 0
    int64_t ldy;          // floats between tokens in y
    uint16_t* b;          // scratch: n_panels * min(cols, kBf16PieceCols) * 16 BF16 values
    float* acc;           // scratch, when cols > kBf16PieceCols: bf16_acc_floats(n_tokens, n_panels)
};
using bf16_panels_fn = void (*)(const Bf16Task& task);
// n floats (a multiple of 32) to BF16, rounded to nearest even.
using to_bf16_fn = void (*)(const float* x, uint16_t* y, int64_t n);

enum class Layout { Rows, Panels };

constexpr int kMaxTileSizes = 5;

struct TypeKernel {
    gemm_fn rows = nullptr;     // Layout::Rows
    panel_fn panels = nullptr;  // Layout::Panels
    // Activation tiles: ncorr = -(sum of the subblock's quantized activations << corr_shift),
    // where the kernel's integer sums start (the weights' level offset); -1: none.
    int corr_shift = -1;
    int tile_sizes[kMaxTileSizes] = {};  // Layout::Panels: the ascending token counts of its tiles
    int n_tile_sizes = 0;
    bf16_panels_fn bf16 = nullptr;  // prompts of at least kBf16MinTokens on BF16 tiles; nullptr: panels
};

struct KernelSet {
    const char* name = nullptr;
    Layout layout = Layout::Rows;
    act_row_fn act_row = act_tile_row;  // the activation tiles' quantizer (Layout::Panels)
    act_tile_fn act_tile16 = nullptr;   // 16-token tiles of Q8AG / Q8K whole; nullptr: act_row per token
    to_bf16_fn to_bf16 = nullptr;         // the activations' BF16 rounding, where a type has .bf16
    TypeKernel k[kGgmlTypeCount];  // .rows / .panels nullptr: this path does not do the type
};

// Each returns a fully filled table for its path. Only call the SIMD ones on a CPU that has the
// instructions (cpu_matmul.cpp checks cpu_features() first).
const KernelSet& kernels_scalar();
const KernelSet& kernels_avx2();
const KernelSet& kernels_avx_vnni();       // VEX-encoded vpdpbusd (AVX-VNNI)
const KernelSet& kernels_avx512vl_vnni();  // the same 256-bit kernels, EVEX-encoded (AVX512-VL + VNNI)
const KernelSet& kernels_avx512();
const KernelSet& kernels_amx();            // AMX-INT8 tiles, AVX-512 for the rest
const KernelSet& kernels_amx_emulated();   // the same with the tile instructions done in software
const KernelSet& kernels_amx_bf16();       // amx, and the quantized types' prompts on AMX-BF16 tiles
const KernelSet& kernels_amx_bf16_emulated();

// Tokens from which a prompt goes to a type's .bf16 kernel: one A tile.
constexpr int64_t kBf16MinTokens = 16;
// Columns of the row the .bf16 kernels take at a time (a multiple of every record's columns).
constexpr int64_t kBf16PieceCols = 2048;
// Floats of Bf16Task::acc: the C tiles of every 16 tokens (in 32-token blocks) x every panel
// (in pairs).
constexpr int64_t bf16_acc_floats(int64_t n_tokens, int64_t n_panels) {
    return (n_tokens + 31) / 32 * 2 * ((n_panels + 1) / 2 * 2) * 256;
}

// tdpbsud instructions executed by a register-only loop of `iters` iterations (tandem/cpu_peak.h);
// only on a CPU where the amx path is supported.
double amx_peak_loop(long iters);
// tdpbf16ps instructions executed likewise; only where the amx-bf16 path is supported.
double amx_bf16_peak_loop(long iters);

}  // namespace tandem::cpu::detail
