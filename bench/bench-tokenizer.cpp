// Tokenizer encoding throughput (MB/s) on 1 MB of English text (WikiText-2 test split), with a
// 32k SentencePiece vocabulary (llama-spm), the 50k GPT-2 byte-level BPE vocabulary, and
// gpt-neox's (GPT-2 rules plus user-defined tokens for runs of spaces).
//
// Also: the latency of re-tokenizing a 2 KB paragraph after a one-character edit (the
// composition assistant's per-keystroke case; warm per-thread word cache).
//
// Baseline, measured in the same run: a plain reference twin of each algorithm written the way
// llama.cpp's llm_tokenizer_spm/bpe sessions are (std::string-keyed std::unordered_map/std::map,
// a std::string per bigram). The bench also checks that both produce identical ids.
//
// usage: bench-tokenizer [SHARED_DIR] [--reps N]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "../tests/tokenizer_ref.h"
#include "tandem/gguf.h"
#include "tandem/tokenizer.h"

using namespace tandem;
using tandem_ref::RefBpe;
using tandem_ref::RefSpm;

// ---- timing --------------------------------------------------------------------------------------

template <class F>
static double best_seconds(int reps, F&& f) {
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
}

static std::string read_all(const std::string& path) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw std::runtime_error("cannot open " + path);
    std::string s;
    char buf[65536];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, n);
    std::fclose(f);
    return s;
}

int main(int argc, char** argv) {
    std::string shared = "../shared";
    int reps = 5;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
        else shared = argv[i];
    }
    try {
        std::string text = read_all(shared + "/corpus/wikitext-2-test.raw");
        size_t cut = 1000000;
        while (cut < text.size() && ((uint8_t)text[cut] & 0xC0) == 0x80) ++cut;  // whole characters
        text.resize(std::min(cut, text.size()));
        const double mb = text.size() / 1e6;
        std::printf("text: %zu bytes of wikitext-2-test.raw, best of %d runs\n\n", text.size(), reps);
        std::printf("%-10s %7s %9s %10s %10s %9s %-9s %12s\n", "vocab", "n_vocab", "tokens", "MB/s", "ref MB/s", "speedup",
                    "ids match", "us/2KB edit");

        // gpt-neox: gpt-2 rules (its file names no pre-tokenizer) and 178 user-defined tokens
        // (runs of 2-24 spaces, padding) that every encode first cuts the text at.
        for (const char* name : {"llama-spm", "gpt-2", "gpt-neox"}) {
            const GgufFile f = GgufFile::open(shared + "/vocab/ggml-vocab-" + name + ".gguf");
            const Tokenizer tok = Tokenizer::from_gguf(f, [](const std::string&) {});
            std::vector<TokenId> ids;
            const double t = best_seconds(reps, [&] {
                ids.clear();
                tok.encode(text, false, ids);
            });
            std::vector<int> ref_ids;
            double tr;
            if (tok.kind() == TokenizerKind::Spm) {
                const RefSpm ref = tandem_ref::load_ref_spm(f);
                tr = best_seconds(std::max(1, reps / 2), [&] { ref_ids = ref.encode(text); });
            } else {
                const RefBpe ref = tandem_ref::load_ref_bpe(f, PreType::Gpt2);
                tr = best_seconds(std::max(1, reps / 2), [&] { ref_ids = ref.encode(text); });
            }
            const bool same = std::vector<int>(ids.begin(), ids.end()) == ref_ids;
            // Keystroke latency: a 2 KB paragraph re-tokenized after each one-character edit.
            const std::string para = text.substr(0, 2048);
            const int n_edits = 2000;
            std::vector<std::string> edits;
            for (int i = 0; i < n_edits; ++i) {
                std::string e = para;
                e.insert((size_t)(i * 37) % para.size(), 1, (char)('a' + i % 26));
                edits.push_back(std::move(e));
            }
            const double tk = best_seconds(3, [&] {
                for (const std::string& e : edits) {
                    ids.clear();
                    tok.encode(e, false, ids);
                }
            });
            std::printf("%-10s %7zu %9zu %10.2f %10.2f %8.2fx %-9s %12.1f\n", name, tok.n_tokens(), ref_ids.size(), mb / t,
                        mb / tr, tr / t, same ? "yes" : "NO", 1e6 * tk / n_edits);
            if (!same) return 1;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench-tokenizer: %s\n", e.what());
        return 1;
    }
    return 0;
}
