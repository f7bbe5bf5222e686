// Tokenizer construction (from GGUF metadata or a VocabSpec), the hash maps, and the public
// encode API. The algorithms are in tokenizer_encode.cpp, decoding in tokenizer_decode.cpp.
#include "tandem/tokenizer.h"

#include <algorithm>
#include <atomic>
#include <cstdio>

#include "tandem/gguf.h"
#include "tokenizer_impl.h"
#include "tandem/unicode.h"

namespace tandem {

// ---- hash maps ------------------------------------------------------------------------------

static size_t table_capacity(size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2) cap <<= 1;  // load factor <= 0.5
    return cap;
}

void PieceMap::init(const std::vector<std::string>* texts, size_t expected) {
    texts_ = texts;
    const size_t cap = table_capacity(expected);
    slots_.assign(cap, -1);
    hashes_.assign(cap, 0);
    mask_ = cap - 1;
}

void PieceMap::insert(TokenId id) {
    const std::string& s = (*texts_)[id];
    const uint64_t h = hash_bytes(s.data(), s.size());
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
        if (slots_[i] < 0 || (hashes_[i] == (uint32_t)h && (*texts_)[slots_[i]] == s)) {
            slots_[i] = id;
            hashes_[i] = (uint32_t)h;
            return;
        }
    }
}

void MergeMap::init(size_t expected) {
    const size_t cap = table_capacity(expected);
    slots_.assign(cap, Entry{});
    mask_ = cap - 1;
}

void MergeMap::insert(TokenId left, TokenId right, int32_t rank, TokenId result) {
    const uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
        Entry& e = slots_[i];
        if (e.key == key) return;  // listed before: the earlier (lower) rank wins
        if (e.key == ~0ull) {
            e = Entry{key, rank, result};
            return;
        }
    }
}

void SplitTrie::clear() {
    std::fill(std::begin(root_), std::end(root_), -1);
    nodes_.clear();
}

void SplitTrie::insert(std::string_view text, int32_t value) {
    if (text.empty()) return;
    int32_t& first = root_[(uint8_t)text[0]];
    if (first < 0) {
        first = (int32_t)nodes_.size();
        nodes_.emplace_back();
    }
    int32_t node = first;
    for (size_t i = 1; i < text.size(); ++i) {
        const uint8_t b = (uint8_t)text[i];
        int32_t next = child(node, b);
        if (next < 0) {
            next = (int32_t)nodes_.size();
            nodes_.emplace_back();  // may move nodes_: index again below
            auto& edges = nodes_[node].next;
            edges.insert(std::lower_bound(edges.begin(), edges.end(), std::make_pair(b, int32_t{-1})),
                         std::make_pair(b, next));
        }
        node = next;
    }
    if (nodes_[node].value < 0) nodes_[node].value = value;  // a text listed twice: first wins
}

// ---- construction ---------------------------------------------------------------------------

uint64_t Tokenizer::Impl::next_uid() {
    static std::atomic<uint64_t> counter{0};
    return ++counter;
}

// llama.cpp's list (llama_vocab::impl::load): phi-3 marks "</s>" user-defined, and llama.cpp
// still never cuts it out of plain text.
bool is_end_of_generation_text(std::string_view s) {
    static const char* const kTexts[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
        "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
        "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "[e~["};
    for (const char* e : kTexts)
        if (s == e) return true;
    return false;
}

namespace {

const char kSpaceEscape[] = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

std::string spm_unescape(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        if (s.compare(i, 3, kSpaceEscape) == 0) {
            out += ' ';
            i += 3;
        } else {
            out += s[i++];
        }
    }
    return out;
}

std::string bpe_unmap(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        uint32_t cp;
        const size_t n = unicode::utf8_decode(s.data() + i, s.size() - i, cp);
        const int b = unicode::cpt_to_byte(cp);
        if (b >= 0) out += (char)b;
        else out.append(s, i, n);  // not a mapped byte: keep as is
        i += n;
    }
    return out;
}

// "<0xAB>" -> 0xAB; -1 when `s` is not of that form.
int parse_byte_piece(const std::string& s) {
    if (s.size() != 6 || s.compare(0, 3, "<0x") != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; ++i) {
        const char c = s[i];
        const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

void default_warning(const std::string& msg) { std::fprintf(stderr, "tandem: warning: %s\n", msg.c_str()); }

}  // namespace

Tokenizer Tokenizer::from_spec(VocabSpec spec, const WarningFn& warn_fn, const std::string& source) {
    const WarningFn warn = warn_fn ? warn_fn : WarningFn(default_warning);
    auto impl = std::make_shared<Impl>();
    Impl& t = *impl;
    t.source = source;
    if (spec.model == "llama") t.kind = TokenizerKind::Spm;
    else if (spec.model == "gpt2") t.kind = TokenizerKind::Bpe;
    else
        throw TokenizerError(source + ": unsupported tokenizer model '" + spec.model +
                             "' (tokenizer.ggml.model; supported: llama, gpt2)");

    const size_t n = spec.tokens.size();
    if (n == 0) throw TokenizerError(source + ": tokenizer.ggml.tokens is empty");
    if (n > (size_t)INT32_MAX) throw TokenizerError(source + ": tokenizer.ggml.tokens has too many entries");
    if (!spec.scores.empty() && spec.scores.size() != n)
        throw TokenizerError(source + ": tokenizer.ggml.scores has " + std::to_string(spec.scores.size()) +
                             " entries, tokens has " + std::to_string(n));
    if (!spec.types.empty() && spec.types.size() != n)
        throw TokenizerError(source + ": tokenizer.ggml.token_type has " + std::to_string(spec.types.size()) +
                             " entries, tokens has " + std::to_string(n));

    t.token_texts = std::move(spec.tokens);
    t.score = spec.scores.empty() ? std::vector<float>(n, 0.0f) : std::move(spec.scores);
    t.type.resize(n, TokenType::Normal);
    for (size_t i = 0; i < spec.types.size(); ++i) {
        const int32_t v = spec.types[i];
        if (v < 0 || v > 6)
            throw TokenizerError(source + ": tokenizer.ggml.token_type[" + std::to_string(i) + "] = " +
                                 std::to_string(v) + " is not a token type (0..6)");
        t.type[i] = v == 0 ? TokenType::Normal : (TokenType)v;
    }
    auto valid_id = [&](TokenId id) { return id >= 0 && (size_t)id < n ? id : -1; };
    t.bos = valid_id(spec.bos);
    t.eos = valid_id(spec.eos);
    t.unk = valid_id(spec.unk);

    // Which tokens text may turn into. Control, unknown, unused and byte tokens never come
    // from matching text; llama also leaves out user-defined pieces (e.g. phi-3's "</s>").
    t.pieces.init(&t.token_texts, n);
    t.specials.init(&t.token_texts, n);
    for (size_t i = 0; i < n; ++i) {
        const TokenType ty = t.type[i];
        if (t.token_texts[i].empty()) continue;
        if (ty == TokenType::Normal || (ty == TokenType::UserDefined && t.kind == TokenizerKind::Bpe))
            t.pieces.insert((TokenId)i);
        if (ty == TokenType::Control || ty == TokenType::UserDefined) t.specials.insert((TokenId)i);
    }

    // The tokens encode() cuts the text at (Impl::split_text), longest first; those cut out even
    // without parse_special: the user-defined ones, but for end-of-generation markers.
    for (size_t i = 0; i < n; ++i) {
        const TokenType ty = t.type[i];
        if (!t.token_texts[i].empty() &&
            (ty == TokenType::Control || ty == TokenType::UserDefined || ty == TokenType::Unknown))
            t.split_order.push_back((TokenId)i);
    }
    std::stable_sort(t.split_order.begin(), t.split_order.end(), [&](TokenId a, TokenId b) {
        return t.token_texts[a].size() > t.token_texts[b].size();
    });
    t.split_trie.clear();
    for (size_t r = 0; r < t.split_order.size(); ++r) {
        const TokenId id = t.split_order[r];
        t.split_trie.insert(t.token_texts[id], (int32_t)r);
        t.split_always.push_back(t.type[id] == TokenType::UserDefined && !is_end_of_generation_text(t.token_texts[id]));
    }

    std::fill(std::begin(t.byte_token), std::end(t.byte_token), -1);
    t.bytes.resize(n);
    if (t.kind == TokenizerKind::Spm) {
        t.add_space_prefix = spec.add_space_prefix.value_or(true);
        t.add_bos = spec.add_bos.value_or(true);
        // Can encode_spm split the text before each word's U+2581? Only when no piece it may
        // produce has U+2581 right after another character (true for llama's vocabulary).
        t.spm_split_words = true;
        for (size_t i = 0; i < n && t.spm_split_words; ++i) {
            if (t.type[i] != TokenType::Normal) continue;
            const std::string& s = t.token_texts[i];
            for (size_t j = s.find(kSpaceEscape, 1); j != std::string::npos; j = s.find(kSpaceEscape, j + 1)) {
                if (j < 3 || s.compare(j - 3, 3, kSpaceEscape) != 0) {
                    t.spm_split_words = false;
                    break;
                }
            }
        }
        for (size_t i = 0; i < n; ++i) {
            const int b = parse_byte_piece(t.token_texts[i]);
            if (b >= 0 && (t.type[i] == TokenType::Byte || t.byte_token[b] < 0)) t.byte_token[b] = (TokenId)i;
        }
        for (int b = 0; b < 256; ++b) {
            if (t.byte_token[b] < 0) t.byte_token[b] = t.pieces.find(std::string(1, (char)b));
        }
        for (size_t i = 0; i < n; ++i) {
            switch (t.type[i]) {
                case TokenType::Normal: t.bytes[i] = spm_unescape(t.token_texts[i]); break;
                case TokenType::Byte: {
                    const int b = parse_byte_piece(t.token_texts[i]);
                    t.bytes[i] = b >= 0 ? std::string(1, (char)b) : spm_unescape(t.token_texts[i]);
                    break;
                }
                case TokenType::UserDefined: t.bytes[i] = t.token_texts[i]; break;
                case TokenType::Unknown: t.bytes[i] = "\xEF\xBF\xBD"; break;
                default: break;  // control, unused: nothing
            }
        }
        return Tokenizer(std::move(impl));
    }

    // gpt2: pre-tokenizer, byte tokens, merges.
    if (spec.pre.empty()) {
        // llama.cpp's choice for a file without the key (e.g. older gpt-neox conversions).
        warn(source + ": tokenizer.ggml.pre is missing; using the default pre-tokenizer rules, as llama.cpp does");
        t.pre = PreType::Default;
        t.pre_name = "default";
    } else if (!pre_type_from_name(spec.pre, t.pre)) {
        warn(source + ": unknown pre-tokenizer '" + spec.pre + "' (tokenizer.ggml.pre); using the gpt-2 rules");
        t.pre = PreType::Gpt2;
        t.pre_name = "gpt-2";
    } else {
        t.pre_name = spec.pre;
    }
    t.ignore_merges = t.pre == PreType::Llama3;
    t.add_bos = spec.add_bos.value_or(t.pre == PreType::Llama3);
    t.add_space_prefix = false;

    for (int b = 0; b < 256; ++b) {
        std::string s;
        unicode::utf8_append(unicode::byte_to_cpt((uint8_t)b), s);
        t.byte_token[b] = t.pieces.find(s);
    }
    t.merges.init(spec.merges.size());
    size_t skipped = 0;
    std::string joined;
    for (size_t r = 0; r < spec.merges.size(); ++r) {
        const std::string& m = spec.merges[r];
        const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
        if (sp == std::string::npos) {
            ++skipped;
            continue;
        }
        const std::string_view left(m.data(), sp), right(m.data() + sp + 1, m.size() - sp - 1);
        joined.assign(left).append(right);
        const TokenId l = t.pieces.find(left), rr = t.pieces.find(right), res = t.pieces.find(joined);
        if (l < 0 || rr < 0 || res < 0 || r > (size_t)INT32_MAX) {
            ++skipped;
            continue;
        }
        t.merges.insert(l, rr, (int32_t)r, res);
    }
    if (skipped)
        warn(source + ": " + std::to_string(skipped) + " of " + std::to_string(spec.merges.size()) +
             " entries of tokenizer.ggml.merges name pieces that are not in the vocabulary; ignored");

    for (size_t i = 0; i < n; ++i) {
        switch (t.type[i]) {
            case TokenType::Normal:
            case TokenType::Byte: t.bytes[i] = bpe_unmap(t.token_texts[i]); break;
            case TokenType::UserDefined: t.bytes[i] = t.token_texts[i]; break;
            case TokenType::Unknown: t.bytes[i] = "\xEF\xBF\xBD"; break;
            default: break;
        }
    }
    return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_gguf(const GgufFile& file, const WarningFn& warn) {
    const std::string& src = file.path();
    VocabSpec spec;
    try {
        const GgufValue* model = file.find("tokenizer.ggml.model");
        if (!model) throw TokenizerError(src + ": no tokenizer (key tokenizer.ggml.model is missing)");
        if (model->type != GgufType::STRING) throw TokenizerError(src + ": tokenizer.ggml.model is not a string");
        spec.model = model->str;
        if (spec.model != "llama" && spec.model != "gpt2")
            throw TokenizerError(src + ": unsupported tokenizer model '" + spec.model +
                                 "' (tokenizer.ggml.model; supported: llama, gpt2)");
        auto string_array = [&](const char* key, bool required) {
            const GgufValue* v = file.find(key);
            if (!v) {
                if (required) throw TokenizerError(src + ": key " + std::string(key) + " is missing");
                return std::vector<std::string>{};
            }
            if (v->type != GgufType::ARRAY || v->elem_type != GgufType::STRING)
                throw TokenizerError(src + ": " + std::string(key) + " is not an array of strings");
            return v->strs;
        };
        spec.tokens = string_array("tokenizer.ggml.tokens", true);
        if (spec.model == "gpt2") spec.merges = string_array("tokenizer.ggml.merges", true);
        if (const GgufValue* v = file.find("tokenizer.ggml.scores")) spec.scores = v->as_f32_array();
        if (const GgufValue* v = file.find("tokenizer.ggml.token_type")) {
            for (int64_t x : v->as_i64_array()) spec.types.push_back(x < INT32_MIN || x > INT32_MAX ? -1 : (int32_t)x);
        }
        spec.pre = file.opt_string("tokenizer.ggml.pre").value_or("");
        auto id_key = [&](const char* key) -> TokenId {
            const auto v = file.opt_int(key);
            return v && *v >= 0 && *v <= INT32_MAX ? (TokenId)*v : -1;
        };
        spec.bos = id_key("tokenizer.ggml.bos_token_id");
        spec.eos = id_key("tokenizer.ggml.eos_token_id");
        spec.unk = id_key("tokenizer.ggml.unknown_token_id");
        spec.add_bos = file.opt_bool("tokenizer.ggml.add_bos_token");
        spec.add_space_prefix = file.opt_bool("tokenizer.ggml.add_space_prefix");
    } catch (const GgufError& e) {
        throw TokenizerError(src + ": bad tokenizer metadata: " + e.what());
    }
    return from_spec(std::move(spec), warn, src);
}

// ---- encode API -----------------------------------------------------------------------------

void Tokenizer::encode(std::string_view text, bool add_bos, std::vector<TokenId>& out, bool parse_special) const {
    if (add_bos && impl_->bos >= 0) out.push_back(impl_->bos);
    impl_->encode_split(text, parse_special, /*after_special=*/true, out);
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
    std::vector<TokenId> out;
    out.reserve(text.size() / 3 + 2);
    encode(text, add_bos, out, parse_special);
    return out;
}

std::vector<TokenId> Tokenizer::encode_segments(const std::vector<TokenSegment>& segments, bool add_bos) const {
    std::vector<TokenId> out;
    if (add_bos && impl_->bos >= 0) out.push_back(impl_->bos);
    bool prev_special = true;  // llama: a text right after a special token gets the space prefix
    for (const TokenSegment& seg : segments) {
        if (seg.special) {
            const TokenId id = impl_->specials.find(seg.text);
            if (id < 0)
                throw TokenizerError(impl_->source + ": '" + unicode::utf8_sanitize(seg.text) +
                                     "' is not a control or user-defined token");
            out.push_back(id);
            prev_special = true;
        } else if (!seg.text.empty()) {
            prev_special = impl_->encode_split(seg.text, /*parse_special=*/false, prev_special, out);
        }
    }
    return out;
}

TokenId Tokenizer::find_special(std::string_view piece) const { return impl_->specials.find(piece); }

// ---- accessors ------------------------------------------------------------------------------

void Tokenizer::Impl::check_id(TokenId id) const {
    if (id < 0 || (size_t)id >= token_texts.size())
        throw TokenizerError(source + ": token id " + std::to_string(id) + " out of range [0, " +
                             std::to_string(token_texts.size()) + ")");
}

const std::string& Tokenizer::token_text(TokenId id) const {
    impl_->check_id(id);
    return impl_->token_texts[id];
}
const std::string& Tokenizer::token_bytes(TokenId id) const {
    impl_->check_id(id);
    return impl_->bytes[id];
}
TokenType Tokenizer::token_type(TokenId id) const {
    impl_->check_id(id);
    return impl_->type[id];
}
size_t Tokenizer::n_tokens() const { return impl_->token_texts.size(); }
TokenizerKind Tokenizer::kind() const { return impl_->kind; }
const std::string& Tokenizer::pre_name() const { return impl_->pre_name; }
TokenId Tokenizer::bos() const { return impl_->bos; }
TokenId Tokenizer::eos() const { return impl_->eos; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
bool Tokenizer::add_space_prefix() const { return impl_->add_space_prefix; }

}  // namespace tandem
