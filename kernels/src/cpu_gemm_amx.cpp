// The "amx" path: AMX-INT8 tiles for the quantized types (cpu_gemm_amx.h), on CPUs with
// AMX-TILE + AMX-INT8 whose OS granted the tile state (cpu_features().amx_int8).
// Every function carries the target attribute; nothing here runs unless cpu_features() said so.
#include "cpu_gemm_amx.h"

namespace tandem::cpu::detail {

const KernelSet& kernels_amx() {
    static const KernelSet k = make_amx("amx");
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

}  // namespace tandem::cpu::detail
