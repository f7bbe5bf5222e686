// The two encode algorithms over an already-built vocabulary (tokenizer_impl.h).
//
// llama (SentencePiece BPE, llama.cpp's "SPM"): start from one symbol per UTF-8 character,
// repeatedly merge the adjacent pair whose concatenation is a vocabulary piece with the highest
// score (ties: leftmost), then emit each symbol's id, or its bytes as <0xXX> tokens when the
// symbol is not a piece (byte fallback).
//
// gpt2 (byte-level BPE): pre-tokenize into chunks, and in each chunk start from one symbol per
// byte (the token of the byte's GPT-2 code point), repeatedly apply the listed merge of lowest
// rank among adjacent pairs (ties: leftmost).
//
// Both keep their working arrays in thread-local scratch so that a call allocates nothing once
// warm (the composition assistant tokenizes on every keystroke).
#include <algorithm>

#include "tokenizer_impl.h"
#include "tandem/unicode.h"

namespace tandem {

namespace {

// ---- llama / SPM ----------------------------------------------------------------------------

struct SpmSym {
    uint32_t start;  // byte offset in the text
    uint32_t n;      // bytes; 0 once merged into its left neighbour
    int32_t prev, next;
};

struct SpmBigram {
    float score;
    int32_t left, right;
    uint32_t size;  // bytes of the merged piece
};

// Max-heap order: highest score first, then leftmost.
struct SpmLess {
    bool operator()(const SpmBigram& l, const SpmBigram& r) const {
        return l.score < r.score || (l.score == r.score && l.left > r.left);
    }
};

struct SpmScratch {
    std::vector<SpmSym> sym;
    std::vector<SpmBigram> heap;
};

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581

inline size_t utf8_len_of_lead(uint8_t b) { return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4; }

// ---- gpt2 / BPE -----------------------------------------------------------------------------

struct BpeSym {
    TokenId id;  // -1 when the byte has no token (never merges, dropped on output)
    uint32_t n;  // bytes; 0 once merged into its left neighbour
    int32_t prev, next;
};

struct BpeBigram {
    int32_t rank;
    int32_t left, right;
    TokenId lid, rid;  // ids the pair had when queued (stale entries are skipped)
    TokenId result;    // the merged token
};

// Min-heap order for std::push_heap: lowest rank first, then leftmost.
struct BpeGreater {
    bool operator()(const BpeBigram& l, const BpeBigram& r) const {
        return l.rank > r.rank || (l.rank == r.rank && l.left > r.left);
    }
};

struct BpeScratch {
    std::vector<uint32_t> cpts, ends, split_scratch, offsets;
    std::vector<uint8_t> flags;
    std::vector<BpeSym> sym;
    std::vector<BpeBigram> heap;
    std::string mapped;
};

thread_local SpmScratch tl_spm;
thread_local BpeScratch tl_bpe;

// ---- word cache -----------------------------------------------------------------------------
// Both algorithms work word by word (llama: the text between word-initial U+2581; gpt2: the
// pre-tokenizer's chunks) and prose repeats words, so each thread keeps a direct-mapped cache
// word -> ids. Entries are tagged with the tokenizer's unique id (never its address, which a
// later tokenizer could reuse).

constexpr size_t kCacheSize = 8192;    // entries per thread (power of two; about 0.8 MB)
constexpr size_t kMaxCachedWord = 48;  // longer words are rare: not cached

struct WordCache {
    struct Entry {
        uint64_t owner = 0;  // Impl::uid; 0 = empty
        uint64_t hash = 0;
        std::string word;
        std::vector<TokenId> ids;
    };
    std::vector<Entry> entries = std::vector<Entry>(kCacheSize);
};

thread_local WordCache tl_cache;

template <class Compute>
void encode_cached(uint64_t owner, std::string_view word, std::vector<TokenId>& out, Compute&& compute) {
    if (word.size() > kMaxCachedWord) {
        compute(word, out);
        return;
    }
    const uint64_t h = hash_bytes(word.data(), word.size());
    WordCache::Entry& e = tl_cache.entries[h & (kCacheSize - 1)];
    if (e.owner == owner && e.hash == h && e.word == word) {
        out.insert(out.end(), e.ids.begin(), e.ids.end());
        return;
    }
    const size_t before = out.size();
    compute(word, out);
    e.owner = owner;
    e.hash = h;
    e.word.assign(word);
    e.ids.assign(out.begin() + (std::ptrdiff_t)before, out.end());
}

}  // namespace

void Tokenizer::Impl::encode_spm(std::string_view text, std::vector<TokenId>& out) const {
    if (!spm_split_words) {
        encode_spm_segment(text, out);
        return;
    }
    auto segment = [&](std::string_view word, std::vector<TokenId>& o) { encode_spm_segment(word, o); };
    // No piece joins a character to a following U+2581 (checked at load), so no merge can cross
    // such a point: encode the words between them separately, with small, cache-resident heaps.
    size_t start = 0;
    for (size_t i = text.find(kSpmSpace, 1); i != std::string_view::npos; i = text.find(kSpmSpace, i + 3)) {
        if (i >= 3 && text.compare(i - 3, 3, kSpmSpace) == 0) continue;  // inside a run of spaces
        encode_cached(uid, text.substr(start, i - start), out, segment);
        start = i;
    }
    encode_cached(uid, text.substr(start), out, segment);
}

void Tokenizer::Impl::encode_spm_segment(std::string_view text, std::vector<TokenId>& out) const {
    std::vector<SpmSym>& sym = tl_spm.sym;
    std::vector<SpmBigram>& heap = tl_spm.heap;
    sym.clear();
    heap.clear();
    if (text.empty()) return;
    for (size_t offs = 0; offs < text.size();) {
        const size_t n = std::min(utf8_len_of_lead((uint8_t)text[offs]), text.size() - offs);
        const int32_t index = (int32_t)sym.size();
        sym.push_back({(uint32_t)offs, (uint32_t)n, index - 1, offs + n == text.size() ? -1 : index + 1});
        offs += n;
    }

    auto try_add = [&](int32_t left, int32_t right) {
        if (left < 0 || right < 0) return;
        const uint32_t size = sym[left].n + sym[right].n;
        const TokenId id = pieces.find(text.substr(sym[left].start, size));
        if (id < 0) return;
        heap.push_back({score[id], left, right, size});
        std::push_heap(heap.begin(), heap.end(), SpmLess{});
    };

    for (int32_t i = 1; i < (int32_t)sym.size(); ++i) try_add(i - 1, i);

    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), SpmLess{});
        const SpmBigram b = heap.back();
        heap.pop_back();
        SpmSym& l = sym[b.left];
        SpmSym& r = sym[b.right];
        if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;  // stale: a side changed
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) sym[r.next].prev = b.left;
        try_add(l.prev, b.left);
        try_add(b.left, l.next);
    }

    for (int32_t i = 0; i != -1; i = sym[i].next) {
        const std::string_view piece = text.substr(sym[i].start, sym[i].n);
        const TokenId id = pieces.find(piece);
        if (id >= 0) {
            out.push_back(id);
            continue;
        }
        bool all_bytes = true;
        for (char c : piece) all_bytes &= byte_token[(uint8_t)c] >= 0;
        if (all_bytes) {
            for (char c : piece) out.push_back(byte_token[(uint8_t)c]);
        } else if (unk >= 0) {
            out.push_back(unk);  // no byte fallback for this character: one <unk>
        }
    }
}

void Tokenizer::Impl::encode_bpe(std::string_view text, std::vector<TokenId>& out) const {
    BpeScratch& s = tl_bpe;
    unicode::utf8_to_cpts(text, s.cpts);
    const size_t n = s.cpts.size();
    s.flags.resize(n);
    s.offsets.resize(n + 1);
    uint32_t off = 0;
    for (size_t i = 0; i < n; ++i) {
        const uint32_t c = s.cpts[i];
        s.flags[i] = unicode::cpt_flags(c);
        s.offsets[i] = off;
        off += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    }
    s.offsets[n] = off;
    pretokenize(pre, s.cpts.data(), s.flags.data(), n, s.ends, s.split_scratch);

    uint32_t begin = 0;
    auto word_fn = [&](std::string_view w, std::vector<TokenId>& o) { encode_bpe_word(w, o); };
    for (uint32_t end : s.ends) {
        const std::string_view word = text.substr(s.offsets[begin], s.offsets[end] - s.offsets[begin]);
        begin = end;
        if (word.size() == 1) {
            if (byte_token[(uint8_t)word[0]] >= 0) out.push_back(byte_token[(uint8_t)word[0]]);
            continue;
        }
        encode_cached(uid, word, out, word_fn);
    }
}

void Tokenizer::Impl::encode_bpe_word(std::string_view word, std::vector<TokenId>& out) const {
    BpeScratch& s = tl_bpe;
    if (ignore_merges) {
        s.mapped.clear();
        for (char c : word) unicode::utf8_append(unicode::byte_to_cpt((uint8_t)c), s.mapped);
        const TokenId id = pieces.find(s.mapped);
        if (id >= 0) {
            out.push_back(id);
            return;
        }
    }
    std::vector<BpeSym>& sym = s.sym;
    std::vector<BpeBigram>& heap = s.heap;
    auto try_add = [&](int32_t left, int32_t right) {
        if (left < 0 || right < 0) return;
        const TokenId lid = sym[left].id, rid = sym[right].id;
        if (lid < 0 || rid < 0) return;
        const MergeMap::Entry* e = merges.find(lid, rid);
        if (!e) return;
        heap.push_back({e->rank, left, right, lid, rid, e->result});
        std::push_heap(heap.begin(), heap.end(), BpeGreater{});
    };
    sym.clear();
    heap.clear();
    for (size_t i = 0; i < word.size(); ++i) {
        const int32_t idx = (int32_t)i;
        sym.push_back({byte_token[(uint8_t)word[i]], 1, idx - 1, i + 1 == word.size() ? -1 : idx + 1});
    }
    for (int32_t i = 1; i < (int32_t)sym.size(); ++i) try_add(i - 1, i);
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), BpeGreater{});
        const BpeBigram b = heap.back();
        heap.pop_back();
        BpeSym& l = sym[b.left];
        BpeSym& r = sym[b.right];
        if (l.n == 0 || r.n == 0 || l.next != b.right || l.id != b.lid || r.id != b.rid) continue;
        l.id = b.result;
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) sym[r.next].prev = b.left;
        try_add(l.prev, b.left);
        try_add(b.left, l.next);
    }
    for (int32_t i = 0; i != -1; i = sym[i].next)
        if (sym[i].id >= 0) out.push_back(sym[i].id);
}

// ---- splitting at control and user-defined tokens ---------------------------------------------

void Tokenizer::Impl::split_text(std::string_view text, bool parse_special, std::vector<TextPart>& parts) const {
    parts.clear();
    parts.push_back({0, (uint32_t)text.size(), -1});
    if (split_order.empty() || text.empty()) return;
    // Which of the tokens occur in the text at all: usually none, so the loop below, which
    // rescans the text once per token, runs for a few tokens at most.
    thread_local std::vector<int32_t> present;
    present.clear();
    for (size_t i = 0; i < text.size(); ++i) {
        split_trie.for_each_prefix(text.substr(i), [&](int32_t rank) {
            if (parse_special || split_always[rank]) present.push_back(rank);
        });
    }
    if (present.empty()) return;
    std::sort(present.begin(), present.end());
    present.erase(std::unique(present.begin(), present.end()), present.end());

    thread_local std::vector<TextPart> next;
    for (int32_t rank : present) {
        const TokenId id = split_order[rank];
        const std::string_view tok = token_texts[id];
        next.clear();
        for (const TextPart& p : parts) {
            if (p.token >= 0) {
                next.push_back(p);
                continue;
            }
            const std::string_view part = text.substr(0, p.end);
            uint32_t at = p.begin;
            for (size_t m = part.find(tok, at); m != std::string_view::npos; m = part.find(tok, at)) {
                if (m > at) next.push_back({at, (uint32_t)m, -1});
                next.push_back({(uint32_t)m, (uint32_t)(m + tok.size()), id});
                at = (uint32_t)(m + tok.size());
            }
            if (at < p.end) next.push_back({at, p.end, -1});
        }
        parts.swap(next);
    }
}

bool Tokenizer::Impl::encode_split(std::string_view text, bool parse_special, bool after_special,
                                   std::vector<TokenId>& out) const {
    thread_local std::string clean;
    if (!unicode::utf8_valid(text)) {
        clean = unicode::utf8_sanitize(text);
        text = clean;
    }
    thread_local std::vector<TextPart> parts;
    split_text(text, parse_special, parts);
    for (const TextPart& p : parts) {
        if (p.token >= 0) {
            out.push_back(p.token);
            after_special = true;
        } else {
            encode_text(text.substr(p.begin, p.end - p.begin), after_special, out);
            after_special = false;
        }
    }
    return after_special;
}

void Tokenizer::Impl::encode_text(std::string_view text, bool after_special, std::vector<TokenId>& out) const {
    thread_local std::string clean, escaped;
    if (!unicode::utf8_valid(text)) {
        clean = unicode::utf8_sanitize(text);
        text = clean;
    }
    if (text.empty()) return;
    if (kind == TokenizerKind::Bpe) {
        encode_bpe(text, out);
        return;
    }
    // llama: optional leading space, then every ' ' becomes U+2581 (SentencePiece's escape).
    escaped.clear();
    escaped.reserve(text.size() + text.size() / 4 + 3);
    if (add_space_prefix && after_special) escaped += "\xE2\x96\x81";
    for (char c : text) {
        if (c == ' ') escaped += "\xE2\x96\x81";
        else escaped += c;
    }
    encode_spm(escaped, out);
}

}  // namespace tandem
