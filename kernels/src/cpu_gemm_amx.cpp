// The "amx" path: AMX-INT8 tiles for the quantized types (cpu_gemm_amx.h), on CPUs with
// AMX-TILE + AMX-INT8 whose OS granted the tile state (cpu_features().amx_int8); and the
// "amx-bf16" path: prompts of 16 tokens or more on AMX-BF16 tiles (cpu_gemm_amx_bf16.h), the
// rest on the avx512-vnni kernels, where the CPU also has AMX-BF16 and AVX512-BF16. One file for
// both: they share the thread's tile configuration. Every function carries a target attribute; nothing here runs unless
// cpu_features() said so.
#include "cpu_gemm_amx.h"
#include "cpu_gemm_amx_bf16.h"

namespace tandem::cpu::detail {

const KernelSet& kernels_amx() {
    static const KernelSet k = make_amx("amx");
    return k;
}

const KernelSet& kernels_amx_bf16() {
    static const KernelSet k = make_amx_bf16("amx-bf16");
    return k;
}

// Six C tiles accumulating A . B with full 16 x 64-byte tiles: 16 x 16 x 64 multiply-adds each.
TGT double amx_peak_loop(long iters) {
    TileConfig cfg;
    for (int i = 0; i < 8; i++) cfg.rows[i] = 16, cfg.colsb[i] = 64;
    tiles_load_config(cfg);
    alignas(64) static const uint8_t zeros[16 * 64] = {};
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_zero(4);
    _tile_zero(5);
    _tile_loadd(6, zeros, 64);
    _tile_loadd(7, zeros, 64);
    for (long i = 0; i < iters; i++) {
        _tile_dpbsud(0, 6, 7);
        _tile_dpbsud(1, 6, 7);
        _tile_dpbsud(2, 6, 7);
        _tile_dpbsud(3, 6, 7);
        _tile_dpbsud(4, 6, 7);
        _tile_dpbsud(5, 6, 7);
    }
    t_configured = 0;  // the kernels load their own configuration next
    return 6.0 * (double)iters;
}

// Four C tiles accumulating A . B with BF16 tiles: 16 x 16 x 32 multiply-adds each.
TGT_BF16 double amx_bf16_peak_loop(long iters) {
    tiles_configure(64);
    alignas(64) static const uint16_t zeros[16 * 32] = {};
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, zeros, 64);
    _tile_loadd(6, zeros, 64);
    for (long i = 0; i < iters; i++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 6);
        _tile_dpbf16ps(2, 4, 6);
        _tile_dpbf16ps(3, 4, 6);
    }
    return 4.0 * (double)iters;
}

}  // namespace tandem::cpu::detail
