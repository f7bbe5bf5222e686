// Internal state of a Tokenizer (tokenizer.h) shared by tokenizer*.cpp: the vocabulary, flat
// hash maps for piece -> id and (left, right) -> merge, and the encode algorithms.
#pragma once
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/pretokenize.h"
#include "tandem/tokenizer.h"

namespace tandem {

// Fast hash of a byte string (8 bytes per step).
inline uint64_t hash_bytes(const char* p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t v;
        std::memcpy(&v, p, 8);
        h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t v = 0;
        std::memcpy(&v, p, n);
        h = (h ^ v) * 0x94D049BB133111EBull;
    }
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ull;
    h ^= h >> 32;
    return h;
}

// Open-addressing map from piece text to id over a vocabulary that outlives it. Inserting a
// text again replaces its id (the last one wins, as llama.cpp's token_to_id).
class PieceMap {
public:
    void init(const std::vector<std::string>* texts, size_t expected);
    void insert(TokenId id);
    TokenId find(std::string_view s) const {
        if (slots_.empty()) return -1;
        const uint64_t h = hash_bytes(s.data(), s.size());
        for (size_t i = h & mask_;; i = (i + 1) & mask_) {
            const TokenId id = slots_[i];
            if (id < 0) return -1;
            if (hashes_[i] == (uint32_t)h && (*texts_)[id] == s) return id;
        }
    }

private:
    const std::vector<std::string>* texts_ = nullptr;
    std::vector<TokenId> slots_;   // (capacity) id or -1
    std::vector<uint32_t> hashes_; // (capacity) low hash bits of the slot's text
    size_t mask_ = 0;
};

// Open-addressing map (left id, right id) -> (rank, merged id) for byte-level BPE.
class MergeMap {
public:
    struct Entry {
        uint64_t key = ~0ull;  // (left << 32) | right; ~0 = empty
        int32_t rank = 0;
        TokenId result = -1;
    };
    void init(size_t expected);
    // Keeps the first (lowest) rank when a pair is listed twice.
    void insert(TokenId left, TokenId right, int32_t rank, TokenId result);
    const Entry* find(TokenId left, TokenId right) const {
        const uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
        uint64_t h = key * 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
        for (size_t i = h & mask_;; i = (i + 1) & mask_) {
            const Entry& e = slots_[i];
            if (e.key == key) return &e;
            if (e.key == ~0ull) return nullptr;
        }
    }

private:
    std::vector<Entry> slots_;
    size_t mask_ = 0;
};

// Trie over the texts of the tokens that encode() splits the text on before running the
// tokenizer algorithm (control, user-defined and unknown tokens; see Impl::split_text).
class SplitTrie {
public:
    SplitTrie() { clear(); }
    void clear();
    void insert(std::string_view text, int32_t value);
    // Calls fn(value) for each inserted text that is a prefix of `s`, shortest first.
    template <class Fn>
    void for_each_prefix(std::string_view s, Fn&& fn) const {
        if (s.empty() || root_[(uint8_t)s[0]] < 0) return;
        int32_t node = root_[(uint8_t)s[0]];
        for (size_t i = 1;; ++i) {
            if (nodes_[node].value >= 0) fn(nodes_[node].value);
            if (i == s.size() || (node = child(node, (uint8_t)s[i])) < 0) return;
        }
    }

private:
    struct Node {
        int32_t value = -1;                              // inserted text that ends here, or -1
        std::vector<std::pair<uint8_t, int32_t>> next;  // (byte, child node), sorted by byte
    };
    int32_t child(int32_t node, uint8_t b) const {
        for (const auto& [c, n] : nodes_[node].next)
            if (c == b) return n;
        return -1;
    }
    int32_t root_[256];
    std::vector<Node> nodes_;
};

// A piece of encode() input after splitting: text [begin, end) when token < 0, else one token.
struct TextPart {
    uint32_t begin, end;
    TokenId token;
};

struct Tokenizer::Impl {
    static uint64_t next_uid();    // process-wide counter, never 0
    uint64_t uid = next_uid();     // tags this vocabulary's entries in the word caches
    std::string source;  // file or spec name, for messages
    TokenizerKind kind = TokenizerKind::Spm;
    PreType pre = PreType::Gpt2;
    std::string pre_name;

    std::vector<std::string> token_texts;  // (n_vocab) piece as stored
    std::vector<std::string> bytes;  // (n_vocab) what the token decodes to ("" for control)
    std::vector<float> score;        // (n_vocab)
    std::vector<TokenType> type;     // (n_vocab)

    TokenId bos = -1, eos = -1, unk = -1;
    bool add_bos = false;
    bool add_space_prefix = false;  // llama only
    bool ignore_merges = false;     // gpt2 + llama-bpe: a chunk that is a whole token is kept
    bool spm_split_words = false;   // llama: no piece has U+2581 right after another character

    PieceMap pieces;     // text -> id of tokens encode() may produce from text
    PieceMap specials;   // text -> id of control and user-defined tokens
    // The tokens split_text cuts the text at, in the order it tries them: longest text first,
    // then lower id (llama.cpp's cache_special_tokens). The trie maps each text to its rank here.
    std::vector<TokenId> split_order;
    std::vector<bool> split_always;  // (split_order) cut out also without parse_special
    SplitTrie split_trie;
    TokenId byte_token[256];  // llama: the <0xXX> token; gpt2: the token of the mapped byte; -1
    MergeMap merges;     // gpt2 only

    // Appends the tokens of `text` (valid UTF-8; for llama already prefixed/escaped).
    void encode_spm(std::string_view text, std::vector<TokenId>& out) const;
    void encode_spm_segment(std::string_view text, std::vector<TokenId>& out) const;
    void encode_bpe(std::string_view text, std::vector<TokenId>& out) const;
    void encode_bpe_word(std::string_view word, std::vector<TokenId>& out) const;  // one chunk
    // encode() of one text segment (any bytes); `after_special` drives llama's space prefix.
    void encode_text(std::string_view text, bool after_special, std::vector<TokenId>& out) const;
    // Cuts `text` (valid UTF-8) at every user-defined token (split_always), and at control and
    // unknown tokens too when parse_special, as llama.cpp's tokenizer_st_partition: for each token in
    // split_order, every occurrence (leftmost first, not overlapping) inside a text part that is
    // still uncut becomes that token.
    void split_text(std::string_view text, bool parse_special, std::vector<TextPart>& parts) const;
    // split_text, then each text part through encode_text. `after_special` as for encode_text;
    // returns whether the last piece appended was a token (true when `text` is empty and
    // after_special was).
    bool encode_split(std::string_view text, bool parse_special, bool after_special, std::vector<TokenId>& out) const;

    void check_id(TokenId id) const;
    // What `id` contributes to decoded text; `at_start` strips llama's added leading space.
    std::string_view piece_for_decode(TokenId id, bool render_special, bool& at_start) const;
};

}  // namespace tandem
