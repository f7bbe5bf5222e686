// `tandem info MODEL [--json]`: what a GGUF file holds and what it needs in memory.
#include <cstdio>
#include <map>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "tandem/gguf.h"
#include "tandem/model_config.h"

namespace tandem::cli {

static std::string human_bytes(uint64_t b) {
    char buf[32];
    if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", b / 1073741824.0);
    else if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", b / 1048576.0);
    else if (b >= 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
    else std::snprintf(buf, sizeof buf, "%llu B", (unsigned long long)b);
    return buf;
}

static std::string shape_string(const std::vector<int64_t>& ne) {
    std::string s;
    for (size_t i = 0; i < ne.size(); i++) s += (i ? " x " : "") + std::to_string(ne[i]);
    return s;
}

std::string help_info() {
    return "usage: tandem info MODEL [--json]\n"
           "What a GGUF file holds (architecture, hyperparameters, tensors by type, tokenizer) and the\n"
           "memory it needs.\n\n"
           "      --json     one JSON object instead of the text report (default: text)\n"
           "  -h, --help     this text\n";
}

int cmd_info(const Args& args) {
    std::string path;
    bool json = false;
    for (size_t i = 0; i < args.size(); i++) {
        if (args[i] == "--json") json = true;
        else if (!args[i].empty() && args[i][0] == '-') unknown_argument(args[i]);
        else if (path.empty()) path = args[i];
        else throw UsageError{"more than one MODEL given"};
    }
    if (path.empty()) throw UsageError{"MODEL is required"};

    const GgufFile f = GgufFile::open(path);
    const ModelConfig c = ModelConfig::from_gguf(f);
    std::map<std::string, uint64_t> bytes_by_type;
    for (const auto& t : f.tensors()) bytes_by_type[type_traits(t.type).name] += t.n_bytes;

    if (json) {
        nlohmann::json j;
        j["file"] = path;
        j["gguf_version"] = f.version();
        j["architecture"] = c.architecture;
        j["name"] = c.name;
        j["n_layer"] = c.n_layer;
        j["n_embd"] = c.n_embd;
        j["n_head"] = c.n_head;
        j["n_head_kv"] = c.n_head_kv;
        j["n_ff"] = c.n_ff;
        j["n_vocab"] = c.n_vocab;
        j["n_ctx_train"] = c.n_ctx_train;
        j["n_rot"] = c.n_rot;
        j["rope_freq_base"] = c.rope_freq_base;
        j["rope_scaling"] = c.rope_scaling_type;
        j["rope_scaling_factor"] = c.rope_scaling_factor;
        j["rms_eps"] = c.rms_eps;
        j["tokenizer_model"] = c.tokenizer_model;
        j["tokenizer_pre"] = c.tokenizer_pre;
        j["n_tensors"] = f.tensors().size();
        j["n_params"] = c.n_params;
        j["weight_bytes"] = c.weight_bytes;
        j["bytes_by_type"] = bytes_by_type;
        auto& ts = j["tensors"] = nlohmann::json::array();
        for (const auto& t : f.tensors())
            ts.push_back({{"name", t.name}, {"type", type_traits(t.type).name}, {"shape", t.ne}, {"bytes", t.n_bytes}});
        std::printf("%s\n", j.dump(2).c_str());
        return 0;
    }

    std::printf("file:           %s (GGUF v%u, %s)\n", path.c_str(), f.version(), human_bytes(f.file_size()).c_str());
    std::printf("architecture:   %s%s%s\n", c.architecture.c_str(), c.name.empty() ? "" : "  name: ", c.name.c_str());
    std::printf("n_layer %lld  n_embd %lld  n_head %lld  n_head_kv %lld  n_ff %lld\n", (long long)c.n_layer,
                (long long)c.n_embd, (long long)c.n_head, (long long)c.n_head_kv, (long long)c.n_ff);
    std::printf("n_vocab %lld  n_ctx_train %lld\n", (long long)c.n_vocab, (long long)c.n_ctx_train);
    std::printf("rope:           n_rot %lld, freq_base %g, scaling %s x%g\n", (long long)c.n_rot, c.rope_freq_base,
                c.rope_scaling_type.c_str(), c.rope_scaling_factor);
    std::printf("rms_eps:        %g\n", c.rms_eps);
    std::printf("tokenizer:      %s (pre: %s)\n", c.tokenizer_model.empty() ? "-" : c.tokenizer_model.c_str(),
                c.tokenizer_pre.empty() ? "-" : c.tokenizer_pre.c_str());
    std::printf("tensors:        %zu, %.2fM parameters\n", f.tensors().size(), c.n_params / 1e6);
    std::printf("weights need:   %s (mapped read-only; the CPU backend packs the matrices into its own copy)",
                human_bytes(c.weight_bytes).c_str());
    for (const auto& [type, b] : bytes_by_type) std::printf("  %s %s", type.c_str(), human_bytes(b).c_str());
    std::printf("\n\n%-40s %-6s %-24s %s\n", "tensor", "type", "shape", "size");
    for (const auto& t : f.tensors())
        std::printf("%-40s %-6s %-24s %s\n", t.name.c_str(), type_traits(t.type).name, shape_string(t.ne).c_str(),
                    human_bytes(t.n_bytes).c_str());
    return 0;
}

}  // namespace tandem::cli
