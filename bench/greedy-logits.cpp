// Greedy continuations with the two best logits of every step, in a plain text format that
// bench/greedy_compare.py reads next to the same output of a reference runtime (llama.cpp,
// through a small program of the same interface built outside this repository; see
// bench/results/greedy-vs-reference.md). The prompt is evaluated as one batch and every
// continuation token on its own, as llama.cpp's examples do, so that both runtimes take their
// prefill and decode paths at the same steps.
//
// usage: bench-greedy-logits MODEL PROMPTS N_PREDICT THREADS OUT [FORCED]
//   PROMPTS   one prompt per line (UTF-8)
//   OUT.txt   per prompt "P i n id_1 .. id_n" (its tokens, BOS first when the model adds one),
//             then per step "S i step top1 logit1 top2 logit2 chosen"
//   OUT.bin   float32 logits (n_vocab) of every step, in the order of the S lines
//   FORCED    an OUT.txt written before (by either runtime): continue with its chosen tokens
//             instead of this runtime's argmax, so that both are compared on one token path
// TANDEM_KERNEL_PATH=scalar|avx2|avx512-vnni picks the CPU matmul path (default: the best), to
// measure how far two of Tandem's own paths (same arithmetic, other summation order) differ.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tandem/context.h"
#include "tandem/cpu_matmul.h"
#include "tandem/tokenizer.h"

using namespace tandem;

// prompt index -> the chosen token of each step, from an OUT.txt.
static std::map<int, std::vector<int32_t>> read_chosen(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error(path + ": cannot open");
    std::map<int, std::vector<int32_t>> chosen;
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("S ", 0) != 0) continue;
        std::istringstream ls(line.substr(2));
        int i, step;
        int32_t t1, t2, c;
        float l1, l2;
        if (!(ls >> i >> step >> t1 >> l1 >> t2 >> l2 >> c)) throw std::runtime_error(path + ": bad line '" + line + "'");
        chosen[i].push_back(c);
    }
    return chosen;
}

int main(int argc, char** argv) {
    if (argc != 6 && argc != 7) {
        std::fprintf(stderr, "usage: bench-greedy-logits MODEL PROMPTS N_PREDICT THREADS OUT [FORCED]\n");
        return 2;
    }
    try {
        const std::string out_prefix = argv[5];
        const int n_predict = std::stoi(argv[3]);
        std::map<int, std::vector<int32_t>> forced;
        if (argc == 7) forced = read_chosen(argv[6]);

        if (const char* path = std::getenv("TANDEM_KERNEL_PATH")) cpu::force_kernel_path(path);
        auto model = Model::load(argv[1]);
        const Tokenizer tok = Tokenizer::from_gguf(model->file());
        ContextParams cp;
        cp.n_threads = std::stoi(argv[4]);
        cp.n_ctx = 512;
        cp.n_batch = 512;
        InferenceContext ctx(model, cp);
        const int64_t nv = model->config().n_vocab;

        std::ifstream prompts(argv[2]);
        if (!prompts) throw std::runtime_error(std::string(argv[2]) + ": cannot open");
        std::FILE* txt = std::fopen((out_prefix + ".txt").c_str(), "w");
        std::FILE* bin = std::fopen((out_prefix + ".bin").c_str(), "wb");
        if (!txt || !bin) throw std::runtime_error(out_prefix + ".txt/.bin: cannot create");
        int index = 0;
        for (std::string prompt; std::getline(prompts, prompt); ++index) {
            const std::vector<int32_t> ids = tok.encode(prompt, tok.add_bos());
            std::fprintf(txt, "P %d %zu", index, ids.size());
            for (int32_t id : ids) std::fprintf(txt, " %d", id);
            std::fprintf(txt, "\n");
            ctx.truncate(0);
            ctx.eval(ids.data(), (int64_t)ids.size());
            const std::vector<int32_t>* path = forced.count(index) ? &forced.at(index) : nullptr;
            const int steps = path ? (int)path->size() : n_predict;
            for (int step = 0; step < steps; ++step) {
                const float* l = ctx.logits();
                int32_t t1 = 0, t2 = -1;
                for (int32_t v = 1; v < nv; ++v) {
                    if (l[v] > l[t1]) t2 = t1, t1 = v;
                    else if (t2 < 0 || l[v] > l[t2]) t2 = v;
                }
                const int32_t chosen = path ? (*path)[step] : t1;
                std::fprintf(txt, "S %d %d %d %.6f %d %.6f %d\n", index, step, t1, l[t1], t2, l[t2], chosen);
                std::fwrite(l, sizeof(float), (size_t)nv, bin);
                ctx.eval(&chosen, 1);
            }
        }
        std::fclose(txt);
        std::fclose(bin);
        std::fprintf(stderr, "bench-greedy-logits: %d prompts, wrote %s.txt and %s.bin\n", index, out_prefix.c_str(),
                     out_prefix.c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench-greedy-logits: %s\n", e.what());
        return 1;
    }
    return 0;
}
