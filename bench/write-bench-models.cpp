// write-bench-models DIR: writes the GGUF files the CPU comparison (bench/cpu-compare.sh) runs
// on, for Tandem and llama.cpp alike: the bench's 100M Llama shape (12 layers, dim 768, 12
// heads / 4 KV heads, FFN 2048, 32k vocabulary) with an untied output matrix, 125M
// parameters, in Q4_K, Q4_0, Q8_0, F16 and Q6_K (embeddings and output in the same type), random
// weights, and the demo client's tokenizer (so llama.cpp loads them), as
// DIR/synthetic-125m-<TYPE>.gguf. The demo tokenizer is read from --shared DIR (default
// ../shared).
#include <cstdio>
#include <string>

#include "tandem/synthetic_model.h"

using namespace tandem;

int main(int argc, char** argv) {
    std::string out, shared = "../shared";
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "--shared" && i + 1 < argc) shared = argv[++i];
        else if (out.empty() && a[0] != '-') out = a;
        else { std::fprintf(stderr, "usage: write-bench-models DIR [--shared DIR]\n"); return 2; }
    }
    if (out.empty()) { std::fprintf(stderr, "usage: write-bench-models DIR [--shared DIR]\n"); return 2; }
    const std::pair<const char*, GgmlType> types[] = {
        {"Q4_K", GgmlType::Q4_K}, {"Q4_0", GgmlType::Q4_0}, {"Q8_0", GgmlType::Q8_0}, {"F16", GgmlType::F16},
        {"Q6_K", GgmlType::Q6_K}};
    try {
        for (const auto& [name, t] : types) {
            SyntheticModelSpec s = bench_100m_spec(t, false);
            s.tokenizer_from = shared + "/models/tandem-demo-client-q8_0.gguf";
            const std::string path = out + "/synthetic-125m-" + name + ".gguf";
            write_synthetic_model(s, path);
            std::printf("%s\n", path.c_str());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "write-bench-models: %s\n", e.what());
        return 1;
    }
    return 0;
}
