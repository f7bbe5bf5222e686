// TurboAttention decode launcher: checks the parameters, picks splits and instantiation.
#include "turbo_decode.cuh"

#include "decode_common.cuh"

namespace tandem {

static int sm_count() {
    int dev = 0, n = 0;
    TANDEM_CHECK_CUDA(cudaGetDevice(&dev));
    TANDEM_CHECK_CUDA(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
}

static void check(const TurboDecodeParams& p) {
    const TurboCacheLayout& L = p.layout;
    if (!p.q || !p.out || !p.blocks || !p.recent_k || !p.recent_v || !p.recent_ks ||
        !p.recent_vs || !p.seq_len || !p.workspace)
        throw TurboError("turbo_decode: a pointer is null");
    if (L.head_dim != 64 && L.head_dim != 128) throw TurboError("turbo_decode: head_dim must be 64 or 128");
    if (L.block_tokens != kTile) throw TurboError("turbo_decode: block_tokens must be 64 on the GPU");
    if (L.v_group < 8 || L.head_dim / L.v_group > 16) throw TurboError("turbo_decode: v_group must be >= 8 and >= head_dim/16");
    if (L.n_kv_heads < 1 || p.n_q_heads % L.n_kv_heads != 0 || p.n_q_heads / L.n_kv_heads > 8)
        throw TurboError("turbo_decode: n_q_heads must be 1..8 times n_kv_heads");
    if (p.batch < 1 || p.max_len < 1) throw TurboError("turbo_decode: batch and max_len must be >= 1");
    if (p.poly_degree != 2 && p.poly_degree != 3) throw TurboError("turbo_decode: poly_degree must be 2 or 3");
}

size_t turbo_decode_workspace_floats(const TurboDecodeParams& p) {
    const int s = decode_pick_splits(p.n_splits, p.batch, p.layout.n_kv_heads, p.max_len, sm_count());
    return (size_t)p.batch * p.n_q_heads * s * (p.layout.head_dim + 2);
}

void turbo_decode_cuda(const TurboDecodeParams& p, cudaStream_t stream) {
    check(p);
    DecodeArgs a;
    a.q = p.q;
    a.ws = p.workspace;
    a.seq_len = p.seq_len;
    a.blocks = p.blocks;
    a.rk = p.recent_k;
    a.rv = p.recent_v;
    a.rks = p.recent_ks;
    a.rvs = p.recent_vs;
    a.n_q_heads = p.n_q_heads;
    a.n_kv_heads = p.layout.n_kv_heads;
    a.max_len = p.max_len;
    a.n_splits = decode_pick_splits(p.n_splits, p.batch, a.n_kv_heads, p.max_len, sm_count());
    a.threshold = p.threshold;
    a.degree = p.poly_degree;
    float c[4];
    turbo_sas_coeffs(p.poly_degree, c);
    a.c1 = c[1];
    a.c2 = c[2];
    a.c3 = c[3];
    a.layout = p.layout;
    const int G = p.n_q_heads / a.n_kv_heads, D = p.layout.head_dim;
    const dim3 grid(a.n_splits, a.n_kv_heads, p.batch);
    if (D == 128 && G <= 4) decode_split_kernel<128, 4, true><<<grid, kDecodeThreads, 0, stream>>>(a);
    else if (D == 128) decode_split_kernel<128, 8, true><<<grid, kDecodeThreads, 0, stream>>>(a);
    else if (G <= 4) decode_split_kernel<64, 4, true><<<grid, kDecodeThreads, 0, stream>>>(a);
    else decode_split_kernel<64, 8, true><<<grid, kDecodeThreads, 0, stream>>>(a);
    TANDEM_CHECK_CUDA(cudaGetLastError());
    if (D == 128) decode_combine_kernel<128><<<dim3(p.n_q_heads, p.batch), 128, 0, stream>>>(a.ws, p.out, p.n_q_heads, a.n_splits);
    else decode_combine_kernel<64><<<dim3(p.n_q_heads, p.batch), 64, 0, stream>>>(a.ws, p.out, p.n_q_heads, a.n_splits);
    TANDEM_CHECK_CUDA(cudaGetLastError());
}

}  // namespace tandem
