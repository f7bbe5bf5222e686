// GpuContext: the CUDA twin of InferenceContext (same eval/logits/n_past/truncate contract).
// Built only when the CUDA backend is (library tandem_engine_cuda; TANDEM_HAVE_CUDA_ENGINE is
// defined for its users). The header itself needs no CUDA headers.
//
// On the device (all allocated in the constructor, eval() allocates nothing):
//   weights      every matrix in its GGUF type, regrouped for aligned loads (kernels/cuda/
//                gemv.cuh); F32, F16, Q8_0, Q4_0, Q4_K, Q6_K are native, other types are
//                dequantized to F16 at load. Norms and biases F32.
//   KV cache     per layer K and V (n_head_kv, n_ctx, head_dim) FP16, or with
//                ContextParams.turbo_kv the Turbo cache of tandem/turbo_attention.h (per layer
//                one sequence: INT4/INT2 records + INT8 recent buffer, same bytes as the CPU
//                twin), plus (64, ...) copies of a recent buffer for prefill and the decode
//                workspace (kernels/cuda/turbo_cache.cuh)
//   scratch      (n_batch, ...) activations, (n_batch, n_vocab) logits, the FP16 attention
//                workspace
// Decode (one token): one GEMV per weight matrix with RMSNorm, bias, SwiGLU and the residual
// add fused in, RoPE fused with the KV store, FP16 split-KV attention on tensor cores
// (head_dim 64/128; kernels/cuda/fp16_decode.cu) or a plain kernel, argmax on the device; the
// whole step is a CUDA graph replayed each token.
// Prefill: weights dequantized to tiles + cuBLAS GEMM (BF16 tensor cores for quantized weights,
// FP32 SGEMM for F32/F16 ones: GpuParams::prefill_gemm), or on sm_90 for Q4_0/Q8_0 weights a
// GEMM that dequantizes them in registers (GpuParams::hopper_gemm: per matrix shape, the faster
// of the two as measured when the context is made); attention on sm_90 by the Hopper prefill
// kernel over the cache (GpuParams::hopper_prefill), elsewhere by the same FP16 kernel as
// decode, the chunk's tokens as a causal batch (the plain kernel for other head sizes).
// Turbo: RoPE fused with the INT8 store, a full recent buffer compressed on the device, decode
// by turbo_decode_cuda (the graph reads the lengths from device memory: never re-captured);
// prefill stores and compresses per recent-buffer segment, copies each block's INT8 tokens
// aside, expands the records and those copies once into an FP16 scratch, then attends to it in
// one launch on tensor cores (kernels/cuda/turbo_cache_prefill.cu; GpuParams::turbo_prefill_kernel).
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "tandem/context.h"
#include "tandem/turbo_attention.h"  // turbo_truncate_keep

namespace tandem {

// No device, too little memory, or a CUDA failure. The message names the numbers involved.
class GpuError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct GpuDeviceInfo {
    bool present = false;
    std::string reason;  // why not present ("no CUDA device: ...")
    std::string name;    // e.g. "NVIDIA H100 80GB HBM3"
    uint64_t free_bytes = 0, total_bytes = 0;
};
// Looks at CUDA device 0. Never throws.
GpuDeviceInfo gpu_device_info();

// Device bytes a GpuContext for `m` and `p` allocates (weights, KV cache, scratch) plus a
// fixed reserve for cuBLAS and the graph.
uint64_t gpu_context_bytes_needed(const Model& m, const ContextParams& p);

struct GpuParams {
    bool use_graph = true;          // replay decode steps from a captured CUDA graph
    bool fp16_decode_kernel = true;  // tensor-core split-KV FP16 attention (decode and prefill) when head_dim is 64/128
    // FP16 cache, head_dim 64/128, sm_90 (H100/H200): prefill chunks on the Hopper attention
    // kernel (TMA + wgmma; kernels/cuda/hopper_prefill.cu) instead of the split-KV kernel's
    // causal mode. prefill_attention() says which one runs.
    bool hopper_prefill = true;
    // Turbo cache (turbo_kv): prefill chunks expand the records and each block's INT8 copy into
    // an FP16 scratch (one layer's FP16 cache in size, allocated either way) and attend to it in
    // one launch on tensor cores (kernels/cuda/turbo_cache_prefill.cu); false: one decode launch
    // per 64-token segment of the recent buffer (bench-gpu-decode's baseline).
    bool turbo_prefill_kernel = true;
    // Prefill GEMMs of quantized weights: weights dequantized and activations rounded to BF16
    // (8 significant bits) on tensor cores, or FP32 inputs rounded to TF32 (11 bits) on tensor
    // cores, or FP32 SGEMM; every mode sums in FP32. F32 and F16 weights always use FP32 SGEMM.
    enum class PrefillGemm { bf16, tf32, fp32 };
    PrefillGemm prefill_gemm = PrefillGemm::bf16;
    // BF16 mode, sm_90 (H100/H200): which Q4_0 and Q8_0 layer matrices run on the Hopper GEMM
    // that dequantizes the weight blocks in registers (kernels/cuda/hopper_gemm.cu) instead of
    // BF16 tiles + cuBLAS. Both use the same BF16 weights and FP32 sums (the engine's logits came
    // out bit for bit the same on the test models). `measured`: when the context is made, each
    // distinct matrix shape is timed on each (the Hopper GEMM with 64-, 128- and 256-token
    // tiles) at n_batch tokens, as a CUDA graph of that shape's GEMM in every layer, on this
    // device, and the fastest is kept (about 0.1 s for a 1B model). On the H100 the Hopper GEMM
    // wins only where its tiles fill the GPU by themselves (bench/results/gpu-prefill-h100.md).
    // `always`: every such matrix on it, with the kernel's own tile choice. The output matrix
    // (all_logits prefill) runs tiles + cuBLAS unless `always`. prefill_gemm_kernel() says what
    // runs, prefill_gemm_choices() what was measured.
    enum class HopperGemm { never, always, measured };
    HopperGemm hopper_gemm = HopperGemm::measured;
};

class GpuContext : public ComputeContext {
public:
    // Uploads the model to CUDA device 0. Throws GpuError when there is no device or when
    // gpu_context_bytes_needed exceeds the free memory ("needs X MiB, Y MiB free"),
    // std::invalid_argument for bad params (Turbo: block_tokens must be 64, v_group >= 32, at
    // most 8 query heads per KV head), TurboError for a bad TurboConfig, ModelError for a
    // weight type that cannot be read.
    GpuContext(std::shared_ptr<const Model> model, const ContextParams& params, const GpuParams& gp = {});
    ~GpuContext() override;
    GpuContext(const GpuContext&) = delete;
    GpuContext& operator=(const GpuContext&) = delete;

    void eval(const int32_t* tokens, int64_t n, bool all_logits = false) override;
    // Copies the logits from the device on first use after an eval.
    const float* logits() const override;
    // Computed on the device by eval; only the id is copied back.
    int32_t argmax() const override;
    bool prefers_argmax() const override { return true; }
    int64_t n_past() const override { return n_past_; }
    int64_t n_ctx() const override { return n_ctx_; }
    int64_t n_batch() const override { return n_batch_; }
    // Turbo cache: keeps turbo_truncate_keep(n, n_past(), 64) positions.
    int64_t truncate(int64_t n) override;
    const Model& model() const override { return *model_; }
    const char* backend_name() const override { return "cuda"; }

    const std::string& device_name() const;
    // The attention kernel prefill chunks (n > 1) run on: "hopper" (sm_90 TMA + wgmma), "fp16
    // split-KV causal", "plain" (other head sizes), "turbo cache prefill" or "turbo segments"
    // (Turbo cache, GpuParams::turbo_prefill_kernel on or off).
    const char* prefill_attention() const;
    // The GEMM prefill chunks run for the quantized matrices: "hopper fused" (every one on the
    // Hopper dequantizing GEMM), "hopper fused + cublas bf16" (some on dequantized tiles +
    // cuBLAS: other weight types, or slower shapes under HopperGemm::measured), "cublas bf16",
    // "cublas tf32" or "cublas fp32" (GpuParams::prefill_gemm). F32 and F16 matrices always run
    // FP32 SGEMM.
    const char* prefill_gemm_kernel() const;
    // HopperGemm::measured: one line per distinct Q4_0/Q8_0 layer matrix shape, "rows x cols
    // type, N matrices: cublas (t ms) hopper 64 (t ms) ..." in the order measured, fastest (the
    // one kept) first, as timed when the context was made; "not measured (reason): ..." when the
    // timing failed (every matrix then runs tiles + cuBLAS); empty for the other modes.
    const std::string& prefill_gemm_choices() const;
    // Bytes of weights one decode step reads (every layer matrix and the output matrix).
    uint64_t weight_bytes_per_token() const;
    // Device bytes allocated by this context.
    uint64_t device_bytes() const;
    // Device bytes of the KV cache: FP16 K/V, or Turbo's records, recent buffers, prefill
    // copies and decode workspace.
    uint64_t kv_bytes() const;
    // Runs one decode step of `token` (appended like eval(&token, 1), without the graph) with
    // an event after every stage, and returns the device milliseconds per stage summed over
    // the layers, in order (embed, qkv, rope+kv, attention, wo, gate/up, down, output,
    // argmax). For benchmarks; throws like eval().
    std::vector<std::pair<std::string, double>> profile_decode_step(int32_t token);
    // The same for one pass of n tokens (1 <= n <= n_batch, appended like eval(tokens, n)).
    // A prefill pass (n > 1) reports embed, norm, to_bf16 (activations rounded for the
    // tensor cores), dequant (weight rows), gemm (cuBLAS or hopper_gemm), qkv (bias adds), rope+kv,
    // attention, swiglu, output, argmax.
    std::vector<std::pair<std::string, double>> profile_eval(const int32_t* tokens, int64_t n);

private:
    struct Impl;
    std::shared_ptr<const Model> model_;
    std::unique_ptr<Impl> impl_;
    int64_t n_ctx_ = 0, n_batch_ = 0, n_past_ = 0;
};

}  // namespace tandem
