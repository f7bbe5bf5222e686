// Plain reference twins of the two tokenizer algorithms, written the way llama.cpp's
// llm_tokenizer_spm/bpe sessions are: std::string-keyed maps, a std::string per bigram, no
// word splitting or caching; the text is first cut at user-defined (and, with parse_special,
// control) tokens as llama.cpp's tokenizer_st_partition does. Slow and obviously faithful; the tests and bench-tokenizer check that
// the optimized Tokenizer gives identical ids. Built from the GGUF file directly.
#pragma once
#include <algorithm>
#include <map>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "tandem/pretokenize.h"
#include "tandem/unicode.h"
#include "tandem/gguf.h"
#include "tandem/tokenizer.h"  // is_end_of_generation_text

namespace tandem_ref {

using namespace tandem;

struct RefSym {
    const char* text;
    size_t n;
    int prev, next;
};

// llama.cpp's tokenizer_st_partition, literally: for each control, user-defined or unknown
// token (`split`, longest text first; control and unknown ones only when parse_special), every
// occurrence in a fragment still raw, leftmost first, becomes that token.
struct RefFragment {
    std::string text;
    int token;  // -1: raw text
};

inline std::vector<RefFragment> ref_partition(const std::string& text, const std::vector<std::pair<std::string, int>>& split,
                                              const std::vector<int>& split_id, bool parse_special) {
    std::vector<RefFragment> frags;
    if (!text.empty()) frags.push_back({text, -1});
    for (size_t k = 0; k < split.size(); ++k) {
        const std::string& tok = split[k].first;
        if (!parse_special && split[k].second != 4) continue;  // 4: user-defined
        std::vector<RefFragment> next;
        for (const RefFragment& f : frags) {
            if (f.token >= 0) {
                next.push_back(f);
                continue;
            }
            size_t at = 0;
            for (size_t m = f.text.find(tok); m != std::string::npos; m = f.text.find(tok, at)) {
                if (m > at) next.push_back({f.text.substr(at, m - at), -1});
                next.push_back({tok, split_id[k]});
                at = m + tok.size();
            }
            if (at < f.text.size()) next.push_back({f.text.substr(at), -1});
        }
        frags = std::move(next);
    }
    return frags;
}

// The split tokens of a vocabulary in llama.cpp's order (text length, longest first; ties by id).
inline void ref_split_tokens(const std::vector<std::string>& toks, const std::vector<int64_t>& types,
                             std::vector<std::pair<std::string, int>>& split, std::vector<int>& split_id) {
    std::vector<int> ids;
    for (size_t i = 0; i < toks.size(); ++i)
        if (!toks[i].empty() && (types[i] == 2 || types[i] == 3 || types[i] == 4)) ids.push_back((int)i);
    std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return toks[a].size() > toks[b].size(); });
    for (int id : ids) {
        // end-of-generation texts count as control tokens (llama.cpp overrides their type)
        split.push_back({toks[id], types[id] == 4 && is_end_of_generation_text(toks[id]) ? 3 : (int)types[id]});
        split_id.push_back(id);
    }
}

// SPM as llama.cpp: string lookups, a std::priority_queue of bigrams.
struct RefSpm {
    std::unordered_map<std::string, int> piece;  // normal tokens
    std::vector<float> score;
    int byte_tok[256];

    std::vector<std::pair<std::string, int>> split;  // split tokens: (text, type), longest first
    std::vector<int> split_id;

    std::vector<int> encode(const std::string& raw, bool parse_special = false) const {
        std::vector<int> out;
        bool prev_special = true;  // the space prefix: first, and after every split token
        for (const RefFragment& f : ref_partition(raw, split, split_id, parse_special)) {
            if (f.token >= 0) {
                out.push_back(f.token);
                prev_special = true;
            } else {
                const std::vector<int> ids = encode_fragment(f.text, prev_special);
                out.insert(out.end(), ids.begin(), ids.end());
                prev_special = false;
            }
        }
        return out;
    }

    std::vector<int> encode_fragment(const std::string& raw, bool prefix) const {
        std::string text = prefix ? "\xE2\x96\x81" : "";
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

// Byte-level BPE as llama.cpp: the same pre-tokenizer (tested on its own against the regexes),
// then string pairs in a std::map.
struct RefBpe {
    PreType pre = PreType::Gpt2;
    std::unordered_map<std::string, int> piece;
    std::map<std::pair<std::string, std::string>, int> rank;

    std::vector<std::pair<std::string, int>> split;  // split tokens: (text, type), longest first
    std::vector<int> split_id;

    std::vector<int> encode(const std::string& raw, bool parse_special = false) const {
        std::vector<int> out;
        for (const RefFragment& f : ref_partition(raw, split, split_id, parse_special)) {
            if (f.token >= 0) {
                out.push_back(f.token);
            } else {
                const std::vector<int> ids = encode_fragment(f.text);
                out.insert(out.end(), ids.begin(), ids.end());
            }
        }
        return out;
    }

    std::vector<int> encode_fragment(const std::string& text) const {
        std::vector<uint32_t> cpts, ends, scratch;
        unicode::utf8_to_cpts(text, cpts);
        std::vector<uint8_t> flags;
        for (uint32_t c : cpts) flags.push_back(unicode::cpt_flags(c));
        pretokenize(pre, cpts.data(), flags.data(), cpts.size(), ends, scratch);
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
            if (pre == PreType::Llama3 && piece.count(word)) {  // llama-bpe ignores merges for whole tokens
                out.push_back(piece.at(word));
                continue;
            }
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
            for (int i = sym.empty() ? -1 : 0; i != -1; i = sym[i].next) {
                auto it = piece.find(std::string(sym[i].text, sym[i].n));
                if (it != piece.end()) out.push_back(it->second);  // bytes without a token are dropped
            }
        }
        return out;
    }
};

// Loaders from the GGUF keys (Normal tokens only, as the optimized tokenizer uses for llama).
inline RefSpm load_ref_spm(const GgufFile& f) {
    RefSpm r;
    const std::vector<std::string>& toks = f.find("tokenizer.ggml.tokens")->strs;
    const std::vector<int64_t> types = f.find("tokenizer.ggml.token_type")->as_i64_array();
    r.score = f.find("tokenizer.ggml.scores")->as_f32_array();
    for (int b = 0; b < 256; ++b) r.byte_tok[b] = -1;
    for (size_t i = 0; i < toks.size(); ++i) {
        if (types[i] == 1) r.piece[toks[i]] = (int)i;
        if (types[i] == 6 && toks[i].size() == 6) r.byte_tok[std::stoi(toks[i].substr(3, 2), nullptr, 16)] = (int)i;
    }
    ref_split_tokens(toks, types, r.split, r.split_id);
    return r;
}

inline RefBpe load_ref_bpe(const GgufFile& f, PreType pre) {
    RefBpe r;
    r.pre = pre;
    const std::vector<std::string>& toks = f.find("tokenizer.ggml.tokens")->strs;
    const std::vector<int64_t> types = f.find("tokenizer.ggml.token_type")->as_i64_array();
    for (size_t i = 0; i < toks.size(); ++i)
        if (types[i] == 1 || types[i] == 4) r.piece[toks[i]] = (int)i;
    const std::vector<std::string>& merges = f.find("tokenizer.ggml.merges")->strs;
    for (size_t k = 0; k < merges.size(); ++k) {
        const size_t sp = merges[k].find(' ', 1);
        r.rank.emplace(std::make_pair(merges[k].substr(0, sp), merges[k].substr(sp + 1)), (int)k);
    }
    ref_split_tokens(toks, types, r.split, r.split_id);
    return r;
}

}  // namespace tandem_ref
