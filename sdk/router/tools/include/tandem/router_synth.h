// Synthetic routing data with known structure, for tests, benchmarks and demos.
//
// A query is 4..20 words drawn from a filler vocabulary plus, each with its own probability,
// "hard" words (the small model fails more often), "easy" words (it does as well as the
// large one) and the hard bigram "edge case" (its words also appear alone, where they are
// harmless). Per query the small model's mean quality is
//   mu_s = 0.80 - gap * (hardness)   with hardness = min(1.6, 0.6 * n_hard + 0.8 * [edge case]
//                                       + 0.15 * max(0, n_words - 12) / 8) - 0.3 * n_easy
// and the large model's is mu_l = 0.80; each of n_samples scores is mu + N(0, noise^2),
// clipped to [0,1]. With with_signals, memory_coverage = 2 - hardness + N(0, 0.5^2) is added
// (an informative signal), and gen_entropy = N(1, 0.2^2) (uninformative).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tandem/router_train.h"

namespace tandem {

struct SynthOptions {
    int n_rows = 2000;
    uint64_t seed = 1;
    int n_samples = 10;        // scores per model per query
    double gap = 0.3;          // quality lost by the small model per unit of hardness
    double offset = 0.0;       // quality the small model loses on every query
    double noise = 0.1;        // per-sample score noise (std)
    double hidden = 0.05;      // per-query small-model offset invisible to the features (std)
    bool with_signals = false;
};

extern const std::vector<std::string> kSynthHardWords;  // negative weight expected
extern const std::vector<std::string> kSynthEasyWords;  // positive weight expected
extern const char* const kSynthHardBigram;              // "edge case"

// Deterministic in (options): same options -> same rows.
Dataset make_synthetic_routing_data(const SynthOptions& opt);

}  // namespace tandem
