// Synthetic routing data with known structure (tandem/router_synth.h). Uses its own PRNG and
// normal sampler so the rows are the same on every platform and standard library.
#include "tandem/router_synth.h"

#include <algorithm>
#include <cmath>

#include "tandem/router_math.h"

namespace tandem {

const std::vector<std::string> kSynthHardWords = {"prove", "theorem", "integral", "derive",
                                                  "jurisdiction", "eigenvalue", "tariff", "sonnet"};
const std::vector<std::string> kSynthEasyWords = {"hello", "thanks", "typo", "shorten", "greeting", "rephrase"};
const char* const kSynthHardBigram = "edge case";

static const char* const kFiller[] = {
    "the", "a", "of", "to", "and", "in", "for", "on", "with", "about", "this", "that", "my", "your", "our",
    "please", "write", "explain", "make", "help", "me", "paragraph", "sentence", "letter", "email", "report",
    "summary", "draft", "note", "speech", "story", "poem", "list", "idea", "plan", "meeting", "project", "team",
    "weather", "city", "river", "school", "garden", "market", "history", "policy", "council", "assembly",
    "nation", "peace", "trade", "climate", "water", "energy", "health", "budget", "review", "question", "answer",
    "short", "long", "clear", "formal", "friendly", "simple", "better", "next", "last", "first", "new", "old",
    "edge", "case", "word", "text", "title", "tone", "style", "point", "reason", "example", "topic", "today",
    "tomorrow", "week", "year", "people", "world", "country", "government", "community", "future", "change"};
constexpr size_t kFillerCount = sizeof(kFiller) / sizeof(kFiller[0]);

namespace {

struct Rng {
    SplitMix64 s;
    double uniform() { return (double)(s.next() >> 11) * (1.0 / 9007199254740992.0); }
    size_t below(size_t n) { return (size_t)(uniform() * (double)n); }
    double normal() {  // Box-Muller
        double u1 = uniform(), u2 = uniform();
        if (u1 < 1e-300) u1 = 1e-300;
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }
};

}  // namespace

Dataset make_synthetic_routing_data(const SynthOptions& opt) {
    if (opt.n_rows < 1 || opt.n_samples < 1) throw RouterError("synthetic data needs n_rows >= 1 and n_samples >= 1");
    Rng rng{{opt.seed * 0x2545F4914F6CDD1Dull + 12345}};
    Dataset d;
    d.file = "synthetic";
    if (opt.with_signals) d.signals = {Signal::gen_entropy, Signal::memory_coverage};
    for (int row = 0; row < opt.n_rows; ++row) {
        size_t n = 4 + rng.below(17);
        std::vector<std::string> w;
        for (size_t i = 0; i < n; ++i) w.push_back(kFiller[rng.below(kFillerCount)]);
        auto insert = [&](const std::string& word) { w.insert(w.begin() + (long)rng.below(w.size() + 1), word); };
        if (rng.uniform() < 0.35) insert(kSynthHardWords[rng.below(kSynthHardWords.size())]);
        if (rng.uniform() < 0.10) insert(kSynthHardWords[rng.below(kSynthHardWords.size())]);
        if (rng.uniform() < 0.30) insert(kSynthEasyWords[rng.below(kSynthEasyWords.size())]);
        if (rng.uniform() < 0.15) {
            size_t at = rng.below(w.size() + 1);
            w.insert(w.begin() + (long)at, {"edge", "case"});
        }
        // The structure, read off the final words.
        int n_hard = 0, n_easy = 0;
        bool edge_case = false;
        for (size_t i = 0; i < w.size(); ++i) {
            n_hard += std::count(kSynthHardWords.begin(), kSynthHardWords.end(), w[i]) > 0;
            n_easy += std::count(kSynthEasyWords.begin(), kSynthEasyWords.end(), w[i]) > 0;
            if (i + 1 < w.size() && w[i] == "edge" && w[i + 1] == "case") edge_case = true;
        }
        double len_term = 0.15 * std::max(0.0, (double)w.size() - 12.0) / 8.0;
        double hardness = std::min(1.6, 0.6 * n_hard + 0.8 * edge_case + len_term) - 0.3 * n_easy;

        // Surface form: capitals and punctuation the features must see through.
        TrainingRow r;
        for (size_t i = 0; i < w.size(); ++i) {
            std::string word = w[i];
            if (i == 0 || rng.uniform() < 0.05) word[0] = (char)std::toupper((unsigned char)word[0]);
            r.query += (i ? (rng.uniform() < 0.08 ? ", " : " ") : "") + word;
        }
        r.query += rng.uniform() < 0.5 ? "?" : ".";

        double mu_s = 0.80 - opt.offset - opt.gap * hardness + opt.hidden * rng.normal(), mu_l = 0.80;
        for (int k = 0; k < opt.n_samples; ++k) {
            r.small_scores.push_back(std::clamp(mu_s + opt.noise * rng.normal(), 0.0, 1.0));
            r.large_scores.push_back(std::clamp(mu_l + opt.noise * rng.normal(), 0.0, 1.0));
        }
        if (opt.with_signals) {
            r.signals.gen_entropy = 1.0 + 0.2 * rng.normal();
            r.signals.memory_coverage = 2.0 - hardness + 0.5 * rng.normal();
        }
        r.line = row + 1;
        d.rows.push_back(std::move(r));
    }
    return d;
}

}  // namespace tandem
