// train.py's weights -> the demo client's GGUF (see client_export.h).
#include "client_export.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <stdexcept>

#include "tandem/engine.h"

namespace tandem::demo {

static nlohmann::json read_json(const std::string& path) {
    std::ifstream f(path);
    if (!f) throw std::runtime_error(path + ": cannot open");
    try {
        return nlohmann::json::parse(f);
    } catch (const std::exception& e) {
        throw std::runtime_error(path + ": not JSON: " + e.what());
    }
}

static uint64_t numel(const nlohmann::json& shape) {
    uint64_t n = 1;
    for (const auto& d : shape) n *= d.get<uint64_t>();
    return n;
}

TrainedWeights read_trained_weights(const std::string& dir) {
    TrainedWeights w;
    const std::string manifest = dir + "/result.json";
    w.result = read_json(manifest);
    uint64_t want = 0;
    try {
        for (const auto& t : w.result.at("tensors")) {
            t.at("name").get<std::string>();
            want += numel(t.at("shape"));
        }
        w.result.at("parts").get<std::vector<std::string>>();
        for (const char* k : {"dim", "n_layers", "n_heads", "n_kv_heads", "ffn"}) w.result.at("shape").at(k).get<int>();
        for (const char* k : {"n_vocab"}) w.result.at(k).get<int>();
        for (const char* k : {"rope_base", "norm_eps"}) w.result.at(k).get<double>();
    } catch (const nlohmann::json::exception& e) {
        throw std::runtime_error(manifest + ": " + e.what());
    }
    w.values.reserve(want);
    for (const std::string& part : w.result["parts"].get<std::vector<std::string>>()) {
        const std::string path = dir + "/" + part;
        std::ifstream f(path, std::ios::binary | std::ios::ate);
        if (!f) throw std::runtime_error(path + ": cannot open");
        const std::streamsize bytes = f.tellg();
        if (bytes % 4) throw std::runtime_error(path + ": size " + std::to_string(bytes) + " is not a whole number of floats");
        const size_t at = w.values.size();
        if (at + (uint64_t)bytes / 4 > want)
            throw std::runtime_error(path + ": more values than the manifest's tensors hold (" + std::to_string(want) + ")");
        w.values.resize(at + (size_t)bytes / 4);
        f.seekg(0);
        if (!f.read(reinterpret_cast<char*>(w.values.data() + at), bytes)) throw std::runtime_error(path + ": read failed");
    }
    if (w.values.size() != want)
        throw std::runtime_error(dir + ": the parts hold " + std::to_string(w.values.size()) + " values, the tensors " +
                                 std::to_string(want));
    return w;
}

void write_client_gguf(const TrainedWeights& w, const GgufFile& src, GgmlType type, const std::string& name,
                       const std::string& description, const std::string& path) {
    if (type != GgmlType::F32 && type != GgmlType::Q8_0) throw std::runtime_error("write_client_gguf: type must be F32 or Q8_0");
    const nlohmann::json& r = w.result;
    const nlohmann::json& s = r["shape"];
    const int64_t n_vocab = r["n_vocab"].get<int64_t>();
    const GgufValue* tokens = src.find("tokenizer.ggml.tokens");
    if (!tokens || tokens->n_elems != (uint64_t)n_vocab)
        throw std::runtime_error(src.path() + ": its tokenizer has " + std::to_string(tokens ? tokens->n_elems : 0) +
                                 " tokens, the weights " + std::to_string(n_vocab));
    const uint32_t dim = s["dim"].get<uint32_t>(), heads = s["n_heads"].get<uint32_t>();
    GgufWriter g;
    g.set("general.architecture", GgufValue::of_string("llama"));
    g.set("general.name", GgufValue::of_string(name));
    g.set("general.description", GgufValue::of_string(description));
    g.set("llama.context_length", GgufValue::of_u32((uint32_t)src.get_int("llama.context_length")));
    g.set("llama.embedding_length", GgufValue::of_u32(dim));
    g.set("llama.block_count", GgufValue::of_u32(s["n_layers"].get<uint32_t>()));
    g.set("llama.feed_forward_length", GgufValue::of_u32(s["ffn"].get<uint32_t>()));
    g.set("llama.rope.dimension_count", GgufValue::of_u32(dim / heads));
    g.set("llama.attention.head_count", GgufValue::of_u32(heads));
    g.set("llama.attention.head_count_kv", GgufValue::of_u32(s["n_kv_heads"].get<uint32_t>()));
    g.set("llama.attention.layer_norm_rms_epsilon", GgufValue::of_f32(r["norm_eps"].get<float>()));
    g.set("llama.rope.freq_base", GgufValue::of_f32(r["rope_base"].get<float>()));
    g.set("general.file_type", GgufValue::of_u32(type == GgmlType::Q8_0 ? 7 : 0));  // llama.cpp's MOSTLY_Q8_0 / ALL_F32
    for (const GgufKv& kv : src.metadata())
        if (kv.key.rfind("tokenizer.", 0) == 0) g.set(kv.key, kv.value);
    size_t at = 0;
    for (const auto& t : r["tensors"]) {
        std::vector<int64_t> ne = t["shape"].get<std::vector<int64_t>>();
        std::reverse(ne.begin(), ne.end());
        const GgmlType tt = ne.size() >= 2 ? type : GgmlType::F32;
        if (tt == GgmlType::Q8_0 && ne[0] % QK8_0 != 0)
            throw std::runtime_error(t["name"].get<std::string>() + ": rows of " + std::to_string(ne[0]) +
                                     " do not split into Q8_0 blocks of 32");
        g.add_tensor_from_f32(t["name"].get<std::string>(), tt, ne, w.values.data() + at);
        at += numel(t["shape"]);
    }
    g.write(path);
}

double engine_mean_nll(const std::string& path, const std::vector<int32_t>& tokens) {
    EngineParams ep;
    ep.context.n_ctx = (int64_t)tokens.size();
    ep.context.kv_type = GgmlType::F32;
    auto e = Engine::load(path, ep);
    const int64_t n_vocab = e->model().config().n_vocab;
    double nll = 0;
    std::vector<int32_t> seq{tokens.at(0)};
    for (size_t i = 1; i < tokens.size(); i++) {
        e->prefill(seq);  // one new token each time: the rest is the KV cache
        const float* lg = e->last_logits();
        const float mx = *std::max_element(lg, lg + n_vocab);
        double z = 0;
        for (int64_t v = 0; v < n_vocab; v++) z += std::exp((double)(lg[v] - mx));
        nll += std::log(z) + mx - lg[tokens[i]];
        seq.push_back(tokens[i]);
    }
    return tokens.size() > 1 ? nll / (double)(tokens.size() - 1) : 0;
}

}  // namespace tandem::demo
