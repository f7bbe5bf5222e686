// Loads a Llama-family model: binds every tensor the forward pass needs and checks shapes.
#include "tandem/model.h"

#include <algorithm>
#include <cmath>

namespace tandem {

static bool computable(GgmlType t) { return type_traits(t).to_float != nullptr; }

// Finds `name` and checks its shape is exactly (cols[, rows]).
static WeightView bind(const GgufFile& f, const std::string& name, int64_t cols, int64_t rows, bool required) {
    const GgufTensorInfo* t = f.find_tensor(name);
    if (!t) {
        if (required) throw ModelError(f.path() + ": missing tensor '" + name + "'");
        return {};
    }
    const int64_t got_rows = t->ne.size() > 1 ? t->ne[1] : 1;
    if (t->ne.size() > 2 || t->ne[0] != cols || got_rows != rows)
        throw ModelError(f.path() + ": tensor '" + name + "' has shape " + std::to_string(t->ne[0]) + " x " +
                         std::to_string(got_rows) + ", expected " + std::to_string(cols) + " x " + std::to_string(rows));
    if (!computable(t->type))
        throw ModelError(f.path() + ": tensor '" + name + "' has type " + type_traits(t->type).name +
                         ", which Tandem cannot compute with (supported: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K)");
    // Vectors (norms, biases, rope factors) are read as plain floats by the forward pass.
    if (rows == 1 && t->type != GgmlType::F32)
        throw ModelError(f.path() + ": vector tensor '" + name + "' must be F32, found " + type_traits(t->type).name);
    WeightView w;
    w.data = f.tensor_data(*t);
    w.type = t->type;
    w.cols = cols;
    w.rows = rows;
    return w;
}

std::shared_ptr<const Model> Model::load(const std::string& path) {
    std::shared_ptr<Model> m(new Model(GgufFile::open(path)));
    const GgufFile& f = m->file_;
    m->config_ = ModelConfig::from_gguf(f);
    const ModelConfig& c = m->config_;
    if (c.architecture == "llama") m->rope_mode_ = RopeMode::Normal;
    else if (c.architecture == "qwen2") m->rope_mode_ = RopeMode::Neox;
    else throw ModelError(path + ": unsupported architecture '" + c.architecture + "' (supported: llama, qwen2)");
    c.validate(path);
    if (c.n_layer > 1024 || c.n_embd > 65536 || c.n_ff > 1 << 20 || c.n_vocab > 1 << 22)
        throw ModelError(path + ": hyperparameters out of range");

    const int64_t d = c.n_embd, kvd = m->kv_dim(), ff = c.n_ff, nv = c.n_vocab;
    m->token_embd = bind(f, "token_embd.weight", d, nv, true);
    m->output_norm = bind(f, "output_norm.weight", d, 1, true);
    m->output = bind(f, "output.weight", d, nv, false);
    if (!m->output) m->output = m->token_embd;
    const bool qwen = c.architecture == "qwen2";
    for (int64_t l = 0; l < c.n_layer; l++) {
        const std::string p = "blk." + std::to_string(l) + ".";
        LayerWeights L;
        L.attn_norm = bind(f, p + "attn_norm.weight", d, 1, true);
        L.wq = bind(f, p + "attn_q.weight", d, d, true);
        L.wk = bind(f, p + "attn_k.weight", d, kvd, true);
        L.wv = bind(f, p + "attn_v.weight", d, kvd, true);
        L.wo = bind(f, p + "attn_output.weight", d, d, true);
        L.bq = bind(f, p + "attn_q.bias", d, 1, qwen);
        L.bk = bind(f, p + "attn_k.bias", kvd, 1, qwen);
        L.bv = bind(f, p + "attn_v.bias", kvd, 1, qwen);
        L.ffn_norm = bind(f, p + "ffn_norm.weight", d, 1, true);
        L.w_gate = bind(f, p + "ffn_gate.weight", d, ff, true);
        L.w_up = bind(f, p + "ffn_up.weight", d, ff, true);
        L.w_down = bind(f, p + "ffn_down.weight", ff, d, true);
        m->layers.push_back(L);
    }
    if (WeightView rf = bind(f, "rope_freqs.weight", c.n_rot / 2, 1, false)) {
        const float* p = (const float*)rf.data;
        m->rope_freq_factors.assign(p, p + c.n_rot / 2);
    }
    return m;
}

std::vector<float> Model::rope_inv_freq() const {
    const ModelConfig& c = config_;
    const int64_t half = c.n_rot / 2;
    std::vector<float> inv((size_t)std::max<int64_t>(half, 0));
    const double linear = c.rope_scaling_type == "linear" && c.rope_scaling_factor > 0 ? c.rope_scaling_factor : 1.0;
    for (int64_t i = 0; i < half; i++) {
        double f = std::pow(c.rope_freq_base, -2.0 * (double)i / (double)c.n_rot) / linear;
        if (!rope_freq_factors.empty()) f /= rope_freq_factors[(size_t)i];
        inv[(size_t)i] = (float)f;
    }
    return inv;
}

}  // namespace tandem
