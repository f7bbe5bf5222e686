// Writes random-weight Llama/Qwen2 GGUF files (see synthetic_model.h).
#include "tandem/synthetic_model.h"

#include <cmath>
#include <random>
#include <vector>

#include "tandem/gguf.h"

namespace tandem {

// Copies every tokenizer.* key of `from` into `w`, padding the per-token arrays to n_vocab.
static void copy_tokenizer(const std::string& from, int64_t n_vocab, GgufWriter& w) {
    const GgufFile src = GgufFile::open(from);
    const GgufValue* tokens = src.find("tokenizer.ggml.tokens");
    if (!tokens || tokens->type != GgufType::ARRAY || tokens->elem_type != GgufType::STRING)
        throw GgufError(from + ": no tokenizer.ggml.tokens to copy into a synthetic model");
    const int64_t n_src = (int64_t)tokens->strs.size();
    if (n_src > n_vocab)
        throw GgufError(from + ": its tokenizer has " + std::to_string(n_src) + " tokens, more than the synthetic model's n_vocab " +
                        std::to_string(n_vocab));
    for (const GgufKv& kv : src.metadata()) {
        if (kv.key.rfind("tokenizer.", 0) != 0) continue;
        GgufValue v = kv.value;
        if (v.type == GgufType::ARRAY && (int64_t)v.n_elems == n_src && n_src < n_vocab) {
            if (kv.key == "tokenizer.ggml.tokens") {
                for (int64_t i = n_src; i < n_vocab; i++) v.strs.push_back("<|reserved_" + std::to_string(i - n_src) + "|>");
            } else if (kv.key == "tokenizer.ggml.token_type" && v.elem_type == GgufType::INT32) {
                const int32_t normal = 1;
                for (int64_t i = n_src; i < n_vocab; i++)
                    v.elems.insert(v.elems.end(), (const uint8_t*)&normal, (const uint8_t*)&normal + 4);
            } else if (kv.key == "tokenizer.ggml.scores" && v.elem_type == GgufType::FLOAT32) {
                v.elems.resize((size_t)n_vocab * 4, 0);  // 0.0f
            } else {
                throw GgufError(from + ": cannot pad per-token array " + kv.key + " to n_vocab " + std::to_string(n_vocab));
            }
            v.n_elems = (uint64_t)n_vocab;
        }
        w.set(kv.key, std::move(v));
    }
}

SyntheticModelSpec bench_100m_spec(GgmlType type, bool tied_embeddings) {
    SyntheticModelSpec s;
    s.n_layer = 12;
    s.n_embd = 768;
    s.n_head = 12;
    s.n_head_kv = 4;
    s.n_ff = 2048;
    s.n_vocab = 32000;
    s.n_ctx = 2048;
    s.weight_type = type;
    s.embd_type = type;
    s.tied_embeddings = tied_embeddings;
    return s;
}

void write_synthetic_model(const SyntheticModelSpec& s, const std::string& path) {
    std::mt19937 rng(s.seed);
    GgufWriter w;
    const std::string a = s.architecture;
    w.set("general.architecture", GgufValue::of_string(a));
    w.set("general.name", GgufValue::of_string("synthetic-" + a));
    w.set(a + ".block_count", GgufValue::of_u32((uint32_t)s.n_layer));
    w.set(a + ".embedding_length", GgufValue::of_u32((uint32_t)s.n_embd));
    w.set(a + ".attention.head_count", GgufValue::of_u32((uint32_t)s.n_head));
    w.set(a + ".attention.head_count_kv", GgufValue::of_u32((uint32_t)s.n_head_kv));
    w.set(a + ".feed_forward_length", GgufValue::of_u32((uint32_t)s.n_ff));
    w.set(a + ".context_length", GgufValue::of_u32((uint32_t)s.n_ctx));
    w.set(a + ".vocab_size", GgufValue::of_u32((uint32_t)s.n_vocab));
    w.set(a + ".rope.freq_base", GgufValue::of_f32(s.rope_freq_base));
    w.set(a + ".attention.layer_norm_rms_epsilon", GgufValue::of_f32(1e-5f));
    if (!s.tokenizer_from.empty()) copy_tokenizer(s.tokenizer_from, s.n_vocab, w);

    auto matrix = [&](const std::string& name, GgmlType type, int64_t cols, int64_t rows) {
        std::normal_distribution<float> nd(0.0f, 1.0f / std::sqrt((float)cols));
        std::vector<float> v((size_t)(cols * rows));
        for (auto& x : v) x = nd(rng);
        w.add_tensor_from_f32(name, type, {cols, rows}, v.data());
    };
    auto vec = [&](const std::string& name, int64_t n, float mean, float spread) {
        std::uniform_real_distribution<float> ud(mean - spread, mean + spread);
        std::vector<float> v((size_t)n);
        for (auto& x : v) x = ud(rng);
        w.add_tensor_from_f32(name, GgmlType::F32, {n}, v.data());
    };

    const int64_t d = s.n_embd, hd = d / s.n_head, kvd = hd * s.n_head_kv;
    {
        // embeddings with unit-ish rows so the first rmsnorm sees O(1) values
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<float> v((size_t)(d * s.n_vocab));
        for (auto& x : v) x = nd(rng);
        w.add_tensor_from_f32("token_embd.weight", s.embd_type, {d, s.n_vocab}, v.data());
    }
    vec("output_norm.weight", d, 1.0f, 0.1f);
    if (!s.tied_embeddings) matrix("output.weight", s.embd_type, d, s.n_vocab);
    if (s.llama3_rope) vec("rope_freqs.weight", hd / 2, 4.0f, 3.0f);  // factors in [1, 7]
    for (int64_t l = 0; l < s.n_layer; l++) {
        const std::string p = "blk." + std::to_string(l) + ".";
        vec(p + "attn_norm.weight", d, 1.0f, 0.1f);
        matrix(p + "attn_q.weight", s.weight_type, d, d);
        matrix(p + "attn_k.weight", s.weight_type, d, kvd);
        matrix(p + "attn_v.weight", s.weight_type, d, kvd);
        if (a == "qwen2") {
            vec(p + "attn_q.bias", d, 0.0f, 0.5f);
            vec(p + "attn_k.bias", kvd, 0.0f, 0.5f);
            vec(p + "attn_v.bias", kvd, 0.0f, 0.5f);
        }
        matrix(p + "attn_output.weight", s.weight_type, d, d);
        vec(p + "ffn_norm.weight", d, 1.0f, 0.1f);
        matrix(p + "ffn_gate.weight", s.weight_type, d, s.n_ff);
        matrix(p + "ffn_up.weight", s.weight_type, d, s.n_ff);
        matrix(p + "ffn_down.weight", s.weight_type, s.n_ff, d);
    }
    w.write(path);
}

}  // namespace tandem
