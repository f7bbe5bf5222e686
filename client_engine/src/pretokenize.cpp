// Pre-tokenizer regexes matched by hand over code points. See pretokenize.h for the table.
//
// Each regex is a matcher: given a position inside a chunk it returns the length of the match
// starting there (0 = none), trying alternatives in regex order. split_pass() then does what a
// regex iterator does: scan left to right for the leftmost match, emit the text before it (if
// any) and the match as chunks, continue after the match. Lookarounds and `$` see the chunk's
// end as the end of the text, as with llama.cpp's per-chunk matching.
#include "tandem/pretokenize.h"

#include <cstring>

#include "tandem/unicode.h"

namespace tandem {

using namespace unicode;

// ---- names --------------------------------------------------------------------------------

namespace {

struct PreName {
    const char* name;
    PreType type;
};

const PreName kPreNames[] = {
    {"gpt-2", PreType::Gpt2},          {"gpt2", PreType::Gpt2},
    {"phi-2", PreType::Gpt2},          {"mpt", PreType::Gpt2},
    {"gpt-neox", PreType::Gpt2},       {"olmo", PreType::Gpt2},
    {"roberta-bpe", PreType::Gpt2},    {"jina-es", PreType::Gpt2},
    {"jina-de", PreType::Gpt2},        {"jina-v2-es", PreType::Gpt2},
    {"jina-v2-de", PreType::Gpt2},     {"jina-v2-code", PreType::Gpt2},
    {"default", PreType::Default},
    {"llama-bpe", PreType::Llama3},    {"llama3", PreType::Llama3},
    {"llama-v3", PreType::Llama3},     {"dbrx", PreType::Llama3},
    {"smaug-bpe", PreType::Llama3},
    {"qwen2", PreType::Qwen2},         {"stablelm2", PreType::Qwen2},
    {"deepseek-r1-qwen", PreType::Qwen2},
    {"falcon", PreType::Falcon},
    {"starcoder", PreType::Starcoder}, {"refact", PreType::Starcoder},
    {"smollm", PreType::Starcoder},    {"command-r", PreType::Starcoder},
    {"deepseek-llm", PreType::DeepseekLlm},
    {"deepseek-coder", PreType::DeepseekCoder},
};

}  // namespace

bool pre_type_from_name(std::string_view name, PreType& out) {
    for (const PreName& p : kPreNames) {
        if (name == p.name) {
            out = p.type;
            return true;
        }
    }
    return false;
}

const char* pre_type_name(PreType t) {
    switch (t) {
        case PreType::Gpt2: return "gpt-2";
        case PreType::Default: return "default";
        case PreType::Llama3: return "llama-bpe";
        case PreType::Qwen2: return "qwen2";
        case PreType::Falcon: return "falcon";
        case PreType::Starcoder: return "starcoder";
        case PreType::DeepseekLlm: return "deepseek-llm";
        case PreType::DeepseekCoder: return "deepseek-coder";
    }
    return "?";
}

// ---- matchers -----------------------------------------------------------------------------

namespace {

struct Text {
    const uint32_t* c;  // (n) code points
    const uint8_t* f;   // (n) unicode flags
};

constexpr uint8_t kLNW = kLetter | kNumber | kWhitespace;

inline bool is_cr_lf(uint32_t c) { return c == '\r' || c == '\n'; }
inline uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

// 's|'t|'re|'ve|'m|'ll|'d, optionally case-insensitive (ASCII, as llama.cpp).
size_t match_contraction(const Text& t, size_t pos, size_t end, bool icase) {
    if (t.c[pos] != '\'' || pos + 1 >= end) return 0;
    const uint32_t a = icase ? ascii_lower(t.c[pos + 1]) : t.c[pos + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 >= end) return 0;
    const uint32_t b = icase ? ascii_lower(t.c[pos + 2]) : t.c[pos + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

// Length of the whitespace run at pos.
inline size_t ws_run(const Text& t, size_t pos, size_t end) {
    size_t q = pos;
    while (q < end && (t.f[q] & kWhitespace)) ++q;
    return q - pos;
}

// GPT2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
size_t match_gpt2(const Text& t, size_t pos, size_t end) {
    if (size_t n = match_contraction(t, pos, end, false)) return n;
    size_t q = (t.c[pos] == ' ' && pos + 1 < end) ? pos + 1 : pos;
    const uint8_t fq = t.f[q];
    if (fq & kLetter) {
        while (q < end && (t.f[q] & kLetter)) ++q;
        return q - pos;
    }
    if (fq & kNumber) {
        while (q < end && (t.f[q] & kNumber)) ++q;
        return q - pos;
    }
    if (!(fq & kLNW)) {
        while (q < end && !(t.f[q] & kLNW)) ++q;
        return q - pos;
    }
    const size_t k = ws_run(t, pos, end);
    if (k > 1 && pos + k < end) return k - 1;  // \s+(?!\S): leave the last space to the next word
    return k;                                  // \s+ (k >= 1 here: pos is whitespace)
}

// LLAMA3 with \p{N}{1,max_digits}.
size_t match_llama3(const Text& t, size_t pos, size_t end, size_t max_digits) {
    if (size_t n = match_contraction(t, pos, end, true)) return n;
    const uint32_t c = t.c[pos];
    const uint8_t f = t.f[pos];
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!is_cr_lf(c) && !(f & kNumber)) {
        if ((f & kLetter) || (pos + 1 < end && (t.f[pos + 1] & kLetter))) {
            size_t q = pos + 1;
            while (q < end && (t.f[q] & kLetter)) ++q;
            return q - pos;
        }
    }
    // \p{N}{1,max_digits}
    if (f & kNumber) {
        size_t q = pos;
        while (q < end && (t.f[q] & kNumber) && q - pos < max_digits) ++q;
        return q - pos;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    size_t q = (c == ' ' && pos + 1 < end) ? pos + 1 : pos;
    if (!(t.f[q] & kLNW)) {
        while (q < end && !(t.f[q] & kLNW)) ++q;
        while (q < end && is_cr_lf(t.c[q])) ++q;
        return q - pos;
    }
    // \s*[\r\n]+ | \s+(?!\S) | \s+
    const size_t k = ws_run(t, pos, end);
    size_t last_nl = 0;
    for (size_t i = 0; i < k; ++i)
        if (is_cr_lf(t.c[pos + i])) last_nl = i + 1;
    if (last_nl > 0) return last_nl;
    if (k > 1 && pos + k < end) return k - 1;
    return k > 0 ? k : 1;
}

size_t match_llama3_3(const Text& t, size_t pos, size_t end) { return match_llama3(t, pos, end, 3); }
size_t match_llama3_1(const Text& t, size_t pos, size_t end) { return match_llama3(t, pos, end, 1); }

// [\p{P}\$\+<=>\^~\|]+  (and the falcon variant that adds the backtick)
template <bool kBacktick>
size_t match_punct_sym(const Text& t, size_t pos, size_t end) {
    size_t q = pos;
    while (q < end) {
        const uint32_t c = t.c[q];
        const bool sym = c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' || c == '~' ||
                         c == '|' || (kBacktick && c == '`');
        if (!sym && !(t.f[q] & kPunct)) break;
        ++q;
    }
    return q - pos;
}

// [0-9][0-9][0-9]
size_t match_three_digits(const Text& t, size_t pos, size_t end) {
    if (pos + 3 > end) return 0;
    for (size_t i = 0; i < 3; ++i)
        if (t.c[pos + i] < '0' || t.c[pos + i] > '9') return 0;
    return 3;
}

// \p{N}+ and \p{N}
size_t match_numbers(const Text& t, size_t pos, size_t end) {
    size_t q = pos;
    while (q < end && (t.f[q] & kNumber)) ++q;
    return q - pos;
}
size_t match_number(const Text& t, size_t pos, size_t end) { return (t.f[pos] & kNumber) ? 1 : 0; }

// [\r\n]
size_t match_cr_lf(const Text& t, size_t pos, size_t end) { return is_cr_lf(t.c[pos]) ? 1 : 0; }

// \s?X+ for a character class X.
template <bool (*kIn)(uint32_t cp, uint8_t flags)>
size_t match_ws_opt_class(const Text& t, size_t pos, size_t end) {
    size_t q;
    if ((t.f[pos] & kWhitespace) && pos + 1 < end && kIn(t.c[pos + 1], t.f[pos + 1])) q = pos + 1;
    else if (kIn(t.c[pos], t.f[pos])) q = pos;
    else return 0;
    while (q < end && kIn(t.c[q], t.f[q])) ++q;
    return q - pos;
}

bool in_letter(uint32_t, uint8_t f) { return f & kLetter; }
bool in_punct(uint32_t, uint8_t f) { return f & kPunct; }

bool in_deepseek_letter(uint32_t c, uint8_t f) {
    if (c < 0x80) return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    if (!(f & kLetter)) return false;  // every code point in the class is a letter
    return in_spans(kDeepseekLlmLetters, kDeepseekLlmLettersCount, c);
}

// [!-/:-~！-／：-～‘-‟　-。]
bool in_deepseek_punct(uint32_t c, uint8_t) {
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x7E) || (c >= 0xFF01 && c <= 0xFF0F) ||
           (c >= 0xFF1A && c <= 0xFF5E) || (c >= 0x2018 && c <= 0x201F) || (c >= 0x3000 && c <= 0x3002);
}

// [一-龥ࠀ-一가-퟿]+
size_t match_cjk(const Text& t, size_t pos, size_t end) {
    size_t q = pos;
    while (q < end) {
        const uint32_t c = t.c[q];
        if (!((c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x0800 && c <= 0x4E00) || (c >= 0xAC00 && c <= 0xD7FF))) break;
        ++q;
    }
    return q - pos;
}

using MatchFn = size_t (*)(const Text&, size_t pos, size_t end);

// Splits each chunk of `in` at the matches of `m`; appends chunk ends to `out`.
void split_pass(MatchFn m, const Text& t, const std::vector<uint32_t>& in, std::vector<uint32_t>& out) {
    out.clear();
    size_t begin = 0;
    for (uint32_t end : in) {
        size_t pos = begin, last = begin;
        while (pos < end) {
            const size_t len = m(t, pos, end);
            if (len == 0) {
                ++pos;
                continue;
            }
            if (pos > last) out.push_back((uint32_t)pos);
            pos += len;
            out.push_back((uint32_t)pos);
            last = pos;
        }
        if (last < end) out.push_back(end);
        begin = end;
    }
}

// \s+$ : the trailing whitespace run of each chunk (found directly, not by scanning every start).
void split_trailing_ws(const Text& t, const std::vector<uint32_t>& in, std::vector<uint32_t>& out) {
    out.clear();
    size_t begin = 0;
    for (uint32_t end : in) {
        size_t ws = end;
        while (ws > begin && (t.f[ws - 1] & kWhitespace)) --ws;
        if (ws > begin && ws < end) out.push_back((uint32_t)ws);
        out.push_back(end);
        begin = end;
    }
}

// A pass is a matcher, or nullptr for the trailing-whitespace pass.
struct Passes {
    MatchFn fn[6];
    size_t n;
};

Passes passes_for(PreType type) {
    switch (type) {
        case PreType::Gpt2: return {{match_gpt2}, 1};
        case PreType::Default:
            return {{match_punct_sym<false>, match_gpt2, match_numbers, match_three_digits}, 4};
        case PreType::Llama3: return {{match_llama3_3}, 1};
        case PreType::Qwen2: return {{match_llama3_1}, 1};
        case PreType::Falcon: return {{match_punct_sym<true>, match_gpt2, match_three_digits}, 3};
        case PreType::Starcoder: return {{match_number, match_gpt2}, 2};
        case PreType::DeepseekLlm:
            return {{match_cr_lf, match_ws_opt_class<in_deepseek_letter>, match_ws_opt_class<in_deepseek_punct>,
                     nullptr, match_cjk, match_numbers},
                    6};
        case PreType::DeepseekCoder:
            return {{match_cr_lf, match_ws_opt_class<in_letter>, match_ws_opt_class<in_punct>, match_cjk,
                     match_number},
                    5};
    }
    return {{match_gpt2}, 1};
}

}  // namespace

void pretokenize(PreType type, const uint32_t* cpts, const uint8_t* flags, size_t n,
                 std::vector<uint32_t>& ends, std::vector<uint32_t>& scratch) {
    ends.clear();
    if (n == 0) return;
    const Text t{cpts, flags};
    const Passes p = passes_for(type);
    ends.push_back((uint32_t)n);
    for (size_t i = 0; i < p.n; ++i) {
        scratch.swap(ends);  // scratch = current chunks, ends = output
        if (p.fn[i]) split_pass(p.fn[i], t, scratch, ends);
        else split_trailing_ws(t, scratch, ends);
    }
}

}  // namespace tandem
