// From train.py's output to a GGUF the engine loads (bench/demo_pair): the f32 weights and
// their manifest in, a Llama GGUF with the demo client's tokenizer out, written by the
// project's GgufWriter (Q8_0 by the reference quantizer; norms stay F32).
//
// train.py's output directory:
//   result.json        "shape" {dim, n_layers, n_heads, n_kv_heads, ffn}, "n_vocab", "rope_base",
//                      "norm_eps", "tensors" [{name, shape}] (GGUF names, PyTorch shapes: the
//                      GGUF ne is the shape reversed), "parts" [file names], "check"
//                      {tokens, nll_mean}
//   weights.f32.NNN    the tensors' f32 values in "tensors" order, split across "parts"
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tandem/gguf.h"

namespace tandem::demo {

struct TrainedWeights {
    nlohmann::json result;   // result.json
    std::vector<float> values;  // every tensor, in result["tensors"] order
};

// Reads dir/result.json and its parts. Throws std::runtime_error naming the file on a missing
// or unreadable file, a malformed manifest or a size that does not match the tensors' shapes.
TrainedWeights read_trained_weights(const std::string& dir);

// Writes the GGUF: llama.* keys from the manifest (llama.context_length copied from
// tokenizer_src), every tokenizer.* key of tokenizer_src, general.name/description, and the
// tensors (2-D ones as `type`, F32 or Q8_0; 1-D ones F32). Throws std::runtime_error when the
// vocabulary sizes disagree or a tensor does not fit `type`'s blocks; GgufError on I/O failure.
void write_client_gguf(const TrainedWeights& w, const GgufFile& tokenizer_src, GgmlType type, const std::string& name,
                       const std::string& description, const std::string& path);

// The engine's mean NLL (nats per token) of tokens[1..] given the tokens before each, the model
// at `path` loaded on the CPU with a context of tokens.size(). Throws on a load failure.
double engine_mean_nll(const std::string& path, const std::vector<int32_t>& tokens);

}  // namespace tandem::demo
