// A Llama-family model loaded from GGUF: weights stay in the file's mmap, in their GGUF type;
// the CPU backend repacks the matrices once for its kernels (cpu_weights()).
//
// Tensors read (llama.cpp names; ne0 is the contiguous dimension = a matrix's input size):
//   token_embd.weight        (n_embd, n_vocab)
//   output_norm.weight       (n_embd)
//   output.weight            (n_embd, n_vocab)     absent: tied to token_embd
//   rope_freqs.weight        (n_rot/2)             optional: Llama 3 frequency factors
//   blk.L.attn_norm.weight   (n_embd)
//   blk.L.attn_q.weight      (n_embd, n_embd)      .bias (n_embd) for qwen2
//   blk.L.attn_k.weight      (n_embd, n_embd_kv)   .bias for qwen2
//   blk.L.attn_v.weight      (n_embd, n_embd_kv)   .bias for qwen2
//   blk.L.attn_output.weight (n_embd, n_embd)
//   blk.L.ffn_norm.weight    (n_embd)
//   blk.L.ffn_gate.weight    (n_embd, n_ff)
//   blk.L.ffn_up.weight      (n_embd, n_ff)
//   blk.L.ffn_down.weight    (n_ff, n_embd)
//
// Architectures: llama (RoPE on adjacent pairs) and qwen2 (NEOX RoPE: pairs i, i + n_rot/2;
// QKV biases). A Model is immutable after load and may be shared by several contexts.
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tandem/gguf.h"
#include "tandem/model_config.h"

namespace tandem {

// A 1-D or 2-D weight inside the mapped file. For a matrix, rows = ne1 (outputs) and
// cols = ne0 (inputs); row r starts at data + r * row_size(type, cols).
struct WeightView {
    const void* data = nullptr;
    GgmlType type = GgmlType::F32;
    int64_t cols = 0;  // ne0
    int64_t rows = 1;  // ne1
    explicit operator bool() const { return data != nullptr; }
};

struct LayerWeights {
    WeightView attn_norm, wq, wk, wv, wo, bq, bk, bv;
    WeightView ffn_norm, w_gate, w_up, w_down;
};

enum class RopeMode { Normal, Neox };

struct CpuWeights;  // tandem/cpu_weights.h
class ThreadPool;

class Model {
public:
    // Opens, validates and maps the model. Throws GgufError (file problems) or ModelError
    // (unsupported architecture, missing or mis-shaped tensor) naming the file and tensor.
    static std::shared_ptr<const Model> load(const std::string& path);

    const ModelConfig& config() const { return config_; }
    const GgufFile& file() const { return file_; }
    const std::string& path() const { return file_.path(); }
    RopeMode rope_mode() const { return rope_mode_; }
    int64_t head_dim() const { return config_.n_embd / config_.n_head; }
    int64_t kv_dim() const { return head_dim() * config_.n_head_kv; }
    // RoPE's inverse frequencies, (n_rot / 2): inv_freq[i] = rope_freq_base^(-2i / n_rot),
    // divided by the Llama 3 factor rope_freq_factors[i] when the file has them and by the
    // linear rope_scaling_factor. The CPU and GPU contexts both rotate with these.
    std::vector<float> rope_inv_freq() const;

    WeightView token_embd, output_norm, output;  // output == token_embd when tied
    std::vector<LayerWeights> layers;
    std::vector<float> rope_freq_factors;        // empty unless the file has rope_freqs

    // The matrices packed for the CPU kernel path in use, made by the first call (on `pool`,
    // which may be nullptr) and kept for the model's life; every call returns that object.
    // Thread-safe. Packing reads every matrix once and then releases its pages of the file
    // mapping (GgufFile::release_pages), so the weights sit in memory once, packed (embedding
    // rows read by the forward pass come back from the file page by page). The GPU backend
    // does not call it. Throws CpuKernelError for a matrix the CPU kernels cannot take.
    const CpuWeights& cpu_weights(ThreadPool* pool) const;

private:
    explicit Model(GgufFile f) : file_(std::move(f)) {}
    GgufFile file_;
    mutable std::once_flag cpu_once_;
    mutable std::shared_ptr<const CpuWeights> cpu_;  // shared_ptr: CpuWeights is incomplete here
    ModelConfig config_;
    RopeMode rope_mode_ = RopeMode::Normal;
};

class ModelError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

}  // namespace tandem
