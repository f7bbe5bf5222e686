// Internal to kernels/src/cpu_*: the "panel" layout the SIMD kernel paths repack weights into
// at load, and the activation tiles their kernels read.
//
// ---- weight panels -------------------------------------------------------------------------
//
// A panel is kPanelRows = 16 consecutive rows of a weight matrix (the last panel of a matrix is
// padded with zero rows). It holds one record per block of the GGUF type along the row
// (cols / block records), each record the 16 rows' blocks at that position, interleaved so
// that the kernels read the 16 rows with one vector:
//
//   step      4 consecutive columns k..k+3 (k % 4 == 0) of the 16 rows: 64 bytes, byte 4*r + k%4
//             for row r. vpdpbusd multiplies a step with 4 broadcast activation bytes into one
//             int32 per row; it is also one row of an AMX B tile.
//   nib[c]    64 bytes: step 2c's levels in the low nibbles, step 2c+1's in the high nibbles.
//   hb1[g]    64 bytes: bit j of byte i is bit 4 of byte i of step 8g+j (Q5 types).
//   l6[g][j]  64 bytes (j < 3): byte i of step 4g+j (6 bits) in bits 0..5, and bits 2j..2j+1
//             of byte i of step 4g+3 in bits 6..7 (Q6_K: a 16-column subblock's 4 steps in 3
//             vectors, unpacked by 3 ands, 3 and-nots, 3 shifts and an or).
//   lvl[s]    64 bytes: step s as u8, the int8 level + 128 (Q8_0).
//
//   type  record (per 16 rows x 1 block)                                  bytes  GGUF 16 blocks
//   Q4_0  nib[4]; f16 d[16]                                                 288   288
//   Q4_1  nib[4]; f16 d[16], m[16]                                          320   320
//   Q5_0  nib[4]; hb1[1]; f16 d[16]                                         352   352
//   Q5_1  nib[4]; hb1[1]; f16 d[16], m[16]                                  384   384
//   Q8_0  lvl[8]; f16 d[16]                                                 544   544
//   Q4_K  nib[32]; f16 d[16], dmin[16]; u8 sc[8][16], mn[8][16]            2368  2304
//   Q5_K  nib[32]; hb1[8]; f16 d[16], dmin[16]; u8 sc[8][16], mn[8][16]    2880  2816
//   Q6_K  l6[16][3]; i8 sc[16][16]; f16 d[16]                               3360  3360
//   F32   one column: f32[16]                                                 64    64
//   F16   one column: f16[16]                                                 32    32
//   BF16  one column: bf16[16]                                                32    32
//
// Levels L and values are those of the GGUF block (cpu_kernels.h levels_*): Q4_0 d*(L-8),
// Q4_1 d*L + m, Q5_0 d*(L-16), Q5_1 d*L + m, Q8_0 d*(L-128) (L stored as q + 128), Q4_K/Q5_K over subblock j of
// 32 columns d*sc[j]*L - dmin*mn[j], Q6_K over subblock g of 16 columns d*sc[g]*(L-32). The
// K-quant scales are unpacked to one byte each (+64 bytes a record for Q4_K/Q5_K, 2.8%/2.3%).
//
// ---- activation tiles ----------------------------------------------------------------------
//
// The activations of T tokens, quantized once per call (the path's KernelSet::act_row, or its
// act_tile16 for whole 16-token tiles) and laid out for the kernels: one record per subblock
// (32 columns; 16 for Q6_K) along the row:
//
//   int8  q[T][S]            token t's S quantized activations (S = 32, or 16 for Q6_K): the
//                            kernels broadcast 4 of them at a time, AMX loads them as an A tile
//   float dx[T]              the activation scale of token t's block (in a Q8AG tile the same
//                            over each group of kActGroupBlocks subblocks)
//   float sx[T]              dx * sigma, sigma = the sum of token t's quantized subblock
//   float sg[T]              sigma
//   int32 ncorr[T]           -(sigma << corr_shift): the start of the kernel's integer sum, which
//                            takes the weights' level offset back out; 0 when unused. Q4_K and
//                            Q5_K (no offset) in 16-token tiles: in subblocks 0-3 of each
//                            256-column record, the int16 pair (sigma of subblock 2j, sigma of
//                            2j + 1) (act_sigma_pairs), for the kernel that sums the min term in
//                            integers (tile_qt, the only one that takes 16-token tiles); smaller
//                            tiles hold 0 there
//
// Float weight types: one f32 x[cols][T] tile (column k of the T tokens contiguous).
// Tokens past the real ones (a tile padded up to T) are zero.
#pragma once
#include <cstddef>
#include <cstdint>

#include "cpu_kernels.h"

namespace tandem::cpu::detail {

constexpr int kPanelRows = 16;

struct pq4_0 { uint8_t nib[4][64]; half_bits d[16]; };
struct pq4_1 { uint8_t nib[4][64]; half_bits d[16], m[16]; };
struct pq5_0 { uint8_t nib[4][64]; uint8_t hb1[1][64]; half_bits d[16]; };
struct pq5_1 { uint8_t nib[4][64]; uint8_t hb1[1][64]; half_bits d[16], m[16]; };
struct pq8_0 { uint8_t lvl[8][64]; half_bits d[16]; };
struct pq4_K { uint8_t nib[32][64]; half_bits d[16], dmin[16]; uint8_t sc[8][16], mn[8][16]; };
struct pq5_K { uint8_t nib[32][64]; uint8_t hb1[8][64]; half_bits d[16], dmin[16]; uint8_t sc[8][16], mn[8][16]; };
struct pq6_K { uint8_t l6[16][3][64]; int8_t sc[16][16]; half_bits d[16]; };

static_assert(sizeof(pq4_0) == 16 * sizeof(block_q4_0), "pq4_0 must match 16 GGUF blocks");
static_assert(sizeof(pq4_1) == 16 * sizeof(block_q4_1), "pq4_1 must match 16 GGUF blocks");
static_assert(sizeof(pq5_0) == 16 * sizeof(block_q5_0), "pq5_0 must match 16 GGUF blocks");
static_assert(sizeof(pq5_1) == 16 * sizeof(block_q5_1), "pq5_1 must match 16 GGUF blocks");
static_assert(sizeof(pq8_0) == 16 * sizeof(block_q8_0), "pq8_0 must match 16 GGUF blocks");
static_assert(sizeof(pq4_K) == 16 * sizeof(block_q4_K) + 64, "pq4_K layout");
static_assert(sizeof(pq5_K) == 16 * sizeof(block_q5_K) + 64, "pq5_K layout");
static_assert(sizeof(pq6_K) == 16 * sizeof(block_q6_K), "pq6_K must match 16 GGUF blocks");

// The panel format of one weight type.
struct PanelFormat {
    int64_t rec_cols = 0;    // columns per record (the GGUF block; 1 for the float types)
    size_t rec_bytes = 0;    // bytes per record
    int sub_cols = 0;        // columns per activation subblock (32; 16 for Q6_K; 0: float tile)
    bool sigma_pairs = false;  // its tiles carry act_sigma_pairs (Q4_K, Q5_K: mins, no offset)
};

// nullptr for types without a panel format.
const PanelFormat* panel_format(GgmlType t);

// Bytes of one panel of a (rows, cols) matrix.
size_t panel_bytes(GgmlType t, int64_t cols);

// Packs rows [16p, 16p + 16) of W (rows, cols; GGUF rows of row_size(t, cols) bytes) into
// panel p at dst (panel_bytes(t, cols) bytes); rows >= `rows` are written as zeros.
void pack_panel(GgmlType t, const void* W, int64_t rows, int64_t cols, int64_t p, uint8_t* dst);

// Bytes of one subblock record of a tile: S columns of T tokens and the four per-token fields.
constexpr size_t act_sub_bytes(int S, int T) { return (size_t)(S * T + 16 * T); }

// Bytes of the activation tile of T tokens for a row of `cols` columns of weight type t.
size_t act_tile_bytes(GgmlType t, int64_t cols, int T);

// The per-token fields of the subblock record rec of a tile of T tokens (S columns), each T
// long: the scale dx, dx * sigma, sigma (the sum of the token's S int8 values) and the level
// offset's correction ncorr (act_tile_scales writes them).
struct ActSubFields {
    const float *dx, *sx, *sg;
    const int32_t* ncorr;
};
inline ActSubFields act_sub_fields(const uint8_t* rec, int S, int T) {
    const float* dx = (const float*)(rec + S * T);
    return {dx, dx + T, dx + 2 * T, (const int32_t*)(dx + 3 * T)};
}

// Token tt's dx, sx, sg and ncorr in the subblock record rec of a tile of T tokens.
inline void act_tile_scales(uint8_t* rec, int S, int T, int tt, float d, int sigma, int corr_shift) {
    float* dx = (float*)(rec + S * T);
    dx[tt] = d;
    dx[T + tt] = d * (float)sigma;
    dx[2 * T + tt] = (float)sigma;
    ((int32_t*)(dx + 3 * T))[tt] = corr_shift >= 0 ? -sigma * (1 << corr_shift) : 0;
}

// Subblocks 0-3 of each record of a Q4_K / Q5_K tile: ncorr[tt] = the int16 pair (sigma of
// subblock 2j, sigma of 2j + 1) of token tt < nt, from the sg fields (|sigma| <= 32 * 127). The
// plain reference for the pairs act_tile_fill_avx512 writes into the 16-token tiles.
void act_sigma_pairs(int64_t cols, int nt, int T, uint8_t* tile);

// Fills the tile of the nt tokens of X (rows of `cols` floats, ldx floats apart) for weight
// type t in format af (act_format(t, the call's tokens)): with tile16 where T is 16, af has one
// scale per 256 columns and tile16 is not null (every path whose tiles reach 16 tokens), else
// each row quantized by `row`; tokens nt..T-1 of the tile are zero. scratch: act_row_size bytes
// for one row.
void act_tile_fill(GgmlType t, ActFormat af, int64_t cols, const float* X, int64_t ldx, int nt, int T, int corr_shift,
                   act_row_fn row, act_tile_fn tile16, uint8_t* tile, void* scratch);

}  // namespace tandem::cpu::detail
