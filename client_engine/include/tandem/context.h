// An inference context: a model plus its KV cache, scratch buffers and thread pool.
// eval() runs the forward pass for a batch of tokens appended after what the cache holds.
// All memory is allocated in the constructor; eval() allocates nothing.
// A context is used by one thread at a time (the engine serializes calls).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "tandem/model.h"
#include "tandem/quant_types.h"
#include "tandem/turbo_attention.h"

namespace tandem {

class ThreadPool;

struct ContextParams {
    int64_t n_ctx = 0;       // KV capacity in tokens; 0: min(n_ctx_train, 4096)
    // Tokens per forward pass during prefill (longer inputs are split); 0: the backend's choice,
    // 256 on the CPU and 512 on the GPU (where every pass dequantizes each weight matrix again).
    int64_t n_batch = 0;
    int n_threads = 0;       // 0: all hardware threads
    GgmlType kv_type = GgmlType::F16;  // F16 or F32 (ignored when turbo_kv)
    // TurboAttention KV cache (INT8 recent buffer, INT4/INT2 blocks, SAS softmax; the CPU twin
    // of the CUDA format). Needs head_dim 64 or 128. turbo_head_bits: per layer, 4 or 2 per KV
    // head (calibrate_turbo_head_bits); empty = every head at 4 bits.
    bool turbo_kv = false;
    TurboConfig turbo;
    std::vector<std::vector<uint8_t>> turbo_head_bits;
};

// What the engine needs from a backend: the CPU InferenceContext below and the CUDA
// GpuContext (tandem/gpu_context.h) implement it with the same contract.
class ComputeContext {
public:
    virtual ~ComputeContext() = default;
    // Evaluates tokens[0..n) at positions n_past() .. n_past()+n-1 and appends them to the KV
    // cache. Afterwards logits() holds n_vocab floats for the last token, or n x n_vocab when
    // all_logits. Throws ContextFull (cache unchanged) when n_past() + n > n_ctx(), and
    // std::invalid_argument for token ids outside the vocabulary.
    virtual void eval(const int32_t* tokens, int64_t n, bool all_logits = false) = 0;
    // eval() of tokens whose logits nobody reads (a prompt's passes before its last): the context
    // may skip the output layer, and logits() is then unspecified until the next eval(). By
    // default, eval().
    virtual void eval_no_logits(const int32_t* tokens, int64_t n) { eval(tokens, n); }
    // The logits of the last eval (owned by the context, valid until the next eval).
    virtual const float* logits() const = 0;
    // The lowest id of the largest logit of the last evaluated token (the last row after an
    // all_logits eval), for greedy decoding. The GPU
    // context computes it on the device and copies back only the id.
    virtual int32_t argmax() const;
    // True when argmax() is cheaper than reading logits() (the GPU: one id instead of n_vocab
    // floats over PCIe); the engine then uses it for plain greedy decoding.
    virtual bool prefers_argmax() const { return false; }
    virtual int64_t n_past() const = 0;
    virtual int64_t n_ctx() const = 0;
    // Tokens one forward pass takes: eval() splits a longer run into passes of this many.
    virtual int64_t n_batch() const = 0;
    // Forgets every cached position >= n (prefix reuse keeps the first n tokens).
    virtual int64_t truncate(int64_t n) = 0;  // returns the positions kept
    virtual const Model& model() const = 0;
    // "cpu" or "cuda" (static string).
    virtual const char* backend_name() const = 0;

protected:
    // The checks every eval() starts with: n >= 1 (std::invalid_argument), the tokens fit the
    // context (ContextFull, nothing changed), every id inside the vocabulary (invalid_argument).
    void check_eval_args(const int32_t* tokens, int64_t n) const;
    int64_t logit_rows_ = 1;  // rows logits() holds after the last eval (n when all_logits)
};

class InferenceContext : public ComputeContext {
public:
    InferenceContext(std::shared_ptr<const Model> model, const ContextParams& params);
    ~InferenceContext() override;

    // Evaluates tokens[0..n) at positions n_past() .. n_past()+n-1 and appends them to the KV
    // cache. Afterwards logits() holds n_vocab floats for the last token, or n x n_vocab when
    // all_logits. Throws ContextFull (cache unchanged) when n_past() + n > n_ctx(), and
    // std::invalid_argument for token ids outside the vocabulary.
    void eval(const int32_t* tokens, int64_t n, bool all_logits = false) override;
    // Skips the output layer (norm and lm_head) of every pass.
    void eval_no_logits(const int32_t* tokens, int64_t n) override;
    const float* logits() const override { return logits_.data(); }

    int64_t n_past() const override { return n_past_; }
    int64_t n_ctx() const override { return n_ctx_; }
    int64_t n_batch() const override { return n_batch_; }
    // Forgets every cached position >= n (prefix reuse keeps the first n tokens). Returns how
    // many positions are kept: n (clamped to n_past()); with the Turbo cache, whose compressed
    // blocks cannot be cut, turbo_truncate_keep(n, n_past(), block_tokens) (as the GPU).
    int64_t truncate(int64_t n) override;
    // K and V of cached position pos of `layer` as floats, (n_head_kv * head_dim) each.
    // F16/F32 caches only (throws std::logic_error for the Turbo cache).
    void read_kv(int64_t layer, int64_t pos, float* k, float* v) const;
    // KV cache bytes per token (all layers; Turbo: compressed records, scales and zero points).
    double kv_bytes_per_token() const;

    const Model& model() const override { return *model_; }
    const char* backend_name() const override { return "cpu"; }
    ThreadPool& pool() { return *pool_; }

private:
    void forward_batch(const int32_t* tokens, int64_t n, bool all_logits, float* logits_out);

    std::shared_ptr<const Model> model_;
    std::unique_ptr<ThreadPool> pool_;
    const CpuWeights* weights_ = nullptr;  // model_->cpu_weights()
    int64_t n_ctx_ = 0, n_batch_ = 0, n_past_ = 0;
    GgmlType kv_type_;
    // KV cache: per layer (n_ctx, n_head_kv, head_dim) in kv_type_, for K and V.
    std::vector<std::vector<uint8_t>> k_cache_, v_cache_;
    std::vector<std::unique_ptr<TurboKvCache>> turbo_;  // per layer, when turbo_kv
    ContextParams params_;
    // Scratch, sized for n_batch tokens:
    std::vector<float> x_;      // (n_batch, n_embd) residual stream
    std::vector<float> xn_;     // (n_batch, n_embd) normed input
    std::vector<float> q_;      // (n_batch, n_embd)
    std::vector<float> k_, v_;  // (n_batch, kv_dim)
    std::vector<float> attn_;   // (n_batch, n_embd) attention output
    std::vector<float> gate_, up_;  // (n_batch, n_ff)
    std::vector<float> scores_;     // (n_threads, n_ctx) per-worker softmax scratch
    std::vector<float> kv_row_;     // (n_threads, 2 * head_dim) per-worker K/V row conversion
    std::vector<float> logits_;     // (n or 1, n_vocab)
    std::vector<float> rope_inv_freq_;  // (n_rot / 2)
    std::vector<float> rope_cs_;        // (n_batch, n_rot) cos, sin of each token's rotation angles
};

// Per layer, the bits (4 or 2) of each KV head: the frac_2bit lowest-priority heads of each
// layer at 2 bits, priority = range x std of the head's K and V (turbo_head_priority) over
// `tokens` evaluated with an FP32 cache. `tokens` should be ordinary text for the model.
// scores (optional): the priorities, (n_layer, n_head_kv). tandem/turbo_heads.h stores both.
std::vector<std::vector<uint8_t>> calibrate_turbo_head_bits(std::shared_ptr<const Model> model,
                                                            const std::vector<int32_t>& tokens, float frac_2bit,
                                                            std::vector<std::vector<double>>* scores = nullptr);

class ContextFull : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

}  // namespace tandem
