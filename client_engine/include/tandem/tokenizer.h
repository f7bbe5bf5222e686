// Tokenizers built from GGUF metadata: SentencePiece BPE (`llama`) and byte-level BPE (`gpt2`).
//
// GGUF keys read (tokenizer.ggml.*):
//
//   key                 type        use
//   model               string      "llama" (SPM) or "gpt2" (byte-level BPE); others are rejected
//   pre                 string      gpt2 only: pre-tokenizer regexes (see pretokenize.h); absent ->
//                                   warning + "default" rules (llama.cpp's choice); unknown ->
//                                   warning + gpt-2 rules
//   tokens              [string]    piece text per id (required)
//   scores              [f32]       llama: merge priority per id (absent -> 0)
//   token_type          [i32]       TokenType per id (absent -> Normal)
//   merges              [string]    gpt2: "left right" pairs, rank = index (required for gpt2)
//   bos/eos/unknown_token_id u32    special ids (absent or out of range -> none)
//   add_bos_token       bool        default: llama true, gpt2 false (llama-bpe true)
//   add_space_prefix    bool        llama: prepend ' ' to the text (default true)
//
// As in llama.cpp (tokenizer_st_partition) and Hugging Face tokenizers, encode() first cuts the
// text at the vocabulary's user-defined tokens (TokenType::UserDefined: gpt-neox's and mpt's
// runs of 2-24 spaces, deepseek's 'ø' 'û' ... and "<|User|>"): each occurrence becomes that
// token, longer texts taking precedence, and only the text between them goes through the
// tokenizer algorithm (for llama, each such piece gets the leading space, as after a control
// token). Control and unknown tokens are cut out the same way only with parse_special, and so
// are user-defined tokens whose text is an end-of-generation marker ("</s>", "<|endoftext|>",
// ...: llama.cpp treats those as control tokens); by default text that contains "<s>" or
// "<|im_start|>" is tokenized as ordinary characters. encode_segments() with a segment marked
// `special` also yields a control token. A gpt2 vocabulary without tokenizer.ggml.pre gets the
// "default" pre-tokenizer, as in llama.cpp.
//
// Invalid UTF-8 in encode() input is replaced by U+FFFD (one per maximal invalid subsequence)
// before tokenization; encode() never throws for any input bytes. decode(encode(text)) == text
// for valid UTF-8, with two exceptions inherited from the formats (llama.cpp and the reference
// tokenizers do the same): `llama` decodes a literal U+2581 in the text as a space and keeps the
// space it put before the text after a user-defined token, and `gpt2` drops bytes its
// vocabulary has no token for (falcon has none for \v and a few other controls).
//
// A Tokenizer is immutable after construction; all const methods are thread-safe. Copies share
// the (read-only) vocabulary.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tandem {

class GgufFile;
using TokenId = int32_t;

class TokenizerError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Values of tokenizer.ggml.token_type (llama.cpp's llama_token_type).
enum class TokenType : uint8_t { Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

enum class TokenizerKind : uint8_t { Spm, Bpe };

// Everything a tokenizer is built from: filled from GGUF metadata, or by hand in tests.
struct VocabSpec {
    std::string model;                // "llama" or "gpt2"
    std::string pre;                  // "" when absent
    std::vector<std::string> tokens;  // (n_vocab)
    std::vector<float> scores;        // (n_vocab) or empty
    std::vector<int32_t> types;       // (n_vocab) TokenType values, or empty
    std::vector<std::string> merges;  // gpt2: "left right", in rank order
    TokenId bos = -1, eos = -1, unk = -1;
    std::optional<bool> add_bos;
    std::optional<bool> add_space_prefix;
};

// Receives non-fatal problems (unknown pre-tokenizer, unusable merges). Default: stderr.
using WarningFn = std::function<void(const std::string& message)>;

// A piece of input to encode_segments(): ordinary text, or (special = true) the exact text of
// one control/user-defined token, e.g. "<|im_start|>".
struct TokenSegment {
    std::string_view text;
    bool special = false;
};

class Tokenizer {
public:
    // Builds from the tokenizer.ggml.* keys of `file`. Throws TokenizerError naming the file and
    // key on missing/malformed metadata or an unsupported model ("unsupported tokenizer model
    // 'bert'"). Warnings go to `warn` (stderr when empty).
    static Tokenizer from_gguf(const GgufFile& file, const WarningFn& warn = {});
    // Builds from an in-memory spec (same checks; `source` names it in messages).
    static Tokenizer from_spec(VocabSpec spec, const WarningFn& warn = {}, const std::string& source = "vocab");

    // Tokenizes `text` as one string: user-defined tokens cut out first (see the top of this
    // file), control and unknown tokens too only when parse_special; BOS first when add_bos and
    // the vocabulary has one. Appends to `out` (the overload returning a vector starts empty).
    void encode(std::string_view text, bool add_bos, std::vector<TokenId>& out, bool parse_special = false) const;
    std::vector<TokenId> encode(std::string_view text, bool add_bos = false, bool parse_special = false) const;

    // Tokenizes SDK-built input: text segments as encode() does without parse_special, special
    // segments as exactly one token. Throws TokenizerError when a special segment is not a
    // control/user-defined token.
    std::vector<TokenId> encode_segments(const std::vector<TokenSegment>& segments, bool add_bos) const;

    // Id of the control/user-defined token whose text is `piece`; -1 when there is none.
    TokenId find_special(std::string_view piece) const;

    // The bytes `ids` stand for. Control tokens give "" unless render_special (then their
    // text). For `llama`, the space added before the text is removed from the first text token.
    // The result is what encode() saw when the ids came from it; for arbitrary ids it may end
    // inside a UTF-8 sequence (use StreamDecoder for display). Throws on an id out of range.
    std::string decode(const TokenId* ids, size_t n, bool render_special = false) const;
    std::string decode(const std::vector<TokenId>& ids, bool render_special = false) const {
        return decode(ids.data(), ids.size(), render_special);
    }

    // Per-token data; ids must be in [0, n_tokens()) (throws TokenizerError otherwise).
    const std::string& token_text(TokenId id) const;  // the vocabulary piece, as stored
    const std::string& token_bytes(TokenId id) const; // the bytes it decodes to ("" for control)
    TokenType token_type(TokenId id) const;

    size_t n_tokens() const;
    TokenizerKind kind() const;
    const std::string& pre_name() const;  // pre-tokenizer in use ("" for llama)
    TokenId bos() const;                  // -1 when none
    TokenId eos() const;
    bool add_bos() const;                 // the model's default for add_bos
    bool add_space_prefix() const;

    struct Impl;

private:
    explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
    std::shared_ptr<const Impl> impl_;
    friend class StreamDecoder;
};

// Turns a stream of token ids (generation) into text that is always valid UTF-8: bytes of a
// sequence split across tokens are held back until it completes; bytes that can never form a
// valid sequence come out as U+FFFD. Same leading-space rule and control-token handling as
// Tokenizer::decode, unless at_text_start is false: the ids continue text that was decoded
// before (a generation after its prompt), so an SPM first piece keeps its leading space
// (" girl" after "a little", not "girl"). Not thread-safe (one per stream); keeps the
// tokenizer's data alive.
class StreamDecoder {
public:
    explicit StreamDecoder(const Tokenizer& tok, bool render_special = false, bool at_text_start = true);
    // Appends the newly completed text for `id` to `out`. Throws on an id out of range.
    void push(TokenId id, std::string& out);
    // End of stream: appends U+FFFD for held-back bytes of an unfinished sequence, then resets.
    void finish(std::string& out);
    void reset();

private:
    std::shared_ptr<const Tokenizer::Impl> impl_;
    bool render_special_;
    bool text_start_;  // reset() returns here: at_start_ = text_start_
    bool at_start_;
    std::string pending_;  // at most 3 bytes of an incomplete sequence
};

// Whether `s` is one of the texts llama.cpp takes for end-of-generation tokens ("</s>",
// "<|endoftext|>", "<|im_end|>", ...), which it treats as control tokens whatever their
// token_type says: encode() cuts such a user-defined token out only with parse_special.
bool is_end_of_generation_text(std::string_view s);

}  // namespace tandem
