// Reads model hyperparameters from GGUF metadata (see the key table in model_config.h).
#include "tandem/model_config.h"

namespace tandem {

ModelConfig ModelConfig::from_gguf(const GgufFile& f) {
    ModelConfig c;
    c.architecture = f.opt_string("general.architecture").value_or("");
    c.name = f.opt_string("general.name").value_or("");
    const std::string a = c.architecture + ".";
    auto get = [&](const std::string& key, int64_t dflt) { return f.opt_int(a + key).value_or(dflt); };
    c.n_layer = get("block_count", -1);
    c.n_embd = get("embedding_length", -1);
    c.n_head = get("attention.head_count", -1);
    c.n_head_kv = get("attention.head_count_kv", c.n_head);
    c.n_ff = get("feed_forward_length", -1);
    c.n_ctx_train = get("context_length", -1);
    c.n_vocab = get("vocab_size", -1);
    if (c.n_vocab < 0)
        if (const GgufValue* toks = f.find("tokenizer.ggml.tokens"); toks && toks->type == GgufType::ARRAY)
            c.n_vocab = (int64_t)toks->n_elems;
    c.n_rot = get("rope.dimension_count", (c.n_embd > 0 && c.n_head > 0) ? c.n_embd / c.n_head : -1);
    c.rope_freq_base = f.opt_float(a + "rope.freq_base").value_or(10000.0);
    c.rope_scaling_type = f.opt_string(a + "rope.scaling.type").value_or("none");
    c.rope_scaling_factor = f.opt_float(a + "rope.scaling.factor").value_or(1.0);
    if (f.find_tensor("rope_freqs.weight")) c.rope_scaling_type = "llama3";
    c.rms_eps = f.opt_float(a + "attention.layer_norm_rms_epsilon").value_or(1e-5);
    c.tokenizer_model = f.opt_string("tokenizer.ggml.model").value_or("");
    c.tokenizer_pre = f.opt_string("tokenizer.ggml.pre").value_or("");
    for (const auto& t : f.tensors()) {
        c.weight_bytes += t.n_bytes;
        c.n_params += t.n_elements;
    }
    return c;
}

void ModelConfig::validate(const std::string& file) const {
    auto need = [&](int64_t v, const char* key) {
        if (v <= 0) throw GgufError(file + ": missing or invalid metadata " + architecture + "." + key);
    };
    if (architecture.empty()) throw GgufError(file + ": missing metadata general.architecture");
    need(n_layer, "block_count");
    need(n_embd, "embedding_length");
    need(n_head, "attention.head_count");
    need(n_head_kv, "attention.head_count_kv");
    need(n_ff, "feed_forward_length");
    need(n_ctx_train, "context_length");
    need(n_vocab, "vocab_size (or tokenizer.ggml.tokens)");
    if (n_embd % n_head != 0) throw GgufError(file + ": embedding_length is not a multiple of head_count");
    if (n_head % n_head_kv != 0) throw GgufError(file + ": head_count is not a multiple of head_count_kv");
    if (n_rot <= 0 || n_rot > n_embd / n_head || n_rot % 2 != 0)
        throw GgufError(file + ": rope.dimension_count " + std::to_string(n_rot) + " is invalid for head size " +
                        std::to_string(n_embd / n_head));
    if (!(rms_eps > 0)) throw GgufError(file + ": layer_norm_rms_epsilon must be positive");
}

}  // namespace tandem
