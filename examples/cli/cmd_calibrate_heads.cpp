// `tandem calibrate-heads MODEL --text FILE [--frac-2bit F] [--out PATH]`: runs the model over
// the calibration text (its first 1024 tokens, FP32 cache), ranks each layer's KV heads by
// range x std of their K and V (turbo_head_priority), and writes the head-bits file
// (tandem/turbo_heads.h; default MODEL.heads.json, which the engine loads by itself when the
// Turbo KV cache is on). Prints the bits chosen per layer.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "commands.h"
#include "tandem/tokenizer.h"
#include "tandem/turbo_heads.h"

namespace tandem::cli {

std::string help_calibrate_heads() {
    char buf[1024];
    std::snprintf(buf, sizeof buf,
                  "usage: tandem calibrate-heads MODEL --text FILE [options]\n"
                  "Chooses which KV heads of the Turbo cache get 2 bits (the rest 4) from the model's keys and\n"
                  "values on the first 1024 tokens of FILE, and writes the head-bits file.\n\n"
                  "  -m, --model PATH     GGUF model (or give it as the first argument)\n"
                  "  -f, --text PATH      calibration text (required)\n"
                  "      --frac-2bit F    fraction of KV heads at 2 bits, in [0, 1] (default: %.2f)\n"
                  "  -o, --out PATH       where to write (default: MODEL.heads.json, which the engine loads by itself)\n"
                  "  -h, --help           this text\n",
                  (double)TurboConfig{}.frac_2bit);
    return buf;
}

int cmd_calibrate_heads(const Args& args) {
    std::string model_path, text_path, out;
    double frac = TurboConfig{}.frac_2bit;
    for (size_t i = 0; i < args.size(); i++) {
        const std::string& a = args[i];
        if (a == "--text" || a == "-f") text_path = flag_value(args, i);
        else if (a == "--frac-2bit") frac = parse_double(flag_value(args, i), a);
        else if (a == "--out" || a == "-o") out = flag_value(args, i);
        else if (a == "-m" || a == "--model") model_path = flag_value(args, i);
        else if (!a.empty() && a[0] != '-' && model_path.empty()) model_path = a;
        else unknown_argument(a);
    }
    if (model_path.empty() || text_path.empty()) throw UsageError{"MODEL and --text FILE are required"};
    if (!(frac >= 0.0 && frac <= 1.0)) throw UsageError{"--frac-2bit must be in [0, 1]"};
    if (out.empty()) out = turbo_heads_path(model_path);
    std::ifstream in(text_path, std::ios::binary);
    if (!in) throw std::runtime_error(text_path + ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();

    auto model = Model::load(model_path);
    const ModelConfig& c = model->config();
    if (model->head_dim() != 64 && model->head_dim() != 128)
        throw std::runtime_error(model_path + ": head_dim " + std::to_string(model->head_dim()) +
                                 ": the Turbo KV cache needs 64 or 128, so there is nothing to calibrate");
    const Tokenizer tok = Tokenizer::from_gguf(model->file());
    const std::vector<int32_t> tokens = tok.encode(ss.str(), tok.add_bos() && tok.bos() >= 0);
    const TurboHeads h = calibrate_turbo_heads(model, tokens, (float)frac);
    write_turbo_heads(out, h);
    int n2 = 0;
    for (size_t l = 0; l < h.bits.size(); l++) {
        std::printf("layer %3zu:", l);
        for (uint8_t b : h.bits[l]) std::printf(" %d", (int)b), n2 += b == 2;
        std::printf("\n");
    }
    std::printf("calibrate-heads: %lld tokens of %s, %d of %lld KV heads at 2 bits, wrote %s\n",
                (long long)h.calibration_tokens, text_path.c_str(), n2, (long long)(c.n_layer * c.n_head_kv), out.c_str());
    return 0;
}

}  // namespace tandem::cli
