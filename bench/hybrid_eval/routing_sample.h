// The engine side of the routing data: k sampled continuations of a prompt that share one
// prefill, and a model's log-likelihood of the true continuation (teacher forcing).
//
// Both run on one tandem::Engine and leave its KV cache holding exactly the prompt, so the next
// call on the same prompt evaluates one token, not the whole prefix (Engine's prefix reuse).
// Not thread-safe: one caller per engine.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tandem/engine.h"

namespace tandem::eval {

struct SampleOptions {
    int samples = 4;          // continuations per prompt
    int max_tokens = 32;      // per continuation; generation also stops after the first sentence
    SamplerParams sampling;   // temperature 0.8, top-k 40, top-p 0.95, min-p 0.05 by default
};

struct SampleResult {
    std::vector<std::string> sentences;  // (samples) first_sentence() of each continuation
    int64_t generated_tokens = 0;        // over all samples
    int64_t evaluated_prompt_tokens = 0; // prompt tokens actually evaluated (not reused), all samples
};

// Samples opt.samples continuations of `prompt` (token ids, BOS included when the model wants
// one). Sample i uses sampler seed splitmix64(seed + i). Each continuation stops at max_tokens,
// at EOS or as soon as its first sentence is complete (routing_data.h's first_sentence_complete).
// Throws like Engine::generate_tokens (ContextFull, std::invalid_argument).
SampleResult sample_continuations(Engine& engine, const std::vector<int32_t>& prompt, const SampleOptions& opt,
                                  uint64_t seed);

// The mean natural-log probability per token of `continuation` after `prompt`
// (1/n) sum_j log p(continuation[j] | prompt, continuation[0..j)). Both non-empty; throws
// std::invalid_argument otherwise and ContextFull when they do not fit the context together.
// Leaves the KV cache holding `prompt`.
double continuation_logprob_mean(Engine& engine, const std::vector<int32_t>& prompt,
                                 const std::vector<int32_t>& continuation);

// The token ids of `prefix` (with BOS when the tokenizer adds one) and of `truth` as it follows
// the prefix after `gap` (the white space between them in the speech): tokenizing the joined
// text and splitting it where the prefix's own tokens end, so the truth's first token carries
// its leading space as in running text. Throws std::invalid_argument for an empty prefix/truth.
struct PromptTokens {
    std::vector<int32_t> prompt;  // (n_prompt)
    std::vector<int32_t> truth;   // (n_truth)
};
PromptTokens tokenize_prompt_and_truth(const Tokenizer& tok, const std::string& prefix, const std::string& gap,
                                       const std::string& truth);

}  // namespace tandem::eval
