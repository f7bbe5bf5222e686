// Text overlap metrics and the paired bootstrap for the hybrid evaluation (issue 8).
//
//   rouge_l_f1   words: lower-cased ASCII letters and digits (every other ASCII byte separates
//                words, bytes >= 0x80 are word bytes), as rouge-score's default tokenizer;
//                F1 of LCS precision (LCS / hyp words) and recall (LCS / ref words). In [0, 1].
//   chrf         sacrebleu's CHRF() defaults: characters (UTF-8 code points) with all white
//                space removed, n-grams n = 1..6, per n precision and recall over the orders
//                where both sides have n-grams, averaged, then F-beta with beta = 2. In
//                [0, 100], as sacrebleu prints it.
//   paired_bootstrap  percentile 95% interval of mean(a - b) over resamples of the pairs.
//
// All are pure functions: thread-safe, no allocation kept.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::eval {

// The words rouge_l_f1 compares (see above).
std::vector<std::string> rouge_tokens(std::string_view text);

// ROUGE-L F1 in [0, 1]; 0 when either side has no words.
double rouge_l_f1(std::string_view hyp, std::string_view ref);

// chrF (sacrebleu default, chrF2, char order 6, no white space) in [0, 100]; 0 when either side
// is empty after white space removal. Invalid UTF-8 bytes count as one character each.
double chrf(std::string_view hyp, std::string_view ref);

struct Interval {
    double mean, lo, hi;
};

// Mean of a[i] - b[i] and its 95% percentile bootstrap interval: `resamples` resamples of the
// n index pairs with replacement (a generator seeded with `seed`); lo/hi are the 2.5% and 97.5%
// quantiles of the resampled means (sorted, index floor(0.025 R) and ceil(0.975 R) - 1).
// Deterministic for a seed. Throws std::invalid_argument when the sizes differ, are 0, or
// resamples < 1.
Interval paired_bootstrap(const std::vector<double>& a, const std::vector<double>& b, int resamples = 2000,
                          uint64_t seed = 1);

}  // namespace tandem::eval
