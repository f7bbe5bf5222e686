// Token sampling (see sampler.h for the order of the steps).
#include "tandem/sampler.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace tandem {

Sampler::Sampler(const SamplerParams& p, int64_t n_vocab) : p_(p), n_vocab_(n_vocab), rng_(p.seed) {
    if (n_vocab <= 0) throw std::invalid_argument("sampler: n_vocab must be positive");
    if (!(p.top_p > 0)) throw std::invalid_argument("sampler: top_p must be > 0");
    if (p.min_p < 0 || p.min_p > 1) throw std::invalid_argument("sampler: min_p must be in [0, 1]");
    if (!(p.repeat_penalty > 0)) throw std::invalid_argument("sampler: repeat_penalty must be > 0");
    if (p.penalty_last_n < 0) throw std::invalid_argument("sampler: penalty_last_n must be >= 0");
    for (const auto& [id, bias] : p.logit_bias)
        if (id < 0 || id >= n_vocab)
            throw std::invalid_argument("sampler: logit_bias token id " + std::to_string(id) + " is outside the vocabulary");
    work_.resize((size_t)n_vocab);
    cand_.reserve((size_t)n_vocab);
}

double Sampler::uniform() { return (double)(rng_() >> 11) * (1.0 / 9007199254740992.0); }

int32_t Sampler::sample(const float* logits, const std::vector<int32_t>& history) {
    std::copy(logits, logits + n_vocab_, work_.begin());
    for (const auto& [id, bias] : p_.logit_bias) work_[(size_t)id] += bias;

    const bool penalize = p_.repeat_penalty != 1.0f || p_.frequency_penalty != 0.0f || p_.presence_penalty != 0.0f;
    if (penalize && p_.penalty_last_n > 0 && !history.empty()) {
        std::unordered_map<int32_t, int> counts;
        const size_t from = history.size() > (size_t)p_.penalty_last_n ? history.size() - p_.penalty_last_n : 0;
        for (size_t i = from; i < history.size(); i++)
            if (history[i] >= 0 && history[i] < n_vocab_) counts[history[i]]++;
        for (const auto& [id, n] : counts) {
            float& l = work_[(size_t)id];
            l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
            l -= (float)n * p_.frequency_penalty + p_.presence_penalty;
        }
    }

    if (p_.temperature <= 0) {
        // greedy; ties go to the lowest id
        return (int32_t)(std::max_element(work_.begin(), work_.end()) - work_.begin());
    }

    cand_.clear();
    for (int64_t i = 0; i < n_vocab_; i++)
        if (work_[(size_t)i] > -INFINITY) cand_.push_back({work_[(size_t)i], (int32_t)i});
    if (cand_.empty()) throw std::runtime_error("sampler: every token is banned by logit_bias");
    auto by_value = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
    size_t k = cand_.size();
    if (p_.top_k > 0 && (size_t)p_.top_k < k) {
        k = (size_t)p_.top_k;
        std::partial_sort(cand_.begin(), cand_.begin() + (ptrdiff_t)k, cand_.end(), by_value);
        cand_.resize(k);
    } else {
        std::sort(cand_.begin(), cand_.end(), by_value);
    }

    // softmax of the raw logits for the top-p / min-p cuts
    const float mx = cand_[0].first;
    std::vector<double> prob(cand_.size());
    double sum = 0;
    for (size_t i = 0; i < cand_.size(); i++) sum += prob[i] = std::exp((double)cand_[i].first - mx);
    size_t keep = cand_.size();
    if (p_.top_p < 1.0f) {
        double cum = 0;
        for (size_t i = 0; i < cand_.size(); i++) {
            cum += prob[i] / sum;
            if (cum >= p_.top_p) { keep = i + 1; break; }
        }
    }
    if (p_.min_p > 0) {
        const double cut = p_.min_p * prob[0];
        size_t i = 1;
        while (i < keep && prob[i] >= cut) i++;
        keep = i;
    }

    // temperature on what is left, then one draw
    double total = 0;
    std::vector<double> w(keep);
    for (size_t i = 0; i < keep; i++) total += w[i] = std::exp(((double)cand_[i].first - mx) / p_.temperature);
    double r = uniform() * total;
    for (size_t i = 0; i < keep; i++) {
        r -= w[i];
        if (r < 0) return cand_[i].second;
    }
    return cand_[keep - 1].second;
}

}  // namespace tandem
