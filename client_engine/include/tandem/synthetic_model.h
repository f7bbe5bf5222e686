// Random-weight Llama-family GGUF files of any shape and weight type, written with GgufWriter.
// Tests use them to exercise features real tiny files lack (GQA, QKV bias, NEOX RoPE, tied
// embeddings, Llama 3 rope scaling, every weight type); benchmarks use them for 100M-1B shapes.
#pragma once
#include <cstdint>
#include <string>

#include "tandem/quant_types.h"

namespace tandem {

struct SyntheticModelSpec {
    std::string architecture = "llama";  // llama or qwen2 (adds QKV biases)
    int64_t n_layer = 2, n_embd = 64, n_head = 4, n_head_kv = 2, n_ff = 128, n_vocab = 256, n_ctx = 512;
    GgmlType weight_type = GgmlType::F32;  // matrices; norms and biases stay F32
    GgmlType embd_type = GgmlType::F32;    // token_embd (and output when not tied)
    bool tied_embeddings = false;          // no output.weight
    bool llama3_rope = false;              // adds rope_freqs.weight (frequency factors)
    float rope_freq_base = 10000.0f;
    uint32_t seed = 1;
    // A GGUF whose tokenizer.* metadata is copied (e.g. the demo client's 8k BPE vocabulary),
    // so that the file loads as an Engine and tokenizes text; "" writes no tokenizer. n_vocab
    // must be at least its token count; ids past it are padded with Normal tokens
    // "<|reserved_N|>" that no text encodes to (a 1B shape keeps its 128k output matrix).
    std::string tokenizer_from;
};

// The benchmarks' ~100M Llama shape (bench-engine-cpu, write-bench-models): 12 layers, dim 768,
// 12 heads / 4 KV heads, FFN 2048, 32k vocabulary, context 2048, every matrix and the
// embeddings in `type`; tied embeddings as given.
SyntheticModelSpec bench_100m_spec(GgmlType type, bool tied_embeddings);

// Writes the model to `path`. Weights ~ N(0, 1/sqrt(fan_in)) so activations stay O(1).
// Throws GgufError on I/O failure, a shape the weight type cannot hold, or a tokenizer_from
// file without tokenizer.ggml.tokens or with more tokens than n_vocab.
void write_synthetic_model(const SyntheticModelSpec& spec, const std::string& path);

}  // namespace tandem
