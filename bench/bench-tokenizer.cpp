// Tokenizer encoding throughput (MB/s) on 1 MB of English text (WikiText-2 test split), with a
// 32k SentencePiece vocabulary (llama-spm) and the 50k GPT-2 byte-level BPE vocabulary.
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

#include "../client_engine/src/pretokenize.h"
#include "../client_engine/src/unicode.h"
#include "tandem/gguf.h"
#include "tandem/tokenizer.h"

using namespace tandem;

// ---- reference twins ---------------------------------------------------------------------------

struct RefSym {
    const char* text;
    size_t n;
    int prev, next;
};

// SPM as llama.cpp: string lookups, a std::priority_queue of bigrams.
struct RefSpm {
    std::unordered_map<std::string, int> piece;  // normal tokens
    std::vector<float> score;
    int byte_tok[256];

    std::vector<int> encode(const std::string& raw) const {
        std::string text = "\xE2\x96\x81";
        for (char c : raw) text += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
        struct Bigram {
            int left, right;
            float score;
            size_t size;
        };
        auto cmp = [](const Bigram& l, const Bigram& r) { return l.score < r.score || (l.score == r.score && l.left > r.left); };
        std::priority_queue<Bigram, std::vector<Bigram>, decltype(cmp)> q(cmp);
        std::vector<RefSym> sym;
        for (size_t o = 0; o < text.size();) {
            const uint8_t b = (uint8_t)text[o];
            size_t n = std::min<size_t>(b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4, text.size() - o);
            sym.push_back({text.data() + o, n, (int)sym.size() - 1, o + n == text.size() ? -1 : (int)sym.size() + 1});
            o += n;
        }
        auto add = [&](int l, int r) {
            if (l < 0 || r < 0) return;
            const std::string s(sym[l].text, sym[l].n + sym[r].n);
            auto it = piece.find(s);
            if (it == piece.end()) return;
            q.push({l, r, score[it->second], s.size()});
        };
        for (int i = 1; i < (int)sym.size(); ++i) add(i - 1, i);
        while (!q.empty()) {
            Bigram b = q.top();
            q.pop();
            RefSym &l = sym[b.left], &r = sym[b.right];
            if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
            l.n += r.n;
            r.n = 0;
            l.next = r.next;
            if (r.next >= 0) sym[r.next].prev = b.left;
            add(l.prev, b.left);
            add(b.left, l.next);
        }
        std::vector<int> out;
        for (int i = sym.empty() ? -1 : 0; i != -1; i = sym[i].next) {
            auto it = piece.find(std::string(sym[i].text, sym[i].n));
            if (it != piece.end()) out.push_back(it->second);
            else
                for (size_t k = 0; k < sym[i].n; ++k) out.push_back(byte_tok[(uint8_t)sym[i].text[k]]);
        }
        return out;
    }
};

// Byte-level BPE as llama.cpp: the same pre-tokenizer, then string pairs in a std::map.
struct RefBpe {
    std::unordered_map<std::string, int> piece;
    std::map<std::pair<std::string, std::string>, int> rank;

    std::vector<int> encode(const std::string& text) const {
        std::vector<uint32_t> cpts, ends, scratch;
        unicode::utf8_to_cpts(text, cpts);
        std::vector<uint8_t> flags;
        for (uint32_t c : cpts) flags.push_back(unicode::cpt_flags(c));
        pretokenize(PreType::Gpt2, cpts.data(), flags.data(), cpts.size(), ends, scratch);
        std::vector<int> out;
        uint32_t begin = 0;
        for (uint32_t end : ends) {
            std::string word;
            for (uint32_t i = begin; i < end; ++i) {
                std::string u;
                unicode::utf8_append(cpts[i], u);
                for (char c : u) unicode::utf8_append(unicode::byte_to_cpt((uint8_t)c), word);
            }
            begin = end;
            struct Bigram {
                int left, right;
                std::string text;
                int rank;
            };
            auto cmp = [](const Bigram& l, const Bigram& r) { return l.rank > r.rank || (l.rank == r.rank && l.left > r.left); };
            std::priority_queue<Bigram, std::vector<Bigram>, decltype(cmp)> q(cmp);
            std::vector<RefSym> sym;
            for (size_t o = 0; o < word.size();) {
                const uint8_t b = (uint8_t)word[o];
                size_t n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
                sym.push_back({word.data() + o, n, (int)sym.size() - 1, o + n == word.size() ? -1 : (int)sym.size() + 1});
                o += n;
            }
            auto add = [&](int l, int r) {
                if (l < 0 || r < 0) return;
                std::string a(sym[l].text, sym[l].n), b(sym[r].text, sym[r].n);
                auto it = rank.find({a, b});
                if (it == rank.end()) return;
                q.push({l, r, a + b, it->second});
            };
            for (int i = 1; i < (int)sym.size(); ++i) add(i - 1, i);
            while (!q.empty()) {
                Bigram b = q.top();
                q.pop();
                RefSym &l = sym[b.left], &r = sym[b.right];
                if (l.n == 0 || r.n == 0 || std::string(l.text, l.n) + std::string(r.text, r.n) != b.text) continue;
                l.n += r.n;
                r.n = 0;
                l.next = r.next;
                if (r.next >= 0) sym[r.next].prev = b.left;
                add(l.prev, b.left);
                add(b.left, l.next);
            }
            for (int i = sym.empty() ? -1 : 0; i != -1; i = sym[i].next) out.push_back(piece.at(std::string(sym[i].text, sym[i].n)));
        }
        return out;
    }
};

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

        for (const char* name : {"llama-spm", "gpt-2"}) {
            const GgufFile f = GgufFile::open(shared + "/vocab/ggml-vocab-" + name + ".gguf");
            const Tokenizer tok = Tokenizer::from_gguf(f);
            std::vector<TokenId> ids;
            const double t = best_seconds(reps, [&] {
                ids.clear();
                tok.encode(text, false, ids);
            });
            std::vector<int> ref_ids;
            double tr;
            if (tok.kind() == TokenizerKind::Spm) {
                RefSpm ref;
                for (size_t i = 0; i < tok.n_tokens(); ++i) {
                    if (tok.token_type((TokenId)i) == TokenType::Normal) ref.piece[tok.token_text((TokenId)i)] = (int)i;
                    ref.score.push_back(0);
                }
                const GgufValue* sc = f.find("tokenizer.ggml.scores");
                ref.score = sc->as_f32_array();
                for (int b = 0; b < 256; ++b) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
                    ref.byte_tok[b] = -1;
                    for (size_t i = 0; i < tok.n_tokens(); ++i)
                        if (tok.token_text((TokenId)i) == buf) ref.byte_tok[b] = (int)i;
                }
                tr = best_seconds(std::max(1, reps / 2), [&] { ref_ids = ref.encode(text); });
            } else {
                RefBpe ref;
                for (size_t i = 0; i < tok.n_tokens(); ++i) ref.piece[tok.token_text((TokenId)i)] = (int)i;
                const std::vector<std::string>& merges = f.find("tokenizer.ggml.merges")->strs;
                for (size_t r = 0; r < merges.size(); ++r) {
                    const size_t sp = merges[r].find(' ', 1);
                    ref.rank.emplace(std::make_pair(merges[r].substr(0, sp), merges[r].substr(sp + 1)), (int)r);
                }
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
