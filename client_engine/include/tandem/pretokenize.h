// Pre-tokenizers for byte-level BPE: split text (as code points) into the chunks that BPE merges
// within. Each type is the list of regexes llama.cpp uses for that `tokenizer.ggml.pre`, applied
// in order: every regex splits each current chunk into its matches and the text between them.
// The regexes are matched by hand over code points with Unicode properties (unicode.h), with
// the semantics of the Rust/Python regex engines the tokenizers were trained with (true \p{L}
// etc.; \s is White_Space). Public so that the tests check it against a reference; not part
// of the installed SDK.
//
//   type            tokenizer.ggml.pre names                     regexes (in order)
//   Gpt2            gpt-2 phi-2 mpt gpt-neox olmo roberta-bpe ... GPT2
//   Default         default                                      [\p{P}$+<=>^~|]+, GPT2, \p{N}+, [0-9]{3}
//   Llama3          llama-bpe llama3 llama-v3 dbrx smaug-bpe     LLAMA3 with \p{N}{1,3}
//   Qwen2           qwen2 stablelm2 deepseek-r1-qwen             LLAMA3 with \p{N}
//   Falcon          falcon                                       [\p{P}$+<=>^~|`]+, GPT2, [0-9]{3}
//   Starcoder       starcoder refact smollm command-r            \p{N}, GPT2
//   DeepseekLlm     deepseek-llm                                 [\r\n], \s?[letters]+, \s?[punct]+,
//                                                                \s+$, [CJK]+, \p{N}+
//   DeepseekCoder   deepseek-coder                               [\r\n], \s?\p{L}+, \s?\p{P}+, [CJK]+, \p{N}
//
//   GPT2   = 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   LLAMA3 = (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*
//            |\s*[\r\n]+|\s+(?!\S)|\s+
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace tandem {

enum class PreType { Gpt2, Default, Llama3, Qwen2, Falcon, Starcoder, DeepseekLlm, DeepseekCoder };

// Maps a tokenizer.ggml.pre value to its type. Returns false (and leaves `out`) when unknown.
bool pre_type_from_name(std::string_view name, PreType& out);
const char* pre_type_name(PreType t);

// Splits cpts[0, n) into chunks. `flags` holds unicode::cpt_flags of each code point.
// On return `ends` holds the exclusive end of each chunk, increasing, the last one == n
// (empty when n == 0). `scratch` is working memory the caller may reuse between calls.
void pretokenize(PreType type, const uint32_t* cpts, const uint8_t* flags, size_t n,
                 std::vector<uint32_t>& ends, std::vector<uint32_t>& scratch);

}  // namespace tandem
