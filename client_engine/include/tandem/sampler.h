// Token sampling: penalties, logit bias, greedy or top-k / top-p / min-p / temperature.
//
// Order (as llama.cpp's default chain): logit bias -> repetition, frequency and presence
// penalties over the last `penalty_last_n` tokens -> (temperature <= 0: argmax) -> top-k ->
// softmax -> top-p -> min-p -> temperature -> draw. The RNG is a seeded mt19937_64 converted
// to [0,1) by hand, so the same seed gives the same tokens on every platform.
#pragma once
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace tandem {

struct SamplerParams {
    float temperature = 0.8f;  // <= 0: greedy (argmax after bias and penalties)
    int top_k = 40;            // <= 0: off
    float top_p = 0.95f;       // >= 1: off
    float min_p = 0.05f;       // <= 0: off; keeps tokens with p >= min_p * p_max
    float repeat_penalty = 1.0f;     // 1: off; logit > 0 divided by it, < 0 multiplied
    float frequency_penalty = 0.0f;  // logit -= count * frequency_penalty
    float presence_penalty = 0.0f;   // logit -= (count > 0) * presence_penalty
    int penalty_last_n = 64;         // window of recent tokens the penalties see
    std::vector<std::pair<int32_t, float>> logit_bias;  // added to the logits; -inf bans a token
    uint64_t seed = 0x5EED;
};

class Sampler {
public:
    // Throws std::invalid_argument for out-of-range parameters or bias token ids.
    Sampler(const SamplerParams& params, int64_t n_vocab);

    // Picks the next token from n_vocab logits; `history` holds the tokens so far (prompt and
    // generated) for the penalties. Does not modify `logits`.
    int32_t sample(const float* logits, const std::vector<int32_t>& history);

    const SamplerParams& params() const { return p_; }

private:
    double uniform();  // [0, 1)

    SamplerParams p_;
    int64_t n_vocab_;
    std::mt19937_64 rng_;
    std::vector<float> work_;                          // (n_vocab) adjusted logits
    std::vector<std::pair<float, int32_t>> cand_;      // candidates (value, id)
};

}  // namespace tandem
