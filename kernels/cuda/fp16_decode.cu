// FP16 decode launcher: the same split-KV kernel over FP16 tiles, exact exp2 softmax.
#include "fp16_decode.cuh"

#include "decode_common.cuh"

namespace tandem {

static int sm_count() {
    int dev = 0, n = 0;
    TANDEM_CHECK_CUDA(cudaGetDevice(&dev));
    TANDEM_CHECK_CUDA(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
}

size_t fp16_decode_workspace_floats(const Fp16DecodeParams& p) {
    const int s = decode_pick_splits(p.n_splits, p.batch, p.n_kv_heads, p.max_len, sm_count());
    return (size_t)p.batch * p.n_q_heads * s * (p.head_dim + 2);
}

void fp16_decode_cuda(const Fp16DecodeParams& p, cudaStream_t stream) {
    if (!p.q || !p.out || !p.k || !p.v || !p.seq_len || !p.workspace)
        throw TurboError("fp16_decode: a pointer is null");
    if (p.head_dim != 64 && p.head_dim != 128) throw TurboError("fp16_decode: head_dim must be 64 or 128");
    if (p.n_kv_heads < 1 || p.n_q_heads % p.n_kv_heads != 0 || p.n_q_heads / p.n_kv_heads > 8)
        throw TurboError("fp16_decode: n_q_heads must be 1..8 times n_kv_heads");
    if (p.batch < 1 || p.max_len < 1) throw TurboError("fp16_decode: batch and max_len must be >= 1");
    DecodeArgs a;
    a.q = p.q;
    a.ws = p.workspace;
    a.seq_len = p.seq_len;
    a.k16 = (const __half*)p.k;
    a.v16 = (const __half*)p.v;
    a.n_q_heads = p.n_q_heads;
    a.n_kv_heads = p.n_kv_heads;
    a.max_len = p.max_len;
    a.n_splits = decode_pick_splits(p.n_splits, p.batch, p.n_kv_heads, p.max_len, sm_count());
    const int G = p.n_q_heads / p.n_kv_heads, D = p.head_dim;
    const dim3 grid(a.n_splits, a.n_kv_heads, p.batch);
    if (D == 128 && G <= 4) fp16_split_kernel<128, 4><<<grid, kDecodeThreads, 0, stream>>>(a);
    else if (D == 128) fp16_split_kernel<128, 8><<<grid, kDecodeThreads, 0, stream>>>(a);
    else if (G <= 4) fp16_split_kernel<64, 4><<<grid, kDecodeThreads, 0, stream>>>(a);
    else fp16_split_kernel<64, 8><<<grid, kDecodeThreads, 0, stream>>>(a);
    TANDEM_CHECK_CUDA(cudaGetLastError());
    launch_decode_combine(a.ws, p.out, p.batch, p.n_q_heads, a.n_splits, D, stream);
}

}  // namespace tandem
