// Router features: UTF-8 words, FNV-1a n-gram buckets, length and caller signals.
// The rules are specified in tandem/router_features.h; this file follows them top to bottom.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "tandem/router_features.h"
#include "tandem/utf8.h"

namespace tandem {

const std::array<const char*, kSignalCount> kSignalNames = {"query_logprob_mean", "gen_entropy",
                                                            "memory_coverage"};

std::optional<double> signal_value(const RouterSignals& s, Signal which) {
    switch (which) {
        case Signal::query_logprob_mean: return s.query_logprob_mean;
        case Signal::gen_entropy: return s.gen_entropy;
        case Signal::memory_coverage: return s.memory_coverage;
    }
    return std::nullopt;
}

std::string FeatureConfig::dense_name(int i) const {
    if (i == 0) return "len_chars";
    if (i == 1) return "len_words";
    return std::string("signal:") + kSignalNames[(int)signals.at(i - 2)];
}

// ---- FNV-1a -------------------------------------------------------------------------------

constexpr uint32_t kFnvOffset = 2166136261u;
constexpr uint32_t kFnvPrime = 16777619u;

static inline uint32_t fnv_step(uint32_t h, unsigned char byte) { return (h ^ byte) * kFnvPrime; }

static uint32_t fnv_continue(uint32_t h, std::string_view bytes) {
    for (char c : bytes) h = fnv_step(h, (unsigned char)c);
    return h;
}

uint32_t fnv1a32(std::string_view bytes) { return fnv_continue(kFnvOffset, bytes); }

// ---- UTF-8 decoding, folding, word classes ------------------------------------------------

constexpr uint32_t kInvalid = 0xFFFFFFFFu;

// Decodes one code point at s[i], advancing i. Returns kInvalid (and advances one byte) for a
// malformed, overlong or surrogate sequence.
static uint32_t decode_utf8(std::string_view s, size_t& i) {
    unsigned char b0 = (unsigned char)s[i];
    if (b0 < 0x80) { i += 1; return b0; }
    int len = (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xE ? 3 : (b0 >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) { i += 1; return kInvalid; }
    uint32_t cp = b0 & (0x7F >> len);
    for (int k = 1; k < len; ++k) {
        unsigned char b = (unsigned char)s[i + k];
        if ((b >> 6) != 0x2) { i += 1; return kInvalid; }
        cp = (cp << 6) | (b & 0x3F);
    }
    static const uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) { i += 1; return kInvalid; }
    i += len;
    return cp;
}

// Simple one-to-one lower-casing: ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic.
static uint32_t fold_case(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0xC0) return c;
    if (c <= 0xDE) return c == 0xD7 ? c : c + 32;
    if (c >= 0x100 && c <= 0x17F) {
        if (c == 0x130) return 'i';
        if (c == 0x178) return 0xFF;
        bool even_upper = (c <= 0x137) || (c >= 0x14A && c <= 0x177);
        bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
        if (even_upper && c % 2 == 0) return c + 1;
        if (odd_upper && c % 2 == 1) return c + 1;
        return c;
    }
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
    if (c == 0x386) return 0x3AC;
    if (c >= 0x388 && c <= 0x38A) return c + 37;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 63;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    return c;
}

// Punctuation, symbols and spaces outside ASCII; everything else >= U+0080 is a word letter.
static bool is_separator_nonascii(uint32_t c) {
    if (c >= 0x80 && c <= 0xBF) return c != 0xAA && c != 0xB5 && c != 0xBA;  // Latin-1 punct
    if (c == 0xD7 || c == 0xF7) return true;                                  // x and divide
    if (c >= 0x2000 && c <= 0x206F) return true;   // general punctuation, spaces, quotes
    if (c >= 0x2190 && c <= 0x2BFF) return true;   // arrows, math operators, shapes, symbols
    if (c >= 0x3000 && c <= 0x303F) return true;   // CJK symbols and punctuation
    if (c >= 0xFE30 && c <= 0xFE4F) return true;   // CJK compatibility forms
    if (c >= 0xFF00 && c <= 0xFF0F) return true;   // fullwidth punctuation
    if (c >= 0xFF1A && c <= 0xFF20) return true;
    if (c >= 0xFF3B && c <= 0xFF40) return true;
    if (c >= 0xFF5B && c <= 0xFF65) return true;
    if (c == 0xFEFF || c == 0x1680) return true;   // BOM, ogham space
    if (c >= 0x1F000 && c <= 0x1FAFF) return true; // emoji and pictographs
    return false;
}

static bool is_cjk_single(uint32_t c) {
    return (c >= 0x3040 && c <= 0x30FF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xF900 && c <= 0xFAFF);
}

enum class CharClass { separator, letter, apostrophe, single };

static CharClass classify(uint32_t c) {
    if (c == kInvalid) return CharClass::separator;
    if (c < 0x80) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return CharClass::letter;
        return c == '\'' ? CharClass::apostrophe : CharClass::separator;
    }
    if (c == 0x2019) return CharClass::apostrophe;  // right single quote, as in don’t
    if (is_cjk_single(c)) return CharClass::single;
    return is_separator_nonascii(c) ? CharClass::separator : CharClass::letter;
}

// Splits into words; also returns the number of code points (invalid bytes count as one).
static std::vector<std::string> split_words(std::string_view text, size_t* n_codepoints) {
    std::vector<std::string> words;
    std::string cur;
    auto flush = [&]() {
        while (!cur.empty() && cur.back() == '\'') cur.pop_back();  // trailing apostrophes
        if (!cur.empty()) words.push_back(std::move(cur));
        cur.clear();
    };
    size_t n = 0;
    for (size_t i = 0; i < text.size();) {
        uint32_t c = decode_utf8(text, i);
        ++n;
        switch (classify(c)) {
            case CharClass::letter: utf8_append(fold_case(c), cur); break;
            case CharClass::apostrophe:
                if (!cur.empty()) cur += '\'';  // inside a word only; leading ones are dropped
                break;
            case CharClass::single:
                flush();
                utf8_append(c, cur);
                flush();
                break;
            case CharClass::separator: flush(); break;
        }
    }
    flush();
    if (n_codepoints) *n_codepoints = n;
    return words;
}

std::vector<std::string> router_words(std::string_view text) { return split_words(text, nullptr); }

// ---- feature vectors ----------------------------------------------------------------------

FeatureVector extract_features(const FeatureConfig& cfg, std::string_view query,
                               const RouterSignals& signals, bool want_names) {
    FeatureVector f;
    size_t n_cp = 0;
    std::vector<std::string> words = split_words(query, &n_cp);
    const uint32_t mask = (uint32_t)cfg.n_buckets() - 1;

    struct Hit {
        uint32_t bucket;
        uint32_t order;  // n-gram index, to keep the first name per bucket
    };
    std::vector<Hit> hits;
    std::vector<std::string> hit_names;
    hits.reserve(words.size() * 2);
    for (size_t w = 0; w < words.size(); ++w) {
        uint32_t h = fnv1a32(words[w]);
        hits.push_back({h & mask, (uint32_t)hits.size()});
        if (want_names) hit_names.push_back("uni:" + words[w]);
        if (cfg.bigrams && w + 1 < words.size()) {
            uint32_t hb = fnv_continue(fnv_step(h, ' '), words[w + 1]);
            hits.push_back({hb & mask, (uint32_t)hits.size()});
            if (want_names) hit_names.push_back("bi:" + words[w] + " " + words[w + 1]);
        }
    }
    std::sort(hits.begin(), hits.end(), [](const Hit& a, const Hit& b) {
        return a.bucket != b.bucket ? a.bucket < b.bucket : a.order < b.order;
    });
    for (size_t i = 0; i < hits.size(); ++i) {
        if (i > 0 && hits[i].bucket == hits[i - 1].bucket) continue;
        f.buckets.push_back(hits[i].bucket);
        if (want_names) f.names.push_back(hit_names[hits[i].order]);
    }

    f.dense.reserve(cfg.n_dense());
    f.dense.push_back(std::log1p((double)n_cp));
    f.dense.push_back(std::log1p((double)words.size()));
    for (Signal s : cfg.signals) {
        std::optional<double> v = signal_value(signals, s);
        const char* name = kSignalNames[(int)s];
        if (!v)
            throw RouterError(std::string("router needs signal '") + name +
                              "' (it was trained with it) but the caller did not supply it");
        if (!std::isfinite(*v)) throw RouterError(std::string("signal '") + name + "' is not finite");
        f.dense.push_back(*v);
    }
    return f;
}

}  // namespace tandem
