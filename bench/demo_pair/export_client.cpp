// demo-pair-export: train.py's output -> the demo client's GGUF (bench/demo_pair/README.md),
// then the engine's NLL of train.py's check sequence against train.py's own (f32) value.
//
// usage: demo-pair-export --weights DIR --out FILE [--type q8_0|f32] [--tokenizer-from GGUF]
//                         [--name NAME] [--description TEXT] [--max-diff NATS]
// Exit status: 0 written and checked; 1 an error or a check difference over --max-diff
// (default 0.02 nats/token for q8_0, 0.002 for f32); 2 bad arguments.
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "client_export.h"

using namespace tandem;
using namespace tandem::demo;

static const char* kUsage =
    "usage: demo-pair-export --weights DIR --out FILE [--type q8_0|f32] [--tokenizer-from GGUF]\n"
    "                        [--name NAME] [--description TEXT] [--max-diff NATS]\n";

int main(int argc, char** argv) {
    std::string weights, out, type_name = "q8_0", name = "tandem-demo-client", description;
    std::string tokenizer_from = std::string(TANDEM_SHARED_DIR) + "/models/tandem-demo-client-q8_0.gguf";
    double max_diff = -1;
    try {
        for (int i = 1; i < argc; i++) {
            const std::string a = argv[i];
            auto value = [&]() -> std::string {
                if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
                return argv[++i];
            };
            if (a == "--weights") weights = value();
            else if (a == "--out") out = value();
            else if (a == "--type") type_name = value();
            else if (a == "--tokenizer-from") tokenizer_from = value();
            else if (a == "--name") name = value();
            else if (a == "--description") description = value();
            else if (a == "--max-diff") max_diff = std::stod(value());
            else if (a == "-h" || a == "--help") {
                std::fputs(kUsage, stdout);
                return 0;
            } else throw std::invalid_argument("unknown option '" + a + "'");
        }
        if (weights.empty() || out.empty()) throw std::invalid_argument("--weights and --out are required");
        if (type_name != "q8_0" && type_name != "f32") throw std::invalid_argument("--type must be q8_0 or f32");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "demo-pair-export: %s\n%s", e.what(), kUsage);
        return 2;
    }
    try {
        const GgmlType type = type_name == "q8_0" ? GgmlType::Q8_0 : GgmlType::F32;
        if (max_diff < 0) max_diff = type == GgmlType::Q8_0 ? 0.02 : 0.002;
        const TrainedWeights w = read_trained_weights(weights);
        const GgufFile src = GgufFile::open(tokenizer_from);
        write_client_gguf(w, src, type, name, description, out);
        const auto& check = w.result.at("check");
        const double want = check.at("nll_mean").get<double>();
        const double got = engine_mean_nll(out, check.at("tokens").get<std::vector<int32_t>>());
        std::printf("wrote %s (%s, %zu parameters); check sequence of %zu tokens: engine NLL %.5f, train.py (f32) %.5f, "
                    "difference %+.5f nats/token (allowed %.4f)\n",
                    out.c_str(), type_name.c_str(), w.values.size(), check["tokens"].size(), got, want, got - want, max_diff);
        return std::fabs(got - want) <= max_diff ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "demo-pair-export: error: %s\n", e.what());
        return 1;
    }
}
