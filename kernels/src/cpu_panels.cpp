// The panel layout (cpu_panels.h): packing GGUF rows into panels, and the activation tiles.
// Plain scalar code: it runs once per matrix at load (packing) and once per token per call
// (tiles), and it is the definition of the layouts the SIMD kernels read.
#include "cpu_panels.h"

#include <cstring>

namespace tandem::cpu::detail {

// ---- levels -> interleaved steps -----------------------------------------------------------

// Levels of the 16 rows of one record: L[r][k] for column k of the block (zero for padding rows).
struct RecLevels {
    uint8_t L[kPanelRows][QK_K];
};

// Byte 4r + j of step s holds column 4s + j of row r: level L[r][k] goes to byte 4r + k % 4
// of step k / 4. Each output byte is written once.

static void put_nibbles(const RecLevels& lv, int cols, uint8_t (*nib)[64]) {
    for (int c = 0; c < cols / 8; c++)  // steps 2c, 2c + 1: columns 8c + j and 8c + 4 + j
        for (int r = 0; r < kPanelRows; r++)
            for (int j = 0; j < 4; j++)
                nib[c][4 * r + j] = (uint8_t)((lv.L[r][8 * c + j] & 0xF) | (lv.L[r][8 * c + 4 + j] << 4));
}

static void put_hb1(const RecLevels& lv, int cols, uint8_t (*hb)[64]) {
    for (int g = 0; g < cols / 32; g++)  // steps 8g .. 8g + 7
        for (int r = 0; r < kPanelRows; r++)
            for (int j = 0; j < 4; j++) {
                uint8_t b = 0;
                for (int s = 0; s < 8; s++) b |= (uint8_t)(((lv.L[r][4 * (8 * g + s) + j] >> 4) & 1) << s);
                hb[g][4 * r + j] = b;
            }
}

static void put_l6(const RecLevels& lv, int cols, uint8_t (*l6)[3][64]) {
    for (int g = 0; g < cols / 16; g++)  // steps 4g .. 4g + 3
        for (int r = 0; r < kPanelRows; r++)
            for (int j = 0; j < 4; j++) {
                const uint8_t top = lv.L[r][4 * (4 * g + 3) + j];
                for (int s = 0; s < 3; s++)
                    l6[g][s][4 * r + j] = (uint8_t)(lv.L[r][4 * (4 * g + s) + j] | (((top >> (2 * s)) & 3) << 6));
            }
}

// ---- one record per type -------------------------------------------------------------------
//
// blk[r]: row r's GGUF block at this record's position, nullptr for a padding row. The
// record is zeroed before the call.

using pack_rec_fn = void (*)(const void* const blk[kPanelRows], void* rec, RecLevels& lv);

template <class B>
static const B& as(const void* p) { return *(const B*)p; }

static void pack_q4_0(const void* const blk[kPanelRows], void* rec, RecLevels& lv) {
    pq4_0& o = *(pq4_0*)rec;
    for (int r = 0; r < kPanelRows; r++)
        if (blk[r]) {
            levels_q4(as<block_q4_0>(blk[r]).qs, lv.L[r]);
            o.d[r] = as<block_q4_0>(blk[r]).d;
        }
    put_nibbles(lv, 32, o.nib);
}
static void pack_q4_1(const void* const blk[kPanelRows], void* rec, RecLevels& lv) {
    pq4_1& o = *(pq4_1*)rec;
    for (int r = 0; r < kPanelRows; r++)
        if (blk[r]) {
            levels_q4(as<block_q4_1>(blk[r]).qs, lv.L[r]);
            o.d[r] = as<block_q4_1>(blk[r]).d;
            o.m[r] = as<block_q4_1>(blk[r]).m;
        }
    put_nibbles(lv, 32, o.nib);
}
static void pack_q5_0(const void* const blk[kPanelRows], void* rec, RecLevels& lv) {
    pq5_0& o = *(pq5_0*)rec;
    for (int r = 0; r < kPanelRows; r++)
        if (blk[r]) {
            levels_q5(as<block_q5_0>(blk[r]).qs, as<block_q5_0>(blk[r]).qh, lv.L[r]);
            o.d[r] = as<block_q5_0>(blk[r]).d;
        }
    put_nibbles(lv, 32, o.nib);
    put_hb1(lv, 32, o.hb1);
}
static void pack_q5_1(const void* const blk[kPanelRows], void* rec, RecLevels& lv) {
    pq5_1& o = *(pq5_1*)rec;
    for (int r = 0; r < kPanelRows; r++)
        if (blk[r]) {
            levels_q5(as<block_q5_1>(blk[r]).qs, as<block_q5_1>(blk[r]).qh, lv.L[r]);
            o.d[r] = as<block_q5_1>(blk[r]).d;
            o.m[r] = as<block_q5_1>(blk[r]).m;
        }
    put_nibbles(lv, 32, o.nib);
    put_hb1(lv, 32, o.hb1);
}
static void pack_q8_0(const void* const blk[kPanelRows], void* rec, RecLevels& lv) {
    pq8_0& o = *(pq8_0*)rec;
    for (int r = 0; r < kPanelRows; r++)
        if (blk[r]) {
            std::memcpy(lv.L[r], as<block_q8_0>(blk[r]).qs, 32);  // int8 bits kept as they are
            o.d[r] = as<block_q8_0>(blk[r]).d;
        }
    for (int r = 0; r < kPanelRows; r++)
        for (int k = 0; k < 32; k++) o.lvl[k / 4][4 * r + k % 4] = (uint8_t)(lv.L[r][k] ^ 0x80);  // q + 128
}
template <class P>
static void k4_scales(const uint8_t* scales, half_bits d, half_bits dmin, int r, P& o) {
    uint8_t sc[8], mn[8];
    unpack_scales_k4(scales, sc, mn);
    for (int j = 0; j < 8; j++) {
        o.sc[j][r] = sc[j];
        o.mn[j][r] = mn[j];
    }
    o.d[r] = d;
    o.dmin[r] = dmin;
}
static void pack_q4_K(const void* const blk[kPanelRows], void* rec, RecLevels& lv) {
    pq4_K& o = *(pq4_K*)rec;
    for (int r = 0; r < kPanelRows; r++)
        if (blk[r]) {
            const block_q4_K& b = as<block_q4_K>(blk[r]);
            levels_q4_K(b, lv.L[r]);
            k4_scales(b.scales, b.d, b.dmin, r, o);
        }
    put_nibbles(lv, QK_K, o.nib);
}
static void pack_q5_K(const void* const blk[kPanelRows], void* rec, RecLevels& lv) {
    pq5_K& o = *(pq5_K*)rec;
    for (int r = 0; r < kPanelRows; r++)
        if (blk[r]) {
            const block_q5_K& b = as<block_q5_K>(blk[r]);
            levels_q5_K(b, lv.L[r]);
            k4_scales(b.scales, b.d, b.dmin, r, o);
        }
    put_nibbles(lv, QK_K, o.nib);
    put_hb1(lv, QK_K, o.hb1);
}
static void pack_q6_K(const void* const blk[kPanelRows], void* rec, RecLevels& lv) {
    pq6_K& o = *(pq6_K*)rec;
    for (int r = 0; r < kPanelRows; r++)
        if (blk[r]) {
            const block_q6_K& b = as<block_q6_K>(blk[r]);
            levels_q6_K(b, lv.L[r]);
            for (int g = 0; g < QK_K / 16; g++) o.sc[g][r] = b.scales[g];
            o.d[r] = b.d;
        }
    put_l6(lv, QK_K, o.l6);
}

// ---- the format table ----------------------------------------------------------------------

struct FormatRow {
    PanelFormat f;
    pack_rec_fn pack = nullptr;  // nullptr for the float types (pack_float_panel)
};

static const FormatRow* format_table() {
    static const FormatRow* table = [] {
        static FormatRow t[kGgmlTypeCount];
        auto set = [](GgmlType ty, int64_t rec_cols, size_t rec_bytes, int sub_cols, pack_rec_fn pack,
                      bool sigma_pairs = false) {
            t[(uint32_t)ty] = FormatRow{PanelFormat{rec_cols, rec_bytes, sub_cols, sigma_pairs}, pack};
        };
        set(GgmlType::F32, 1, 64, 0, nullptr);  // pack_float_panel
        set(GgmlType::F16, 1, 32, 0, nullptr);
        set(GgmlType::BF16, 1, 32, 0, nullptr);
        set(GgmlType::Q4_0, 32, sizeof(pq4_0), 32, pack_q4_0);
        set(GgmlType::Q4_1, 32, sizeof(pq4_1), 32, pack_q4_1);
        set(GgmlType::Q5_0, 32, sizeof(pq5_0), 32, pack_q5_0);
        set(GgmlType::Q5_1, 32, sizeof(pq5_1), 32, pack_q5_1);
        set(GgmlType::Q8_0, 32, sizeof(pq8_0), 32, pack_q8_0);
        set(GgmlType::Q4_K, QK_K, sizeof(pq4_K), 32, pack_q4_K, true);
        set(GgmlType::Q5_K, QK_K, sizeof(pq5_K), 32, pack_q5_K, true);
        set(GgmlType::Q6_K, QK_K, sizeof(pq6_K), 16, pack_q6_K);
        return t;
    }();
    return table;
}

const PanelFormat* panel_format(GgmlType t) {
    const uint32_t id = (uint32_t)t;
    if (id >= kGgmlTypeCount || format_table()[id].f.rec_bytes == 0) return nullptr;
    return &format_table()[id].f;
}

size_t panel_bytes(GgmlType t, int64_t cols) {
    const PanelFormat& f = *panel_format(t);
    return (size_t)(cols / f.rec_cols) * f.rec_bytes;
}

// Float types: column k of the panel is element k of each of its 16 rows (E bytes each).
static void pack_float_panel(size_t E, const void* W, int64_t rows, int64_t cols, int64_t p, uint8_t* dst) {
    std::memset(dst, 0, (size_t)cols * kPanelRows * E);
    for (int r = 0; r < kPanelRows && p * kPanelRows + r < rows; r++) {
        const uint8_t* src = (const uint8_t*)W + (size_t)(p * kPanelRows + r) * (size_t)cols * E;
        uint8_t* d = dst + E * (size_t)r;
        if (E == 2)
            for (int64_t k = 0; k < cols; k++) std::memcpy(d + (size_t)k * kPanelRows * 2, src + 2 * k, 2);
        else
            for (int64_t k = 0; k < cols; k++) std::memcpy(d + (size_t)k * kPanelRows * 4, src + 4 * k, 4);
    }
}

void pack_panel(GgmlType t, const void* W, int64_t rows, int64_t cols, int64_t p, uint8_t* dst) {
    const FormatRow& fr = format_table()[(uint32_t)t];
    if (fr.f.rec_cols == 1) return pack_float_panel(type_traits(t).type_size, W, rows, cols, p, dst);
    const size_t row_bytes = row_size(t, cols);
    const size_t blk_bytes = type_traits(t).type_size;
    const int64_t n_recs = cols / fr.f.rec_cols;
    RecLevels lv;
    for (int64_t b = 0; b < n_recs; b++) {
        const void* blk[kPanelRows];
        for (int r = 0; r < kPanelRows; r++) {
            const int64_t row = p * kPanelRows + r;
            blk[r] = row < rows ? (const uint8_t*)W + row * row_bytes + b * blk_bytes : nullptr;
        }
        uint8_t* rec = dst + b * fr.f.rec_bytes;
        std::memset(rec, 0, fr.f.rec_bytes);
        for (int r = 0; r < kPanelRows; r++) std::memset(lv.L[r], 0, (size_t)fr.f.rec_cols);
        fr.pack(blk, rec, lv);
    }
}

// ---- activation tiles ----------------------------------------------------------------------

size_t act_tile_bytes(GgmlType t, int64_t cols, int T) {
    const PanelFormat& f = *panel_format(t);
    if (f.sub_cols == 0) return (size_t)(cols * T) * sizeof(float);
    return (size_t)(cols / f.sub_cols) * act_sub_bytes(f.sub_cols, T);
}

void act_tile_row(ActFormat f, int S, const float* x, int64_t cols, int T, int tt, int corr_shift, uint8_t* tile,
                  void* scratch) {
    quantize_act(f, x, scratch, cols);
    const size_t rec_bytes = act_sub_bytes(S, T);
    for (int64_t u = 0; u < cols / S; u++) {
        const int8_t* q;
        float d;
        if (f == ActFormat::Q8A || f == ActFormat::Q8AG) {
            const block_q8a& b = ((const block_q8a*)scratch)[u * S / 32];
            q = b.qs + (u * S) % 32;
            d = b.d;
        } else {
            const block_q8k& b = ((const block_q8k*)scratch)[u * S / QK_K];
            q = b.qs + (u * S) % QK_K;
            d = b.d;
        }
        uint8_t* rec = tile + u * rec_bytes;
        int sigma = 0;
        for (int k = 0; k < S; k++) sigma += q[k];
        std::memcpy(rec + S * tt, q, (size_t)S);
        act_tile_scales(rec, S, T, tt, d, sigma, corr_shift);
    }
}

void act_tile_fill(GgmlType t, ActFormat af, int64_t cols, const float* X, int64_t ldx, int nt, int T, int corr_shift,
                   act_row_fn row, act_tile_fn tile16, uint8_t* tile, void* scratch) {
    const PanelFormat& f = *panel_format(t);
    if (nt < T) std::memset(tile, 0, act_tile_bytes(t, cols, T));
    if (f.sub_cols == 0) {
        float* x = (float*)tile;
        for (int tt = 0; tt < nt; tt++)
            for (int64_t k = 0; k < cols; k++) x[k * T + tt] = X[tt * ldx + k];
        return;
    }
    if (tile16 && T == 16 && (af == ActFormat::Q8AG || af == ActFormat::Q8K)) {
        tile16(f.sub_cols, X, ldx, cols, nt, corr_shift, f.sigma_pairs, tile);
        return;
    }
    for (int tt = 0; tt < nt; tt++) row(af, f.sub_cols, X + tt * ldx, cols, T, tt, corr_shift, tile, scratch);
}

void act_sigma_pairs(int64_t cols, int nt, int T, uint8_t* tile) {
    constexpr int S = 32, kSubs = QK_K / S;
    const size_t rec_bytes = act_sub_bytes(S, T);
    for (int64_t b = 0; b < cols / QK_K; b++) {
        uint8_t* rec = tile + b * kSubs * rec_bytes;
        for (int j = 0; j < kSubs / 2; j++) {
            const float* lo = act_sub_fields(rec + 2 * j * rec_bytes, S, T).sg;
            const float* hi = act_sub_fields(rec + (2 * j + 1) * rec_bytes, S, T).sg;
            int32_t* pair = (int32_t*)act_sub_fields(rec + j * rec_bytes, S, T).ncorr;
            for (int tt = 0; tt < nt; tt++)
                pair[tt] = (int32_t)((uint32_t)(uint16_t)(int16_t)lo[tt] | (uint32_t)(int32_t)hi[tt] << 16);
        }
    }
}

}  // namespace tandem::cpu::detail
