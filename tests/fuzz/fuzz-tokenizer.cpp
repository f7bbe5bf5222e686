// libFuzzer target for the tokenizers. The first input byte picks a tokenizer (llama-spm, or the
// gpt-2 vocabulary under each pre-tokenizer, or the deepseek/falcon/starcoder vocabularies); the
// rest is the text. Whatever the bytes, encode() must not crash and must give in-range,
// non-control ids; decode() must give back the text with invalid UTF-8 replaced by U+FFFD; the
// stream decoder must only ever emit valid UTF-8 and end with the same text. (Bytes that a
// byte-level vocabulary has no token for, e.g. falcon's \v, are dropped, and SentencePiece
// decodes a literal U+2581 in the text as a space, as the reference does: both expected.)
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/unicode.h"
#include "tandem/gguf.h"
#include "tandem/tokenizer.h"

using namespace tandem;

struct Target {
    std::unique_ptr<Tokenizer> tok;
    bool has_byte[256];  // gpt2: the vocabulary has a token for the byte
};
static std::vector<Target> g_targets;

static void add_target(Tokenizer t) {
    Target tg{std::make_unique<Tokenizer>(std::move(t)), {}};
    for (bool& b : tg.has_byte) b = tg.tok->kind() == TokenizerKind::Spm;
    if (tg.tok->kind() == TokenizerKind::Bpe) {
        for (size_t id = 0; id < tg.tok->n_tokens(); ++id) {
            const std::string& bytes = tg.tok->token_bytes((TokenId)id);
            if (tg.tok->token_type((TokenId)id) == TokenType::Normal && bytes.size() == 1) {
                std::string mapped;
                unicode::utf8_append(unicode::byte_to_cpt((uint8_t)bytes[0]), mapped);
                if (tg.tok->token_text((TokenId)id) == mapped) tg.has_byte[(uint8_t)bytes[0]] = true;
            }
        }
    }
    g_targets.push_back(std::move(tg));
}

static VocabSpec spec_of(const GgufFile& f) {
    VocabSpec s;
    s.model = f.get_string("tokenizer.ggml.model");
    s.tokens = f.find("tokenizer.ggml.tokens")->strs;
    if (const GgufValue* v = f.find("tokenizer.ggml.merges")) s.merges = v->strs;
    if (const GgufValue* v = f.find("tokenizer.ggml.token_type"))
        for (int64_t x : v->as_i64_array()) s.types.push_back((int32_t)x);
    if (const GgufValue* v = f.find("tokenizer.ggml.scores")) s.scores = v->as_f32_array();
    return s;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const std::string dir = std::string(TANDEM_SHARED_DIR) + "/vocab/ggml-vocab-";
    auto quiet = [](const std::string&) {};
    try {
        for (const char* v : {"llama-spm", "deepseek-llm", "deepseek-coder", "falcon", "starcoder", "phi-3"}) {
            const GgufFile f = GgufFile::open(dir + v + ".gguf");
            add_target(Tokenizer::from_gguf(f, quiet));
        }
        const GgufFile g = GgufFile::open(dir + "gpt-2.gguf");
        for (const char* pre : {"gpt-2", "default", "llama-bpe", "qwen2", "falcon", "starcoder", "deepseek-llm",
                                "deepseek-coder"}) {
            VocabSpec s = spec_of(g);
            s.pre = pre;
            add_target(Tokenizer::from_spec(std::move(s), quiet, pre));
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fuzz-tokenizer: cannot load vocabularies: %s\n", e.what());
        std::abort();
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const Target& tg = g_targets[data[0] % g_targets.size()];
    const Tokenizer& tok = *tg.tok;
    const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);

    const std::vector<TokenId> ids = tok.encode(text, false);
    for (TokenId id : ids) {
        if (id < 0 || (size_t)id >= tok.n_tokens()) std::abort();
        if (tok.token_type(id) == TokenType::Control) std::abort();
    }
    std::string clean;
    for (char c : unicode::utf8_sanitize(text))
        if (tg.has_byte[(uint8_t)c]) clean += c;
    if (tok.kind() == TokenizerKind::Spm) {
        for (size_t at; (at = clean.find("\xE2\x96\x81")) != std::string::npos;) clean.replace(at, 3, " ");
    }
    const std::string back = tok.decode(ids);
    if (back != clean) {
        std::fprintf(stderr, "round trip differs: %zu bytes in, %zu bytes out\n", clean.size(), back.size());
        std::abort();
    }
    StreamDecoder sd(tok);
    std::string streamed;
    for (TokenId id : ids) {
        // `streamed` is valid UTF-8 so far, so it stays valid exactly when the appended bytes are:
        // checking only those keeps the check linear in the text (not once per token).
        const size_t before = streamed.size();
        sd.push(id, streamed);
        if (!unicode::utf8_valid(std::string_view(streamed).substr(before))) std::abort();
    }
    sd.finish(streamed);
    if (streamed != unicode::utf8_sanitize(back)) std::abort();
    if (tok.encode_segments({{text, false}}, false) != ids) std::abort();
    return 0;
}
