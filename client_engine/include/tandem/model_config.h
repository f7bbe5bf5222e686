// Model hyperparameters read from GGUF metadata.
//
// GGUF keys read (ARCH = general.architecture):
//   key                                        field          required by the engine
//   general.architecture                       architecture   yes (llama, qwen2)
//   general.name                               name           no
//   ARCH.block_count                           n_layer        yes
//   ARCH.embedding_length                      n_embd         yes
//   ARCH.attention.head_count                  n_head         yes
//   ARCH.attention.head_count_kv               n_head_kv      no (= n_head)
//   ARCH.feed_forward_length                   n_ff           yes
//   ARCH.context_length                        n_ctx_train    yes
//   ARCH.vocab_size | len(tokenizer.ggml.tokens) n_vocab      yes
//   ARCH.rope.dimension_count                  n_rot          no (= n_embd / n_head)
//   ARCH.rope.freq_base                        rope_freq_base no (10000)
//   ARCH.rope.scaling.type / .factor           rope_scaling   no
//   ARCH.attention.layer_norm_rms_epsilon      rms_eps        no (1e-5)
//   tokenizer.ggml.model / .pre                tokenizer      no
#pragma once
#include <cstdint>
#include <string>

#include "tandem/gguf.h"

namespace tandem {

struct ModelConfig {
    std::string architecture;
    std::string name;
    int64_t n_layer = -1, n_embd = -1, n_head = -1, n_head_kv = -1, n_ff = -1;
    int64_t n_ctx_train = -1, n_vocab = -1, n_rot = -1;
    double rope_freq_base = 10000.0;
    std::string rope_scaling_type = "none";  // none, linear, yarn, llama3 (rope_freqs tensor)
    double rope_scaling_factor = 1.0;
    double rms_eps = 1e-5;
    std::string tokenizer_model, tokenizer_pre;
    uint64_t weight_bytes = 0;  // sum of all tensor sizes
    uint64_t n_params = 0;      // sum of all tensor element counts

    // Reads what is present; missing numeric fields stay -1. Throws GgufError on keys of the
    // wrong type.
    static ModelConfig from_gguf(const GgufFile& f);
    // Throws GgufError naming the first missing or inconsistent field (engine loading).
    void validate(const std::string& file) const;
};

}  // namespace tandem
